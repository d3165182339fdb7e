/* The LMDB store on fresh temporary directories: every table, dedup by (date, id) and by
 * chunk, rejects, aggregates written with their events, map growth and its hard limit, the
 * directory lock, rebuild, and a writer killed with SIGKILL mid-stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>
#include <msgpack.h>

#include "parley/date.h"
#include "parley/error.h"
#include "parley/store.h"
#include "testutil.h"

#define MiB (1024ull * 1024)

static tu_rec_t R(const char *inst, const char *date) {
  tu_rec_t r = {0};
  r.institution = inst;
  r.date = date;
  r.uid = -1;
  r.participants = -1;
  return r;
}

static uint32_t D(const char *s) {
  uint32_t d;
  assert_int_equal(pl_date_parse(s, strlen(s), &d), 0);
  return d;
}

static uint32_t id_of(pl_store_t *s, const char *name) {
  pl_rtxn_t *t;
  uint32_t id = 0;
  assert_int_equal(pl_store_read_begin(s, &t), 0);
  assert_int_equal(pl_store_id(t, name, strlen(name), &id), 0);
  pl_store_read_end(t);
  return id;
}

typedef struct fixture {
  char *dir;
  pl_store_t *s;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  f->dir = tu_tempdir("store");
  f->s = tu_store(f->dir, 4 * MiB, 256 * MiB);
  if (!f->s) return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  if (f->s) pl_store_close(f->s);
  tu_rmrf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static void test_events_keyed_by_date_then_institution(void **state) {
  fixture_t *f = *state;
  pl_batch_t *b = pl_batch_new();
  tu_rec_t r;
  pl_rtxn_t *t;
  pl_cursor_t *c;
  pl_str_t k, v;
  uint32_t prev_day = 0, prev_inst = 0, n = 0;
  pl_store_info_t info;

  pl_store_get_info(f->s, &info);
  assert_int_equal(info.first_day, PL_AGG_NO_DAY);
  assert_int_equal(info.last_day, PL_AGG_NO_DAY);
  r = R("Zeta Institute", "2023-05-02");
  tu_add(b, &r, 0);
  r = R("Alpha Center", "2023-05-02");
  tu_add(b, &r, 0);
  r = R("Zeta Institute", "2019-01-01"); /* late: lands in its own day */
  tu_add(b, &r, 0);
  r = R("Alpha Center", "2023-05-01");
  tu_add(b, &r, 0);
  assert_int_equal(tu_commit1(f->s, b, 1000), 0);
  assert_int_equal(b->stored, 4);
  assert_int_equal(b->status, 0);
  pl_batch_free(b);
  /* what other threads plan with: after the commit (its two months stale), after the fold,
   * and from a reopened store */
  for (int step = 0; step < 3; step++) {
    if (step == 1) assert_int_equal(pl_store_refresh(f->s), 0);
    if (step == 2) {
      pl_store_close(f->s);
      assert_non_null(f->s = tu_store(f->dir, 4 * MiB, 256 * MiB));
    }
    pl_store_get_info(f->s, &info);
    assert_int_equal(info.first_day, D("2019-01-01"));
    assert_int_equal(info.last_day, D("2023-05-02"));
    assert_int_equal(info.stale_months, step == 0 ? 2 : 0);
  }

  assert_int_equal(pl_store_read_begin(f->s, &t), 0);
  assert_int_equal(pl_store_cursor_open(t, PL_TAB_EVENTS, &c), 0);
  for (int rc = pl_store_cursor_first(c, &k, &v); rc == 0; rc = pl_store_cursor_next(c, &k, &v)) {
    const unsigned char *kp = (const unsigned char *)k.p;
    uint32_t day = pl_be32_get(kp), inst = pl_be32_get(kp + 4);
    assert_int_equal(k.n, 16);
    assert_true(day > prev_day || (day == prev_day && inst >= prev_inst));
    prev_day = day;
    prev_inst = inst;
    n++;
  }
  assert_int_equal(n, 4);
  pl_store_cursor_close(c);
  /* the first key is the late event */
  {
    pl_str_t name;
    assert_int_equal(pl_store_cursor_open(t, PL_TAB_EVENTS, &c), 0);
    assert_int_equal(pl_store_cursor_first(c, &k, &v), 0);
    assert_int_equal(pl_be32_get((const unsigned char *)k.p), D("2019-01-01"));
    assert_int_equal(pl_store_name(t, pl_be32_get((const unsigned char *)k.p + 4), &name), 0);
    assert_int_equal(name.n, strlen("Zeta Institute"));
    assert_memory_equal(name.p, "Zeta Institute", name.n);
    pl_store_cursor_close(c);
  }
  pl_store_read_end(t);
}

