/* `parley-bench query`: query-op latency, one outstanding request per connection, requests
 * drawn like real use and encoded before the clock starts; --during-ingest adds an acked
 * ingest load on another thread. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "bench.h"
#include "gen.h"
#include "ingest.h"
#include "parley/date.h"
#include "parley/mpscan.h"

#define MAX_OPS 8

static const char *const known_ops[] = {"activity", "top", "series", "pair", "events", "ping"};
enum { OP_ACTIVITY, OP_TOP, OP_SERIES, OP_PAIR, OP_EVENTS, OP_PING, N_OPS };

typedef struct req {
  uint64_t off;
  uint32_t len;
  uint8_t op; /* index into the run's op list */
} req_t;

struct qrun;

typedef struct qconn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t w;
  struct qrun *run;
  /* Replies land in buf (kept from one to the next: an allocation a reply, as msgpack-c's
   * unpacker makes while the last reply's strings point into its buffer, would be timed);
   * scan frames them, so a reply's time is taken before it is decoded. */
  char *buf;
  size_t len, cap;
  pl_mpscan_t scan;
  size_t cur;       /* request outstanding */
  uint64_t sent_ns;
  int busy;
} qconn_t;

typedef struct qrun {
  uv_loop_t loop;
  uv_timer_t watchdog;
  qconn_t *conns;
  uint32_t nconns, connected;
  pb_buf_t data;
  req_t *reqs;
  size_t nreqs, next, done;
  int timing; /* 0 during the warm-up: replies are checked, not timed */
  int nops;
  int ops[MAX_OPS];
  pb_hist_t all, per_op[MAX_OPS];
  uint64_t reply_bytes;
  uint64_t errors, errors_by_code[8];
  char first_error[256];
  uint64_t progress, last_progress, stalled_s, timeout_s;
  char err[256];
  int failed;
} qrun_t;

static const char *const err_codes[] = {"bad_request", "unknown_op", "not_found", "too_large",
                                        "unavailable", "internal", "other"};

static void qfail(qrun_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void qfail(qrun_t *r, const char *fmt, ...) {
  va_list ap;
  if (!r->failed) {
    r->failed = 1;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
  }
  uv_stop(&r->loop);
}

static const msgpack_object *map_get(const msgpack_object *m, const char *key) {
  size_t n = strlen(key);
  if (m->type != MSGPACK_OBJECT_MAP) return NULL;
  for (uint32_t i = 0; i < m->via.map.size; i++) {
    const msgpack_object_kv *kv = &m->via.map.ptr[i];
    if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == n &&
        memcmp(kv->key.via.str.ptr, key, n) == 0)
      return &kv->val;
  }
  return NULL;
}

/* ---- the stats request, on a plain blocking socket before the run ---- */

typedef struct range {
  uint32_t first, last;
  uint64_t events;
} range_t;

static int parse_date_obj(const msgpack_object *o, uint32_t *day) {
  if (!o || o->type != MSGPACK_OBJECT_STR) return -1;
  return pl_date_parse(o->via.str.ptr, o->via.str.size, day) ? -1 : 0;
}

static void fetch_range(const char *addr, range_t *rg) {
  static const char req[] = "\x82\xa2op\xa5stats\xa3req\x00";
  struct sockaddr_storage ss;
  msgpack_unpacker up;
  msgpack_unpacked u;
  int fd, got = 0;
  if (pb_parse_addr(addr, &ss)) pb_die("query: bad address \"%s\"", addr);
  fd = socket(ss.ss_family, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&ss,
                        ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                : sizeof(struct sockaddr_in6)) != 0)
    pb_die("query: cannot connect to %s", addr);
  if (write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1))
    pb_die("query: cannot send the stats request");
  msgpack_unpacker_init(&up, 65536);
  msgpack_unpacked_init(&u);
  while (!got) {
    ssize_t n;
    msgpack_unpacker_reserve_buffer(&up, 65536);
    n = read(fd, msgpack_unpacker_buffer(&up), msgpack_unpacker_buffer_capacity(&up));
    if (n <= 0) pb_die("query: no reply to stats from %s", addr);
    msgpack_unpacker_buffer_consumed(&up, (size_t)n);
    if (msgpack_unpacker_next(&up, &u) == MSGPACK_UNPACK_SUCCESS) got = 1;
  }
  close(fd);
  {
    const msgpack_object *ok = map_get(&u.data, "ok"), *res = map_get(&u.data, "result");
    const msgpack_object *ev;
    if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN || !ok->via.boolean || !res)
      pb_die("query: the stats op failed; are query ops answering?");
    ev = map_get(res, "events");
    rg->events = ev && ev->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? ev->via.u64 : 0;
    if (rg->events == 0) pb_die("query: the store holds no events; ingest some first");
    if (parse_date_obj(map_get(res, "first_date"), &rg->first) ||
        parse_date_obj(map_get(res, "last_date"), &rg->last))
      pb_die("query: stats has no first_date/last_date");
  }
  msgpack_unpacked_destroy(&u);
  msgpack_unpacker_destroy(&up);
}

