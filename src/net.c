/* Listeners (TCP and unix sockets) and counted writes for the servers. */
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
