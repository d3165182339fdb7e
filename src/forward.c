/* Fluentd Forward protocol v1/v1.5 reader: frames each top-level MessagePack object with a
 * bounded, resumable scanner, validates the whole message (gunzip and every entry included),
 * then hands out its entries one at a time, decoded by msgpack-c. */
#include "parley/forward.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "parley/error.h"

/* msgpack-c's template parser has a fixed stack of MSGPACK_EMBED_STACK_SIZE containers and
 * fails with a NOMEM error beyond it; nothing deeper may ever reach msgpack_unpack(). */
#define DEPTH_MAX 32
/* The frame array and Forward mode's entries array sit around each entry: max_depth counts
 * from the entry ([time, record] is depth 1), so a frame may be this much deeper. */
#define FRAME_WRAP 2
#define BUF_MIN 4096
/* Room for the start of the next message behind a frame of max_message bytes. */
#define BUF_SLACK 65536
#define CHUNK_MAX 256
#define ZONE_CHUNK 8192
/* What zlib's inflate state and its 32 KiB window cost, roughly; for pl_fwd_reader_memory. */
#define ZLIB_STATE_BYTES 45000
#define AUX_MIN 16384
#define MESSAGE_MAX ((size_t)1 << 31)

/* Hand-written MessagePack scanning. msgpack-c allocates n * sizeof(msgpack_object) as soon
 * as it reads an array or map header (msgpack/msgpack-c#1013), so 5 hostile bytes can ask for
 * ~96 GB, and it cannot bound a frame before the frame is complete. No library we know of
 * validates bounded and resumably, so this scanner does: it allocates nothing, keeps its
 * state between feeds (a frame arriving in many reads is scanned once, where Fluent Bit
 * re-parses from the start on every read), and fails as soon as a declared size cannot fit. */

enum { T_NIL, T_BOOL, T_INT, T_FLOAT, T_STR, T_BIN, T_EXT, T_ARRAY, T_MAP, T_BAD };

typedef struct head {
  unsigned type;
  unsigned hs; /* header bytes, the ext type byte included */
  uint64_t n;  /* payload bytes, or elements (twice the pairs for a map) */
} head_t;

/* Header bytes beyond the first, by first byte. */
static const uint8_t head_extra[256] = {
    [0xc4] = 1, [0xc5] = 2, [0xc6] = 4, [0xc7] = 2, [0xc8] = 3, [0xc9] = 5, [0xd4] = 1,
    [0xd5] = 1, [0xd6] = 1, [0xd7] = 1, [0xd8] = 1, [0xd9] = 1, [0xda] = 2, [0xdb] = 4,
    [0xdc] = 2, [0xdd] = 4, [0xde] = 2, [0xdf] = 4,
};

static inline uint32_t be16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }

/* p must hold the whole header (1 + head_extra[p[0]] bytes). */
static void head_read(const unsigned char *p, head_t *h) {
  unsigned b = p[0];
  h->hs = 1 + head_extra[b];
  h->n = 0;
  if (b < 0x80 || b >= 0xe0) {
    h->type = T_INT;
    return;
  }
  if (b < 0x90) {
    h->type = T_MAP;
    h->n = 2u * (b & 0x0f);
    return;
  }
  if (b < 0xa0) {
    h->type = T_ARRAY;
    h->n = b & 0x0f;
    return;
  }
  if (b < 0xc0) {
    h->type = T_STR;
    h->n = b & 0x1f;
    return;
  }
  switch (b) {
    case 0xc0: h->type = T_NIL; break;
    case 0xc1: h->type = T_BAD; break;
    case 0xc2: case 0xc3: h->type = T_BOOL; break;
    case 0xc4: h->type = T_BIN; h->n = p[1]; break;
    case 0xc5: h->type = T_BIN; h->n = be16(p + 1); break;
    case 0xc6: h->type = T_BIN; h->n = pl_be32_get(p + 1); break;
    case 0xc7: h->type = T_EXT; h->n = p[1]; break;
    case 0xc8: h->type = T_EXT; h->n = be16(p + 1); break;
    case 0xc9: h->type = T_EXT; h->n = pl_be32_get(p + 1); break;
    case 0xca: h->type = T_FLOAT; h->n = 4; break;
    case 0xcb: h->type = T_FLOAT; h->n = 8; break;
    case 0xcc: case 0xd0: h->type = T_INT; h->n = 1; break;
    case 0xcd: case 0xd1: h->type = T_INT; h->n = 2; break;
    case 0xce: case 0xd2: h->type = T_INT; h->n = 4; break;
    case 0xcf: case 0xd3: h->type = T_INT; h->n = 8; break;
    case 0xd4: h->type = T_EXT; h->n = 1; break;
    case 0xd5: h->type = T_EXT; h->n = 2; break;
    case 0xd6: h->type = T_EXT; h->n = 4; break;
    case 0xd7: h->type = T_EXT; h->n = 8; break;
    case 0xd8: h->type = T_EXT; h->n = 16; break;
    case 0xd9: h->type = T_STR; h->n = p[1]; break;
    case 0xda: h->type = T_STR; h->n = be16(p + 1); break;
    case 0xdb: h->type = T_STR; h->n = pl_be32_get(p + 1); break;
    case 0xdc: h->type = T_ARRAY; h->n = be16(p + 1); break;
    case 0xdd: h->type = T_ARRAY; h->n = pl_be32_get(p + 1); break;
    case 0xde: h->type = T_MAP; h->n = 2u * be16(p + 1); break;
    default: h->type = T_MAP; h->n = 2u * (uint64_t)pl_be32_get(p + 1); break; /* 0xdf */
  }
}

