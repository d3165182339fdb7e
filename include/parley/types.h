/* Small value types shared across modules. */
#ifndef PARLEY_TYPES_H
#define PARLEY_TYPES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A byte string that does not own its bytes and is not NUL-terminated. Who owns p is
 * written where each pl_str_t is produced. */
typedef struct pl_str {
  const char *p;
  uint32_t n;
} pl_str_t;

static inline pl_str_t pl_str(const char *p, size_t n) {
  pl_str_t s = {p, (uint32_t)n};
  return s;
}

static inline pl_str_t pl_cstr(const char *p) { return pl_str(p, strlen(p)); }

static inline int pl_str_eq(pl_str_t a, const char *lit) {
  size_t n = strlen(lit);
  return a.n == n && memcmp(a.p, lit, n) == 0;
}

/* Big-endian helpers: every LMDB key is big-endian so a cursor walks in numeric order. */
static inline void pl_be32_put(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}
static inline uint32_t pl_be32_get(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void pl_be64_put(unsigned char *p, uint64_t v) {
  pl_be32_put(p, (uint32_t)(v >> 32));
  pl_be32_put(p + 4, (uint32_t)v);
}
static inline uint64_t pl_be64_get(const unsigned char *p) {
  return (uint64_t)pl_be32_get(p) << 32 | pl_be32_get(p + 4);
}

#endif
