/* The ingest server: Forward protocol connections on libuv. Each complete message becomes
 * one batch (all its records commit together or not at all); its ack is written after the
 * commit. Reading pauses while the bytes waiting for the writer exceed their bound, and
 * connection buffers share one byte budget, so memory stays bounded whatever clients do. */
#ifndef PARLEY_INGEST_H
#define PARLEY_INGEST_H

#include <stdint.h>
#include <uv.h>

#include "parley/auth.h"
#include "parley/writer.h"

typedef struct pl_ingest pl_ingest_t;

typedef struct pl_ingest_opts {
  const char *listen;
  uint64_t max_connections;
  uint64_t idle_timeout_ms;
  uint64_t record_max_bytes;
  uint64_t message_max_bytes;
  uint64_t inflight_max_bytes;
  uint64_t buffer_max_bytes;
  uint64_t write_queue_max_bytes;
  unsigned max_depth;
  pl_auth_cfg_t auth; /* auth.shared_key "" turns the handshake off */
} pl_ingest_opts_t;

/* Counters for stats and metrics (loop thread). */
typedef struct pl_ingest_stats {
  uint64_t connections;   /* open now */
  uint64_t accepted;      /* since start */
  uint64_t refused;       /* closed at once: over max_connections */
  uint64_t protocol_errors;
  uint64_t auth_failures;
  uint64_t idle_closed;
  uint64_t bytes_in;
  uint64_t messages;
  uint64_t records;       /* stored as new events */
  uint64_t rejected;
  uint64_t duplicates;    /* records and whole chunks acknowledged without storing again */
  uint64_t acks;
  uint64_t commit_failures; /* batches whose commit failed (not acknowledged) */
  uint64_t pauses;        /* times reading was paused for backpressure */
  int paused;             /* reading is paused now */
  uint64_t inflight_bytes;
  uint64_t buffer_bytes;
  uint64_t acks_pending;  /* batches submitted and not completed */
  uint64_t ack_us_hist[24]; /* ack latency: count of acks < 2^i * 16 us */
  uint64_t ack_us_sum;
} pl_ingest_stats_t;

/* Starts listening. Returns 0, or an error with a sentence in err. */
int pl_ingest_start(pl_ingest_t **out, uv_loop_t *loop, pl_writer_t *writer,
                    const pl_ingest_opts_t *opts, char *err, size_t errlen);

/* The address actually bound ("127.0.0.1:24224"). */
const char *pl_ingest_address(const pl_ingest_t *in);

/* Call from the writer's drain callback: resumes reading when the backlog fell. */
void pl_ingest_writer_drained(pl_ingest_t *in);

/* Graceful stop: closes the listener, stops reading, lets every message already received
 * commit and be acked, then closes every connection (forcing them after grace_ms) and
 * fires cb on the loop; in is freed after cb returns. */
void pl_ingest_stop(pl_ingest_t *in, uint64_t grace_ms, void (*cb)(void *arg), void *arg);

void pl_ingest_get_stats(const pl_ingest_t *in, pl_ingest_stats_t *st);

#endif
