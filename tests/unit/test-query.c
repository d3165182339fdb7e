/* Query ops over real stores: known answers worked out by hand from the Track II sample,
 * window, period and paging edges, every error code, and generated data checked against a
 * model computed here from the records themselves. Requests and expected results are JSON
 * written with ' for " (see dq); replies are converted to JSON and compared as text. */
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lmdb.h>
#include <msgpack.h>

#include "parley/agg.h"
#include "parley/batch.h"
#include "parley/date.h"
#include "parley/error.h"
#include "parley/query.h"
#include "parley/record.h"
#include "parley/store.h"
#include "testutil.h"

#define MiB (1024ull * 1024)
#define SAMPLE "tests/data/track2-sample.jsonl"
#define NOW_MS 1795893334123ull /* 2026-11-28T19:15:34.123Z */

/* The sample's institutions (see the file, one event per line). */
#define HLD "China-U.S. Track II High-Level Dialogue"
#define NCUSCR "National Committee on U.S.-China Relations"
#define GREEN "China-U.S. Green Fund"
#define NISCSS "National Institute for South China Sea Studies"
#define CCG "Center for China and Globalization"
#define CWD "ChinaWest Dialogue"
#define NADS "National Academy of Development and Strategy"
#define ELLIOTT "Elliott School of International Affairs"
#define EDF "Environmental Defense Fund"
#define QUINCY "Quincy Institute for Responsible Statecraft"

typedef struct fx {
  char *dir;
  pl_store_t *s;
  pl_query_env_t env;
} fx_t;

static fx_t *fx_open(unsigned max_readers) {
  fx_t *f = calloc(1, sizeof(*f));
  pl_store_opts_t o = {NULL, 4 * MiB, 1024 * MiB, 0, max_readers, 600000};
  char err[256];
  f->dir = tu_tempdir("query");
  o.dir = f->dir;
  if (pl_store_open(&f->s, &o, err, sizeof(err))) {
    fprintf(stderr, "%s\n", err);
    return NULL;
  }
  f->env.version = "test-1.0";
  f->env.connections = 3;
  f->env.uptime_s = 42;
  return f;
}

static int setup(void **state) {
  *state = fx_open(0);
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  fx_t *f = *state;
  pl_store_close(f->s);
  tu_rmrf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static uint32_t D(const char *s) {
  uint32_t d;
  assert_int_equal(pl_date_parse(s, strlen(s), &d), 0);
  return d;
}

/* ---- JSON <-> MessagePack ---- */

/* JSON text with ' in place of " (every name here is free of apostrophes). */
static char *dq(const char *s) {
  char *out = strdup(s);
  for (char *p = out; *p; p++)
    if (*p == '\'') *p = '"';
  return out;
}

static void pack_json(msgpack_packer *pk, json_t *j) {
  const char *k;
  json_t *v;
  size_t i;
  switch (json_typeof(j)) {
    case JSON_OBJECT:
      msgpack_pack_map(pk, json_object_size(j));
      json_object_foreach(j, k, v) {
        msgpack_pack_str_with_body(pk, k, strlen(k));
        pack_json(pk, v);
      }
      break;
    case JSON_ARRAY:
      msgpack_pack_array(pk, json_array_size(j));
      json_array_foreach(j, i, v) pack_json(pk, v);
      break;
    case JSON_STRING:
      msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j));
      break;
    case JSON_INTEGER:
      if (json_integer_value(j) >= 0)
        msgpack_pack_uint64(pk, (uint64_t)json_integer_value(j));
      else
        msgpack_pack_int64(pk, json_integer_value(j));
      break;
    case JSON_REAL:
      msgpack_pack_double(pk, json_real_value(j));
      break;
    case JSON_TRUE:
      msgpack_pack_true(pk);
      break;
    case JSON_FALSE:
      msgpack_pack_false(pk);
      break;
    case JSON_NULL:
      msgpack_pack_nil(pk);
      break;
  }
}

/* Bins become "bin:<hex>"; a map with a repeated key fails the test. */
static json_t *mp_json(const msgpack_object *o) {
  static const char hex[] = "0123456789abcdef";
  json_t *j;
  char *s;
  switch (o->type) {
    case MSGPACK_OBJECT_NIL:
      return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
      return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
      return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
      j = json_stringn(o->via.str.ptr, o->via.str.size);
      assert_non_null(j);
      return j;
    case MSGPACK_OBJECT_BIN:
      s = malloc(4 + 2 * (size_t)o->via.bin.size + 1);
      memcpy(s, "bin:", 4);
      for (uint32_t i = 0; i < o->via.bin.size; i++) {
        s[4 + 2 * i] = hex[(unsigned char)o->via.bin.ptr[i] >> 4];
        s[5 + 2 * i] = hex[(unsigned char)o->via.bin.ptr[i] & 15];
      }
      s[4 + 2 * (size_t)o->via.bin.size] = '\0';
      j = json_string(s);
      free(s);
      return j;
    case MSGPACK_OBJECT_ARRAY:
      j = json_array();
      for (uint32_t i = 0; i < o->via.array.size; i++)
        json_array_append_new(j, mp_json(&o->via.array.ptr[i]));
      return j;
    case MSGPACK_OBJECT_MAP:
      j = json_object();
      for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        assert_int_equal(k->type, MSGPACK_OBJECT_STR);
        if (json_object_getn(j, k->via.str.ptr, k->via.str.size))
          fail_msg("reply map repeats the key %.*s", (int)k->via.str.size, k->via.str.ptr);
        json_object_setn_new(j, k->via.str.ptr, k->via.str.size, mp_json(&o->via.map.ptr[i].val));
      }
      return j;
    default:
      fail_msg("unexpected msgpack type %d in a reply", o->type);
  }
  return NULL;
}

static char *dump(const json_t *j) {
  return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
}

/* Runs a request given as a MessagePack object; returns the whole reply as JSON. */
static json_t *Qobj(fx_t *f, const msgpack_object *req) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_unpacked u;
  size_t off = 0;
  json_t *reply;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  assert_int_equal(pl_query_exec(f->s, &f->env, req, &pk), 0);
  msgpack_unpacked_init(&u);
  assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
  assert_int_equal(off, sb.size); /* exactly one reply */
  reply = mp_json(&u.data);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
  assert_int_equal(json_object_size(reply), 3);
  assert_non_null(json_object_get(reply, "req"));
  assert_true(json_is_boolean(json_object_get(reply, "ok")));
  return reply;
}

/* Runs a request written as JSON (printf format, ' for "); returns the whole reply. */
__attribute__((format(printf, 2, 3))) static json_t *Q(fx_t *f, const char *fmt, ...) {
  char text[4096], *t;
  va_list ap;
  json_error_t err;
  json_t *j, *reply;
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_unpacked u;
  size_t off = 0;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  t = dq(text);
  j = json_loads(t, JSON_DECODE_ANY, &err);
  if (!j) fail_msg("bad request text %s: %s", t, err.text);
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  pack_json(&pk, j);
  msgpack_unpacked_init(&u);
  assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
  reply = Qobj(f, &u.data);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
  json_decref(j);
  free(t);
  return reply;
}

/* The result of a successful reply (a new reference); the reply is released. */
static json_t *ok(json_t *reply) {
  json_t *r;
  if (!json_is_true(json_object_get(reply, "ok"))) {
    char *s = dump(reply);
    fail_msg("expected ok, got %s", s);
  }
  r = json_incref(json_object_get(reply, "result"));
  json_decref(reply);
  return r;
}

/* Compares got with the JSON text want (' for "), key order included; releases got. */
static void expect(json_t *got, const char *want) {
  json_error_t err;
  char *w = dq(want), *gs, *ws;
  json_t *wj = json_loads(w, JSON_DECODE_ANY, &err);
  if (!wj) fail_msg("bad expected text %s: %s", w, err.text);
  gs = dump(got);
  ws = dump(wj);
  if (strcmp(gs, ws) != 0) {
    fprintf(stderr, "# got:  %s\n# want: %s\n", gs, ws);
    fail();
  }
  free(gs);
  free(ws);
  free(w);
  json_decref(wj);
  json_decref(got);
}

static void expect_json(json_t *got, json_t *want) {
  char *gs = dump(got), *ws = dump(want);
  if (strcmp(gs, ws) != 0) {
    fprintf(stderr, "# got:  %s\n# want: %s\n", gs, ws);
    fail();
  }
  free(gs);
  free(ws);
  json_decref(got);
  json_decref(want);
}

/* Checks an error reply's code, and its message when msg is not NULL. */
static void expect_err(json_t *reply, const char *code, const char *msg) {
  json_t *e = json_object_get(reply, "error");
  char *s = dump(reply);
  if (!json_is_false(json_object_get(reply, "ok")) || !e ||
      strcmp(json_string_value(json_object_get(e, "code")), code) != 0 ||
      (msg && strcmp(json_string_value(json_object_get(e, "message")), msg) != 0)) {
    fprintf(stderr, "# got:  %s\n# want: code %s message %s\n", s, code, msg ? msg : "(any)");
    fail();
  }
  assert_null(strchr(json_string_value(json_object_get(e, "message")), '\n'));
  free(s);
  json_decref(reply);
}

/* ---- loading records ---- */

/* Adds one record (a packed map) to b as the ingest path would; a record the rules refuse
 * goes in as a reject. Returns 1 when it was a valid record. */
static int add_packed(pl_batch_t *b, const char *data, size_t len, const char *tag) {
  msgpack_unpacked u;
  msgpack_sbuffer out;
  msgpack_packer pk;
  pl_record_t rec;
  char why[200];
  size_t off = 0;
  int valid;
  pl_record_meta_t meta = {{tag, (uint32_t)strlen(tag)}, 1700000000, 0, NOW_MS};
  msgpack_unpacked_init(&u);
  assert_int_equal(msgpack_unpack_next(&u, data, len, &off), MSGPACK_UNPACK_SUCCESS);
  valid = pl_record_parse(&rec, &u.data, 1700000000, why, sizeof(why)) == 0;
  if (valid) {
    msgpack_sbuffer_init(&out);
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    assert_int_equal(pl_record_pack(&pk, &rec, &u.data, &meta), 0);
    assert_int_equal(pl_batch_add_record(b, &rec, out.data, out.size), 0);
    msgpack_sbuffer_destroy(&out);
  } else {
    assert_int_equal(pl_batch_add_reject(b, why, data, len, "127.0.0.1:5000", NOW_MS), 0);
  }
  msgpack_unpacked_destroy(&u);
  return valid;
}

static int add_json(pl_batch_t *b, const char *text, const char *tag) {
  json_error_t err;
  json_t *j = json_loads(text, 0, &err);
  msgpack_sbuffer sb;
  msgpack_packer pk;
  int valid;
  if (!j) fail_msg("bad record %s: %s", text, err.text);
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  pack_json(&pk, j);
  valid = add_packed(b, sb.data, sb.size, tag);
  msgpack_sbuffer_destroy(&sb);
  json_decref(j);
  return valid;
}

static void commit(fx_t *f, pl_batch_t *b) {
  assert_int_equal(pl_store_commit(f->s, &b, 1, NOW_MS), 0);
  assert_int_equal(b->status, 0);
  pl_batch_free(b);
}

/* Commits records written as JSON (' for "), one per argument, NULL-terminated. */
static void put(fx_t *f, ...) {
  pl_batch_t *b = pl_batch_new();
  va_list ap;
  const char *r;
  va_start(ap, f);
  while ((r = va_arg(ap, const char *)) != NULL) {
    char *t = dq(r);
    add_json(b, t, "test");
    free(t);
  }
  va_end(ap);
  commit(f, b);
}

static void load_sample(fx_t *f) {
  FILE *fp = fopen(SAMPLE, "r");
  char line[8192];
  pl_batch_t *b = pl_batch_new();
  int n = 0;
  if (!fp) fail_msg("cannot open %s (run the tests from the repository root)", SAMPLE);
  while (fgets(line, sizeof(line), fp))
    if (line[0] == '{') n += add_json(b, line, "track2");
  fclose(fp);
  assert_int_equal(n, 10);
  commit(f, b);
}

/* ====================================================================================
 * Known answers on the Track II sample. The ten events, by line (date, institution,
 * counterparts, kind, format, country, participants, topics):
 *  1 2009-10-11 HLD     []         dialogue    in_person CN 20 [bilateral relations]
 *  2 2019-03-01 NCUSCR  [GREEN]    dialogue    in_person US -  [digital economy]
 *  3 2022-12-20 NCUSCR  [GREEN]    dialogue    virtual   US -  [data, financial services,
 *                                                                semiconductors]
 *  4 2023-02-14 NCUSCR  [GREEN]    dialogue    virtual   US -  [data, financial services,
 *                       semiconductors, digital economy, green energy, healthcare, food security]
 *  5 2023-06-01 NISCSS  []         seminar     in_person CN -  [strategic conflicts, diplomatic
 *             strategy, crisis management, Taiwan Straits, South China Sea, Track II mechanisms]
 *  6 2023-07-28 CCG     [CWD]      roundtable  in_person CN -  [bilateral relations]
 *  7 2023-08-17 CCG     [NISCSS]   book_launch in_person CN -  [think tank dialogue]
 *  8 2023-11-05 NADS    [ELLIOTT]  visit       in_person CN -  [China economic development]
 *  9 2023-11-06 NADS    [EDF]      visit       in_person CN -  [China economic development,
 *                                                                green energy]
 * 10 2023-11-13 QUINCY  []         letter      virtual   US 34 [bilateral relations]
 * First date 2009-10-11, last 2023-11-13. Institutions: six reporters plus four named only
 * as counterparts (GREEN, CWD, ELLIOTT, EDF; NISCSS also reports) = 10.
 * ==================================================================================== */

static void test_ping_stats(void **state) {
  fx_t *f = *state;
  json_t *r;
  expect(ok(Q(f, "{'op':'ping'}")), "{'pong':true,'version':'test-1.0'}");
  /* An empty store: no dates. */
  r = ok(Q(f, "{'op':'stats'}"));
  assert_true(json_integer_value(json_object_get(r, "db_bytes")) > 0);
  json_object_del(r, "db_bytes");
  expect(r,
         "{'events':0,'institutions':0,'rejected':0,'duplicates':0,'first_date':null,"
         "'last_date':null,'connections':3,'uptime_s':42}");
  load_sample(f);
  r = ok(Q(f, "{'op':'stats','req':1}"));
  json_object_del(r, "db_bytes");
  expect(r,
         "{'events':10,'institutions':10,'rejected':0,'duplicates':0,'first_date':'2009-10-11',"
         "'last_date':'2023-11-13','connections':3,'uptime_s':42}");
  /* The same ten again: every (date, id) is known, so ten duplicates and nothing new. */
  load_sample(f);
  put(f, "{'institution':'Broken','date':'2023-02-30'}", NULL);
  r = ok(Q(f, "{'op':'stats'}"));
  json_object_del(r, "db_bytes");
  expect(r,
         "{'events':10,'institutions':10,'rejected':1,'duplicates':10,'first_date':'2009-10-11',"
         "'last_date':'2023-11-13','connections':3,'uptime_s':42}");
}

static void test_activity_sample(void **state) {
  fx_t *f = *state;
  load_sample(f);
  /* Default window 30 ending at the last date 2023-11-13: [2023-10-15, 2023-11-13] holds
   * NADS's two visits (lines 8, 9). The 30 days before, [2023-09-15, 2023-10-14], hold none,
   * so growth is nil. Ties at 1 go by name: Elliott < Environmental. */
  expect(ok(Q(f, "{'op':'activity','institution':'" NADS "'}")),
         "{'institution':'" NADS
         "','from':'2023-10-15','to':'2023-11-13','events':2,"
         "'participants':0,'active_days':2,'kinds':{'visit':2},'formats':{'in_person':2},"
         "'topics':{'China economic development':2,'green energy':1},"
         "'counterparts':{'" ELLIOTT "':1,'" EDF "':1},'previous_events':0,'growth':null}");
  /* 365 days ending 2023-02-14: [2022-02-15, 2023-02-14] holds lines 3 and 4 (the last day
   * counts). Topics: data, financial services, semiconductors twice; the other four once,
   * in byte order. The year before holds nothing (line 2 is 2019). */
  expect(ok(Q(f, "{'op':'activity','institution':'" NCUSCR "','window':365,'as_of':'2023-02-14'}")),
         "{'institution':'" NCUSCR
         "','from':'2022-02-15','to':'2023-02-14','events':2,"
         "'participants':0,'active_days':2,'kinds':{'dialogue':2},'formats':{'virtual':2},"
         "'topics':{'data':2,'financial services':2,'semiconductors':2,'digital economy':1,"
         "'food security':1,'green energy':1,'healthcare':1},"
         "'counterparts':{'" GREEN "':2},'previous_events':0,'growth':null}");
  /* A counterpart-only institution is known: zero activity, not not_found. */
  expect(ok(Q(f, "{'op':'activity','institution':'" GREEN "','window':'7'}")),
         "{'institution':'" GREEN
         "','from':'2023-11-07','to':'2023-11-13','events':0,"
         "'participants':0,'active_days':0,'kinds':{},'formats':{},'topics':{},"
         "'counterparts':{},'previous_events':0,'growth':null}");
  /* Participants add up (line 1: 20) and names are trimmed as records are. */
  expect(
      ok(Q(f, "{'op':'activity','institution':'  " HLD " ','window':36525,'as_of':'2010-01-01'}")),
      "{'institution':'" HLD
      "','from':'1910-01-02','to':'2010-01-01','events':1,"
      "'participants':20,'active_days':1,'kinds':{'dialogue':1},'formats':{'in_person':1},"
      "'topics':{'bilateral relations':1},'counterparts':{},'previous_events':0,"
      "'growth':null}");
}

