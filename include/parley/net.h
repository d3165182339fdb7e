/* Listening sockets, byte-bounded writes and the connection lifecycle shared by the ingest,
 * query and HTTP servers. Addresses are "HOST:PORT" (IPv4 or [IPv6]; port 0 lets the kernel
 * choose) or "unix:PATH". */
#ifndef PARLEY_NET_H
#define PARLEY_NET_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Any stream a listener accepts. Embed it first in a connection struct; data points back. */
typedef union pl_stream {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
} pl_stream_t;

typedef struct pl_listener {
  pl_stream_t h;
  pl_stream_t spare; /* refuses a connection when memory for a new handle is short */
  int spare_busy;
  int is_pipe;
  int open;
  char bound[320]; /* the address actually bound, "127.0.0.1:41234" or "unix:/path" */
  char path[256];  /* unix socket path, removed at close */
} pl_listener_t;

/* Binds and listens on spec; cb fires on the loop for each incoming connection, with
 * server->data = data. Returns 0, or a libuv error with a sentence in err. On failure
 * with l->open set, the handle was initialised: close it with pl_net_listener_close and
 * free the memory holding l only in that close callback. */
int pl_net_listen(pl_listener_t *l, uv_loop_t *loop, const char *spec, uv_connection_cb cb,
                  void *data, char *err, size_t errlen);

/* Stops listening; cb (may be NULL) fires when the handle is closed. */
void pl_net_listener_close(pl_listener_t *l, uv_close_cb cb);

/* Initialises client as the listener's stream type and accepts into it; peer gets a
 * printable name of the remote end. Returns 0 or a libuv error (then client is closed
 * through uv_close with close_cb, which the caller must provide to free it). */
int pl_net_accept(pl_listener_t *l, pl_stream_t *client, char *peer, size_t peerlen,
                  uv_close_cb close_cb);

/* Accepts the pending connection only to close it, after trying to write msg (may be
 * NULL); peer gets its printable name. A listener whose connection callback returns
 * without accepting stops being polled, so every refusal goes through here. Returns 0, or
 * a libuv error (then the connection is left pending: the listener is not polled until
 * the next refusal or accept succeeds). */
int pl_net_refuse(pl_listener_t *l, const void *msg, size_t msglen, char *peer, size_t peerlen);

/* A per-connection count of bytes handed to libuv and not yet written. */
typedef struct pl_wq {
  size_t pending; /* bytes queued in libuv */
  int error;      /* first write error (a libuv code), 0 when none */
  void (*written)(struct pl_wq *q); /* called after each queued write completes, may be NULL */
} pl_wq_t;

/* Writes buf[0..len) to s: directly when the socket takes it all at once, otherwise a copy
 * is queued (and counted in q->pending until written). Returns 0 or a libuv error. */
int pl_net_write(uv_stream_t *s, pl_wq_t *q, const void *buf, size_t len);

/* ---- connections ----
 *
 * A server's connection struct embeds a pl_conn_t first and is allocated zeroed (calloc).
 * The base owns two handles, the stream and an idle timer, and frees nothing itself: once
 * both handles are closed and no hold remains, it unlinks the connection from its list and
 * hands it to ops->on_free, which releases the server's state and the memory. Until then
 * the memory stays valid, so a batch or a work-pool request that holds the connection may
 * finish after the client went away. Every callback runs on the loop; every pointer a
 * callback gets is the pl_conn_t, which is also the server's struct. */
typedef struct pl_conn pl_conn_t;

typedef struct pl_conn_ops {
  /* Sets buf to where the next read goes; leaving it empty (it starts so) makes the read
   * callback get UV_ENOBUFS. */
  void (*on_alloc)(pl_conn_t *c, uv_buf_t *buf);
  /* Bytes arrived in the buffer on_alloc gave (nread > 0), nothing (0), or a libuv error
   * (UV_EOF for a half-close). */
  void (*on_read)(pl_conn_t *c, ssize_t nread);
  /* A queued write completed without error, and c is not closing. May be NULL. */
  void (*on_written)(pl_conn_t *c);
  /* Each tick of the idle timer while c is not closing; now is the loop's time (ms). */
  void (*on_idle)(pl_conn_t *c, uint64_t now);
  /* Once, as c starts closing: drop what only reading needed. May be NULL. */
  void (*on_close)(pl_conn_t *c);
  /* c is closed, unused and unlinked: release the server's state and free the memory. */
  void (*on_free)(pl_conn_t *c);
} pl_conn_ops_t;

