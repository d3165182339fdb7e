/* Aggregate arithmetic: stored form, merging, id maps, covering ranges, streaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "parley/agg.h"
#include "parley/date.h"
#include "parley/error.h"

static uint32_t D(const char *s) {
  uint32_t d;
  assert_int_equal(pl_date_parse(s, strlen(s), &d), 0);
  return d;
}

static void test_encode_view_roundtrip(void **state) {
  pl_agg_t a;
  pl_agg_view_t v;
  pl_agg_entry_t e;
  char buf[1024];
  (void)state;
  pl_agg_init(&a);
  pl_agg_count(&a, 100, 5);
  pl_agg_count(&a, 90, 0);
  a.active_days = 2;
  pl_agg_add(&a, PL_AGG_TOPICS, 9, 1, 5);
  pl_agg_add(&a, PL_AGG_TOPICS, 3, 1, 0);
  pl_agg_add(&a, PL_AGG_TOPICS, 9, 1, 0);
  pl_agg_add(&a, PL_AGG_KINDS, 4, 2, 5);
  size_t len;
  pl_agg_normalize(&a);
  assert_int_equal(a.sect[PL_AGG_TOPICS].n, 2);
  assert_true(pl_agg_encode_bound(&a, NULL) <= sizeof(buf));
  len = pl_agg_encode(&a, buf);
  assert_true(len < 40); /* compact: varints, ids as deltas */
  assert_int_equal(pl_agg_view(&v, buf, len), 0);
  assert_int_equal(v.events, 2);
  assert_int_equal(v.participants, 5);
  assert_int_equal(v.first_day, 90);
  assert_int_equal(v.last_day, 100);
  assert_int_equal(v.active_days, 2);
  assert_true(pl_agg_view_find(&v, PL_AGG_TOPICS, 9, &e));
  assert_int_equal(e.events, 2);
  assert_int_equal(e.participants, 5);
  assert_false(pl_agg_view_find(&v, PL_AGG_TOPICS, 4, &e));
  /* truncated or padded blobs are refused, at every length */
  for (size_t n = 0; n < len; n++) assert_int_equal(pl_agg_view(&v, buf, n), PL_ECORRUPT);
  assert_int_equal(pl_agg_view(&v, buf, len + 1), PL_ECORRUPT);
  /* a corrupt entry stops the walk and says so */
  {
    pl_agg_iter_t it;
    unsigned char bad[64];
    pl_agg_view_t bv;
    memcpy(bad, buf, len);
    assert_int_equal(pl_agg_view(&bv, bad, len), 0);
    ((unsigned char *)bv.sect[PL_AGG_TOPICS])[0] = 0; /* an id delta of 0 */
    pl_agg_iter_init(&it, &bv, PL_AGG_TOPICS);
    assert_int_equal(pl_agg_iter_next(&it, &e), 0);
    assert_true(it.corrupt);
  }
  pl_agg_free(&a);
}

