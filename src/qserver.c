/* Query connections: frame request maps with the bounded scanner, run each on the work pool
 * (its own short read transaction inside pl_query_exec), write replies in order. */
#include "parley/qserver.h"

#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parley/error.h"
#include "parley/log.h"
#include "parley/mpscan.h"
#include "parley/net.h"

#define READ_CHUNK (64 * 1024)
#define STOP_GRACE_MS 2000 /* how long a stop waits for replies to be read */

static const char *op_names[PL_QSERVER_OPS] = {"ping",   "stats",        "activity", "top",
                                                "series", "pair",         "topics",   "institutions",
                                                "events", "rejects",      "other"};

typedef struct qconn {
  pl_stream_t h;
  uv_timer_t idle;
  uv_work_t work;
  struct pl_qserver *qs;
  struct qconn *prev, *next;
  char peer[96];
  char *buf;
  size_t len, cap;
  pl_mpscan_t scan;
  pl_wq_t wq;
  /* the request being run on the work pool */
  size_t frame_len;
  int frame_error;         /* PL_ETOOBIG / PL_EDEPTH / PL_EPROTO: reply and close */
  msgpack_sbuffer reply;
  int busy;
  int reading;
  int eof;
  int closing;
  int close_after;
  int handles;
  uint64_t last_active;
} qconn_t;

struct pl_qserver {
  uv_loop_t *loop;
  pl_store_t *store;
  pl_qserver_opts_t o;
  pl_listener_t listener;
  qconn_t *conns;
  int stopping;
  uint64_t stop_started;
  int listener_closed;
  void (*stop_cb)(void *);
  void *stop_arg;
  pl_qserver_stats_t st;
  pthread_mutex_t op_mu;
  pl_qserver_op_stats_t ops[PL_QSERVER_OPS];
};

static void process(qconn_t *c);
static void check_stopped(pl_qserver_t *qs);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static uint64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000;
}

void pl_qserver_record(pl_qserver_t *qs, pl_str_t op, uint64_t us) {
  int i, b = 0;
  for (i = 0; i < PL_QSERVER_OPS - 1; i++)
    if (pl_str_eq(op, op_names[i])) break;
  for (uint64_t v = us / 16; v && b < PL_QSERVER_HIST - 1; v >>= 1) b++;
  pthread_mutex_lock(&qs->op_mu);
  qs->ops[i].count++;
  qs->ops[i].us_sum += us;
  qs->ops[i].us_hist[b]++;
  pthread_mutex_unlock(&qs->op_mu);
}

void pl_qserver_get_op_stats(pl_qserver_t *qs, pl_qserver_op_stats_t out[PL_QSERVER_OPS]) {
  pthread_mutex_lock(&qs->op_mu);
  memcpy(out, qs->ops, sizeof(qs->ops));
  pthread_mutex_unlock(&qs->op_mu);
}

static void conn_free(qconn_t *c) {
  pl_qserver_t *qs = c->qs;
  if (c->prev) c->prev->next = c->next;
  else qs->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  free(c->buf);
  msgpack_sbuffer_destroy(&c->reply);
  qs->st.connections--;
  free(c);
  check_stopped(qs);
}

static void on_closed(uv_handle_t *h) {
  qconn_t *c = h->data;
  if (--c->handles == 0 && !c->busy) conn_free(c);
}

static void conn_close(qconn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  if (c->reading) uv_read_stop(&c->h.stream);
  c->reading = 0;
  uv_close(&c->h.handle, on_closed);
  uv_close((uv_handle_t *)&c->idle, on_closed);
}

static void update_reading(qconn_t *c) {
  /* Stop reading while the buffer already holds a whole request's worth, or the client does
   * not read its replies: pipelined requests wait in the socket, not in our memory. */
  /* Not while a request runs either: it decodes in place from c->buf, which a read could
   * move (realloc). */
  int want = !c->closing && !c->eof && !c->close_after && !c->busy &&
             c->len <= c->qs->o.max_request_bytes && c->wq.pending <= c->qs->o.write_queue_max_bytes &&
             !c->qs->stopping;
  if (want && !c->reading) {
    if (uv_read_start(&c->h.stream, on_alloc, on_read) == 0) c->reading = 1;
  } else if (!want && c->reading) {
    uv_read_stop(&c->h.stream);
    c->reading = 0;
  }
}

static void maybe_finish(qconn_t *c) {
  if (c->closing || c->busy) return;
  if ((c->eof || c->close_after || c->qs->stopping) && c->wq.pending == 0) conn_close(c);
}

static void on_written(pl_wq_t *q) {
  qconn_t *c = (qconn_t *)((char *)q - offsetof(qconn_t, wq));
  if (q->error && !c->closing) {
    conn_close(c);
    return;
  }
  c->last_active = uv_now(c->qs->loop); /* a client reading slowly is not idle */
  process(c); /* a request may be waiting for the queue to drain */
  update_reading(c);
  maybe_finish(c);
}