static void test_activity_windows(void **state) {
  fx_t *f = *state;
  json_t *r;
  load_sample(f);
  /* NCUSCR, as_of 2023-02-14 (line 4), earlier events 2022-12-20 (3) and 2019-03-01 (2).
   * window 1: [2023-02-14]; the day before has nothing. */
  r = ok(Q(f, "{'op':'activity','institution':'" NCUSCR "','window':1,'as_of':'2023-02-14'}"));
  assert_int_equal(json_integer_value(json_object_get(r, "events")), 1);
  assert_int_equal(json_integer_value(json_object_get(r, "previous_events")), 0);
  json_decref(r);
  /* window 57: from = 2023-02-14 - 56 = 2022-12-20, the first day, inclusive: 2 events.
   * The previous 57 days [2022-10-24, 2022-12-19] hold none. */
  r = ok(Q(f, "{'op':'activity','institution':'" NCUSCR "','window':57,'as_of':'2023-02-14'}"));
  assert_string_equal(json_string_value(json_object_get(r, "from")), "2022-12-20");
  assert_int_equal(json_integer_value(json_object_get(r, "events")), 2);
  assert_int_equal(json_integer_value(json_object_get(r, "active_days")), 2);
  assert_int_equal(json_integer_value(json_object_get(r, "previous_events")), 0);
  assert_true(json_is_null(json_object_get(r, "growth")));
  json_decref(r);
  /* window 56: [2022-12-21, 2023-02-14] has 1; the previous [2022-10-26, 2022-12-20] ends on
   * line 3's day: 1. growth 1/1. */
  r = ok(Q(f, "{'op':'activity','institution':'" NCUSCR "','window':56,'as_of':'2023-02-14'}"));
  assert_string_equal(json_string_value(json_object_get(r, "from")), "2022-12-21");
  assert_int_equal(json_integer_value(json_object_get(r, "events")), 1);
  assert_int_equal(json_integer_value(json_object_get(r, "previous_events")), 1);
  assert_true(json_real_value(json_object_get(r, "growth")) == 1.0);
  json_decref(r);
  /* window 1400: [2019-04-17, 2023-02-14] has lines 3, 4; the previous [2015-06-17,
   * 2019-04-16] has line 2: growth 2.0. */
  r = ok(Q(f, "{'op':'activity','institution':'" NCUSCR "','window':'1400','as_of':'2023-02-14'}"));
  assert_int_equal(json_integer_value(json_object_get(r, "events")), 2);
  assert_int_equal(json_integer_value(json_object_get(r, "previous_events")), 1);
  assert_true(json_real_value(json_object_get(r, "growth")) == 2.0);
  json_decref(r);
  /* as_of the day before: line 4 falls out. */
  r = ok(Q(f, "{'op':'activity','institution':'" NCUSCR "','window':57,'as_of':'2023-02-13'}"));
  assert_int_equal(json_integer_value(json_object_get(r, "events")), 1);
  json_decref(r);
  /* Clamped at day 0: [1900-01-01, 1900-01-10], and no window before it. */
  r = ok(Q(f, "{'op':'activity','institution':'" NCUSCR "','window':30,'as_of':'1900-01-10'}"));
  assert_string_equal(json_string_value(json_object_get(r, "from")), "1900-01-01");
  assert_int_equal(json_integer_value(json_object_get(r, "events")), 0);
  assert_int_equal(json_integer_value(json_object_get(r, "previous_events")), 0);
  json_decref(r);
  /* The widest window at the last valid day. */
  r = ok(Q(f, "{'op':'activity','institution':'" NCUSCR "','window':36525,'as_of':'2199-12-31'}"));
  assert_int_equal(json_integer_value(json_object_get(r, "events")), 0);
  json_decref(r);
}

static void test_top_sample(void **state) {
  fx_t *f = *state;
  load_sample(f);
  /* Default: 30 days to 2023-11-13: NADS 2 (lines 8, 9), QUINCY 1 (line 10). */
  expect(ok(Q(f, "{'op':'top'}")),
         "{'from':'2023-10-15','to':'2023-11-13','by':'events','rows':[{'institution':'" NADS
         "','value':2},{'institution':'" QUINCY "','value':1}]}");
  /* 365 days [2022-11-14, 2023-11-13]: CCG 2, NADS 2, NCUSCR 2 (lines 3, 4), NISCSS 1,
   * QUINCY 1; ties by name ("National A" < "National C"). */
  expect(ok(Q(f, "{'op':'top','window':365}")),
         "{'from':'2022-11-14','to':'2023-11-13','by':'events','rows':["
         "{'institution':'" CCG "','value':2},{'institution':'" NADS
         "','value':2},"
         "{'institution':'" NCUSCR "','value':2},{'institution':'" NISCSS
         "','value':1},"
         "{'institution':'" QUINCY "','value':1}]}");
  /* limit 2 cuts inside a tie of three at 2: the names decide. */
  expect(ok(Q(f, "{'op':'top','window':365,'limit':2}")),
         "{'from':'2022-11-14','to':'2023-11-13','by':'events','rows':["
         "{'institution':'" CCG "','value':2},{'institution':'" NADS "','value':2}]}");
  expect(ok(Q(f, "{'op':'top','window':365,'limit':'4'}")),
         "{'from':'2022-11-14','to':'2023-11-13','by':'events','rows':["
         "{'institution':'" CCG "','value':2},{'institution':'" NADS
         "','value':2},"
         "{'institution':'" NCUSCR "','value':2},{'institution':'" NISCSS "','value':1}]}");
  /* Participants: only lines 1 (20) and 10 (34) have any; zeros are left out. */
  expect(ok(Q(f, "{'op':'top','window':365,'by':'participants'}")),
         "{'from':'2022-11-14','to':'2023-11-13','by':'participants','rows':["
         "{'institution':'" QUINCY "','value':34}]}");
  expect(ok(Q(f, "{'op':'top','window':36525,'by':'participants'}")),
         "{'from':'1923-11-14','to':'2023-11-13','by':'participants','rows':["
         "{'institution':'" QUINCY "','value':34},{'institution':'" HLD "','value':20}]}");
  /* Distinct counterparts over everything: CCG {CWD, NISCSS} 2, NADS {ELLIOTT, EDF} 2,
   * NCUSCR {GREEN} 1 although named three times. */
  expect(ok(Q(f, "{'op':'top','window':36525,'by':'counterparts'}")),
         "{'from':'1923-11-14','to':'2023-11-13','by':'counterparts','rows':["
         "{'institution':'" CCG "','value':2},{'institution':'" NADS
         "','value':2},"
         "{'institution':'" NCUSCR "','value':1}]}");
  /* One filter, from the aggregates. */
  expect(ok(Q(f, "{'op':'top','window':365,'kind':'visit'}")),
         "{'from':'2022-11-14','to':'2023-11-13','by':'events','rows':["
         "{'institution':'" NADS "','value':2}]}");
  expect(ok(Q(f, "{'op':'top','window':36525,'topic':'bilateral relations'}")),
         "{'from':'1923-11-14','to':'2023-11-13','by':'events','rows':["
         "{'institution':'" CCG "','value':1},{'institution':'" HLD
         "','value':1},"
         "{'institution':'" QUINCY "','value':1}]}");
  expect(ok(Q(f, "{'op':'top','window':36525,'topic':'bilateral relations','by':'participants'}")),
         "{'from':'1923-11-14','to':'2023-11-13','by':'participants','rows':["
         "{'institution':'" QUINCY "','value':34},{'institution':'" HLD "','value':20}]}");
  expect(ok(Q(f, "{'op':'top','window':36525,'format':'virtual'}")),
         "{'from':'1923-11-14','to':'2023-11-13','by':'events','rows':["
         "{'institution':'" NCUSCR "','value':2},{'institution':'" QUINCY "','value':1}]}");
  /* Two filters (the events scan): dialogue and virtual is lines 3, 4; dialogue and
   * digital economy is lines 2, 4; visit and virtual is nothing. */
  expect(ok(Q(f, "{'op':'top','window':36525,'kind':'dialogue','format':'virtual'}")),
         "{'from':'1923-11-14','to':'2023-11-13','by':'events','rows':["
         "{'institution':'" NCUSCR "','value':2}]}");
  expect(ok(Q(f, "{'op':'top','window':36525,'kind':'dialogue','topic':'digital economy'}")),
         "{'from':'1923-11-14','to':'2023-11-13','by':'events','rows':["
         "{'institution':'" NCUSCR "','value':2}]}");
  expect(ok(Q(f, "{'op':'top','window':36525,'kind':'visit','format':'virtual'}")),
         "{'from':'1923-11-14','to':'2023-11-13','by':'events','rows':[]}");
  /* Counterparts with a filter (the scan): green energy is lines 4 (GREEN) and 9 (EDF). */
  expect(ok(Q(f, "{'op':'top','window':36525,'topic':'green energy','by':'counterparts'}")),
         "{'from':'1923-11-14','to':'2023-11-13','by':'counterparts','rows':["
         "{'institution':'" NADS "','value':1},{'institution':'" NCUSCR "','value':1}]}");
  /* A filter value never stored matches nothing. */
  expect(ok(Q(f, "{'op':'top','window':36525,'kind':'picnic'}")),
         "{'from':'1923-11-14','to':'2023-11-13','by':'events','rows':[]}");
}

static void test_series_sample(void **state) {
  fx_t *f = *state;
  load_sample(f);
  /* NCUSCR by year: 2019 (line 2), 2022 (3), 2023 (4); zero years included. */
  expect(ok(Q(f, "{'op':'series','institution':'" NCUSCR
                 "','from':'2019-01-01','to':'2023-12-31','bucket':'year'}")),
         "{'from':'2019-01-01','to':'2023-12-31','bucket':'year','rows':["
         "{'period':'2019','events':1,'participants':0},{'period':'2020','events':0,"
         "'participants':0},{'period':'2021','events':0,'participants':0},"
         "{'period':'2022','events':1,'participants':0},"
         "{'period':'2023','events':1,'participants':0}]}");
  /* Everyone, default range 2009-10-11..2023-11-13 by year: 15 years; 2009: line 1 (20
   * participants), 2019: 2, 2022: 3, 2023: lines 4-10 = 7 (34 participants). */
  {
    json_t *r = ok(Q(f, "{'op':'series','bucket':'year'}")), *rows = json_object_get(r, "rows");
    static const int ev[15] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 7};
    assert_string_equal(json_string_value(json_object_get(r, "from")), "2009-10-11");
    assert_string_equal(json_string_value(json_object_get(r, "to")), "2023-11-13");
    assert_int_equal(json_array_size(rows), 15);
    for (int i = 0; i < 15; i++) {
      json_t *row = json_array_get(rows, (size_t)i);
      char label[8];
      snprintf(label, sizeof(label), "%d", 2009 + i);
      assert_string_equal(json_string_value(json_object_get(row, "period")), label);
      assert_int_equal(json_integer_value(json_object_get(row, "events")), ev[i]);
      assert_int_equal(json_integer_value(json_object_get(row, "participants")), i == 0    ? 20
                                                                                 : i == 14 ? 34
                                                                                           : 0);
    }
    json_decref(r);
  }
  /* Months: one event in each of June (5), July (6), August (7) 2023. */
  expect(ok(Q(f, "{'op':'series','from':'2023-06-01','to':'2023-08-31','bucket':'month'}")),
         "{'from':'2023-06-01','to':'2023-08-31','bucket':'month','rows':["
         "{'period':'2023-06','events':1,'participants':0},"
         "{'period':'2023-07','events':1,'participants':0},"
         "{'period':'2023-08','events':1,'participants':0}]}");
  /* Only events inside [from, to]: November from the 6th holds lines 9 and 10, not 8. */
  expect(ok(Q(f, "{'op':'series','from':'2023-11-06','to':'2023-11-30','bucket':'month'}")),
         "{'from':'2023-11-06','to':'2023-11-30','bucket':'month','rows':["
         "{'period':'2023-11','events':2,'participants':34}]}");
  /* Days, one institution, first and last day of the range included. */
  expect(ok(Q(f, "{'op':'series','institution':'" NADS "','from':'2023-11-05','to':'2023-11-07'}")),
         "{'from':'2023-11-05','to':'2023-11-07','bucket':'day','rows':["
         "{'period':'2023-11-05','events':1,'participants':0},"
         "{'period':'2023-11-06','events':1,'participants':0},"
         "{'period':'2023-11-07','events':0,'participants':0}]}");
  /* Weeks: 2022-12-20 is a Tuesday of ISO 2022-W51; W52 starts 2022-12-26, 2023-W01 on
   * 2023-01-02, W02 on 2023-01-09 (holding to = 2023-01-10). */
  expect(ok(Q(f, "{'op':'series','from':'2022-12-20','to':'2023-01-10','bucket':'week'}")),
         "{'from':'2022-12-20','to':'2023-01-10','bucket':'week','rows':["
         "{'period':'2022-W51','events':1,'participants':0},"
         "{'period':'2022-W52','events':0,'participants':0},"
         "{'period':'2023-W01','events':0,'participants':0},"
         "{'period':'2023-W02','events':0,'participants':0}]}");
  /* Filters: green energy in 2023 is lines 4 and 9; with kind visit (the scan) only 9. */
  expect(ok(Q(f,
              "{'op':'series','from':'2023-01-01','to':'2023-12-31','bucket':'year',"
              "'topic':'green energy'}")),
         "{'from':'2023-01-01','to':'2023-12-31','bucket':'year','rows':["
         "{'period':'2023','events':2,'participants':0}]}");
  expect(ok(Q(f,
              "{'op':'series','from':'2023-01-01','to':'2023-12-31','bucket':'year',"
              "'topic':'green energy','kind':'visit'}")),
         "{'from':'2023-01-01','to':'2023-12-31','bucket':'year','rows':["
         "{'period':'2023','events':1,'participants':0}]}");
  expect(ok(Q(f, "{'op':'series','institution':'" NADS "','from':'2023-01-01','to':'2023-12-31',"
                 "'bucket':'year','topic':'green energy','kind':'visit'}")),
         "{'from':'2023-01-01','to':'2023-12-31','bucket':'year','rows':["
         "{'period':'2023','events':1,'participants':0}]}");
  expect(ok(Q(f,
              "{'op':'series','from':'2023-01-01','to':'2023-12-31','bucket':'year',"
              "'kind':'letter'}")),
         "{'from':'2023-01-01','to':'2023-12-31','bucket':'year','rows':["
         "{'period':'2023','events':1,'participants':34}]}");
  expect(ok(Q(f,
              "{'op':'series','from':'2023-01-01','to':'2023-12-31','bucket':'year',"
              "'kind':'picnic'}")),
         "{'from':'2023-01-01','to':'2023-12-31','bucket':'year','rows':["
         "{'period':'2023','events':0,'participants':0}]}");
}

static void test_series_periods(void **state) {
  fx_t *f = *state;
  json_t *r;
  /* 2020-12-31 (Thu) and 2021-01-02 (Sat) are in ISO 2020-W53 (Mon 2020-12-28 .. Sun
   * 2021-01-03); 2021-01-04 opens 2021-W01. 2024-12-30 (Mon) is ISO 2025-W01, while
   * 2024-12-29 (Sun) closes 2024-W52. */
  put(f, "{'institution':'W','date':'2020-12-31'}", "{'institution':'W','date':'2021-01-02'}",
      "{'institution':'W','date':'2021-01-04','participants':5}",
      "{'institution':'W','date':'2024-12-29'}", "{'institution':'W','date':'2024-12-30'}", NULL);
  expect(ok(Q(f,
              "{'op':'series','institution':'W','from':'2020-12-29','to':'2021-01-04',"
              "'bucket':'week'}")),
         "{'from':'2020-12-29','to':'2021-01-04','bucket':'week','rows':["
         "{'period':'2020-W53','events':2,'participants':0},"
         "{'period':'2021-W01','events':1,'participants':5}]}");
  expect(ok(Q(f, "{'op':'series','from':'2024-12-23','to':'2025-01-06','bucket':'week'}")),
         "{'from':'2024-12-23','to':'2025-01-06','bucket':'week','rows':["
         "{'period':'2024-W52','events':1,'participants':0},"
         "{'period':'2025-W01','events':1,'participants':0},"
         "{'period':'2025-W02','events':0,'participants':0}]}");
  /* Years and months counted only inside the range, across the year boundary. */
  expect(ok(Q(f, "{'op':'series','from':'2021-01-01','to':'2021-01-03','bucket':'year'}")),
         "{'from':'2021-01-01','to':'2021-01-03','bucket':'year','rows':["
         "{'period':'2021','events':1,'participants':0}]}");
  expect(ok(Q(f, "{'op':'series','from':'2020-12-31','to':'2021-01-31','bucket':'month'}")),
         "{'from':'2020-12-31','to':'2021-01-31','bucket':'month','rows':["
         "{'period':'2020-12','events':1,'participants':0},"
         "{'period':'2021-01','events':2,'participants':5}]}");
  /* 10,000 periods is the most: 10,000 days pass, 10,001 do not; 1900-01-01 to
   * 1927-05-19 is exactly 10,000 days (day numbers 0..9999). */
  r = ok(Q(f, "{'op':'series','from':'1900-01-01','to':'1927-05-19'}"));
  assert_int_equal(json_array_size(json_object_get(r, "rows")), 10000);
  json_decref(r);
  expect_err(Q(f, "{'op':'series','from':'1900-01-01','to':'1927-05-20'}"), "too_large", NULL);
  expect_err(Q(f, "{'op':'series','from':'1900-01-01','to':'2199-12-31'}"), "too_large",
             "series from 1900-01-01 to 2199-12-31 by day has 109573 periods; the most is 10000");
  r = ok(Q(f, "{'op':'series','from':'1900-01-01','to':'2199-12-31','bucket':'month'}"));
  assert_int_equal(json_array_size(json_object_get(r, "rows")), 3600);
  json_decref(r);
}

static void test_pair_sample(void **state) {
  fx_t *f = *state;
  load_sample(f);
  /* NCUSCR and GREEN: lines 2, 3, 4, all dialogue, country US, no participants. Years
   * 2009..2023 (the default range): active 2019, 2022, 2023; the run ending at 2023 is 2. */
  expect(ok(Q(f, "{'op':'pair','a':'" NCUSCR "','b':'" GREEN "'}")),
         "{'a':'" NCUSCR "','b':'" GREEN
         "','from':'2009-10-11','to':'2023-11-13',"
         "'period':'year','events':3,'kinds':{'dialogue':3},'first':'2019-03-01',"
         "'last':'2023-02-14','periods_active':3,'current_streak':2,'longest_streak':2,"
         "'participants_by_country':{'US':0}}");
  /* By month: 2019-03, 2022-12, 2023-02 active; 2023-11 (holding to) is not: current 0. */
  expect(ok(Q(f, "{'op':'pair','a':'" GREEN "','b':'" NCUSCR "','period':'month'}")),
         "{'a':'" GREEN "','b':'" NCUSCR
         "','from':'2009-10-11','to':'2023-11-13',"
         "'period':'month','events':3,'kinds':{'dialogue':3},'first':'2019-03-01',"
         "'last':'2023-02-14','periods_active':3,'current_streak':0,'longest_streak':1,"
         "'participants_by_country':{'US':0}}");
  /* Ending at 2023-02-14: months 2022-12 yes, 2023-01 no, 2023-02 yes: current 1. */
  expect(ok(Q(f, "{'op':'pair','a':'" NCUSCR "','b':'" GREEN
                 "','from':'2022-12-01','to':'2023-02-14','period':'month'}")),
         "{'a':'" NCUSCR "','b':'" GREEN
         "','from':'2022-12-01','to':'2023-02-14',"
         "'period':'month','events':2,'kinds':{'dialogue':2},'first':'2022-12-20',"
         "'last':'2023-02-14','periods_active':2,'current_streak':1,'longest_streak':1,"
         "'participants_by_country':{'US':0}}");
  /* Edges: from the day after line 3 to the day of line 4. */
  expect(ok(Q(f, "{'op':'pair','a':'" NCUSCR "','b':'" GREEN
                 "','from':'2022-12-21','to':'2023-02-14'}")),
         "{'a':'" NCUSCR "','b':'" GREEN
         "','from':'2022-12-21','to':'2023-02-14',"
         "'period':'year','events':1,'kinds':{'dialogue':1},'first':'2023-02-14',"
         "'last':'2023-02-14','periods_active':1,'current_streak':1,'longest_streak':1,"
         "'participants_by_country':{'US':0}}");
  /* CCG named NISCSS on line 7 (book_launch, CN); either order gives the same pair. */
  expect(ok(Q(f, "{'op':'pair','a':'" NISCSS "','b':'" CCG "','from':'2023-01-01'}")),
         "{'a':'" NISCSS "','b':'" CCG
         "','from':'2023-01-01','to':'2023-11-13',"
         "'period':'year','events':1,'kinds':{'book_launch':1},'first':'2023-08-17',"
         "'last':'2023-08-17','periods_active':1,'current_streak':1,'longest_streak':1,"
         "'participants_by_country':{'CN':0}}");
  /* Two known institutions that never met. */
  expect(ok(Q(f, "{'op':'pair','a':'" HLD "','b':'" QUINCY "','from':'2023-01-01'}")),
         "{'a':'" HLD "','b':'" QUINCY
         "','from':'2023-01-01','to':'2023-11-13',"
         "'period':'year','events':0,'kinds':{},'first':null,'last':null,'periods_active':0,"
         "'current_streak':0,'longest_streak':0,'participants_by_country':{}}");
}