static void test_merged_equals_normalized_sum(void **state) {
  pl_agg_t old, delta, sum;
  pl_agg_view_t ov, mv;
  char ob[16384], mb[16384], sb[16384];
  uint64_t rng = 7;
  (void)state;
  pl_agg_init(&old);
  pl_agg_init(&delta);
  pl_agg_init(&sum);
  for (int i = 0; i < 200; i++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    pl_agg_t *t = (rng >> 40) & 1 ? &old : &delta;
    int s = (int)((rng >> 20) % PL_AGG_NSECT);
    uint32_t id = 1 + (uint32_t)((rng >> 33) % 40);
    pl_agg_add(t, s, id, 1, (rng >> 50) % 10);
    pl_agg_count(t, 500 + (uint32_t)((rng >> 45) % 30), 1);
  }
  size_t olen, mlen, slen;
  pl_agg_t viasum;
  old.active_days = 3;
  delta.active_days = 1;
  pl_agg_normalize(&old);
  pl_agg_normalize(&delta);
  olen = pl_agg_encode(&old, ob);
  assert_int_equal(pl_agg_view(&ov, ob, olen), 0);
  assert_true(pl_agg_encode_bound(&delta, &ov) <= sizeof(mb));
  mlen = pl_agg_encode_merged(&delta, &ov, 0, mb);
  pl_agg_merge(&sum, &old, 0);
  pl_agg_merge(&sum, &delta, 0);
  pl_agg_normalize(&sum);
  slen = pl_agg_encode(&sum, sb);
  assert_int_equal(mlen, slen);
  assert_memory_equal(mb, sb, slen);
  assert_int_equal(pl_agg_view(&mv, mb, mlen), 0);
  assert_int_equal(mv.active_days, 4);
  /* the same through an in-place merge of normalised aggregates */
  pl_agg_init(&viasum);
  assert_int_equal(pl_agg_merge_normalized(&viasum, &old, 0), 0);
  assert_int_equal(pl_agg_merge_normalized(&viasum, &delta, 0), 0);
  assert_int_equal(pl_agg_encode(&viasum, mb), slen);
  assert_memory_equal(mb, sb, slen);
  pl_agg_free(&viasum);
  /* day level: one active day, whatever was there */
  mlen = pl_agg_encode_merged(&delta, &ov, 1, mb);
  assert_int_equal(pl_agg_view(&mv, mb, mlen), 0);
  assert_int_equal(mv.active_days, 1);
  pl_agg_free(&old);
  pl_agg_free(&delta);
  pl_agg_free(&sum);
}

static void test_idmap(void **state) {
  pl_idmap_t m;
  pl_agg_entry_t *rows;
  uint32_t n;
  (void)state;
  pl_idmap_init(&m);
  for (uint32_t i = 1; i <= 1000; i++) pl_idmap_add(&m, i, i % 7, i);
  pl_idmap_add(&m, 5, 100, 0);
  assert_int_equal(m.n, 1000);
  assert_int_equal(pl_idmap_get(&m, 5)->events, 105);
  assert_null(pl_idmap_get(&m, 1001));
  rows = pl_idmap_sorted(&m, &n);
  assert_int_equal(n, 1000);
  assert_int_equal(rows[0].id, 5);
  for (uint32_t i = 1; i < n; i++)
    assert_true(rows[i - 1].events > rows[i].events ||
                (rows[i - 1].events == rows[i].events && rows[i - 1].id < rows[i].id));
  free(rows);
  pl_idmap_clear(&m);
  assert_int_equal(m.n, 0);
  assert_null(pl_idmap_get(&m, 5));
  pl_idmap_free(&m);
}