/* ---- request generation ---- */

static void pack_lit(msgpack_packer *pk, const char *s) {
  size_t n = strlen(s);
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s, n);
}

static void pack_date(msgpack_packer *pk, uint32_t day) {
  char d[11];
  pl_date_format(day, d);
  msgpack_pack_str(pk, 10);
  msgpack_pack_str_body(pk, d, 10);
}

static void pack_inst(msgpack_packer *pk, const pb_gen_t *g, uint32_t i) {
  size_t n;
  const char *name = pb_gen_inst_name(g, i, &n);
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, name, n);
}

/* A day in [lo, hi], lo clipped to the first stored day. */
static uint32_t draw_day(pb_rng_t *r, int64_t lo, int64_t hi, const range_t *rg) {
  if (lo < rg->first) lo = rg->first;
  if (hi < lo) hi = lo;
  return (uint32_t)(lo + pb_rng_below(r, (uint32_t)(hi - lo + 1)));
}

static void build_request(msgpack_packer *pk, int op, size_t i, pb_gen_t *g, pb_rng_t *r,
                          const range_t *rg, uint64_t window) {
  int64_t last = rg->last;
  switch (op) {
    case OP_ACTIVITY:
      /* A dashboard view: one institution over a window ending in the last year. */
      msgpack_pack_map(pk, 5);
      pack_lit(pk, "op"), pack_lit(pk, "activity");
      pack_lit(pk, "req"), msgpack_pack_uint64(pk, i);
      pack_lit(pk, "institution"), pack_inst(pk, g, pb_gen_pick_inst(g));
      pack_lit(pk, "window"), msgpack_pack_uint64(pk, window ? window : 365);
      pack_lit(pk, "as_of"), pack_date(pk, draw_day(r, last - 364, last, rg));
      break;
    case OP_TOP:
      msgpack_pack_map(pk, 4);
      pack_lit(pk, "op"), pack_lit(pk, "top");
      pack_lit(pk, "req"), msgpack_pack_uint64(pk, i);
      pack_lit(pk, "window"), msgpack_pack_uint64(pk, window ? window : 30);
      pack_lit(pk, "as_of"), pack_date(pk, draw_day(r, last - 364, last, rg));
      break;
    case OP_SERIES: {
      /* One institution, one year by day, ending somewhere in the last year. */
      uint32_t to = draw_day(r, last - 364, last, rg);
      uint32_t from = to >= rg->first + 364 ? to - 364 : rg->first;
      msgpack_pack_map(pk, 6);
      pack_lit(pk, "op"), pack_lit(pk, "series");
      pack_lit(pk, "req"), msgpack_pack_uint64(pk, i);
      pack_lit(pk, "institution"), pack_inst(pk, g, pb_gen_pick_inst(g));
      pack_lit(pk, "from"), pack_date(pk, from);
      pack_lit(pk, "to"), pack_date(pk, to);
      pack_lit(pk, "bucket"), pack_lit(pk, "day");
      break;
    }
    case OP_PAIR: {
      /* A pair that does meet: the reporter and first counterpart of a generated event. */
      pb_event_t e;
      do pb_gen_next(g, &e);
      while (e.dup);
      msgpack_pack_map(pk, 4);
      pack_lit(pk, "op"), pack_lit(pk, "pair");
      pack_lit(pk, "req"), msgpack_pack_uint64(pk, i);
      pack_lit(pk, "a"), pack_inst(pk, g, e.inst);
      pack_lit(pk, "b"), pack_inst(pk, g, e.cp[0]);
      break;
    }
    case OP_PING:
      msgpack_pack_map(pk, 2);
      pack_lit(pk, "op"), pack_lit(pk, "ping");
      pack_lit(pk, "req"), msgpack_pack_uint64(pk, i);
      break;
    default:
      msgpack_pack_map(pk, 4);
      pack_lit(pk, "op"), pack_lit(pk, "events");
      pack_lit(pk, "req"), msgpack_pack_uint64(pk, i);
      pack_lit(pk, "from"), pack_date(pk, draw_day(r, rg->first, last, rg));
      pack_lit(pk, "limit"), msgpack_pack_uint64(pk, 100);
      break;
  }
}

