/* Listeners (TCP and unix sockets), counted writes, and the one copy of the connection
 * lifecycle (accept, read switching, idle tick, close, deferred free) for the servers. */
#include "parley/net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int parse_host_port(const char *spec, char *host, size_t hostlen, int *port) {
  const char *colon;
  char *end;
  long p;
  if (spec[0] == '[') { /* [v6]:port */
    const char *close = strchr(spec, ']');
    if (!close || close[1] != ':' || (size_t)(close - spec - 1) >= hostlen) return UV_EINVAL;
    memcpy(host, spec + 1, (size_t)(close - spec - 1));
    host[close - spec - 1] = '\0';
    colon = close + 1;
  } else {
    colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= hostlen) return UV_EINVAL;
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
  }
  p = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || p < 0 || p > 65535) return UV_EINVAL;
  *port = (int)p;
  return 0;
}

static void sockaddr_name(const struct sockaddr_storage *ss, char *out, size_t len) {
  char ip[64] = "?";
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    uv_ip4_name(in, ip, sizeof(ip));
    snprintf(out, len, "%s:%d", ip, ntohs(in->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(in6, ip, sizeof(ip));
    snprintf(out, len, "[%s]:%d", ip, ntohs(in6->sin6_port));
  } else {
    snprintf(out, len, "unix");
  }
}

int pl_net_listen(pl_listener_t *l, uv_loop_t *loop, const char *spec, uv_connection_cb cb,
                  void *data, char *err, size_t errlen) {
  int rc;
  memset(l, 0, sizeof(*l));
  if (strncmp(spec, "unix:", 5) == 0) {
    const char *path = spec + 5;
    if (!*path || strlen(path) >= sizeof(l->path)) {
      snprintf(err, errlen, "bad unix socket path in \"%s\"", spec);
      return UV_EINVAL;
    }
    l->is_pipe = 1;
    strcpy(l->path, path);
    if ((rc = uv_pipe_init(loop, &l->h.pipe, 0))) goto fail;
    l->open = 1;
    l->h.handle.data = data;
    /* A stale socket file from a killed daemon would make bind fail: the data dir lock
     * already guarantees no other daemon of ours owns it. */
    unlink(path);
    if ((rc = uv_pipe_bind(&l->h.pipe, path))) goto fail;
    snprintf(l->bound, sizeof(l->bound), "unix:%s", path);
  } else {
    char host[256];
    int port;
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    if (parse_host_port(spec, host, sizeof(host), &port)) {
      snprintf(err, errlen, "bad address \"%s\": expected HOST:PORT or unix:PATH", spec);
      return UV_EINVAL;
    }
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss)) {
      snprintf(err, errlen, "bad address \"%s\": \"%s\" is not an IP address", spec, host);
      return UV_EINVAL;
    }
    if ((rc = uv_tcp_init(loop, &l->h.tcp))) goto fail;
    l->open = 1;
    l->h.handle.data = data;
    if ((rc = uv_tcp_bind(&l->h.tcp, (const struct sockaddr *)&ss, 0))) goto fail;
    uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &sslen);
    sockaddr_name(&ss, l->bound, sizeof(l->bound));
  }
  if ((rc = uv_listen(&l->h.stream, 1024, cb))) goto fail;
  return 0;
fail:
  /* An initialised handle stays open (l->open): the caller closes it, and may free the
   * memory holding it only in the close callback, once libuv has let go of it. */
  snprintf(err, errlen, "cannot listen on %s: %s", spec, uv_strerror(rc));
  return rc;
}

void pl_net_listener_close(pl_listener_t *l, uv_close_cb cb) {
  if (!l->open) return;
  l->open = 0;
  uv_close(&l->h.handle, cb);
  if (l->is_pipe && l->path[0]) unlink(l->path);
}