static void test_pair_streaks(void **state) {
  fx_t *f = *state;
  /* A and B meet in 2010, 2011, 2012, not 2013, then 2014, 2015; B reports the 2011 one
   * (it still counts: either side may list the other). Country absent on one: "unknown". */
  put(f,
      "{'institution':'A','date':'2010-05-01','counterparts':['B'],'country':'X','participants':3}",
      "{'institution':'B','date':'2011-05-01','counterparts':'A','kind':'visit','participants':4}",
      "{'institution':'A','date':'2012-12-31','counterparts':['B','C'],'country':'X'}",
      "{'institution':'A','date':'2014-01-01','counterparts':['B'],'country':'X','kind':'visit'}",
      "{'institution':'A','date':'2015-06-30','counterparts':['B'],'country':'Y',"
      "'participants':10}",
      "{'institution':'A','date':'2013-06-01','counterparts':['C'],'country':'X'}", NULL);
  expect(ok(Q(f, "{'op':'pair','a':'A','b':'B','from':'2010-01-01','to':'2015-12-31'}")),
         "{'a':'A','b':'B','from':'2010-01-01','to':'2015-12-31','period':'year','events':5,"
         "'kinds':{'visit':2},'first':'2010-05-01','last':'2015-06-30','periods_active':5,"
         "'current_streak':2,'longest_streak':3,"
         "'participants_by_country':{'Y':10,'unknown':4,'X':3}}");
  /* to in 2016, an inactive year: the current streak is 0. */
  expect(ok(Q(f, "{'op':'pair','a':'A','b':'B','from':'2010-01-01','to':'2016-01-01'}")),
         "{'a':'A','b':'B','from':'2010-01-01','to':'2016-01-01','period':'year','events':5,"
         "'kinds':{'visit':2},'first':'2010-05-01','last':'2015-06-30','periods_active':5,"
         "'current_streak':0,'longest_streak':3,"
         "'participants_by_country':{'Y':10,'unknown':4,'X':3}}");
  /* Months: 2012-12 and 2014-01 are active, 2013 in between is not; 2012-11..2014-01. */
  put(f, "{'institution':'A','date':'2012-11-15','counterparts':['B']}",
      "{'institution':'B','date':'2013-01-01','counterparts':['A']}", NULL);
  expect(ok(Q(f,
              "{'op':'pair','a':'A','b':'B','from':'2012-11-01','to':'2013-01-31',"
              "'period':'month'}")),
         "{'a':'A','b':'B','from':'2012-11-01','to':'2013-01-31','period':'month','events':3,"
         "'kinds':{},'first':'2012-11-15','last':'2013-01-01','periods_active':3,"
         "'current_streak':3,'longest_streak':3,"
         "'participants_by_country':{'X':0,'unknown':0}}");
  expect(ok(Q(f,
              "{'op':'pair','a':'A','b':'B','from':'2012-11-01','to':'2014-01-01',"
              "'period':'month'}")),
         "{'a':'A','b':'B','from':'2012-11-01','to':'2014-01-01','period':'month','events':4,"
         "'kinds':{'visit':1},'first':'2012-11-15','last':'2014-01-01','periods_active':4,"
         "'current_streak':1,'longest_streak':3,"
         "'participants_by_country':{'X':0,'unknown':0}}");
  /* The range starts mid-period: the 2012 period counts only 2012-12-31 (one event). */
  expect(ok(Q(f, "{'op':'pair','a':'B','b':'A','from':'2012-12-31','to':'2014-01-01'}")),
         "{'a':'B','b':'A','from':'2012-12-31','to':'2014-01-01','period':'year','events':3,"
         "'kinds':{'visit':1},'first':'2012-12-31','last':'2014-01-01','periods_active':3,"
         "'current_streak':3,'longest_streak':3,"
         "'participants_by_country':{'X':0,'unknown':0}}");
}

static void test_topics_sample(void **state) {
  fx_t *f = *state;
  load_sample(f);
  /* Default 30 days [2023-10-15, 2023-11-13]: lines 8, 9, 10. */
  expect(ok(Q(f, "{'op':'topics'}")),
         "{'from':'2023-10-15','to':'2023-11-13','rows':["
         "{'topic':'China economic development','events':2},"
         "{'topic':'bilateral relations','events':1},{'topic':'green energy','events':1}]}");
  /* Everything: bilateral relations 3 (lines 1, 6, 10); six topics at 2 (China economic
   * development 8+9, data 3+4, digital economy 2+4, financial services 3+4, green energy
   * 4+9, semiconductors 3+4) in byte order (capitals first); then the 1s from "South China
   * Sea", "Taiwan Straits", "Track II mechanisms" on. limit 10 stops after "Track II". */
  expect(ok(Q(f, "{'op':'topics','window':36525}")),
         "{'from':'1923-11-14','to':'2023-11-13','rows':["
         "{'topic':'bilateral relations','events':3},"
         "{'topic':'China economic development','events':2},{'topic':'data','events':2},"
         "{'topic':'digital economy','events':2},{'topic':'financial services','events':2},"
         "{'topic':'green energy','events':2},{'topic':'semiconductors','events':2},"
         "{'topic':'South China Sea','events':1},{'topic':'Taiwan Straits','events':1},"
         "{'topic':'Track II mechanisms','events':1}]}");
  expect(ok(Q(f, "{'op':'topics','window':365,'as_of':'2023-02-14','limit':2}")),
         "{'from':'2022-02-15','to':'2023-02-14','rows':[{'topic':'data','events':2},"
         "{'topic':'financial services','events':2}]}");
}

static void test_institutions_sample(void **state) {
  fx_t *f = *state;
  load_sample(f);
  /* All ten in byte order; vocabulary in the same dictionary (CN, dialogue, "China economic
   * development", ...) is not listed. Counterpart-only names have 0 events and null dates. */
  expect(ok(Q(f, "{'op':'institutions'}")),
         "{'rows':["
         "{'institution':'" CCG
         "','events':2,'first':'2023-07-28','last':'2023-08-17'},"
         "{'institution':'" GREEN
         "','events':0,'first':null,'last':null},"
         "{'institution':'" HLD
         "','events':1,'first':'2009-10-11','last':'2009-10-11'},"
         "{'institution':'" CWD
         "','events':0,'first':null,'last':null},"
         "{'institution':'" ELLIOTT
         "','events':0,'first':null,'last':null},"
         "{'institution':'" EDF
         "','events':0,'first':null,'last':null},"
         "{'institution':'" NADS
         "','events':2,'first':'2023-11-05','last':'2023-11-06'},"
         "{'institution':'" NCUSCR
         "','events':3,'first':'2019-03-01','last':'2023-02-14'},"
         "{'institution':'" NISCSS
         "','events':1,'first':'2023-06-01','last':'2023-06-01'},"
         "{'institution':'" QUINCY "','events':1,'first':'2023-11-13','last':'2023-11-13'}]}");
  /* "China economic development" (a topic) sorts first under "China" and is skipped. */
  expect(ok(Q(f, "{'op':'institutions','prefix':'China'}")),
         "{'rows':[{'institution':'" GREEN
         "','events':0,'first':null,'last':null},"
         "{'institution':'" HLD
         "','events':1,'first':'2009-10-11','last':'2009-10-11'},"
         "{'institution':'" CWD "','events':0,'first':null,'last':null}]}");
  expect(ok(Q(f, "{'op':'institutions','prefix':'National','limit':2}")),
         "{'rows':["
         "{'institution':'" NADS
         "','events':2,'first':'2023-11-05','last':'2023-11-06'},"
         "{'institution':'" NCUSCR "','events':3,'first':'2019-03-01','last':'2023-02-14'}]}");
  expect(ok(Q(f, "{'op':'institutions','prefix':'Zz'}")), "{'rows':[]}");
  expect(ok(Q(f, "{'op':'institutions','prefix':'" QUINCY "'}")),
         "{'rows':[{'institution':'" QUINCY
         "','events':1,'first':'2023-11-13','last':'2023-11-13'}]}");
}

/* seq values of an events reply, in order, into out; returns the cursor (or NULL). */
static char *event_seqs(json_t *r, uint64_t *out, size_t *n) {
  json_t *rows = json_object_get(r, "rows"), *row, *next = json_object_get(r, "next");
  size_t i;
  json_array_foreach(rows, i, row) out[(*n)++] =
      (uint64_t)json_integer_value(json_object_get(row, "seq"));
  return json_is_string(next) ? strdup(json_string_value(next)) : NULL;
}

static void test_events_sample(void **state) {
  fx_t *f = *state;
  json_t *r, *rows;
  uint64_t seqs[32];
  size_t n = 0;
  char *cur;
  load_sample(f);
  /* The whole store in key order: the dates all differ, so file order; seq counts from 1 in
   * commit order. The stored map keeps the normalised fields first, then the rest as sent. */
  r = ok(Q(f, "{'op':'events'}"));
  rows = json_object_get(r, "rows");
  assert_int_equal(json_array_size(rows), 10);
  assert_true(json_is_null(json_object_get(r, "next")));
  for (size_t i = 0; i < 10; i++)
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, i), "seq")), i + 1);
  expect(json_incref(json_array_get(rows, 9)),
         "{'institution':'" QUINCY
         "','date':'2023-11-13','id':'t2-2023-11-13-quincy-letter',"
         "'counterparts':[],'kind':'letter','format':'virtual','location':'Washington, D.C.',"
         "'country':'US','title':'Open letter from 34 U.S. think tanks and NGOs to the Chinese "
         "and U.S. presidents','participants':34,'topics':['bilateral relations'],'seq':10,"
         "'tag':'track2'}");
  expect(json_incref(json_array_get(rows, 1)),
         "{'institution':'" NCUSCR
         "','date':'2019-03-01','id':'t2-2019-03-digital',"
         "'counterparts':['" GREEN
         "'],'kind':'dialogue','format':'in_person','country':'US',"
         "'title':'Track II mechanism on the digital economy established',"
         "'topics':['digital economy'],'date_precision':'month','seq':2,'tag':'track2'}");
  json_decref(r);
  /* One institution: NCUSCR's lines 2, 3, 4. */
  n = 0;
  r = ok(Q(f, "{'op':'events','institution':'" NCUSCR "'}"));
  assert_null(event_seqs(r, seqs, &n));
  assert_int_equal(n, 3);
  assert_int_equal(seqs[0], 2);
  assert_int_equal(seqs[1], 3);
  assert_int_equal(seqs[2], 4);
  json_decref(r);
  /* A range, both ends inclusive: lines 8, 9. */
  n = 0;
  r = ok(Q(f, "{'op':'events','from':'2023-11-05','to':'2023-11-06'}"));
  assert_null(event_seqs(r, seqs, &n));
  assert_int_equal(n, 2);
  assert_int_equal(seqs[0], 8);
  assert_int_equal(seqs[1], 9);
  json_decref(r);
  /* Pages of 3: 3, 3, 3, 1, each page's next leading to the following one, the last nil. */
  n = 0;
  cur = event_seqs(r = ok(Q(f, "{'op':'events','limit':3}")), seqs, &n);
  json_decref(r);
  for (int page = 1; cur; page++) {
    char *next;
    assert_true(page < 4);
    next = event_seqs(r = ok(Q(f, "{'op':'events','limit':3,'after':'%s'}", cur)), seqs, &n);
    json_decref(r);
    free(cur);
    cur = next;
  }
  assert_int_equal(n, 10);
  for (size_t i = 0; i < 10; i++) assert_int_equal(seqs[i], i + 1);
  /* A page that ends exactly at the last event says so. */
  r = ok(Q(f, "{'op':'events','limit':10}"));
  assert_true(json_is_null(json_object_get(r, "next")));
  json_decref(r);
  r = ok(Q(f, "{'op':'events','limit':9}"));
  assert_true(json_is_string(json_object_get(r, "next")));
  json_decref(r);
  /* Paging one institution with a range. */
  n = 0;
  cur = event_seqs(r = ok(Q(f, "{'op':'events','institution':'" NCUSCR "','limit':1,"
                               "'from':'2022-01-01'}")),
                   seqs, &n);
  json_decref(r);
  assert_non_null(cur);
  free(event_seqs(r = ok(Q(f,
                           "{'op':'events','institution':'" NCUSCR "','limit':1,"
                           "'from':'2022-01-01','after':'%s'}",
                           cur)),
                  seqs, &n));
  json_decref(r);
  free(cur);
  assert_int_equal(n, 2);
  assert_int_equal(seqs[0], 3);
  assert_int_equal(seqs[1], 4);
}

static void test_events_fields(void **state) {
  fx_t *f = *state;
  json_t *r;
  /* A record that carries its own seq and tag gets ours instead, once each. */
  put(f, "{'institution':'S','date':'2021-03-04','seq':'mine','tag':7,'z':[1,{'q':null}]}", NULL);
  r = ok(Q(f, "{'op':'events'}"));
  expect(json_incref(json_object_get(r, "rows")),
         "[{'institution':'S','date':'2021-03-04','z':[1,{'q':null}],'seq':1,'tag':'test'}]");
  json_decref(r);
}

static void test_rejects(void **state) {
  fx_t *f = *state;
  pl_batch_t *b = pl_batch_new();
  json_t *r;
  char *cur;
  assert_int_equal(
      pl_batch_add_reject(b, "institution is missing", "\x81\xa1x\x01", 4, "10.0.0.1:3000", NOW_MS),
      0);
  assert_int_equal(
      pl_batch_add_reject(b, "date must be a string YYYY-MM-DD", "\xc0", 1, "10.0.0.2:3001", 1000),
      0);
  commit(f, b);
  put(f, "{'institution':'','date':'2021-01-01'}", NULL);
  /* received is Unix ms as ISO 8601 UTC with milliseconds. */
  r = ok(Q(f, "{'op':'rejects','limit':1}"));
  cur = strdup(json_string_value(json_object_get(r, "next")));
  json_object_del(r, "next");
  expect(r,
         "{'rows':[{'seq':1,'reason':'institution is missing',"
         "'received':'2026-11-28T19:15:34.123Z','peer':'10.0.0.1:3000','raw':'bin:81a17801'}]}");
  r = ok(Q(f, "{'op':'rejects','after':'%s'}", cur));
  free(cur);
  expect(
      json_incref(json_array_get(json_object_get(r, "rows"), 0)),
      "{'seq':2,'reason':'date must be a string YYYY-MM-DD','received':'1970-01-01T00:00:01.000Z',"
      "'peer':'10.0.0.2:3001','raw':'bin:c0'}");
  assert_int_equal(
      json_integer_value(json_object_get(json_array_get(json_object_get(r, "rows"), 1), "seq")), 3);
  assert_string_equal(
      json_string_value(json_object_get(json_array_get(json_object_get(r, "rows"), 1), "reason")),
      "institution is empty");
  assert_true(json_is_null(json_object_get(r, "next")));
  json_decref(r);
  expect(ok(Q(f, "{'op':'rejects','after':'r0000000000000003'}")), "{'rows':[],'next':null}");
  expect(ok(Q(f, "{'op':'rejects','after':'rffffffffffffffff'}")), "{'rows':[],'next':null}");
}

static void test_late_events(void **state) {
  fx_t *f = *state;
  json_t *r;
  uint64_t seqs[8];
  size_t n = 0;
  /* 2023-11-13 is committed first; 2023-01-05 arrives in a later commit. */
  put(f, "{'institution':'X','date':'2023-11-13','id':1,'topics':['t']}", NULL);
  put(f, "{'institution':'X','date':'2023-01-05','id':2,'participants':7}", NULL);
  /* Windows ending 2023-11-13: 312 days start 2023-01-06 (late event out), 313 days start
   * 2023-01-05 (in). */
  r = ok(Q(f, "{'op':'activity','institution':'X','window':312}"));
  assert_int_equal(json_integer_value(json_object_get(r, "events")), 1);
  assert_int_equal(json_integer_value(json_object_get(r, "previous_events")), 1);
  json_decref(r);
  r = ok(Q(f, "{'op':'activity','institution':'X','window':313}"));
  assert_int_equal(json_integer_value(json_object_get(r, "events")), 2);
  assert_int_equal(json_integer_value(json_object_get(r, "participants")), 7);
  json_decref(r);
  expect(ok(Q(f, "{'op':'activity','institution':'X','as_of':'2023-01-05'}")),
         "{'institution':'X','from':'2022-12-07','to':'2023-01-05','events':1,'participants':7,"
         "'active_days':1,'kinds':{},'formats':{},'topics':{},'counterparts':{},"
         "'previous_events':0,'growth':null}");
  expect(ok(Q(f, "{'op':'series','institution':'X','from':'2023-01-04','to':'2023-01-06'}")),
         "{'from':'2023-01-04','to':'2023-01-06','bucket':'day','rows':["
         "{'period':'2023-01-04','events':0,'participants':0},"
         "{'period':'2023-01-05','events':1,'participants':7},"
         "{'period':'2023-01-06','events':0,'participants':0}]}");
  expect(ok(Q(f, "{'op':'top','window':365}")),
         "{'from':'2022-11-14','to':'2023-11-13','by':'events','rows':["
         "{'institution':'X','value':2}]}");
  /* The late event comes first in key order although its seq is higher. */
  r = ok(Q(f, "{'op':'events'}"));
  assert_null(event_seqs(r, seqs, &n));
  json_decref(r);
  assert_int_equal(n, 2);
  assert_int_equal(seqs[0], 2);
  assert_int_equal(seqs[1], 1);
  /* Another late one on an existing day joins that day: 3 events, still 2 active days. */
  put(f, "{'institution':'X','date':'2023-11-13','id':3}", NULL);
  r = ok(Q(f, "{'op':'activity','institution':'X','window':400}"));
  assert_int_equal(json_integer_value(json_object_get(r, "events")), 3);
  assert_int_equal(json_integer_value(json_object_get(r, "active_days")), 2);
  json_decref(r);
  expect(ok(Q(f, "{'op':'institutions'}")),
         "{'rows':[{'institution':'X','events':3,'first':'2023-01-05','last':'2023-11-13'}]}");
  r = ok(Q(f, "{'op':'stats'}"));
  assert_string_equal(json_string_value(json_object_get(r, "first_date")), "2023-01-05");
  json_decref(r);
}

