/* `parley send`: JSON Lines in, Forward PackedForward messages with chunk ids out, up to
 * --window awaiting acks; after a lost connection or ack timeout every unacked message is
 * resent with its same chunk id (the server drops duplicates). Optional HELO/PING/PONG. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "parley/error.h"
#include "parley/json.h"
#include "parley/types.h"

#define FLUSH_MS 1000         /* a partial batch waits at most this long for more lines */
#define MAX_REPLY_BYTES 65536 /* acks and handshake messages are far smaller */
#define READ_CHUNK (64 * 1024)

typedef struct chunk {
  char id[25];         /* base64 of 16 random bytes; stays the same across resends */
  msgpack_sbuffer msg; /* the whole PackedForward message */
  size_t records;
  size_t written;     /* bytes of msg written on the current connection */
  int64_t written_at; /* when its last byte went out (0: not yet); the ack timeout runs from it */
} chunk_t;

typedef struct sender {
  const cli_opts_t *o;
  const char *addr, *tag, *input;
  const char *shared_key, *username, *password;
  char hostname[256];
  size_t batch;
  int window, retries;

  int in_fd, in_eof;
  char *ibuf; /* input not yet split into lines: ibuf[0..ilen) */
  size_t ilen, icap;
  uint64_t lineno;

  msgpack_sbuffer entries; /* [time, record] entries of the open batch */
  size_t nentries;
  int64_t batch_started;

  chunk_t **flight; /* sealed and not acked yet, in send order; at most window */
  int nflight;

  int fd;                /* -1 while disconnected */
  int64_t stalled_since; /* the socket stopped taking bytes at (0: it takes them) */
  msgpack_unpacker up;
  int failures; /* connection failures since the last ack */
  int fatal;    /* retrying cannot help: stop */
  char why[512];

  uint64_t sent, acked, refused;
} sender_t;

void cli_send_usage(FILE *f) {
  fputs("  send [FILE|-] [--tag TAG] [--batch N] [--window K] [--retries N]\n"
        "       [--shared-key KEY [--hostname NAME] [--username USER --password PASS]]\n"
        "      Reads JSON Lines (one object per line; blank lines skipped) from FILE or stdin\n"
        "      and sends them to " CLI_SEND_ADDR " as Forward PackedForward messages of N records\n"
        "      (default 1000, tag \"parley\"), up to K (default 8) awaiting their ack. After a\n"
        "      lost connection or an ack timeout it reconnects and resends the unacked messages\n"
        "      with the same chunk ids; it gives up after N failures in a row (default 10).\n"
        "      Lines that are not JSON objects are refused (\"line N: reason\" on stderr).\n"
        "      Prints \"sent N, acked N, refused N\" (records); exits 0 only when every record\n"
        "      was acked and no line refused. --shared-key turns on the Forward handshake;\n"
        "      --hostname (default: parley@HOSTNAME) must differ from the server's.\n",
        f);
}

/* Records why the sender must stop; the first reason wins. */
static void set_fatal(sender_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_fatal(sender_t *s, const char *fmt, ...) {
  va_list ap;
  if (s->fatal) return;
  s->fatal = 1;
  va_start(ap, fmt);
  vsnprintf(s->why, sizeof s->why, fmt, ap);
  va_end(ap);
}

/* Closes a broken connection. It counts as a failure only while something awaits an ack: a
 * server closing an idle connection costs nothing. */
static void drop(sender_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void drop(sender_t *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->why, sizeof s->why, fmt, ap);
  va_end(ap);
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  if (s->nflight > 0) s->failures++;
}

static void chunk_free(chunk_t *c) {
  msgpack_sbuffer_destroy(&c->msg);
  free(c);
}

/* ---- building messages ---- */

static void add_line(sender_t *s, const char *line, size_t len) {
  unsigned char head[11] = {0x92, 0xd7, 0x00}; /* [EventTime, ...: fixext8, type 0 */
  struct timespec now;
  pl_json_error_t err;
  size_t mark = s->entries.size, i;
  int rc;

  if (len && line[len - 1] == '\r') len--;
  for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'); i++) {
  }
  if (i == len) return;
  clock_gettime(CLOCK_REALTIME, &now);
  pl_be32_put(head + 3, (uint32_t)now.tv_sec);
  pl_be32_put(head + 7, (uint32_t)now.tv_nsec);
  if (msgpack_sbuffer_write(&s->entries, (const char *)head, sizeof head) < 0) {
    set_fatal(s, "out of memory");
    return;
  }
  rc = pl_json_to_msgpack(line, len, PL_JSON_OBJECT, &s->entries, &err);
  if (rc == PL_ENOMEM) {
    set_fatal(s, "out of memory");
    return;
  }
  if (rc) {
    s->entries.size = mark;
    s->refused++;
    if (rc == PL_ETYPE)
      fprintf(stderr, "line %llu: %s\n", (unsigned long long)s->lineno, err.text);
    else
      fprintf(stderr, "line %llu: column %d: %s\n", (unsigned long long)s->lineno, err.column,
              err.text);
    return;
  }
  if (s->nentries++ == 0) s->batch_started = cli_now_ms();
}