/* Corrupt rows are refused, never trusted nor rewritten shorter. */
static void test_corrupt_rows(void **state) {
  pl_agg_t a, d;
  pl_agg_view_t v;
  pl_agg_iter_t it;
  pl_agg_entry_t e;
  unsigned char buf[256], bad[256], out[512];
  size_t len;
  (void)state;
  pl_agg_init(&a);
  pl_agg_init(&d);
  pl_agg_count(&a, 10, 1);
  for (uint32_t id = 1; id <= 5; id++) pl_agg_add(&a, PL_AGG_TOPICS, id, 1, 0);
  len = pl_agg_encode(&a, buf);
  assert_int_equal(pl_agg_view(&v, buf, len), 0);
  /* an entry count larger than its bytes could hold */
  {
    unsigned char big[] = {2, 1, 1, 11, 0, 0,          /* header */
                           0, 0, 0, 0, 100, 3, 0, 0, 0, 0, 0, 0, /* topics: 100 entries in 3 bytes */
                           1, 1, 0};
    assert_int_equal(pl_agg_view(&v, big, sizeof(big)), PL_ECORRUPT);
  }
  /* a varint of more than 64 bits */
  {
    unsigned char wide[] = {2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    uint64_t ev, parts;
    assert_int_equal(pl_agg_peek(wide, sizeof(wide), &ev, &parts), PL_ECORRUPT);
  }
  /* a section whose bytes outlast its count, or end inside an entry */
  memcpy(bad, buf, len);
  assert_int_equal(pl_agg_view(&v, bad, len), 0);
  v.n[PL_AGG_TOPICS] = 3;
  pl_agg_iter_init(&it, &v, PL_AGG_TOPICS);
  while (pl_agg_iter_next(&it, &e) == 1) {
  }
  assert_true(it.corrupt);
  /* merging into a row whose entries do not decode writes nothing */
  assert_int_equal(pl_agg_view(&v, bad, len), 0);
  ((unsigned char *)v.sect[PL_AGG_TOPICS])[3] = 0; /* the second id's delta becomes 0 */
  pl_agg_count(&d, 11, 0);
  pl_agg_add(&d, PL_AGG_TOPICS, 9, 1, 0);
  assert_true(pl_agg_encode_bound(&d, &v) <= sizeof(out));
  assert_int_equal(pl_agg_encode_merged(&d, &v, 1, out), 0);
  pl_agg_free(&a);
  pl_agg_free(&d);
}

static void test_idmap_dense(void **state) {
  pl_idmap_t m;
  uint32_t n;
  pl_agg_entry_t *rows;
  (void)state;
  pl_idmap_init(&m);
  assert_int_equal(pl_idmap_dense(&m, 100), 0);
  assert_true(m.dense);
  for (uint32_t i = 1; i < 100; i += 3) pl_idmap_add(&m, i, 1, i);
  pl_idmap_add(&m, 4, 2, 0);
  assert_int_equal(pl_idmap_get(&m, 4)->events, 3);
  assert_null(pl_idmap_get(&m, 5));
  assert_int_equal(m.n, 33);
  /* an id past the array turns the map into a hash table, keeping what it held */
  pl_idmap_add(&m, 5000, 7, 0);
  assert_false(m.dense);
  assert_int_equal(m.n, 34);
  assert_int_equal(pl_idmap_get(&m, 4)->events, 3);
  assert_int_equal(pl_idmap_get(&m, 5000)->events, 7);
  rows = pl_idmap_sorted(&m, &n);
  assert_int_equal(n, 34);
  assert_int_equal(rows[0].id, 5000);
  free(rows);
  /* back to an array, empty; and a limit too large for an array gives a hash table */
  assert_int_equal(pl_idmap_dense(&m, 50), 0);
  assert_true(m.dense);
  assert_int_equal(m.n, 0);
  assert_null(pl_idmap_get(&m, 4));
  assert_int_equal(pl_idmap_dense(&m, PL_IDMAP_DENSE_MAX + 1), 0);
  assert_false(m.dense);
  pl_idmap_add(&m, 123456, 1, 1);
  assert_int_equal(pl_idmap_get(&m, 123456)->events, 1);
  /* entries added in one call: into an array that stays one, into an array that meets an
   * id past it midway, into a hash table; each after 7 was added once the usual way */
  {
    static const pl_agg_entry_t e[] = {{3, 1, 10}, {7, 2, 20}, {3, 4, 40}, {900, 5, 50}, {7, 1, 1}};
    static const struct {
      uint32_t limit, n_entries, dense, n, ev7, ev900;
    } c[] = {{100, 3, 1, 2, 3, 0}, {100, 5, 0, 3, 4, 5}, {0, 5, 0, 3, 4, 5}};
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
      assert_int_equal(pl_idmap_dense(&m, c[i].limit), 0);
      pl_idmap_add(&m, 7, 1, 0);
      assert_int_equal(pl_idmap_add_entries(&m, e, c[i].n_entries), 0);
      assert_int_equal(m.dense, c[i].dense);
      assert_int_equal(m.n, c[i].n);
      assert_int_equal(pl_idmap_get(&m, 3)->events, 5);
      assert_int_equal(pl_idmap_get(&m, 3)->participants, 50);
      assert_int_equal(pl_idmap_get(&m, 7)->events, c[i].ev7);
      assert_int_equal(pl_idmap_get(&m, 7)->participants, c[i].n_entries == 5 ? 21 : 20);
      if (c[i].ev900)
        assert_int_equal(pl_idmap_get(&m, 900)->events, c[i].ev900);
      else
        assert_null(pl_idmap_get(&m, 900));
    }
  }
  pl_idmap_free(&m);
}

