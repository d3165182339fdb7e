/* Group commit: completions fire on the loop, in submission order, after the commit; many
 * batches share commits; stop drains the queue; a failing store fails every batch of the
 * group; submit after stop completes with PL_ECLOSED. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "parley/error.h"
#include "parley/writer.h"
#include "testutil.h"

#define MiB (1024ull * 1024)

typedef struct run {
  uv_loop_t loop;
  pl_store_t *store;
  pl_writer_t *w;
  int done, expected, in_order, failed;
  int last_seq;
  int stopped;
  uv_thread_t loop_thread;
} run_t;

static void on_done(pl_batch_t *b) {
  run_t *r = (run_t *)((void **)b->data)[0];
  int seq = (int)(intptr_t)((void **)b->data)[1];
  if (seq != r->last_seq + 1) r->in_order = 0;
  r->last_seq = seq;
  if (b->status) r->failed++;
  r->done++;
  free(b->data);
  pl_batch_free(b);
}

static void submit(run_t *r, int seq, int records) {
  pl_batch_t *b = pl_batch_new();
  void **tag = malloc(2 * sizeof(void *));
  char inst[32];
  tag[0] = r;
  tag[1] = (void *)(intptr_t)seq;
  for (int i = 0; i < records; i++) {
    tu_rec_t rec = {0};
    snprintf(inst, sizeof(inst), "Inst %d", (seq + i) % 17);
    rec.institution = inst;
    rec.date = "2024-01-15";
    rec.uid = -1;
    rec.participants = -1;
    tu_add(b, &rec, 0);
  }
  b->done = on_done;
  b->data = tag;
  pl_writer_submit(r->w, b);
}

static void on_stopped(void *arg) { ((run_t *)arg)->stopped = 1; }

static void test_order_and_grouping(void **state) {
  run_t r = {0};
  char *dir = tu_tempdir("writer");
  pl_writer_opts_t o = {1000, 0};
  pl_writer_stats_t st;
  (void)state;
  r.in_order = 1;
  uv_loop_init(&r.loop);
  r.store = tu_store(dir, 8 * MiB, 256 * MiB);
  assert_non_null(r.store);
  assert_int_equal(pl_writer_start(&r.w, &r.loop, r.store, &o), 0);
  for (int i = 1; i <= 500; i++) submit(&r, i, 1 + i % 5);
  while (r.done < 500) uv_run(&r.loop, UV_RUN_ONCE);
  assert_true(r.in_order);
  assert_int_equal(r.failed, 0);
  pl_writer_get_stats(r.w, &st);
  assert_int_equal(st.items, tu_count(r.store, PL_TAB_EVENTS));
  assert_true(st.commits >= 2);
  assert_true(st.commits < 500); /* batches queued together share a commit */
  assert_int_equal(st.queued_bytes, 0);
  /* stop drains what is queued */
  for (int i = 501; i <= 600; i++) submit(&r, i, 3);
  pl_writer_stop(r.w, on_stopped, &r);
  while (!r.stopped) uv_run(&r.loop, UV_RUN_ONCE);
  assert_int_equal(r.done, 600);
  assert_int_equal(r.failed, 0);
  assert_true(r.in_order);
  uv_run(&r.loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&r.loop), 0);
  pl_store_close(r.store);
  tu_rmrf(dir);
  free(dir);
}

static void test_failure_fails_the_group(void **state) {
  run_t r = {0};
  char *dir = tu_tempdir("writer-full");
  pl_writer_opts_t o = {100000, 5};
  (void)state;
  r.in_order = 1;
  uv_loop_init(&r.loop);
  r.store = tu_store(dir, 1 * MiB, 1 * MiB); /* cannot grow */
  assert_non_null(r.store);
  assert_int_equal(pl_writer_start(&r.w, &r.loop, r.store, &o), 0);
  for (int i = 1; i <= 40; i++) submit(&r, i, 200);
  while (r.done < 40) uv_run(&r.loop, UV_RUN_ONCE);
  assert_true(r.failed > 0);
  assert_true(r.in_order);
  pl_writer_stop(r.w, on_stopped, &r);
  while (!r.stopped) uv_run(&r.loop, UV_RUN_ONCE);
  uv_run(&r.loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&r.loop), 0);
  pl_store_close(r.store);
  tu_rmrf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_order_and_grouping),
      cmocka_unit_test(test_failure_fails_the_group),
  };
  return cmocka_run_group_tests_name("writer", tests, NULL, NULL);
}