/* Turns the open batch into a message awaiting its ack:
 * [tag, bin(entries), {"chunk": id, "size": records}]. */
static void seal(sender_t *s) {
  chunk_t *c = calloc(1, sizeof *c);
  unsigned char rnd[16];
  msgpack_packer pk;
  int rc;

  if (!c) {
    set_fatal(s, "out of memory");
    return;
  }
  if (RAND_bytes(rnd, sizeof rnd) != 1) {
    set_fatal(s, "no random bytes for a chunk id");
    free(c);
    return;
  }
  EVP_EncodeBlock((unsigned char *)c->id, rnd, sizeof rnd);
  msgpack_sbuffer_init(&c->msg);
  msgpack_packer_init(&pk, &c->msg, msgpack_sbuffer_write);
  rc = msgpack_pack_array(&pk, 3) | msgpack_pack_str_with_body(&pk, s->tag, strlen(s->tag)) |
       msgpack_pack_bin_with_body(&pk, s->entries.data, s->entries.size) |
       msgpack_pack_map(&pk, 2) | msgpack_pack_str_with_body(&pk, "chunk", 5) |
       msgpack_pack_str_with_body(&pk, c->id, strlen(c->id)) |
       msgpack_pack_str_with_body(&pk, "size", 4) | msgpack_pack_uint64(&pk, s->nentries);
  if (rc) {
    set_fatal(s, "out of memory");
    chunk_free(c);
    return;
  }
  c->records = s->nentries;
  s->sent += s->nentries;
  s->flight[s->nflight++] = c;
  s->entries.size = 0;
  s->nentries = 0;
}

/* Splits the buffered input into lines while there is room for their records: a full batch
 * with a full window waits for acks. */
static void consume_lines(sender_t *s) {
  size_t off = 0;
  while (!s->fatal) {
    const char *nl;
    size_t len;
    if (s->nentries >= s->batch) {
      if (s->nflight >= s->window) break;
      seal(s);
      continue;
    }
    nl = off < s->ilen ? memchr(s->ibuf + off, '\n', s->ilen - off) : NULL;
    if (nl)
      len = (size_t)(nl - (s->ibuf + off));
    else if (s->in_eof && off < s->ilen) /* a last line without its newline */
      len = s->ilen - off;
    else
      break;
    s->lineno++;
    add_line(s, s->ibuf + off, len);
    off += len + (nl != NULL);
  }
  if (off > 0) {
    memmove(s->ibuf, s->ibuf + off, s->ilen - off);
    s->ilen -= off;
  }
}

static void read_input(sender_t *s) {
  ssize_t r;
  if (s->icap - s->ilen < READ_CHUNK) {
    size_t cap = s->icap ? s->icap * 2 : 4 * READ_CHUNK;
    char *p;
    while (cap - s->ilen < READ_CHUNK) cap *= 2;
    if (!(p = realloc(s->ibuf, cap))) {
      set_fatal(s, "out of memory");
      return;
    }
    s->ibuf = p;
    s->icap = cap;
  }
  r = read(s->in_fd, s->ibuf + s->ilen, s->icap - s->ilen);
  if (r > 0)
    s->ilen += (size_t)r;
  else if (r == 0)
    s->in_eof = 1;
  else if (errno != EINTR && errno != EAGAIN)
    set_fatal(s, "cannot read %s: %s", s->input, strerror(errno));
}