/* Walks m, checking that it visits each present id once and nothing else: want[id] is 1
 * for an id that must be there. Returns how many it visited. */
static uint32_t walk_check(const pl_idmap_t *m, const unsigned char *want, uint32_t ids) {
  unsigned char *seen = calloc(ids, 1);
  const pl_agg_entry_t *e;
  uint32_t k = 0;
  for (uint32_t pos = 0; (e = pl_idmap_next(m, &pos)); k++) {
    assert_true(e->id > 0 && e->id < ids);
    assert_true(want[e->id]);
    assert_false(seen[e->id]);
    seen[e->id] = 1;
    assert_ptr_equal(pl_idmap_get(m, e->id), e);
  }
  for (uint32_t id = 1; id < ids; id++) assert_int_equal(seen[id], want[id]);
  assert_int_equal(k, m->n);
  free(seen);
  return k;
}

/* An array map lists the ids it holds: every path that adds an id (one at a time, many at
 * once, a view) lists it, and emptying the map (few entries: the listed slots; many: the
 * whole array) leaves every slot of the allocation zero, also for a larger limit that
 * reuses it. A hash table walks its slots. */
static void test_idmap_walk(void **state) {
  enum { IDS = 1000 };
  static const pl_agg_entry_t ents[] = {{20, 1, 1}, {5, 1, 1}, {21, 2, 2}};
  unsigned char want[IDS] = {0};
  pl_idmap_t m;
  pl_agg_t a;
  pl_agg_view_t v;
  unsigned char buf[512];
  size_t len;
  (void)state;
  pl_agg_init(&a);
  pl_agg_count(&a, 10, 0);
  pl_agg_add(&a, PL_AGG_COUNTERPARTS, 9, 1, 1);
  pl_agg_add(&a, PL_AGG_COUNTERPARTS, 30, 1, 1);
  len = pl_agg_encode(&a, buf);
  assert_int_equal(pl_agg_view(&v, buf, len), 0);
  pl_idmap_init(&m);
  for (int round = 0; round < 4; round++) {
    /* 200; then 250 and 240 in the same allocation, the first emptied slot by slot, the
     * second (after 106 entries) whole; then 600 in a new one */
    static const uint32_t limits[] = {200, 250, 240, 600};
    uint32_t limit = limits[round], many = round == 1 ? 100 : 0;
    memset(want, 0, sizeof(want));
    assert_int_equal(pl_idmap_dense(&m, limit), 0);
    assert_true(m.dense);
    for (uint32_t i = 0; i < m.alloc; i++) {
      assert_int_equal(m.slots[i].id, 0);
      assert_int_equal(m.slots[i].events, 0);
      assert_int_equal(m.slots[i].participants, 0);
    }
    assert_int_equal(walk_check(&m, want, IDS), 0);
    pl_idmap_add(&m, 5, 1, 1);
    pl_idmap_add(&m, limit - 1, 1, 1);
    assert_int_equal(pl_idmap_add_entries(&m, ents, 3), 0);
    assert_int_equal(pl_idmap_add_view(&m, &v, PL_AGG_COUNTERPARTS), 0);
    assert_int_equal(pl_idmap_sub_view(&m, &v, PL_AGG_COUNTERPARTS), 0); /* zero, still held */
    want[5] = want[limit - 1] = want[20] = want[21] = want[9] = want[30] = 1;
    for (uint32_t id = 100; id < 100 + many; id++) {
      pl_idmap_add(&m, id, 1, 0);
      want[id] = 1;
    }
    assert_true(m.dense);
    assert_int_equal(walk_check(&m, want, IDS), 6 + many);
    assert_int_equal(pl_idmap_get(&m, 5)->events, 2);
    assert_int_equal(pl_idmap_get(&m, 9)->events, 0);
  }
  /* a hash table */
  assert_int_equal(pl_idmap_dense(&m, 0), 0);
  assert_false(m.dense);
  memset(want, 0, sizeof(want));
  for (uint32_t id = 3; id < IDS; id += 7) {
    pl_idmap_add(&m, id, 1, 0);
    want[id] = 1;
  }
  assert_int_equal(walk_check(&m, want, IDS), (IDS - 3 + 6) / 7);
  /* an array again, though the hash table's allocation was large enough: all zero */
  assert_true(m.alloc >= 100);
  assert_int_equal(pl_idmap_dense(&m, 100), 0);
  assert_true(m.dense);
  for (uint32_t i = 0; i < m.alloc; i++) assert_int_equal(m.slots[i].id, 0);
  memset(want, 0, sizeof(want));
  assert_int_equal(walk_check(&m, want, IDS), 0);
  pl_idmap_add(&m, 10, 1, 1);
  want[10] = 1;
  assert_int_equal(walk_check(&m, want, IDS), 1);
  pl_idmap_free(&m);
  pl_agg_free(&a);
}