int pl_net_accept(pl_listener_t *l, pl_stream_t *client, char *peer, size_t peerlen,
                  uv_close_cb close_cb) {
  uv_loop_t *loop = l->h.handle.loop;
  int rc = l->is_pipe ? uv_pipe_init(loop, &client->pipe, 0) : uv_tcp_init(loop, &client->tcp);
  if (rc) return rc;
  rc = uv_accept(&l->h.stream, &client->stream);
  if (rc) {
    uv_close(&client->handle, close_cb);
    return rc;
  }
  if (l->is_pipe) {
    snprintf(peer, peerlen, "unix:%s", l->path);
  } else {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_nodelay(&client->tcp, 1);
    if (uv_tcp_getpeername(&client->tcp, (struct sockaddr *)&ss, &len) == 0)
      sockaddr_name(&ss, peer, peerlen);
    else
      snprintf(peer, peerlen, "?");
  }
  return 0;
}

static void on_refused_closed(uv_handle_t *h) {
  pl_listener_t *l = h->data;
  if (h == &l->spare.handle)
    l->spare_busy = 0;
  else
    free(h);
}

int pl_net_refuse(pl_listener_t *l, const void *msg, size_t msglen, char *peer, size_t peerlen) {
  pl_stream_t *s = malloc(sizeof(*s));
  int rc;
  if (!s) {
    if (l->spare_busy) return UV_ENOMEM;
    s = &l->spare;
    l->spare_busy = 1;
  }
  memset(s, 0, sizeof(*s));
  s->handle.data = l; /* kept by uv_*_init, read by on_refused_closed */
  rc = pl_net_accept(l, s, peer, peerlen, on_refused_closed);
  if (rc) {
    if (!uv_is_closing(&s->handle)) { /* the handle was never initialised */
      if (s == &l->spare)
        l->spare_busy = 0;
      else
        free(s);
    }
    return rc;
  }
  if (msg && msglen) {
    uv_buf_t b = uv_buf_init((char *)msg, (unsigned)msglen);
    uv_try_write(&s->stream, &b, 1);
  }
  uv_close(&s->handle, on_refused_closed);
  return 0;
}

typedef struct wreq {
  uv_write_t req;
  pl_wq_t *q;
  size_t len;
  char data[];
} wreq_t;

static void on_written(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  pl_wq_t *q = w->q;
  q->pending -= w->len;
  if (status && !q->error) q->error = status;
  free(w);
  if (q->written) q->written(q);
}

int pl_net_write(uv_stream_t *s, pl_wq_t *q, const void *buf, size_t len) {
  uv_buf_t b;
  wreq_t *w;
  int rc;
  if (q->error) return q->error;
  if (len > UINT32_MAX) return UV_E2BIG; /* libuv buffers hold an unsigned length */
  b = uv_buf_init((char *)buf, (unsigned)len);
  if (q->pending == 0) {
    /* Nothing queued ahead of us, so writing now keeps the order. */
    rc = uv_try_write(s, &b, 1);
    if (rc == (int)len) return 0;
    if (rc > 0) {
      buf = (const char *)buf + rc;
      len -= (size_t)rc;
    } else if (rc != UV_EAGAIN) {
      q->error = rc;
      return rc;
    }
  }
  w = malloc(sizeof(*w) + len);
  if (!w) return UV_ENOMEM;
  memcpy(w->data, buf, len);
  w->q = q;
  w->len = len;
  b = uv_buf_init(w->data, (unsigned)len);
  rc = uv_write(&w->req, s, &b, 1, on_written);
  if (rc) {
    free(w);
    q->error = rc;
    return rc;
  }
  q->pending += len;
  return 0;
}

/* ---- connections ---- */

void pl_conn_list_init(pl_conn_list_t *list, const pl_conn_ops_t *ops, uint64_t tick_ms) {
  list->head = NULL;
  list->ops = ops;
  list->tick_ms = tick_ms < 10 ? 10 : tick_ms;
}

static void conn_free(pl_conn_t *c) {
  pl_conn_list_t *list = c->list;
  if (c->prev) c->prev->next = c->next;
  else list->head = c->next;
  if (c->next) c->next->prev = c->prev;
  /* Unlinked first: on_free may walk the list (and give memory back to the others). */
  list->ops->on_free(c);
}

/* Whichever comes last of the two close callbacks and the last release frees. */
static void on_conn_closed(uv_handle_t *h) {
  pl_conn_t *c = h->data;
  if (--c->handles == 0 && c->holds == 0) conn_free(c);
}

