/* Prometheus text exposition (format 0.0.4) of the daemon's figures. Formatting only: the
 * caller copies the stats where they are valid (the loop thread) and passes the copies in. */
#ifndef PARLEY_METRICS_H
#define PARLEY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "parley/http.h"
#include "parley/ingest.h"
#include "parley/qserver.h"
#include "parley/store.h"
#include "parley/writer.h"

#define PL_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* One scrape's inputs. A NULL part (a server not running, the writer gone at shutdown)
 * leaves its families out. */
typedef struct pl_metrics_src {
  const pl_ingest_stats_t *ingest;
  const pl_writer_stats_t *writer;
  const pl_store_info_t *store;
  const pl_qserver_stats_t *query;
  const pl_qserver_op_stats_t *query_ops; /* PL_QSERVER_OPS rows (query port and HTTP API) */
  const pl_http_stats_t *http;
  const char *version;
  uint64_t started_unix; /* process start, Unix seconds */
  uint64_t now_ms;       /* Unix milliseconds, for the uptime */
} pl_metrics_src_t;

/* Renders every family, HELP and TYPE first, into a malloc'd NUL-terminated text that the
 * caller frees. Returns 0, or PL_ENOMEM with *out NULL. */
int pl_metrics_render(const pl_metrics_src_t *src, char **out, size_t *len);

#endif