/* Views summed into maps: every varint width the decoder has a path for, a dense map that
 * meets an id past its array, taking a subset away again, and bytes that do not decode. */
static void test_idmap_views(void **state) {
  static const uint64_t vals[] = {0, 1, 127, 128, 16383, 16384, 1u << 21, 1ull << 40};
  pl_agg_t month, day;
  pl_agg_view_t mv, dv;
  unsigned char *mb = malloc(1 << 16), db[4096];
  size_t ml, dl;
  (void)state;
  pl_agg_init(&month);
  pl_agg_init(&day);
  pl_agg_count(&month, 10, 0);
  pl_agg_count(&day, 10, 0);
  /* ids 1..600 in steps that cross the one- and two-byte delta widths, one past 300 */
  for (uint32_t id = 1, k = 0; id <= 600; id += 1 + (k % 3) * 70, k++) {
    uint32_t ev = (uint32_t)(vals[k % 7] % 100000) + 1;
    uint64_t pa = vals[(k + 3) % 8];
    pl_agg_add(&month, PL_AGG_COUNTERPARTS, id, ev, pa);
    if (k % 2 == 0) pl_agg_add(&day, PL_AGG_COUNTERPARTS, id, ev / 2 + 1, pa / 3);
  }
  pl_agg_add(&month, PL_AGG_COUNTERPARTS, 5000, 3, 3); /* past a dense map of 1000 */
  pl_agg_add(&day, PL_AGG_COUNTERPARTS, 5000, 1, 1);
  ml = pl_agg_encode(&month, mb);
  dl = pl_agg_encode(&day, db);
  assert_int_equal(pl_agg_view(&mv, mb, ml), 0);
  assert_int_equal(pl_agg_view(&dv, db, dl), 0);
  for (int dense = 0; dense < 2; dense++) {
    pl_idmap_t m;
    pl_agg_iter_t it;
    pl_agg_entry_t e;
    pl_idmap_init(&m);
    if (dense) assert_int_equal(pl_idmap_dense(&m, 1000), 0);
    assert_int_equal(pl_idmap_add_view(&m, &mv, PL_AGG_COUNTERPARTS), 0);
    assert_int_equal(pl_idmap_add_view(&m, &mv, PL_AGG_COUNTERPARTS), 0);
    assert_int_equal(pl_idmap_sub_view(&m, &dv, PL_AGG_COUNTERPARTS), 0);
    assert_int_equal(pl_idmap_sub_view(&m, &mv, PL_AGG_COUNTERPARTS), 0);
    assert_false(m.dense); /* 5000 spilled over */
    /* what is left is month - day, entry by entry */
    pl_agg_iter_init(&it, &mv, PL_AGG_COUNTERPARTS);
    while (pl_agg_iter_next(&it, &e) == 1) {
      pl_agg_entry_t d = {0, 0, 0}, *got = pl_idmap_get(&m, e.id);
      assert_non_null(got);
      pl_agg_view_find(&dv, PL_AGG_COUNTERPARTS, e.id, &d);
      if (d.id != e.id) d.events = 0, d.participants = 0;
      assert_int_equal(got->events, e.events - d.events);
      assert_int_equal(got->participants, e.participants - d.participants);
    }
    assert_false(it.corrupt);
    /* a zero delta inside the section is refused, from the array path too */
    {
      pl_agg_view_t bad = mv;
      unsigned char *copy = malloc(ml);
      memcpy(copy, mb, ml);
      assert_int_equal(pl_agg_view(&bad, copy, ml), 0);
      ((unsigned char *)bad.sect[PL_AGG_COUNTERPARTS])[4] = 0; /* entry 1 is 01 01 80 01 */
      if (dense) assert_int_equal(pl_idmap_dense(&m, 1000), 0);
      assert_int_equal(pl_idmap_add_view(&m, &bad, PL_AGG_COUNTERPARTS), PL_ECORRUPT);
      free(copy);
    }
    pl_idmap_free(&m);
  }
  free(mb);
  pl_agg_free(&month);
  pl_agg_free(&day);
}

