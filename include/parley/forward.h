/* Fluentd Forward protocol v1/v1.5 reader, hiredis-style: fed bytes, does no I/O, keeps a
 * sticky error. It frames top-level MessagePack objects with its own bounded scanner (every
 * declared length and count is checked against the limits, nesting is capped) before
 * msgpack-c decodes anything, because msgpack-c allocates for a declared array or map size
 * up front. A message is validated whole (including gunzip and every packed entry) before
 * pl_fwd_reader_next() returns it, so walking its entries never fails half-way. */
#ifndef PARLEY_FORWARD_H
#define PARLEY_FORWARD_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/types.h"

typedef struct pl_fwd_reader pl_fwd_reader_t;

typedef struct pl_fwd_limits {
  size_t max_message; /* bytes of one top-level object, and of its inflated entries */
  size_t max_record;  /* bytes of one entry */
  unsigned max_depth; /* nesting of arrays and maps, at most 32 (msgpack-c's own stack) */
} pl_fwd_limits_t;

typedef enum {
  PL_FWD_HEARTBEAT = 0, /* a bare nil */
  PL_FWD_MESSAGE,       /* [tag, time, record, option?] */
  PL_FWD_FORWARD,       /* [tag, [[time, record], ...], option?] */
  PL_FWD_PACKED,        /* [tag, bin|str of concatenated entries, option?] */
  PL_FWD_COMPRESSED,    /* PackedForward whose entries are gzip (compressed: "gzip" or sniffed) */
  PL_FWD_PING           /* handshake ["PING", host, salt, digest, user, password digest] */
} pl_fwd_mode_t;

/* One decoded message. Pointers are into the reader: valid until the next call to
 * pl_fwd_reader_next() or pl_fwd_reader_free(). */
typedef struct pl_fwd_msg {
  pl_fwd_mode_t mode;
  pl_str_t tag;
  const char *chunk;  /* raw MessagePack bytes of the option "chunk" value, or NULL */
  size_t chunk_len;   /* echo these bytes as the value of {"ack": ...} */
  size_t nentries;    /* entries pl_fwd_reader_entry() will return */
  size_t wire_bytes;  /* bytes the message took on the wire */
  /* handshake PING only */
  pl_str_t ping_hostname, ping_salt, ping_digest, ping_username, ping_password;
} pl_fwd_msg_t;

/* One entry of the current message. A structurally bad entry (not [time, map], a time of
 * the wrong type, EventTime of the wrong size) is still returned, with record == NULL and
 * error saying why, so the caller can keep it in the reject store with its raw bytes. */
typedef struct pl_fwd_entry {
  int64_t sec;                 /* entry time, seconds */
  uint32_t nsec;               /* nanoseconds (EventTime, or the fraction of a float) */
  int skip;                    /* a Fluent Bit group marker (EventTime -1 or -2): not an event */
  const msgpack_object *record;/* the record map, or NULL when error is set */
  const char *error;           /* static text, or NULL */
  const char *raw;             /* the entry's bytes as received ([time, record]) */
  size_t raw_len;
} pl_fwd_entry_t;

/* Returns a new reader, or NULL when out of memory. */
pl_fwd_reader_t *pl_fwd_reader_new(const pl_fwd_limits_t *limits);
void pl_fwd_reader_free(pl_fwd_reader_t *r);

/* Copies len bytes into the reader. Returns 0, or the sticky error. */
int pl_fwd_reader_feed(pl_fwd_reader_t *r, const char *buf, size_t len);

/* Zero-copy feeding for a libuv alloc_cb: returns writable space at the end of the
 * reader's buffer (at least min bytes when the limits allow, growing the buffer as
 * needed), then pl_fwd_reader_wrote() says how many bytes were written there.
 * Returns 0, PL_ETOOBIG when the pending bytes already fill the largest allowed buffer,
 * PL_ENOMEM, or the sticky error. */
int pl_fwd_reader_space(pl_fwd_reader_t *r, size_t min, char **buf, size_t *len);
void pl_fwd_reader_wrote(pl_fwd_reader_t *r, size_t n);

/* Decodes the next complete message. Returns 1 with *msg filled, 0 when more bytes are
 * needed, or a negative PL_E* code (PL_EPROTO, PL_ETOOBIG, PL_EDEPTH, PL_EGZIP,
 * PL_ENOMEM) that sticks: every later call returns it. pl_fwd_reader_errstr() then says
 * what was wrong and where. Bytes after the last complete message stay buffered. */
int pl_fwd_reader_next(pl_fwd_reader_t *r, pl_fwd_msg_t *msg);

/* Returns the next entry of the message last returned by pl_fwd_reader_next(): 1 with
 * *e filled (valid until the next call), 0 when there are no more. Never fails: the
 * message was validated whole. */
int pl_fwd_reader_entry(pl_fwd_reader_t *r, pl_fwd_entry_t *e);

/* While set, the next message must be a handshake PING (returned as PL_FWD_PING);
 * anything else is a protocol error. */
void pl_fwd_reader_expect_ping(pl_fwd_reader_t *r, int on);

/* The sticky error's text ("" when none). */
const char *pl_fwd_reader_errstr(const pl_fwd_reader_t *r);

/* Bytes received but not yet consumed by a complete message. */
size_t pl_fwd_reader_pending(const pl_fwd_reader_t *r);

/* Bytes of memory the reader holds (buffers, zone, inflate output), for the daemon-wide
 * memory budget. */
size_t pl_fwd_reader_memory(const pl_fwd_reader_t *r);

/* Frees buffers that hold no pending bytes (idle connections keep nothing). */
void pl_fwd_reader_trim(pl_fwd_reader_t *r);

#endif
