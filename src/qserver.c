/* Query connections, on a thread and loop of their own: frame request maps with the bounded
 * scanner, run light requests right there and the rest on the work pool (each in its own
 * short read transaction inside pl_query_exec), write replies in order. */
#include "parley/qserver.h"

#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "parley/error.h"
#include "parley/log.h"
#include "parley/mpscan.h"
#include "parley/net.h"

#define READ_CHUNK (64 * 1024)
#define STOP_GRACE_MS 2000 /* how long a stop waits for replies to be read */

static const char *op_names[PL_QSERVER_OPS] = {"ping",   "stats",        "activity", "top",
                                                "series", "pair",         "topics",   "institutions",
                                                "events", "rejects",      "other"};

/* base.holds is 1 while a request runs on the work pool. */
typedef struct qconn {
  pl_conn_t base; /* first */
  uv_work_t work;
  struct pl_qserver *qs;
  char *buf;
  size_t off, len, cap; /* [off, len) is not yet answered; off is the current request */
  pl_mpscan_t scan;
  /* the request being run, at buf + off; decoded, its strings point into buf (which is not
   * read into or compacted meanwhile) */
  size_t frame_len;
  int frame_error;         /* PL_ETOOBIG / PL_EDEPTH / PL_EPROTO: reply and close */
  int decoded;             /* 1: req holds the request; -1: it is not MessagePack; 0: not yet */
  msgpack_unpacked req;
  int more;                /* complete requests left for the next turn of the loop (resume) */
  msgpack_sbuffer reply;
  int eof;
  int close_after;
  /* The pool thread writes the reply itself when no earlier reply is still queued (direct):
   * waking the loop thread only to write costs more than many a query on a machine whose
   * idle cores sleep. It writes through its own descriptor (wfd, a dup taken at accept,
   * closed in on_free once no work holds the connection), so a close by the loop meanwhile
   * cannot hand the number to another socket. The loop sends what is left (from sent on). */
  int wfd;
  int direct;
  size_t sent;
} qconn_t;

/* Owns its loop and thread. Everything below runs on that thread, except: stop_cb/stop_arg
 * and done (an async on the caller's loop, fired when the thread has ended), used by the
 * caller's loop; st, read through pl_qserver_get_stats with atomic loads; ops, under op_mu
 * (the HTTP API records into it too); listener.bound, written before the thread starts. */