static void test_empty_store(void **state) {
  fx_t *f = *state;
  /* No events: defaults have no date to stand on, so ranges are null and rows empty. */
  expect(ok(Q(f, "{'op':'top'}")), "{'from':null,'to':null,'by':'events','rows':[]}");
  expect(ok(Q(f, "{'op':'topics'}")), "{'from':null,'to':null,'rows':[]}");
  expect(ok(Q(f, "{'op':'series','bucket':'month'}")),
         "{'from':null,'to':null,'bucket':'month','rows':[]}");
  expect(ok(Q(f, "{'op':'series','from':'2023-01-01'}")),
         "{'from':null,'to':null,'bucket':'day','rows':[]}");
  expect(ok(Q(f, "{'op':'events'}")), "{'rows':[],'next':null,'retained_from':null}");
  expect(ok(Q(f, "{'op':'rejects'}")), "{'rows':[],'next':null}");
  expect(ok(Q(f, "{'op':'institutions'}")), "{'rows':[]}");
  /* Given dates need no default. */
  expect(ok(Q(f, "{'op':'top','as_of':'2023-01-02','window':2}")),
         "{'from':'2023-01-01','to':'2023-01-02','by':'events','rows':[]}");
  expect(ok(Q(f, "{'op':'series','from':'2023-01-01','to':'2023-01-02'}")),
         "{'from':'2023-01-01','to':'2023-01-02','bucket':'day','rows':["
         "{'period':'2023-01-01','events':0,'participants':0},"
         "{'period':'2023-01-02','events':0,'participants':0}]}");
  expect_err(Q(f, "{'op':'activity','institution':'X'}"), "not_found",
             "institution \"X\" not found");
  /* Rejects alone still leave the store without events. */
  put(f, "{'date':'2023-01-01'}", NULL);
  expect(ok(Q(f, "{'op':'topics','limit':3}")), "{'from':null,'to':null,'rows':[]}");
}

static void test_name_order(void **state) {
  fx_t *f = *state;
  json_t *r;
  /* Equal counts go by bytes: a name before any longer name it begins, a space before
   * letters, capitals before lower case, ASCII before the UTF-8 of \u00c4. Names that share
   * their first 8 bytes still compare in full. */
  put(f, "{'institution':'Institute B','date':'2020-01-01'}",
      "{'institution':'\u00c4mter','date':'2020-01-01'}",
      "{'institution':'Al','date':'2020-01-01'}", "{'institution':'Ala','date':'2020-01-01'}",
      "{'institution':'Institute','date':'2020-01-01'}",
      "{'institution':'Al Forum','date':'2020-01-01'}",
      "{'institution':'Institute A','date':'2020-01-01'}",
      "{'institution':'al','date':'2020-01-01'}", NULL);
  expect(ok(Q(f, "{'op':'top','limit':7}")),
         "{'from':'2019-12-03','to':'2020-01-01','by':'events','rows':["
         "{'institution':'Al','value':1},{'institution':'Al Forum','value':1},"
         "{'institution':'Ala','value':1},{'institution':'Institute','value':1},"
         "{'institution':'Institute A','value':1},{'institution':'Institute B','value':1},"
         "{'institution':'al','value':1}]}");
  expect(ok(Q(f, "{'op':'institutions','prefix':'Al'}")),
         "{'rows':[{'institution':'Al','events':1,'first':'2020-01-01','last':'2020-01-01'},"
         "{'institution':'Al Forum','events':1,'first':'2020-01-01','last':'2020-01-01'},"
         "{'institution':'Ala','events':1,'first':'2020-01-01','last':'2020-01-01'}]}");
  r = ok(Q(f, "{'op':'top','limit':8}"));
  assert_string_equal(json_string_value(json_object_get(
                          json_array_get(json_object_get(r, "rows"), 7), "institution")),
                      "\xc3\x84mter");
  json_decref(r);
}

/* Maps and rankings of 64 rows or more are ordered by an integer key built from each id's
 * place in name order (kept per thread, rebuilt when names are added), and smaller maps use
 * those tables once a thread keeps them. Checked against qsort + strcmp on names whose id
 * order differs from their byte order, with many ties, names that begin other names, and
 * non-ASCII bytes; then again after new names arrive. */

/* The k-th name of the ranking tests: shared prefixes, a space, non-ASCII. */
static void order_name(char *out, size_t cap, int k) {
  snprintf(out, cap, k % 7 == 0 ? "\xc3\x84 %02d%s-%d" : "Forum %02d%s%d", (k * 37) % 97,
           k % 3 ? "" : " ", k);
}

typedef struct want_cn {
  char name[40];
  int n;
} want_cn_t;

static int cmp_count_name(const void *x, const void *y) {
  const want_cn_t *a = x, *b = y;
  if (a->n != b->n) return a->n > b->n ? -1 : 1;
  return strcmp(a->name, b->name); /* compares as unsigned char */
}

/* What the ranking tests expect of Hub's counterparts after round: every name, counted
 * 1 + k % 4 times over the month (day 0), or only those it met on day; in answer order.
 * Returns how many. */
static int order_want(want_cn_t *want, int round, int day) {
  int nw = 0;
  for (int k = 0; k < 300 + round * 50; k++) {
    int n = 1 + k % 4;
    if (day) {
      n = 0;
      for (int c = 0; c < 1 + k % 4; c++) n += 1 + (k * 3 + c) % 30 == day;
      if (!n) continue;
    }
    order_name(want[nw].name, sizeof(want[nw].name), k);
    want[nw++].n = n;
  }
  qsort(want, (size_t)nw, sizeof(want[0]), cmp_count_name);
  return nw;
}

/* Runs an activity request for Hub and checks its counterparts against want, in order. */
static void expect_counterparts(fx_t *f, const char *req, const want_cn_t *want, int nw) {
  json_t *r = ok(Q(f, "%s", req)), *cps = json_object_get(r, "counterparts"), *val;
  const char *key;
  int i = 0;
  assert_int_equal(json_object_size(cps), nw);
  json_object_foreach(cps, key, val) {
    assert_string_equal(key, want[i].name);
    assert_int_equal(json_integer_value(val), want[i].n);
    i++;
  }
  json_decref(r);
}

static void check_order(fx_t *f, int round) {
  want_cn_t want[400];
  int nw = order_want(want, round, 0);
  json_t *r, *rows;
  expect_counterparts(f, "{'op':'activity','institution':'Hub','window':30,'as_of':'2020-01-30'}",
                      want, nw);
  /* One day of Hub's counterparts: a few dozen rows, mostly tied at 1, which are ordered
   * through the name tables the query above left on this thread. */
  {
    want_cn_t day[400];
    int nd = order_want(day, round, 7);
    assert_true(nd > 8 && nd < 64);
    expect_counterparts(f, "{'op':'activity','institution':'Hub','window':1,'as_of':'2020-01-07'}",
                        day, nd);
  }
  r = ok(Q(f, "{'op':'top','window':30,'as_of':'2020-01-30','limit':1000}"));
  rows = json_object_get(r, "rows");
  /* Hub reports 10 events a day over 30 days; every other institution one event a count */
  assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "institution")),
                      "Hub");
  for (int i = 0; i < nw; i++) {
    json_t *row = json_array_get(rows, (size_t)i + 1);
    assert_string_equal(json_string_value(json_object_get(row, "institution")), want[i].name);
    assert_int_equal(json_integer_value(json_object_get(row, "value")), want[i].n);
  }
  json_decref(r);
}

static void add_round(fx_t *f, int round) {
  pl_batch_t *b = pl_batch_new();
  char rec[512];
  /* the names, each reporting and named by Hub as often as its count */
  for (int k = round ? 300 + (round - 1) * 50 : 0; k < 300 + round * 50; k++) {
    char name[40];
    order_name(name, sizeof(name), k);
    for (int c = 0; c < 1 + k % 4; c++) {
      snprintf(rec, sizeof(rec), "{\"institution\":\"%s\",\"date\":\"2020-01-%02d\"}", name,
               1 + (k + c) % 30);
      assert_true(add_json(b, rec, "t"));
      snprintf(rec, sizeof(rec),
               "{\"institution\":\"Hub\",\"date\":\"2020-01-%02d\",\"counterparts\":[\"%s\"]}",
               1 + (k * 3 + c) % 30, name);
      assert_true(add_json(b, rec, "t"));
    }
  }
  commit(f, b);
}

static void test_rank_order_large(void **state) {
  fx_t *f = *state;
  pl_batch_t *b = pl_batch_new();
  char rec[200];
  /* Hub first, so its id is lowest; it leads top with 300+ events */
  for (int d = 1; d <= 30; d++)
    for (int e = 0; e < 20; e++) {
      snprintf(rec, sizeof(rec), "{\"institution\":\"Hub\",\"date\":\"2020-01-%02d\"}", d);
      assert_true(add_json(b, rec, "t"));
    }
  commit(f, b);
  add_round(f, 0);
  assert_int_equal(pl_store_refresh(f->s), 0);
  check_order(f, 0);
  check_order(f, 0); /* the kept table */
  add_round(f, 1);   /* new names: the table is rebuilt */
  check_order(f, 1);
}

/* A map of a quarter or more of a small dictionary is read in name order and then sorted
 * by count alone. Hub's 80 counterparts are most of the names, with ties at every count:
 * names 0..69 met on day 5 or 6 (some also on day 1), names 70..79 on day 1 only. Windows:
 * a week (radix passes), day 5 (under 32 rows: an insertion sort), day 6, and January
 * less its first day, read as the month minus day 1, which leaves names 70..79 at zero:
 * they must not be in the answer. */
static int small_count(int k, int lo, int hi) {
  int day = k % 3 == 0 ? 5 : 6, n = 0;
  if (k < 70 && day >= lo && day <= hi) n += 1 + k % 4;
  if ((k >= 70 || k % 5 == 0) && lo <= 1) n++;
  return n;
}

static void test_rank_order_small(void **state) {
  static const struct {
    const char *req;
    int lo, hi;
  } w[] = {{"{'op':'activity','institution':'Hub','window':7,'as_of':'2020-01-07'}", 1, 7},
           {"{'op':'activity','institution':'Hub','window':1,'as_of':'2020-01-05'}", 5, 5},
           {"{'op':'activity','institution':'Hub','window':1,'as_of':'2020-01-06'}", 6, 6},
           {"{'op':'activity','institution':'Hub','window':30,'as_of':'2020-01-31'}", 2, 31}};
  fx_t *f = *state;
  pl_batch_t *b = pl_batch_new();
  char rec[200];
  for (int k = 0; k < 80; k++) {
    char name[40];
    order_name(name, sizeof(name), k);
    snprintf(rec, sizeof(rec), "{\"institution\":\"%s\",\"date\":\"2020-01-01\"}", name);
    assert_true(add_json(b, rec, "t"));
    for (int day = 1; day <= 6; day++)
      for (int c = small_count(k, day, day); c > 0; c--) {
        snprintf(rec, sizeof(rec),
                 "{\"institution\":\"Hub\",\"date\":\"2020-01-%02d\",\"counterparts\":[\"%s\"]}",
                 day, name);
        assert_true(add_json(b, rec, "t"));
      }
  }
  /* another month, so that January is a whole month row */
  assert_true(add_json(b, "{\"institution\":\"Hub\",\"date\":\"2020-02-01\"}", "t"));
  commit(f, b);
  assert_int_equal(pl_store_refresh(f->s), 0); /* the month rows, folded */
  for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
    want_cn_t want[80];
    int nw = 0;
    for (int k = 0; k < 80; k++) {
      int n = small_count(k, w[i].lo, w[i].hi);
      if (!n) continue;
      order_name(want[nw].name, sizeof(want[nw].name), k);
      want[nw++].n = n;
    }
    qsort(want, (size_t)nw, sizeof(want[0]), cmp_count_name);
    if (i == 1) assert_true(nw < 32);
    if (i == 3) assert_int_equal(nw, 70);
    expect_counterparts(f, w[i].req, want, nw);
  }
}

/* A kept merge of whole months answers only while the rows are the ones it was made from:
 * a late event that changes an old month's row without changing its size (a count 1 -> 2)
 * must show in the next answer. */
static void test_month_runs_follow_rows(void **state) {
  fx_t *f = *state;
  pl_batch_t *b = pl_batch_new();
  char rec[200];
  json_t *r;
  for (int m = 1; m <= 12; m++) {
    snprintf(rec, sizeof(rec),
             "{\"institution\":\"X\",\"date\":\"2019-%02d-10\",\"counterparts\":[\"Y\"],"
             "\"kind\":\"visit\"}", m);
    assert_true(add_json(b, rec, "t"));
  }
  commit(f, b);
  assert_int_equal(pl_store_refresh(f->s), 0);
  /* 2019-01-16..2020-01-15: Jan's tail, Feb..Dec whole, Jan 2020's head */
  for (int round = 0; round < 3; round++) {
    r = ok(Q(f, "{'op':'activity','institution':'X','window':365,'as_of':'2020-01-15'}"));
    assert_int_equal(json_integer_value(json_object_get(r, "events")), 11 + round);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r, "counterparts"), "Y")), 11 + round);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "kinds"), "visit")),
                     11 + round);
    json_decref(r);
    r = ok(Q(f, "{'op':'activity','institution':'X','window':365,'as_of':'2020-01-15'}"));
    assert_int_equal(json_integer_value(json_object_get(r, "events")), 11 + round); /* kept */
    json_decref(r);
    /* one more event in June (round 0) and in September (round 1), folded */
    b = pl_batch_new();
    snprintf(rec, sizeof(rec),
             "{\"institution\":\"X\",\"date\":\"2019-%s-20\",\"counterparts\":[\"Y\"],"
             "\"kind\":\"visit\"}", round ? "09" : "06");
    assert_true(add_json(b, rec, "t"));
    commit(f, b);
    assert_int_equal(pl_store_refresh(f->s), 0);
  }
}

/* Every width a map entry's name and count can take in a reply (fixstr, str8, str16;
 * positive fixint, uint8, uint16, uint32, uint64), read back through msgpack-c. */
static void test_reply_widths(void **state) {
  fx_t *f = *state;
  pl_batch_t *b = pl_batch_new();
  char rec[600], long_name[257];
  json_t *r, *c;
  memset(long_name, 'L', 256);
  long_name[256] = 0;
  /* A and B meet with participants per country summing to each uint width */
  static const struct {
    const char *country;
    uint64_t each;
    int n;
  } parts[] = {{"AA", 5, 1},      {"BB", 200, 1},      {"CC", 1000, 1},
               {"DD", 100000, 1}, {"EE", 1000000, 5000}};
  for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
    for (int k = 0; k < parts[i].n; k++) {
      snprintf(rec, sizeof(rec),
               "{\"institution\":\"A\",\"date\":\"2020-01-01\",\"counterparts\":[\"B\"],"
               "\"country\":\"%s\",\"participants\":%llu}",
               parts[i].country, (unsigned long long)parts[i].each);
      assert_true(add_json(b, rec, "t"));
    }
  /* and C's counterparts: names of 1, 40 and 256 bytes, counted 300 and 70,000 times */
  for (int k = 0; k < 300; k++) {
    snprintf(rec, sizeof(rec),
             "{\"institution\":\"C\",\"date\":\"2020-01-02\",\"kind\":\"visit\","
             "\"counterparts\":[\"x\",\"%s\",\"%s\"]}",
             "A forty byte counterpart name, 1234567890", long_name);
    assert_true(add_json(b, rec, "t"));
  }
  for (int k = 0; k < 70000; k++) {
    snprintf(rec, sizeof(rec),
             "{\"institution\":\"C\",\"date\":\"2020-01-03\",\"counterparts\":\"x\"}");
    assert_true(add_json(b, rec, "t"));
  }
  /* and Many, with 70 counterparts: its activity makes this thread keep the name tables,
   * which then cannot order EE's count (past 32 bits) and leave it to the other path */
  for (int k0 = 0; k0 < 70; k0 += 35) {
    int len = snprintf(rec, sizeof(rec),
                       "{\"institution\":\"Many\",\"date\":\"2020-01-04\",\"counterparts\":[");
    for (int k = k0; k < k0 + 35; k++)
      len += snprintf(rec + len, sizeof(rec) - (size_t)len, "%s\"n%02d\"", k > k0 ? "," : "", k);
    snprintf(rec + len, sizeof(rec) - (size_t)len, "]}");
    assert_true(add_json(b, rec, "t"));
  }
  commit(f, b);
  r = ok(Q(f, "{'op':'activity','institution':'Many','window':30,'as_of':'2020-01-31'}"));
  assert_int_equal(json_object_size(json_object_get(r, "counterparts")), 70);
  json_decref(r);
  r = ok(Q(f, "{'op':'pair','a':'A','b':'B'}"));
  c = json_object_get(r, "participants_by_country");
  assert_int_equal(json_integer_value(json_object_get(c, "AA")), 5);
  assert_int_equal(json_integer_value(json_object_get(c, "BB")), 200);
  assert_int_equal(json_integer_value(json_object_get(c, "CC")), 1000);
  assert_int_equal(json_integer_value(json_object_get(c, "DD")), 100000);
  assert_int_equal(json_integer_value(json_object_get(c, "EE")), 5000000000ll);
  json_decref(r);
  r = ok(Q(f, "{'op':'activity','institution':'C','window':30}"));
  c = json_object_get(r, "counterparts");
  assert_int_equal(json_object_size(c), 3);
  assert_int_equal(json_integer_value(json_object_get(c, "x")), 70300);
  assert_int_equal(json_integer_value(json_object_get(c, long_name)), 300);
  assert_int_equal(
      json_integer_value(json_object_get(c, "A forty byte counterpart name, 1234567890")), 300);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "kinds"), "visit")),
                   300);
  json_decref(r);
}

/* The kept name tables belong to one store: two stores whose dictionaries have the same
 * size (same next id) but other names, asked on one thread, each answer with their own. */
static void test_rank_order_two_stores(void **state) {
  fx_t *a = *state, *b = fx_open(0);
  char rec[100];
  assert_non_null(b);
  for (int k = 0; k < 2; k++) {
    fx_t *f = k ? b : a;
    pl_batch_t *batch = pl_batch_new();
    for (int i = 0; i < 70; i++) {
      snprintf(rec, sizeof(rec), "{\"institution\":\"%c%02d\",\"date\":\"2020-01-01\"}",
               k ? 'B' : 'A', i);
      assert_true(add_json(batch, rec, "t"));
    }
    commit(f, batch);
  }
  for (int round = 0; round < 2; round++)
    for (int k = 0; k < 2; k++) {
      json_t *r = ok(Q(k ? b : a, "{'op':'top','limit':100}"));
      json_t *rows = json_object_get(r, "rows");
      char want[4];
      assert_int_equal(json_array_size(rows), 70);
      snprintf(want, sizeof(want), "%c00", k ? 'B' : 'A');
      assert_string_equal(
          json_string_value(json_object_get(json_array_get(rows, 0), "institution")), want);
      json_decref(r);
    }
  teardown((void **)&b);
}

static json_t *Qraw(fx_t *f, int n, ...) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_unpacked u;
  size_t off = 0;
  json_t *reply;
  va_list ap;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, (size_t)n);
  va_start(ap, n);
  for (int i = 0; i < n; i++) {
    const char *k = va_arg(ap, const char *), *v = va_arg(ap, const char *);
    if (k)
      msgpack_pack_str_with_body(&pk, k, strlen(k));
    else
      msgpack_pack_uint8(&pk, 1);
    msgpack_pack_str_with_body(&pk, v, strlen(v));
  }
  va_end(ap);
  msgpack_unpacked_init(&u);
  assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
  reply = Qobj(f, &u.data);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
  return reply;
}

