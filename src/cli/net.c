/* Client networking: address parsing, connect with a timeout, and reads and writes on
 * non-blocking sockets bounded by a deadline, so no step can hang past --timeout. */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

void cli_error(const char *fmt, ...) {
  va_list ap;
  fputs("parley: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

int64_t cli_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cli_wait(int fd, short events, int64_t deadline_ms) {
  for (;;) {
    int64_t left = deadline_ms - cli_now_ms();
    struct pollfd p = {.fd = fd, .events = events};
    int n;
    if (left <= 0) return 0;
    n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
    /* POLLERR and POLLHUP count as ready: the read or write that follows reports them. */
    if (n > 0) return 1;
    if (n < 0 && errno != EINTR) return -1;
  }
}

static int connect_fd(int fd, const struct sockaddr *sa, socklen_t len, int64_t deadline_ms) {
  int soerr = 0, r;
  socklen_t sl = sizeof soerr;
  if (connect(fd, sa, len) == 0) return 0;
  if (errno != EINPROGRESS) return -1;
  if ((r = cli_wait(fd, POLLOUT, deadline_ms)) <= 0) {
    if (r == 0) errno = ETIMEDOUT;
    return -1;
  }
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) return -1;
  if (soerr) {
    errno = soerr;
    return -1;
  }
  return 0;
}

static int connect_unix(const char *addr, const char *path, int64_t deadline_ms, char *err,
                        size_t errlen) {
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  int fd;
  if (!*path || strlen(path) >= sizeof sun.sun_path) {
    snprintf(err, errlen, "bad address '%s': the socket path is empty or too long", addr);
    return -1;
  }
  memcpy(sun.sun_path, path, strlen(path) + 1);
  if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
      connect_fd(fd, (struct sockaddr *)&sun, sizeof sun, deadline_ms) < 0) {
    snprintf(err, errlen, "cannot connect to %s: %s", addr, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

int cli_connect(const char *addr, int timeout_ms, char *err, size_t errlen) {
  int64_t deadline = cli_now_ms() + timeout_ms;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
  const char *colon = strrchr(addr, ':'), *host = addr;
  char hostbuf[256];
  size_t hostlen;
  int fd = -1, rc, last = ECONNREFUSED, one = 1;

  if (strncmp(addr, "unix:", 5) == 0) return connect_unix(addr, addr + 5, deadline, err, errlen);
  if (!colon || colon == addr || !colon[1]) goto bad;
  hostlen = (size_t)(colon - addr);
  if (addr[0] == '[') { /* [v6]:port */
    if (colon[-1] != ']' || hostlen < 3) goto bad;
    host = addr + 1;
    hostlen -= 2;
  } else if (memchr(addr, ':', hostlen)) {
    goto bad;
  }
  if (hostlen >= sizeof hostbuf) goto bad;
  memcpy(hostbuf, host, hostlen);
  hostbuf[hostlen] = '\0';
  if ((rc = getaddrinfo(hostbuf, colon + 1, &hints, &res)) != 0) {
    snprintf(err, errlen, "cannot resolve %s: %s", addr, gai_strerror(rc));
    return -1;
  }
  for (ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd >= 0 && connect_fd(fd, ai->ai_addr, ai->ai_addrlen, deadline) == 0) break;
    last = errno;
    if (fd >= 0) close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    snprintf(err, errlen, "cannot connect to %s: %s", addr, strerror(last));
    return -1;
  }
  /* Requests and acks are small: do not let Nagle hold them back. */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
bad:
  snprintf(err, errlen, "bad address '%s': expected HOST:PORT, [IPV6]:PORT or unix:PATH", addr);
  return -1;
}

int cli_write_all(int fd, const void *p, size_t n, int64_t deadline_ms) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    int r;
    if (w > 0) {
      c += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    if ((r = cli_wait(fd, POLLOUT, deadline_ms)) <= 0) {
      if (r == 0) errno = ETIMEDOUT;
      return -1;
    }
  }
  return 0;
}

int cli_read_object(int fd, msgpack_unpacker *u, msgpack_unpacked *out, int64_t deadline_ms,
                    size_t max_bytes) {
  for (;;) {
    ssize_t r;
    int w;
    switch (msgpack_unpacker_next(u, out)) {
      case MSGPACK_UNPACK_SUCCESS:
        return 0;
      case MSGPACK_UNPACK_CONTINUE:
        break;
      case MSGPACK_UNPACK_NOMEM_ERROR:
        errno = ENOMEM;
        return -1;
      default:
        errno = EPROTO;
        return -1;
    }
    if (msgpack_unpacker_message_size(u) > max_bytes) {
      errno = EMSGSIZE;
      return -1;
    }
    if (!msgpack_unpacker_reserve_buffer(u, 64 * 1024)) {
      errno = ENOMEM;
      return -1;
    }
    r = recv(fd, msgpack_unpacker_buffer(u), msgpack_unpacker_buffer_capacity(u), 0);
    if (r > 0) {
      msgpack_unpacker_buffer_consumed(u, (size_t)r);
      continue;
    }
    if (r == 0) {
      errno = EPIPE;
      return -1;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    if ((w = cli_wait(fd, POLLIN, deadline_ms)) <= 0) {
      if (w == 0) errno = ETIMEDOUT;
      return -1;
    }
  }
}