static const char *type_name(unsigned type) {
  static const char *const names[] = {"nil", "bool", "int", "float", "str",
                                      "bin", "ext", "array", "map", "reserved byte 0xc1"};
  return names[type];
}

static const char *byte_type_name(unsigned char b) {
  unsigned char hdr[9] = {b};
  head_t h;
  head_read(hdr, &h);
  return type_name(h.type);
}

/* Scanner state for one top-level object. rem[0] is a virtual level holding the object
 * itself; rem[k] counts what container k still owes. Invariant after each header:
 * pos + owed <= limit, because every owed element takes at least one byte.
 * A frame scan also watches the elements of the frame's element [1] when it is a container
 * (Forward mode's entries), so each entry's size is checked in the same single pass. */
typedef struct scan {
  size_t pos;
  uint64_t owed;
  unsigned top;
  unsigned watch;        /* level whose elements are entries, or NO_WATCH */
  int arm;               /* a frame scan: watch element [1] once it is pushed */
  uint64_t root_n;       /* elements of the level-1 container */
  size_t wstart, wend;   /* start of the current watched element; end of the watched container */
  uint64_t wlimit;       /* largest watched element */
  uint64_t hit;          /* the limit that was exceeded, for the error text */
  uint64_t rem[DEPTH_MAX + FRAME_WRAP + 1];
} scan_t;

#define NO_WATCH 255u

static void scan_init(scan_t *s) {
  s->pos = 0;
  s->owed = 1;
  s->top = 0;
  s->rem[0] = 1;
  s->watch = NO_WATCH;
  s->arm = 0;
  s->wend = 0;
}

/* Advances over the avail bytes at p. Returns 1 when the object is complete (its size in
 * s->pos), 0 when more bytes are needed, or PL_EPROTO / PL_ETOOBIG / PL_EDEPTH with s->pos
 * at the offending header (or entry) and *why set. s->pos may run past avail inside a
 * str/bin/ext payload: the payload is then owed by bytes not yet received. */
static int scan(scan_t *s, const unsigned char *p, size_t avail, uint64_t limit, unsigned depth,
                const char **why) {
  size_t pos = s->pos;
  unsigned top = s->top, watch = s->watch;
  uint64_t owed = s->owed;
  uint64_t *rem = s->rem;
  int rc = 0;
  for (;;) {
    while (rem[top] == 0) {
      if (top == watch) { /* the last watched element ends with its container */
        if (pos - s->wstart > s->wlimit)
          goto entry_too_big;
        s->wend = pos;
        watch = NO_WATCH;
      }
      if (top == 0) {
        rc = pos <= avail;
        goto out;
      }
      top--;
    }
    if (pos >= avail)
      goto out;
    if (top == watch) {
      if (pos - s->wstart > s->wlimit)
        goto entry_too_big;
      s->wstart = pos;
    }
    unsigned b = p[pos];
    if (b < 0x80 || b >= 0xe0) { /* fixint: one byte, keeps the invariant unchecked */
      pos++;
      rem[top]--;
      owed--;
      continue;
    }
    head_t h;
    if (b < 0xc0) { /* the one-byte headers records are mostly made of */
      h.hs = 1;
      if (b >= 0xa0) {
        h.type = T_STR;
        h.n = b & 0x1f;
      } else if (b >= 0x90) {
        h.type = T_ARRAY;
        h.n = b & 0x0f;
      } else {
        h.type = T_MAP;
        h.n = 2u * (b & 0x0f);
      }
    } else {
      if (avail - pos < 1u + head_extra[b])
        goto out;
      head_read(p + pos, &h);
    }
    if (h.type == T_BAD) {
      *why = "reserved byte 0xc1 is not MessagePack";
      rc = PL_EPROTO;
      goto out;
    }
    rem[top]--;
    owed--;
    if (h.type == T_ARRAY || h.type == T_MAP) {
      if (pos + h.hs + owed + h.n > limit) {
        *why = h.type == T_ARRAY ? "declared array size exceeds the size limit"
                                 : "declared map size exceeds the size limit";
        s->hit = limit;
        rc = PL_ETOOBIG;
        goto out;
      }
      if (top + 1 > depth) {
        *why = "arrays and maps nest deeper than the depth limit";
        s->hit = depth;
        rc = PL_EDEPTH;
        goto out;
      }
      pos += h.hs;
      if (h.n) {
        rem[++top] = h.n;
        owed += h.n;
        if (top == 1) {
          s->root_n = h.n;
        } else if (top == 2 && s->arm && rem[1] + 2 == s->root_n) {
          s->arm = 0;
          watch = 2;
          s->wstart = pos;
        }
      }
    } else {
      if (pos + h.hs + h.n + owed > limit) {
        *why = "declared str/bin/ext length exceeds the size limit";
        s->hit = limit;
        rc = PL_ETOOBIG;
        goto out;
      }
      pos += h.hs + h.n;
    }
  }
entry_too_big:
  *why = "entry exceeds the record size limit";
  s->hit = s->wlimit;
  pos = s->wstart;
  rc = PL_ETOOBIG;
out:
  s->pos = pos;
  s->top = top;
  s->owed = owed;
  s->watch = watch;
  return rc;
}