/* ---- the shared-key handshake ---- */

/* hex(SHA-512(a || b || c || d)), as both ends of the Forward handshake compute it. */
static int sha512_hex(char out[129], const char *a, size_t an, const char *b, size_t bn,
                      const char *c, size_t cn, const char *d, size_t dn) {
  static const char hex[] = "0123456789abcdef";
  unsigned char md[64];
  unsigned int mdlen = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) && EVP_DigestUpdate(ctx, a, an) &&
           EVP_DigestUpdate(ctx, b, bn) && EVP_DigestUpdate(ctx, c, cn) &&
           EVP_DigestUpdate(ctx, d, dn) && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 64;
  EVP_MD_CTX_free(ctx);
  if (!ok) return -1;
  for (int i = 0; i < 64; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[128] = '\0';
  return 0;
}

/* The bytes of a str or bin object (Fluentd sends the nonce as bin, Fluent Bit as str). */
static int bytes_of(const msgpack_object *o, const char **p, size_t *n) {
  if (o && o->type == MSGPACK_OBJECT_STR) {
    *p = o->via.str.ptr;
    *n = o->via.str.size;
    return 0;
  }
  if (o && o->type == MSGPACK_OBJECT_BIN) {
    *p = o->via.bin.ptr;
    *n = o->via.bin.size;
    return 0;
  }
  return -1;
}

/* Element i of a handshake array whose first element is the string name, or NULL. */
static const msgpack_object *hs_elem(const msgpack_object *o, const char *name, uint32_t i) {
  const msgpack_object *first;
  size_t n = strlen(name);
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size <= i) return NULL;
  first = &o->via.array.ptr[0];
  if (first->type != MSGPACK_OBJECT_STR || first->via.str.size != n ||
      memcmp(first->via.str.ptr, name, n) != 0)
    return NULL;
  return &o->via.array.ptr[i];
}

static const char *io_reason(int err) {
  switch (err) {
    case EPIPE:
      return "connection closed by the server";
    case ETIMEDOUT:
      return "timed out";
    case EPROTO:
      return "not MessagePack";
    case EMSGSIZE:
      return "message too large";
    default:
      return strerror(err);
  }
}

/* Runs HELO/PING/PONG on a fresh connection. Returns 0, or -1 after drop() (worth a retry)
 * or set_fatal() (a wrong key or a server that is not what we think). */