static void test_errors(void **state) {
  fx_t *f = *state;
  static const char *const windowed[] = {"activity','institution':'" NADS, "top", "topics"};
  static const char *const bad_ints[] = {"0",  "36526", "'abc'", "-1",   "1.5",
                                         "''", "'1e3'", "'+5'",  "[30]", "true"};
  static const char *const bad_dates[] = {"'2023-13-01'", "'2023-02-29'", "'1899-12-31'",
                                          "'2200-01-01'", "20230101",     "'2023-1-01'",
                                          "'2023-01-01 '"};
  json_t *r;
  load_sample(f);
  /* The shape of a request. */
  r = Q(f, "[1,2]");
  assert_true(json_is_null(json_object_get(r, "req")));
  expect_err(r, "bad_request", "a request must be a map");
  r = Q(f, "{'req':5}");
  assert_int_equal(json_integer_value(json_object_get(r, "req")), 5);
  expect_err(r, "bad_request", "the request has no op");
  expect_err(Q(f, "{'op':3}"), "bad_request", "op must be a string");
  r = Q(f, "{'op':'nope','req':'x'}");
  assert_string_equal(json_string_value(json_object_get(r, "req")), "x");
  expect_err(r, "unknown_op", "unknown op \"nope\"");
  expect_err(Q(f, "{'op':'top','limit':5,'window':30,'foo':1}"), "bad_request",
             "unknown argument \"foo\" for op top");
  expect_err(Q(f, "{'op':'ping','window':1}"), "bad_request",
             "unknown argument \"window\" for op ping");
  expect_err(Qraw(f, 3, "op", "top", "limit", "1", "limit", "2"), "bad_request",
             "argument \"limit\" is given twice");
  expect_err(Qraw(f, 2, "op", "top", NULL, "x"), "bad_request", "argument names must be strings");
  expect_err(Qraw(f, 1, "op", "top\n\"\xff"), "unknown_op", "unknown op \"top\\x0a\\x22\\xff\"");
  /* The reply echoes req whatever its type, ok or not. */
  r = Q(f, "{'op':'ping','req':{'a':[1,null]}}");
  expect(json_incref(json_object_get(r, "req")), "{'a':[1,null]}");
  json_decref(r);
  /* Integers: a positive int or a decimal string, in 1..max. nil means the default. */
  for (size_t i = 0; i < sizeof(windowed) / sizeof(windowed[0]); i++) {
    for (size_t j = 0; j < sizeof(bad_ints) / sizeof(bad_ints[0]); j++)
      expect_err(Q(f, "{'op':'%s','window':%s}", windowed[i], bad_ints[j]), "bad_request",
                 "window must be an integer 1..36525");
    for (size_t j = 0; j < sizeof(bad_dates) / sizeof(bad_dates[0]); j++)
      expect_err(Q(f, "{'op':'%s','as_of':%s}", windowed[i], bad_dates[j]), "bad_request",
                 "as_of must be a date YYYY-MM-DD between 1900-01-01 and 2199-12-31");
    json_decref(ok(Q(f, "{'op':'%s','window':'36525','as_of':null}", windowed[i])));
  }
  expect_err(Q(f, "{'op':'series','to':'2023-02-30'}"), "bad_request",
             "to must be a date YYYY-MM-DD between 1900-01-01 and 2199-12-31");
  expect_err(Q(f, "{'op':'events','from':1}"), "bad_request",
             "from must be a date YYYY-MM-DD between 1900-01-01 and 2199-12-31");
  expect_err(Q(f, "{'op':'top','limit':0}"), "bad_request", "limit must be an integer 1..1000");
  expect_err(Q(f, "{'op':'top','limit':5000}"), "too_large", "limit 5000 is above 1000");
  expect_err(Q(f, "{'op':'top','limit':'5000'}"), "too_large", "limit 5000 is above 1000");
  expect_err(Q(f, "{'op':'topics','limit':1001}"), "too_large", "limit 1001 is above 1000");
  expect_err(Q(f, "{'op':'institutions','limit':1001}"), "too_large", "limit 1001 is above 1000");
  expect_err(Q(f, "{'op':'events','limit':10001}"), "too_large", "limit 10001 is above 10000");
  expect_err(Q(f, "{'op':'rejects','limit':'99999999999999999999999'}"), "too_large",
             "limit 99999999999999999999... is above 10000");
  json_decref(ok(Q(f, "{'op':'events','limit':10000}")));
  json_decref(ok(Q(f, "{'op':'top','limit':1000}")));
  /* Ranges. */
  expect_err(Q(f, "{'op':'series','from':'2023-02-01','to':'2023-01-01'}"), "bad_request",
             "from 2023-02-01 is after to 2023-01-01");
  expect_err(Q(f, "{'op':'events','from':'2030-01-01'}"), "bad_request",
             "from 2030-01-01 is after to 2023-11-13 (the latest event date)");
  expect_err(Q(f, "{'op':'pair','a':'" NADS "','b':'" EDF "','to':'2000-01-01'}"), "bad_request",
             "from 2009-10-11 (the first event date) is after to 2000-01-01");
  /* Choices. */
  expect_err(Q(f, "{'op':'top','by':'x'}"), "bad_request",
             "by must be one of events, participants, counterparts");
  expect_err(Q(f, "{'op':'series','bucket':'hour'}"), "bad_request",
             "bucket must be one of day, week, month, year");
  expect_err(Q(f, "{'op':'series','bucket':7}"), "bad_request", "bucket must be a string");
  expect_err(Q(f, "{'op':'pair','a':'" NADS "','b':'" EDF "','period':'week'}"), "bad_request",
             "period must be one of year, month");
  expect_err(Q(f, "{'op':'top','kind':['visit']}"), "bad_request", "kind must be a string");
  /* Institutions. */
  expect_err(Q(f, "{'op':'activity'}"), "bad_request", "institution is required");
  expect_err(Q(f, "{'op':'activity','institution':5}"), "bad_request",
             "institution must be a string");
  expect_err(Q(f, "{'op':'activity','institution':' \\t'}"), "bad_request",
             "institution must not be empty");
  expect_err(Q(f, "{'op':'pair','a':'" NADS "'}"), "bad_request", "pair needs both a and b");
  expect_err(Q(f, "{'op':'pair','a':'" NADS "','b':' " NADS "'}"), "bad_request",
             "a and b must be different institutions");
  expect_err(Q(f, "{'op':'activity','institution':'Nobody'}"), "not_found",
             "institution \"Nobody\" not found");
  expect_err(Q(f, "{'op':'series','institution':'Nobody'}"), "not_found",
             "institution \"Nobody\" not found");
  expect_err(Q(f, "{'op':'pair','a':'" NADS "','b':'Nobody'}"), "not_found",
             "institution \"Nobody\" not found");
  expect_err(Q(f, "{'op':'pair','a':'Nobody','b':'" NADS "'}"), "not_found",
             "institution \"Nobody\" not found");
  expect_err(Q(f, "{'op':'events','institution':'Nobody'}"), "not_found",
             "institution \"Nobody\" not found");
  /* A vocabulary word is in the dictionary but is no institution. */
  expect_err(Q(f, "{'op':'activity','institution':'dialogue'}"), "not_found",
             "institution \"dialogue\" not found");
  expect_err(Qraw(f, 2, "op", "activity", "institution", "A\"B\nC\xff\xe2\x82\xac"), "not_found",
             "institution \"A\\x22B\\x0aC\\xff\xe2\x82\xac\" not found");
  r = Q(f, "{'op':'activity','institution':'%0300d'}", 7);
  assert_true(strlen(json_string_value(json_object_get(json_object_get(r, "error"), "message"))) <
              120);
  expect_err(r, "not_found", NULL);
  /* Cursors. */
  expect_err(Q(f, "{'op':'events','after':'xyz'}"), "bad_request",
             "after must be a cursor from a previous events reply");
  expect_err(Q(f, "{'op':'events','after':'e000000000000000000000000000000g'}"), "bad_request",
             "after must be a cursor from a previous events reply");
  expect_err(Q(f, "{'op':'events','after':5}"), "bad_request",
             "after must be a cursor from a previous events reply");
  expect_err(Q(f, "{'op':'rejects','after':'e0000000000000000000000000000000'}"), "bad_request",
             "after must be a cursor from a previous rejects reply");
}

static void test_unavailable(void **state) {
  fx_t *f = fx_open(1);
  pl_rtxn_t *held[4096];
  size_t n = 0;
  (void)state;
  assert_non_null(f);
  load_sample(f);
  /* LMDB rounds the reader table up to fill its lock pages: take every slot there is. */
  while (n < 4096 && pl_store_read_begin(f->s, &held[n]) == 0) n++;
  assert_true(n < 4096);
  expect_err(Q(f, "{'op':'stats'}"), "unavailable", NULL);
  expect(ok(Q(f, "{'op':'ping'}")), "{'pong':true,'version':'test-1.0'}");
  pl_store_read_end(held[--n]);
  json_decref(ok(Q(f, "{'op':'stats'}")));
  while (n) pl_store_read_end(held[--n]);
  teardown((void **)&f);
}

static void test_internal(void **state) {
  fx_t *f = *state;
  pl_batch_t *b = pl_batch_new();
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_unpacked u;
  pl_record_t rec;
  size_t off = 0;
  json_t *j = json_loads("{\"institution\":\"C\",\"date\":\"2020-01-01\"}", 0, NULL);
  /* A valid record whose stored value is not: the aggregates are fine, the row is not. */
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  pack_json(&pk, j);
  json_decref(j);
  msgpack_unpacked_init(&u);
  assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
  assert_int_equal(pl_record_parse(&rec, &u.data, 0, NULL, 0), 0);
  assert_int_equal(pl_batch_add_record(b, &rec, "\xc1", 1), 0);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
  commit(f, b);
  json_decref(ok(Q(f, "{'op':'activity','institution':'C'}")));
  expect_err(Q(f, "{'op':'events'}"), "internal", "cannot read the store: stored data is corrupt");
  /* Two filters that exist (the name C is in the dictionary) make top scan the events. */
  expect_err(Q(f, "{'op':'top','kind':'C','topic':'C'}"), "internal", NULL);
  /* pl_query_pack_error for frames that never decoded. */
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  assert_int_equal(pl_query_pack_error(&pk, NULL, PL_QERR_TOO_LARGE, "request too large"), 0);
  msgpack_unpacked_init(&u);
  off = 0;
  assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
  expect(mp_json(&u.data),
         "{'req':null,'ok':false,'error':{'code':'too_large','message':'request too large'}}");
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
  assert_string_equal(pl_query_errcode(PL_QERR_UNAVAILABLE), "unavailable");
  assert_string_equal(pl_query_errcode(PL_QERR_INTERNAL), "internal");
}

static void test_op_name(void **state) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_unpacked u;
  size_t off = 0;
  pl_str_t s;
  (void)state;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 1);
  msgpack_pack_str_with_body(&pk, "op", 2);
  msgpack_pack_str_with_body(&pk, "series", 6);
  msgpack_pack_array(&pk, 0);
  msgpack_unpacked_init(&u);
  assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
  s = pl_query_op_name(&u.data);
  assert_true(pl_str_eq(s, "series"));
  assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
  assert_int_equal(pl_query_op_name(&u.data).n, 0);
  assert_int_equal(pl_query_op_name(NULL).n, 0);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
}

/* The store's figures light() passes. */
static pl_store_info_t g_light;

/* Whether a request text (JSON, ' for ") is light, for a store with the figures g_light. */
static int light(const char *text) {
  char *t = dq(text);
  json_error_t err;
  json_t *j = json_loads(t, JSON_DECODE_ANY, &err);
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_unpacked u;
  size_t off = 0;
  int r;
  free(t);
  assert_non_null(j);
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  pack_json(&pk, j);
  msgpack_unpacked_init(&u);
  assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
  r = pl_query_is_light(&u.data, &g_light);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
  json_decref(j);
  return r;
}

/* Bounded requests only: the query thread runs these itself. */
static void test_is_light(void **state) {
  (void)state;
  assert_true(light("{'op':'ping'}"));
  assert_true(light("{'op':'stats','req':1}"));
  assert_true(light("{'op':'activity','institution':'A'}"));
  assert_true(light("{'op':'activity','institution':'A','window':null}"));
  assert_true(light("{'op':'activity','institution':'A','window':365}"));
  assert_true(light("{'op':'activity','institution':'A','window':'400'}"));
  assert_false(light("{'op':'activity','institution':'A','window':401}"));
  assert_false(light("{'op':'activity','institution':'A','window':'36525'}"));
  assert_false(light("{'op':'activity','institution':'A','window':'3x'}"));
  assert_false(light("{'op':'activity','institution':'A','window':-1}"));
  assert_false(light("{'op':'top'}"));
  assert_false(light("{'op':'events','limit':1}"));
  assert_false(light("{'op':'series','institution':'A'}"));
  assert_true(light("{'op':'series','institution':'A','from':'2020-01-01','to':'2020-12-31'}"));
  assert_true(light("{'op':'series','from':'2020-01-01','to':'2020-01-01','bucket':'week','kind':'visit'}"));
  assert_false(light("{'op':'series','from':'2020-01-01','to':'2021-02-04'}"));
  assert_false(light("{'op':'series','from':'2020-01-02','to':'2020-01-01'}"));
  assert_false(light("{'op':'series','from':'2020-01-01'}"));
  assert_false(light("{'op':'series','from':'2020-01-01','to':'2020-13-01'}"));
  assert_false(light("{'op':'series','from':'2020-01-01','to':'2020-02-01','kind':'visit','topic':'x'}"));
  /* pair: its range, from the store's days where not given, up to 20 years */
  g_light.first_day = pl_date_from_ymd(2014, 7, 8); /* as in the bench's store */
  g_light.last_day = pl_date_from_ymd(2024, 12, 13);
  assert_true(light("{'op':'pair','a':'A','b':'B'}"));
  /* months read from their day rows: a couple, as under live ingest, but not more */
  g_light.stale_months = PL_QUERY_LIGHT_PAIR_STALE;
  assert_true(light("{'op':'pair','a':'A','b':'B'}"));
  g_light.stale_months = PL_QUERY_LIGHT_PAIR_STALE + 1;
  assert_false(light("{'op':'pair','a':'A','b':'B'}"));
  assert_false(light("{'op':'pair','a':'A','b':'B','from':'2020-01-01','to':'2020-01-31'}"));
  g_light.stale_months = 0;
  assert_true(light("{'op':'pair','a':'A','b':'B','from':null,'to':'2030-01-01'}"));
  assert_true(light("{'op':'pair','a':'A','b':'B','from':'1990-01-01','to':'2009-12-31'}"));
  assert_false(light("{'op':'pair','a':'A','b':'B','from':'1990-01-01','to':'2010-01-01'}"));
  assert_false(light("{'op':'pair','a':'A','b':'B','from':'1990-01-01'}"));
  assert_false(light("{'op':'pair','a':'A','b':'B','to':'2034-07-08'}"));
  assert_true(light("{'op':'pair','a':'A','b':'B','to':'2034-07-07'}"));
  assert_false(light("{'op':'pair','a':'A','b':'B','from':'2020-01-02','to':'2020-01-01'}"));
  assert_false(light("{'op':'pair','a':'A','b':'B','from':'2020-13-01'}"));
  assert_false(light("{'op':'pair','a':'A','b':'B','from':7}"));
  g_light.first_day = pl_date_from_ymd(1990, 1, 1); /* a store of 35 years */
  assert_false(light("{'op':'pair','a':'A','b':'B'}"));
  assert_true(light("{'op':'pair','a':'A','b':'B','from':'2020-01-01'}"));
  g_light.first_day = g_light.last_day = PL_AGG_NO_DAY; /* an empty store */
  assert_true(light("{'op':'pair','a':'A','b':'B'}"));
  assert_false(light("{'op':'pair','a':'A','b':'B','from':'2020-01-01'}"));
  assert_true(light("{'op':'pair','a':'A','b':'B','from':'2020-01-01','to':'2020-12-31'}"));
  assert_false(light("{'op':'nope'}"));
  assert_false(light("['ping']"));
  assert_false(light("{}"));
}

/* ====================================================================================
 * Generated data against a model. Records come from a seeded PRNG: institutions drawn
 * with a Zipf-like skew, 1-5 topics that always include "trade" (so a topic filter on it
 * must change nothing), 1-3 counterparts, optional fields sometimes absent, dates mostly
 * rising with some late ones, exact re-sends (duplicates when they carry an id) and ids
 * reused on other dates (not duplicates). The model answers each op by looping over the
 * records; it shares no code with query.c beyond date formatting.
 * ==================================================================================== */

#define G_REP 40   /* names that may report */
#define G_NAMES 48 /* plus 8 only ever named as counterparts */
#define G_TOPICS 12

static const char *const g_kinds[] = {"dialogue", "visit", "seminar", "roundtable", "letter"};
static const char *const g_formats[] = {"in_person", "virtual", "hybrid"};
static const char *const g_countries[] = {"CN", "US", "SG"};
static const char *const g_topics[G_TOPICS] = {"trade",     "climate", "health", "security",
                                               "finance",   "energy",  "data",   "culture",
                                               "education", "ocean",   "space",  "food"};
static const char *const g_bys[] = {"events", "participants", "counterparts"};
static const char *const g_buckets[] = {"day", "week", "month", "year"};
static char g_name[G_NAMES][32];

typedef struct grec {
  int inst;
  uint32_t day;
  int kind, format, country; /* -1: absent */
  int64_t parts;             /* -1: absent */
  int ntopics, topics[5];
  int ncps, cps[3];
  char id[16]; /* "": none */
  int stored;  /* no earlier stored record has the same (date, id) */
  uint64_t seq;
} grec_t;

typedef struct gen {
  grec_t *r;
  size_t n, total;
  uint64_t rng, next_seq;
  uint32_t day0, days;
} gen_t;

static uint64_t rnd(gen_t *g) { return tu_rand(&g->rng); }

static void gen_init(gen_t *g, uint64_t seed, size_t total) {
  static const char *const w[] = {"Atlas", "Beacon", "Cedar",   "Delta",
                                  "Ember", "Falcon", "Granite", "Harbor"};
  memset(g, 0, sizeof(*g));
  g->rng = seed;
  g->total = total;
  g->next_seq = 1;
  g->day0 = D("2020-01-01");
  g->days = 1096; /* to 2022-12-31 */
  /* Name order differs from index (and dictionary) order, so ties really go by name. */
  for (int i = 0; i < G_NAMES; i++)
    snprintf(g_name[i], sizeof(g_name[i]), "%s Forum %02d", w[(i * 5) % 8], (i * 17) % 97);
}

static int has(const int *v, int n, int x) {
  for (int i = 0; i < n; i++)
    if (v[i] == x) return 1;
  return 0;
}