static void work_cb(uv_work_t *req) {
  qconn_t *c = req->data;
  pl_qserver_t *qs = c->qs;
  msgpack_packer pk;
  msgpack_unpacked u;
  size_t off = 0;
  uint64_t t0 = mono_us();
  pl_str_t op = {"", 0};
  msgpack_sbuffer_clear(&c->reply);
  msgpack_packer_init(&pk, &c->reply, msgpack_sbuffer_write);
  if (c->frame_error) {
    pl_query_pack_error(&pk, NULL, c->frame_error == PL_ETOOBIG ? PL_QERR_TOO_LARGE : PL_QERR_BAD_REQUEST,
                        c->frame_error == PL_ETOOBIG ? "request larger than query.max_request_bytes"
                        : c->frame_error == PL_EDEPTH ? "request nested too deeply"
                                                      : "request is not valid MessagePack");
    return;
  }
  msgpack_unpacked_init(&u);
  /* The frame was validated by the scanner: decoding allocates at most in proportion to it. */
  if (msgpack_unpack_next(&u, c->buf, c->frame_len, &off) != MSGPACK_UNPACK_SUCCESS) {
    pl_query_pack_error(&pk, NULL, PL_QERR_BAD_REQUEST, "request is not valid MessagePack");
  } else {
    pl_query_env_t env = {0};
    op = pl_query_op_name(&u.data);
    if (qs->o.env) qs->o.env(qs->o.env_arg, &env);
    if (pl_query_exec(qs->store, &env, &u.data, &pk) != 0) {
      msgpack_sbuffer_clear(&c->reply);
      pl_query_pack_error(&pk, NULL, PL_QERR_INTERNAL, "out of memory");
    }
  }
  pl_qserver_record(qs, op, mono_us() - t0);
  msgpack_unpacked_destroy(&u);
}

static void after_work(uv_work_t *req, int status) {
  qconn_t *c = req->data;
  pl_qserver_t *qs = c->qs;
  (void)status;
  c->busy = 0;
  qs->st.running--;
  qs->st.requests++;
  if (c->closing) {
    if (c->handles == 0) conn_free(c);
    return;
  }
  if (pl_net_write(&c->h.stream, &c->wq, c->reply.data, c->reply.size) != 0) {
    conn_close(c);
    return;
  }
  if (c->frame_error) {
    qs->st.errors++;
    pl_log_warn("query: %s: closing: %s", c->peer, pl_strerror(c->frame_error));
    c->close_after = 1;
    c->len = 0;
  } else {
    memmove(c->buf, c->buf + c->frame_len, c->len - c->frame_len);
    c->len -= c->frame_len;
  }
  c->frame_len = 0;
  pl_mpscan_reset(&c->scan);
  if (c->reply.alloc > 1024 * 1024) {
    /* Don't keep a big page of events around for the next ping. */
    msgpack_sbuffer_destroy(&c->reply);
    msgpack_sbuffer_init(&c->reply);
  }
  process(c);
  update_reading(c);
  maybe_finish(c);
}

