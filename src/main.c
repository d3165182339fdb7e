/* parleyd: arguments and config, the store, the writer thread, the ingest and query
 * servers, signals, and uv_run. Everything else lives in its own module. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "parley/config.h"
#include "parley/error.h"
#include "parley/http.h"
#include "parley/ingest.h"
#include "parley/log.h"
#include "parley/net.h"
#include "parley/qserver.h"
#include "parley/store.h"
#include "parley/version.h"
#include "parley/writer.h"

typedef struct daemon {
  pl_config_t cfg;
  uv_loop_t *loop;
  pl_store_t *store;
  pl_writer_t *writer;
  pl_ingest_t *ingest;
  pl_qserver_t *qserver;
  pl_http_t *http;
  uv_signal_t sigint, sigterm, sighup;
  uv_timer_t tick;
  int stopping;
  uint64_t started;
  uint64_t connections; /* published for the query thread and the work pool (atomic) */
  int exit_code;
} daemon_t;

static void usage(FILE *f) {
  fprintf(f,
          "usage: parleyd [--config FILE] [--data-dir DIR] [--listen HOST:PORT]\n"
          "               [--query-listen HOST:PORT|unix:PATH] [--sync full|none]\n"
          "               [--http-listen HOST:PORT|none]\n"
          "               [--log-level error|warn|info|debug] [--set SECTION.NAME=VALUE]...\n"
          "               [--rebuild] [--print-config] [--version]\n"
          "Flags override the config file. See config/parleyd.conf for every option.\n");
}

static void on_env(void *arg, pl_query_env_t *env) {
  daemon_t *d = arg;
  env->version = PL_VERSION;
  env->connections = __atomic_load_n(&d->connections, __ATOMIC_RELAXED);
  env->uptime_s = ((uint64_t)time(NULL) - d->started);
}

static void on_tick(uv_timer_t *t) {
  daemon_t *d = t->data;
  uint64_t n = 0;
  if (d->ingest) {
    pl_ingest_stats_t st;
    pl_ingest_get_stats(d->ingest, &st);
    n += st.connections;
  }
  if (d->qserver) {
    pl_qserver_stats_t st;
    pl_qserver_get_stats(d->qserver, &st);
    n += st.connections;
  }
  if (d->http) {
    pl_http_stats_t st;
    pl_http_get_stats(d->http, &st);
    n += st.connections;
  }
  __atomic_store_n(&d->connections, n, __ATOMIC_RELAXED);
}

static void on_writer_drain(void *arg) {
  daemon_t *d = arg;
  if (d->ingest) pl_ingest_writer_drained(d->ingest);
}

static void sources_changed(daemon_t *d);

static void on_writer_stopped(void *arg) {
  daemon_t *d = arg;
  d->writer = NULL;
  sources_changed(d);
  pl_log_info("writer stopped; every acknowledged record is committed");
}

static void http_sources(daemon_t *d, pl_http_sources_t *src) {
  memset(src, 0, sizeof(*src));
  src->store = d->store;
  src->writer = d->writer;
  src->ingest = d->ingest;
  src->qserver = d->qserver;
  src->env = on_env;
  src->env_arg = d;
  src->started_unix = d->started;
}

static void sources_changed(daemon_t *d) {
  pl_http_sources_t src;
  if (!d->http) return;
  http_sources(d, &src);
  pl_http_set_sources(d->http, &src);
}

static void on_http_stopped(void *arg) {
  daemon_t *d = arg;
  d->http = NULL;
}

static void on_ingest_stopped(void *arg) {
  daemon_t *d = arg;
  d->ingest = NULL;
  sources_changed(d);
  if (d->writer) pl_writer_stop(d->writer, on_writer_stopped, d);
}

static void on_qserver_stopped(void *arg) {
  daemon_t *d = arg;
  d->qserver = NULL;
  sources_changed(d);
}

static void shutdown_daemon(daemon_t *d) {
  if (d->stopping) return;
  d->stopping = 1;
  uv_close((uv_handle_t *)&d->sigint, NULL);
  uv_close((uv_handle_t *)&d->sigterm, NULL);
  uv_close((uv_handle_t *)&d->sighup, NULL);
  uv_close((uv_handle_t *)&d->tick, NULL);
  if (d->http) pl_http_stop(d->http, on_http_stopped, d);
  if (d->qserver) pl_qserver_stop(d->qserver, on_qserver_stopped, d);
  if (d->ingest)
    pl_ingest_stop(d->ingest, 10000, on_ingest_stopped, d);
  else if (d->writer)
    pl_writer_stop(d->writer, on_writer_stopped, d);
}

static void on_signal(uv_signal_t *h, int signum) {
  daemon_t *d = h->data;
  if (signum == SIGHUP) {
    /* Logs go to stderr and nothing else is reopened: SIGHUP is acknowledged, not acted on. */
    pl_log_info("SIGHUP: nothing to reopen (logs go to stderr)");
    return;
  }
  pl_log_info("%s: stopping: finishing received messages, then closing the store",
              signum == SIGINT ? "SIGINT" : "SIGTERM");
  shutdown_daemon(d);
}