static void gen_more(gen_t *g, size_t count) {
  g->r = realloc(g->r, (g->n + count) * sizeof(*g->r));
  for (size_t k = 0; k < count; k++, g->n++) {
    grec_t *r = &g->r[g->n];
    size_t i = g->n;
    if (i > 20 && rnd(g) % 100 < 3) {
      *r = g->r[rnd(g) % i];
    } else {
      double z = (double)(rnd(g) % 1000000) / 1e6;
      uint32_t off =
          i < g->total ? (uint32_t)(i * g->days / g->total) : (uint32_t)(rnd(g) % g->days);
      off += (uint32_t)(rnd(g) % 5);
      if (rnd(g) % 100 < 6) off = (uint32_t)(rnd(g) % (off + 1));
      if (off >= g->days) off = g->days - 1;
      memset(r, 0, sizeof(*r));
      r->inst = (int)(G_REP * z * z * z);
      r->day = g->day0 + off;
      r->kind = rnd(g) % 100 < 5 ? -1 : (int)(rnd(g) % 5);
      r->format = rnd(g) % 100 < 10 ? -1 : (int)(rnd(g) % 3);
      r->country = rnd(g) % 100 < 10 ? -1 : (int)(rnd(g) % 3);
      r->parts = rnd(g) % 100 < 30 ? -1 : (int64_t)(rnd(g) % 500);
      r->ntopics = 1 + (int)(rnd(g) % 5);
      r->topics[0] = 0;
      for (int t = 1; t < r->ntopics;) {
        int x = 1 + (int)(rnd(g) % (G_TOPICS - 1));
        if (!has(r->topics, t, x)) r->topics[t++] = x;
      }
      {
        int j = (int)(rnd(g) % (uint64_t)r->ntopics), tmp = r->topics[0];
        r->topics[0] = r->topics[j];
        r->topics[j] = tmp;
      }
      r->ncps = 1 + (int)(rnd(g) % 3);
      for (int c = 0; c < r->ncps;) {
        int x = (int)(rnd(g) % G_NAMES);
        if (x != r->inst && !has(r->cps, c, x)) r->cps[c++] = x;
      }
      if (rnd(g) % 100 < 10)
        r->id[0] = '\0';
      else if (i > 20 && rnd(g) % 100 < 2)
        memcpy(r->id, g->r[rnd(g) % i].id, sizeof(r->id));
      else
        snprintf(r->id, sizeof(r->id), "g%zu", i);
    }
    r->stored = 1;
    for (size_t j = 0; j < i && r->id[0] && r->stored; j++)
      if (g->r[j].stored && g->r[j].day == r->day && strcmp(g->r[j].id, r->id) == 0) r->stored = 0;
    r->seq = r->stored ? g->next_seq++ : 0;
  }
}

static void gen_pack(msgpack_packer *pk, const grec_t *r) {
  char date[11];
  size_t n =
      4 + (r->id[0] != 0) + (r->kind >= 0) + (r->format >= 0) + (r->country >= 0) + (r->parts >= 0);
  pl_date_format(r->day, date);
  msgpack_pack_map(pk, n);
  msgpack_pack_str_with_body(pk, "institution", 11);
  msgpack_pack_str_with_body(pk, g_name[r->inst], strlen(g_name[r->inst]));
  msgpack_pack_str_with_body(pk, "date", 4);
  msgpack_pack_str_with_body(pk, date, 10);
  if (r->id[0]) {
    msgpack_pack_str_with_body(pk, "id", 2);
    msgpack_pack_str_with_body(pk, r->id, strlen(r->id));
  }
  if (r->kind >= 0) {
    msgpack_pack_str_with_body(pk, "kind", 4);
    msgpack_pack_str_with_body(pk, g_kinds[r->kind], strlen(g_kinds[r->kind]));
  }
  if (r->format >= 0) {
    msgpack_pack_str_with_body(pk, "format", 6);
    msgpack_pack_str_with_body(pk, g_formats[r->format], strlen(g_formats[r->format]));
  }
  if (r->country >= 0) {
    msgpack_pack_str_with_body(pk, "country", 7);
    msgpack_pack_str_with_body(pk, g_countries[r->country], 2);
  }
  if (r->parts >= 0) {
    msgpack_pack_str_with_body(pk, "participants", 12);
    msgpack_pack_uint64(pk, (uint64_t)r->parts);
  }
  msgpack_pack_str_with_body(pk, "topics", 6);
  msgpack_pack_array(pk, (size_t)r->ntopics);
  for (int t = 0; t < r->ntopics; t++)
    msgpack_pack_str_with_body(pk, g_topics[r->topics[t]], strlen(g_topics[r->topics[t]]));
  msgpack_pack_str_with_body(pk, "counterparts", 12);
  msgpack_pack_array(pk, (size_t)r->ncps);
  for (int c = 0; c < r->ncps; c++)
    msgpack_pack_str_with_body(pk, g_name[r->cps[c]], strlen(g_name[r->cps[c]]));
}

/* What happens between commits in the model tests. Month rollups are folded in the
 * background, so answers must not depend on when: FOLD_AT_END folds once the records are
 * in (so queries read current month rows), FOLD_RANDOM folds or closes and reopens the store
 * (as after a crash: nothing folded, marks kept) at random between commits. */
enum { FOLD_NEVER, FOLD_RANDOM, FOLD_AT_END };
static int g_fold_mode = FOLD_AT_END;
static int g_no_reopen; /* while other threads query the store */
static uint64_t g_hrng = 0x1234567;

static void fx_reopen(fx_t *f) {
  pl_store_opts_t o = {NULL, 4 * MiB, 1024 * MiB, 0, 0, 600000, 0, 0};
  char err[256];
  o.dir = f->dir;
  pl_store_close(f->s);
  if (pl_store_open(&f->s, &o, err, sizeof(err))) fail_msg("reopen: %s", err);
}

static void between_commits(fx_t *f) {
  uint64_t x;
  if (g_fold_mode != FOLD_RANDOM) return;
  x = tu_rand(&g_hrng) % 100;
  if (x < 30)
    assert_int_equal(pl_store_refresh(f->s), 0);
  else if (x < 38 && !g_no_reopen)
    fx_reopen(f);
}

/* Commits records [from, to) in batches of 1..150, one to three batches per transaction,
 * and checks the store's duplicate counts against the model's. */
static void gen_commit(fx_t *f, gen_t *g, size_t from, size_t to) {
  size_t i = from;
  while (i < to) {
    pl_batch_t *bs[3];
    size_t nb = 1 + rnd(g) % 3, dups = 0, want = 0;
    for (size_t b = 0; b < nb; b++) {
      size_t size = 1 + rnd(g) % 150;
      bs[b] = pl_batch_new();
      for (; size > 0 && i < to; size--, i++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        gen_pack(&pk, &g->r[i]);
        assert_true(add_packed(bs[b], sb.data, sb.size, "gen"));
        msgpack_sbuffer_destroy(&sb);
        want += !g->r[i].stored;
      }
    }
    assert_int_equal(pl_store_commit(f->s, bs, nb, NOW_MS), 0);
    for (size_t b = 0; b < nb; b++) {
      assert_int_equal(bs[b]->status, 0);
      dups += bs[b]->duplicates;
      pl_batch_free(bs[b]);
    }
    assert_int_equal(dups, want);
    between_commits(f);
  }
  if (g_fold_mode == FOLD_AT_END) assert_int_equal(pl_store_refresh(f->s), 0);
}

static void gen_load(fx_t *f, gen_t *g, uint64_t seed, size_t n) {
  gen_init(g, seed, n);
  gen_more(g, n);
  gen_commit(f, g, 0, n);
}

static uint64_t parts0(const grec_t *r) { return r->parts < 0 ? 0 : (uint64_t)r->parts; }

static uint32_t g_last_day(const gen_t *g) {
  uint32_t last = 0;
  for (size_t i = 0; i < g->n; i++)
    if (g->r[i].stored && g->r[i].day > last) last = g->r[i].day;
  return last;
}

static uint32_t g_first_day(const gen_t *g) {
  uint32_t first = PL_AGG_NO_DAY;
  for (size_t i = 0; i < g->n; i++)
    if (g->r[i].stored && g->r[i].day < first) first = g->r[i].day;
  return first;
}

/* Known: reported, or named as a counterpart, by a stored record. */
static int g_known(const gen_t *g, int inst) {
  for (size_t i = 0; i < g->n; i++)
    if (g->r[i].stored && (g->r[i].inst == inst || has(g->r[i].cps, g->r[i].ncps, inst))) return 1;
  return 0;
}

typedef struct ctr {
  struct {
    const char *name;
    uint64_t v;
  } e[64];
  int n;
} ctr_t;

static void ctr_add(ctr_t *c, const char *name, uint64_t v) {
  for (int i = 0; i < c->n; i++)
    if (strcmp(c->e[i].name, name) == 0) {
      c->e[i].v += v;
      return;
    }
  assert_true(c->n < 64);
  c->e[c->n].name = name;
  c->e[c->n++].v = v;
}

static int ctr_cmp(const void *x, const void *y) {
  const __typeof__(((ctr_t *)0)->e[0]) *a = x, *b = y;
  if (a->v != b->v) return a->v > b->v ? -1 : 1;
  return strcmp(a->name, b->name);
}

static json_t *ctr_obj(ctr_t *c) {
  json_t *o = json_object();
  qsort(c->e, (size_t)c->n, sizeof(c->e[0]), ctr_cmp);
  for (int i = 0; i < c->n; i++)
    json_object_set_new(o, c->e[i].name, json_integer((json_int_t)c->e[i].v));
  return o;
}

static json_t *jday(uint32_t day) {
  char s[11];
  if (day == PL_AGG_NO_DAY) return json_null();
  pl_date_format(day, s);
  return json_string(s);
}

static json_t *m_activity(const gen_t *g, int inst, uint32_t from, uint32_t to, uint32_t window) {
  static unsigned char seen[PL_DATE_LAST_DAY + 1];
  ctr_t kinds = {0}, formats = {0}, topics = {0}, cps = {0};
  uint64_t ev = 0, parts = 0, days = 0, prev = 0;
  json_t *o = json_object();
  memset(seen, 0, sizeof(seen));
  for (size_t i = 0; i < g->n; i++) {
    const grec_t *r = &g->r[i];
    if (!r->stored || r->inst != inst) continue;
    if (r->day >= from && r->day <= to) {
      ev++;
      parts += parts0(r);
      days += !seen[r->day];
      seen[r->day] = 1;
      if (r->kind >= 0) ctr_add(&kinds, g_kinds[r->kind], 1);
      if (r->format >= 0) ctr_add(&formats, g_formats[r->format], 1);
      for (int t = 0; t < r->ntopics; t++) ctr_add(&topics, g_topics[r->topics[t]], 1);
      for (int c = 0; c < r->ncps; c++) ctr_add(&cps, g_name[r->cps[c]], 1);
    }
    if (from > 0) {
      uint32_t pto = from - 1, pfrom = pto >= window - 1 ? pto - (window - 1) : 0;
      prev += r->day >= pfrom && r->day <= pto;
    }
  }
  json_object_set_new(o, "institution", json_string(g_name[inst]));
  json_object_set_new(o, "from", jday(from));
  json_object_set_new(o, "to", jday(to));
  json_object_set_new(o, "events", json_integer((json_int_t)ev));
  json_object_set_new(o, "participants", json_integer((json_int_t)parts));
  json_object_set_new(o, "active_days", json_integer((json_int_t)days));
  json_object_set_new(o, "kinds", ctr_obj(&kinds));
  json_object_set_new(o, "formats", ctr_obj(&formats));
  json_object_set_new(o, "topics", ctr_obj(&topics));
  json_object_set_new(o, "counterparts", ctr_obj(&cps));
  json_object_set_new(o, "previous_events", json_integer((json_int_t)prev));
  json_object_set_new(o, "growth", prev ? json_real((double)ev / (double)prev) : json_null());
  return o;
}

static int g_match(const grec_t *r, int kind, int topic, int format) {
  return (kind < 0 || r->kind == kind) && (format < 0 || r->format == format) &&
         (topic < 0 || has(r->topics, r->ntopics, topic));
}

static json_t *m_top(const gen_t *g, uint32_t from, uint32_t to, int by, int kind, int topic,
                     int format, size_t limit) {
  static unsigned char cp[G_NAMES][G_NAMES];
  uint64_t val[G_NAMES] = {0};
  ctr_t c = {0};
  json_t *o = json_object(), *rows = json_array();
  memset(cp, 0, sizeof(cp));
  for (size_t i = 0; i < g->n; i++) {
    const grec_t *r = &g->r[i];
    if (!r->stored || r->day < from || r->day > to || !g_match(r, kind, topic, format)) continue;
    if (by == 0) val[r->inst]++;
    if (by == 1) val[r->inst] += parts0(r);
    for (int k = 0; by == 2 && k < r->ncps; k++) {
      val[r->inst] += !cp[r->inst][r->cps[k]];
      cp[r->inst][r->cps[k]] = 1;
    }
  }
  for (int i = 0; i < G_NAMES; i++)
    if (val[i]) ctr_add(&c, g_name[i], val[i]);
  qsort(c.e, (size_t)c.n, sizeof(c.e[0]), ctr_cmp);
  for (int i = 0; i < c.n && (size_t)i < limit; i++) {
    json_t *row = json_object();
    json_object_set_new(row, "institution", json_string(c.e[i].name));
    json_object_set_new(row, "value", json_integer((json_int_t)c.e[i].v));
    json_array_append_new(rows, row);
  }
  json_object_set_new(o, "from", jday(from));
  json_object_set_new(o, "to", jday(to));
  json_object_set_new(o, "by", json_string(g_bys[by]));
  json_object_set_new(o, "rows", rows);
  return o;
}

static json_t *m_series(const gen_t *g, int inst, uint32_t from, uint32_t to, pl_bucket_t b,
                        int kind, int topic) {
  uint32_t *starts = malloc(sizeof(uint32_t) * 20000);
  uint64_t *ev, *pa;
  size_t n = 0;
  json_t *o = json_object(), *rows = json_array();
  for (uint32_t ps = pl_date_period_start(b, from); ps <= to; ps = pl_date_period_next(b, ps))
    starts[n++] = ps;
  ev = calloc(n, sizeof(*ev));
  pa = calloc(n, sizeof(*pa));
  for (size_t i = 0; i < g->n; i++) {
    const grec_t *r = &g->r[i];
    size_t lo = 0, hi = n;
    if (!r->stored || r->day < from || r->day > to || (inst >= 0 && r->inst != inst) ||
        !g_match(r, kind, topic, -1))
      continue;
    while (hi - lo > 1) {
      size_t mid = (lo + hi) / 2;
      if (starts[mid] <= r->day)
        lo = mid;
      else
        hi = mid;
    }
    ev[lo]++;
    pa[lo] += parts0(r);
  }
  for (size_t i = 0; i < n; i++) {
    json_t *row = json_object();
    char label[11];
    pl_date_period_label(b, starts[i], label);
    json_object_set_new(row, "period", json_string(label));
    json_object_set_new(row, "events", json_integer((json_int_t)ev[i]));
    json_object_set_new(row, "participants", json_integer((json_int_t)pa[i]));
    json_array_append_new(rows, row);
  }
  json_object_set_new(o, "from", jday(from));
  json_object_set_new(o, "to", jday(to));
  json_object_set_new(o, "bucket", json_string(g_buckets[b]));
  json_object_set_new(o, "rows", rows);
  free(starts);
  free(ev);
  free(pa);
  return o;
}

static uint32_t m_period(uint32_t from, uint32_t day, int month) {
  int y0, y, m, d;
  if (month) return pl_date_month(day) - pl_date_month(from);
  pl_date_to_ymd(from, &y0, &m, &d);
  pl_date_to_ymd(day, &y, &m, &d);
  return (uint32_t)(y - y0);
}

static json_t *m_pair(const gen_t *g, int a, int b, uint32_t from, uint32_t to, int month) {
  ctr_t kinds = {0}, countries = {0};
  uint64_t ev = 0;
  uint32_t first = PL_AGG_NO_DAY, last = PL_AGG_NO_DAY, n = m_period(from, to, month) + 1;
  uint32_t active = 0, run = 0, longest = 0, current = 0;
  unsigned char *act = calloc(n, 1);
  json_t *o = json_object();
  for (size_t i = 0; i < g->n; i++) {
    const grec_t *r = &g->r[i];
    if (!r->stored || r->day < from || r->day > to) continue;
    if (!((r->inst == a && has(r->cps, r->ncps, b)) || (r->inst == b && has(r->cps, r->ncps, a))))
      continue;
    ev++;
    if (r->kind >= 0) ctr_add(&kinds, g_kinds[r->kind], 1);
    ctr_add(&countries, r->country >= 0 ? g_countries[r->country] : "unknown", parts0(r));
    if (first == PL_AGG_NO_DAY || r->day < first) first = r->day;
    if (last == PL_AGG_NO_DAY || r->day > last) last = r->day;
    act[m_period(from, r->day, month)] = 1;
  }
  for (uint32_t i = 0; i < n; i++) {
    active += act[i];
    run = act[i] ? run + 1 : 0;
    if (run > longest) longest = run;
  }
  current = run;
  json_object_set_new(o, "a", json_string(g_name[a]));
  json_object_set_new(o, "b", json_string(g_name[b]));
  json_object_set_new(o, "from", jday(from));
  json_object_set_new(o, "to", jday(to));
  json_object_set_new(o, "period", json_string(month ? "month" : "year"));
  json_object_set_new(o, "events", json_integer((json_int_t)ev));
  json_object_set_new(o, "kinds", ctr_obj(&kinds));
  json_object_set_new(o, "first", jday(first));
  json_object_set_new(o, "last", jday(last));
  json_object_set_new(o, "periods_active", json_integer(active));
  json_object_set_new(o, "current_streak", json_integer(current));
  json_object_set_new(o, "longest_streak", json_integer(longest));
  json_object_set_new(o, "participants_by_country", ctr_obj(&countries));
  free(act);
  return o;
}

static json_t *m_topics(const gen_t *g, uint32_t from, uint32_t to, size_t limit) {
  ctr_t c = {0};
  json_t *o = json_object(), *rows = json_array();
  for (size_t i = 0; i < g->n; i++) {
    const grec_t *r = &g->r[i];
    if (!r->stored || r->day < from || r->day > to) continue;
    for (int t = 0; t < r->ntopics; t++) ctr_add(&c, g_topics[r->topics[t]], 1);
  }
  qsort(c.e, (size_t)c.n, sizeof(c.e[0]), ctr_cmp);
  for (int i = 0; i < c.n && (size_t)i < limit; i++) {
    json_t *row = json_object();
    json_object_set_new(row, "topic", json_string(c.e[i].name));
    json_object_set_new(row, "events", json_integer((json_int_t)c.e[i].v));
    json_array_append_new(rows, row);
  }
  json_object_set_new(o, "from", jday(from));
  json_object_set_new(o, "to", jday(to));
  json_object_set_new(o, "rows", rows);
  return o;
}

static int cmp_names(const void *x, const void *y) {
  return strcmp(g_name[*(const int *)x], g_name[*(const int *)y]);
}

static json_t *m_institutions(const gen_t *g, const char *prefix, size_t limit) {
  int order[G_NAMES], n = 0;
  json_t *o = json_object(), *rows = json_array();
  for (int i = 0; i < G_NAMES; i++)
    if (strncmp(g_name[i], prefix, strlen(prefix)) == 0 && g_known(g, i)) order[n++] = i;
  qsort(order, (size_t)n, sizeof(order[0]), cmp_names);
  for (int k = 0; k < n && (size_t)k < limit; k++) {
    uint64_t ev = 0;
    uint32_t first = PL_AGG_NO_DAY, last = PL_AGG_NO_DAY;
    json_t *row = json_object();
    for (size_t i = 0; i < g->n; i++) {
      const grec_t *r = &g->r[i];
      if (!r->stored || r->inst != order[k]) continue;
      ev++;
      if (first == PL_AGG_NO_DAY || r->day < first) first = r->day;
      if (last == PL_AGG_NO_DAY || r->day > last) last = r->day;
    }
    json_object_set_new(row, "institution", json_string(g_name[order[k]]));
    json_object_set_new(row, "events", json_integer((json_int_t)ev));
    json_object_set_new(row, "first", jday(first));
    json_object_set_new(row, "last", jday(last));
    json_array_append_new(rows, row);
  }
  json_object_set_new(o, "rows", rows);
  return o;
}