/* Measures one object whose bytes are all present. Returns 1 with its size in *size, 0 when
 * it is truncated, or an error from scan() with the failing position in *size. */
static int measure(const unsigned char *p, size_t avail, uint64_t limit, unsigned depth,
                   size_t *size, const char **why) {
  scan_t s;
  scan_init(&s);
  int rc = scan(&s, p, avail, limit, depth, why);
  *size = s.pos;
  return rc;
}

/* Size of an object inside bytes already validated. */
static size_t skip(const unsigned char *p, const unsigned char *end) {
  head_t h;
  head_read(p, &h);
  if (h.type != T_ARRAY && h.type != T_MAP)
    return h.hs + h.n;
  size_t size;
  const char *why;
  int rc = measure(p, (size_t)(end - p), SIZE_MAX / 2, DEPTH_MAX + FRAME_WRAP, &size, &why);
  assert(rc == 1);
  (void)rc;
  return size;
}

struct pl_fwd_reader {
  pl_fwd_limits_t lim;
  /* Bytes: [head, head + hold) is the message last returned (its pointers stay valid until
   * the next pl_fwd_reader_next()), [head + hold, tail) is pending. */
  char *buf;
  size_t cap, head, hold, tail;
  char *retired; /* the old buffer, when growing had to leave a returned message in place */
  size_t retired_cap;
  size_t offset; /* stream offset of buf[head], for error messages */
  scan_t sc;
  int scanning;
  int err;
  int expect_ping;
  /* the current message and its entry iterator */
  int cur;
  const unsigned char *it, *it_end;
  size_t left;
  char *aux; /* inflated entries, or Message mode's re-packed entry */
  size_t aux_cap;
  z_stream zs;
  int zs_init;
  msgpack_zone *zone;
  void *zone_head;   /* the zone's first chunk: another head means it grew */
  size_t zone_extra; /* estimate of what the zone grew by */
  char errstr[200];
};

static int fail(pl_fwd_reader_t *r, int err, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(pl_fwd_reader_t *r, int err, size_t at, const char *fmt, ...) {
  int n = snprintf(r->errstr, sizeof r->errstr, "offset %zu: ", at);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->errstr + n, sizeof r->errstr - (size_t)n, fmt, ap);
  va_end(ap);
  r->err = err;
  r->cur = 0;
  r->left = 0;
  return err;
}

pl_fwd_reader_t *pl_fwd_reader_new(const pl_fwd_limits_t *limits) {
  pl_fwd_reader_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->lim = *limits;
  if (r->lim.max_depth == 0 || r->lim.max_depth > DEPTH_MAX)
    r->lim.max_depth = DEPTH_MAX;
  /* A bin32 cannot be larger, and zlib counts in 32-bit uInt. */
  if (r->lim.max_message > MESSAGE_MAX)
    r->lim.max_message = MESSAGE_MAX;
  if (r->lim.max_record > r->lim.max_message)
    r->lim.max_record = r->lim.max_message;
  return r;
}

void pl_fwd_reader_free(pl_fwd_reader_t *r) {
  if (!r)
    return;
  free(r->buf);
  free(r->retired);
  free(r->aux);
  if (r->zs_init)
    inflateEnd(&r->zs);
  if (r->zone)
    msgpack_zone_free(r->zone);
  free(r);
}