static int parse_args(daemon_t *d, int argc, char **argv, int *rebuild, int *print) {
  char err[512];
  const char *config = NULL;
  static const struct {
    const char *flag, *option;
  } flags[] = {{"--data-dir", "storage.data_dir"}, {"--listen", "ingest.listen"},
               {"--query-listen", "query.listen"}, {"--sync", "storage.sync"},
               {"--log-level", "log.level"},
               {"--http-listen", "http.listen"}};

  pl_config_defaults(&d->cfg);
  /* The config file first, wherever --config appears, so flags always win. */
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) config = argv[++i];
  if (config && pl_config_load(&d->cfg, config, err, sizeof(err))) {
    fprintf(stderr, "parleyd: %s\n", err);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    size_t k;
    if (strcmp(a, "--config") == 0) {
      i++;
      continue;
    }
    if (strcmp(a, "--rebuild") == 0) {
      *rebuild = 1;
      continue;
    }
    if (strcmp(a, "--print-config") == 0) {
      *print = 1;
      continue;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strcmp(a, "--version") == 0) {
      printf("parleyd %s\n", PL_VERSION);
      exit(0);
    }
    if (strcmp(a, "--set") == 0 && i + 1 < argc) {
      char name[128];
      const char *eq = strchr(argv[++i], '=');
      if (!eq || (size_t)(eq - argv[i]) >= sizeof(name)) {
        fprintf(stderr, "parleyd: --set expects SECTION.NAME=VALUE\n");
        return 2;
      }
      memcpy(name, argv[i], (size_t)(eq - argv[i]));
      name[eq - argv[i]] = '\0';
      if (pl_config_set(&d->cfg, name, eq + 1, err, sizeof(err))) {
        fprintf(stderr, "parleyd: --set: %s\n", err);
        return 2;
      }
      continue;
    }
    for (k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
      if (strcmp(a, flags[k].flag) == 0) break;
    if (k == sizeof(flags) / sizeof(flags[0]) || i + 1 >= argc) {
      fprintf(stderr, "parleyd: unknown or incomplete argument \"%s\"\n", a);
      usage(stderr);
      return 2;
    }
    if (pl_config_set(&d->cfg, flags[k].option, argv[++i], err, sizeof(err))) {
      fprintf(stderr, "parleyd: %s: %s\n", a, err);
      return 2;
    }
  }
  return 0;
}