/* Starts the next complete request, if any. */
static void process(qconn_t *c) {
  ssize_t n;
  if (c->busy || c->closing || c->close_after || c->qs->stopping || c->len == 0) return;
  if (c->wq.pending > c->qs->o.write_queue_max_bytes) return; /* resumed by on_written */
  n = pl_mpscan_run(&c->scan, (const unsigned char *)c->buf, c->len);
  if (n == 0) return;
  if (n < 0) {
    c->frame_error = (int)n;
  } else {
    c->frame_len = (size_t)n;
    c->frame_error = 0;
  }
  c->busy = 1;
  c->qs->st.running++;
  c->work.data = c;
  if (uv_queue_work(c->qs->loop, &c->work, work_cb, after_work) != 0) {
    c->busy = 0;
    c->qs->st.running--;
    conn_close(c);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  qconn_t *c = h->data;
  (void)hint;
  if (c->cap - c->len < READ_CHUNK) {
    size_t cap = c->cap ? c->cap * 2 : READ_CHUNK * 2;
    while (cap - c->len < READ_CHUNK) cap *= 2;
    char *p = realloc(c->buf, cap);
    if (!p) {
      *buf = uv_buf_init(NULL, 0);
      return;
    }
    c->buf = p;
    c->cap = cap;
  }
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  qconn_t *c = s->data;
  (void)b;
  if (nread < 0) {
    if (nread == UV_EOF) {
      c->eof = 1;
      update_reading(c);
      process(c);
      maybe_finish(c);
    } else {
      conn_close(c);
    }
    return;
  }
  c->len += (size_t)nread;
  c->last_active = uv_now(c->qs->loop);
  process(c);
  update_reading(c);
  if (c->len == 0 && c->cap > 4 * READ_CHUNK) {
    free(c->buf);
    c->buf = NULL;
    c->cap = 0;
  }
}

static void on_idle(uv_timer_t *t) {
  qconn_t *c = t->data;
  uint64_t now = uv_now(c->qs->loop);
  if (c->closing) return;
  if (c->busy) {
    c->last_active = now;
    return;
  }
  if (c->qs->stopping) {
    /* Stopping: a client that does not read its last reply must not keep the daemon up. */
    if (now - c->qs->stop_started >= STOP_GRACE_MS) conn_close(c);
    return;
  }
  if (now - c->last_active >= c->qs->o.idle_timeout_ms) {
    pl_log_debug("query: %s: idle; closing", c->peer);
    conn_close(c);
  }
}

static void on_refused_closed(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *server, int status) {
  pl_qserver_t *qs = server->data;
  qconn_t *c;
  if (status < 0 || qs->stopping) return;
  if (qs->st.connections >= qs->o.max_connections || !(c = calloc(1, sizeof(*c)))) {
    char peer[96];
    qs->st.refused++;
    if (pl_net_refuse(&qs->listener, NULL, 0, peer, sizeof(peer)) == 0)
      pl_log_warn("query: %s: refused: %s", peer,
                  qs->st.connections >= qs->o.max_connections ? "too many connections"
                                                               : "out of memory");
    return;
  }
  c->qs = qs;
  if (pl_net_accept(&qs->listener, &c->h, c->peer, sizeof(c->peer), on_refused_closed) != 0)
    return;
  c->h.handle.data = c;
  msgpack_sbuffer_init(&c->reply);
  pl_mpscan_init(&c->scan, qs->o.max_request_bytes, PL_MPSCAN_MAX_DEPTH);
  c->wq.written = on_written;
  uv_timer_init(qs->loop, &c->idle);
  c->idle.data = c;
  c->handles = 2;
  c->last_active = uv_now(qs->loop);
  {
    uint64_t tick = qs->o.idle_timeout_ms / 4;
    uv_timer_start(&c->idle, on_idle, tick < 10 ? 10 : tick, tick < 10 ? 10 : tick);
  }
  c->next = qs->conns;
  if (qs->conns) qs->conns->prev = c;
  qs->conns = c;
  qs->st.connections++;
  qs->st.accepted++;
  if (uv_read_start(&c->h.stream, on_alloc, on_read) == 0) c->reading = 1;
}

static void free_failed(uv_handle_t *h) {
  pl_qserver_t *qs = h->data;
  pthread_mutex_destroy(&qs->op_mu);
  free(qs);
}

int pl_qserver_start(pl_qserver_t **out, uv_loop_t *loop, pl_store_t *store,
                     const pl_qserver_opts_t *opts, char *err, size_t errlen) {
  pl_qserver_t *qs = calloc(1, sizeof(*qs));
  int rc;
  if (!qs) return PL_ENOMEM;
  qs->loop = loop;
  qs->store = store;
  qs->o = *opts;
  pthread_mutex_init(&qs->op_mu, NULL);
  for (int i = 0; i < PL_QSERVER_OPS; i++) qs->ops[i].op = op_names[i];
  rc = pl_net_listen(&qs->listener, loop, opts->listen, on_connection, qs, err, errlen);
  if (rc) {
    if (qs->listener.open) {
      pl_net_listener_close(&qs->listener, free_failed);
    } else {
      pthread_mutex_destroy(&qs->op_mu);
      free(qs);
    }
    return rc;
  }
  *out = qs;
  return 0;
}

const char *pl_qserver_address(const pl_qserver_t *qs) { return qs->listener.bound; }

void pl_qserver_get_stats(const pl_qserver_t *qs, pl_qserver_stats_t *st) { *st = qs->st; }

static void check_stopped(pl_qserver_t *qs) {
  if (!qs->stopping || qs->conns || !qs->listener_closed || !qs->stop_cb) return;
  void (*cb)(void *) = qs->stop_cb;
  qs->stop_cb = NULL;
  cb(qs->stop_arg);
  pthread_mutex_destroy(&qs->op_mu);
  free(qs);
}

static void on_listener_closed(uv_handle_t *h) {
  pl_qserver_t *qs = h->data;
  qs->listener_closed = 1;
  check_stopped(qs);
}

void pl_qserver_stop(pl_qserver_t *qs, void (*cb)(void *arg), void *arg) {
  qs->stopping = 1;
  qs->stop_started = uv_now(qs->loop);
  qs->stop_cb = cb;
  qs->stop_arg = arg;
  pl_net_listener_close(&qs->listener, on_listener_closed);
  for (qconn_t *c = qs->conns, *next; c; c = next) {
    next = c->next;
    update_reading(c);
    if (!c->busy && c->wq.pending == 0) {
      conn_close(c);
    } else {
      /* Let the running request and its reply finish, for a short while. */
      uv_timer_start(&c->idle, on_idle, 250, 250);
    }
  }
  check_stopped(qs);
}