/* Random query parameters over the generated range and a little beyond it. */
static uint32_t r_day(gen_t *g) { return g->day0 - 20 + (uint32_t)(rnd(g) % (g->days + 40)); }

static uint32_t r_window(gen_t *g) {
  static const uint32_t w[] = {1, 2, 7, 28, 29, 30, 31, 60, 90, 365, 366, 730, 1500, 36525};
  return rnd(g) % 3 ? w[rnd(g) % (sizeof(w) / sizeof(w[0]))] : 1 + (uint32_t)(rnd(g) % 1200);
}

static void test_model_activity(void **state) {
  fx_t *f = *state;
  gen_t g;
  char asof[11];
  gen_load(f, &g, 0x5eed0001, 3000);
  for (int q = 0; q < 300; q++) {
    int inst = (int)(rnd(&g) % G_NAMES), dflt = rnd(&g) % 5 == 0;
    uint32_t window = r_window(&g), to = dflt ? g_last_day(&g) : r_day(&g);
    uint32_t from = to >= window - 1 ? to - (window - 1) : 0;
    json_t *r;
    pl_date_format(to, asof);
    if (dflt)
      r = Q(f, "{'op':'activity','institution':'%s','window':%u}", g_name[inst], window);
    else
      r = Q(f, "{'op':'activity','institution':'%s','window':'%u','as_of':'%s'}", g_name[inst],
            window, asof);
    if (!g_known(&g, inst)) {
      expect_err(r, "not_found", NULL);
      continue;
    }
    expect_json(ok(r), m_activity(&g, inst, from, to, window));
  }
  free(g.r);
}

static void test_model_top(void **state) {
  fx_t *f = *state;
  gen_t g;
  char asof[11];
  gen_load(f, &g, 0x5eed0002, 3000);
  for (int q = 0; q < 300; q++) {
    uint32_t window = r_window(&g), to = r_day(&g), from = to >= window - 1 ? to - (window - 1) : 0;
    int by = (int)(rnd(&g) % 3), kind = rnd(&g) % 3 ? -1 : (int)(rnd(&g) % 5);
    int topic = rnd(&g) % 3 ? -1 : (int)(rnd(&g) % G_TOPICS);
    int format = rnd(&g) % 3 ? -1 : (int)(rnd(&g) % 3);
    size_t limit = rnd(&g) % 4 ? 1 + rnd(&g) % 12 : 1000;
    char args[256] = "";
    pl_date_format(to, asof);
    if (kind >= 0) snprintf(args + strlen(args), 64, ",'kind':'%s'", g_kinds[kind]);
    if (topic >= 0) snprintf(args + strlen(args), 64, ",'topic':'%s'", g_topics[topic]);
    if (format >= 0) snprintf(args + strlen(args), 64, ",'format':'%s'", g_formats[format]);
    expect_json(ok(Q(f, "{'op':'top','window':%u,'as_of':'%s','by':'%s','limit':%zu%s}", window,
                     asof, g_bys[by], limit, args)),
                m_top(&g, from, to, by, kind, topic, format, limit));
  }
  /* Every event has topic "trade": adding it as a second filter sends top to the events
   * scan, which must give exactly what the aggregates give for the one filter. */
  for (int q = 0; q < 60; q++) {
    uint32_t window = r_window(&g), to = r_day(&g);
    int by = (int)(rnd(&g) % 3), kind = (int)(rnd(&g) % 5);
    json_t *a, *b;
    pl_date_format(to, asof);
    a = ok(Q(f, "{'op':'top','window':%u,'as_of':'%s','by':'%s','limit':1000,'kind':'%s'}", window,
             asof, g_bys[by], g_kinds[kind]));
    b = ok(Q(f,
             "{'op':'top','window':%u,'as_of':'%s','by':'%s','limit':1000,'kind':'%s',"
             "'topic':'trade'}",
             window, asof, g_bys[by], g_kinds[kind]));
    expect_json(b, a);
    a = ok(Q(f, "{'op':'top','window':%u,'as_of':'%s','by':'counterparts','limit':1000}", window,
             asof));
    b = ok(Q(f,
             "{'op':'top','window':%u,'as_of':'%s','by':'counterparts','limit':1000,"
             "'topic':'trade'}",
             window, asof));
    expect_json(b, a);
  }
  free(g.r);
}

static void test_model_series(void **state) {
  fx_t *f = *state;
  gen_t g;
  char a[11], b[11];
  gen_load(f, &g, 0x5eed0003, 3000);
  for (int q = 0; q < 200; q++) {
    pl_bucket_t bucket = (pl_bucket_t)(rnd(&g) % 4);
    static const uint32_t span[] = {200, 700, 1300, 1300};
    uint32_t from = r_day(&g), to = from + (uint32_t)(rnd(&g) % span[bucket]);
    int inst = rnd(&g) % 2 ? -1 : (int)(rnd(&g) % G_REP);
    int kind = rnd(&g) % 3 ? -1 : (int)(rnd(&g) % 5);
    int topic = rnd(&g) % 3 ? -1 : (int)(rnd(&g) % G_TOPICS);
    char args[256] = "";
    pl_date_format(from, a);
    pl_date_format(to, b);
    if (inst >= 0) snprintf(args + strlen(args), 64, ",'institution':'%.31s'", g_name[inst]);
    if (kind >= 0) snprintf(args + strlen(args), 64, ",'kind':'%s'", g_kinds[kind]);
    if (topic >= 0) snprintf(args + strlen(args), 64, ",'topic':'%s'", g_topics[topic]);
    json_t *r = Q(f, "{'op':'series','from':'%s','to':'%s','bucket':'%s'%s}", a, b,
                  g_buckets[bucket], args);
    if (inst >= 0 && !g_known(&g, inst)) {
      expect_err(r, "not_found", NULL);
      continue;
    }
    expect_json(ok(r), m_series(&g, inst, from, to, bucket, kind, topic));
    /* With topic "trade" added, kind alone and kind + trade (the scan) agree. */
    if (kind >= 0 && topic < 0)
      expect_json(ok(Q(f, "{'op':'series','from':'%s','to':'%s','bucket':'%s'%s,'topic':'trade'}",
                       a, b, g_buckets[bucket], args)),
                  m_series(&g, inst, from, to, bucket, kind, -1));
  }
  /* The defaults: the whole stored range. */
  expect_json(ok(Q(f, "{'op':'series','bucket':'month'}")),
              m_series(&g, -1, g_first_day(&g), g_last_day(&g), PL_BUCKET_MONTH, -1, -1));
  free(g.r);
}

static void test_model_pair(void **state) {
  fx_t *f = *state;
  gen_t g;
  char a[11], b[11];
  gen_load(f, &g, 0x5eed0004, 3000);
  for (int q = 0; q < 300; q++) {
    int x = (int)(rnd(&g) % (q % 2 ? 8 : G_NAMES)), y = (int)(rnd(&g) % G_NAMES);
    int month = (int)(rnd(&g) % 2), dflt = rnd(&g) % 6 == 0;
    uint32_t from = dflt ? g_first_day(&g) : r_day(&g);
    uint32_t to = dflt ? g_last_day(&g) : from + (uint32_t)(rnd(&g) % 1200);
    json_t *r;
    if (x == y) continue;
    pl_date_format(from, a);
    pl_date_format(to, b);
    if (dflt)
      r = Q(f, "{'op':'pair','a':'%s','b':'%s','period':'%s'}", g_name[x], g_name[y],
            month ? "month" : "year");
    else
      r = Q(f, "{'op':'pair','a':'%s','b':'%s','from':'%s','to':'%s','period':'%s'}", g_name[x],
            g_name[y], a, b, month ? "month" : "year");
    if (!g_known(&g, x) || !g_known(&g, y)) {
      expect_err(r, "not_found", NULL);
      continue;
    }
    expect_json(ok(r), m_pair(&g, x, y, from, to, month));
  }
  free(g.r);
}

static void test_model_topics_institutions(void **state) {
  fx_t *f = *state;
  gen_t g;
  char asof[11];
  static const char *const prefixes[] = {
      "", "A", "Atlas", "Atlas Forum 1", "Delta Forum", "Z", "Harbor Forum 7", "Cedar Forum 34"};
  gen_load(f, &g, 0x5eed0005, 3000);
  for (int q = 0; q < 100; q++) {
    uint32_t window = r_window(&g), to = r_day(&g), from = to >= window - 1 ? to - (window - 1) : 0;
    size_t limit = 1 + rnd(&g) % 14;
    pl_date_format(to, asof);
    expect_json(
        ok(Q(f, "{'op':'topics','window':%u,'as_of':'%s','limit':%zu}", window, asof, limit)),
        m_topics(&g, from, to, limit));
  }
  for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++)
    for (size_t limit = 1; limit <= 60; limit += 7)
      expect_json(ok(Q(f, "{'op':'institutions','prefix':'%s','limit':%zu}", prefixes[p], limit)),
                  m_institutions(&g, prefixes[p], limit));
  free(g.r);
}

/* ---- events paging on generated data ---- */

typedef struct evkey {
  uint32_t day, inst;
  uint64_t seq;
} evkey_t;

static int cmp_evkey(const void *x, const void *y) {
  const evkey_t *a = x, *b = y;
  if (a->day != b->day) return a->day < b->day ? -1 : 1;
  if (a->inst != b->inst) return a->inst < b->inst ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static uint32_t dict_id(fx_t *f, const char *name) {
  pl_rtxn_t *t;
  uint32_t id = 0;
  assert_int_equal(pl_store_read_begin(f->s, &t), 0);
  assert_int_equal(pl_store_id(t, name, strlen(name), &id), 0);
  pl_store_read_end(t);
  return id;
}

/* The keys of an events reply's rows, appended to keys; returns the next cursor or NULL. */
static char *page_keys(fx_t *f, json_t *reply, evkey_t *keys, size_t *n) {
  json_t *r = ok(reply), *row, *next;
  size_t i;
  char *cur;
  json_array_foreach(json_object_get(r, "rows"), i, row) {
    const char *date = json_string_value(json_object_get(row, "date"));
    keys[*n].day = D(date);
    keys[*n].inst = dict_id(f, json_string_value(json_object_get(row, "institution")));
    keys[*n].seq = (uint64_t)json_integer_value(json_object_get(row, "seq"));
    assert_string_equal(json_string_value(json_object_get(row, "tag")), "gen");
    (*n)++;
  }
  next = json_object_get(r, "next");
  cur = json_is_string(next) ? strdup(json_string_value(next)) : NULL;
  json_decref(r);
  return cur;
}

/* The model's keys of stored events in [from, to], of one institution or all (-1). */
static size_t m_keys(fx_t *f, const gen_t *g, int inst, uint32_t from, uint32_t to, evkey_t *keys) {
  uint32_t ids[G_NAMES];
  size_t n = 0;
  for (int i = 0; i < G_NAMES; i++) ids[i] = g_known(g, i) ? dict_id(f, g_name[i]) : 0;
  for (size_t i = 0; i < g->n; i++) {
    const grec_t *r = &g->r[i];
    if (!r->stored || r->day < from || r->day > to || (inst >= 0 && r->inst != inst)) continue;
    keys[n].day = r->day;
    keys[n].inst = ids[r->inst];
    keys[n++].seq = r->seq;
  }
  qsort(keys, n, sizeof(*keys), cmp_evkey);
  return n;
}

static void test_model_events(void **state) {
  fx_t *f = *state;
  gen_t g;
  evkey_t *want = malloc(sizeof(evkey_t) * 8000), *got = malloc(sizeof(evkey_t) * 8000);
  char a[11], b[11];
  gen_load(f, &g, 0x5eed0006, 2500);
  for (int q = 0; q < 40; q++) {
    int inst = q % 3 ? (int)(rnd(&g) % 12) : -1;
    uint32_t from = r_day(&g), to = from + (uint32_t)(rnd(&g) % 500);
    size_t limit = 1 + rnd(&g) % (inst >= 0 ? 20 : 300), nw, ng = 0;
    char args[128] = "", *cur;
    pl_date_format(from, a);
    pl_date_format(to, b);
    if (inst >= 0 && !g_known(&g, inst)) continue;
    if (inst >= 0) snprintf(args, sizeof(args), ",'institution':'%.31s'", g_name[inst]);
    nw = m_keys(f, &g, inst, from, to, want);
    cur =
        page_keys(f, Q(f, "{'op':'events','from':'%s','to':'%s','limit':%zu%s}", a, b, limit, args),
                  got, &ng);
    while (cur) {
      char *next = page_keys(f,
                             Q(f,
                               "{'op':'events','from':'%s','to':'%s','limit':%zu,"
                               "'after':'%s'%s}",
                               a, b, limit, cur, args),
                             got, &ng);
      free(cur);
      cur = next;
      assert_true(ng <= nw);
    }
    assert_int_equal(ng, nw);
    for (size_t i = 0; i < nw; i++) assert_int_equal(cmp_evkey(&got[i], &want[i]), 0);
  }
  free(want);
  free(got);
  free(g.r);
}

/* Pages through while more records (dates anywhere in the range) are committed between
 * pages: the rows stay in strictly increasing key order (no duplicate) and every event
 * stored before the first page appears (no gap). */
static void test_paging_while_writing(void **state) {
  fx_t *f = *state;
  gen_t g;
  evkey_t *before = malloc(sizeof(evkey_t) * 8000), *got = malloc(sizeof(evkey_t) * 8000);
  for (int pass = 0; pass < 2; pass++) {
    int inst = pass ? 0 : -1;
    size_t nb, ng = 0, j = 0;
    char args[128] = "", *cur;
    if (pass == 0) gen_load(f, &g, 0x5eed0007, 2000);
    if (inst >= 0) snprintf(args, sizeof(args), ",'institution':'%.31s'", g_name[inst]);
    nb = m_keys(f, &g, inst, 0, PL_DATE_LAST_DAY, before);
    cur = page_keys(f, Q(f, "{'op':'events','limit':37%s}", args), got, &ng);
    while (cur) {
      char *next;
      size_t n0 = g.n;
      gen_more(&g, 1 + rnd(&g) % 40);
      gen_commit(f, &g, n0, g.n);
      next = page_keys(f, Q(f, "{'op':'events','limit':37,'after':'%s'%s}", cur, args), got, &ng);
      free(cur);
      cur = next;
    }
    for (size_t i = 1; i < ng; i++) assert_true(cmp_evkey(&got[i - 1], &got[i]) < 0);
    for (size_t i = 0; i < nb; i++) {
      while (j < ng && cmp_evkey(&got[j], &before[i]) < 0) j++;
      assert_true(j < ng);
      assert_int_equal(cmp_evkey(&got[j], &before[i]), 0);
    }
    assert_true(ng > nb); /* some of the later records landed after the cursor */
  }
  free(before);
  free(got);
  free(g.r);
}

/* ---- queries from several threads while the writer commits ---- */

typedef struct conc {
  fx_t *f;
  int replies, failures;
} conc_t;

/* No cmocka asserts here: they may only fail on the test's own thread. */
static void *conc_main(void *p) {
  static const char *const reqs[] = {
      "{\"op\":\"activity\",\"institution\":\"Atlas Forum 00\",\"window\":365}",
      "{\"op\":\"top\",\"window\":90,\"by\":\"counterparts\"}",
      "{\"op\":\"top\",\"window\":400,\"kind\":\"visit\",\"topic\":\"trade\"}",
      "{\"op\":\"series\",\"bucket\":\"week\"}",
      "{\"op\":\"pair\",\"a\":\"Atlas Forum 00\",\"b\":\"Falcon Forum 17\"}",
      "{\"op\":\"topics\",\"window\":1000}",
      "{\"op\":\"institutions\",\"prefix\":\"A\"}",
      "{\"op\":\"events\",\"limit\":500}",
      "{\"op\":\"stats\"}"};
  conc_t *c = p;
  for (int i = 0; i < 400; i++) {
    json_t *j = json_loads(reqs[i % (sizeof(reqs) / sizeof(reqs[0]))], 0, NULL);
    msgpack_sbuffer in, out;
    msgpack_packer pk;
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_sbuffer_init(&in);
    msgpack_sbuffer_init(&out);
    msgpack_packer_init(&pk, &in, msgpack_sbuffer_write);
    pack_json(&pk, j);
    msgpack_unpacked_init(&u);
    msgpack_unpack_next(&u, in.data, in.size, &off);
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    if (pl_query_exec(c->f->s, &c->f->env, &u.data, &pk) != 0 ||
        !memmem(out.data, out.size, "\xa2ok\xc3", 4))
      c->failures++;
    c->replies++;
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&in);
    msgpack_sbuffer_destroy(&out);
    json_decref(j);
  }
  return NULL;
}

static void test_concurrent_queries(void **state) {
  fx_t *f = *state;
  gen_t g;
  pthread_t th[4];
  conc_t c[4];
  gen_load(f, &g, 0x5eed0009, 1500);
  for (int i = 0; i < 4; i++) {
    c[i].f = f;
    c[i].replies = c[i].failures = 0;
    assert_int_equal(pthread_create(&th[i], NULL, conc_main, &c[i]), 0);
  }
  g_no_reopen = 1;
  for (int k = 0; k < 20; k++) {
    size_t n0 = g.n;
    gen_more(&g, 50);
    gen_commit(f, &g, n0, g.n);
  }
  g_no_reopen = 0;
  for (int i = 0; i < 4; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(c[i].replies, 400);
    assert_int_equal(c[i].failures, 0);
  }
  free(g.r);
}

/* ---- rebuild ---- */

/* Every derived table and the state, as one byte string of (key, value) pairs. */
static void snapshot(fx_t *f, msgpack_sbuffer *sb) {
  static const pl_table_t tabs[] = {PL_TAB_DAYS, PL_TAB_MONTHS, PL_TAB_PAIRS, PL_TAB_PAIR_MONTHS,
                                    PL_TAB_INSTS};
  pl_rtxn_t *t;
  pl_str_t k, v;
  /* Month rollups are folded in the background; compare them once they are current. */
  assert_int_equal(pl_store_refresh(f->s), 0);
  assert_int_equal(pl_store_read_begin(f->s, &t), 0);
  for (size_t i = 0; i < sizeof(tabs) / sizeof(tabs[0]); i++) {
    pl_cursor_t *c;
    size_t rows = 0;
    assert_int_equal(pl_store_cursor_open(t, tabs[i], &c), 0);
    for (int rc = pl_store_cursor_first(c, &k, &v); rc == 0; rc = pl_store_cursor_next(c, &k, &v)) {
      msgpack_sbuffer_write(sb, (const char *)&k.n, sizeof(k.n));
      msgpack_sbuffer_write(sb, k.p, k.n);
      msgpack_sbuffer_write(sb, (const char *)&v.n, sizeof(v.n));
      msgpack_sbuffer_write(sb, v.p, v.n);
      rows++;
    }
    assert_true(rows > 0);
    pl_store_cursor_close(c);
  }
  assert_int_equal(pl_store_get(t, PL_TAB_META, "state", 5, &v), 0);
  msgpack_sbuffer_write(sb, v.p, v.n);
  pl_store_read_end(t);
}

