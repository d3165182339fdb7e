/* The HTTP listener on the daemon's loop: Prometheus metrics (GET /metrics), health
 * (GET /healthz), every query op as JSON (GET /v1/<op>?arg=value), and the dashboard page
 * (GET /). Requests are parsed with http-parser (not by hand); keep-alive; bounded. */
#ifndef PARLEY_HTTP_H
#define PARLEY_HTTP_H

#include <stdint.h>
#include <uv.h>

#include "parley/ingest.h"
#include "parley/qserver.h"
#include "parley/query.h"
#include "parley/store.h"
#include "parley/writer.h"

typedef struct pl_http pl_http_t;

/* The daemon's parts the HTTP side reads from. Any may be NULL (e.g. during shutdown);
 * they are read on the loop thread only (metrics), except store and env (work pool). */
typedef struct pl_http_sources {
  pl_store_t *store;
  pl_writer_t *writer;
  pl_ingest_t *ingest;
  pl_qserver_t *qserver;
  pl_qserver_env_cb env; /* live figures for the stats op (thread-safe) */
  void *env_arg;
  uint64_t started_unix; /* process start, for metrics */
} pl_http_sources_t;

typedef struct pl_http_opts {
  const char *listen;            /* HOST:PORT or unix:PATH */
  uint64_t max_request_bytes;    /* request line + headers; more gets 413 */
  uint64_t max_connections;
  uint64_t idle_timeout_ms;
  uint64_t write_queue_max_bytes;
} pl_http_opts_t;

typedef struct pl_http_stats {
  uint64_t connections, accepted, requests;
  uint64_t refused; /* closed at once (after a 503): over max_connections */
  uint64_t running; /* API requests on the work pool now */
  uint64_t responses_2xx, responses_4xx, responses_5xx;
} pl_http_stats_t;

/* Starts listening. src is copied; its pointers must stay valid until pl_http_stop's cb.
 * Returns 0, or an error with a sentence in err. */
int pl_http_start(pl_http_t **out, uv_loop_t *loop, const pl_http_sources_t *src,
                  const pl_http_opts_t *opts, char *err, size_t errlen);
const char *pl_http_address(const pl_http_t *h);
/* Forgets a source that is going away (set the field in src to NULL) — e.g. ingest after
 * it stopped. */
void pl_http_set_sources(pl_http_t *h, const pl_http_sources_t *src);
/* Stops accepting, finishes running requests, closes connections, fires cb; h is freed
 * after cb returns. */
void pl_http_stop(pl_http_t *h, void (*cb)(void *arg), void *arg);
void pl_http_get_stats(const pl_http_t *h, pl_http_stats_t *st);

#endif