static void test_peek(void **state) {
  pl_agg_t a;
  unsigned char buf[256];
  uint64_t ev = 0, parts = 0;
  size_t len;
  (void)state;
  pl_agg_init(&a);
  pl_agg_count(&a, 10, 7);
  pl_agg_count(&a, 12, 5);
  pl_agg_add(&a, PL_AGG_KINDS, 3, 2, 12);
  len = pl_agg_encode(&a, buf);
  assert_int_equal(pl_agg_peek(buf, len, &ev, &parts), 0);
  assert_int_equal(ev, 2);
  assert_int_equal(parts, 12);
  assert_int_equal(pl_agg_peek(buf, 2, &ev, &parts), PL_ECORRUPT);
  pl_agg_free(&a);
}

/* A month row's count of each day: complete when it covers every event of the row; a row
 * in the version 2 form (no such section), alone or merged with newer days, is not. */
static void test_days(void **state) {
  static const unsigned char v2[] = {
      2,    /* version 2 */
      3, 2, /* 3 events on 2 days */
      101, 4, /* first day 100, last 104 */
      7,      /* participants */
      1, 3, 0, 0, 0, 0, 0, 0, 0, 0, /* kinds: one entry of 3 bytes; four empty sections */
      4, 3, 7};                     /* kind id 4: 3 events, 7 participants */
  uint32_t m0 = D("2024-02-01"), ev[32];
  uint64_t pa[32];
  pl_agg_t a;
  pl_agg_view_t v, old;
  pl_agg_entry_t e;
  unsigned char buf[1024];
  size_t n;
  (void)state;
  /* version 2: read with an empty days section, never complete */
  assert_int_equal(pl_agg_view(&old, v2, sizeof(v2)), 0);
  assert_int_equal(old.events, 3);
  assert_int_equal(old.n[PL_AGG_DAYS], 0);
  assert_true(pl_agg_view_find(&old, PL_AGG_KINDS, 4, &e));
  assert_int_equal(e.participants, 7);
  assert_int_equal(pl_agg_days(&old, m0, m0, m0 + 28, ev, pa), 0);
  /* a month of two days, complete; only the days asked for are filled */
  pl_agg_init(&a);
  pl_agg_count(&a, m0 + 1, 10);
  pl_agg_count(&a, m0 + 1, 5);
  pl_agg_count(&a, m0 + 28, 1);
  assert_int_equal(pl_agg_add(&a, PL_AGG_DAYS, 2, 2, 15), 0);
  assert_int_equal(pl_agg_add(&a, PL_AGG_DAYS, 29, 1, 1), 0);
  n = pl_agg_encode(&a, buf);
  assert_int_equal(pl_agg_view(&v, buf, n), 0);
  assert_int_equal(pl_agg_days(&v, m0, m0, m0 + 28, ev, pa), 1);
  assert_int_equal(ev[2], 2);
  assert_int_equal(pa[2], 15);
  assert_int_equal(ev[29], 1);
  assert_int_equal(pl_agg_days(&v, m0, m0 + 2, m0 + 27, ev, pa), 1);
  for (int d = 0; d < 32; d++) assert_int_equal(ev[d], 0);
  /* the version 2 row merged with those days: version 3, still not complete */
  n = pl_agg_encode_merged(&a, &old, 0, buf);
  assert_int_equal(buf[0], 3);
  assert_int_equal(pl_agg_view(&v, buf, n), 0);
  assert_int_equal(v.events, 6);
  assert_int_equal(pl_agg_days(&v, m0, m0, m0 + 28, ev, pa), 0);
  /* a day the month does not have is a corrupt row: February 30, then a 32nd */
  for (uint32_t bad = 30; bad <= 32; bad += 2) {
    pl_agg_clear(&a);
    pl_agg_count(&a, m0, 0);
    assert_int_equal(pl_agg_add(&a, PL_AGG_DAYS, bad, 1, 0), 0);
    n = pl_agg_encode(&a, buf);
    assert_int_equal(pl_agg_view(&v, buf, n), 0);
    assert_int_equal(pl_agg_days(&v, m0, m0, m0 + 28, ev, pa), PL_ECORRUPT);
  }
  pl_agg_free(&a);
}

