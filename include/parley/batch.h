/* A batch: what crosses from a producer (a Forward connection today, a Kafka consumer
 * later) to the writer. It holds validated records with their stored form, rejects with
 * their reason and raw bytes, an optional idempotency key (the Forward chunk id), and a
 * completion that fires on the producer's loop once the batch is durable or has failed.
 * All of a batch commits in one transaction or none of it does. */
#ifndef PARLEY_BATCH_H
#define PARLEY_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "parley/record.h"

typedef struct pl_batch pl_batch_t;

/* Fires once per submitted batch, on the loop the writer was started with, after the
 * transaction holding the batch has committed (and been fsync'd under sync=full) or has
 * failed (b->status < 0: nothing of the batch is stored). The callback owns b again and
 * must free it with pl_batch_free(). */
typedef void (*pl_batch_done_cb)(pl_batch_t *b);

struct pl_batch {
  /* public, set by the producer before submitting */
  pl_batch_done_cb done;
  void *data;            /* the producer's own pointer */
  /* read-only, set by the writer before done fires */
  int status;            /* 0, or a PL_E* code */
  uint32_t stored;       /* records stored as new events */
  uint32_t duplicates;   /* records whose (date, id) was already stored */
  uint32_t rejected;     /* rejects written to the reject store */
  int chunk_seen;        /* the chunk id was committed before: nothing was stored again */
  uint64_t submitted_ns; /* set by pl_writer_submit (monotonic), for latency metrics */
  /* private: owned by batch.c / writer.c */
  char *chunk;
  size_t chunk_len;
  char *arena;
  size_t arena_len, arena_cap;
  uint32_t nrecords, nrejects;
  pl_batch_t *next; /* writer queue link */
};

/* Returns a new empty batch, or NULL when out of memory. Free with pl_batch_free(). */
pl_batch_t *pl_batch_new(void);
void pl_batch_free(pl_batch_t *b);

/* Empties b for reuse (keeps its memory). */
void pl_batch_reset(pl_batch_t *b);

/* Copies the idempotency key (the Forward chunk value's raw bytes). Returns 0 or
 * PL_ENOMEM. A batch whose key was committed before is acknowledged without storing. */
int pl_batch_set_chunk(pl_batch_t *b, const void *chunk, size_t len);

/* Copies rec's strings and its stored form value[0..len) into the batch.
 * Returns 0 or PL_ENOMEM. */
int pl_batch_add_record(pl_batch_t *b, const pl_record_t *rec, const void *value, size_t len);

/* Copies a reject: reason (NUL-terminated), the raw bytes received, the peer's address
 * and the receive time (Unix ms). Returns 0 or PL_ENOMEM. */
int pl_batch_add_reject(pl_batch_t *b, const char *reason, const void *raw, size_t rawlen,
                        const char *peer, uint64_t received_ms);

/* Bytes held by the batch (its arena), for backpressure accounting. */
static inline size_t pl_batch_bytes(const pl_batch_t *b) { return b->arena_len + b->chunk_len; }
static inline uint32_t pl_batch_items(const pl_batch_t *b) { return b->nrecords + b->nrejects; }

/* Walks the batch's items in the order they were added. Start with *pos = 0; each call
 * returns 1 and fills either rec and value (kind 'r') or the reject fields (kind 'x'),
 * or returns 0 at the end. Pointers are into the batch: valid until it is reset or freed. */
typedef struct pl_batch_item {
  char kind; /* 'r' record, 'x' reject */
  pl_record_t rec;
  const char *value;
  size_t value_len;
  const char *reason; /* NUL-terminated */
  const char *raw;
  size_t raw_len;
  const char *peer; /* NUL-terminated */
  uint64_t received_ms;
} pl_batch_item_t;

int pl_batch_next(const pl_batch_t *b, size_t *pos, pl_batch_item_t *item);

#endif