static void test_id_dedup(void **state) {
  fixture_t *f = *state;
  pl_batch_t *b = pl_batch_new();
  tu_rec_t r = R("Alpha Center", "2023-05-02");
  pl_rtxn_t *t;
  pl_store_state_t st;

  r.id = "a-1";
  tu_add(b, &r, 0);
  tu_add(b, &r, 0); /* same (date, id) in the same batch */
  r.date = "2023-05-03";
  tu_add(b, &r, 0); /* same id, another date: a different record */
  r.id = NULL;
  r.uid = 7;
  tu_add(b, &r, 0);
  r.uid = -1;
  r.id = "7"; /* the string "7" is not the number 7 */
  tu_add(b, &r, 0);
  assert_int_equal(tu_commit1(f->s, b, 1000), 0);
  assert_int_equal(b->stored, 4);
  assert_int_equal(b->duplicates, 1);
  pl_batch_reset(b);

  r = R("Alpha Center", "2023-05-02");
  r.id = "a-1";
  tu_add(b, &r, 0); /* re-sent later */
  r.date = "2023-05-03";
  r.id = NULL;
  r.uid = 7;
  tu_add(b, &r, 0);
  assert_int_equal(tu_commit1(f->s, b, 2000), 0);
  assert_int_equal(b->stored, 0);
  assert_int_equal(b->duplicates, 2);
  pl_batch_free(b);

  assert_int_equal(tu_count(f->s, PL_TAB_EVENTS), 4);
  assert_int_equal(tu_count(f->s, PL_TAB_IDEM), 4);
  assert_int_equal(pl_store_read_begin(f->s, &t), 0);
  assert_int_equal(pl_store_state(t, &st), 0);
  assert_int_equal(st.events, 4);
  assert_int_equal(st.duplicates, 3);
  pl_store_read_end(t);
  /* duplicates never reach the aggregates */
  {
    pl_agg_view_t v;
    assert_int_equal(pl_store_read_begin(f->s, &t), 0);
    assert_int_equal(pl_store_agg(t, 0, D("2023-05-02"), id_of(f->s, "Alpha Center"), &v), 0);
    assert_int_equal(v.events, 1);
    pl_store_read_end(t);
  }
}

static void test_chunk_dedup_and_retention(void **state) {
  fixture_t *f = *state;
  pl_batch_t *a = pl_batch_new(), *b = pl_batch_new();
  pl_batch_t *group[2];
  tu_rec_t r = R("Alpha Center", "2023-05-02");

  tu_add(a, &r, 0);
  pl_batch_set_chunk(a, "\xa4" "abcd", 5);
  assert_int_equal(tu_commit1(f->s, a, 1000), 0);
  assert_int_equal(a->stored, 1);
  assert_false(a->chunk_seen);

  /* a retry of the same chunk: acked, nothing stored */
  pl_batch_reset(a);
  tu_add(a, &r, 0);
  pl_batch_set_chunk(a, "\xa4" "abcd", 5);
  assert_int_equal(tu_commit1(f->s, a, 2000), 0);
  assert_true(a->chunk_seen);
  assert_int_equal(a->stored, 0);
  assert_int_equal(tu_count(f->s, PL_TAB_EVENTS), 1);

  /* the same chunk twice within one commit group: the second is a retry */
  pl_batch_reset(a);
  tu_add(a, &r, 0);
  pl_batch_set_chunk(a, "\xa4" "wxyz", 5);
  tu_add(b, &r, 0);
  pl_batch_set_chunk(b, "\xa4" "wxyz", 5);
  group[0] = a;
  group[1] = b;
  assert_int_equal(pl_store_commit(f->s, group, 2, 3000), 0);
  assert_int_equal(a->stored, 1);
  assert_true(b->chunk_seen);
  assert_int_equal(b->stored, 0);
  assert_int_equal(tu_count(f->s, PL_TAB_EVENTS), 2);
  assert_int_equal(tu_count(f->s, PL_TAB_CHUNKS), 2);

  /* past the retention (600 s in tu_store) chunk ids are forgotten, oldest first */
  pl_batch_reset(a);
  assert_int_equal(tu_commit1(f->s, a, 1000 + 600000 + 1), 0);
  assert_int_equal(tu_count(f->s, PL_TAB_CHUNKS), 1);
  assert_int_equal(tu_count(f->s, PL_TAB_CHUNK_AGE), 1);
  pl_batch_reset(a);
  tu_add(a, &r, 0);
  pl_batch_set_chunk(a, "\xa4" "abcd", 5);
  assert_int_equal(tu_commit1(f->s, a, 1000 + 600000 + 2), 0);
  assert_false(a->chunk_seen);
  assert_int_equal(a->stored, 1);
  pl_batch_free(a);
  pl_batch_free(b);
}