/* ---- the run ---- */

static void send_next(qconn_t *c);

static void on_qwrite(uv_write_t *w, int status) {
  qconn_t *c = w->data;
  if (status < 0 && status != UV_ECANCELED) qfail(c->run, "write failed: %s", uv_strerror(status));
}

static void send_next(qconn_t *c) {
  qrun_t *r = c->run;
  uv_buf_t buf;
  int rc;
  if (r->next >= r->nreqs) return;
  c->cur = r->next++;
  c->busy = 1;
  buf = uv_buf_init(r->data.p + r->reqs[c->cur].off, r->reqs[c->cur].len);
  c->w.data = c;
  c->sent_ns = pb_now_ns();
  if ((rc = uv_write(&c->w, (uv_stream_t *)&c->tcp, &buf, 1, on_qwrite)))
    qfail(r, "write failed: %s", uv_strerror(rc));
}

static void on_qalloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  qconn_t *c = h->data;
  (void)hint;
  if (c->cap - c->len < 65536) {
    size_t cap = c->cap ? c->cap * 2 : 131072;
    char *p;
    while (cap - c->len < 65536) cap *= 2;
    if (!(p = realloc(c->buf, cap))) {
      *buf = uv_buf_init(NULL, 0);
      return;
    }
    c->buf = p;
    c->cap = cap;
  }
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void handle_reply(qconn_t *c, const msgpack_object *o, uint64_t ns) {
  qrun_t *r = c->run;
  const msgpack_object *ok = map_get(o, "ok"), *rq = map_get(o, "req");
  const req_t *q = &r->reqs[c->cur];
  if (!c->busy) {
    qfail(r, "a reply arrived with no request outstanding");
    return;
  }
  if (!rq || rq->type != MSGPACK_OBJECT_POSITIVE_INTEGER || rq->via.u64 != c->cur) {
    qfail(r, "reply out of order (req %zu expected)", c->cur);
    return;
  }
  c->busy = 0;
  if (r->timing) {
    pb_hist_add_ns(&r->all, ns);
    pb_hist_add_ns(&r->per_op[q->op], ns);
  }
  if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN || !ok->via.boolean) {
    const msgpack_object *e = map_get(o, "error"), *code = e ? map_get(e, "code") : NULL;
    const msgpack_object *msg = e ? map_get(e, "message") : NULL;
    int k = 6;
    if (code && code->type == MSGPACK_OBJECT_STR)
      for (int i = 0; i < 6; i++)
        if (strlen(err_codes[i]) == code->via.str.size &&
            memcmp(err_codes[i], code->via.str.ptr, code->via.str.size) == 0)
          k = i;
    r->errors++;
    r->errors_by_code[k]++;
    if (!r->first_error[0])
      snprintf(r->first_error, sizeof(r->first_error), "%s: %.*s", err_codes[k],
               msg && msg->type == MSGPACK_OBJECT_STR ? (int)msg->via.str.size : 0,
               msg && msg->type == MSGPACK_OBJECT_STR ? msg->via.str.ptr : "");
  }
  r->done++;
  r->progress++;
  if (r->done == r->nreqs) uv_stop(&r->loop);
  else send_next(c);
}

static void on_qread(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  qconn_t *c = st->data;
  qrun_t *r = c->run;
  msgpack_unpacked u;
  uint64_t arrived;
  (void)buf;
  if (nread < 0) {
    qfail(r, "query connection: %s",
          nread == UV_EOF ? "closed by parleyd" : uv_strerror((int)nread));
    return;
  }
  arrived = pb_now_ns(); /* when the bytes that may end a reply came in */
  r->reply_bytes += (uint64_t)nread;
  c->len += (size_t)nread;
  msgpack_unpacked_init(&u);
  for (;;) {
    /* The latency is request written -> whole reply received (the read that brought its
     * last byte): the framer finds that byte, and msgpack-c decodes the reply (to check
     * req and ok) after, so the figure leaves out building this client's copy of a large
     * reply, which depends on the client, not on parleyd. */
    ssize_t framed = pl_mpscan_run(&c->scan, (const unsigned char *)c->buf, c->len);
    size_t off = 0;
    uint64_t ns = arrived - c->sent_ns;
    msgpack_unpack_return rc;
    if (framed == 0) break;
    if (framed < 0 ||
        (rc = msgpack_unpack_next(&u, c->buf, (size_t)framed, &off)) != MSGPACK_UNPACK_SUCCESS) {
      qfail(r, "undecodable reply");
      break;
    }
    pl_mpscan_reset(&c->scan);
    handle_reply(c, &u.data, ns);
    /* u's strings point into buf: it is done with before buf moves */
    memmove(c->buf, c->buf + framed, c->len - (size_t)framed);
    c->len -= (size_t)framed;
    if (r->failed) break;
  }
  msgpack_unpacked_destroy(&u);
}

