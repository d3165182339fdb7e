/* A resumable, non-allocating MessagePack framer: it finds where one top-level object ends
 * while enforcing a byte limit and a nesting limit, before anything decodes it. Hand-written
 * because msgpack-c allocates for a declared array or map size as soon as it reads the
 * header (msgpack/msgpack-c#1013), and no library offers a bounded, resumable framer.
 * Scanning resumes where it stopped, so an object arriving in many reads is scanned once. */
#ifndef PARLEY_MPSCAN_H
#define PARLEY_MPSCAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PL_MPSCAN_MAX_DEPTH 32 /* msgpack-c's own unpack stack (MSGPACK_EMBED_STACK_SIZE) */

typedef struct pl_mpscan {
  size_t pos;        /* bytes of the current object already framed */
  size_t max_bytes;  /* largest object accepted */
  unsigned max_depth;
  unsigned depth;    /* open arrays/maps */
  uint64_t left[PL_MPSCAN_MAX_DEPTH + 1]; /* elements still due at each open level */
  size_t err_at;     /* offset of the error, for messages */
} pl_mpscan_t;

/* Prepares s for a new object. max_depth is capped at PL_MPSCAN_MAX_DEPTH. */
void pl_mpscan_init(pl_mpscan_t *s, size_t max_bytes, unsigned max_depth);
/* Forgets the current object (keeps the limits). */
void pl_mpscan_reset(pl_mpscan_t *s);

/* buf[0..avail) holds the current object's bytes from its first byte on (more than the
 * object is fine). Returns the object's length once it is complete, 0 when more bytes are
 * needed, or PL_ETOOBIG (declared or scanned size over max_bytes), PL_EDEPTH, or PL_EPROTO
 * (the reserved byte 0xc1). Calling again with the same or a longer buffer resumes. */
ssize_t pl_mpscan_run(pl_mpscan_t *s, const unsigned char *buf, size_t avail);

#endif