static void test_rejects(void **state) {
  fixture_t *f = *state;
  pl_batch_t *b = pl_batch_new();
  tu_rec_t r = R("", "2023-05-02");
  pl_rtxn_t *t;
  pl_cursor_t *c;
  pl_str_t k, v;
  msgpack_unpacked u;
  size_t off = 0;
  pl_store_state_t st;

  assert_int_equal(tu_add(b, &r, 0), 1); /* empty institution: rejected */
  assert_int_equal(pl_batch_add_reject(b, "record is not a map", "\x01", 1, "1.2.3.4:5", 77), 0);
  assert_int_equal(tu_commit1(f->s, b, 1000), 0);
  assert_int_equal(b->rejected, 2);
  assert_int_equal(b->stored, 0);
  pl_batch_free(b);

  assert_int_equal(pl_store_read_begin(f->s, &t), 0);
  assert_int_equal(pl_store_cursor_open(t, PL_TAB_REJECTS, &c), 0);
  assert_int_equal(pl_store_cursor_last(c, &k, &v), 0);
  assert_int_equal(pl_be64_get((const unsigned char *)k.p), 2);
  msgpack_unpacked_init(&u);
  assert_int_equal(msgpack_unpack_next(&u, v.p, v.n, &off), MSGPACK_UNPACK_SUCCESS);
  assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
  assert_int_equal(u.data.via.map.size, 4);
  {
    msgpack_object_kv *kv = u.data.via.map.ptr;
    assert_memory_equal(kv[0].key.via.str.ptr, "reason", 6);
    assert_int_equal(kv[0].val.via.str.size, strlen("record is not a map"));
    assert_memory_equal(kv[1].key.via.str.ptr, "raw", 3);
    assert_int_equal(kv[1].val.type, MSGPACK_OBJECT_BIN);
    assert_int_equal(kv[1].val.via.bin.size, 1);
    assert_memory_equal(kv[2].val.via.str.ptr, "1.2.3.4:5", 9);
    assert_int_equal(kv[3].val.via.u64, 77);
  }
  msgpack_unpacked_destroy(&u);
  pl_store_cursor_close(c);
  assert_int_equal(pl_store_state(t, &st), 0);
  assert_int_equal(st.rejected, 2);
  assert_int_equal(st.events, 0);
  pl_store_read_end(t);
}