static int handshake(sender_t *s) {
  int64_t deadline = cli_now_ms() + s->o->timeout_ms;
  msgpack_unpacked u;
  msgpack_sbuffer ping;
  msgpack_packer pk;
  const msgpack_object *opts, *ok, *reason, *host, *digest;
  const char *p, *user = s->username ? s->username : "";
  char nonce[256], auth[256], salt[33], mine[129], pw[129] = "", theirs[129];
  size_t n, nonce_len, auth_len = 0;
  unsigned char rnd[16];
  int rc = -1;

  msgpack_unpacked_init(&u);
  msgpack_sbuffer_init(&ping);
  if (cli_read_object(s->fd, &s->up, &u, deadline, MAX_REPLY_BYTES) < 0) {
    if (errno == ETIMEDOUT)
      set_fatal(s, "%s sent no HELO within the timeout: does the server have a shared key?",
                s->addr);
    else
      drop(s, "handshake with %s: %s", s->addr, io_reason(errno));
    goto out;
  }
  opts = hs_elem(&u.data, "HELO", 1);
  if (!opts || bytes_of(cli_map_get(opts, "nonce"), &p, &nonce_len) < 0 ||
      nonce_len > sizeof nonce) {
    set_fatal(s, "%s did not start with a valid HELO", s->addr);
    goto out;
  }
  memcpy(nonce, p, nonce_len);
  if (bytes_of(cli_map_get(opts, "auth"), &p, &n) == 0 && n <= sizeof auth) {
    memcpy(auth, p, n);
    auth_len = n;
  }
  if (RAND_bytes(rnd, sizeof rnd) != 1) {
    set_fatal(s, "no random bytes for the handshake salt");
    goto out;
  }
  for (int i = 0; i < 16; i++) snprintf(salt + 2 * i, 3, "%02x", rnd[i]);
  if (sha512_hex(mine, salt, 32, s->hostname, strlen(s->hostname), nonce, nonce_len,
                 s->shared_key, strlen(s->shared_key)) < 0 ||
      (auth_len && s->username &&
       sha512_hex(pw, auth, auth_len, user, strlen(user), s->password ? s->password : "",
                  s->password ? strlen(s->password) : 0, "", 0) < 0)) {
    set_fatal(s, "SHA-512 is not available");
    goto out;
  }
  msgpack_packer_init(&pk, &ping, msgpack_sbuffer_write);
  if (msgpack_pack_array(&pk, 6) | msgpack_pack_str_with_body(&pk, "PING", 4) |
      msgpack_pack_str_with_body(&pk, s->hostname, strlen(s->hostname)) |
      msgpack_pack_str_with_body(&pk, salt, 32) | msgpack_pack_str_with_body(&pk, mine, 128) |
      msgpack_pack_str_with_body(&pk, user, strlen(user)) |
      msgpack_pack_str_with_body(&pk, pw, strlen(pw))) {
    set_fatal(s, "out of memory");
    goto out;
  }
  if (cli_write_all(s->fd, ping.data, ping.size, deadline) < 0 ||
      cli_read_object(s->fd, &s->up, &u, deadline, MAX_REPLY_BYTES) < 0) {
    drop(s, "handshake with %s: %s", s->addr, io_reason(errno));
    goto out;
  }
  ok = hs_elem(&u.data, "PONG", 1);
  reason = hs_elem(&u.data, "PONG", 2);
  host = hs_elem(&u.data, "PONG", 3);
  digest = hs_elem(&u.data, "PONG", 4);
  if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN) {
    set_fatal(s, "%s answered PING with something other than PONG", s->addr);
    goto out;
  }
  if (!ok->via.boolean) {
    int have = reason && reason->type == MSGPACK_OBJECT_STR;
    set_fatal(s, "authentication refused by %s: %.*s", s->addr,
              have ? (int)reason->via.str.size : 9, have ? reason->via.str.ptr : "no reason");
    goto out;
  }
  if (!host || host->type != MSGPACK_OBJECT_STR || !digest || bytes_of(digest, &p, &n) < 0) {
    set_fatal(s, "%s sent a malformed PONG", s->addr);
    goto out;
  }
  /* The same hostname on both ends would let a fake server echo our own digest back. */
  if (host->via.str.size == strlen(s->hostname) &&
      memcmp(host->via.str.ptr, s->hostname, host->via.str.size) == 0) {
    set_fatal(s, "%s uses our own hostname '%s': pick another with --hostname", s->addr,
              s->hostname);
    goto out;
  }
  if (sha512_hex(theirs, salt, 32, host->via.str.ptr, host->via.str.size, nonce, nonce_len,
                 s->shared_key, strlen(s->shared_key)) < 0 ||
      n != 128 || strncasecmp(p, theirs, 128) != 0) {
    set_fatal(s, "%s could not prove it knows the shared key (PONG digest mismatch)", s->addr);
    goto out;
  }
  rc = 0;
out:
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&ping);
  return rc;
}

/* ---- the connection ---- */

/* Opens a connection (after a backoff when the last one failed) and rewinds every unacked
 * message so it is sent again whole. */
