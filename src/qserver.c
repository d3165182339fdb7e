/* Query connections: frame request maps with the bounded scanner, run each on the work pool
 * (its own short read transaction inside pl_query_exec), write replies in order, from the
 * pool thread itself when nothing is queued ahead of them. */
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
  size_t len, cap;
  pl_mpscan_t scan;
  /* the request being run on the work pool */
  size_t frame_len;
  int frame_error;         /* PL_ETOOBIG / PL_EDEPTH / PL_EPROTO: reply and close */
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

struct pl_qserver {
  uv_loop_t *loop;
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
static void check_stopped(pl_qserver_t *qs);

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
  msgpack_sbuffer_destroy(&c->reply);
  if (c->wfd >= 0) close(c->wfd);
  qs->st.connections--;
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

/* On the pool thread: packs the reply to the framed request (or to the framing error). */
static void build_reply(qconn_t *c) {
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

static void work_cb(uv_work_t *req) {
  qconn_t *c = req->data;
  build_reply(c);
  send_direct(c);
}

static void after_work(uv_work_t *req, int status) {
  qconn_t *c = req->data;
  pl_qserver_t *qs = c->qs;
  (void)status;
  qs->st.running--;
  qs->st.requests++;
  if (pl_conn_release(&c->base) != 0) return;
  if (c->sent < c->reply.size &&
      pl_conn_send(&c->base, c->reply.data + c->sent, c->reply.size - c->sent) != 0)
    return;
  if (c->frame_error) {
    qs->st.errors++;
    pl_log_warn("query: %s: closing: %s", c->base.peer, pl_strerror(c->frame_error));
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
  if (c->base.holds || c->base.closing || c->close_after || c->qs->stopping || c->len == 0)
    return;
  if (c->base.wq.pending > c->qs->o.write_queue_max_bytes) return; /* resumed by on_written */
  n = pl_mpscan_run(&c->scan, (const unsigned char *)c->buf, c->len);
  if (n == 0) return;
  if (n < 0) {
    c->frame_error = (int)n;
  } else {
    c->frame_len = (size_t)n;
    c->frame_error = 0;
  }
  pl_conn_hold(&c->base);
  c->qs->st.running++;
  c->work.data = c;
  /* Nothing queued now, and nothing else is written to c until this request's reply. */
  c->direct = c->wfd >= 0 && c->base.wq.pending == 0 && c->base.wq.error == 0;
  c->sent = 0;
  if (uv_queue_work(c->qs->loop, &c->work, work_cb, after_work) != 0) {
    pl_conn_release(&c->base);
    c->qs->st.running--;
    pl_conn_close(&c->base);
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
  c->wfd = -1;
  if (pl_conn_accept(&qs->conns, &qs->listener, &c->base) != 0) return;
  {
    uv_os_fd_t fd;
    if (uv_fileno(&c->base.h.handle, &fd) == 0) c->wfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  }
  msgpack_sbuffer_init(&c->reply);
  pl_mpscan_init(&c->scan, qs->o.max_request_bytes, PL_MPSCAN_MAX_DEPTH);
  qs->st.connections++;
  qs->st.accepted++;
  update_reading(c);
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
  pl_conn_list_init(&qs->conns, &conn_ops, opts->idle_timeout_ms / 4);
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
  if (!qs->stopping || qs->conns.head || !qs->listener_closed || !qs->stop_cb) return;
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
  PL_CONN_EACH(qconn_t, c, &qs->conns) {
    update_reading(c);
    if (pl_conn_quiet(&c->base))
      pl_conn_close(&c->base);
    else /* let the running request and its reply finish, for a short while */
      pl_conn_set_tick(&c->base, 250);
  }
  check_stopped(qs);
}
