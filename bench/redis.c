/* `parley-bench redis`: the same events into Redis as a user would build this there (XADD
 * of each record, HINCRBY of per-(day, institution) counters), pipelined. Uses hiredis when
 * bench.mk found it (HAVE_HIREDIS); without it the command says what to install. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#ifdef HAVE_HIREDIS
#include <hiredis/hiredis.h>
#include <pthread.h>

#include "gen.h"
#include "parley/date.h"

/* One event as the client holds it before sending: the record as MessagePack, the key of
 * its counters and its participants. */
typedef struct rev {
  uint64_t rec_off;
  uint32_t rec_len;
  uint32_t participants;
  uint64_t key_off;
  uint32_t key_len;
  uint16_t inst;
  char date[10];
} rev_t;

typedef struct rslab {
  pb_buf_t data;
  rev_t *ev;
  size_t n, cap;
} rslab_t;

typedef struct rthread {
  pthread_t th;
  const rslab_t *slab;
  const pb_gen_t *gen;
  redisContext *ctx;
  uint32_t idx, nthreads;
  uint64_t pipeline;
  pb_hist_t lat;
  char err[256];
  int failed;
} rthread_t;

static void append_event(rthread_t *t, const rev_t *e) {
  const char *d = t->slab->data.p;
  size_t nlen;
  const char *name = pb_gen_inst_name(t->gen, e->inst, &nlen);
  char parts[16];
  const char *xargv[] = {"XADD", "parley:events", "*", "institution", name, "date", e->date,
                         "record", d + e->rec_off};
  size_t xlen[] = {4, 13, 1, 11, nlen, 4, 10, 6, e->rec_len};
  const char *h1[] = {"HINCRBY", d + e->key_off, "events", "1"};
  size_t h1len[] = {7, e->key_len, 6, 1};
  const char *h2[] = {"HINCRBY", d + e->key_off, "participants", parts};
  size_t h2len[] = {7, e->key_len, 12, 0};
  h2len[3] = (size_t)snprintf(parts, sizeof(parts), "%u", e->participants);
  redisAppendCommandArgv(t->ctx, 9, xargv, xlen);
  redisAppendCommandArgv(t->ctx, 4, h1, h1len);
  redisAppendCommandArgv(t->ctx, 4, h2, h2len);
}

/* Reads the replies of n commands; returns 0 or -1 (t->err set). */
static int read_replies(rthread_t *t, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    redisReply *rep;
    if (redisGetReply(t->ctx, (void **)&rep) != REDIS_OK) {
      snprintf(t->err, sizeof(t->err), "redis: %s", t->ctx->errstr);
      return -1;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
      snprintf(t->err, sizeof(t->err), "redis replied: %s", rep->str);
      freeReplyObject(rep);
      return -1;
    }
    freeReplyObject(rep);
  }
  return 0;
}

/* Two pipelines in flight: the next one is queued before the replies of the previous one
 * are read, so Redis never idles while the client formats. */
static void *rthread_main(void *arg) {
  rthread_t *t = arg;
  const rslab_t *s = t->slab;
  uint64_t pending_cmds = 0, pending_sent = 0;
  size_t i = t->idx;
  while (i < s->n || pending_cmds) {
    uint64_t cmds = 0, sent = pb_now_ns();
    for (uint64_t k = 0; k < t->pipeline && i < s->n; k++, i += t->nthreads) {
      append_event(t, &s->ev[i]);
      cmds += 3;
    }
    if (pending_cmds) {
      if (read_replies(t, pending_cmds)) {
        t->failed = 1;
        return NULL;
      }
      pb_hist_add_ns(&t->lat, pb_now_ns() - pending_sent);
    } else if (cmds) {
      /* Nothing to read yet: push this pipeline out now. */
      int done = 0;
      while (!done)
        if (redisBufferWrite(t->ctx, &done) != REDIS_OK) {
          snprintf(t->err, sizeof(t->err), "redis: %s", t->ctx->errstr);
          t->failed = 1;
          return NULL;
        }
    }
    pending_cmds = cmds;
    pending_sent = sent;
  }
  return NULL;
}

static void build_slab(pb_gen_t *g, rslab_t *s, uint64_t *left, uint64_t max_bytes) {
  msgpack_packer pk;
  s->data.n = 0;
  s->n = 0;
  msgpack_packer_init(&pk, &s->data, pb_buf_write);
  while (*left > 0 && s->data.n < max_bytes) {
    pb_event_t e;
    rev_t *r;
    char date[11];
    size_t nlen;
    const char *name;
    if (s->n == s->cap) {
      size_t cap = s->cap ? s->cap * 2 : 65536;
      rev_t *v = realloc(s->ev, cap * sizeof(*v));
      if (!v) pb_die("redis: out of memory");
      s->ev = v;
      s->cap = cap;
    }
    pb_gen_next(g, &e);
    r = &s->ev[s->n++];
    r->rec_off = s->data.n;
    if (pb_gen_pack(g, &e, &pk)) pb_die("redis: out of memory");
    r->rec_len = (uint32_t)(s->data.n - r->rec_off);
    r->participants = e.has_participants ? e.participants : 0;
    r->inst = e.inst;
    pl_date_format(e.day, date);
    memcpy(r->date, date, 10);
    /* Key of the (day, institution) counters: "parley:day:2015-01-01:<institution>". */
    name = pb_gen_inst_name(g, e.inst, &nlen);
    r->key_off = s->data.n;
    if (pb_buf_append(&s->data, "parley:day:", 11) || pb_buf_append(&s->data, date, 10) ||
        pb_buf_append(&s->data, ":", 1) || pb_buf_append(&s->data, name, nlen))
      pb_die("redis: out of memory");
    r->key_len = (uint32_t)(s->data.n - r->key_off);
    (*left)--;
  }
}