static int run_rebuild(daemon_t *d) {
  uint64_t events = 0;
  struct timespec t0, t1;
  int rc;
  pl_log_info("rebuilding every aggregate from the stored events in %s", d->cfg.data_dir);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  rc = pl_store_rebuild(d->store, &events);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (rc) {
    pl_log_error("rebuild failed after %llu events: %s", (unsigned long long)events,
                 pl_strerror(rc));
    return 1;
  }
  pl_log_info("rebuilt aggregates from %llu events in %.2f s", (unsigned long long)events,
              (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  return 0;
}

int main(int argc, char **argv) {
  static daemon_t d;
  char err[512];
  int rebuild = 0, print = 0, rc;
  pl_store_opts_t so;
  pl_writer_opts_t wo;
  pl_ingest_opts_t io;
  pl_qserver_opts_t qo;
  pl_http_opts_t ho;
  pl_http_sources_t hs;
  char hostname[256] = "";

  pl_log_set_ident("parleyd");
  rc = parse_args(&d, argc, argv, &rebuild, &print);
  if (rc) return rc;
  pl_log_threshold = d.cfg.log_level;
  if (print) {
    char buf[8192];
    pl_config_dump(&d.cfg, buf, sizeof(buf));
    fputs(buf, stdout);
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);
  /* Queries and batches allocate and free a few hundred KiB each; without this glibc hands
   * that memory back to the kernel after every request and the page faults cost more than
   * the work. 16 MiB kept is well inside the memory budget. */
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
  {
    /* A query connection holds two descriptors: its socket and the pool thread's dup. */
    uint64_t want = d.cfg.max_connections + 2 * d.cfg.query_max_connections +
                    d.cfg.http_max_connections + 256;
    uint64_t got = pl_net_raise_nofile(want);
    if (got < want)
      pl_log_warn("open-file limit is %llu, below the %llu that max_connections needs",
                  (unsigned long long)got, (unsigned long long)want);
  }

  so.dir = d.cfg.data_dir;
  so.map_size = d.cfg.map_size;
  so.map_size_max = d.cfg.map_size_max;
  so.sync_full = d.cfg.sync_full;
  so.max_readers = 0;
  so.chunk_retention_ms = d.cfg.chunk_retention_ms;
  so.retention_days = (uint32_t)d.cfg.retention_days;
  so.rollup_interval_ms = d.cfg.rollup_interval_ms;
  rc = pl_store_open(&d.store, &so, err, sizeof(err));
  if (rc) {
    pl_log_error("%s", err);
    return 1;
  }
  if (rebuild) {
    rc = run_rebuild(&d);
    pl_store_close(d.store);
    return rc;
  }

  d.loop = uv_default_loop();
  d.started = (uint64_t)time(NULL);
  /* Initialised before anything can fail, since shutdown_daemon closes them. */
  uv_signal_init(d.loop, &d.sigint);
  uv_signal_init(d.loop, &d.sigterm);
  uv_signal_init(d.loop, &d.sighup);
  d.sigint.data = d.sigterm.data = d.sighup.data = &d;
  uv_timer_init(d.loop, &d.tick);
  d.tick.data = &d;
  wo.batch_records = (uint32_t)d.cfg.batch_records;
  wo.batch_delay_ms = (uint32_t)d.cfg.batch_delay_ms;
  rc = pl_writer_start(&d.writer, d.loop, d.store, &wo);
  if (rc) {
    pl_log_error("cannot start the writer thread: %s", pl_strerror(rc));
    pl_store_close(d.store);
    return 1;
  }
  pl_writer_on_drain(d.writer, on_writer_drain, &d);

  if (!d.cfg.self_hostname[0]) gethostname(hostname, sizeof(hostname) - 1);
  memset(&io, 0, sizeof(io));
  io.listen = d.cfg.listen;
  io.max_connections = d.cfg.max_connections;
  io.idle_timeout_ms = d.cfg.idle_timeout_ms;
  io.record_max_bytes = d.cfg.record_max_bytes;
  io.message_max_bytes = d.cfg.message_max_bytes;
  io.inflight_max_bytes = d.cfg.inflight_max_bytes;
  io.buffer_max_bytes = d.cfg.buffer_max_bytes;
  io.write_queue_max_bytes = d.cfg.write_queue_max_bytes;
  io.max_depth = (unsigned)d.cfg.max_depth;
  io.auth.shared_key = d.cfg.shared_key;
  io.auth.hostname = d.cfg.self_hostname[0] ? d.cfg.self_hostname : hostname;
  io.auth.users = d.cfg.users;
  io.auth.nusers = d.cfg.nusers;
  rc = pl_ingest_start(&d.ingest, d.loop, d.writer, &io, err, sizeof(err));
  if (rc) {
    pl_log_error("ingest: %s", err);
    d.exit_code = 1;
    shutdown_daemon(&d);
    goto run;
  }
  memset(&qo, 0, sizeof(qo));
  qo.listen = d.cfg.query_listen;
  qo.max_request_bytes = d.cfg.query_max_request_bytes;
  qo.max_connections = d.cfg.query_max_connections;
  qo.write_queue_max_bytes = d.cfg.write_queue_max_bytes;
  qo.idle_timeout_ms = d.cfg.idle_timeout_ms;
  qo.env = on_env;
  qo.env_arg = &d;
  rc = pl_qserver_start(&d.qserver, d.loop, d.store, &qo, err, sizeof(err));
  if (rc) {
    pl_log_error("query: %s", err);
    d.exit_code = 1;
    shutdown_daemon(&d);
    goto run;
  }

  if (strcmp(d.cfg.http_listen, "none") != 0) {
    memset(&ho, 0, sizeof(ho));
    ho.listen = d.cfg.http_listen;
    ho.max_request_bytes = d.cfg.http_max_request_bytes;
    ho.max_connections = d.cfg.http_max_connections;
    ho.idle_timeout_ms = d.cfg.idle_timeout_ms;
    ho.write_queue_max_bytes = d.cfg.write_queue_max_bytes;
    http_sources(&d, &hs);
    rc = pl_http_start(&d.http, d.loop, &hs, &ho, err, sizeof(err));
    if (rc) {
      pl_log_error("http: %s", err);
      d.exit_code = 1;
      shutdown_daemon(&d);
      goto run;
    }
  }

  uv_signal_start(&d.sigint, on_signal, SIGINT);
  uv_signal_start(&d.sigterm, on_signal, SIGTERM);
  uv_signal_start(&d.sighup, on_signal, SIGHUP);
  uv_timer_start(&d.tick, on_tick, 250, 250);
  /* Tests and scripts wait for this line; keep its shape. */
  pl_log_info("ready: ingest %s query %s http %s data %s sync %s version %s",
              pl_ingest_address(d.ingest), pl_qserver_address(d.qserver),
              d.http ? pl_http_address(d.http) : "none", d.cfg.data_dir,
              d.cfg.sync_full ? "full" : "none", PL_VERSION);
run:
  uv_run(d.loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(d.loop);
  if (rc) pl_log_warn("loop closed with handles open: %s", uv_strerror(rc));
  pl_store_close(d.store);
  pl_log_info("stopped");
  return d.exit_code;
}