static void test_aggregates(void **state) {
  fixture_t *f = *state;
  pl_batch_t *b = pl_batch_new();
  tu_rec_t r;
  pl_rtxn_t *t;
  pl_agg_view_t v;
  pl_agg_entry_t e;
  pl_store_inst_t ii;
  uint32_t a, g, dialogue, data;

  r = R("Alpha Center", "2023-05-02");
  r.kind = "dialogue";
  r.format = "virtual";
  r.country = "US";
  r.participants = 20;
  r.cps = "Green Fund";
  r.topics = "data,trade";
  tu_add(b, &r, 0);
  r.participants = 5;
  r.topics = "data";
  r.cps = NULL;
  tu_add(b, &r, 0);
  assert_int_equal(tu_commit1(f->s, b, 1000), 0);
  pl_batch_reset(b);
  /* a second commit on the same day and month, and the reverse pair direction */
  r = R("Green Fund", "2023-05-09");
  r.kind = "visit";
  r.country = "CN";
  r.participants = 3;
  r.cps = "Alpha Center";
  tu_add(b, &r, 0);
  r = R("Alpha Center", "2023-05-02");
  r.kind = "dialogue";
  r.participants = 1;
  tu_add(b, &r, 0);
  assert_int_equal(tu_commit1(f->s, b, 2000), 0);
  pl_batch_free(b);

  a = id_of(f->s, "Alpha Center");
  g = id_of(f->s, "Green Fund");
  dialogue = id_of(f->s, "dialogue");
  data = id_of(f->s, "data");
  /* The commits marked May stale; its rollups are current once folded. */
  assert_int_equal(pl_store_read_begin(f->s, &t), 0);
  assert_true(pl_store_month_stale(t, pl_date_month(D("2023-05-02"))));
  assert_int_equal(pl_store_agg(t, 1, pl_date_month(D("2023-05-02")), a, &v), PL_ESTALE);
  pl_store_read_end(t);
  assert_int_equal(pl_store_refresh(f->s), 0);
  assert_int_equal(pl_store_read_begin(f->s, &t), 0);
  assert_false(pl_store_month_stale(t, pl_date_month(D("2023-05-02"))));
  /* day aggregate of Alpha Center on 2023-05-02: three events over two commits */
  assert_int_equal(pl_store_agg(t, 0, D("2023-05-02"), a, &v), 0);
  assert_int_equal(v.events, 3);
  assert_int_equal(v.participants, 26);
  assert_int_equal(v.active_days, 1);
  assert_true(pl_agg_view_find(&v, PL_AGG_KINDS, dialogue, &e));
  assert_int_equal(e.events, 3);
  assert_true(pl_agg_view_find(&v, PL_AGG_TOPICS, data, &e));
  assert_int_equal(e.events, 2);
  assert_int_equal(e.participants, 25);
  assert_int_equal(v.n[PL_AGG_COUNTERPARTS], 1);
  assert_int_equal(v.n[PL_AGG_FORMATS], 1);
  /* month rollup: Alpha Center was active one day in May */
  assert_int_equal(pl_store_agg(t, 1, pl_date_month(D("2023-05-02")), a, &v), 0);
  assert_int_equal(v.events, 3);
  assert_int_equal(v.active_days, 1);
  /* all institutions: four events on two days of May */
  assert_int_equal(pl_store_agg(t, 1, pl_date_month(D("2023-05-02")), 0, &v), 0);
  assert_int_equal(v.events, 4);
  assert_int_equal(v.participants, 29);
  assert_int_equal(v.active_days, 2);
  assert_int_equal(v.n[PL_AGG_COUNTERPARTS], 0);
  assert_int_equal(v.first_day, D("2023-05-02"));
  assert_int_equal(v.last_day, D("2023-05-09"));
  /* the pair counts both directions, by the reporting side's country */
  assert_int_equal(pl_store_pair(t, 1, pl_date_month(D("2023-05-02")), g, a, &v), 0);
  assert_int_equal(v.events, 2);
  assert_int_equal(v.participants, 23);
  assert_int_equal(v.first_day, D("2023-05-02"));
  assert_int_equal(v.last_day, D("2023-05-09"));
  assert_true(pl_agg_view_find(&v, PL_AGG_COUNTRIES, id_of(f->s, "CN"), &e));
  assert_int_equal(e.participants, 3);
  assert_true(pl_agg_view_find(&v, PL_AGG_COUNTRIES, id_of(f->s, "US"), &e));
  assert_int_equal(e.participants, 20);
  assert_int_equal(pl_store_pair(t, 0, D("2023-05-09"), a, g, &v), 0);
  assert_int_equal(v.events, 1);
  /* insts: reporters and counterparts */
  assert_int_equal(pl_store_inst(t, a, &ii), 0);
  assert_int_equal(ii.events, 3);
  assert_int_equal(ii.first_day, D("2023-05-02"));
  assert_int_equal(ii.flags, PL_INST_REPORTER | PL_INST_COUNTERPART);
  assert_int_equal(pl_store_inst(t, g, &ii), 0);
  assert_int_equal(ii.events, 1);
  assert_int_equal(pl_store_inst(t, dialogue, &ii), PL_ENOTFOUND);
  pl_store_read_end(t);
}

static void test_lock(void **state) {
  fixture_t *f = *state;
  pl_store_opts_t o = {f->dir, 4 * MiB, 4 * MiB, 0, 0, 1000, 0};
  pl_store_t *s2 = NULL;
  char err[256];
  assert_int_equal(pl_store_open(&s2, &o, err, sizeof(err)), PL_ELOCKED);
  assert_non_null(strstr(err, "in use by another parleyd"));
  pl_store_close(f->s);
  f->s = NULL;
  assert_int_equal(pl_store_open(&s2, &o, err, sizeof(err)), 0);
  pl_store_close(s2);
}

static void add_bulk(pl_batch_t *b, int n, int seed) {
  char inst[32], id[32];
  for (int i = 0; i < n; i++) {
    tu_rec_t r = R(inst, "2023-06-01");
    snprintf(inst, sizeof(inst), "Inst %d", (i * 7 + seed) % 50);
    snprintf(id, sizeof(id), "bulk-%d-%d", seed, i);
    r.id = id;
    r.kind = "seminar";
    r.topics = "a fairly long topic name to take some room,another topic,a third";
    r.extra_key = "title";
    r.extra_val = "A title long enough to make the stored record take a few hundred bytes of "
                  "room in the map, so that the tiny test map fills after a few batches";
    tu_add(b, &r, 0);
  }
}