static void reconnect(sender_t *s) {
  char err[512];
  int fd;
  if (s->failures >= s->retries) {
    char why[sizeof s->why];
    memcpy(why, s->why, sizeof why);
    set_fatal(s, "gave up after %d failed attempts; last: %s", s->failures, why);
    return;
  }
  if (s->failures > 0) {
    int delay = s->failures >= 7 ? 10000 : 200 << (s->failures - 1);
    fprintf(stderr, "parley: %s; retrying in %.1f s (attempt %d of %d, %d message%s unacked)\n",
            s->why, delay / 1000.0, s->failures + 1, s->retries, s->nflight,
            s->nflight == 1 ? "" : "s");
    poll(NULL, 0, delay);
  }
  if ((fd = cli_connect(s->addr, s->o->timeout_ms, err, sizeof err)) < 0) {
    memcpy(s->why, err, sizeof err);
    s->failures++;
    return;
  }
  s->fd = fd;
  s->stalled_since = 0;
  /* Bytes left from the old connection mean nothing on the new one. */
  msgpack_unpacker_destroy(&s->up);
  if (!msgpack_unpacker_init(&s->up, MAX_REPLY_BYTES)) {
    set_fatal(s, "out of memory");
    return;
  }
  if (s->shared_key && handshake(s) < 0) return;
  for (int i = 0; i < s->nflight; i++) {
    s->flight[i]->written = 0;
    s->flight[i]->written_at = 0;
  }
}

static void write_some(sender_t *s) {
  for (int i = 0; i < s->nflight && s->fd >= 0; i++) {
    chunk_t *c = s->flight[i];
    while (c->written < c->msg.size) {
      ssize_t w = send(s->fd, c->msg.data + c->written, c->msg.size - c->written, MSG_NOSIGNAL);
      if (w > 0) {
        c->written += (size_t)w;
        s->stalled_since = 0;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!s->stalled_since) s->stalled_since = cli_now_ms();
        return;
      } else if (errno != EINTR) {
        drop(s, "cannot write to %s: %s", s->addr, strerror(errno));
        return;
      }
    }
    if (!c->written_at) c->written_at = cli_now_ms();
  }
}

static void handle_reply(sender_t *s, const msgpack_object *o) {
  const msgpack_object *ack = cli_map_get(o, "ack");
  const char *p;
  size_t n;

  if (hs_elem(o, "HELO", 0)) {
    set_fatal(s, "%s requires the shared-key handshake: use --shared-key", s->addr);
    return;
  }
  if (bytes_of(ack, &p, &n) < 0) {
    pl_json_buf_t text = {0};
    pl_json_from_msgpack(o, 0, &text);
    set_fatal(s, "%s is not a Forward server (it answered %.200s)", s->addr,
              text.data ? text.data : "?");
    pl_json_buf_free(&text);
    return;
  }
  for (int i = 0; i < s->nflight; i++) {
    chunk_t *c = s->flight[i];
    if (strlen(c->id) != n || memcmp(c->id, p, n) != 0) continue;
    s->acked += c->records;
    s->failures = 0;
    /* A server that acks is alive, even while it reads slowly (backpressure). */
    if (s->stalled_since) s->stalled_since = cli_now_ms();
    chunk_free(c);
    memmove(&s->flight[i], &s->flight[i + 1], (size_t)(s->nflight - i - 1) * sizeof *s->flight);
    s->nflight--;
    return;
  }
  /* An ack for a chunk no longer awaited (already acked) changes nothing. */
}

static void read_replies(sender_t *s) {
  msgpack_unpacked u;
  ssize_t r;
  if (!msgpack_unpacker_reserve_buffer(&s->up, 4096)) {
    set_fatal(s, "out of memory");
    return;
  }
  r = recv(s->fd, msgpack_unpacker_buffer(&s->up), msgpack_unpacker_buffer_capacity(&s->up), 0);
  if (r == 0) {
    drop(s, "connection closed by %s", s->addr);
    return;
  }
  if (r < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      drop(s, "cannot read from %s: %s", s->addr, strerror(errno));
    return;
  }
  msgpack_unpacker_buffer_consumed(&s->up, (size_t)r);
  msgpack_unpacked_init(&u);
  while (!s->fatal) {
    msgpack_unpack_return ret = msgpack_unpacker_next(&s->up, &u);
    if (ret == MSGPACK_UNPACK_SUCCESS) {
      handle_reply(s, &u.data);
      continue;
    }
    if (ret != MSGPACK_UNPACK_CONTINUE)
      set_fatal(s, "%s sent bytes that are not MessagePack", s->addr);
    else if (msgpack_unpacker_message_size(&s->up) > MAX_REPLY_BYTES)
      set_fatal(s, "%s sent a reply too large to be an ack", s->addr);
    break;
  }
  msgpack_unpacked_destroy(&u);
}