static void test_rebuild_equals_incremental(void **state) {
  fx_t *f = *state;
  gen_t g;
  msgpack_sbuffer s1, s2;
  uint64_t events = 0;
  size_t stored = 0;
  json_t *before[4];
  static const char *const reqs[] = {
      "{'op':'top','window':1000,'by':'counterparts','limit':1000}",
      "{'op':'series','bucket':'week'}",
      "{'op':'pair','a':'Atlas Forum 00','b':'Falcon Forum 17','period':'month'}",
      "{'op':'institutions'}"};
  gen_load(f, &g, 0x5eed0008, 4000);
  for (size_t i = 0; i < g.n; i++) stored += g.r[i].stored;
  for (size_t i = 0; i < 4; i++) before[i] = Q(f, "%s", reqs[i]);
  msgpack_sbuffer_init(&s1);
  msgpack_sbuffer_init(&s2);
  snapshot(f, &s1);
  assert_int_equal(pl_store_rebuild(f->s, &events), 0);
  assert_int_equal(events, stored);
  snapshot(f, &s2);
  assert_int_equal(s1.size, s2.size);
  assert_memory_equal(s1.data, s2.data, s1.size);
  for (size_t i = 0; i < 4; i++) expect_json(Q(f, "%s", reqs[i]), before[i]);
  msgpack_sbuffer_destroy(&s1);
  msgpack_sbuffer_destroy(&s2);
  free(g.r);
}

/* ---- a store from before month rows counted their days (schema 2) ---- */

static unsigned char *put_v(unsigned char *p, uint64_t v) {
  for (; v >= 0x80; v >>= 7) *p++ = (unsigned char)(v | 0x80);
  *p++ = (unsigned char)v;
  return p;
}

/* Closes f's store, rewrites every aggregate row (days, months, pairs, pair months) as
 * parleyd 2 wrote it (agg version 2: no days section) and marks the store schema 2, through
 * this test's own LMDB handle, then opens it again with pl_store_open, which upgrades it.
 * Returns how many month rows there are. */
static int fx_as_schema2(fx_t *f) {
  static const char *const tabs[] = {"days", "months", "pairs", "pair_months"};
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi, meta;
  MDB_cursor *c;
  MDB_val k, v;
  unsigned char ver[4] = {0, 0, 0, 2}, *buf = malloc(1 << 20);
  int rc, months = 0;
  pl_store_close(f->s);
  assert_int_equal(mdb_env_create(&env), 0);
  assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
  assert_int_equal(mdb_env_set_mapsize(env, 1024 * MiB), 0);
  assert_int_equal(mdb_env_open(env, f->dir, 0, 0644), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  for (size_t t = 0; t < sizeof(tabs) / sizeof(tabs[0]); t++) {
    size_t rows = 0, cap = 0;
    unsigned char **keys = NULL, **vals = NULL;
    size_t *klen = NULL, *vlen = NULL;
    assert_int_equal(mdb_dbi_open(txn, tabs[t], 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &c), 0);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
      pl_agg_view_t a;
      unsigned char *o = buf;
      assert_int_equal(pl_agg_view(&a, v.mv_data, v.mv_size), 0);
      *o++ = 2;
      o = put_v(o, a.events);
      o = put_v(o, a.active_days);
      o = put_v(o, a.first_day + 1ull);
      o = put_v(o, a.last_day - a.first_day);
      o = put_v(o, a.participants);
      for (int s = 0; s < PL_AGG_DAYS; s++) o = put_v(put_v(o, a.n[s]), a.len[s]);
      for (int s = 0; s < PL_AGG_DAYS; s++) {
        memcpy(o, a.sect[s], a.len[s]);
        o += a.len[s];
      }
      /* put after the walk: a value that changes size moves the page the key is read from */
      if (rows == cap) {
        cap = cap ? cap * 2 : 256;
        keys = realloc(keys, cap * sizeof(*keys));
        vals = realloc(vals, cap * sizeof(*vals));
        klen = realloc(klen, cap * sizeof(*klen));
        vlen = realloc(vlen, cap * sizeof(*vlen));
      }
      keys[rows] = malloc(k.mv_size);
      memcpy(keys[rows], k.mv_data, k.mv_size);
      klen[rows] = k.mv_size;
      vals[rows] = malloc((size_t)(o - buf));
      memcpy(vals[rows], buf, (size_t)(o - buf));
      vlen[rows++] = (size_t)(o - buf);
    }
    assert_int_equal(rc, MDB_NOTFOUND);
    assert_true(rows > 0);
    mdb_cursor_close(c);
    for (size_t i = 0; i < rows; i++) {
      k.mv_data = keys[i];
      k.mv_size = klen[i];
      v.mv_data = vals[i];
      v.mv_size = vlen[i];
      assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
      free(keys[i]);
      free(vals[i]);
    }
    if (strcmp(tabs[t], "months") == 0) months = (int)rows;
    free(keys);
    free(vals);
    free(klen);
    free(vlen);
  }
  assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
  k.mv_data = "version";
  k.mv_size = 7;
  v.mv_data = ver;
  v.mv_size = 4;
  assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
  free(buf);
  {
    pl_store_opts_t o = {NULL, 4 * MiB, 1024 * MiB, 0, 0, 600000, 0, 0};
    pl_rtxn_t *t;
    pl_str_t val;
    char err[256];
    o.dir = f->dir;
    if (pl_store_open(&f->s, &o, err, sizeof(err))) fail_msg("reopen: %s", err);
    assert_int_equal(pl_store_read_begin(f->s, &t), 0);
    assert_int_equal(pl_store_get(t, PL_TAB_META, "version", 7, &val), 0);
    assert_int_equal(val.n, 4);
    assert_int_equal(pl_be32_get((const unsigned char *)val.p), 3);
    pl_store_read_end(t);
  }
  return months;
}

/* How many of the institution month rows count only some of their days. */
static int partial_months(fx_t *f) {
  pl_rtxn_t *t;
  pl_cursor_t *c;
  pl_str_t k, v;
  int n = 0;
  assert_int_equal(pl_store_read_begin(f->s, &t), 0);
  assert_int_equal(pl_store_cursor_open(t, PL_TAB_MONTHS, &c), 0);
  for (int rc = pl_store_cursor_first(c, &k, &v); rc == 0; rc = pl_store_cursor_next(c, &k, &v)) {
    pl_agg_view_t a;
    uint32_t ev[32], m = pl_be32_get((const unsigned char *)k.p), d0 = pl_date_month_first(m);
    uint64_t pa[32];
    assert_int_equal(pl_agg_view(&a, v.p, v.n), 0);
    n += pl_agg_days(&a, d0, d0, d0 + 30, ev, pa) == 0;
  }
  pl_store_cursor_close(c);
  pl_store_read_end(t);
  return n;
}

/* The ops that read a month's days from its row (series without filters, activity's window
 * before) against the model. */
static void check_day_counts(fx_t *f, gen_t *g, int n) {
  char a[11], b[11];
  for (int q = 0; q < n; q++) {
    pl_bucket_t bucket = (pl_bucket_t)(rnd(g) % 4);
    static const uint32_t span[] = {200, 700, 1300, 1300};
    uint32_t from = r_day(g), to = from + (uint32_t)(rnd(g) % span[bucket]);
    uint32_t window = r_window(g), from2 = to >= window - 1 ? to - (window - 1) : 0;
    int inst = rnd(g) % 3 ? (int)(rnd(g) % G_REP) : -1;
    char args[64] = "";
    json_t *r;
    pl_date_format(from, a);
    pl_date_format(to, b);
    if (inst >= 0) snprintf(args, sizeof(args), ",'institution':'%.31s'", g_name[inst]);
    r = Q(f, "{'op':'series','from':'%s','to':'%s','bucket':'%s'%s}", a, b, g_buckets[bucket], args);
    if (inst >= 0 && !g_known(g, inst)) {
      expect_err(r, "not_found", NULL);
      continue;
    }
    expect_json(ok(r), m_series(g, inst, from, to, bucket, -1, -1));
    if (inst < 0) continue;
    expect_json(ok(Q(f, "{'op':'activity','institution':'%s','window':%u,'as_of':'%s'}",
                     g_name[inst], window, b)),
                m_activity(g, inst, from2, to, window));
  }
  /* and the ops that read rows of other kinds, some of them in the old form */
  for (int q = 0; q < n / 4; q++) {
    int x = (int)(rnd(g) % 8), y = (int)(rnd(g) % G_NAMES), by = (int)(rnd(g) % 3);
    uint32_t from = r_day(g), to = from + (uint32_t)(rnd(g) % 1200);
    uint32_t window = r_window(g), from2 = to >= window - 1 ? to - (window - 1) : 0;
    json_t *r;
    pl_date_format(from, a);
    pl_date_format(to, b);
    expect_json(ok(Q(f, "{'op':'top','window':%u,'as_of':'%s','by':'%s','limit':10}", window, b,
                     g_bys[by])),
                m_top(g, from2, to, by, -1, -1, -1, 10));
    if (x == y) continue;
    r = Q(f, "{'op':'pair','a':'%s','b':'%s','from':'%s','to':'%s','period':'month'}", g_name[x],
          g_name[y], a, b);
    if (!g_known(g, x) || !g_known(g, y)) {
      expect_err(r, "not_found", NULL);
      continue;
    }
    expect_json(ok(r), m_pair(g, x, y, from, to, 1));
  }
}

/* A schema 2 store opens as schema 3 and answers as before; its month rows take the newer
 * days as they are folded into, and until a rebuild those rows count only some of their
 * days, which queries must notice (reading day rows) rather than trust. */
static void test_upgrade_from_schema2(void **state) {
  fx_t *f = *state;
  gen_t g;
  size_t total = 3000;
  gen_init(&g, 0x5eed0042, total);
  gen_more(&g, total);
  g.n = 2000;
  gen_commit(f, &g, 0, 2000);
  assert_int_equal(pl_store_refresh(f->s), 0);
  assert_int_equal(partial_months(f), 0);
  {
    int months = fx_as_schema2(f);
    assert_int_equal(partial_months(f), months); /* none counts its days yet */
  }
  check_day_counts(f, &g, 80);
  g.n = total; /* the rest, into the same months: old rows merged with days */
  gen_commit(f, &g, 2000, total);
  assert_int_equal(pl_store_refresh(f->s), 0);
  assert_true(partial_months(f) > 0);
  check_day_counts(f, &g, 80);
  {
    uint64_t events = 0;
    assert_int_equal(pl_store_rebuild(f->s, &events), 0);
  }
  assert_int_equal(partial_months(f), 0);
  check_day_counts(f, &g, 80);
  free(g.r);
}

/* Commits in chunks, folds or reopens at random between commits, and after each chunk
 * checks random requests of every op against the model of what is committed so far; the
 * folded, the stale and the recomputed months must all answer the same. */
static void test_interleaved(void **state) {
  fx_t *f = *state;
  gen_t g;
  char a[11], b[11], asof[11];
  size_t total = 4000, done = 0;
  int saved_mode = g_fold_mode;
  g_fold_mode = FOLD_RANDOM;
  gen_init(&g, 0x5eed00aa ^ g_hrng, total);
  gen_more(&g, total);
  while (done < total) {
    size_t step = 1 + rnd(&g) % 400;
    if (done + step > total) step = total - done;
    size_t saved = g.n;
    g.n = done + step;
    gen_commit(f, &g, done, done + step);
    done += step;
    for (int q = 0; q < 25; q++) {
      int op = (int)(rnd(&g) % 5);
      if (op == 0) {
        int inst = (int)(rnd(&g) % G_NAMES);
        uint32_t window = r_window(&g), to = r_day(&g);
        uint32_t from = to >= window - 1 ? to - (window - 1) : 0;
        pl_date_format(to, asof);
        json_t *r = Q(f, "{'op':'activity','institution':'%s','window':'%u','as_of':'%s'}", g_name[inst], window, asof);
        if (!g_known(&g, inst)) { expect_err(r, "not_found", NULL); continue; }
        expect_json(ok(r), m_activity(&g, inst, from, to, window));
      } else if (op == 1) {
        uint32_t window = r_window(&g), to = r_day(&g), from = to >= window - 1 ? to - (window - 1) : 0;
        int by = (int)(rnd(&g) % 3), kind = rnd(&g) % 3 ? -1 : (int)(rnd(&g) % 5);
        int topic = rnd(&g) % 3 ? -1 : (int)(rnd(&g) % G_TOPICS);
        int format = rnd(&g) % 3 ? -1 : (int)(rnd(&g) % 3);
        size_t limit = rnd(&g) % 4 ? 1 + rnd(&g) % 12 : 1000;
        char args[256] = "";
        pl_date_format(to, asof);
        if (kind >= 0) snprintf(args + strlen(args), 64, ",'kind':'%s'", g_kinds[kind]);
        if (topic >= 0) snprintf(args + strlen(args), 64, ",'topic':'%s'", g_topics[topic]);
        if (format >= 0) snprintf(args + strlen(args), 64, ",'format':'%s'", g_formats[format]);
        expect_json(ok(Q(f, "{'op':'top','window':%u,'as_of':'%s','by':'%s','limit':%zu%s}", window,
                         asof, g_bys[by], limit, args)),
                    m_top(&g, from, to, by, kind, topic, format, limit));
      } else if (op == 2) {
        pl_bucket_t bucket = (pl_bucket_t)(rnd(&g) % 4);
        static const uint32_t span[] = {200, 700, 1300, 1300};
        uint32_t from = r_day(&g), to = from + (uint32_t)(rnd(&g) % span[bucket]);
        int inst = rnd(&g) % 2 ? -1 : (int)(rnd(&g) % G_REP);
        int kind = rnd(&g) % 3 ? -1 : (int)(rnd(&g) % 5);
        int topic = rnd(&g) % 3 ? -1 : (int)(rnd(&g) % G_TOPICS);
        char args[256] = "";
        pl_date_format(from, a);
        pl_date_format(to, b);
        if (inst >= 0) snprintf(args + strlen(args), 64, ",'institution':'%.31s'", g_name[inst]);
        if (kind >= 0) snprintf(args + strlen(args), 64, ",'kind':'%s'", g_kinds[kind]);
        if (topic >= 0) snprintf(args + strlen(args), 64, ",'topic':'%s'", g_topics[topic]);
        json_t *r = Q(f, "{'op':'series','from':'%s','to':'%s','bucket':'%s'%s}", a, b, g_buckets[bucket], args);
        if (inst >= 0 && !g_known(&g, inst)) { expect_err(r, "not_found", NULL); continue; }
        expect_json(ok(r), m_series(&g, inst, from, to, bucket, kind, topic));
      } else if (op == 3) {
        int x = (int)(rnd(&g) % 8), y = (int)(rnd(&g) % G_NAMES);
        int month = (int)(rnd(&g) % 2);
        uint32_t from = r_day(&g), to = from + (uint32_t)(rnd(&g) % 1200);
        if (x == y) continue;
        pl_date_format(from, a);
        pl_date_format(to, b);
        json_t *r = Q(f, "{'op':'pair','a':'%s','b':'%s','from':'%s','to':'%s','period':'%s'}", g_name[x],
              g_name[y], a, b, month ? "month" : "year");
        if (!g_known(&g, x) || !g_known(&g, y)) { expect_err(r, "not_found", NULL); continue; }
        expect_json(ok(r), m_pair(&g, x, y, from, to, month));
      } else {
        uint32_t window = r_window(&g), to = r_day(&g), from = to >= window - 1 ? to - (window - 1) : 0;
        size_t limit = 1 + rnd(&g) % 14;
        pl_date_format(to, asof);
        expect_json(ok(Q(f, "{'op':'topics','window':%u,'as_of':'%s','limit':%zu}", window, asof, limit)),
                    m_topics(&g, from, to, limit));
      }
    }
    g.n = saved;
  }
  /* rebuild equals incremental at the end */
  {
    msgpack_sbuffer s1, s2; uint64_t events = 0;
    msgpack_sbuffer_init(&s1); msgpack_sbuffer_init(&s2);
    snapshot(f, &s1);
    assert_int_equal(pl_store_rebuild(f->s, &events), 0);
    snapshot(f, &s2);
    assert_int_equal(s1.size, s2.size);
    assert_memory_equal(s1.data, s2.data, s1.size);
    msgpack_sbuffer_destroy(&s1); msgpack_sbuffer_destroy(&s2);
  }
  free(g.r);
  g_fold_mode = saved_mode;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_ping_stats, setup, teardown),
      cmocka_unit_test_setup_teardown(test_activity_sample, setup, teardown),
      cmocka_unit_test_setup_teardown(test_activity_windows, setup, teardown),
      cmocka_unit_test_setup_teardown(test_top_sample, setup, teardown),
      cmocka_unit_test_setup_teardown(test_series_sample, setup, teardown),
      cmocka_unit_test_setup_teardown(test_series_periods, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pair_sample, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pair_streaks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_topics_sample, setup, teardown),
      cmocka_unit_test_setup_teardown(test_institutions_sample, setup, teardown),
      cmocka_unit_test_setup_teardown(test_events_sample, setup, teardown),
      cmocka_unit_test_setup_teardown(test_events_fields, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rejects, setup, teardown),
      cmocka_unit_test_setup_teardown(test_late_events, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_store, setup, teardown),
      cmocka_unit_test_setup_teardown(test_name_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rank_order_large, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rank_order_small, setup, teardown),
      cmocka_unit_test_setup_teardown(test_month_runs_follow_rows, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reply_widths, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rank_order_two_stores, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
      cmocka_unit_test(test_unavailable),
      cmocka_unit_test_setup_teardown(test_internal, setup, teardown),
      cmocka_unit_test(test_op_name),
      cmocka_unit_test(test_is_light),
      cmocka_unit_test_setup_teardown(test_model_activity, setup, teardown),
      cmocka_unit_test_setup_teardown(test_model_top, setup, teardown),
      cmocka_unit_test_setup_teardown(test_model_series, setup, teardown),
      cmocka_unit_test_setup_teardown(test_model_pair, setup, teardown),
      cmocka_unit_test_setup_teardown(test_model_topics_institutions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_model_events, setup, teardown),
      cmocka_unit_test_setup_teardown(test_paging_while_writing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_queries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rebuild_equals_incremental, setup, teardown),
      cmocka_unit_test_setup_teardown(test_interleaved, setup, teardown),
      cmocka_unit_test_setup_teardown(test_upgrade_from_schema2, setup, teardown),
  };
  int failed = cmocka_run_group_tests_name("query", tests, NULL, NULL);
  /* Again with every run of whole months kept and reused (by default only big ones are):
   * each answer is checked against the model while rows change under the kept merges. */
  pl_query_set_month_cache(8u << 20, 1);
  failed += cmocka_run_group_tests_name("query, every month run kept", tests, NULL, NULL);
  /* And with room for only a few: runs are evicted and their slots reused all along. */
  pl_query_set_month_cache(16u << 10, 1);
  failed += cmocka_run_group_tests_name("query, month runs evicted", tests, NULL, NULL);
  return failed;
}