static void test_map_grows_then_hits_limit(void **state) {
  fixture_t *f = *state;
  pl_batch_t *b = pl_batch_new();
  pl_store_info_t info;
  uint64_t stored = 0;
  int rc = 0, i;
  char *dir = tu_tempdir("tiny");
  pl_store_t *s = tu_store(dir, 1 * MiB, 6 * MiB);
  (void)f;
  assert_non_null(s);
  for (i = 0; i < 200; i++) {
    pl_batch_reset(b);
    add_bulk(b, 200, i);
    rc = tu_commit1(s, b, 1000);
    if (rc) break;
    stored += b->stored;
  }
  pl_store_get_info(s, &info);
  assert_true(info.map_grows >= 2);       /* 1 -> 2 -> 4 -> 6 MiB */
  assert_int_equal(rc, PL_ESTOREFULL);   /* then the hard limit */
  assert_int_equal(b->status, PL_ESTOREFULL);
  assert_int_equal(b->stored, 0);
  assert_true(info.full);
  /* nothing of the failed batch is visible; everything before it is */
  assert_int_equal(tu_count(s, PL_TAB_EVENTS), stored);
  /* reads go on */
  {
    pl_rtxn_t *t;
    pl_store_state_t st;
    assert_int_equal(pl_store_read_begin(s, &t), 0);
    assert_int_equal(pl_store_state(t, &st), 0);
    assert_int_equal(st.events, stored);
    pl_store_read_end(t);
  }
  /* with room again (a larger limit), writing resumes */
  pl_store_close(s);
  s = tu_store(dir, 1 * MiB, 64 * MiB);
  assert_non_null(s);
  assert_int_equal(tu_commit1(s, b, 1000), 0);
  assert_int_equal(b->stored, 200);
  assert_int_equal(tu_count(s, PL_TAB_EVENTS), stored + 200);
  pl_store_close(s);
  pl_batch_free(b);
  tu_rmrf(dir);
  free(dir);
}

/* Walks every derived table into one buffer, to compare states byte for byte. */
static void snapshot(pl_store_t *s, msgpack_sbuffer *out) {
  static const pl_table_t tabs[] = {PL_TAB_DAYS, PL_TAB_MONTHS, PL_TAB_PAIRS, PL_TAB_PAIR_MONTHS,
                                    PL_TAB_INSTS};
  pl_rtxn_t *t;
  pl_store_state_t st;
  /* Month rollups are folded in the background; compare them once they are current. */
  assert_int_equal(pl_store_refresh(s), 0);
  assert_int_equal(tu_count(s, PL_TAB_STALE), 0);
  assert_int_equal(pl_store_read_begin(s, &t), 0);
  for (size_t i = 0; i < sizeof(tabs) / sizeof(tabs[0]); i++) {
    pl_cursor_t *c;
    pl_str_t k, v;
    assert_int_equal(pl_store_cursor_open(t, tabs[i], &c), 0);
    for (int rc = pl_store_cursor_first(c, &k, &v); rc == 0;
         rc = pl_store_cursor_next(c, &k, &v)) {
      msgpack_sbuffer_write(out, k.p, k.n);
      msgpack_sbuffer_write(out, v.p, v.n);
    }
    pl_store_cursor_close(c);
  }
  assert_int_equal(pl_store_state(t, &st), 0);
  msgpack_sbuffer_write(out, (const char *)&st, sizeof(st));
  pl_store_read_end(t);
}