/* The earliest moment something is due: an ack deadline or a partial batch to flush. */
static int poll_timeout(const sender_t *s, int64_t now) {
  int64_t due = INT64_MAX;
  if (s->nentries > 0 && s->nflight < s->window) due = s->batch_started + FLUSH_MS;
  for (int i = 0; i < s->nflight && s->fd >= 0; i++)
    if (s->flight[i]->written_at && s->flight[i]->written_at + s->o->timeout_ms < due)
      due = s->flight[i]->written_at + s->o->timeout_ms;
  if (s->fd >= 0 && s->stalled_since && s->stalled_since + s->o->timeout_ms < due)
    due = s->stalled_since + s->o->timeout_ms;
  if (due == INT64_MAX) return -1;
  return due <= now ? 0 : due - now > 60000 ? 60000 : (int)(due - now);
}

static void check_timeouts(sender_t *s) {
  int64_t now = cli_now_ms();
  if (s->fd >= 0 && s->stalled_since && now - s->stalled_since >= s->o->timeout_ms)
    drop(s, "%s took no bytes and sent no ack for %.1f s", s->addr, s->o->timeout_ms / 1000.0);
  for (int i = 0; i < s->nflight && s->fd >= 0; i++) {
    chunk_t *c = s->flight[i];
    if (c->written_at && now - c->written_at >= s->o->timeout_ms)
      drop(s, "no ack from %s for chunk %s within %.1f s", s->addr, c->id,
           s->o->timeout_ms / 1000.0);
  }
}

static void run(sender_t *s) {
  while (!s->fatal) {
    struct pollfd p[2];
    int np = 0, net = -1, in = -1, timeout;

    consume_lines(s);
    if (s->fatal) break;
    if (s->nentries > 0 && s->nflight < s->window &&
        (s->in_eof || cli_now_ms() - s->batch_started >= FLUSH_MS))
      seal(s);
    if (s->in_eof && s->ilen == 0 && s->nentries == 0 && s->nflight == 0) break;
    if (s->nflight > 0 && s->fd < 0) {
      reconnect(s);
      continue;
    }
    if (s->fd >= 0) {
      /* Messages go out in order, so only the newest can still be unwritten. */
      const chunk_t *last = s->nflight > 0 ? s->flight[s->nflight - 1] : NULL;
      int unwritten = last && last->written < last->msg.size;
      p[np] = (struct pollfd){.fd = s->fd, .events = (short)(POLLIN | (unwritten ? POLLOUT : 0))};
      net = np++;
    }
    if (!s->in_eof && s->nentries < s->batch) {
      p[np] = (struct pollfd){.fd = s->in_fd, .events = POLLIN};
      in = np++;
    }
    timeout = poll_timeout(s, cli_now_ms());
    if (poll(p, (nfds_t)np, timeout) < 0 && errno != EINTR) {
      set_fatal(s, "poll: %s", strerror(errno));
      break;
    }
    if (net >= 0 && (p[net].revents & (POLLIN | POLLHUP | POLLERR))) read_replies(s);
    if (net >= 0 && s->fd >= 0 && (p[net].revents & POLLOUT)) write_some(s);
    if (in >= 0 && (p[in].revents & (POLLIN | POLLHUP | POLLERR))) read_input(s);
    check_timeouts(s);
  }
}

/* ---- the command ---- */

static int parse_count(const char *opt, const char *v, long min, long max, long *out) {
  char *end;
  long n;
  errno = 0;
  n = strtol(v, &end, 10);
  if (errno || end == v || *end || n < min || n > max) {
    cli_error("%s: expected a whole number from %ld to %ld, got '%s'", opt, min, max, v);
    return -1;
  }
  *out = n;
  return 0;
}