/* Makes want bytes writable at buf + tail. The message last returned never moves: when
 * growing would move it, the pending bytes go to a new buffer and the old one is retired
 * until the next pl_fwd_reader_next(). bound: largest capacity allowed, 0 for none. */
static int reserve(pl_fwd_reader_t *r, size_t want, size_t bound) {
  if (r->cap - r->tail >= want)
    return 0;
  size_t keep = r->tail - r->head - r->hold;
  char *from = r->buf + r->head + r->hold;
  if (!r->hold && r->head) {
    memmove(r->buf, from, keep);
    r->head = 0;
    r->tail = keep;
    if (r->cap - keep >= want)
      return 0;
  }
  size_t ncap = r->cap > BUF_MIN ? r->cap : BUF_MIN;
  while (ncap - keep < want)
    ncap *= 2;
  if (bound && ncap > bound)
    ncap = bound;
  assert(ncap - keep >= want);
  if (!r->hold) {
    char *nb = realloc(r->buf, ncap);
    if (!nb)
      return PL_ENOMEM;
    r->buf = nb;
    r->cap = ncap;
    return 0;
  }
  assert(!r->retired);
  char *nb = malloc(ncap);
  if (!nb)
    return PL_ENOMEM;
  memcpy(nb, from, keep);
  r->retired = r->buf;
  r->retired_cap = r->cap;
  r->offset += r->hold;
  r->buf = nb;
  r->cap = ncap;
  r->head = r->hold = 0;
  r->tail = keep;
  return 0;
}

int pl_fwd_reader_feed(pl_fwd_reader_t *r, const char *buf, size_t len) {
  if (r->err)
    return r->err;
  if (!len)
    return 0;
  /* Unbounded on purpose: feed() must take every byte it is given (the limit applies to
   * frames when next() scans them, and to space(), which the daemon uses). */
  if (reserve(r, len, 0) < 0)
    return fail(r, PL_ENOMEM, r->offset + (r->tail - r->head), "out of memory buffering input");
  memcpy(r->buf + r->tail, buf, len);
  r->tail += len;
  return 0;
}

int pl_fwd_reader_space(pl_fwd_reader_t *r, size_t min, char **buf, size_t *len) {
  if (r->err)
    return r->err;
  size_t bound = r->lim.max_message + BUF_SLACK;
  size_t pending = r->tail - r->head - r->hold;
  if (pending >= bound)
    return fail(r, PL_ETOOBIG, r->offset + r->hold,
                "%zu bytes pending without a complete message (limit %zu)", pending,
                r->lim.max_message);
  size_t want = min ? min : 1;
  if (want > bound - pending)
    want = bound - pending;
  if (reserve(r, want, bound) < 0)
    return fail(r, PL_ENOMEM, r->offset + (r->tail - r->head), "out of memory buffering input");
  size_t room = r->cap - r->tail; /* feed() may have grown the buffer past the bound */
  if (room > bound - pending)
    room = bound - pending;
  *buf = r->buf + r->tail;
  *len = room;
  return 0;
}

void pl_fwd_reader_wrote(pl_fwd_reader_t *r, size_t n) {
  assert(n <= r->cap - r->tail);
  r->tail += n;
}

void pl_fwd_reader_expect_ping(pl_fwd_reader_t *r, int on) { r->expect_ping = on; }

const char *pl_fwd_reader_errstr(const pl_fwd_reader_t *r) { return r->err ? r->errstr : ""; }

size_t pl_fwd_reader_pending(const pl_fwd_reader_t *r) { return r->tail - r->head - r->hold; }

size_t pl_fwd_reader_memory(const pl_fwd_reader_t *r) {
  size_t n = sizeof *r + r->cap + r->retired_cap + r->aux_cap;
  if (r->zone)
    n += sizeof *r->zone + ZONE_CHUNK + r->zone_extra;
  if (r->zs_init)
    n += ZLIB_STATE_BYTES;
  return n;
}

/* Drops the message last returned: its bytes, the retired buffer, the zone's growth. */
static void release(pl_fwd_reader_t *r) {
  r->head += r->hold;
  r->offset += r->hold;
  r->hold = 0;
  if (r->head == r->tail)
    r->head = r->tail = 0;
  free(r->retired);
  r->retired = NULL;
  r->retired_cap = 0;
  if (r->zone_extra) {
    msgpack_zone_clear(r->zone);
    r->zone_extra = 0;
  }
  r->cur = 0;
  r->left = 0;
}

