/* The query server: a stream of MessagePack request maps per connection (TCP or unix
 * socket), one reply map each, in order. Connections live on a thread with a loop of its
 * own, so no query delays ingest or acks; light requests (pl_query_is_light) run there,
 * the rest on libuv's work pool, one request at a time per connection. */
#ifndef PARLEY_QSERVER_H
#define PARLEY_QSERVER_H

#include <stdint.h>
#include <uv.h>

#include "parley/query.h"
#include "parley/store.h"

typedef struct pl_qserver pl_qserver_t;

/* Fills the live figures of a stats reply (called on the query thread and on work pool
 * threads: must be safe to call from any thread). */
typedef void (*pl_qserver_env_cb)(void *arg, pl_query_env_t *env);

typedef struct pl_qserver_opts {
  const char *listen;
  uint64_t max_request_bytes;
  uint64_t max_connections;
  uint64_t write_queue_max_bytes;
  uint64_t idle_timeout_ms;
  pl_qserver_env_cb env;
  void *env_arg;
} pl_qserver_opts_t;

typedef struct pl_qserver_stats {
  uint64_t connections, accepted, refused, requests, errors;
  uint64_t running;
} pl_qserver_stats_t;

/* Per-op latency, for metrics: count and a log2 histogram of microseconds. */
#define PL_QSERVER_OPS 11
#define PL_QSERVER_HIST 24
typedef struct pl_qserver_op_stats {
  const char *op;
  uint64_t count;
  uint64_t us_sum;
  uint64_t us_hist[PL_QSERVER_HIST]; /* requests that took < 2^i * 16 us */
} pl_qserver_op_stats_t;

/* Binds opts->listen and starts the query thread. loop is the caller's: pl_qserver_stop's
 * callback fires on it. Returns 0, or an error with a sentence in err (nothing is left
 * running then, though a handle may still be closing on loop). The store must outlive the
 * server. */
int pl_qserver_start(pl_qserver_t **out, uv_loop_t *loop, pl_store_t *store,
                     const pl_qserver_opts_t *opts, char *err, size_t errlen);
const char *pl_qserver_address(const pl_qserver_t *qs);
/* Called once, on the caller's loop: stops accepting, lets running queries finish, closes
 * every connection, ends the thread, then fires cb on the caller's loop; qs is freed after
 * cb returns. */
void pl_qserver_stop(pl_qserver_t *qs, void (*cb)(void *arg), void *arg);
/* Thread-safe. */
void pl_qserver_get_stats(const pl_qserver_t *qs, pl_qserver_stats_t *st);
/* Copies the per-op latency table (PL_QSERVER_OPS rows; the last is "other"). Thread-safe. */
void pl_qserver_get_op_stats(pl_qserver_t *qs, pl_qserver_op_stats_t out[PL_QSERVER_OPS]);
/* Records one request's latency under its op (used by the HTTP API too). Thread-safe. */
void pl_qserver_record(pl_qserver_t *qs, pl_str_t op, uint64_t us);

#endif