/* Reads send's own arguments into s. Returns 0 or -1 after printing why. */
static int parse_send_args(sender_t *s, int argc, char **argv) {
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v;
    long n;
    if (a[0] != '-' || strcmp(a, "-") == 0) {
      if (s->input) {
        cli_error("send reads one input; '%s' is a second", a);
        return -1;
      }
      s->input = a;
      continue;
    }
    if (i + 1 >= argc) {
      cli_error("%s needs a value", a);
      return -1;
    }
    v = argv[++i];
    if (strcmp(a, "--tag") == 0 && *v) {
      s->tag = v;
    } else if (strcmp(a, "--batch") == 0) {
      if (parse_count(a, v, 1, 1000000, &n) < 0) return -1;
      s->batch = (size_t)n;
    } else if (strcmp(a, "--window") == 0) {
      if (parse_count(a, v, 1, 1024, &n) < 0) return -1;
      s->window = (int)n;
    } else if (strcmp(a, "--retries") == 0) {
      if (parse_count(a, v, 1, 1000, &n) < 0) return -1;
      s->retries = (int)n;
    } else if (strcmp(a, "--shared-key") == 0) {
      s->shared_key = v;
    } else if (strcmp(a, "--username") == 0) {
      s->username = v;
    } else if (strcmp(a, "--password") == 0) {
      s->password = v;
    } else if (strcmp(a, "--hostname") == 0 && *v && strlen(v) < sizeof s->hostname) {
      memcpy(s->hostname, v, strlen(v) + 1);
    } else {
      cli_error("send: bad option '%s %s'", a, v);
      return -1;
    }
  }
  if ((s->username || s->password) && !s->shared_key) {
    cli_error("--username and --password take effect only with --shared-key");
    return -1;
  }
  return 0;
}

int cli_send(const cli_opts_t *o, int argc, char **argv) {
  sender_t s = {.o = o, .tag = "parley", .batch = 1000, .window = 8, .retries = 10, .fd = -1,
                .in_fd = -1};
  int status = CLI_EXIT_OK;

  s.addr = o->addr ? o->addr : CLI_SEND_ADDR;
  if (parse_send_args(&s, argc, argv) < 0) return CLI_EXIT_USAGE;
  if (!s.hostname[0]) {
    /* parleyd names itself after the machine by default: a client on the same machine
     * with the same name would fail the handshake's reflection guard. */
    char host[200] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(s.hostname, sizeof s.hostname, "parley@%s", host);
  }
  if (!s.input || strcmp(s.input, "-") == 0) {
    s.in_fd = STDIN_FILENO;
    s.input = "standard input";
  } else if ((s.in_fd = open(s.input, O_RDONLY | O_CLOEXEC)) < 0) {
    cli_error("cannot open %s: %s", s.input, strerror(errno));
    return CLI_EXIT_FAIL;
  }
  msgpack_sbuffer_init(&s.entries);
  if (!(s.flight = calloc((size_t)s.window, sizeof *s.flight)) ||
      !msgpack_unpacker_init(&s.up, MAX_REPLY_BYTES)) {
    cli_error("out of memory");
    return CLI_EXIT_FAIL;
  }

  run(&s);

  printf("sent %llu, acked %llu, refused %llu\n", (unsigned long long)s.sent,
         (unsigned long long)s.acked, (unsigned long long)s.refused);
  fflush(stdout);
  if (s.fatal) {
    cli_error("%s", s.why);
    status = CLI_EXIT_FAIL;
  }
  if (s.acked < s.sent) {
    cli_error("%llu record%s not acknowledged", (unsigned long long)(s.sent - s.acked),
              s.sent - s.acked == 1 ? "" : "s");
    status = CLI_EXIT_FAIL;
  }
  if (s.refused) {
    cli_error("%llu line%s refused (see above)", (unsigned long long)s.refused,
              s.refused == 1 ? "" : "s");
    status = CLI_EXIT_FAIL;
  }
  if (s.fd >= 0) close(s.fd);
  if (s.in_fd != STDIN_FILENO) close(s.in_fd);
  for (int i = 0; i < s.nflight; i++) chunk_free(s.flight[i]);
  free(s.flight);
  free(s.ibuf);
  msgpack_sbuffer_destroy(&s.entries);
  msgpack_unpacker_destroy(&s.up);
  return status;
}
