/* Listening sockets and byte-bounded writes shared by the ingest, query and HTTP servers.
 * Addresses are "HOST:PORT" (IPv4 or [IPv6]; port 0 lets the kernel choose) or "unix:PATH". */
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

/* Raises RLIMIT_NOFILE's soft limit to at least want (up to the hard limit). Returns the
 * soft limit now in force. */
uint64_t pl_net_raise_nofile(uint64_t want);

#endif