static void generate(pl_store_t *s, uint64_t seed, int batches, int per_batch) {
  static const char *kinds[] = {"dialogue", "visit", "seminar", "roundtable", "letter"};
  static const char *formats[] = {"in_person", "virtual", "hybrid"};
  static const char *countries[] = {"CN", "US", NULL};
  pl_batch_t *b = pl_batch_new();
  uint64_t rng = seed;
  for (int i = 0; i < batches; i++) {
    pl_batch_reset(b);
    for (int j = 0; j < per_batch; j++) {
      char inst[32], cps[128], topics[128], id[32], date[16];
      int day = i * 3 + (int)(tu_rand(&rng) % 5);
      int ncp = (int)(tu_rand(&rng) % 4), nt = 1 + (int)(tu_rand(&rng) % 5);
      tu_rec_t r = R(inst, date);
      /* a few institutions very active, most rarely: pick the smaller of three draws */
      uint64_t x = tu_rand(&rng) % 200, y = tu_rand(&rng) % 200, z = tu_rand(&rng) % 200;
      uint64_t pick = x < y ? (x < z ? x : z) : (y < z ? y : z);
      snprintf(inst, sizeof(inst), "Institution %u", (unsigned)pick);
      if (tu_rand(&rng) % 20 == 0) day = (int)(tu_rand(&rng) % 100); /* late */
      pl_date_format(D("2020-01-01") + (uint32_t)day, date);
      cps[0] = topics[0] = '\0';
      for (int k = 0; k < ncp; k++)
        snprintf(cps + strlen(cps), sizeof(cps) - strlen(cps), "%sInstitution %u",
                 k ? "," : "", (unsigned)(tu_rand(&rng) % 200));
      for (int k = 0; k < nt; k++)
        snprintf(topics + strlen(topics), sizeof(topics) - strlen(topics), "%stopic %u",
                 k ? "," : "", (unsigned)(tu_rand(&rng) % 30));
      snprintf(id, sizeof(id), "g-%u", (unsigned)(tu_rand(&rng) % 100000));
      r.id = tu_rand(&rng) % 3 ? id : NULL;
      r.cps = ncp ? cps : NULL;
      r.topics = topics;
      r.kind = kinds[tu_rand(&rng) % 5];
      r.format = formats[tu_rand(&rng) % 3];
      r.country = countries[tu_rand(&rng) % 3];
      r.participants = tu_rand(&rng) % 4 ? (int64_t)(tu_rand(&rng) % 100) : -1;
      tu_add(b, &r, 0);
    }
    assert_int_equal(tu_commit1(s, b, 1000 + (uint64_t)i), 0);
    /* fold now and then, so months are folded several times as they fill */
    if (i % 7 == 3) assert_int_equal(pl_store_refresh(s), 0);
  }
  pl_batch_free(b);
}

static void test_rebuild_equals_incremental(void **state) {
  fixture_t *f = *state;
  msgpack_sbuffer before, after;
  uint64_t events = 0;
  msgpack_sbuffer_init(&before);
  msgpack_sbuffer_init(&after);
  generate(f->s, 42, 60, 150);
  snapshot(f->s, &before);
  assert_int_equal(pl_store_rebuild(f->s, &events), 0);
  assert_int_equal(events, tu_count(f->s, PL_TAB_EVENTS));
  snapshot(f->s, &after);
  assert_true(before.size > 10000);
  assert_int_equal(before.size, after.size);
  assert_memory_equal(before.data, after.data, before.size);
  msgpack_sbuffer_destroy(&before);
  msgpack_sbuffer_destroy(&after);
}

/* A tool killed inside a read transaction while the daemon runs leaves a reader slot that
 * would keep pages from being reused; upkeep clears it without a restart. (This test opens
 * LMDB directly, as mdb_copy would.) */
static void test_stale_reader_slots_cleared(void **state) {
  fixture_t *f = *state;
  int fds[2], more;
  pid_t pid;
  char c;
  pl_store_info_t info;
  assert_int_equal(pipe(fds), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    MDB_env *env;
    MDB_txn *txn;
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 16) ||
        mdb_env_open(env, f->dir, MDB_RDONLY, 0644) ||
        mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))
      _exit(3);
    if (write(fds[1], "r", 1) != 1) _exit(4);
    pause(); /* killed here, inside the read transaction */
    _exit(0);
  }
  close(fds[1]);
  assert_int_equal(read(fds[0], &c, 1), 1);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  close(fds[0]);
  pl_store_get_info(f->s, &info);
  assert_int_equal(info.stale_readers, 0);
  assert_int_equal(pl_store_maintain(f->s, 10, &more), 0);
  pl_store_get_info(f->s, &info);
  assert_int_equal(info.stale_readers, 1);
}

/* A month left stale (the process stopped before folding) with a corrupt day row: the
 * rebuild recomputes every row from the events instead of tripping over the bad one. */
