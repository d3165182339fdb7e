/* Prometheus exposition from fixed stats: exact histogram lines (cumulative buckets, le in
 * seconds or counts, +Inf = _count), label escaping, and families left out with their source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "parley/metrics.h"

static char *render(const pl_metrics_src_t *src) {
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(pl_metrics_render(src, &text, &len), 0);
  assert_non_null(text);
  assert_int_equal(strlen(text), len);
  assert_true(len > 0 && text[len - 1] == '\n');
  return text;
}

static void has(const char *text, const char *line) {
  char want[512];
  snprintf(want, sizeof(want), "\n%s\n", line);
  if (!strstr(text, want)) fail_msg("missing line: %s", line);
}

static void test_writer_histograms(void **state) {
  pl_writer_stats_t w;
  pl_metrics_src_t src;
  (void)state;
  memset(&w, 0, sizeof(w));
  memset(&src, 0, sizeof(src));
  w.commits = 7;
  w.commit_errors = 1;
  w.items = 1234;
  w.commit_us_hist[0] = 2;                  /* < 16 us */
  w.commit_us_hist[3] = 3;                  /* < 128 us */
  w.commit_us_hist[PL_WRITER_HIST - 1] = 3; /* beyond the last finite bound */
  w.commit_us_sum = 2500001;
  w.batch_items_hist[1] = 4; /* 1 item */
  w.batch_items_hist[11] = 4;
  src.writer = &w;
  src.version = "9.9.9";
  src.started_unix = 1000;
  src.now_ms = 1060500;
  char *t = render(&src);
  has(t, "# TYPE parley_writer_commit_duration_seconds histogram");
  has(t, "parley_writer_commit_duration_seconds_bucket{le=\"0.000016\"} 2");
  has(t, "parley_writer_commit_duration_seconds_bucket{le=\"0.000064\"} 2");
  has(t, "parley_writer_commit_duration_seconds_bucket{le=\"0.000128\"} 5");
  has(t, "parley_writer_commit_duration_seconds_bucket{le=\"67.108864\"} 5");
  has(t, "parley_writer_commit_duration_seconds_bucket{le=\"+Inf\"} 8");
  has(t, "parley_writer_commit_duration_seconds_sum 2.500001");
  has(t, "parley_writer_commit_duration_seconds_count 8");
  has(t, "parley_writer_batch_records_bucket{le=\"0\"} 0");
  has(t, "parley_writer_batch_records_bucket{le=\"1\"} 4");
  has(t, "parley_writer_batch_records_bucket{le=\"2047\"} 8");
  has(t, "parley_writer_batch_records_sum 1234");
  has(t, "parley_writer_commits_total 7");
  has(t, "parley_writer_commit_errors_total 1");
  has(t, "parley_build_info{version=\"9.9.9\"} 1");
  has(t, "parley_uptime_seconds 60");
  /* Absent sources leave their families out entirely. */
  assert_null(strstr(t, "parley_ingest_"));
  assert_null(strstr(t, "parley_lmdb_"));
  assert_null(strstr(t, "parley_query_"));
  assert_null(strstr(t, "parley_connections"));
  free(t);
}

static void test_servers_and_labels(void **state) {
  pl_ingest_stats_t in;
  pl_http_stats_t h;
  pl_qserver_op_stats_t ops[PL_QSERVER_OPS];
  pl_metrics_src_t src;
  (void)state;
  memset(&in, 0, sizeof(in));
  memset(&h, 0, sizeof(h));
  memset(ops, 0, sizeof(ops));
  memset(&src, 0, sizeof(src));
  in.connections = 3;
  in.paused = 1;
  in.ack_us_hist[1] = 5;
  in.ack_us_sum = 100;
  h.connections = 1;
  h.responses_4xx = 2;
  for (int i = 0; i < PL_QSERVER_OPS; i++) ops[i].op = i == 0 ? "pi\"ng\\\n" : "top";
  ops[0].count = ops[0].us_hist[0] = 1;
  src.ingest = &in;
  src.http = &h;
  src.query_ops = ops;
  src.version = "v";
  char *t = render(&src);
  has(t, "parley_connections{server=\"ingest\"} 3");
  has(t, "parley_connections{server=\"http\"} 1");
  assert_null(strstr(t, "server=\"query\""));
  has(t, "parley_ingest_reads_paused 1");
  has(t, "parley_ingest_ack_duration_seconds_bucket{le=\"0.000016\"} 0");
  has(t, "parley_ingest_ack_duration_seconds_bucket{le=\"0.000032\"} 5");
  has(t, "parley_ingest_ack_duration_seconds_sum 0.0001");
  has(t, "parley_http_responses_total{code=\"4xx\"} 2");
  has(t, "parley_query_duration_seconds_bucket{op=\"pi\\\"ng\\\\\\n\",le=\"0.000016\"} 1");
  has(t, "parley_query_duration_seconds_count{op=\"pi\\\"ng\\\\\\n\"} 1");
  has(t, "parley_query_duration_seconds_sum{op=\"top\"} 0");
  /* HELP and TYPE once per family, before its first sample. */
  const char *type = strstr(t, "# TYPE parley_query_duration_seconds histogram\n");
  assert_non_null(type);
  assert_true(type < strstr(t, "parley_query_duration_seconds_bucket"));
  assert_null(strstr(type + 1, "# TYPE parley_query_duration_seconds "));
  free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_writer_histograms),
      cmocka_unit_test(test_servers_and_labels),
  };
  return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