struct pl_qserver {
  uv_loop_t *loop; /* &own */
  uv_loop_t own;
  uv_thread_t thread;
  uv_async_t stop_async; /* on own: pl_qserver_stop asks the thread to stop */
  uv_async_t done;       /* on the caller's loop: the thread has returned from uv_run */
  uv_idle_t resume;      /* runs the connections with more set, a batch each turn */
  unsigned nmore;        /* connections with more set */
  int stop_closing;
  pl_store_t *store;
  pl_qserver_opts_t o;
  pl_listener_t listener;
  pl_conn_list_t conns;
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
static void set_more(qconn_t *c, int more);
static void on_resume(uv_idle_t *h);
static void check_stopped(pl_qserver_t *qs);

/* st is written only by the query thread, and read by others (metrics, stats replies). */
#define ST_ADD(qs, field, n) __atomic_add_fetch(&(qs)->st.field, (uint64_t)(n), __ATOMIC_RELAXED)
#define ST_GET(qs, field) __atomic_load_n(&(qs)->st.field, __ATOMIC_RELAXED)

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

static void on_free(pl_conn_t *base) {
  qconn_t *c = (qconn_t *)base;
  pl_qserver_t *qs = c->qs;
  free(c->buf);
  if (c->decoded > 0) msgpack_unpacked_destroy(&c->req);
  if (c->more) set_more(c, 0);
  msgpack_sbuffer_destroy(&c->reply);
  if (c->wfd >= 0) close(c->wfd);
  ST_ADD(qs, connections, -1);
  free(c);
  check_stopped(qs);
}

static void update_reading(qconn_t *c) {
  /* Stop reading while the buffer already holds a whole request's worth, or the client does
   * not read its replies: pipelined requests wait in the socket, not in our memory. */
  /* Not while a request runs either: it decodes in place from c->buf, which a read could
   * move (realloc). */
  pl_conn_set_reading(&c->base, !c->eof && !c->close_after && !c->base.holds &&
                                    c->len <= c->qs->o.max_request_bytes &&
                                    c->base.wq.pending <= c->qs->o.write_queue_max_bytes &&
                                    !c->qs->stopping);
}

static void maybe_finish(qconn_t *c) {
  if ((c->eof || c->close_after || c->qs->stopping) && pl_conn_quiet(&c->base))
    pl_conn_close(&c->base);
}

static void on_written(pl_conn_t *base) {
  qconn_t *c = (qconn_t *)base;
  pl_conn_touch(&c->base); /* a client reading slowly is not idle */
  process(c); /* a request may be waiting for the queue to drain */
  update_reading(c);
  maybe_finish(c);
}

/* On the pool thread: as much of the reply as the socket takes now, without blocking. An
 * error is left for the loop to meet when it sends the rest. */
static void send_direct(qconn_t *c) {
  while (c->direct && c->sent < c->reply.size) {
    ssize_t n = send(c->wfd, c->reply.data + c->sent, c->reply.size - c->sent,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0)
      c->sent += (size_t)n;
    else if (n < 0 && errno == EINTR)
      continue;
    else
      break;
  }
}

/* Light requests are a few hundred bytes; a bigger frame is decoded on the pool, so that a
 * connection waiting for a pool thread never holds a decoded copy (msgpack-c spends 24
 * bytes an element) of a large request. */
#define LIGHT_FRAME_MAX 4096
/* Light requests run back to back on one connection at most this many a turn of the loop,
 * so a client that pipelines thousands cannot keep the others waiting. */
#define LIGHT_BATCH 16

/* Decodes the framed request into c->req (c->decoded 1, or -1 when it is not MessagePack). */
static void decode(qconn_t *c) {
  size_t off = 0;
  msgpack_unpacked_init(&c->req);
  /* The frame was validated by the scanner: decoding allocates at most in proportion to it. */
  if (msgpack_unpack_next(&c->req, c->buf + c->off, c->frame_len, &off) == MSGPACK_UNPACK_SUCCESS) {
    c->decoded = 1;
  } else {
    msgpack_unpacked_destroy(&c->req);
    c->decoded = -1;
  }
}

/* On the query thread: whether the framed request may run here (a small light request, or
 * a frame error, whose reply needs no store). Decodes small frames. */
static int runs_here(qconn_t *c) {
  if (c->frame_error) return 1;
  if (c->frame_len > LIGHT_FRAME_MAX) return 0;
  decode(c);
  if (c->decoded < 0) return 1;
  {
    pl_store_info_t info;
    pl_store_get_info(c->qs->store, &info);
    if (pl_query_is_light(&c->req.data, &info)) return 1;
  }
  /* Not kept while it waits for a pool thread (which decodes it again). */
  msgpack_unpacked_destroy(&c->req);
  c->decoded = 0;
  return 0;
}

/* On the query thread (no_wait) or a pool thread: packs the reply to the request (or to
 * the framing error). Returns 0, or PL_EAGAIN with no_wait when the store's map is being
 * resized (nothing packed: run it on the pool instead). */
static int build_reply(qconn_t *c, int no_wait) {
  pl_qserver_t *qs = c->qs;
  msgpack_packer pk;
  uint64_t t0 = mono_us();
  msgpack_sbuffer_clear(&c->reply);
  msgpack_packer_init(&pk, &c->reply, msgpack_sbuffer_write);
  if (c->frame_error) {
    pl_query_pack_error(&pk, NULL, c->frame_error == PL_ETOOBIG ? PL_QERR_TOO_LARGE : PL_QERR_BAD_REQUEST,
                        c->frame_error == PL_ETOOBIG ? "request larger than query.max_request_bytes"
                        : c->frame_error == PL_EDEPTH ? "request nested too deeply"
                                                      : "request is not valid MessagePack");
    return 0;
  }
  if (c->decoded == 0) decode(c);
  if (c->decoded < 0) {
    pl_query_pack_error(&pk, NULL, PL_QERR_BAD_REQUEST, "request is not valid MessagePack");
    pl_qserver_record(qs, pl_str("", 0), mono_us() - t0);
    return 0;
  }
  {
    pl_query_env_t env = {0};
    int rc;
    if (qs->o.env) qs->o.env(qs->o.env_arg, &env);
    env.no_wait = no_wait;
    rc = pl_query_exec(qs->store, &env, &c->req.data, &pk);
    if (rc == PL_EAGAIN && no_wait) return rc;
    if (rc != 0) {
      msgpack_sbuffer_clear(&c->reply);
      pl_query_pack_error(&pk, NULL, PL_QERR_INTERNAL, "out of memory");
    }
  }
  pl_qserver_record(qs, pl_query_op_name(&c->req.data), mono_us() - t0);
  return 0;
}

static void work_cb(uv_work_t *req) {
  qconn_t *c = req->data;
  build_reply(c, 0);
  send_direct(c);
}

/* On the query thread, once a request's reply is built (and perhaps partly sent): sends the
 * rest and drops the request from the buffer. Returns 0, or -1 when the connection is
 * closing. */
static int finish(qconn_t *c) {
  pl_qserver_t *qs = c->qs;
  ST_ADD(qs, requests, 1);
  if (c->decoded > 0) msgpack_unpacked_destroy(&c->req);
  c->decoded = 0;
  if (c->sent < c->reply.size &&
      pl_conn_send(&c->base, c->reply.data + c->sent, c->reply.size - c->sent) != 0)
    return -1;
  if (c->frame_error) {
    ST_ADD(qs, errors, 1);
    pl_log_warn("query: %s: closing: %s", c->base.peer, pl_strerror(c->frame_error));
    c->close_after = 1;
    c->off = c->len = 0;
  } else {
    c->off += c->frame_len; /* compacted once a batch, in process() */
    if (c->off == c->len) c->off = c->len = 0;
  }
  c->frame_len = 0;
  pl_mpscan_reset(&c->scan);
  if (c->reply.alloc > 1024 * 1024) {
    /* Don't keep a big page of events around for the next ping. */
    msgpack_sbuffer_destroy(&c->reply);
    msgpack_sbuffer_init(&c->reply);
  }
  return 0;
}

static void after_work(uv_work_t *req, int status) {
  qconn_t *c = req->data;
  (void)status;
  ST_ADD(c->qs, running, -1);
  if (pl_conn_release(&c->base) != 0) return;
  if (finish(c) != 0) return;
  process(c);
  update_reading(c);
  maybe_finish(c);
}

static void set_more(qconn_t *c, int more) {
  pl_qserver_t *qs = c->qs;
  if (c->more == more) return;
  c->more = more;
  if (more && qs->nmore++ == 0) uv_idle_start(&qs->resume, on_resume);
  if (!more && --qs->nmore == 0) uv_idle_stop(&qs->resume);
}

/* Runs the complete requests in c's buffer, in order: light ones here, up to LIGHT_BATCH
 * (then the rest wait for the next turn of the loop); at the first other one, hands it to
 * the work pool and returns (after_work comes back). */
static void run_requests(qconn_t *c) {
  for (unsigned batch = 0;; batch++) {
    ssize_t n;
    if (c->base.holds || c->base.closing || c->close_after || c->qs->stopping || c->off == c->len)
      return;
    if (c->base.wq.pending > c->qs->o.write_queue_max_bytes) return; /* resumed by on_written */
    n = pl_mpscan_run(&c->scan, (const unsigned char *)c->buf + c->off, c->len - c->off);
    if (n == 0) return;
    if (batch == LIGHT_BATCH) {
      set_more(c, 1); /* the frame is kept by the scanner until then */
      return;
    }
    if (n < 0) {
      c->frame_error = (int)n;
    } else {
      c->frame_len = (size_t)n;
      c->frame_error = 0;
    }
    c->sent = 0;
    /* Cheaper than waking a pool thread and then this loop again for the reply; but never
     * waiting here for the store (a map resize waits for the longest reader). */
    if (runs_here(c) && build_reply(c, 1) == 0) {
      if (finish(c) != 0) return;
      continue;
    }
    pl_conn_hold(&c->base);
    ST_ADD(c->qs, running, 1);
    c->work.data = c;
    /* Nothing queued now, and nothing else is written to c until this request's reply. */
    c->direct = c->wfd >= 0 && c->base.wq.pending == 0 && c->base.wq.error == 0;
    if (uv_queue_work(c->qs->loop, &c->work, work_cb, after_work) != 0) {
      pl_conn_release(&c->base);
      ST_ADD(c->qs, running, -1);
      pl_conn_close(&c->base);
    }
    return;
  }
}

static void process(qconn_t *c) {
  set_more(c, 0);
  run_requests(c);
  /* Answered requests leave the buffer once a batch, not each (a memmove of the rest). */
  if (c->off && !c->base.holds) {
    memmove(c->buf, c->buf + c->off, c->len - c->off);
    c->len -= c->off;
    c->off = 0;
  }
}

static void on_resume(uv_idle_t *h) {
  pl_qserver_t *qs = h->data;
  PL_CONN_EACH(qconn_t, c, &qs->conns) {
    if (!c->more) continue;
    process(c);
    update_reading(c);
    maybe_finish(c);
  }
}

static void on_alloc(pl_conn_t *base, uv_buf_t *buf) {
  qconn_t *c = (qconn_t *)base;
  if (c->cap - c->len < READ_CHUNK) {
    size_t cap = c->cap ? c->cap * 2 : READ_CHUNK * 2;
    while (cap - c->len < READ_CHUNK) cap *= 2;
    char *p = realloc(c->buf, cap);
    if (!p) return;
    c->buf = p;
    c->cap = cap;
  }
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void on_read(pl_conn_t *base, ssize_t nread) {
  qconn_t *c = (qconn_t *)base;
  if (nread < 0) {
    if (nread == UV_EOF) {
      c->eof = 1;
      update_reading(c);
      process(c);
      maybe_finish(c);
    } else {
      pl_conn_close(&c->base);
    }
    return;
  }
  c->len += (size_t)nread;
  pl_conn_touch(&c->base);
  process(c);
  update_reading(c);
  if (c->len == 0 && c->cap > 4 * READ_CHUNK) {
    free(c->buf);
    c->buf = NULL;
    c->cap = 0;
  }
  maybe_finish(c); /* a frame error's reply may have gone out at once */
}

static void on_idle(pl_conn_t *base, uint64_t now) {
  qconn_t *c = (qconn_t *)base;
  if (c->base.holds) {
    c->base.last_active = now;
    return;
  }
  if (c->qs->stopping) {
    /* Stopping: a client that does not read its last reply must not keep the daemon up. */
    if (now - c->qs->stop_started >= STOP_GRACE_MS) pl_conn_close(&c->base);
    return;
  }
  if (now - c->base.last_active >= c->qs->o.idle_timeout_ms) {
    pl_log_debug("query: %s: idle; closing", c->base.peer);
    pl_conn_close(&c->base);
  }
}

static const pl_conn_ops_t conn_ops = {on_alloc, on_read, on_written, on_idle, NULL, on_free};

static void on_connection(uv_stream_t *server, int status) {
  pl_qserver_t *qs = server->data;
  qconn_t *c;
  if (status < 0 || qs->stopping) return;
  if (ST_GET(qs, connections) >= qs->o.max_connections || !(c = calloc(1, sizeof(*c)))) {
    char peer[96];
    ST_ADD(qs, refused, 1);
    if (pl_net_refuse(&qs->listener, NULL, 0, peer, sizeof(peer)) == 0)
      pl_log_warn("query: %s: refused: %s", peer,
                  ST_GET(qs, connections) >= qs->o.max_connections ? "too many connections"
                                                               : "out of memory");
    return;
  }
  c->qs = qs;
  c->wfd = -1;
  if (pl_conn_accept(&qs->conns, &qs->listener, &c->base) != 0) return;
  {
    uv_os_fd_t fd;
    if (uv_fileno(&c->base.h.handle, &fd) == 0) c->wfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  }
  msgpack_sbuffer_init(&c->reply);
  pl_mpscan_init(&c->scan, qs->o.max_request_bytes, PL_MPSCAN_MAX_DEPTH);
  ST_ADD(qs, connections, 1);
  ST_ADD(qs, accepted, 1);
  update_reading(c);
}

static void run_thread(void *arg) {
  pl_qserver_t *qs = arg;
  uv_run(&qs->own, UV_RUN_DEFAULT);
  uv_async_send(&qs->done);
}

static void on_stop_async(uv_async_t *h);
static void on_thread_done(uv_async_t *h);

/* Runs own until every handle on it has closed: for a start that failed before the thread. */
static void drain_own(pl_qserver_t *qs) {
  uv_run(&qs->own, UV_RUN_DEFAULT);
  uv_loop_close(&qs->own);
}

static void free_qs(uv_handle_t *h) {
  pl_qserver_t *qs = h->data;
  pthread_mutex_destroy(&qs->op_mu);
  free(qs);
}

int pl_qserver_start(pl_qserver_t **out, uv_loop_t *loop, pl_store_t *store,
                     const pl_qserver_opts_t *opts, char *err, size_t errlen) {
  pl_qserver_t *qs = calloc(1, sizeof(*qs));
  int rc;
  if (!qs) return PL_ENOMEM;
  if ((rc = uv_loop_init(&qs->own))) {
    snprintf(err, errlen, "query loop: %s", uv_strerror(rc));
    free(qs);
    return rc;
  }
  qs->loop = &qs->own;
  qs->store = store;
  qs->o = *opts;
  pl_conn_list_init(&qs->conns, &conn_ops, opts->idle_timeout_ms / 4);
  pthread_mutex_init(&qs->op_mu, NULL);
  for (int i = 0; i < PL_QSERVER_OPS; i++) qs->ops[i].op = op_names[i];
  /* The handles are made here, before the thread runs the loop: binding now lets the
   * caller report the address, or the error, at once. */
  rc = pl_net_listen(&qs->listener, &qs->own, opts->listen, on_connection, qs, err, errlen);
  if (rc) {
    if (qs->listener.open) pl_net_listener_close(&qs->listener, NULL);
    goto fail;
  }
  if ((rc = uv_async_init(&qs->own, &qs->stop_async, on_stop_async))) {
    snprintf(err, errlen, "query server: %s", uv_strerror(rc));
    pl_net_listener_close(&qs->listener, NULL);
    goto fail;
  }
  qs->stop_async.data = qs;
  uv_idle_init(&qs->own, &qs->resume); /* cannot fail */
  qs->resume.data = qs;
  if ((rc = uv_async_init(loop, &qs->done, on_thread_done)) == 0) {
    qs->done.data = qs;
    if ((rc = uv_thread_create(&qs->thread, run_thread, qs)) == 0) {
      *out = qs;
      return 0;
    }
    snprintf(err, errlen, "query thread: %s", uv_strerror(rc));
    pl_net_listener_close(&qs->listener, NULL);
    uv_close((uv_handle_t *)&qs->stop_async, NULL);
    uv_close((uv_handle_t *)&qs->resume, NULL);
    drain_own(qs);
    uv_close((uv_handle_t *)&qs->done, free_qs); /* qs goes once the caller's loop lets go */
    return rc;
  }
  snprintf(err, errlen, "query server: %s", uv_strerror(rc));
  pl_net_listener_close(&qs->listener, NULL);
  uv_close((uv_handle_t *)&qs->stop_async, NULL);
  uv_close((uv_handle_t *)&qs->resume, NULL);
fail:
  drain_own(qs);
  pthread_mutex_destroy(&qs->op_mu);
  free(qs);
  return rc;
}

const char *pl_qserver_address(const pl_qserver_t *qs) { return qs->listener.bound; }

void pl_qserver_get_stats(const pl_qserver_t *qs, pl_qserver_stats_t *st) {
  st->connections = ST_GET(qs, connections);
  st->accepted = ST_GET(qs, accepted);
  st->refused = ST_GET(qs, refused);
  st->requests = ST_GET(qs, requests);
  st->errors = ST_GET(qs, errors);
  st->running = ST_GET(qs, running);
}

/* On the query thread: once stopping, with no connection left and the listener closed,
 * closes the last handle, so that uv_run returns and the thread ends. */
static void check_stopped(pl_qserver_t *qs) {
  if (!qs->stopping || qs->conns.head || !qs->listener_closed || qs->stop_closing) return;
  qs->stop_closing = 1;
  uv_close((uv_handle_t *)&qs->stop_async, NULL);
  uv_close((uv_handle_t *)&qs->resume, NULL);
}

static void on_listener_closed(uv_handle_t *h) {
  pl_qserver_t *qs = h->data;
  qs->listener_closed = 1;
  check_stopped(qs);
}

static void on_stop_async(uv_async_t *h) {
  pl_qserver_t *qs = h->data;
  if (qs->stopping) return;
  qs->stopping = 1;
  qs->stop_started = uv_now(qs->loop);
  pl_net_listener_close(&qs->listener, on_listener_closed);
  PL_CONN_EACH(qconn_t, c, &qs->conns) {
    update_reading(c);
    if (pl_conn_quiet(&c->base))
      pl_conn_close(&c->base);
    else /* let the running request and its reply finish, for a short while */
      pl_conn_set_tick(&c->base, 250);
  }
  check_stopped(qs);
}

/* On the caller's loop: stop's callback, then qs goes. */
static void on_done_closed(uv_handle_t *h) {
  pl_qserver_t *qs = h->data;
  if (qs->stop_cb) qs->stop_cb(qs->stop_arg);
  pthread_mutex_destroy(&qs->op_mu);
  free(qs);
}

/* On the caller's loop: the thread is done with every handle of own. */
static void on_thread_done(uv_async_t *h) {
  pl_qserver_t *qs = h->data;
  uv_thread_join(&qs->thread);
  if (uv_loop_close(&qs->own) != 0) pl_log_warn("query loop closed with handles open");
  uv_close((uv_handle_t *)&qs->done, on_done_closed);
}

void pl_qserver_stop(pl_qserver_t *qs, void (*cb)(void *arg), void *arg) {
  qs->stop_cb = cb;
  qs->stop_arg = arg;
  uv_async_send(&qs->stop_async);
}