static void test_rebuild_repairs_a_corrupt_day_row(void **state) {
  fixture_t *f = *state;
  pl_batch_t *b = pl_batch_new();
  tu_rec_t r = R("Repair Institute", "2023-03-05");
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_val k, v;
  unsigned char key[8], junk[] = {2, 0xff, 0xff};
  uint64_t events;
  pl_rtxn_t *t;
  pl_agg_view_t av;
  tu_add(b, &r, 0);
  r.date = "2023-03-06";
  tu_add(b, &r, 0);
  assert_int_equal(tu_commit1(f->s, b, 1000), 0);
  pl_batch_free(b);
  pl_store_close(f->s); /* no fold: March stays marked stale */
  f->s = NULL;
  assert_int_equal(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 32);
  assert_int_equal(mdb_env_open(env, f->dir, 0, 0644), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, "days", 0, &dbi), 0);
  pl_key_day_inst(key, D("2023-03-05"), 0);
  k.mv_data = key;
  k.mv_size = 8;
  v.mv_data = junk;
  v.mv_size = sizeof(junk);
  assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
  f->s = tu_store(f->dir, 4 * MiB, 256 * MiB);
  assert_non_null(f->s);
  assert_int_equal(pl_store_rebuild(f->s, &events), 0);
  assert_int_equal(events, 2);
  assert_int_equal(pl_store_read_begin(f->s, &t), 0);
  assert_false(pl_store_month_stale(t, pl_date_month(D("2023-03-05"))));
  assert_int_equal(pl_store_agg(t, 0, D("2023-03-05"), 0, &av), 0);
  assert_int_equal(av.events, 1);
  assert_int_equal(pl_store_agg(t, 1, pl_date_month(D("2023-03-05")), 0, &av), 0);
  assert_int_equal(av.events, 2);
  pl_store_read_end(t);
}

/* Retention deletes raw events of whole months before the boundary, in bounded slices;
 * every aggregate stays, and a rebuild afterwards changes nothing. */
static void test_retention_keeps_aggregates(void **state) {
  fixture_t *f = *state;
  char *dir = tu_tempdir("retain");
  pl_store_opts_t o = {dir, 4 * MiB, 256 * MiB, 0, 0, 600000, 30};
  pl_store_t *s = NULL;
  pl_batch_t *b = pl_batch_new();
  char err[256], date[16], id[32];
  msgpack_sbuffer before, after;
  pl_rtxn_t *t;
  pl_store_state_t st;
  pl_agg_view_t v;
  uint64_t events, rebuilt;
  int more = 1, slices = 0;
  (void)f;
  assert_int_equal(pl_store_open(&s, &o, err, sizeof(err)), 0);
  /* 120 days from 2023-01-01, three events a day */
  for (uint32_t d = 0; d < 120; d++) {
    pl_batch_reset(b);
    for (int k = 0; k < 3; k++) {
      tu_rec_t r = R(k ? "Busy Institute" : "Quiet Fund", date);
      pl_date_format(D("2023-01-01") + d, date);
      snprintf(id, sizeof(id), "r-%u-%d", d, k);
      r.id = id;
      r.cps = k == 2 ? "Quiet Fund" : NULL;
      r.kind = "seminar";
      tu_add(b, &r, 0);
    }
    assert_int_equal(tu_commit1(s, b, 1000), 0);
  }
  msgpack_sbuffer_init(&before);
  msgpack_sbuffer_init(&after);
  snapshot(s, &before);
  events = tu_count(s, PL_TAB_EVENTS);
  assert_int_equal(events, 360);
  while (more) {
    assert_int_equal(pl_store_maintain(s, 50, &more), 0);
    slices++;
  }
  assert_true(slices > 2); /* bounded slices */
  /* last day 2023-04-30; boundary = first of the month of 2023-04-01 = 2023-04-01 */
  assert_int_equal(pl_store_read_begin(s, &t), 0);
  assert_int_equal(pl_store_state(t, &st), 0);
  assert_int_equal(st.retained_from, D("2023-04-01"));
  assert_int_equal(st.events, 360); /* totals still count every event */
  assert_int_equal(pl_store_agg(t, 1, pl_date_month(D("2023-01-15")), 0, &v), 0);
  assert_int_equal(v.events, 93); /* January's aggregate is kept */
  assert_int_equal(pl_store_agg(t, 0, D("2023-01-15"), id_of(s, "Busy Institute"), &v), 0);
  assert_int_equal(v.events, 2);
  pl_store_read_end(t);
  assert_int_equal(tu_count(s, PL_TAB_EVENTS), 30 * 3);
  assert_int_equal(tu_count(s, PL_TAB_IDEM), 360); /* ids stay, for dedup */
  /* nothing more to do */
  assert_int_equal(pl_store_maintain(s, 50, &more), 0);
  assert_false(more);
  /* a record re-sent after its month was pruned is still a duplicate */
  pl_batch_reset(b);
  {
    tu_rec_t r = R("Quiet Fund", "2023-01-05");
    r.id = "r-4-0";
    tu_add(b, &r, 0);
  }
  assert_int_equal(tu_commit1(s, b, 1000), 0);
  assert_int_equal(b->duplicates, 1);
  assert_int_equal(b->stored, 0);
  /* a late event for a pruned month is aggregated, then pruned again */
  pl_batch_reset(b);
  {
    tu_rec_t r = R("Quiet Fund", "2023-02-10");
    tu_add(b, &r, 0);
  }
  assert_int_equal(tu_commit1(s, b, 1000), 0);
  assert_int_equal(tu_count(s, PL_TAB_EVENTS), 91);
  assert_int_equal(pl_store_maintain(s, 50, &more), 0);
  assert_int_equal(tu_count(s, PL_TAB_EVENTS), 90);
  msgpack_sbuffer_clear(&before);
  snapshot(s, &before);
  /* rebuild recomputes April from its events and keeps January..March as they were */
  assert_int_equal(pl_store_rebuild(s, &rebuilt), 0);
  assert_int_equal(rebuilt, 90);
  snapshot(s, &after);
  assert_int_equal(before.size, after.size);
  assert_memory_equal(before.data, after.data, before.size);
  msgpack_sbuffer_destroy(&before);
  msgpack_sbuffer_destroy(&after);
  pl_batch_free(b);
  pl_store_close(s);
  tu_rmrf(dir);
  free(dir);
}