static void test_cover(void **state) {
  pl_agg_piece_t p[64];
  size_t n;
  (void)state;
  /* 2023-01-30 .. 2023-04-02: two edge days, February and March whole, two edge days */
  n = pl_agg_cover(D("2023-01-30"), D("2023-04-02"), p, 64);
  assert_int_equal(n, 6);
  assert_false(p[0].is_month);
  assert_int_equal(p[0].key, D("2023-01-30"));
  assert_int_equal(p[1].key, D("2023-01-31"));
  assert_true(p[2].is_month);
  assert_int_equal(p[2].key, pl_date_month(D("2023-02-01")));
  assert_true(p[3].is_month);
  assert_false(p[4].is_month);
  assert_int_equal(p[5].key, D("2023-04-02"));
  /* one whole month */
  n = pl_agg_cover(D("2024-02-01"), D("2024-02-29"), p, 64);
  assert_int_equal(n, 1);
  assert_true(p[0].is_month);
  /* a single day, and a count larger than the array */
  assert_int_equal(pl_agg_cover(D("2024-02-10"), D("2024-02-10"), p, 64), 1);
  assert_int_equal(pl_agg_cover(D("2024-02-02"), D("2024-02-28"), p, 4), 27);
}

static void test_streaks(void **state) {
  uint32_t cur, best;
  const unsigned char a[] = {1, 1, 0, 1, 1, 1, 0, 1};
  (void)state;
  pl_agg_streaks(a, 8, 7, &cur, &best);
  assert_int_equal(cur, 1);
  assert_int_equal(best, 3);
  pl_agg_streaks(a, 8, 6, &cur, &best);
  assert_int_equal(cur, 0);
  pl_agg_streaks(a, 8, 5, &cur, &best);
  assert_int_equal(cur, 3);
  pl_agg_streaks(a, 0, 0, &cur, &best);
  assert_int_equal(cur, 0);
  assert_int_equal(best, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode_view_roundtrip), cmocka_unit_test(test_merged_equals_normalized_sum),
      cmocka_unit_test(test_idmap),                 cmocka_unit_test(test_idmap_dense),
      cmocka_unit_test(test_idmap_walk),
      cmocka_unit_test(test_idmap_views),
      cmocka_unit_test(test_peek),                  cmocka_unit_test(test_corrupt_rows),
      cmocka_unit_test(test_cover),              cmocka_unit_test(test_days),
      cmocka_unit_test(test_streaks),
  };
  return cmocka_run_group_tests_name("agg", tests, NULL, NULL);
}