void pl_fwd_reader_trim(pl_fwd_reader_t *r) {
  if (r->head == r->tail) {
    free(r->buf);
    r->buf = NULL;
    r->cap = r->head = r->tail = 0;
  }
  if (r->cur)
    return;
  free(r->retired);
  r->retired = NULL;
  r->retired_cap = 0;
  free(r->aux);
  r->aux = NULL;
  r->aux_cap = 0;
  if (r->zone) {
    msgpack_zone_free(r->zone);
    r->zone = NULL;
    r->zone_extra = 0;
  }
  if (r->zs_init) {
    inflateEnd(&r->zs);
    r->zs_init = 0;
  }
}

static int aux_reserve(pl_fwd_reader_t *r, size_t n) {
  if (r->aux_cap >= n)
    return 0;
  char *p = realloc(r->aux, n);
  if (!p)
    return PL_ENOMEM;
  r->aux = p;
  r->aux_cap = n;
  return 0;
}

/* Inflates one or more concatenated gzip members into aux, never past max_message. */
static int gunzip(pl_fwd_reader_t *r, const unsigned char *in, size_t inlen, size_t at,
                  size_t *outlen) {
  size_t limit = r->lim.max_message;
  if (!r->zs_init) {
    memset(&r->zs, 0, sizeof r->zs);
    if (inflateInit2(&r->zs, 16 + MAX_WBITS) != Z_OK)
      return fail(r, PL_ENOMEM, at, "out of memory starting gunzip");
    r->zs_init = 1;
  } else {
    inflateReset(&r->zs);
  }
  /* One byte past the limit tells "exactly max_message" from "more than that". */
  size_t first = inlen < (SIZE_MAX / 8) ? inlen * 4 : SIZE_MAX / 2;
  if (first < AUX_MIN)
    first = AUX_MIN;
  if (first > limit + 1)
    first = limit + 1;
  if (r->aux_cap < first && aux_reserve(r, first) < 0)
    return fail(r, PL_ENOMEM, at, "out of memory inflating entries");
  z_stream *zs = &r->zs;
  zs->next_in = (unsigned char *)in;
  zs->avail_in = (uInt)inlen; /* inlen <= max_message <= 2^31 (see pl_fwd_reader_new) */
  size_t out = 0;
  for (;;) {
    size_t cap = r->aux_cap < limit + 1 ? r->aux_cap : limit + 1;
    if (out == cap) {
      size_t ncap = cap * 2 < limit + 1 ? cap * 2 : limit + 1;
      if (aux_reserve(r, ncap) < 0)
        return fail(r, PL_ENOMEM, at, "out of memory inflating entries");
      cap = ncap;
    }
    zs->next_out = (unsigned char *)r->aux + out;
    zs->avail_out = (uInt)(cap - out);
    int zrc = inflate(zs, Z_NO_FLUSH);
    out = (size_t)((char *)zs->next_out - r->aux);
    if (out > limit)
      return fail(r, PL_ETOOBIG, at, "inflated entries exceed the message size limit (%zu)",
                  limit);
    if (zrc == Z_STREAM_END) {
      if (zs->avail_in == 0)
        break;
      inflateReset(zs); /* the next gzip member */
      continue;
    }
    if (zrc == Z_OK)
      continue;
    if (zrc == Z_BUF_ERROR && zs->avail_out == 0)
      continue;
    if (zrc == Z_BUF_ERROR)
      return fail(r, PL_EGZIP, at, "gzip entries are truncated");
    if (zrc == Z_MEM_ERROR)
      return fail(r, PL_ENOMEM, at, "out of memory inflating entries");
    return fail(r, PL_EGZIP, at, "bad gzip entries: %s", zs->msg ? zs->msg : "corrupt data");
  }
  *outlen = out;
  return 0;
}

typedef struct option {
  int compressed_set;
  int gzip;
} option_t;

static int parse_option(pl_fwd_reader_t *r, const unsigned char *f, const unsigned char *p,
                        const unsigned char *end, pl_fwd_msg_t *msg, option_t *opt) {
  head_t h;
  head_read(p, &h);
  if (h.type == T_NIL)
    return 0;
  if (h.type != T_MAP)
    return fail(r, PL_EPROTO, r->offset + (size_t)(p - f), "option must be a map or nil, not %s",
                type_name(h.type));
  const unsigned char *q = p + h.hs;
  for (uint64_t i = 0; i < h.n / 2; i++) {
    head_t kh, vh;
    head_read(q, &kh);
    const unsigned char *val = q + skip(q, end);
    head_read(val, &vh);
    size_t vlen = skip(val, end);
    if (kh.type == T_STR) {
      const char *k = (const char *)q + kh.hs;
      if (kh.n == 5 && memcmp(k, "chunk", 5) == 0) {
        if ((vh.type != T_STR && vh.type != T_BIN) || vh.n == 0 || vh.n > CHUNK_MAX)
          return fail(r, PL_EPROTO, r->offset + (size_t)(val - f),
                      "option chunk must be a str or bin of 1 to %d bytes (got %s of %llu)",
                      CHUNK_MAX, type_name(vh.type), (unsigned long long)vh.n);
        msg->chunk = (const char *)val;
        msg->chunk_len = vlen;
      } else if (kh.n == 10 && memcmp(k, "compressed", 10) == 0) {
        /* "text", "zstd" or anything else: the protocol says other values are ignored. */
        opt->compressed_set = 1;
        opt->gzip = vh.type == T_STR && vh.n == 4 && memcmp(val + vh.hs, "gzip", 4) == 0;
      }
    }
    q = val + vlen;
  }
  return 0;
}

