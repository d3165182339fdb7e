/* Bounded, resumable MessagePack framing (see mpscan.h for why it is hand-written). It reads
 * only headers: str/bin/ext payloads are skipped by length, never looked at. */
#include "parley/mpscan.h"

#include <string.h>

#include "parley/error.h"

void pl_mpscan_init(pl_mpscan_t *s, size_t max_bytes, unsigned max_depth) {
  memset(s, 0, sizeof(*s));
  s->max_bytes = max_bytes;
  s->max_depth = max_depth > PL_MPSCAN_MAX_DEPTH ? PL_MPSCAN_MAX_DEPTH : max_depth;
}

void pl_mpscan_reset(pl_mpscan_t *s) {
  s->pos = 0;
  s->depth = 0;
  s->err_at = 0;
}

static uint64_t be(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

/* Header of the token at p (avail bytes there): sets *hdr (header bytes), *skip (payload
 * bytes after the header) and *count (elements it opens; maps count keys and values).
 * Returns 2 for an array or map, 1 for anything else, 0 when the header is incomplete,
 * or PL_EPROTO. */
static int token(const unsigned char *p, size_t avail, size_t *hdr, uint64_t *skip,
                 uint64_t *count) {
  unsigned char b = p[0];
  int lenbytes = 0;
  *skip = 0;
  *count = 0;
  *hdr = 1;
  if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) return 1;
  if (b >= 0x80 && b <= 0x8f) {
    *count = (uint64_t)(b & 0x0f) * 2;
    return 2;
  }
  if (b >= 0x90 && b <= 0x9f) {
    *count = b & 0x0f;
    return 2;
  }
  if (b >= 0xa0 && b <= 0xbf) {
    *skip = b & 0x1f;
    return 1;
  }
  switch (b) {
    case 0xc1:
      return PL_EPROTO;
    case 0xc4: case 0xd9: lenbytes = 1; break; /* bin8, str8 */
    case 0xc5: case 0xda: lenbytes = 2; break;
    case 0xc6: case 0xdb: lenbytes = 4; break;
    case 0xc7: case 0xc8: case 0xc9: { /* ext8/16/32: length, then a type byte */
      int n = b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4;
      if (avail < (size_t)(1 + n)) return 0;
      *hdr = (size_t)(1 + n);
      *skip = be(p + 1, n) + 1;
      return 1;
    }
    case 0xca: *skip = 4; return 1;
    case 0xcb: *skip = 8; return 1;
    case 0xcc: case 0xd0: *skip = 1; return 1;
    case 0xcd: case 0xd1: *skip = 2; return 1;
    case 0xce: case 0xd2: *skip = 4; return 1;
    case 0xcf: case 0xd3: *skip = 8; return 1;
    case 0xd4: *skip = 2; return 1; /* fixext: type byte + data */
    case 0xd5: *skip = 3; return 1;
    case 0xd6: *skip = 5; return 1;
    case 0xd7: *skip = 9; return 1;
    case 0xd8: *skip = 17; return 1;
    case 0xdc: case 0xdd: case 0xde: case 0xdf: {
      int n = (b == 0xdc || b == 0xde) ? 2 : 4;
      if (avail < (size_t)(1 + n)) return 0;
      *hdr = (size_t)(1 + n);
      *count = be(p + 1, n) * (b >= 0xde ? 2 : 1);
      return 2;
    }
    default:
      return PL_EPROTO;
  }
  if (avail < (size_t)(1 + lenbytes)) return 0;
  *hdr = (size_t)(1 + lenbytes);
  *skip = be(p + 1, lenbytes);
  return 1;
}

ssize_t pl_mpscan_run(pl_mpscan_t *s, const unsigned char *buf, size_t avail) {
  for (;;) {
    size_t hdr;
    uint64_t skip, count;
    int rc;
    if (s->depth > 0 && s->left[s->depth] == 0) {
      s->depth--;
      continue;
    }
    if (s->pos > 0 && s->depth == 0) return (ssize_t)s->pos; /* the root is complete */
    if (s->pos >= avail) return 0;
    rc = token(buf + s->pos, avail - s->pos, &hdr, &skip, &count);
    if (rc == 0) return 0;
    if (rc < 0) {
      s->err_at = s->pos;
      return rc;
    }
    /* Every element takes at least one byte, so a count larger than the room left under
     * the limit cannot be honest: refuse it before anyone allocates for it. */
    if (skip > s->max_bytes || count > s->max_bytes ||
        s->pos + hdr + skip + count > s->max_bytes) {
      s->err_at = s->pos;
      return PL_ETOOBIG;
    }
    if (s->pos + hdr + skip > avail) return 0; /* payload not all here yet: resume on it */
    /* msgpack-c checks its stack before it opens any container, an empty one included, so
     * an empty array or map one level past the limit is refused here as well. */
    if (rc == 2 && s->depth + 1 > s->max_depth) {
      s->err_at = s->pos;
      return PL_EDEPTH;
    }
    s->pos += hdr + (size_t)skip;
    if (s->depth > 0) s->left[s->depth]--;
    if (rc == 2 && count > 0) { /* an empty array or map is complete at once */
      s->depth++;
      s->left[s->depth] = count;
    }
  }
}