/* A server's open connections (closing ones stay listed until freed). */
typedef struct pl_conn_list {
  pl_conn_t *head;
  const pl_conn_ops_t *ops;
  uint64_t tick_ms; /* the idle timer's period */
} pl_conn_list_t;

struct pl_conn {
  pl_stream_t h; /* first: h.handle.data points to the connection */
  uv_timer_t idle;
  pl_conn_list_t *list;
  pl_conn_t *prev, *next;
  pl_wq_t wq; /* what the client has not yet read of our writes */
  char peer[96];
  uint64_t last_active; /* loop time (ms) of the client's last sign of life */
  unsigned holds;       /* batches or requests still using the memory */
  int handles;          /* handles not yet closed */
  int closing;          /* pl_conn_close has run */
  int reading;
};

/* Prepares an empty list whose connections use ops (kept by pointer) and tick every tick_ms
 * (at least 10 ms). */
void pl_conn_list_init(pl_conn_list_t *list, const pl_conn_ops_t *ops, uint64_t tick_ms);

/* Accepts the listener's pending connection into c (zeroed, from malloc, with the server's
 * own fields already set), fills c->peer, starts the idle timer and links c into list; c
 * does not read until pl_conn_set_reading. Returns 0, or a libuv error: then c was not
 * linked, on_free will never fire for it, and the base frees c's memory itself (perhaps
 * later, once libuv lets go of the handle): the caller releases only what it set up. */
int pl_conn_accept(pl_conn_list_t *list, pl_listener_t *l, pl_conn_t *c);

/* Starts closing c (again: nothing): stops reading, closes both handles (queued writes
 * complete with an error, without on_written), fires on_close. on_free fires later, once
 * the handles are closed and no hold remains. */
void pl_conn_close(pl_conn_t *c);

/* Keeps c's memory for work that completes later; every hold is paired with a release. */
void pl_conn_hold(pl_conn_t *c);

/* Drops a hold. Returns 0 when c is open; otherwise c is closing and may already be freed
 * (on_free fired inside this call): the caller must not touch it again. */
int pl_conn_release(pl_conn_t *c);

/* 1 when nothing holds c and no write is queued: closing now loses nothing. */
int pl_conn_quiet(const pl_conn_t *c);

/* Starts or stops reading (ops->on_alloc, ops->on_read). A closing c never reads. */
void pl_conn_set_reading(pl_conn_t *c, int want);

/* Writes buf[0..len) to the client through c->wq (see pl_net_write). Returns 0; or a libuv
 * error, and then c is closing (or was already, and nothing was written). */
int pl_conn_send(pl_conn_t *c, const void *buf, size_t len);

/* Marks the client active now, for the idle timeout the server applies in on_idle. */
void pl_conn_touch(pl_conn_t *c);

/* Changes how often c's on_idle fires (ignored while closing). */
void pl_conn_set_tick(pl_conn_t *c, uint64_t ms);

/* for (T *c ...) over list, T being the server's struct that embeds pl_conn_t first. The
 * next connection is read before the body runs, so the body may close c or even free it
 * (by releasing its last hold), but not another connection. */
#define PL_CONN_EACH(T, c, list)                                                          \
  for (T *c = (T *)(void *)(list)->head, *c##_next_;                                     \
       c && (c##_next_ = (T *)(void *)((pl_conn_t *)(void *)c)->next, 1); c = c##_next_)

/* Raises RLIMIT_NOFILE's soft limit to at least want (up to the hard limit). Returns the
 * soft limit now in force. */
uint64_t pl_net_raise_nofile(uint64_t want);

#endif