/* A child commits batches of BATCH records and reports each commit on a pipe; it is killed
 * with SIGKILL at some point. Reopened, the store holds every reported batch, whole
 * batches only, and aggregates equal to a rebuild. */
#define BATCH 500
static void test_sigkill_mid_stream(void **state) {
  fixture_t *f = *state;
  char *dir = tu_tempdir("kill");
  int fds[2];
  pid_t pid;
  uint32_t reported = 0, n;
  (void)f;
  assert_int_equal(pipe(fds), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    pl_store_opts_t o = {dir, 4 * MiB, 1024 * MiB, 1, 0, 600000, 0};
    pl_store_t *s;
    pl_batch_t *b = pl_batch_new();
    char err[256];
    close(fds[0]);
    if (pl_store_open(&s, &o, err, sizeof(err))) _exit(3);
    for (uint32_t i = 0;; i++) {
      pl_batch_reset(b);
      add_bulk(b, BATCH, (int)i);
      if (tu_commit1(s, b, 1000)) _exit(4);
      if (write(fds[1], &i, sizeof(i)) != sizeof(i)) _exit(5);
    }
  }
  close(fds[1]);
  /* let it commit a few batches (and start more), then kill it mid-stream */
  while (reported < 8 && read(fds[0], &n, sizeof(n)) == sizeof(n)) reported = n + 1;
  usleep(3000);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  while (read(fds[0], &n, sizeof(n)) == sizeof(n)) reported = n + 1;
  close(fds[0]);

  {
    pl_store_t *s = tu_store(dir, 4 * MiB, 1024 * MiB);
    msgpack_sbuffer before, after;
    uint64_t events = tu_count(s, PL_TAB_EVENTS), rebuilt;
    pl_rtxn_t *t;
    pl_store_state_t st;
    assert_non_null(s);
    assert_true(events >= (uint64_t)reported * BATCH); /* nothing committed is lost */
    assert_int_equal(events % BATCH, 0);                /* nothing half-written is visible */
    assert_int_equal(tu_count(s, PL_TAB_IDEM), events);
    assert_int_equal(pl_store_read_begin(s, &t), 0);
    assert_int_equal(pl_store_state(t, &st), 0);
    assert_int_equal(st.events, events);
    pl_store_read_end(t);
    msgpack_sbuffer_init(&before);
    msgpack_sbuffer_init(&after);
    snapshot(s, &before);
    assert_int_equal(pl_store_rebuild(s, &rebuilt), 0);
    snapshot(s, &after);
    assert_int_equal(before.size, after.size);
    assert_memory_equal(before.data, after.data, before.size);
    msgpack_sbuffer_destroy(&before);
    msgpack_sbuffer_destroy(&after);
    pl_store_close(s);
  }
  tu_rmrf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_events_keyed_by_date_then_institution, setup, teardown),
      cmocka_unit_test_setup_teardown(test_id_dedup, setup, teardown),
      cmocka_unit_test_setup_teardown(test_chunk_dedup_and_retention, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rejects, setup, teardown),
      cmocka_unit_test_setup_teardown(test_aggregates, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
      cmocka_unit_test_setup_teardown(test_map_grows_then_hits_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rebuild_equals_incremental, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stale_reader_slots_cleared, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rebuild_repairs_a_corrupt_day_row, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retention_keeps_aggregates, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sigkill_mid_stream, setup, teardown),
  };
  return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