/* Checks every entry of a packed payload: well-formed, within max_record and max_depth. */
static int check_packed(pl_fwd_reader_t *r, const unsigned char *p, size_t len, size_t at,
                        int inflated, size_t *count) {
  size_t off = 0, n = 0;
  while (off < len) {
    size_t size;
    const char *why = NULL;
    int rc = measure(p + off, len - off, r->lim.max_record, r->lim.max_depth, &size, &why);
    if (rc != 1) {
      size_t where = inflated ? at : at + off + size;
      const char *what = rc == 0 ? "is truncated" : why;
      if (rc == 0)
        rc = PL_EPROTO;
      if (inflated)
        return fail(r, rc, where, "gzip entries, inflated byte %zu: entry %zu %s%s", off + size,
                    n, rc == PL_ETOOBIG ? "too big: " : "", what);
      return fail(r, rc, where, "packed entry %zu %s%s", n, rc == PL_ETOOBIG ? "too big: " : "",
                  what);
    }
    off += size;
    n++;
  }
  *count = n;
  return 0;
}

static int decode_ping(pl_fwd_reader_t *r, const unsigned char *f, const unsigned char *p,
                       const unsigned char *end, uint64_t n, pl_fwd_msg_t *msg) {
  if (n != 6)
    return fail(r, PL_EPROTO, r->offset,
                "expected a handshake PING of 6 elements, got an array of %llu",
                (unsigned long long)n);
  pl_str_t *field[6] = {&msg->tag,         &msg->ping_hostname, &msg->ping_salt,
                        &msg->ping_digest, &msg->ping_username, &msg->ping_password};
  for (int i = 0; i < 6; i++) {
    head_t h;
    head_read(p, &h);
    if (h.type != T_STR && !(i == 2 && h.type == T_BIN))
      return fail(r, PL_EPROTO, r->offset + (size_t)(p - f),
                  "handshake PING element %d must be a %s, not %s", i,
                  i == 2 ? "str or bin" : "str", type_name(h.type));
    *field[i] = pl_str((const char *)p + h.hs, h.n);
    p += skip(p, end);
  }
  if (!pl_str_eq(msg->tag, "PING"))
    return fail(r, PL_EPROTO, r->offset, "expected a handshake PING, got \"%.*s\"",
                (int)(msg->tag.n > 16 ? 16 : msg->tag.n), msg->tag.p);
  msg->mode = PL_FWD_PING;
  return 0;
}