static const char redis_usage[] =
    "usage: parley-bench redis [--addr HOST:PORT] [--events N] [--conns C] [--pipeline P]\n"
    "         [--seed S] [--slab-mb MB] [--quiet]\n"
    "Loads N generated events (default 1,000,000) into the Redis server at --addr\n"
    "(127.0.0.1:6379): per event XADD parley:events * institution .. date .. record <msgpack>\n"
    "and HINCRBY parley:day:<date>:<institution> events 1 / participants n, P events (1000)\n"
    "a pipeline, two pipelines in flight on each of C connections (4). Commands are built from\n"
    "records generated before the clock starts. Latency figures are per pipeline.\n";

int pb_cmd_redis(int argc, char **argv) {
  const char *addr = "127.0.0.1:6379";
  uint64_t events = 1000000, conns = 4, pipeline = 1000, seed = 1, slab_mb = 1024;
  int quiet = 0;
  pb_opt_t opts[] = {{"--addr", PB_OPT_STR, &addr},     {"--events", PB_OPT_U64, &events},
                     {"--conns", PB_OPT_U64, &conns},   {"--pipeline", PB_OPT_U64, &pipeline},
                     {"--seed", PB_OPT_U64, &seed},     {"--slab-mb", PB_OPT_U64, &slab_mb},
                     {"--quiet", PB_OPT_FLAG, &quiet}};
  pb_gen_opts_t go = {0, 0, 0, -1, -1};
  pb_gen_t *g;
  rslab_t slab;
  rthread_t *th;
  pb_hist_t lat;
  char host[256];
  const char *colon;
  uint64_t left, gen_ns = 0, run_ns = 0, bytes = 0;
  int port;
  char a[32];

  pb_parse_opts("redis", argc, argv, opts, sizeof(opts) / sizeof(opts[0]), redis_usage);
  colon = strrchr(addr, ':');
  if (!colon || (size_t)(colon - addr) >= sizeof(host) || (port = atoi(colon + 1)) <= 0)
    pb_die("redis: bad address \"%s\"", addr);
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = '\0';
  if (conns < 1 || conns > 256) pb_die("redis: --conns must be 1..256");
  if (pipeline < 1) pb_die("redis: --pipeline must be at least 1");

  go.seed = seed;
  g = pb_gen_new(&go);
  th = calloc(conns, sizeof(*th));
  if (!g || !th) pb_die("redis: out of memory");
  memset(&slab, 0, sizeof(slab));
  pb_hist_init(&lat);
  for (uint32_t i = 0; i < conns; i++) {
    th[i].ctx = redisConnect(host, port);
    if (!th[i].ctx || th[i].ctx->err)
      pb_die("redis: cannot connect to %s: %s", addr, th[i].ctx ? th[i].ctx->errstr : "no memory");
    pb_hist_init(&th[i].lat);
  }
  left = events;
  while (left > 0) {
    uint64_t g0 = pb_now_ns(), t0;
    build_slab(g, &slab, &left, slab_mb * 1024 * 1024);
    gen_ns += pb_now_ns() - g0;
    bytes += slab.data.n;
    t0 = pb_now_ns();
    for (uint32_t i = 0; i < conns; i++) {
      th[i].slab = &slab;
      th[i].gen = g;
      th[i].idx = i;
      th[i].nthreads = (uint32_t)conns;
      th[i].pipeline = pipeline;
      if (pthread_create(&th[i].th, NULL, rthread_main, &th[i]))
        pb_die("redis: cannot start a thread");
    }
    for (uint32_t i = 0; i < conns; i++) pthread_join(th[i].th, NULL);
    run_ns += pb_now_ns() - t0;
    for (uint32_t i = 0; i < conns; i++)
      if (th[i].failed) pb_die("redis: %s", th[i].err);
  }
  for (uint32_t i = 0; i < conns; i++) {
    pb_hist_merge(&lat, &th[i].lat);
    redisFree(th[i].ctx);
  }
  if (!quiet) {
    double secs = (double)run_ns / 1e9;
    printf("redis: %s events (XADD + 2 HINCRBY each), %llu connections, %llu events a pipeline\n",
           pb_fmt_count((double)events, a), (unsigned long long)conns,
           (unsigned long long)pipeline);
    printf("  encoded in %.2f s untimed; %.3f s: %s events/s\n", (double)gen_ns / 1e9, secs,
           pb_fmt_count((double)events / secs, a));
    pb_print_latency("pipeline", &lat);
  }
  pb_print_result(events, (double)run_ns / 1e9, (double)bytes / 1e6, &lat);
  free(slab.ev);
  pb_buf_free(&slab.data);
  free(th);
  pb_gen_free(g);
  return 0;
}

#else

int pb_cmd_redis(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr,
          "parley-bench: redis: built without hiredis; run `make deps-bench`, then rebuild\n");
  return 2;
}

#endif
