/* The writer: one thread that owns the store's write transactions. Producers submit
 * batches from any thread; the writer commits up to batch_records items (or whatever
 * arrived within batch_delay_ms) in one transaction, then fires each batch's completion
 * on the libuv loop it was started with. Backpressure is one number: the bytes of batches
 * submitted and not yet completed. */
#ifndef PARLEY_WRITER_H
#define PARLEY_WRITER_H

#include <stdint.h>
#include <uv.h>

#include "parley/batch.h"
#include "parley/store.h"

typedef struct pl_writer pl_writer_t;

typedef struct pl_writer_opts {
  uint32_t batch_records;  /* most items (records + rejects) in one commit */
  uint32_t batch_delay_ms; /* how long to wait for more once a commit has begun filling */
} pl_writer_opts_t;

/* Figures for metrics; read with pl_writer_get_stats() from the loop thread. */
#define PL_WRITER_HIST 24
typedef struct pl_writer_stats {
  uint64_t commits;
  uint64_t commit_errors;
  uint64_t maintain_errors;        /* failed retention transactions */
  int last_failed;                 /* the latest commit failed; cleared by the next success */
  uint64_t items;                  /* items committed */
  uint64_t queued_bytes;           /* bytes submitted and not yet completed */
  uint64_t queued_batches;
  uint64_t commit_us_sum;          /* time inside pl_store_commit */
  uint64_t commit_us_hist[PL_WRITER_HIST]; /* commits whose duration was < 2^i * 16 us */
  uint64_t batch_items_hist[PL_WRITER_HIST]; /* commits holding < 2^i items */
} pl_writer_stats_t;

/* Starts the writer thread on store. Completions fire on loop (the caller runs it).
 * Returns 0 or an error. */
int pl_writer_start(pl_writer_t **out, uv_loop_t *loop, pl_store_t *store,
                    const pl_writer_opts_t *opts);

/* Queues b (thread-safe). b->done must be set; it fires exactly once on the loop, after
 * the commit holding b (status 0) or after it failed (status < 0). After
 * pl_writer_stop() was called, b completes at once with PL_ECLOSED. */
void pl_writer_submit(pl_writer_t *w, pl_batch_t *b);

/* Bytes of batches submitted and not yet completed (thread-safe). */
uint64_t pl_writer_queued_bytes(const pl_writer_t *w);

/* Called on the loop after completions have run (so the caller can resume reading when
 * pl_writer_queued_bytes() fell under its bound). */
typedef void (*pl_writer_drain_cb)(void *arg);
void pl_writer_on_drain(pl_writer_t *w, pl_writer_drain_cb cb, void *arg);

/* Commits everything already queued, stops the thread and closes the writer's loop handle;
 * then cb fires on the loop and w is freed. The store stays open (the caller closes it). */
typedef void (*pl_writer_stopped_cb)(void *arg);
void pl_writer_stop(pl_writer_t *w, pl_writer_stopped_cb cb, void *arg);

void pl_writer_get_stats(pl_writer_t *w, pl_writer_stats_t *st);

#endif
