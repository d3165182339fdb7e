/* The Forward-protocol load behind `parley-bench ingest`, runnable on its own thread. Messages
 * are encoded before the clock starts, in slabs of bounded size; the clock stops while a
 * slab is generated, so client-side encoding never counts against the server. */
#ifndef PARLEY_BENCH_INGEST_H
#define PARLEY_BENCH_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "hist.h"

typedef enum { PB_MODE_MESSAGE, PB_MODE_FORWARD, PB_MODE_PACKED, PB_MODE_COMPRESSED } pb_mode_t;

typedef struct pb_ingest_opts {
  const char *addr;     /* HOST:PORT of parleyd's ingest listener */
  uint64_t events;      /* records to send */
  uint32_t conns;       /* connections */
  uint32_t batch;       /* records a message (message mode: always 1) */
  uint32_t window;      /* messages in flight per connection */
  pb_mode_t mode;
  int ack;              /* each message carries a chunk id and waits for its ack */
  uint64_t seed;        /* generator seed */
  uint64_t slab_bytes;  /* most encoded bytes held at once */
  uint64_t timeout_s;   /* give up when nothing progresses for this long */
  const char *tag;
  int quiet;            /* no human-readable lines */
  void (*started)(void *arg); /* called once, when the first slab's clock starts */
  void *started_arg;
} pb_ingest_opts_t;

typedef struct pb_ingest_result {
  uint64_t events;   /* records sent (and acked, with acks on) */
  uint64_t messages;
  uint64_t bytes;    /* wire bytes sent */
  double seconds;    /* timed: sending through the last ack (or the server's close) */
  double gen_seconds;/* untimed: generating and encoding */
  uint64_t slabs;
  pb_hist_t lat;     /* per-message send -> ack, microseconds */
} pb_ingest_result_t;

/* Parses "message", "forward", "packed" or "compressed". Returns 0 or -1. */
int pb_parse_mode(const char *s, pb_mode_t *m);
const char *pb_mode_name(pb_mode_t m);

/* Runs the load on a private libuv loop. Returns 0, or -1 with a sentence in err. */
int pb_ingest_run(const pb_ingest_opts_t *o, pb_ingest_result_t *res, char *err, size_t errlen);

#endif