void pl_conn_close(pl_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  if (c->reading) uv_read_stop(&c->h.stream);
  c->reading = 0;
  uv_close(&c->h.handle, on_conn_closed);
  uv_close((uv_handle_t *)&c->idle, on_conn_closed);
  if (c->list->ops->on_close) c->list->ops->on_close(c);
}

void pl_conn_hold(pl_conn_t *c) { c->holds++; }

int pl_conn_release(pl_conn_t *c) {
  c->holds--;
  if (!c->closing) return 0;
  if (c->holds == 0 && c->handles == 0) conn_free(c);
  return 1;
}

int pl_conn_quiet(const pl_conn_t *c) { return c->holds == 0 && c->wq.pending == 0; }

static void on_conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  pl_conn_t *c = h->data;
  (void)hint;
  *buf = uv_buf_init(NULL, 0);
  c->list->ops->on_alloc(c, buf);
}

static void on_conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  pl_conn_t *c = s->data;
  (void)buf; /* it points into memory the server's on_alloc chose and still knows */
  c->list->ops->on_read(c, nread);
}

void pl_conn_set_reading(pl_conn_t *c, int want) {
  want = want && !c->closing;
  if (want && !c->reading) {
    if (uv_read_start(&c->h.stream, on_conn_alloc, on_conn_read) == 0) c->reading = 1;
  } else if (!want && c->reading) {
    uv_read_stop(&c->h.stream);
    c->reading = 0;
  }
}

static void on_conn_written(pl_wq_t *q) {
  pl_conn_t *c = (pl_conn_t *)(void *)((char *)q - offsetof(pl_conn_t, wq));
  /* Writes cancelled by the close land here too, before the handle's close callback. */
  if (c->closing) return;
  if (q->error) {
    pl_conn_close(c);
    return;
  }
  if (c->list->ops->on_written) c->list->ops->on_written(c);
}

int pl_conn_send(pl_conn_t *c, const void *buf, size_t len) {
  int rc;
  /* A reply whose batch or request outlived the connection has no one to go to. */
  if (c->closing) return UV_ECANCELED;
  rc = pl_net_write(&c->h.stream, &c->wq, buf, len);
  if (rc) pl_conn_close(c);
  return rc;
}

void pl_conn_touch(pl_conn_t *c) { c->last_active = uv_now(c->h.handle.loop); }

static void on_conn_tick(uv_timer_t *t) {
  pl_conn_t *c = t->data;
  if (c->closing) return;
  c->list->ops->on_idle(c, uv_now(t->loop));
}

void pl_conn_set_tick(pl_conn_t *c, uint64_t ms) {
  if (c->closing) return;
  uv_timer_start(&c->idle, on_conn_tick, ms, ms);
}

static void free_unaccepted(uv_handle_t *h) { free(h->data); }

int pl_conn_accept(pl_conn_list_t *list, pl_listener_t *l, pl_conn_t *c) {
  uv_loop_t *loop = l->h.handle.loop;
  int rc;
  c->h.handle.data = c; /* kept by uv_*_init, read by free_unaccepted */
  rc = pl_net_accept(l, &c->h, c->peer, sizeof(c->peer), free_unaccepted);
  if (rc) {
    if (!uv_is_closing(&c->h.handle)) free(c); /* the handle was never initialised */
    return rc;
  }
  c->list = list;
  c->wq.written = on_conn_written;
  uv_timer_init(loop, &c->idle);
  c->idle.data = c;
  c->handles = 2;
  c->last_active = uv_now(loop);
  uv_timer_start(&c->idle, on_conn_tick, list->tick_ms, list->tick_ms);
  c->prev = NULL;
  c->next = list->head;
  if (list->head) list->head->prev = c;
  list->head = c;
  return 0;
}

uint64_t pl_net_raise_nofile(uint64_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < want) {
    rlim_t target = want;
    if (rl.rlim_max != RLIM_INFINITY && target > rl.rlim_max) target = rl.rlim_max;
    rl.rlim_cur = target;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return (uint64_t)rl.rlim_cur;
}
