/* Renders the daemon's counters, gauges and log2 latency tables as Prometheus text format
 * 0.0.4: base units (seconds, bytes), _total counters, cumulative histogram buckets. */
#include "parley/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley/error.h"

typedef struct mbuf {
  char *p;
  size_t len, cap;
  int oom;
} mbuf_t;

__attribute__((format(printf, 2, 3))) static void put(mbuf_t *b, const char *fmt, ...) {
  va_list ap;
  int n;
  if (b->oom) return;
  for (;;) {
    va_start(ap, fmt);
    n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = 1;
      return;
    }
    if (b->p && (size_t)n < b->cap - b->len) break;
    size_t cap = b->cap ? b->cap * 2 : 16384;
    while (cap - b->len <= (size_t)n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  b->len += (size_t)n;
}

static void family(mbuf_t *b, const char *name, const char *type, const char *help) {
  put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* labels is "" or the inside of the braces, already escaped. */
static void sample(mbuf_t *b, const char *name, const char *labels, uint64_t v) {
  put(b, "%s%s%s%s %llu\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
      (unsigned long long)v);
}

static void one(mbuf_t *b, const char *name, const char *type, const char *help, uint64_t v) {
  family(b, name, type, help);
  sample(b, name, "", v);
}

/* Microseconds as decimal seconds, exactly: 16 -> "0.000016", 2000000 -> "2". */
static const char *secs(char out[32], uint64_t us) {
  int n = snprintf(out, 32, "%llu.%06llu", (unsigned long long)(us / 1000000),
                   (unsigned long long)(us % 1000000));
  while (n > 0 && out[n - 1] == '0') out[--n] = '\0';
  if (n > 0 && out[n - 1] == '.') out[--n] = '\0';
  return out;
}

/* Label values escape backslash, double quote and newline (the text format's rule). */
static const char *label_value(char *out, size_t cap, const char *s) {
  size_t o = 0;
  for (; *s && o + 3 < cap; s++) {
    if (*s == '\\' || *s == '"') out[o++] = '\\';
    if (*s == '\n') {
      out[o++] = '\\';
      out[o++] = 'n';
      continue;
    }
    out[o++] = *s;
  }
  out[o] = '\0';
  return out;
}

enum { UNIT_SECONDS_16US, UNIT_COUNT };

/* A log2 table as a histogram. Slot i counts observations below 2^i units (2^i * 16 us for
 * durations, 2^i items for counts); the last slot also takes everything larger, so it
 * only feeds +Inf. Counts are integers, so "below 2^i" is le 2^i - 1 for them. */
static void histogram(mbuf_t *b, const char *name, const char *labels, const uint64_t *slots,
                      int nslots, int unit, uint64_t sum) {
  const char *sep = *labels ? "," : "";
  uint64_t cum = 0;
  char le[32];
  for (int i = 0; i < nslots - 1; i++) {
    cum += slots[i];
    if (unit == UNIT_SECONDS_16US)
      secs(le, (uint64_t)16 << i);
    else
      snprintf(le, sizeof(le), "%llu", (unsigned long long)(((uint64_t)1 << i) - 1));
    put(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, le, (unsigned long long)cum);
  }
  cum += slots[nslots - 1];
  put(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
  if (unit == UNIT_SECONDS_16US)
    put(b, "%s_sum%s%s%s %s\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
        secs(le, sum));
  else
    put(b, "%s_sum%s%s%s %llu\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
        (unsigned long long)sum);
  put(b, "%s_count%s%s%s %llu\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
      (unsigned long long)cum);
}

/* One sample per listener that is running; v holds ingest, query and http in that order. */
static void per_server(mbuf_t *b, const pl_metrics_src_t *s, const char *name, const char *type,
                       const char *help, const uint64_t v[3]) {
  if (!s->ingest && !s->query && !s->http) return;
  family(b, name, type, help);
  if (s->ingest) sample(b, name, "server=\"ingest\"", v[0]);
  if (s->query) sample(b, name, "server=\"query\"", v[1]);
  if (s->http) sample(b, name, "server=\"http\"", v[2]);
}

static void render_process(mbuf_t *b, const pl_metrics_src_t *s) {
  char v[128];
  uint64_t now_s = s->now_ms / 1000;
  family(b, "parley_build_info", "gauge", "Build information; the value is always 1.");
  put(b, "parley_build_info{version=\"%s\"} 1\n", label_value(v, sizeof(v), s->version));
  one(b, "parley_start_time_seconds", "gauge", "Start time of the daemon, Unix seconds.",
      s->started_unix);
  one(b, "parley_uptime_seconds", "gauge", "Seconds since the daemon started.",
      now_s > s->started_unix ? now_s - s->started_unix : 0);
}

static void render_connections(mbuf_t *b, const pl_metrics_src_t *s) {
  const pl_ingest_stats_t *in = s->ingest;
  const pl_qserver_stats_t *q = s->query;
  const pl_http_stats_t *h = s->http;
  uint64_t open[3] = {in ? in->connections : 0, q ? q->connections : 0, h ? h->connections : 0};
  uint64_t acc[3] = {in ? in->accepted : 0, q ? q->accepted : 0, h ? h->accepted : 0};
  uint64_t ref[3] = {in ? in->refused : 0, q ? q->refused : 0, h ? h->refused : 0};
  per_server(b, s, "parley_connections", "gauge", "Client connections open now, per listener.",
             open);
  per_server(b, s, "parley_connections_accepted_total", "counter",
             "Client connections accepted, per listener.", acc);
  per_server(b, s, "parley_connections_refused_total", "counter",
             "Connections closed at once because max_connections were open, per listener.", ref);
}

static void render_ingest(mbuf_t *b, const pl_ingest_stats_t *in) {
  one(b, "parley_ingest_received_bytes_total", "counter",
      "Bytes read from Forward protocol connections.", in->bytes_in);
  one(b, "parley_ingest_messages_total", "counter", "Forward protocol messages received.",
      in->messages);
  one(b, "parley_ingest_records_total", "counter", "Records stored as new events.", in->records);
  one(b, "parley_ingest_rejected_total", "counter",
      "Records that broke a rule, kept in the reject store.", in->rejected);
  one(b, "parley_ingest_duplicates_total", "counter",
      "Records and re-sent chunks acknowledged without being stored again.", in->duplicates);
  one(b, "parley_ingest_acks_total", "counter", "Chunk acknowledgements sent.", in->acks);
  one(b, "parley_ingest_protocol_errors_total", "counter",
      "Connections closed for bytes that are not a Forward message.", in->protocol_errors);
  one(b, "parley_ingest_auth_failures_total", "counter", "Failed shared-key handshakes.",
      in->auth_failures);
  one(b, "parley_ingest_idle_closed_total", "counter",
      "Ingest connections closed after the idle timeout.", in->idle_closed);
  one(b, "parley_ingest_commit_failures_total", "counter",
      "Messages whose commit failed (not acknowledged; the connection was closed).",
      in->commit_failures);
  one(b, "parley_ingest_acks_pending", "gauge",
      "Messages handed to the writer and not yet committed.", in->acks_pending);
  one(b, "parley_ingest_inflight_bytes", "gauge",
      "Bytes of messages handed to the writer and not yet committed.", in->inflight_bytes);
  one(b, "parley_ingest_buffer_bytes", "gauge", "Bytes held in ingest connection buffers.",
      in->buffer_bytes);
  one(b, "parley_ingest_reads_paused", "gauge",
      "1 while reading is paused for backpressure, else 0.", in->paused ? 1 : 0);
  one(b, "parley_ingest_read_pauses_total", "counter",
      "Times reading was paused for backpressure.", in->pauses);
  family(b, "parley_ingest_ack_duration_seconds", "histogram",
         "Time from handing a message to the writer to sending its ack.");
  histogram(b, "parley_ingest_ack_duration_seconds", "", in->ack_us_hist,
            (int)(sizeof(in->ack_us_hist) / sizeof(in->ack_us_hist[0])), UNIT_SECONDS_16US,
            in->ack_us_sum);
}

static void render_writer(mbuf_t *b, const pl_writer_stats_t *w) {
  one(b, "parley_writer_commits_total", "counter", "Write transactions committed.", w->commits);
  one(b, "parley_writer_commit_errors_total", "counter",
      "Groups of batches whose commit failed.", w->commit_errors);
  one(b, "parley_writer_items_total", "counter", "Records and rejects committed.", w->items);
  one(b, "parley_writer_maintenance_errors_total", "counter",
      "Background upkeep (retention) transactions that failed.", w->maintain_errors);
  one(b, "parley_writer_last_commit_failed", "gauge",
      "1 when the latest commit failed (nothing of it was acknowledged), else 0.",
      (uint64_t)w->last_failed);
  one(b, "parley_writer_queued_bytes", "gauge",
      "Bytes of batches submitted to the writer and not yet completed.", w->queued_bytes);
  one(b, "parley_writer_queued_batches", "gauge",
      "Batches submitted to the writer and not yet completed.", w->queued_batches);
  family(b, "parley_writer_commit_duration_seconds", "histogram",
         "Time spent in one commit (write transaction and fsync), failed ones included.");
  histogram(b, "parley_writer_commit_duration_seconds", "", w->commit_us_hist, PL_WRITER_HIST,
            UNIT_SECONDS_16US, w->commit_us_sum);
  family(b, "parley_writer_batch_records", "histogram",
         "Items (records and rejects) per commit; the sum counts committed items only.");
  histogram(b, "parley_writer_batch_records", "", w->batch_items_hist, PL_WRITER_HIST, UNIT_COUNT,
            w->items);
}

static void render_store(mbuf_t *b, const pl_store_info_t *st) {
  one(b, "parley_lmdb_map_size_bytes", "gauge", "Current size of the LMDB memory map.",
      st->map_size);
  one(b, "parley_lmdb_map_size_max_bytes", "gauge",
      "Largest size the map may grow to (storage.map_size_max).", st->map_size_max);
  one(b, "parley_lmdb_used_bytes", "gauge", "Bytes of the map in use (last page used).",
      st->used_bytes);
  one(b, "parley_lmdb_readers", "gauge", "LMDB reader slots used so far (high-water mark).",
      st->readers);
  one(b, "parley_lmdb_stale_readers_cleared_total", "counter",
      "Reader slots left by crashed processes that were cleared.", st->stale_readers);
  one(b, "parley_lmdb_map_grows_total", "counter", "Times the map was enlarged.", st->map_grows);
  one(b, "parley_lmdb_full", "gauge",
      "1 when the last commit failed because the map reached its largest size, else 0.",
      st->full ? 1 : 0);
}

static void render_query(mbuf_t *b, const pl_metrics_src_t *s) {
  char labels[64];
  if (s->query) {
    one(b, "parley_query_requests_total", "counter", "Requests answered on the query port.",
        s->query->requests);
    one(b, "parley_query_frame_errors_total", "counter",
        "Query connections closed for a malformed or oversized request.", s->query->errors);
    one(b, "parley_query_running", "gauge", "Query requests running on the work pool now.",
        s->query->running);
  }
  if (!s->query_ops) return;
  family(b, "parley_query_duration_seconds", "histogram",
         "Time to answer a query, per op (query port and HTTP API).");
  for (int i = 0; i < PL_QSERVER_OPS; i++) {
    const pl_qserver_op_stats_t *o = &s->query_ops[i];
    char v[64];
    snprintf(labels, sizeof(labels), "op=\"%s\"", label_value(v, sizeof(v), o->op ? o->op : ""));
    histogram(b, "parley_query_duration_seconds", labels, o->us_hist, PL_QSERVER_HIST,
              UNIT_SECONDS_16US, o->us_sum);
  }
}

static void render_http(mbuf_t *b, const pl_http_stats_t *h) {
  one(b, "parley_http_requests_total", "counter", "HTTP requests received.", h->requests);
  one(b, "parley_http_requests_running", "gauge", "HTTP API requests running on the work pool now.",
      h->running);
  family(b, "parley_http_responses_total", "counter", "HTTP responses sent, per status class.");
  sample(b, "parley_http_responses_total", "code=\"2xx\"", h->responses_2xx);
  sample(b, "parley_http_responses_total", "code=\"4xx\"", h->responses_4xx);
  sample(b, "parley_http_responses_total", "code=\"5xx\"", h->responses_5xx);
}

int pl_metrics_render(const pl_metrics_src_t *src, char **out, size_t *len) {
  mbuf_t b = {0};
  render_process(&b, src);
  render_connections(&b, src);
  if (src->ingest) render_ingest(&b, src->ingest);
  if (src->writer) render_writer(&b, src->writer);
  if (src->store) render_store(&b, src->store);
  render_query(&b, src);
  if (src->http) render_http(&b, src->http);
  if (b.oom) {
    free(b.p);
    *out = NULL;
    *len = 0;
    return PL_ENOMEM;
  }
  *out = b.p;
  *len = b.len;
  return 0;
}