/* Decodes a complete, scanned frame f of size bytes into msg and readies its entries. */
static int decode(pl_fwd_reader_t *r, const unsigned char *f, size_t size, pl_fwd_msg_t *msg) {
  const unsigned char *end = f + size, *p = f;
  size_t base = r->offset;
  head_t h;
  memset(msg, 0, sizeof *msg);
  msg->wire_bytes = size;
  head_read(p, &h);
  if (h.type == T_NIL) {
    if (r->expect_ping)
      return fail(r, PL_EPROTO, base, "expected a handshake PING, got nil");
    msg->mode = PL_FWD_HEARTBEAT;
    return 0;
  }
  assert(h.type == T_ARRAY);
  uint64_t n = h.n;
  p += h.hs;
  if (r->expect_ping)
    return decode_ping(r, f, p, end, n, msg);
  if (n < 2 || n > 4)
    return fail(r, PL_EPROTO, base, "a message must be an array of 2 to 4 elements, not %llu",
                (unsigned long long)n);
  head_read(p, &h);
  if (h.type != T_STR)
    return fail(r, PL_EPROTO, base + (size_t)(p - f), "tag must be a string, not %s",
                type_name(h.type));
  msg->tag = pl_str((const char *)p + h.hs, h.n);
  p += h.hs + h.n;

  const unsigned char *e1 = p;
  head_t h1;
  head_read(e1, &h1);
  switch (h1.type) {
    case T_ARRAY: msg->mode = PL_FWD_FORWARD; break;
    case T_STR: case T_BIN: msg->mode = PL_FWD_PACKED; break;
    case T_INT: case T_FLOAT: case T_EXT: msg->mode = PL_FWD_MESSAGE; break;
    default:
      return fail(r, PL_EPROTO, base + (size_t)(e1 - f),
                  "second element must be entries (array, bin, str) or a time, not %s",
                  type_name(h1.type));
  }
  const unsigned char *rec = NULL;
  size_t tlen = 0, rlen = 0;
  if (msg->mode == PL_FWD_MESSAGE) {
    if (n < 3)
      return fail(r, PL_EPROTO, base, "Message mode is [tag, time, record, option?]: got %llu "
                  "elements", (unsigned long long)n);
    tlen = skip(e1, end);
    rec = e1 + tlen;
    rlen = n == 3 ? (size_t)(end - rec) : skip(rec, end);
    p = rec + rlen;
  } else {
    if (n > 3)
      return fail(r, PL_EPROTO, base, "%s mode is [tag, entries, option?]: got %llu elements",
                  msg->mode == PL_FWD_FORWARD ? "Forward" : "PackedForward",
                  (unsigned long long)n);
    /* The scan noted where a non-empty entries array ends: no second walk over it. */
    p = h1.type == T_ARRAY && h1.n ? f + r->sc.wend : e1 + skip(e1, end);
  }
  option_t opt = {0, 0};
  if (p < end && parse_option(r, f, p, end, msg, &opt) < 0)
    return r->err;

  if (msg->mode == PL_FWD_MESSAGE) {
    /* Re-packed as [time, record] so raw is always a valid entry, whatever the mode. */
    size_t elen = 1 + tlen + rlen, got;
    const char *why = NULL;
    if (elen > r->lim.max_record)
      return fail(r, PL_ETOOBIG, base + (size_t)(e1 - f),
                  "entry of %zu bytes exceeds the record size limit (%zu)", elen,
                  r->lim.max_record);
    if (aux_reserve(r, elen) < 0)
      return fail(r, PL_ENOMEM, base, "out of memory copying the entry");
    r->aux[0] = (char)0x92;
    memcpy(r->aux + 1, e1, tlen + rlen);
    int rc = measure((const unsigned char *)r->aux, elen, r->lim.max_record, r->lim.max_depth,
                     &got, &why);
    if (rc != 1)
      return fail(r, rc, base + (size_t)(e1 - f) + got - 1, "record: %s", why);
    r->it = (const unsigned char *)r->aux;
    r->it_end = r->it + elen;
    msg->nentries = 1;
  } else if (msg->mode == PL_FWD_FORWARD) {
    /* The frame scan already held each entry to max_record, and to max_depth through the
     * frame's depth limit. */
    r->it = e1 + h1.hs;
    r->it_end = p;
    msg->nentries = h1.n;
  } else {
    const unsigned char *pay = e1 + h1.hs;
    size_t plen = h1.n, at = base + (size_t)(pay - f);
    int gz = opt.compressed_set ? opt.gzip : plen >= 2 && pay[0] == 0x1f && pay[1] == 0x8b;
    if (gz) {
      if (gunzip(r, pay, plen, at, &plen) < 0)
        return r->err;
      pay = (const unsigned char *)r->aux;
      msg->mode = PL_FWD_COMPRESSED;
    }
    if (check_packed(r, pay, plen, at, gz, &msg->nentries) < 0)
      return r->err;
    r->it = pay;
    r->it_end = pay + plen;
  }
  r->left = msg->nentries;
  return 0;
}

int pl_fwd_reader_next(pl_fwd_reader_t *r, pl_fwd_msg_t *msg) {
  if (r->err)
    return r->err;
  release(r);
  size_t avail = r->tail - r->head;
  if (!avail)
    return 0;
  const unsigned char *p = (const unsigned char *)r->buf + r->head;
  if (!r->scanning) {
    /* Anything but an array or nil is refused on its first byte, before it can buffer. */
    unsigned char b = p[0];
    if (b != 0xc0 && (b & 0xf0) != 0x90 && b != 0xdc && b != 0xdd)
      return fail(r, PL_EPROTO, r->offset, "a message must be an array or nil, not %s",
                  byte_type_name(b));
    scan_init(&r->sc);
    r->sc.arm = 1;
    r->sc.wlimit = r->lim.max_record;
    r->scanning = 1;
  }
  const char *why = NULL;
  int rc = scan(&r->sc, p, avail, r->lim.max_message, r->lim.max_depth + FRAME_WRAP, &why);
  if (rc == 0)
    return 0;
  if (rc < 0) {
    if (rc == PL_EDEPTH) /* what the caller configured, not counting the frame's wrapping */
      return fail(r, rc, r->offset + r->sc.pos, "%s (%u)", why, r->lim.max_depth);
    if (rc == PL_ETOOBIG)
      return fail(r, rc, r->offset + r->sc.pos, "%s (%llu bytes)", why,
                  (unsigned long long)r->sc.hit);
    return fail(r, rc, r->offset + r->sc.pos, "%s", why);
  }
  r->scanning = 0;
  size_t size = r->sc.pos;
  if (decode(r, p, size, msg) < 0)
    return r->err;
  r->hold = size;
  r->cur = 1;
  return 1;
}