static void on_qconnect(uv_connect_t *req, int status) {
  qconn_t *c = req->data;
  qrun_t *r = c->run;
  if (status < 0) {
    qfail(r, "connect failed: %s", uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_qalloc, on_qread);
  if (++r->connected == r->nconns) uv_stop(&r->loop);
}

static void on_qwatchdog(uv_timer_t *t) {
  qrun_t *r = t->data;
  if (r->progress != r->last_progress) {
    r->last_progress = r->progress;
    r->stalled_s = 0;
    return;
  }
  if (++r->stalled_s >= r->timeout_s)
    qfail(r, "no reply for %llu s (are query ops answering?)", (unsigned long long)r->timeout_s);
}

static void on_qclosed(uv_handle_t *h) { (void)h; }

/* ---- the concurrent ingest load ---- */

typedef struct ingest_thread {
  pthread_t th;
  pb_ingest_opts_t o;
  pb_ingest_result_t res;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int started, finished, rc;
  uint64_t finished_ns;
  char err[256];
} ingest_thread_t;

static void on_ingest_started(void *arg) {
  ingest_thread_t *it = arg;
  pthread_mutex_lock(&it->mu);
  it->started = 1;
  pthread_cond_broadcast(&it->cv);
  pthread_mutex_unlock(&it->mu);
}

static void *ingest_main(void *arg) {
  ingest_thread_t *it = arg;
  it->rc = pb_ingest_run(&it->o, &it->res, it->err, sizeof(it->err));
  pthread_mutex_lock(&it->mu);
  it->finished = 1;
  it->finished_ns = pb_now_ns();
  it->started = 1; /* a failure before the start must not leave the waiter hanging */
  pthread_cond_broadcast(&it->cv);
  pthread_mutex_unlock(&it->mu);
  return NULL;
}

static const char query_usage[] =
    "usage: parley-bench query [--addr HOST:PORT] [--op OP[,OP...]] [--n N] [--warmup W]\n"
    "         [--conns C]\n"
    "         [--window DAYS] [--seed S] [--timeout SECONDS] [--quiet]\n"
    "         [--during-ingest HOST:PORT [--ingest-events N] [--ingest-mode MODE]\n"
    "          [--ingest-conns C] [--ingest-batch B] [--ingest-window W]]\n"
    "Sends N requests (default 10,000) to parleyd's query port (127.0.0.1:24225) over C\n"
    "connections (4), one outstanding request each. OP is activity (window 365, one\n"
    "institution weighted like the data), top (window 30), series (one institution, a year\n"
    "by day), pair (two institutions that meet), events (100 from a random date) or ping\n"
    "(the round trip with no store work, the floor under the others); a comma\n"
    "list alternates them. Dates fall in what the store holds (the stats op tells).\n"
    "--warmup sends W more requests of the same mix first, untimed (default 0).\n"
    "--during-ingest runs an acked ingest load (default 2,000,000 packed records, 1000 a\n"
    "message, 4 connections) against that Forward port at the same time.\n";

int pb_cmd_query(int argc, char **argv) {
  const char *addr = "127.0.0.1:24225", *ops = "activity", *ing_addr = NULL,
             *ing_mode = "packed";
  uint64_t n = 10000, warmup = 0, conns = 4, window = 0, seed = 1, timeout_s = 60,
           ing_events = 2000000,
           ing_conns = 4, ing_batch = 1000, ing_window = 8;
  int quiet = 0;
  pb_opt_t opts[] = {{"--addr", PB_OPT_STR, &addr},
                     {"--op", PB_OPT_STR, &ops},
                     {"--n", PB_OPT_U64, &n},
                     {"--warmup", PB_OPT_U64, &warmup},
                     {"--conns", PB_OPT_U64, &conns},
                     {"--window", PB_OPT_U64, &window},
                     {"--seed", PB_OPT_U64, &seed},
                     {"--timeout", PB_OPT_U64, &timeout_s},
                     {"--quiet", PB_OPT_FLAG, &quiet},
                     {"--during-ingest", PB_OPT_STR, &ing_addr},
                     {"--ingest-events", PB_OPT_U64, &ing_events},
                     {"--ingest-mode", PB_OPT_STR, &ing_mode},
                     {"--ingest-conns", PB_OPT_U64, &ing_conns},
                     {"--ingest-batch", PB_OPT_U64, &ing_batch},
                     {"--ingest-window", PB_OPT_U64, &ing_window}};
  static qrun_t r;
  range_t rg;
  pb_gen_opts_t go = {0, 0, 0, -1, -1};
  pb_gen_t *g;
  pb_rng_t rng;
  struct sockaddr_storage ss;
  ingest_thread_t it;
  msgpack_packer pk;
  uint64_t t0, t1;
  double secs;
  char a[32], b[32];
  int rc;

  pb_parse_opts("query", argc, argv, opts, sizeof(opts) / sizeof(opts[0]), query_usage);
  if (n < 1) pb_die("query: --n must be at least 1");
  if (conns < 1 || conns > 1000) pb_die("query: --conns must be 1..1000");
  if (pb_parse_addr(addr, &ss)) pb_die("query: bad address \"%s\"", addr);
  {
    /* The op list: "activity,top" alternates the two. */
    char list[256], *save = NULL;
    snprintf(list, sizeof(list), "%s", ops);
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
      int k = -1;
      for (int i = 0; i < N_OPS; i++)
        if (strcmp(tok, known_ops[i]) == 0) k = i;
      if (k < 0)
        pb_die("query: --op: unknown op \"%s\" (activity, top, series, pair, events, ping)", tok);
      if (r.nops == MAX_OPS) pb_die("query: --op: at most %d ops", MAX_OPS);
      r.ops[r.nops++] = k;
    }
    if (r.nops == 0) pb_die("query: --op: no op given");
  }
  fetch_range(addr, &rg);

  /* Requests, all encoded before the clock starts. */
  go.seed = seed;
  g = pb_gen_new(&go);
  if (!g) pb_die("query: out of memory");
  rng.s = seed * 0x2545F4914F6CDD1Dull + 7;
  r.reqs = calloc(warmup + n, sizeof(*r.reqs));
  if (!r.reqs) pb_die("query: out of memory");
  msgpack_packer_init(&pk, &r.data, pb_buf_write);
  for (size_t i = 0; i < warmup + n; i++) {
    uint8_t k = (uint8_t)(i % (size_t)r.nops);
    r.reqs[i].off = r.data.n;
    r.reqs[i].op = k;
    build_request(&pk, r.ops[k], i, g, &rng, &rg, window);
    if (!r.data.p) pb_die("query: out of memory");
    r.reqs[i].len = (uint32_t)(r.data.n - r.reqs[i].off);
  }
  r.nreqs = warmup;
  r.timeout_s = timeout_s;
  pb_hist_init(&r.all);
  for (int k = 0; k < MAX_OPS; k++) pb_hist_init(&r.per_op[k]);

  uv_loop_init(&r.loop);
  uv_timer_init(&r.loop, &r.watchdog);
  r.watchdog.data = &r;
  r.nconns = (uint32_t)conns;
  r.conns = calloc(conns, sizeof(*r.conns));
  if (!r.conns) pb_die("query: out of memory");
  for (uint32_t i = 0; i < r.nconns; i++) {
    qconn_t *c = &r.conns[i];
    c->run = &r;
    pl_mpscan_init(&c->scan, (size_t)1 << 30, PL_MPSCAN_MAX_DEPTH);
    uv_tcp_init(&r.loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    if ((rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&ss, on_qconnect)))
      pb_die("query: connect to %s: %s", addr, uv_strerror(rc));
  }
  uv_run(&r.loop, UV_RUN_DEFAULT);
  if (r.failed) pb_die("query: %s", r.err);

  memset(&it, 0, sizeof(it));
  if (ing_addr) {
    pthread_mutex_init(&it.mu, NULL);
    pthread_cond_init(&it.cv, NULL);
    if (pb_parse_mode(ing_mode, &it.o.mode)) pb_die("query: --ingest-mode: unknown mode");
    it.o.addr = ing_addr;
    it.o.events = ing_events;
    it.o.conns = (uint32_t)ing_conns;
    it.o.batch = it.o.mode == PB_MODE_MESSAGE ? 1 : (uint32_t)ing_batch;
    it.o.window = (uint32_t)ing_window;
    it.o.ack = 1;
    /* Another seed than the stored data's: these must be new events, not duplicates. */
    it.o.seed = seed + 1000;
    it.o.slab_bytes = 1024ull * 1024 * 1024;
    it.o.timeout_s = timeout_s;
    it.o.tag = "parley.bench";
    it.o.quiet = 1;
    it.o.started = on_ingest_started;
    it.o.started_arg = &it;
    if (pthread_create(&it.th, NULL, ingest_main, &it)) pb_die("query: cannot start a thread");
    pthread_mutex_lock(&it.mu);
    while (!it.started) pthread_cond_wait(&it.cv, &it.mu);
    pthread_mutex_unlock(&it.mu);
    if (it.finished && it.rc) pb_die("query: --during-ingest: %s", it.err);
  }

  uv_timer_start(&r.watchdog, on_qwatchdog, 1000, 1000);
  if (warmup) {
    /* Untimed requests first, of the same mix: a daemon just started maps the store's
     * pages on first touch and builds its per-thread tables, which is not its steady
     * state. */
    for (uint32_t i = 0; i < r.nconns; i++) send_next(&r.conns[i]);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    if (r.failed) pb_die("query: %s", r.err);
    r.errors = r.reply_bytes = 0;
    memset(r.errors_by_code, 0, sizeof(r.errors_by_code));
    r.first_error[0] = 0;
  }
  r.nreqs = warmup + n;
  r.timing = 1;
  t0 = pb_now_ns();
  for (uint32_t i = 0; i < r.nconns; i++) send_next(&r.conns[i]);
  uv_run(&r.loop, UV_RUN_DEFAULT);
  t1 = pb_now_ns();
  uv_timer_stop(&r.watchdog);
  if (r.failed) pb_die("query: %s", r.err);
  secs = (double)(t1 - t0) / 1e9;

  for (uint32_t i = 0; i < r.nconns; i++) uv_close((uv_handle_t *)&r.conns[i].tcp, on_qclosed);
  uv_close((uv_handle_t *)&r.watchdog, on_qclosed);
  for (int i = 0; i < 100 && uv_run(&r.loop, UV_RUN_DEFAULT); i++) {
  }
  uv_loop_close(&r.loop);

  if (ing_addr) {
    pthread_join(it.th, NULL);
    if (it.rc) pb_die("query: --during-ingest: %s", it.err);
  }
  if (r.errors == n) pb_die("query: every request failed; the first: %s", r.first_error);

  if (!quiet) {
    char d0[11], d1[11];
    pl_date_format(rg.first, d0);
    pl_date_format(rg.last, d1);
    printf("query: %s, %s requests over %u connections (one outstanding each); store of %s "
           "events, %s..%s\n",
           ops, pb_fmt_count((double)n, a), r.nconns, pb_fmt_count((double)rg.events, b), d0, d1);
    printf("  %.3f s: %s queries/s, %.1f MB/s of replies\n", secs,
           pb_fmt_count((double)n / secs, a), (double)r.reply_bytes / 1e6 / secs);
    for (int k = 0; k < r.nops; k++) pb_print_latency(known_ops[r.ops[k]], &r.per_op[k]);
    if (r.nops > 1) pb_print_latency("all", &r.all);
    if (r.errors) {
      printf("  %llu error replies:", (unsigned long long)r.errors);
      for (int k = 0; k < 7; k++)
        if (r.errors_by_code[k])
          printf(" %s %llu", err_codes[k], (unsigned long long)r.errors_by_code[k]);
      printf("; the first: %s\n", r.first_error);
    }
    if (ing_addr) {
      printf("  during ingest: %s events in %.3f s, %s events/s, ack p99 %.3f ms%s\n",
             pb_fmt_count((double)it.res.events, a), it.res.seconds,
             pb_fmt_count((double)it.res.events / it.res.seconds, b),
             pb_hist_quantile_us(&it.res.lat, 0.99) / 1000.0,
             it.finished_ns < t1 ? " (it finished before the queries did)" : "");
    }
  }
  pb_print_result(n, secs, (double)r.reply_bytes / 1e6, &r.all);
  for (uint32_t i = 0; i < r.nconns; i++) free(r.conns[i].buf);
  free(r.conns);
  free(r.reqs);
  pb_buf_free(&r.data);
  pb_gen_free(g);
  return 0;
}