/* Reads the time slot of an entry; returns an error text or NULL. */
static const char *entry_time(const msgpack_object *t, pl_fwd_entry_t *e) {
  switch (t->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      if (t->via.u64 > INT64_MAX)
        return "time out of range";
      e->sec = (int64_t)t->via.u64;
      return NULL;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      e->sec = t->via.i64;
      return NULL;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: {
      double f = t->via.f64;
      if (!(f > -9.2e18 && f < 9.2e18))
        return "time out of range";
      double s = floor(f);
      int64_t ns = llround((f - s) * 1e9);
      e->sec = (int64_t)s;
      if (ns >= 1000000000) {
        e->sec++;
        ns -= 1000000000;
      }
      e->nsec = (uint32_t)ns;
      return NULL;
    }
    case MSGPACK_OBJECT_EXT: {
      if (t->via.ext.type != 0)
        return "time ext must be EventTime (ext type 0)";
      if (t->via.ext.size != 8)
        return "EventTime must have exactly 8 data bytes";
      const unsigned char *d = (const unsigned char *)t->via.ext.ptr;
      uint32_t sec = pl_be32_get(d), nsec = pl_be32_get(d + 4);
      /* Fluent Bit group start/end markers carry metadata, not an event. */
      if (sec >= 0xfffffffeu) {
        e->skip = 1;
      } else if (nsec >= 1000000000u) {
        return "EventTime nanoseconds out of range";
      }
      e->sec = sec;
      e->nsec = nsec;
      return NULL;
    }
    default:
      return "time must be an int, a float or an EventTime";
  }
}

static const char *entry_check(const msgpack_object *o, pl_fwd_entry_t *e) {
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 2)
    return "entry must be a [time, record] array";
  const msgpack_object *t = &o->via.array.ptr[0], *rec = &o->via.array.ptr[1];
  if (t->type == MSGPACK_OBJECT_ARRAY) { /* v1.5: [EventTime, metadata] */
    if (t->via.array.size != 2 || t->via.array.ptr[0].type == MSGPACK_OBJECT_ARRAY ||
        t->via.array.ptr[1].type != MSGPACK_OBJECT_MAP)
      return "time must be [EventTime, metadata map] when it is an array";
    t = &t->via.array.ptr[0];
  }
  const char *err = entry_time(t, e);
  if (err)
    return err;
  if (rec->type != MSGPACK_OBJECT_MAP)
    return "record must be a map";
  e->record = rec;
  return NULL;
}

int pl_fwd_reader_entry(pl_fwd_reader_t *r, pl_fwd_entry_t *e) {
  memset(e, 0, sizeof *e);
  if (!r->cur || !r->left)
    return 0;
  const unsigned char *p = r->it;
  size_t avail = (size_t)(r->it_end - p), off = 0;
  r->left--;
  if (!r->zone) {
    r->zone = msgpack_zone_new(ZONE_CHUNK);
    if (r->zone)
      r->zone_head = r->zone->chunk_list.head;
  } else {
    msgpack_zone_clear(r->zone);
    r->zone_extra = 0;
  }
  msgpack_object o;
  msgpack_unpack_return ret = MSGPACK_UNPACK_NOMEM_ERROR;
  /* msgpack_unpack() (not _next()) because it decodes into our zone: _next() frees and
   * mallocs a whole zone on every call. The entry was validated, so only memory can fail. */
  if (r->zone)
    ret = msgpack_unpack((const char *)p, avail, &off, r->zone, &o);
  if (ret != MSGPACK_UNPACK_SUCCESS && ret != MSGPACK_UNPACK_EXTRA_BYTES) {
    off = skip(p, r->it_end);
    e->error = "out of memory decoding the entry";
  } else {
    if ((void *)r->zone->chunk_list.head != r->zone_head)
      r->zone_extra = 2 * off * sizeof(msgpack_object);
    e->error = entry_check(&o, e);
    if (e->error) {
      e->sec = 0;
      e->nsec = 0;
      e->skip = 0;
    }
  }
  e->raw = (const char *)p;
  e->raw_len = off;
  r->it = p + off;
  return 1;
}
