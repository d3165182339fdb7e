/* Query ops (SPEC "Query protocol"): arguments checked against each op's list, one read
 * transaction per request, answers summed from the aggregate tables (whole months plus edge
 * days) and, where the aggregates cannot answer, from a scan of the events in range. */
#include "parley/query.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parley/agg.h"
#include "parley/date.h"
#include "parley/error.h"
#include "parley/record.h"

#define QFAIL (-1) /* the reply's error is set in the context */
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_KEY 511 /* LMDB's key limit: no stored name is longer */
#define QUOTE_MAX 64

enum { BY_EVENTS, BY_PARTICIPANTS, BY_COUNTERPARTS };

static const char *const errcodes[] = {"bad_request", "unknown_op",  "not_found",
                                       "too_large",   "unavailable", "internal"};

const char *pl_query_errcode(pl_qerr_t e) {
  return (unsigned)e < ARRAY_LEN(errcodes) ? errcodes[e] : "internal";
}

/* ---- per-thread working memory ---- */

typedef struct pairset {
  uint64_t *slots; /* 0 marks an empty slot: ids start at 1 */
  uint32_t cap, n;
} pairset_t;

/* A request needs a few tables sized by what it reads: hundreds of KB for a busy
 * institution. Allocated and freed per request, they made glibc give the top of the heap
 * back to the kernel after nearly every query, and the page-table work that followed cost
 * more than the query. So each thread keeps them from one request to the next, and lets go
 * of any that one request made large. Kept a thread at most: nine id maps of KEEP_MAP_SLOTS
 * entries (20 bytes each with the list of ids: 1.4 MiB), the month-run slots (50 KB; the
 * runs themselves share one budget), four buffers of KEEP_BYTES. */
#define KEEP_MAP_SLOTS 8192
#define KEEP_SET_SLOTS 262144
#define KEEP_BYTES (1u << 20)

/* The merged sections of a run of whole months of one institution (see months_run). */
typedef struct mrun {
  uint64_t store, stamp; /* pl_store_instance; last use, for eviction (0: slot free) */
  uint32_t inst, m1, m2;
  struct fp_row *fp;     /* the month rows it was merged from (fp_of), the check */
  uint64_t events, participants, active_days;
  pl_agg_entry_t *ent; /* the merged sections, one after another */
  uint32_t nent[PL_AGG_COUNTERPARTS + 1];
  size_t bytes;
} mrun_t;

/* The byte budget (pl_query_set_month_cache) is what bounds the kept runs, not the slots:
 * a run is kept only with at least mrun_min_entries entries in its rows, and runs that
 * small are tens of KB, so 8 MiB holds a few hundred. With 64 slots the slots ran out
 * first, and 40% of the busiest institutions' 365-day windows merged their months afresh
 * (measured: 4,194 of 9,995 lookups missed; with 512 slots, 208, the first use of each). */
#define MRUN_SLOTS 512
#define MRUN_MAX_MONTHS 24

typedef struct scratch {
  /* one a section; then top's values (4); then a run of months' sections (5..8) */
  pl_idmap_t map[2 * (PL_AGG_COUNTERPARTS + 1) + 1];
  pairset_t set;
  void *buf[3]; /* 0: rank rows; 1: result rows; 2: sorting */
  size_t cap[3];
  msgpack_sbuffer out; /* the result, before it is framed into the reply */
  uint32_t dense_limit; /* every id of this request's snapshot is below it */
  /* Each id's place in name order (the dict table's key order), for a dictionary of at
   * most KEEP_MAP_SLOTS names; built for the dictionary whose next id is rank_next. */
  uint32_t *rank;
  uint32_t *byrank; /* the inverse: byrank[place] is the id, for places below nranked */
  uint32_t rank_next, nranked;
  uint64_t rank_store; /* pl_store_instance of the store they were built from */
  /* The names themselves for the same dictionary (by id: name_off[id], name_len[id] into
   * names), when they fit in KEEP_BYTES; NULL otherwise. */
  char *names;
  uint32_t *name_off, *name_len;
  mrun_t mrun[MRUN_SLOTS];
  /* mrun_key(store, inst, m1, m2) of each slot in use, 0 for a free one: a lookup scans
   * these 4 KB rather than the slots themselves. */
  uint64_t mrun_keys[MRUN_SLOTS];
  size_t mrun_bytes;
  uint64_t mrun_clock;
} scratch_t;

/* Bytes that every thread's kept month runs hold together (see months_run). */
static size_t mrun_total;

/* Never 0; equal for equal arguments (a match is then checked field by field). */
static uint64_t mrun_key(uint64_t store, uint32_t inst, uint32_t m1, uint32_t m2) {
  uint64_t h = store * 0x9e3779b97f4a7c15u;
  h ^= ((uint64_t)inst << 32 | m1) * 0xbf58476d1ce4e5b9u;
  h ^= (uint64_t)m2 * 0x94d049bb133111ebu;
  h ^= h >> 31;
  return h | 1;
}

static void mrun_drop(scratch_t *sc, mrun_t *e) {
  sc->mrun_keys[e - sc->mrun] = 0;
  sc->mrun_bytes -= e->bytes;
  __atomic_sub_fetch(&mrun_total, e->bytes, __ATOMIC_RELAXED);
  free(e->fp);
  free(e->ent);
  memset(e, 0, sizeof(*e));
}

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;
static __thread scratch_t *scratch_mine;

static void scratch_free(void *p) {
  scratch_t *sc = p;
  for (size_t i = 0; i < ARRAY_LEN(sc->map); i++) pl_idmap_free(&sc->map[i]);
  free(sc->set.slots);
  for (size_t i = 0; i < ARRAY_LEN(sc->buf); i++) free(sc->buf[i]);
  msgpack_sbuffer_destroy(&sc->out);
  free(sc->rank);
  free(sc->byrank);
  free(sc->names);
  free(sc->name_off);
  free(sc->name_len);
  for (size_t i = 0; i < MRUN_SLOTS; i++) mrun_drop(sc, &sc->mrun[i]);
  free(sc);
}

static void scratch_key_init(void) {
  scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
}

/* The calling thread's working memory (freed when the thread exits), or NULL. */
static scratch_t *scratch_get(void) {
  scratch_t *sc = scratch_mine;
  if (sc) return sc;
  pthread_once(&scratch_once, scratch_key_init);
  if (!(sc = calloc(1, sizeof(*sc)))) return NULL;
  msgpack_sbuffer_init(&sc->out);
  if (scratch_key_ok) pthread_setspecific(scratch_key, sc);
  scratch_mine = sc;
  return sc;
}

static void scratch_trim(scratch_t *sc) {
  for (size_t i = 0; i < ARRAY_LEN(sc->map); i++)
    if (sc->map[i].cap > KEEP_MAP_SLOTS) pl_idmap_free(&sc->map[i]);
  if (sc->set.cap > KEEP_SET_SLOTS) {
    free(sc->set.slots);
    memset(&sc->set, 0, sizeof(sc->set));
  }
  for (size_t i = 0; i < ARRAY_LEN(sc->buf); i++)
    if (sc->cap[i] > KEEP_BYTES) {
      free(sc->buf[i]);
      sc->buf[i] = NULL;
      sc->cap[i] = 0;
    }
  if (sc->out.alloc > KEEP_BYTES) {
    msgpack_sbuffer_destroy(&sc->out);
    msgpack_sbuffer_init(&sc->out);
  }
  sc->out.size = 0;
}

/* At least n bytes of buffer i, contents undefined; NULL when out of memory. */
static void *scratch_buf(scratch_t *sc, int i, size_t n) {
  if (n > sc->cap[i]) {
    size_t cap = sc->cap[i] ? sc->cap[i] : 4096;
    while (cap < n) cap *= 2;
    free(sc->buf[i]);
    sc->cap[i] = 0;
    if (!(sc->buf[i] = malloc(cap))) return NULL;
    sc->cap[i] = cap;
  }
  return sc->buf[i];
}

/* An empty id map: an array indexed by id while the dictionary is small enough, else a
 * hash table. The array lists the ids it holds, so a request that fills few of its slots
 * (a quiet institution, the few kinds or topics of a day) clears and walks only those. */
static pl_idmap_t *scratch_map(scratch_t *sc, int i) {
  /* Capped at the size of map the scratch keeps from one request to the next. */
  uint32_t limit = sc->dense_limit <= KEEP_MAP_SLOTS ? sc->dense_limit : 0;
  if (pl_idmap_dense(&sc->map[i], limit) != 0) pl_idmap_dense(&sc->map[i], 0);
  return &sc->map[i];
}

static pairset_t *scratch_set(scratch_t *sc) {
  if (sc->set.slots) memset(sc->set.slots, 0, (size_t)sc->set.cap * sizeof(*sc->set.slots));
  sc->set.n = 0;
  return &sc->set;
}

/* ---- context, errors, output ---- */

typedef struct outbuf {
  msgpack_sbuffer *sb;
  int oom;
} outbuf_t;

typedef struct qctx qctx_t;

typedef struct op_def {
  const char *name;
  int (*fn)(qctx_t *q);
  int txn;             /* needs a read transaction */
  const char *args[8]; /* accepted arguments besides op and req, NULL-terminated */
} op_def_t;

struct qctx {
  pl_store_t *s;
  const pl_query_env_t *env;
  const msgpack_object *req; /* the request map */
  const op_def_t *op;
  scratch_t *sc;
  pl_rtxn_t *t;
  pl_store_state_t st;
  msgpack_packer pk; /* packs the result */
  outbuf_t out;
  pl_qerr_t code;
  char msg[512];
  int again; /* no_wait and the store was resizing: nothing packed */
};

/* Packing calls are not checked one by one: a failed write marks the buffer, which is then
 * thrown away whole. */
static int out_write(void *data, const char *buf, size_t len) {
  outbuf_t *o = data;
  if (o->oom) return -1;
  if (len == 0) return 0;
  if (msgpack_sbuffer_write(o->sb, buf, len) != 0) {
    o->oom = 1;
    return -1;
  }
  return 0;
}

/* Room for n more bytes at the end of the output, or NULL (and the buffer marked) when
 * out of memory. */
static unsigned char *out_reserve(outbuf_t *o, size_t n) {
  msgpack_sbuffer *sb = o->sb;
  if (o->oom) return NULL;
  if (sb->alloc - sb->size < n) {
    size_t cap = sb->alloc ? sb->alloc : 8192;
    char *p;
    while (cap - sb->size < n) cap *= 2;
    if (!(p = realloc(sb->data, cap))) {
      o->oom = 1;
      return NULL;
    }
    sb->data = p;
    sb->alloc = cap;
  }
  return (unsigned char *)sb->data + sb->size;
}

/* MessagePack str and uint written straight into reserved room (at most 5 + n and 9
 * bytes). The maps of a busy institution hold thousands of entries, and msgpack-c's
 * packer makes three calls through its write callback for each; these two formats are
 * all that loop needs, in their shortest forms as msgpack-c writes them. */
static unsigned char *put_str(unsigned char *o, const char *p, uint32_t n) {
  if (n < 32) {
    *o++ = (unsigned char)(0xa0 | n);
  } else if (n < 256) {
    *o++ = 0xd9;
    *o++ = (unsigned char)n;
  } else if (n < 65536) {
    *o++ = 0xda;
    *o++ = (unsigned char)(n >> 8);
    *o++ = (unsigned char)n;
  } else {
    *o++ = 0xdb;
    pl_be32_put(o, n);
    o += 4;
  }
  memcpy(o, p, n);
  return o + n;
}

static unsigned char *put_uint(unsigned char *o, uint64_t v) {
  if (v < 128) {
    *o++ = (unsigned char)v;
  } else if (v < 256) {
    *o++ = 0xcc;
    *o++ = (unsigned char)v;
  } else if (v < 65536) {
    *o++ = 0xcd;
    *o++ = (unsigned char)(v >> 8);
    *o++ = (unsigned char)v;
  } else if (v <= UINT32_MAX) {
    *o++ = 0xce;
    pl_be32_put(o, (uint32_t)v);
    o += 4;
  } else {
    *o++ = 0xcf;
    pl_be64_put(o, v);
    o += 8;
  }
  return o;
}

__attribute__((format(printf, 3, 4))) static int fail(qctx_t *q, pl_qerr_t code, const char *fmt,
                                                      ...) {
  va_list ap;
  q->code = code;
  va_start(ap, fmt);
  vsnprintf(q->msg, sizeof(q->msg), fmt, ap);
  va_end(ap);
  return QFAIL;
}

static int store_fail(qctx_t *q, int rc) {
  if (rc == PL_ENOMEM) return fail(q, PL_QERR_INTERNAL, "out of memory");
  return fail(q, PL_QERR_INTERNAL, "cannot read the store: %s", pl_strerror(rc));
}

/* Copies a request string into a message as at most QUOTE_MAX bytes of printable UTF-8:
 * control bytes, quotes and bytes that are not UTF-8 become \xNN, so a reply stays one line
 * of valid text whatever the client sent. */
static const char *quote(char *out, size_t cap, const char *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0, i = 0;
  while (i < n && i < QUOTE_MAX && o + 12 < cap) {
    unsigned char c = (unsigned char)p[i];
    size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      out[o++] = (char)c;
      i++;
    } else if (c >= 0x80 && i + len <= n && pl_utf8_valid(p + i, len)) {
      memcpy(out + o, p + i, len);
      o += len;
      i += len;
    } else {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
      i++;
    }
  }
  if (i < n) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
  return out;
}

static void pack_lit(msgpack_packer *pk, const char *s) {
  msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void pack_str(msgpack_packer *pk, pl_str_t s) { msgpack_pack_str_with_body(pk, s.p, s.n); }

static void pack_day(msgpack_packer *pk, uint32_t day) {
  char s[11];
  if (day == PL_AGG_NO_DAY) {
    msgpack_pack_nil(pk);
    return;
  }
  pl_date_format(day, s);
  msgpack_pack_str_with_body(pk, s, PL_DATE_LEN);
}

static int key_is(const msgpack_object *k, const char *name) {
  size_t n = strlen(name);
  return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
         memcmp(k->via.str.ptr, name, n) == 0;
}

/* The value of a request key, nil included; NULL when absent or req is not a map. */
static const msgpack_object *field(const msgpack_object *req, const char *name) {
  if (!req || req->type != MSGPACK_OBJECT_MAP) return NULL;
  for (uint32_t i = 0; i < req->via.map.size; i++)
    if (key_is(&req->via.map.ptr[i].key, name)) return &req->via.map.ptr[i].val;
  return NULL;
}

static int pack_req(msgpack_packer *pk, const msgpack_object *req) {
  const msgpack_object *r = field(req, "req");
  if (msgpack_pack_str_with_body(pk, "req", 3)) return PL_ENOMEM;
  return (r ? msgpack_pack_object(pk, *r) : msgpack_pack_nil(pk)) ? PL_ENOMEM : 0;
}

int pl_query_pack_error(msgpack_packer *pk, const msgpack_object *req, pl_qerr_t code,
                        const char *message) {
  if (msgpack_pack_map(pk, 3) || pack_req(pk, req) || msgpack_pack_str_with_body(pk, "ok", 2) ||
      msgpack_pack_false(pk) || msgpack_pack_str_with_body(pk, "error", 5) ||
      msgpack_pack_map(pk, 2) || msgpack_pack_str_with_body(pk, "code", 4))
    return PL_ENOMEM;
  if (msgpack_pack_str_with_body(pk, pl_query_errcode(code), strlen(pl_query_errcode(code))) ||
      msgpack_pack_str_with_body(pk, "message", 7) ||
      msgpack_pack_str_with_body(pk, message, strlen(message)))
    return PL_ENOMEM;
  return 0;
}

pl_str_t pl_query_op_name(const msgpack_object *req) {
  const msgpack_object *op = field(req, "op");
  if (!op || op->type != MSGPACK_OBJECT_STR) return pl_str("", 0);
  return pl_str(op->via.str.ptr, op->via.str.size);
}

/* A date argument for pl_query_is_light: *day gets it, or def when it is absent or nil.
 * Returns 0, or -1 when it is not a date. */
static int light_date(const msgpack_object *req, const char *name, uint32_t def, uint32_t *day) {
  const msgpack_object *a = field(req, name);
  *day = def;
  if (!a || a->type == MSGPACK_OBJECT_NIL) return 0;
  if (a->type != MSGPACK_OBJECT_STR || pl_date_parse(a->via.str.ptr, a->via.str.size, day))
    return -1;
  return 0;
}

int pl_query_is_light(const msgpack_object *req, const pl_store_info_t *info) {
  pl_str_t op = pl_query_op_name(req);
  const msgpack_object *w;
  uint64_t v = 0;
  if (pl_str_eq(op, "ping") || pl_str_eq(op, "stats")) return 1;
  if (pl_str_eq(op, "pair")) {
    /* One pair-month row a month of its range (and at most two months of day rows), which
     * is the store's whole span unless from or to narrow it. */
    uint32_t d1, d2;
    if (!info || info->stale_months > PL_QUERY_LIGHT_PAIR_STALE ||
        light_date(req, "from", info->first_day, &d1) ||
        light_date(req, "to", info->last_day, &d2))
      return 0;
    if (d1 == PL_AGG_NO_DAY || d2 == PL_AGG_NO_DAY) return d1 == d2; /* an empty store */
    return d2 >= d1 && d2 - d1 < PL_QUERY_LIGHT_PAIR_DAYS;
  }
  if (pl_str_eq(op, "series")) {
    /* Day headers or per-period walks over a range given in full; two filters would make
     * it a scan of the events. */
    const msgpack_object *a = field(req, "from"), *b = field(req, "to");
    const msgpack_object *k = field(req, "kind"), *t = field(req, "topic");
    uint32_t d1, d2;
    if (k && k->type != MSGPACK_OBJECT_NIL && t && t->type != MSGPACK_OBJECT_NIL) return 0;
    if (!a || !b || a->type != MSGPACK_OBJECT_STR || b->type != MSGPACK_OBJECT_STR) return 0;
    if (pl_date_parse(a->via.str.ptr, a->via.str.size, &d1) ||
        pl_date_parse(b->via.str.ptr, b->via.str.size, &d2))
      return 0;
    return d2 >= d1 && d2 - d1 < PL_QUERY_LIGHT_WINDOW;
  }
  if (!pl_str_eq(op, "activity")) return 0;
  /* The window decides the number of months and days read (the default is 30). */
  w = field(req, "window");
  if (!w || w->type == MSGPACK_OBJECT_NIL) return 1;
  if (w->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return w->via.u64 <= PL_QUERY_LIGHT_WINDOW;
  if (w->type != MSGPACK_OBJECT_STR || w->via.str.size == 0 || w->via.str.size > 4) return 0;
  for (uint32_t i = 0; i < w->via.str.size; i++) {
    char ch = w->via.str.ptr[i];
    if (ch < '0' || ch > '9') return 0;
    v = v * 10 + (uint64_t)(ch - '0');
  }
  return v <= PL_QUERY_LIGHT_WINDOW;
}

/* ---- arguments ---- */

/* An argument's value; NULL when absent or nil, so nil means "use the default". */
static const msgpack_object *arg(const qctx_t *q, const char *name) {
  const msgpack_object *v = field(q->req, name);
  return v && v->type != MSGPACK_OBJECT_NIL ? v : NULL;
}

/* A count: a positive msgpack integer or a decimal string (the HTTP layer passes strings).
 * Out of 1..max is bad_request, except above max when big_is_too_large. */
static int arg_uint(qctx_t *q, const char *name, uint64_t def, uint64_t max, int big_is_too_large,
                    uint64_t *out) {
  const msgpack_object *o = arg(q, name);
  uint64_t v = 0;
  char text[32];
  int ok = 1;
  if (!o) {
    *out = def;
    return 0;
  }
  if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
    v = o->via.u64;
    snprintf(text, sizeof(text), "%llu", (unsigned long long)v);
  } else if (o->type == MSGPACK_OBJECT_STR && o->via.str.size > 0) {
    const char *p = o->via.str.ptr;
    uint32_t n = o->via.str.size;
    for (uint32_t i = 0; i < n && ok; i++) {
      if (p[i] < '0' || p[i] > '9')
        ok = 0;
      else
        v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (uint64_t)(p[i] - '0');
    }
    snprintf(text, sizeof(text), "%.*s%s", (int)(n > 20 ? 20 : n), p, n > 20 ? "..." : "");
  } else {
    ok = 0;
  }
  if (!ok || v < 1 || (v > max && !big_is_too_large))
    return fail(q, PL_QERR_BAD_REQUEST, "%s must be an integer 1..%llu", name,
                (unsigned long long)max);
  if (v > max)
    return fail(q, PL_QERR_TOO_LARGE, "%s %s is above %llu", name, text, (unsigned long long)max);
  *out = v;
  return 0;
}

static int arg_date(qctx_t *q, const char *name, uint32_t *day, int *given) {
  const msgpack_object *o = arg(q, name);
  *given = o != NULL;
  if (!o) return 0;
  if (o->type != MSGPACK_OBJECT_STR || pl_date_parse(o->via.str.ptr, o->via.str.size, day) != 0)
    return fail(q, PL_QERR_BAD_REQUEST,
                "%s must be a date YYYY-MM-DD between 1900-01-01 and 2199-12-31", name);
  return 0;
}

static int arg_str(qctx_t *q, const char *name, pl_str_t *s, int *given) {
  const msgpack_object *o = arg(q, name);
  *given = o != NULL;
  *s = pl_str("", 0);
  if (!o) return 0;
  if (o->type != MSGPACK_OBJECT_STR)
    return fail(q, PL_QERR_BAD_REQUEST, "%s must be a string", name);
  *s = pl_str(o->via.str.ptr, o->via.str.size);
  return 0;
}

static int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* An institution name, trimmed as the record rules trim it when it is stored. */
static int arg_name(qctx_t *q, const char *name, pl_str_t *s, int *given) {
  int rc = arg_str(q, name, s, given);
  if (rc) return rc;
  while (s->n > 0 && is_space(s->p[s->n - 1])) s->n--;
  while (s->n > 0 && is_space(*s->p)) s->p++, s->n--;
  if (*given && s->n == 0) return fail(q, PL_QERR_BAD_REQUEST, "%s must not be empty", name);
  return 0;
}

static int arg_choice(qctx_t *q, const char *name, const char *const *choices, int def,
                      const char *rule, int *out) {
  pl_str_t s;
  int given, rc = arg_str(q, name, &s, &given);
  if (rc) return rc;
  *out = def;
  if (!given) return 0;
  for (int i = 0; choices[i]; i++)
    if (pl_str_eq(s, choices[i])) {
      *out = i;
      return 0;
    }
  return fail(q, PL_QERR_BAD_REQUEST, "%s must be one of %s", name, rule);
}

/* [as_of - window + 1, as_of], clamped at day 0. *none is set when as_of has to default
 * and the store holds no events. */
static int arg_window(qctx_t *q, uint32_t *from, uint32_t *to, uint32_t *window, int *none) {
  uint64_t w;
  int given, rc;
  if ((rc = arg_uint(q, "window", 30, PL_QUERY_MAX_WINDOW, 0, &w))) return rc;
  if ((rc = arg_date(q, "as_of", to, &given))) return rc;
  *window = (uint32_t)w;
  *none = !given && q->st.last_day == PL_AGG_NO_DAY;
  if (*none) return 0;
  if (!given) *to = q->st.last_day;
  *from = *to >= *window - 1 ? *to - (*window - 1) : 0;
  return 0;
}

/* from and to, defaulting to the first and the latest event date. */
static int arg_range(qctx_t *q, uint32_t *from, uint32_t *to, int *none) {
  char a[11], b[11];
  int gf, gt, rc;
  if ((rc = arg_date(q, "from", from, &gf)) || (rc = arg_date(q, "to", to, &gt))) return rc;
  *none = (!gf || !gt) && q->st.first_day == PL_AGG_NO_DAY;
  if (*none) return 0;
  if (!gf) *from = q->st.first_day;
  if (!gt) *to = q->st.last_day;
  if (*from <= *to) return 0;
  pl_date_format(*from, a);
  pl_date_format(*to, b);
  return fail(q, PL_QERR_BAD_REQUEST, "from %s%s is after to %s%s", a,
              gf ? "" : " (the first event date)", b, gt ? "" : " (the latest event date)");
}

/* An institution is known when it reported an event or was named as a counterpart. */
static int find_inst(qctx_t *q, pl_str_t name, uint32_t *id) {
  pl_store_inst_t info;
  char qs[QUOTE_MAX * 4 + 16];
  int rc = name.n > MAX_KEY ? PL_ENOTFOUND : pl_store_id(q->t, name.p, name.n, id);
  if (rc == 0) rc = pl_store_inst(q->t, *id, &info);
  if (rc == PL_ENOTFOUND)
    return fail(q, PL_QERR_NOT_FOUND, "institution \"%s\" not found",
                quote(qs, sizeof(qs), name.p, name.n));
  return rc ? store_fail(q, rc) : 0;
}

/* Dictionary id of a filter value; 0 when the store never saw it (nothing can match). */
static int find_word(qctx_t *q, pl_str_t s, uint32_t *id) {
  int rc = pl_store_id(q->t, s.p, s.n, id);
  if (rc == PL_ENOTFOUND) *id = 0;
  return rc == PL_ENOTFOUND ? 0 : rc;
}

/* ---- cursors of paged ops: a letter naming the table, then the last key in hex ---- */

static void cursor_text(char *out, char tag, const unsigned char *key, size_t n) {
  static const char hex[] = "0123456789abcdef";
  out[0] = tag;
  for (size_t i = 0; i < n; i++) {
    out[1 + 2 * i] = hex[key[i] >> 4];
    out[2 + 2 * i] = hex[key[i] & 15];
  }
  out[1 + 2 * n] = '\0';
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Reads the after argument into key[0..n). Returns 1 when given, 0 when absent. */
static int arg_cursor(qctx_t *q, char tag, unsigned char *key, size_t n) {
  const msgpack_object *o = arg(q, "after");
  if (!o) return 0;
  if (o->type != MSGPACK_OBJECT_STR || o->via.str.size != 1 + 2 * n || o->via.str.ptr[0] != tag)
    goto bad;
  for (size_t i = 0; i < n; i++) {
    int hi = hexval(o->via.str.ptr[1 + 2 * i]), lo = hexval(o->via.str.ptr[2 + 2 * i]);
    if (hi < 0 || lo < 0) goto bad;
    key[i] = (unsigned char)(hi << 4 | lo);
  }
  return 1;
bad:
  return fail(q, PL_QERR_BAD_REQUEST, "after must be a cursor from a previous %s reply",
              q->op->name);
}

/* Adds one to a big-endian key. Returns 1 when it wrapped (there is no next key). */
static int key_inc(unsigned char *key, size_t n) {
  for (size_t i = n; i-- > 0;)
    if (++key[i] != 0) return 0;
  return 1;
}

/* ---- walking aggregates over a day range ---- */

/* neg: take v away (walk_t.subtract only). */
typedef int (*visit_fn)(void *arg, const pl_agg_view_t *v, int is_month, uint32_t key, int neg);

typedef struct walk {
  pl_rtxn_t *t;
  int pair;       /* pairs tables instead of days and months */
  uint32_t a, b;  /* the institution (a), or the pair */
  uint32_t month; /* month of the cached month aggregate, UINT32_MAX when none */
  int month_found;
  uint32_t month_first, month_last;
  uint64_t month_events;
  int subtract; /* the visitor takes neg pieces: edge days may be read as month minus days */
} walk_t;

static void walk_init(walk_t *w, pl_rtxn_t *t, int pair, uint32_t a, uint32_t b) {
  w->t = t;
  w->pair = pair;
  w->a = a;
  w->b = b;
  w->month = UINT32_MAX;
  w->month_found = 0;
  w->month_first = w->month_last = 0;
  w->month_events = 0;
  w->subtract = 0;
}

static int walk_get(walk_t *w, int months, uint32_t period, pl_agg_view_t *v) {
  return w->pair ? pl_store_pair(w->t, months, period, w->a, w->b, v)
                 : pl_store_agg(w->t, months, period, w->a, v);
}

/* Covers [from, to] with whole months and edge days (pl_agg_cover), except that a month
 * whose rollups are stale is covered by its days. *out is buf, or a malloc'd array the
 * caller frees when it is not buf. Returns the count, or a negative error. */
static ssize_t cover_fresh(pl_rtxn_t *t, uint32_t from, uint32_t to, pl_agg_piece_t *buf,
                           size_t cap, pl_agg_piece_t **out) {
  pl_agg_piece_t *p = buf;
  size_t n = pl_agg_cover(from, to, buf, cap), total = 0;
  if (n > cap) {
    if (!(p = malloc(n * sizeof(*p)))) return PL_ENOMEM;
    pl_agg_cover(from, to, p, n);
  }
  for (size_t i = 0; i < n; i++)
    total += p[i].is_month && pl_store_month_stale(t, p[i].key)
                 ? (size_t)pl_date_month_len(p[i].key)
                 : 1;
  if (total != n) {
    pl_agg_piece_t *q = malloc(total * sizeof(*q));
    size_t j = 0;
    if (!q) {
      if (p != buf) free(p);
      return PL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
      if (p[i].is_month && pl_store_month_stale(t, p[i].key)) {
        uint32_t d = pl_date_month_first(p[i].key);
        for (int k = 0; k < pl_date_month_len(p[i].key); k++) q[j++] = (pl_agg_piece_t){.is_month = 0, .key = d + k};
      } else {
        q[j++] = p[i];
      }
    }
    if (p != buf) free(p);
    p = q;
  }
  *out = p;
  return (ssize_t)total;
}

/* Rewrites p[0..n) in place: a run of edge days that is most of a fresh month becomes the
 * month followed by its other days, negated. A month row costs about what a few day rows
 * do, and a busy institution's day rows are long, so this reads fewer entries; the rewrite
 * is made only where it shortens the list. Returns the new count. */
static size_t subtract_edges(pl_rtxn_t *t, pl_agg_piece_t *p, size_t n) {
  size_t out = 0;
  for (size_t i = 0, j; i < n; i = j) {
    uint32_t m = pl_date_month(p[i].key), first, len;
    j = i + 1;
    if (p[i].is_month) {
      p[out++] = p[i];
      continue;
    }
    while (j < n && !p[j].is_month && pl_date_month(p[j].key) == m) j++;
    first = pl_date_month_first(m);
    len = (uint32_t)pl_date_month_len(m);
    /* A whole month of days is a stale month spelled out by cover_fresh. */
    if (j - i >= len || (j - i) * 2 <= len + 4 || pl_store_month_stale(t, m)) {
      memmove(&p[out], &p[i], (j - i) * sizeof(*p));
      out += j - i;
      continue;
    }
    {
      uint32_t lo = p[i].key, hi = p[j - 1].key; /* the run, inside the month */
      assert(out + 1 + (len - (j - i)) < j);    /* the rewrite never overtakes the reads */
      p[out++] = (pl_agg_piece_t){.is_month = 1, .key = m};
      for (uint32_t d = first; d < first + len; d++)
        if (d < lo || d > hi) p[out++] = (pl_agg_piece_t){.is_month = 0, .key = d, .neg = 1};
    }
  }
  return out;
}

/* Keeps what walk_get(months, m) found (rc 0, PL_ENOTFOUND or PL_ESTALE) for the day
 * checks of walk_range and for op_activity. */
static void month_keep(walk_t *w, uint32_t m, int rc, const pl_agg_view_t *v) {
  w->month = m;
  w->month_found = rc != PL_ENOTFOUND;
  w->month_events = rc == 0 ? v->events : 0;
  if (rc == 0) {
    w->month_first = v->first_day;
    w->month_last = v->last_day;
  } else if (rc == PL_ESTALE) {
    /* A stale month may have events anywhere: read every day asked for. */
    w->month_first = 0;
    w->month_last = UINT32_MAX;
  }
}

/* Visits the aggregates that count [from, to] exactly: whole months from the month table,
 * edge days from the day table. An edge day is read only when its month's aggregate has an
 * event between its first and last day, which spares most reads for quiet institutions. */
static int walk_range(walk_t *w, uint32_t from, uint32_t to, visit_fn fn, void *arg) {
  pl_agg_piece_t buf[64], *p = buf;
  pl_agg_view_t v;
  ssize_t cnt = cover_fresh(w->t, from, to, buf, ARRAY_LEN(buf), &p);
  size_t n;
  int rc = 0;
  if (cnt < 0) return (int)cnt;
  n = w->subtract ? subtract_edges(w->t, p, (size_t)cnt) : (size_t)cnt;
  for (size_t i = 0; i < n && rc == 0; i++) {
    uint32_t key = p[i].key;
    if (!p[i].is_month) {
      uint32_t m = pl_date_month(key);
      if (m != w->month) {
        rc = walk_get(w, 1, m, &v);
        if (rc && rc != PL_ENOTFOUND && rc != PL_ESTALE) break;
        month_keep(w, m, rc, &v);
        rc = 0;
      }
      if (!w->month_found || key < w->month_first || key > w->month_last) continue;
    }
    rc = walk_get(w, p[i].is_month, key, &v);
    /* A month read whole also answers its days' check (subtract_edges puts them after it). */
    if (p[i].is_month && (rc == 0 || rc == PL_ENOTFOUND)) month_keep(w, key, rc, &v);
    if (rc == 0)
      rc = fn(arg, &v, p[i].is_month, key, p[i].neg);
    else if (rc == PL_ENOTFOUND)
      rc = 0;
  }
  if (p != buf) free(p);
  return rc;
}

/* ---- ranking: value desc, then name ---- */

/* A row to rank, kept to 32 bytes: sorting moves whole rows. */
typedef struct rank {
  uint64_t value;
  uint64_t prefix; /* the name's first 8 bytes, big-endian: most comparisons end there */
  const char *name;
  uint32_t name_n;
  uint32_t id;
} rank_t;

/* Answer order: value desc, then name (bytes). */
static int rank_before(const rank_t *a, const rank_t *b) {
  size_t n = a->name_n < b->name_n ? a->name_n : b->name_n;
  int c;
  if (a->value != b->value) return a->value > b->value;
  if (a->prefix != b->prefix) return a->prefix < b->prefix;
  c = n ? memcmp(a->name, b->name, n) : 0;
  return c ? c < 0 : a->name_n < b->name_n;
}

static int rank_less(const rank_t *a, const rank_t *b, int by_id) {
  return by_id ? a->id < b->id : rank_before(a, b);
}

/* Sorts r[0..n) by id or in answer order, using tmp (n rows): insertion sort of short
 * runs, then merges. qsort's comparator calls and its own allocations cost more than the
 * comparisons on the thousand-entry maps a busy institution has. */
static void rank_sort(rank_t *r, rank_t *tmp, size_t n, int by_id) {
  rank_t *src = r, *dst = tmp;
  size_t sorted = 1;
  /* Rows taken from an array-backed id map come in id order already. */
  while (sorted < n && !rank_less(&r[sorted], &r[sorted - 1], by_id)) sorted++;
  if (sorted >= n) return;
  for (size_t lo = 0; lo < n; lo += 16) {
    size_t hi = lo + 16 < n ? lo + 16 : n;
    for (size_t i = lo + 1; i < hi; i++) {
      rank_t x = r[i];
      size_t j = i;
      for (; j > lo && rank_less(&x, &r[j - 1], by_id); j--) r[j] = r[j - 1];
      r[j] = x;
    }
  }
  for (size_t w = 16; w < n; w *= 2) {
    rank_t *t;
    for (size_t lo = 0; lo < n; lo += 2 * w) {
      size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) dst[k++] = rank_less(&src[j], &src[i], by_id) ? src[j++] : src[i++];
      while (i < mid) dst[k++] = src[i++];
      while (j < hi) dst[k++] = src[j++];
    }
    t = src;
    src = dst;
    dst = t;
  }
  if (src != r) memcpy(r, src, n * sizeof(*r));
}

/* The key radix_sort orders by: ~value (value desc), or the prefix field. */
static inline uint64_t radix_key(const rank_t *x, int by_prefix) {
  return by_prefix ? x->prefix : ~x->value;
}

/* Stable LSD radix sort of r[0..n) by radix_key ascending, a byte at a time, skipping the
 * bytes every key shares; tmp holds n rows. */
static void radix_sort(rank_t *r, rank_t *tmp, size_t n, int by_prefix) {
  uint64_t any = 0, all = ~(uint64_t)0, vary;
  rank_t *src = r, *dst = tmp;
  for (size_t i = 0; i < n; i++) {
    any |= radix_key(&r[i], by_prefix);
    all &= radix_key(&r[i], by_prefix);
  }
  vary = any ^ all;
  for (int shift = 0; shift < 64; shift += 8) {
    size_t at[256] = {0}, sum = 0;
    rank_t *t;
    if (!((vary >> shift) & 0xff)) continue;
    for (size_t i = 0; i < n; i++) at[(radix_key(&src[i], by_prefix) >> shift) & 0xff]++;
    for (int d = 0; d < 256; d++) {
      size_t c = at[d];
      at[d] = sum;
      sum += c;
    }
    for (size_t i = 0; i < n; i++)
      dst[at[(radix_key(&src[i], by_prefix) >> shift) & 0xff]++] = src[i];
    t = src;
    src = dst;
    dst = t;
  }
  if (src != r) memcpy(r, src, n * sizeof(*r));
}

/* Answer order in two steps: a stable radix sort by value desc, then each run of equal
 * values by name. A busy institution's map has thousands of rows and few ties past the
 * small counts, so most rows never have their names compared. */
static void rank_sort_answer(rank_t *r, rank_t *tmp, size_t n) {
  if (n < 64) {
    rank_sort(r, tmp, n, 0);
    return;
  }
  radix_sort(r, tmp, n, 0);
  for (size_t i = 0, j; i < n; i = j) {
    for (j = i + 1; j < n && r[j].value == r[i].value;) j++;
    if (j - i > 1) rank_sort(r + i, tmp, j - i, 0);
  }
}

static void rank_swap(rank_t *a, rank_t *b) {
  rank_t t = *a;
  *a = *b;
  *b = t;
}

/* The k-th largest value of r[0..n) (k from 0), reordering r: a selection with a three-way
 * partition, since counts tie a lot. */
static uint64_t rank_kth(rank_t *r, size_t n, size_t k) {
  size_t lo = 0, hi = n;
  while (hi - lo > 1) {
    uint64_t pivot = r[lo + (hi - lo) / 2].value;
    size_t lt = lo, i = lo, gt = hi;
    while (i < gt) {
      if (r[i].value > pivot)
        rank_swap(&r[lt++], &r[i++]);
      else if (r[i].value < pivot)
        rank_swap(&r[i], &r[--gt]);
      else
        i++;
    }
    if (k < lt)
      hi = lt;
    else if (k >= gt)
      lo = gt;
    else
      return pivot;
  }
  return r[lo].value;
}

/* Rows of an id map for ranking: the participants counter or the events one, without the
 * zeros when skip_zero, in scratch buffer 0. */
static int rank_from_map(scratch_t *sc, const pl_idmap_t *m, int parts, int skip_zero, rank_t **out,
                         size_t *n) {
  rank_t *r = scratch_buf(sc, 0, (m->n ? m->n : 1) * sizeof(*r));
  size_t k = 0;
  const pl_agg_entry_t *e;
  if (!r) return PL_ENOMEM;
  for (uint32_t pos = 0; (e = pl_idmap_next(m, &pos));) {
    uint64_t v = parts ? e->participants : e->events;
    if (skip_zero && v == 0) continue;
    r[k].id = e->id;
    r[k].value = v;
    k++;
  }
  *out = r;
  *n = k;
  return 0;
}

/* Reads the names of r[0..m) in id order: the names table is keyed by id, so one cursor
 * steps from one wanted name to the next, seeking only across wide gaps. */
static int rank_names(pl_rtxn_t *t, rank_t *r, rank_t *tmp, size_t m) {
  pl_cursor_t *c;
  pl_str_t k, v;
  uint32_t at = 0;
  int rc;
  rank_sort(r, tmp, m, 1);
  if ((rc = pl_store_cursor_open(t, PL_TAB_NAMES, &c))) return rc;
  for (size_t i = 0; i < m && rc == 0; i++) {
    unsigned char key[4], pre[8] = {0};
    if (i > 0 && r[i].id > at && r[i].id - at <= 16) {
      while (rc == 0 && at < r[i].id) {
        rc = pl_store_cursor_next(c, &k, &v);
        at = rc == 0 && k.n == 4 ? pl_be32_get((const unsigned char *)k.p) : UINT32_MAX;
      }
    } else {
      pl_be32_put(key, r[i].id);
      rc = pl_store_cursor_seek(c, key, 4, &k, &v);
      at = rc == 0 && k.n == 4 ? pl_be32_get((const unsigned char *)k.p) : UINT32_MAX;
    }
    if (rc == PL_ENOTFOUND || (rc == 0 && at != r[i].id)) rc = PL_ECORRUPT;
    if (rc == 0) {
      memcpy(pre, v.p, v.n < 8 ? v.n : 8);
      r[i].prefix = pl_be64_get(pre);
      r[i].name = v.p;
      r[i].name_n = v.n;
    }
  }
  pl_store_cursor_close(c);
  return rc;
}

/* Drops the dictionary tables of sc. */
static void dict_drop(scratch_t *sc) {
  free(sc->rank);
  free(sc->byrank);
  free(sc->names);
  free(sc->name_off);
  free(sc->name_len);
  sc->rank = sc->byrank = sc->name_off = sc->name_len = NULL;
  sc->names = NULL;
  sc->rank_next = sc->nranked = 0;
}

/* Each id's place in name order for the snapshot of q, or NULL when the dictionary is
 * too large to keep one (ranking then compares names); with it, when they fit, the names
 * by id (sc->names). The dictionary only grows and a name never changes its id, so tables
 * built for a snapshot of the same store with the same next id are the same tables: they
 * are kept across requests and rebuilt when names are added. One scan of the dict table
 * (name -> id, in name order) gives both. */
static int names_kept(const qctx_t *q) {
  const scratch_t *sc = q->sc;
  return sc->rank && sc->rank_next == q->st.next_id && sc->rank_store == pl_store_instance(q->s);
}

static const uint32_t *name_ranks(qctx_t *q) {
  scratch_t *sc = q->sc;
  uint32_t next = q->st.next_id, i = 0;
  size_t bytes = 0, used = 0;
  pl_cursor_t *c;
  pl_str_t k, v;
  int rc;
  if (next == 0 || next > KEEP_MAP_SLOTS) return NULL;
  if (names_kept(q)) return sc->rank;
  dict_drop(sc);
  if (!(sc->rank = malloc(next * sizeof(*sc->rank))) ||
      !(sc->byrank = malloc(next * sizeof(*sc->byrank))) ||
      !(sc->name_off = malloc(next * sizeof(*sc->name_off))) ||
      !(sc->name_len = calloc(next, sizeof(*sc->name_len))))
    goto fail;
  memset(sc->rank, 0xff, next * sizeof(*sc->rank));
  if (pl_store_cursor_open(q->t, PL_TAB_DICT, &c)) goto fail;
  for (rc = pl_store_cursor_first(c, &k, &v); rc == 0; rc = pl_store_cursor_next(c, &k, &v)) {
    uint32_t id = v.n == 4 ? pl_be32_get((const unsigned char *)v.p) : UINT32_MAX;
    /* not this snapshot's dictionary; or more names than ids, or one id twice: damaged */
    if (id >= next || i >= next || sc->rank[id] != UINT32_MAX) break;
    sc->byrank[i] = id;
    sc->rank[id] = i++;
    bytes += k.n;
  }
  /* A second pass copies the names, now that their size is known. */
  if (rc == PL_ENOTFOUND && bytes <= KEEP_BYTES && (sc->names = malloc(bytes ? bytes : 1))) {
    for (rc = pl_store_cursor_first(c, &k, &v); rc == 0 && used + k.n <= bytes;
         rc = pl_store_cursor_next(c, &k, &v)) {
      uint32_t id = pl_be32_get((const unsigned char *)v.p);
      memcpy(sc->names + used, k.p, k.n);
      sc->name_off[id] = (uint32_t)used;
      sc->name_len[id] = (uint32_t)k.n;
      used += k.n;
    }
    if (rc != PL_ENOTFOUND) {
      free(sc->names);
      sc->names = NULL;
    }
    rc = PL_ENOTFOUND;
  }
  pl_store_cursor_close(c);
  if (rc != PL_ENOTFOUND) goto fail;
  sc->rank_next = next;
  sc->nranked = i;
  sc->rank_store = pl_store_instance(q->s);
  return sc->rank;
fail:
  dict_drop(sc);
  return NULL;
}

/* Fills the names of r[0..m) from the kept copies. Returns 0, or -1 when an id has none
 * (the store is damaged: rank_names says so). */
static int names_cached(const scratch_t *sc, rank_t *r, size_t m) {
  for (size_t i = 0; i < m; i++)
    if (r[i].id >= sc->rank_next || sc->rank[r[i].id] == UINT32_MAX) return -1;
  for (size_t i = 0; i < m; i++) {
    unsigned char pre[8] = {0};
    uint32_t n = sc->name_len[r[i].id];
    r[i].name = sc->names + sc->name_off[r[i].id];
    r[i].name_n = n;
    memcpy(pre, r[i].name, n < 8 ? n : 8);
    r[i].prefix = pl_be64_get(pre);
  }
  return 0;
}

/* Answer order by one integer key a row: value desc, then place in name order. Returns 0,
 * or -1 (r untouched) when a value or an id does not fit the key. */
static int rank_sort_ranked(rank_t *r, rank_t *tmp, size_t n, const uint32_t *rank,
                            uint32_t nranks) {
  /* Checked first: the fallback needs the name prefixes this overwrites. */
  for (size_t i = 0; i < n; i++)
    if (r[i].value > UINT32_MAX || r[i].id >= nranks || rank[r[i].id] == UINT32_MAX) return -1;
  for (size_t i = 0; i < n; i++)
    r[i].prefix = (uint64_t)(UINT32_MAX - r[i].value) << 32 | rank[r[i].id];
  radix_sort(r, tmp, n, 1);
  return 0;
}

/* Puts the first min(n, limit) rows of r in answer order; *out gets how many. Names are
 * read only for rows whose value reaches the limit-th value: a row below it cannot be in
 * the answer whatever its name. */
static int rank_order(qctx_t *q, rank_t *r, size_t n, size_t limit, size_t *out) {
  const uint32_t *ranks;
  rank_t *tmp;
  size_t m = n;
  int rc;
  if (n > limit) {
    uint64_t cut = rank_kth(r, n, limit - 1);
    m = 0;
    for (size_t i = 0; i < n; i++)
      if (r[i].value >= cut) rank_swap(&r[m++], &r[i]);
  }
  if (!(tmp = scratch_buf(q->sc, 2, (m ? m : 1) * sizeof(*tmp)))) return PL_ENOMEM;
  /* A few rows are not worth building the tables for, but once kept they are the cheapest
   * way to every size: reading names from the store touches a page or two per row. */
  ranks = m >= 64 || names_kept(q) ? name_ranks(q) : NULL;
  if ((!ranks || !q->sc->names || names_cached(q->sc, r, m)) &&
      (rc = rank_names(q->t, r, tmp, m)))
    return rc;
  if (!ranks || rank_sort_ranked(r, tmp, m, ranks, q->st.next_id)) rank_sort_answer(r, tmp, m);
  *out = m < limit ? m : limit;
  return 0;
}

/* Stable LSD radix sort of a[0..n) ascending by the bits from bit `low` up (the bits
 * below keep their order among equal keys), a byte at a time, skipping the bytes every
 * value shares; low is a multiple of 8; tmp holds n values. Below 32 values an insertion
 * sort: each radix pass clears and sums 256 counters, which costs more than sorting a
 * section of kinds or formats (measured: 13% of a quiet institution's activity). */
static void radix_sort_u64(uint64_t *a, uint64_t *tmp, size_t n, int low) {
  uint64_t any = 0, all = ~(uint64_t)0, vary, *src = a, *dst = tmp, *t;
  if (n < 32) {
    for (size_t i = 1; i < n; i++) {
      uint64_t x = a[i];
      size_t j = i;
      for (; j > 0 && a[j - 1] >> low > x >> low; j--) a[j] = a[j - 1];
      a[j] = x;
    }
    return;
  }
  for (size_t i = 0; i < n; i++) {
    any |= a[i];
    all &= a[i];
  }
  vary = any ^ all;
  for (int shift = low; shift < 64; shift += 8) {
    size_t at[256] = {0}, sum = 0;
    if (!((vary >> shift) & 0xff)) continue;
    for (size_t i = 0; i < n; i++) at[(src[i] >> shift) & 0xff]++;
    for (int d = 0; d < 256; d++) {
      size_t c = at[d];
      at[d] = sum;
      sum += c;
    }
    for (size_t i = 0; i < n; i++) dst[at[(src[i] >> shift) & 0xff]++] = src[i];
    t = src;
    src = dst;
    dst = t;
  }
  if (src != a) memcpy(a, src, n * sizeof(*a));
}

/* pack_counts with the kept name tables of q's snapshot: each entry's place in the answer
 * is one integer (value desc in the high half, place in name order in the low), so the
 * sort moves 8 bytes an entry, and names are read by id only as they are packed. Returns
 * 0, an error, or 1 with nothing packed when an entry does not fit that key. */
static int pack_counts_kept(qctx_t *q, const pl_idmap_t *m, int parts, int skip_zero) {
  scratch_t *sc = q->sc;
  const uint32_t *rank = sc->rank;
  uint64_t *key = scratch_buf(sc, 0, (m->n ? m->n : 1) * sizeof(*key));
  uint64_t *tmp = scratch_buf(sc, 2, (m->n ? m->n : 1) * sizeof(*tmp));
  size_t n = 0, need = 0;
  int low = 0;
  unsigned char *o;
  if (!key || !tmp) return PL_ENOMEM;
  if (m->dense && (uint64_t)m->n * 4 >= sc->nranked) {
    /* A quarter of the dictionary or more: read the array in name order, so that the keys
     * come out sorted by name and the sort need only order the values (two radix passes,
     * not four); a walk of the whole name table costs less than the two passes saved. */
    size_t seen = 0;
    for (uint32_t r = 0; r < sc->nranked; r++) {
      uint32_t id = sc->byrank[r];
      const pl_agg_entry_t *e = id < m->cap ? &m->slots[id] : NULL;
      uint64_t v;
      if (!e || !e->id) continue;
      seen++;
      v = parts ? e->participants : e->events;
      if (skip_zero && v == 0) continue;
      if (v > UINT32_MAX) return 1;
      key[n++] = (uint64_t)(UINT32_MAX - v) << 32 | r;
      need += sc->name_len[id] + 5 + 9;
    }
    /* An id with no name: pack_counts ranks by reading names, which reports the damage. */
    if (seen != m->n) return 1;
    low = 32;
  } else {
    const pl_agg_entry_t *e;
    for (uint32_t pos = 0; (e = pl_idmap_next(m, &pos));) {
      uint64_t v = parts ? e->participants : e->events;
      if (skip_zero && v == 0) continue;
      if (v > UINT32_MAX || e->id >= sc->rank_next || rank[e->id] == UINT32_MAX) return 1;
      key[n++] = (uint64_t)(UINT32_MAX - v) << 32 | rank[e->id];
      need += sc->name_len[e->id] + 5 + 9;
    }
  }
  radix_sort_u64(key, tmp, n, low);
  msgpack_pack_map(&q->pk, (uint32_t)n);
  if (!(o = out_reserve(&q->out, need))) return 0; /* out.oom: the reply is thrown away */
  for (size_t i = 0; i < n; i++) {
    uint32_t id = sc->byrank[(uint32_t)key[i]];
    o = put_str(o, sc->names + sc->name_off[id], sc->name_len[id]);
    o = put_uint(o, UINT32_MAX - (key[i] >> 32));
  }
  q->out.sb->size = (size_t)((char *)o - q->out.sb->data);
  return 0;
}

/* Packs {name: count} for every entry of m, by count desc then name. */
static int pack_counts(qctx_t *q, const pl_idmap_t *m, int parts, int skip_zero) {
  rank_t *r;
  size_t n, k;
  int rc;
  /* The tables are worth building for 64 entries; once kept, they serve every size. */
  if ((m->n >= 64 || names_kept(q)) && name_ranks(q) && q->sc->names &&
      (rc = pack_counts_kept(q, m, parts, skip_zero)) <= 0)
    return rc;
  rc = rank_from_map(q->sc, m, parts, skip_zero, &r, &n);
  if (rc == 0) rc = rank_order(q, r, n, n, &k);
  if (rc == 0) {
    size_t need = 0;
    unsigned char *o;
    msgpack_pack_map(&q->pk, (uint32_t)k);
    for (size_t i = 0; i < k; i++) need += r[i].name_n + 5 + 9;
    if (!(o = out_reserve(&q->out, need))) return 0; /* out.oom: the reply is thrown away */
    for (size_t i = 0; i < k; i++) {
      o = put_str(o, r[i].name, r[i].name_n);
      o = put_uint(o, r[i].value);
    }
    q->out.sb->size = (size_t)((char *)o - q->out.sb->data);
  }
  return rc;
}

/* "from" and "to" of a window (nil when the store has no events to default them from). */
static void pack_span(msgpack_packer *pk, int none, uint32_t from, uint32_t to) {
  pack_lit(pk, "from");
  pack_day(pk, none ? PL_AGG_NO_DAY : from);
  pack_lit(pk, "to");
  pack_day(pk, none ? PL_AGG_NO_DAY : to);
}

/* "rows": [{name_key: name, value_key: value}, ...] of ranked rows, in order. */
static void pack_rows(msgpack_packer *pk, const rank_t *r, size_t k, const char *name_key,
                      const char *value_key) {
  pack_lit(pk, "rows");
  msgpack_pack_array(pk, (uint32_t)k);
  for (size_t i = 0; i < k; i++) {
    msgpack_pack_map(pk, 2);
    pack_lit(pk, name_key);
    msgpack_pack_str_with_body(pk, r[i].name, r[i].name_n);
    pack_lit(pk, value_key);
    msgpack_pack_uint64(pk, r[i].value);
  }
}

/* ---- scanning events ---- */

/* Walks the events table over [from, to] in key order, from the key lo on. With an
 * institution, each day is one seek to (day, inst), and months whose aggregate shows no
 * event of it, or days outside its first..last day there, are skipped without a read. */
typedef struct evscan {
  pl_rtxn_t *t;
  pl_cursor_t *c;
  uint32_t inst; /* 0: every institution */
  uint32_t to;
  unsigned char lo[16];
  uint32_t day;
  int started, in_day, done;
  uint32_t month, month_first, month_last;
  int month_found;
} evscan_t;

static void evscan_init(evscan_t *e, pl_rtxn_t *t, pl_cursor_t *c, uint32_t from, uint32_t to,
                        uint32_t inst, const unsigned char *after) {
  memset(e, 0, sizeof(*e));
  e->t = t;
  e->c = c;
  e->inst = inst;
  e->to = to;
  e->month = UINT32_MAX;
  pl_key_event(e->lo, from, 0, 0);
  if (after) {
    unsigned char next[16];
    memcpy(next, after, 16);
    if (key_inc(next, 16))
      e->done = 1;
    else if (memcmp(next, e->lo, 16) > 0)
      memcpy(e->lo, next, 16);
  }
  e->day = pl_be32_get(e->lo);
}

static int same_day_inst(pl_str_t k, uint32_t day, uint32_t inst) {
  return k.n == 16 && pl_be32_get((const unsigned char *)k.p) == day &&
         pl_be32_get((const unsigned char *)k.p + 4) == inst;
}

/* Returns 0 with the next event, PL_ENOTFOUND past the end, or an error. */
static int evscan_next(evscan_t *e, pl_str_t *k, pl_str_t *v) {
  unsigned char key[16];
  pl_agg_view_t mv;
  int rc;
  if (e->done) return PL_ENOTFOUND;
  if (!e->inst) {
    if (e->started)
      rc = pl_store_cursor_next(e->c, k, v);
    else
      rc = pl_store_cursor_seek(e->c, e->lo, 16, k, v);
    e->started = 1;
    if (rc == 0 && k->n != 16) return PL_ECORRUPT;
    if (rc == 0 && pl_be32_get((const unsigned char *)k->p) > e->to) rc = PL_ENOTFOUND;
    if (rc == PL_ENOTFOUND) e->done = 1;
    return rc;
  }
  if (e->in_day) {
    rc = pl_store_cursor_next(e->c, k, v);
    if (rc == 0 && same_day_inst(*k, e->day, e->inst)) return 0;
    if (rc && rc != PL_ENOTFOUND) return rc;
    e->in_day = 0;
    e->day++;
  }
  while (e->day <= e->to) {
    uint32_t m = pl_date_month(e->day);
    if (m != e->month) {
      rc = pl_store_agg(e->t, 1, m, e->inst, &mv);
      if (rc && rc != PL_ENOTFOUND && rc != PL_ESTALE) return rc;
      e->month = m;
      e->month_found = rc != PL_ENOTFOUND;
      if (rc == 0) {
        e->month_first = mv.first_day;
        e->month_last = mv.last_day;
      } else if (rc == PL_ESTALE) { /* unknown until folded: look at every day */
        e->month_first = pl_date_month_first(m);
        e->month_last = e->month_first + (uint32_t)pl_date_month_len(m) - 1;
      }
    }
    if (!e->month_found || e->day > e->month_last) {
      e->day = pl_date_month_first(m) + (uint32_t)pl_date_month_len(m);
      continue;
    }
    if (e->day < e->month_first) e->day = e->month_first;
    if (e->day > e->to) break;
    pl_key_event(key, e->day, e->inst, 0);
    if (memcmp(key, e->lo, 16) < 0) memcpy(key, e->lo, 16);
    rc = pl_store_cursor_seek(e->c, key, 16, k, v);
    if (rc && rc != PL_ENOTFOUND) return rc;
    if (rc == 0 && same_day_inst(*k, e->day, e->inst)) {
      e->in_day = 1;
      return 0;
    }
    e->day++;
  }
  e->done = 1;
  return PL_ENOTFOUND;
}

typedef struct filt {
  int has_kind, has_topic, has_format;
  pl_str_t kind, topic, format;
} filt_t;

static int str_same(pl_str_t a, pl_str_t b) {
  return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static int rec_match(const pl_record_t *r, const filt_t *f) {
  int found = !f->has_topic;
  if (f->has_kind && !str_same(r->kind, f->kind)) return 0;
  if (f->has_format && !str_same(r->format, f->format)) return 0;
  for (uint32_t i = 0; i < r->ntopics && !found; i++) found = str_same(r->topics[i], f->topic);
  return found;
}

/* ---- sets of (institution, counterpart), for distinct counts ---- */

static uint32_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return (uint32_t)x;
}

/* Returns 1 when (a, b) is new, 0 when it was there, or PL_ENOMEM. */
static int pairset_add(pairset_t *s, uint32_t a, uint32_t b) {
  uint64_t key = (uint64_t)a << 32 | b;
  uint32_t j;
  if ((s->n + 1) * 4 > s->cap * 3) {
    uint32_t cap = s->cap ? s->cap * 2 : 1024;
    uint64_t *slots = calloc(cap, sizeof(*slots));
    if (!slots) return PL_ENOMEM;
    for (uint32_t i = 0; i < s->cap; i++) {
      if (!s->slots[i]) continue;
      for (j = mix64(s->slots[i]) & (cap - 1); slots[j]; j = (j + 1) & (cap - 1)) {
      }
      slots[j] = s->slots[i];
    }
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
  }
  for (j = mix64(key) & (s->cap - 1); s->slots[j]; j = (j + 1) & (s->cap - 1))
    if (s->slots[j] == key) return 0;
  s->slots[j] = key;
  s->n++;
  return 1;
}

/* ---- ping, stats ---- */

static int op_ping(qctx_t *q) {
  const char *version = q->env && q->env->version ? q->env->version : "";
  msgpack_pack_map(&q->pk, 2);
  pack_lit(&q->pk, "pong");
  msgpack_pack_true(&q->pk);
  pack_lit(&q->pk, "version");
  pack_lit(&q->pk, version);
  return 0;
}

static int op_stats(qctx_t *q) {
  pl_store_info_t info;
  msgpack_packer *pk = &q->pk;
  pl_store_get_info(q->s, &info);
  msgpack_pack_map(pk, 9);
  pack_lit(pk, "events");
  msgpack_pack_uint64(pk, q->st.events);
  pack_lit(pk, "institutions");
  msgpack_pack_uint64(pk, q->st.institutions);
  pack_lit(pk, "rejected");
  msgpack_pack_uint64(pk, q->st.rejected);
  pack_lit(pk, "duplicates");
  msgpack_pack_uint64(pk, q->st.duplicates);
  pack_lit(pk, "first_date");
  pack_day(pk, q->st.first_day);
  pack_lit(pk, "last_date");
  pack_day(pk, q->st.last_day);
  pack_lit(pk, "connections");
  msgpack_pack_uint64(pk, q->env ? q->env->connections : 0);
  pack_lit(pk, "uptime_s");
  msgpack_pack_uint64(pk, q->env ? q->env->uptime_s : 0);
  pack_lit(pk, "db_bytes");
  msgpack_pack_uint64(pk, info.used_bytes);
  return 0;
}

/* ---- activity ---- */

typedef struct act {
  uint64_t events, participants, active_days;
  pl_idmap_t *sect[PL_AGG_COUNTERPARTS + 1];
} act_t;

static int act_visit(void *arg, const pl_agg_view_t *v, int is_month, uint32_t key, int neg) {
  act_t *a = arg;
  (void)is_month;
  (void)key;
  /* A neg piece is a day of a month already added: the sums cannot go below zero. */
  a->events = neg ? a->events - v->events : a->events + v->events;
  a->participants = neg ? a->participants - v->participants : a->participants + v->participants;
  a->active_days = neg ? a->active_days - v->active_days : a->active_days + v->active_days;
  for (int s = 0; s <= PL_AGG_COUNTERPARTS; s++) {
    int rc = neg ? pl_idmap_sub_view(a->sect[s], v, s) : pl_idmap_add_view(a->sect[s], v, s);
    if (rc) return rc;
  }
  return 0;
}

/* ---- whole months merged once ---- */

/* A busy institution's activity is mostly the merge of its whole months' sections (some
 * 25,000 entries over a year), and the same months are merged again by every window that
 * covers them. Each thread keeps the merged sections of recent runs of whole months, and
 * uses an entry only while every month row it was merged from has the header and section
 * sizes it had then. That is enough because a month's row only ever grows: it changes when
 * a fold adds events to it, and then its event count changes (nothing takes events out of
 * an aggregate; a rebuild is a new process, and so a new store instance). Checking the
 * headers, not the bytes, is what makes this cheap: a row's bytes are cache misses. */
static size_t mrun_max_bytes = 8u << 20; /* for all threads together */
static uint32_t mrun_min_entries = 4096;

void pl_query_set_month_cache(size_t max_bytes, uint32_t min_entries) {
  mrun_max_bytes = max_bytes;
  mrun_min_entries = min_entries;
}

/* What an entry keeps of each month row: presence, header, section sizes. */
typedef struct fp_row {
  uint32_t have, events, active_days, first_day, last_day;
  uint32_t n[PL_AGG_NSECT], len[PL_AGG_NSECT];
  uint64_t participants;
} fp_row_t;

static void fp_of(fp_row_t *f, const pl_agg_view_t *v, int have) {
  memset(f, 0, sizeof(*f));
  f->have = (uint32_t)have;
  if (!have) return;
  f->events = v->events;
  f->active_days = v->active_days;
  f->first_day = v->first_day;
  f->last_day = v->last_day;
  f->participants = v->participants;
  memcpy(f->n, v->n, sizeof(f->n));
  memcpy(f->len, v->len, sizeof(f->len));
}

/* Adds merged sections (nent[s] entries of each, one section after another) into a. */
static int act_add_entries(act_t *a, const pl_agg_entry_t *ent, const uint32_t *nent) {
  for (int s = 0; s <= PL_AGG_COUNTERPARTS; s++) {
    if (pl_idmap_add_entries(a->sect[s], ent, nent[s])) return PL_ENOMEM;
    ent += nent[s];
  }
  return 0;
}

/* Keeps the merge t of months m1..m2 (rows v, have), evicting the least recently used
 * entries past the budget. Out of memory only means it is not kept. */
static void mrun_keep(qctx_t *q, uint32_t inst, uint32_t m1, uint32_t m2, const pl_agg_view_t *v,
                      const int *have, const act_t *t) {
  scratch_t *sc = q->sc;
  mrun_t e, *slot = NULL;
  size_t nall = 0, at = 0, nm = m2 - m1 + 1;
  memset(&e, 0, sizeof(e));
  for (int s = 0; s <= PL_AGG_COUNTERPARTS; s++) nall += t->sect[s]->n;
  e.bytes = nm * sizeof(fp_row_t) + nall * sizeof(pl_agg_entry_t) + sizeof(e);
  if (e.bytes > mrun_max_bytes / 4) return;
  if (!(e.fp = malloc(nm * sizeof(*e.fp))) ||
      !(e.ent = malloc((nall ? nall : 1) * sizeof(*e.ent)))) {
    free(e.fp);
    return;
  }
  for (size_t i = 0; i < nm; i++) fp_of(&e.fp[i], &v[i], have[i]);
  for (int s = 0; s <= PL_AGG_COUNTERPARTS; s++) {
    const pl_idmap_t *m = t->sect[s];
    const pl_agg_entry_t *x;
    size_t start = at;
    for (uint32_t pos = 0; (x = pl_idmap_next(m, &pos));) e.ent[at++] = *x;
    e.nent[s] = (uint32_t)(at - start);
  }
  e.store = pl_store_instance(q->s);
  e.inst = inst;
  e.m1 = m1;
  e.m2 = m2;
  e.events = t->events;
  e.participants = t->participants;
  e.active_days = t->active_days;
  for (;;) {
    mrun_t *old = NULL;
    slot = NULL;
    for (size_t i = 0; i < MRUN_SLOTS; i++) {
      mrun_t *x = &sc->mrun[i];
      if (!x->stamp) {
        if (!slot) slot = x;
      } else if (x->store == e.store && x->inst == inst && x->m1 == m1 && x->m2 == m2) {
        mrun_drop(sc, x); /* the same run with other rows: replaced */
        if (!slot) slot = x;
      } else if (!old || x->stamp < old->stamp) {
        old = x;
      }
    }
    /* The budget is shared by all threads; a thread makes room only from its own. */
    if (slot) {
      size_t was = __atomic_fetch_add(&mrun_total, e.bytes, __ATOMIC_RELAXED);
      if (was + e.bytes <= mrun_max_bytes) break;
      __atomic_sub_fetch(&mrun_total, e.bytes, __ATOMIC_RELAXED);
    }
    if (!old) { /* nothing of its own left to evict */
      free(e.fp);
      free(e.ent);
      return;
    }
    mrun_drop(sc, old);
  }
  e.stamp = ++sc->mrun_clock;
  *slot = e;
  sc->mrun_keys[slot - sc->mrun] = mrun_key(e.store, inst, m1, m2);
  sc->mrun_bytes += e.bytes;
}

/* Adds the whole months m1..m2 (fresh, none stale) of w's institution into a, from a kept
 * merge when the rows are the ones it was made from. */
static int months_run(qctx_t *q, walk_t *w, act_t *a, uint32_t m1, uint32_t m2) {
  scratch_t *sc = q->sc;
  pl_agg_view_t v[MRUN_MAX_MONTHS];
  int have[MRUN_MAX_MONTHS];
  uint32_t n = m2 - m1 + 1;
  size_t entries = 0;
  uint64_t store = pl_store_instance(q->s);
  act_t t;
  int rc;
  for (uint32_t i = 0; i < n && n <= MRUN_MAX_MONTHS; i++)
    if (pl_store_month_stale(q->t, m1 + i)) n = MRUN_MAX_MONTHS + 1;
  if (n > MRUN_MAX_MONTHS || mrun_max_bytes == 0)
    return walk_range(w, pl_date_month_first(m1),
                      pl_date_month_first(m2) + (uint32_t)pl_date_month_len(m2) - 1, act_visit, a);
  for (uint32_t i = 0; i < n; i++) {
    rc = walk_get(w, 1, m1 + i, &v[i]);
    if (rc != 0 && rc != PL_ENOTFOUND) return rc;
    have[i] = rc == 0;
    for (int s = 0; have[i] && s <= PL_AGG_COUNTERPARTS; s++) entries += v[i].n[s];
  }
  if (entries < mrun_min_entries) {
    for (uint32_t i = 0; i < n; i++)
      if (have[i] && (rc = act_visit(a, &v[i], 1, m1 + i, 0))) return rc;
    return 0;
  }
  uint64_t key = mrun_key(store, w->a, m1, m2);
  for (size_t k = 0; k < MRUN_SLOTS; k++) {
    mrun_t *e = &sc->mrun[k];
    uint32_t i;
    if (sc->mrun_keys[k] != key || e->store != store || e->inst != w->a || e->m1 != m1 ||
        e->m2 != m2)
      continue;
    for (i = 0; i < n; i++) {
      fp_row_t f;
      fp_of(&f, &v[i], have[i]);
      if (memcmp(&f, &e->fp[i], sizeof(f)) != 0) break;
    }
    if (i < n) break; /* a row grew: merged afresh below, and replaced */
    e->stamp = ++sc->mrun_clock;
    a->events += e->events;
    a->participants += e->participants;
    a->active_days += e->active_days;
    return act_add_entries(a, e->ent, e->nent);
  }
  memset(&t, 0, sizeof(t));
  for (int s = 0; s <= PL_AGG_COUNTERPARTS; s++)
    t.sect[s] = scratch_map(sc, PL_AGG_COUNTERPARTS + 2 + s);
  for (uint32_t i = 0; i < n; i++)
    if (have[i] && (rc = act_visit(&t, &v[i], 1, m1 + i, 0))) return rc;
  mrun_keep(q, w->a, m1, m2, v, have, &t);
  a->events += t.events;
  a->participants += t.participants;
  a->active_days += t.active_days;
  for (int s = 0; s <= PL_AGG_COUNTERPARTS; s++) {
    const pl_idmap_t *m = t.sect[s];
    const pl_agg_entry_t *x;
    for (uint32_t pos = 0; (x = pl_idmap_next(m, &pos));)
      if (!pl_idmap_add(a->sect[s], x->id, x->events, x->participants)) return PL_ENOMEM;
  }
  return 0;
}

static int events_visit(void *arg, const pl_agg_view_t *v, int is_month, uint32_t key, int neg) {
  uint64_t *sum = arg;
  (void)is_month;
  (void)key;
  *sum = neg ? *sum - v->events : *sum + v->events;
  return 0;
}

/* Adds the events of w's institution over [from, to] to *sum: a whole month from its row's
 * header, a part of one from the row's count of each day; a stale month, or a row that
 * predates that count, through its day rows. The window before an activity window needs
 * nothing else, so it reads one row a month. */
static int events_between(walk_t *w, uint32_t from, uint32_t to, uint64_t *sum) {
  for (uint32_t m = pl_date_month(from), mlast = pl_date_month(to); m <= mlast; m++) {
    uint32_t d0 = pl_date_month_first(m), d1 = d0 + (uint32_t)pl_date_month_len(m) - 1;
    uint32_t lo = d0 < from ? from : d0, hi = d1 > to ? to : d1, ev[32];
    uint64_t pa[32];
    pl_agg_view_t v;
    int rc = pl_store_month_stale(w->t, m) ? PL_ESTALE : walk_get(w, 1, m, &v), whole = 0;
    if (rc == PL_ENOTFOUND) continue;
    if (rc == 0 && lo == d0 && hi == d1) {
      *sum += v.events;
      continue;
    }
    if (rc == 0 && (whole = pl_agg_days(&v, d0, lo, hi, ev, pa)) < 0) return whole;
    if (whole) {
      for (uint32_t d = lo; d <= hi; d++) *sum += ev[d - d0 + 1];
      continue;
    }
    if (rc != 0 && rc != PL_ESTALE) return rc;
    if ((rc = walk_range(w, lo, hi, events_visit, sum))) return rc;
  }
  return 0;
}

static int op_activity(qctx_t *q) {
  static const char *const sect_names[] = {"kinds", "formats", "topics", "counterparts"};
  msgpack_packer *pk = &q->pk;
  pl_str_t name;
  uint32_t from = 0, to = 0, window, inst;
  uint64_t prev = 0;
  int given, none, rc;
  walk_t w;
  act_t a;
  memset(&a, 0, sizeof(a));
  for (int s = 0; s <= PL_AGG_COUNTERPARTS; s++)
    a.sect[s] = scratch_map(q->sc, s);
  rc = arg_name(q, "institution", &name, &given);
  if (!rc && !given) rc = fail(q, PL_QERR_BAD_REQUEST, "institution is required");
  if (!rc) rc = arg_window(q, &from, &to, &window, &none);
  if (!rc) rc = find_inst(q, name, &inst);
  if (rc) return rc;
  if (!none) {
    /* The previous window has the requested length and ends the day before from. When from
     * is inside a fresh month that the window runs to the end of, and the previous window
     * covers the rest of that month, the month is split between the two: the previous
     * window's part of it is the month's events less the window's, with no day read. */
    uint32_t pto = from - 1, pfrom = from == 0 ? 0 : pto >= window - 1 ? pto - (window - 1) : 0;
    uint32_t m = pl_date_month(from), mfirst = pl_date_month_first(m);
    uint32_t mlast = mfirst + (uint32_t)pl_date_month_len(m) - 1;
    int split = from > mfirst && to > mlast && pfrom <= mfirst && !pl_store_month_stale(q->t, m);
    walk_init(&w, q->t, 0, inst, 0);
    w.subtract = 1;
    if (split) {
      rc = walk_range(&w, from, mlast, act_visit, &a);
      if (!rc && w.month != m) rc = PL_ECORRUPT; /* the walk always reads a day's month */
      if (!rc && w.month_events < a.events) rc = PL_ECORRUPT;
      if (!rc) prev = w.month_events - a.events;
      if (!rc) {
        /* The whole months, then the days of to's month (unless to ends it). */
        uint32_t mt = pl_date_month(to), tfirst = pl_date_month_first(mt);
        uint32_t m2 = to == tfirst + (uint32_t)pl_date_month_len(mt) - 1 ? mt : mt - 1;
        if (m + 1 <= m2) {
          rc = months_run(q, &w, &a, m + 1, m2);
          if (!rc && m2 < mt) rc = walk_range(&w, tfirst, to, act_visit, &a);
        } else {
          rc = walk_range(&w, mlast + 1, to, act_visit, &a);
        }
      }
      if (!rc && pfrom < mfirst) rc = events_between(&w, pfrom, mfirst - 1, &prev);
    } else {
      rc = walk_range(&w, from, to, act_visit, &a);
      if (!rc && from > 0) rc = events_between(&w, pfrom, pto, &prev);
    }
    if (rc) return store_fail(q, rc);
  }
  msgpack_pack_map(pk, 12);
  pack_lit(pk, "institution");
  pack_str(pk, name);
  pack_span(pk, none, from, to);
  pack_lit(pk, "events");
  msgpack_pack_uint64(pk, a.events);
  pack_lit(pk, "participants");
  msgpack_pack_uint64(pk, a.participants);
  pack_lit(pk, "active_days");
  msgpack_pack_uint64(pk, a.active_days);
  for (int s = 0; s <= PL_AGG_COUNTERPARTS; s++) {
    pack_lit(pk, sect_names[s]);
    /* Entries a neg piece brought to zero are not in the window. */
    if ((rc = pack_counts(q, a.sect[s], 0, 1))) return store_fail(q, rc);
  }
  pack_lit(pk, "previous_events");
  msgpack_pack_uint64(pk, prev);
  pack_lit(pk, "growth");
  if (prev)
    msgpack_pack_double(pk, (double)a.events / (double)prev);
  else
    msgpack_pack_nil(pk);
  return 0;
}

/* ---- top ---- */

/* Values per institution from the days and months tables: each piece of the window is one
 * contiguous key range (period, 1..). Only the header is read unless a filter or the
 * counterparts section is needed. Institution 0 (everyone) is skipped by seeking to 1. */
static int top_from_aggs(pl_rtxn_t *t, uint32_t from, uint32_t to, int by, int sect, uint32_t fid,
                         pl_idmap_t *vals, pairset_t *set) {
  pl_cursor_t *cur[2] = {NULL, NULL};
  pl_agg_piece_t buf[64], *p = buf;
  ssize_t cnt = cover_fresh(t, from, to, buf, ARRAY_LEN(buf), &p);
  size_t n;
  int rc = 0;
  if (cnt < 0) return (int)cnt;
  n = (size_t)cnt;
  if ((rc = pl_store_cursor_open(t, PL_TAB_DAYS, &cur[0])) ||
      (rc = pl_store_cursor_open(t, PL_TAB_MONTHS, &cur[1])))
    goto done;
  for (size_t i = 0; i < n && rc == 0; i++) {
    unsigned char key[8];
    pl_str_t k, v;
    pl_key_day_inst(key, p[i].key, 1);
    for (rc = pl_store_cursor_seek(cur[p[i].is_month], key, 8, &k, &v); rc == 0;
         rc = pl_store_cursor_next(cur[p[i].is_month], &k, &v)) {
      const unsigned char *kp = (const unsigned char *)k.p;
      uint32_t inst;
      uint64_t value;
      pl_agg_view_t av;
      pl_agg_entry_t e;
      if (k.n != 8) {
        rc = PL_ECORRUPT;
        goto done;
      }
      if (pl_be32_get(kp) != p[i].key) break;
      inst = pl_be32_get(kp + 4);
      if (sect < 0 && by != BY_COUNTERPARTS) {
        /* The common case needs only the totals at the head of the row. */
        uint64_t ev, parts;
        if (pl_agg_peek(v.p, v.n, &ev, &parts)) {
          rc = PL_ECORRUPT;
          goto done;
        }
        value = by == BY_EVENTS ? ev : parts;
        if (value && !pl_idmap_add(vals, inst, 0, value)) {
          rc = PL_ENOMEM;
          goto done;
        }
        continue;
      }
      if (pl_agg_view(&av, v.p, v.n)) {
        rc = PL_ECORRUPT;
        goto done;
      }
      if (by == BY_COUNTERPARTS) {
        pl_agg_iter_t it;
        pl_agg_iter_init(&it, &av, PL_AGG_COUNTERPARTS);
        while (pl_agg_iter_next(&it, &e) == 1) {
          if ((rc = pairset_add(set, inst, e.id)) < 0) goto done;
          if (rc && !pl_idmap_add(vals, inst, 0, 1)) {
            rc = PL_ENOMEM;
            goto done;
          }
        }
        rc = it.corrupt ? PL_ECORRUPT : 0;
        if (rc) goto done;
        continue;
      }
      if (sect >= 0) {
        if (!pl_agg_view_find(&av, sect, fid, &e)) continue;
        value = by == BY_EVENTS ? e.events : e.participants;
      } else {
        value = by == BY_EVENTS ? av.events : av.participants;
      }
      if (value && !pl_idmap_add(vals, inst, 0, value)) {
        rc = PL_ENOMEM;
        goto done;
      }
    }
    if (rc == PL_ENOTFOUND) rc = 0;
  }
done:
  pl_store_cursor_close(cur[0]);
  pl_store_cursor_close(cur[1]);
  if (p != buf) free(p);
  return rc;
}

/* The answer with filters the aggregates cannot combine: every event of the window is
 * decoded and tested. */
static int top_from_events(pl_rtxn_t *t, uint32_t from, uint32_t to, int by, const filt_t *f,
                           pl_idmap_t *vals, pairset_t *set) {
  pl_cursor_t *c = NULL;
  msgpack_unpacked u;
  evscan_t e;
  pl_str_t k, v;
  pl_record_t rec;
  int rc;
  msgpack_unpacked_init(&u);
  if ((rc = pl_store_cursor_open(t, PL_TAB_EVENTS, &c))) goto done;
  evscan_init(&e, t, c, from, to, 0, NULL);
  while ((rc = evscan_next(&e, &k, &v)) == 0) {
    uint32_t inst = pl_be32_get((const unsigned char *)k.p + 4), id;
    if (pl_record_unpack_stored(v.p, v.n, &u, NULL, NULL, &rec)) {
      rc = PL_ECORRUPT;
      goto done;
    }
    if (!rec_match(&rec, f)) continue;
    if (by == BY_COUNTERPARTS) {
      for (uint32_t i = 0; i < rec.ncounterparts; i++) {
        if ((rc = pl_store_id(t, rec.counterparts[i].p, rec.counterparts[i].n, &id))) {
          if (rc == PL_ENOTFOUND) rc = PL_ECORRUPT;
          goto done;
        }
        if ((rc = pairset_add(set, inst, id)) < 0) goto done;
        if (rc && !pl_idmap_add(vals, inst, 0, 1)) {
          rc = PL_ENOMEM;
          goto done;
        }
      }
    } else {
      uint64_t value = by == BY_EVENTS ? 1 : rec.participants;
      if (value && !pl_idmap_add(vals, inst, 0, value)) {
        rc = PL_ENOMEM;
        goto done;
      }
    }
  }
  if (rc == PL_ENOTFOUND) rc = 0;
done:
  pl_store_cursor_close(c);
  msgpack_unpacked_destroy(&u);
  return rc;
}

static int arg_filters(qctx_t *q, int with_format, filt_t *f) {
  int rc;
  memset(f, 0, sizeof(*f));
  if ((rc = arg_str(q, "kind", &f->kind, &f->has_kind)) ||
      (rc = arg_str(q, "topic", &f->topic, &f->has_topic)))
    return rc;
  if (with_format && (rc = arg_str(q, "format", &f->format, &f->has_format))) return rc;
  return 0;
}

/* Looks the given filters up: *nf gets how many there are, *sect and *fid the section and
 * id of the last one (the one, when alone), *nomatch is set when a value was never stored,
 * so that no event can match. */
static int resolve_filters(qctx_t *q, const filt_t *f, int *nf, int *sect, uint32_t *fid,
                           int *nomatch) {
  const struct {
    int has;
    pl_str_t s;
    int sect;
  } fs[] = {{f->has_kind, f->kind, PL_AGG_KINDS},
            {f->has_topic, f->topic, PL_AGG_TOPICS},
            {f->has_format, f->format, PL_AGG_FORMATS}};
  *nf = 0;
  *sect = -1;
  *fid = 0;
  *nomatch = 0;
  for (size_t i = 0; i < ARRAY_LEN(fs); i++) {
    uint32_t id;
    int rc;
    if (!fs[i].has) continue;
    if ((rc = find_word(q, fs[i].s, &id))) return rc;
    if (!id) *nomatch = 1;
    (*nf)++;
    *sect = fs[i].sect;
    *fid = id;
  }
  return 0;
}

static int op_top(qctx_t *q) {
  static const char *const bys[] = {"events", "participants", "counterparts", NULL};
  msgpack_packer *pk = &q->pk;
  uint32_t from = 0, to = 0, window, fid;
  uint64_t limit;
  int by, none, nf, sect, nomatch, rc;
  size_t n = 0, k = 0;
  filt_t f;
  pl_idmap_t *vals = scratch_map(q->sc, PL_AGG_COUNTERPARTS + 1);
  pairset_t *set = scratch_set(q->sc);
  rank_t *r;
  if ((rc = arg_window(q, &from, &to, &window, &none)) ||
      (rc = arg_choice(q, "by", bys, BY_EVENTS, "events, participants, counterparts", &by)) ||
      (rc = arg_uint(q, "limit", 10, PL_QUERY_MAX_LIMIT, 1, &limit)) ||
      (rc = arg_filters(q, 1, &f)))
    return rc;
  if ((rc = resolve_filters(q, &f, &nf, &sect, &fid, &nomatch))) return store_fail(q, rc);
  if (!none && !nomatch) {
    if (nf >= 2 || (nf == 1 && by == BY_COUNTERPARTS))
      rc = top_from_events(q->t, from, to, by, &f, vals, set);
    else
      rc = top_from_aggs(q->t, from, to, by, sect, fid, vals, set);
    if (rc) return store_fail(q, rc);
  }
  if ((rc = rank_from_map(q->sc, vals, 1, 1, &r, &n)) || (rc = rank_order(q, r, n, limit, &k)))
    return store_fail(q, rc);
  msgpack_pack_map(pk, 4);
  pack_span(pk, none, from, to);
  pack_lit(pk, "by");
  pack_lit(pk, bys[by]);
  pack_rows(pk, r, k, "institution", "value");
  return 0;
}

/* ---- series ---- */

typedef struct series_acc {
  uint64_t events, participants;
  int sect; /* -1: the whole aggregate */
  uint32_t fid;
} series_acc_t;

static int series_visit(void *arg, const pl_agg_view_t *v, int is_month, uint32_t key, int neg) {
  assert(!neg); /* walks without subtract */
  (void)neg;
  series_acc_t *a = arg;
  pl_agg_entry_t e;
  (void)is_month;
  (void)key;
  if (a->sect < 0) {
    a->events += v->events;
    a->participants += v->participants;
  } else if (pl_agg_view_find(v, a->sect, a->fid, &e)) {
    a->events += e.events;
    a->participants += e.participants;
  }
  return 0;
}

/* Index of the period holding day, counting from the period that starts at first. */
static uint32_t period_index(pl_bucket_t b, uint32_t first, uint32_t day) {
  int y0, y, m, d;
  switch (b) {
    case PL_BUCKET_DAY:
      return day - first;
    case PL_BUCKET_WEEK:
      return (pl_date_period_start(b, day) - first) / 7;
    case PL_BUCKET_MONTH:
      return pl_date_month(day) - pl_date_month(first);
    case PL_BUCKET_YEAR:
      pl_date_to_ymd(first, &y0, &m, &d);
      pl_date_to_ymd(day, &y, &m, &d);
      return (uint32_t)(y - y0);
  }
  return 0;
}

typedef struct series_row {
  uint64_t events, participants;
} series_row_t;

/* Both filters at once: no aggregate counts the events that have this kind and this topic. */
static int series_from_events(pl_rtxn_t *t, uint32_t from, uint32_t to, uint32_t inst,
                              pl_bucket_t b, const filt_t *f, series_row_t *rows) {
  pl_cursor_t *c = NULL;
  msgpack_unpacked u;
  evscan_t e;
  pl_str_t k, v;
  pl_record_t rec;
  uint32_t first = pl_date_period_start(b, from);
  int rc;
  msgpack_unpacked_init(&u);
  if ((rc = pl_store_cursor_open(t, PL_TAB_EVENTS, &c))) goto done;
  evscan_init(&e, t, c, from, to, inst, NULL);
  while ((rc = evscan_next(&e, &k, &v)) == 0) {
    series_row_t *row;
    if (pl_record_unpack_stored(v.p, v.n, &u, NULL, NULL, &rec)) {
      rc = PL_ECORRUPT;
      goto done;
    }
    if (!rec_match(&rec, f)) continue;
    row = &rows[period_index(b, first, pl_be32_get((const unsigned char *)k.p))];
    row->events++;
    row->participants += rec.participants;
  }
  if (rc == PL_ENOTFOUND) rc = 0;
done:
  pl_store_cursor_close(c);
  msgpack_unpacked_destroy(&u);
  return rc;
}

/* Series of one institution (or of everyone, inst 0) with no filter, the dashboard's
 * chart, summed day by day into rows by period (bucket b, periods counted from first): a
 * month's row counts each of its days, so a month is one read. Where the month is stale,
 * or its row predates that count, its day rows are read instead: only those between its
 * first and last day with events, when the row says. */
static int series_days(pl_rtxn_t *t, uint32_t from, uint32_t to, uint32_t inst, pl_bucket_t b,
                       uint32_t first, series_row_t *rows) {
  for (uint32_t m = pl_date_month(from), mlast = pl_date_month(to); m <= mlast; m++) {
    uint32_t d0 = pl_date_month_first(m), d1 = d0 + (uint32_t)pl_date_month_len(m) - 1;
    uint32_t lo = d0 < from ? from : d0, hi = d1 > to ? to : d1;
    pl_agg_view_t v;
    int rc = pl_store_agg(t, 1, m, inst, &v);
    if (rc == PL_ENOTFOUND) continue;
    if (rc == 0) {
      uint32_t ev[32];
      uint64_t pa[32];
      int whole = pl_agg_days(&v, d0, lo, hi, ev, pa);
      if (whole < 0) return whole;
      if (whole) {
        for (uint32_t d = lo; d <= hi; d++) {
          series_row_t *row = &rows[period_index(b, first, d)];
          row->events += ev[d - d0 + 1];
          row->participants += pa[d - d0 + 1];
        }
        continue;
      }
      /* A row without every day still has the month's totals: enough for a whole month
       * inside one period (by month or year). */
      if (lo == d0 && hi == d1 && period_index(b, first, d0) == period_index(b, first, d1)) {
        series_row_t *row = &rows[period_index(b, first, d0)];
        row->events += v.events;
        row->participants += v.participants;
        continue;
      }
      if (v.first_day > lo) lo = v.first_day;
      if (v.last_day < hi) hi = v.last_day;
    } else if (rc != PL_ESTALE) {
      return rc;
    }
    for (uint32_t d = lo; d <= hi; d++) {
      uint64_t ev, pa;
      series_row_t *row;
      rc = pl_store_day_totals(t, d, inst, &ev, &pa);
      if (rc == PL_ENOTFOUND) continue;
      if (rc) return rc;
      row = &rows[period_index(b, first, d)];
      row->events += ev;
      row->participants += pa;
    }
  }
  return 0;
}

static int op_series(qctx_t *q) {
  static const char *const buckets[] = {"day", "week", "month", "year", NULL};
  msgpack_packer *pk = &q->pk;
  pl_str_t name;
  uint32_t from = 0, to = 0, inst = 0, first = 0, fid, n = 0;
  int given, none, bucket, nf, sect, nomatch, rc;
  filt_t f;
  series_row_t *rows = NULL;
  if ((rc = arg_name(q, "institution", &name, &given)) || (rc = arg_range(q, &from, &to, &none)) ||
      (rc = arg_choice(q, "bucket", buckets, PL_BUCKET_DAY, "day, week, month, year", &bucket)) ||
      (rc = arg_filters(q, 0, &f)))
    return rc;
  if (given && (rc = find_inst(q, name, &inst))) return rc;
  if (!none) {
    first = pl_date_period_start((pl_bucket_t)bucket, from);
    n = period_index((pl_bucket_t)bucket, first, to) + 1;
    if (n > PL_QUERY_MAX_PERIODS) {
      char a[11], b[11];
      pl_date_format(from, a);
      pl_date_format(to, b);
      return fail(q, PL_QERR_TOO_LARGE, "series from %s to %s by %s has %u periods; the most is %d",
                  a, b, buckets[bucket], n, PL_QUERY_MAX_PERIODS);
    }
    if (!(rows = scratch_buf(q->sc, 1, n * sizeof(*rows))))
      return fail(q, PL_QERR_INTERNAL, "out of memory");
    memset(rows, 0, n * sizeof(*rows));
    if ((rc = resolve_filters(q, &f, &nf, &sect, &fid, &nomatch))) return store_fail(q, rc);
    if (nomatch) {
      /* every row stays zero */
    } else if (nf >= 2) {
      rc = series_from_events(q->t, from, to, inst, (pl_bucket_t)bucket, &f, rows);
      if (rc) return store_fail(q, rc);
    } else if (nf == 0) {
      if ((rc = series_days(q->t, from, to, inst, (pl_bucket_t)bucket, first, rows)))
        return store_fail(q, rc);
    } else {
      walk_t w;
      uint32_t ps = first;
      walk_init(&w, q->t, 0, inst, 0);
      for (uint32_t i = 0; i < n; i++) {
        uint32_t next = pl_date_period_next((pl_bucket_t)bucket, ps);
        series_acc_t a = {0, 0, sect, fid};
        rc = walk_range(&w, ps > from ? ps : from, next - 1 < to ? next - 1 : to, series_visit, &a);
        if (rc) return store_fail(q, rc);
        rows[i].events = a.events;
        rows[i].participants = a.participants;
        ps = next;
      }
    }
  }
  msgpack_pack_map(pk, 4);
  pack_span(pk, none, from, to);
  pack_lit(pk, "bucket");
  pack_lit(pk, buckets[bucket]);
  pack_lit(pk, "rows");
  msgpack_pack_array(pk, n);
  {
    /* A row is at most 1 + 7 + 11 + 7 + 9 + 13 + 9 bytes; written as pack_counts does. */
    unsigned char *o = out_reserve(&q->out, (size_t)n * 64);
    if (!o) return 0; /* out.oom: the reply is thrown away */
    for (uint32_t i = 0, ps = none ? 0 : first; i < n; i++) {
      char label[11];
      pl_date_period_label((pl_bucket_t)bucket, ps, label);
      *o++ = 0x83; /* a map of 3 */
      o = put_str(o, "period", 6);
      o = put_str(o, label, (uint32_t)strlen(label));
      o = put_str(o, "events", 6);
      o = put_uint(o, rows[i].events);
      o = put_str(o, "participants", 12);
      o = put_uint(o, rows[i].participants);
      ps = pl_date_period_next((pl_bucket_t)bucket, ps);
    }
    q->out.sb->size = (size_t)((char *)o - q->out.sb->data);
  }
  return 0;
}

/* ---- pair ---- */

typedef struct pair_acc {
  uint64_t events;
  uint32_t first, last;
  pl_idmap_t *kinds, *countries;
  unsigned char *active; /* per period of the streak range */
  pl_bucket_t bucket;
  uint32_t start; /* first day of the first period */
} pair_acc_t;

static int pair_visit(void *arg, const pl_agg_view_t *v, int is_month, uint32_t key, int neg) {
  assert(!neg); /* walks without subtract */
  (void)neg;
  pair_acc_t *a = arg;
  a->events += v->events;
  if (v->first_day != PL_AGG_NO_DAY && (a->first == PL_AGG_NO_DAY || v->first_day < a->first))
    a->first = v->first_day;
  if (v->last_day != PL_AGG_NO_DAY && (a->last == PL_AGG_NO_DAY || v->last_day > a->last))
    a->last = v->last_day;
  if (v->events)
    a->active[period_index(a->bucket, a->start, is_month ? pl_date_month_first(key) : key)] = 1;
  if (pl_idmap_add_view(a->kinds, v, PL_AGG_KINDS) ||
      pl_idmap_add_view(a->countries, v, PL_AGG_COUNTRIES))
    return PL_ENOMEM;
  return 0;
}

static int op_pair(qctx_t *q) {
  static const char *const periods[] = {"year", "month", NULL};
  msgpack_packer *pk = &q->pk;
  pl_str_t na, nb;
  uint32_t from = 0, to = 0, ia, ib, n = 0, active = 0, current = 0, longest = 0;
  int ga, gb, none, period, rc;
  pair_acc_t a;
  memset(&a, 0, sizeof(a));
  a.first = a.last = PL_AGG_NO_DAY;
  a.kinds = scratch_map(q->sc, 0);
  a.countries = scratch_map(q->sc, 1);
  if ((rc = arg_name(q, "a", &na, &ga)) || (rc = arg_name(q, "b", &nb, &gb)) ||
      (rc = arg_range(q, &from, &to, &none)) ||
      (rc = arg_choice(q, "period", periods, 0, "year, month", &period)))
    return rc;
  if (!ga || !gb) return fail(q, PL_QERR_BAD_REQUEST, "pair needs both a and b");
  if (str_same(na, nb))
    return fail(q, PL_QERR_BAD_REQUEST, "a and b must be different institutions");
  if ((rc = find_inst(q, na, &ia)) || (rc = find_inst(q, nb, &ib))) return rc;
  a.bucket = period ? PL_BUCKET_MONTH : PL_BUCKET_YEAR;
  if (!none) {
    walk_t w;
    a.start = pl_date_period_start(a.bucket, from);
    n = period_index(a.bucket, a.start, to) + 1;
    if (!(a.active = scratch_buf(q->sc, 1, n))) return fail(q, PL_QERR_INTERNAL, "out of memory");
    memset(a.active, 0, n);
    walk_init(&w, q->t, 1, ia, ib);
    if ((rc = walk_range(&w, from, to, pair_visit, &a))) return store_fail(q, rc);
    for (uint32_t i = 0; i < n; i++) active += a.active[i];
    pl_agg_streaks(a.active, n, n - 1, &current, &longest);
  }
  msgpack_pack_map(pk, 13);
  pack_lit(pk, "a");
  pack_str(pk, na);
  pack_lit(pk, "b");
  pack_str(pk, nb);
  pack_span(pk, none, from, to);
  pack_lit(pk, "period");
  pack_lit(pk, periods[period]);
  pack_lit(pk, "events");
  msgpack_pack_uint64(pk, a.events);
  pack_lit(pk, "kinds");
  if ((rc = pack_counts(q, a.kinds, 0, 0))) return store_fail(q, rc);
  pack_lit(pk, "first");
  pack_day(pk, a.first);
  pack_lit(pk, "last");
  pack_day(pk, a.last);
  pack_lit(pk, "periods_active");
  msgpack_pack_uint32(pk, active);
  pack_lit(pk, "current_streak");
  msgpack_pack_uint32(pk, current);
  pack_lit(pk, "longest_streak");
  msgpack_pack_uint32(pk, longest);
  pack_lit(pk, "participants_by_country");
  if ((rc = pack_counts(q, a.countries, 1, 0))) return store_fail(q, rc);
  return 0;
}

/* ---- topics ---- */

static int topics_visit(void *arg, const pl_agg_view_t *v, int is_month, uint32_t key, int neg) {
  assert(!neg); /* walks without subtract */
  (void)neg;
  (void)is_month;
  (void)key;
  return pl_idmap_add_view(arg, v, PL_AGG_TOPICS);
}

static int op_topics(qctx_t *q) {
  msgpack_packer *pk = &q->pk;
  uint32_t from = 0, to = 0, window;
  uint64_t limit;
  int none, rc;
  size_t n = 0, k = 0;
  pl_idmap_t *topics = scratch_map(q->sc, PL_AGG_TOPICS);
  rank_t *r;
  walk_t w;
  if ((rc = arg_window(q, &from, &to, &window, &none)) ||
      (rc = arg_uint(q, "limit", 10, PL_QUERY_MAX_LIMIT, 1, &limit)))
    return rc;
  walk_init(&w, q->t, 0, 0, 0);
  if ((!none && (rc = walk_range(&w, from, to, topics_visit, topics))) ||
      (rc = rank_from_map(q->sc, topics, 0, 1, &r, &n)) || (rc = rank_order(q, r, n, limit, &k)))
    return store_fail(q, rc);
  msgpack_pack_map(pk, 3);
  pack_span(pk, none, from, to);
  pack_rows(pk, r, k, "topic", "events");
  return 0;
}

/* ---- institutions ---- */

typedef struct inst_row {
  pl_str_t name;
  pl_store_inst_t info;
} inst_row_t;

/* The dictionary holds vocabulary too (kinds, topics, countries): a name is an institution
 * when the insts table has its id. */
static int op_institutions(qctx_t *q) {
  msgpack_packer *pk = &q->pk;
  pl_cursor_t *c = NULL;
  pl_str_t prefix, k, v;
  uint64_t limit;
  size_t n = 0;
  int given, rc;
  inst_row_t *rows;
  if ((rc = arg_str(q, "prefix", &prefix, &given)) ||
      (rc = arg_uint(q, "limit", 100, PL_QUERY_MAX_LIMIT, 1, &limit)))
    return rc;
  if (!(rows = scratch_buf(q->sc, 1, limit * sizeof(*rows))))
    return fail(q, PL_QERR_INTERNAL, "out of memory");
  if (prefix.n <= MAX_KEY) {
    if ((rc = pl_store_cursor_open(q->t, PL_TAB_DICT, &c))) return store_fail(q, rc);
    for (rc = pl_store_cursor_seek(c, prefix.p, prefix.n, &k, &v); rc == 0 && n < limit;
         rc = pl_store_cursor_next(c, &k, &v)) {
      uint32_t id;
      if (k.n < prefix.n || (prefix.n && memcmp(k.p, prefix.p, prefix.n) != 0)) break;
      if (v.n != 4) {
        rc = PL_ECORRUPT;
        break;
      }
      id = pl_be32_get((const unsigned char *)v.p);
      rc = pl_store_inst(q->t, id, &rows[n].info);
      if (rc == PL_ENOTFOUND) continue;
      if (rc) break;
      rows[n++].name = k;
    }
    pl_store_cursor_close(c);
    if (rc && rc != PL_ENOTFOUND) return store_fail(q, rc);
  }
  msgpack_pack_map(pk, 1);
  pack_lit(pk, "rows");
  msgpack_pack_array(pk, (uint32_t)n);
  for (size_t i = 0; i < n; i++) {
    msgpack_pack_map(pk, 4);
    pack_lit(pk, "institution");
    pack_str(pk, rows[i].name);
    pack_lit(pk, "events");
    msgpack_pack_uint64(pk, rows[i].info.events);
    pack_lit(pk, "first");
    pack_day(pk, rows[i].info.first_day);
    pack_lit(pk, "last");
    pack_day(pk, rows[i].info.last_day);
  }
  return 0;
}

/* ---- events, rejects ---- */

static int is_ours(const msgpack_object *k) { return key_is(k, "seq") || key_is(k, "tag"); }

/* A stored record as a row: its map, with our seq and tag in place of any it carried. */
static int pack_event(msgpack_packer *pk, msgpack_unpacked *u, pl_str_t k, pl_str_t v) {
  pl_record_meta_t meta;
  const msgpack_object *map;
  uint32_t n = 0;
  if (k.n != 16 || pl_record_unpack_stored(v.p, v.n, u, &meta, &map, NULL)) return PL_ECORRUPT;
  for (uint32_t i = 0; i < map->via.map.size; i++) n += !is_ours(&map->via.map.ptr[i].key);
  msgpack_pack_map(pk, n + 2);
  for (uint32_t i = 0; i < map->via.map.size; i++) {
    const msgpack_object_kv *kv = &map->via.map.ptr[i];
    if (is_ours(&kv->key)) continue;
    msgpack_pack_object(pk, kv->key);
    msgpack_pack_object(pk, kv->val);
  }
  pack_lit(pk, "seq");
  msgpack_pack_uint64(pk, pl_be64_get((const unsigned char *)k.p + 8));
  pack_lit(pk, "tag");
  pack_str(pk, meta.tag);
  return 0;
}

typedef struct kv_row {
  pl_str_t k, v;
} kv_row_t;

/* "rows" (each packed by fn from its key and value) and "next": the cursor of the last row
 * when more rows follow, else nil. Cursors are kind + the key in hex. */
typedef int (*row_packer)(msgpack_packer *pk, msgpack_unpacked *u, pl_str_t k, pl_str_t v);
static int pack_page(msgpack_packer *pk, msgpack_unpacked *u, const kv_row_t *rows, size_t n,
                     int more, char kind, row_packer fn) {
  int rc;
  pack_lit(pk, "rows");
  msgpack_pack_array(pk, (uint32_t)n);
  for (size_t i = 0; i < n; i++)
    if ((rc = fn(pk, u, rows[i].k, rows[i].v))) return rc;
  pack_lit(pk, "next");
  if (more) {
    char text[2 + 2 * 16]; /* keys of events (16 bytes) and rejects (8) */
    assert(rows[n - 1].k.n <= 16);
    cursor_text(text, kind, (const unsigned char *)rows[n - 1].k.p, rows[n - 1].k.n);
    pack_lit(pk, text);
  } else {
    msgpack_pack_nil(pk);
  }
  return 0;
}

static int op_events(qctx_t *q) {
  msgpack_packer *pk = &q->pk;
  pl_cursor_t *c = NULL;
  pl_str_t name, k, v;
  unsigned char after[16];
  uint32_t from = 0, to = 0, inst = 0;
  uint64_t limit;
  size_t n = 0, bytes = 0;
  int given, none, has_after, more = 0, rc;
  kv_row_t *rows = NULL;
  msgpack_unpacked u;
  evscan_t e;
  msgpack_unpacked_init(&u);
  if ((rc = arg_range(q, &from, &to, &none)) || (rc = arg_name(q, "institution", &name, &given)) ||
      (rc = arg_uint(q, "limit", 100, PL_QUERY_MAX_EVENTS_LIMIT, 1, &limit)) ||
      (rc = has_after = arg_cursor(q, 'e', after, sizeof(after))) < 0 ||
      (given && (rc = find_inst(q, name, &inst))))
    goto done;
  if (!(rows = scratch_buf(q->sc, 1, limit * sizeof(*rows)))) {
    rc = fail(q, PL_QERR_INTERNAL, "out of memory");
    goto done;
  }
  if (!none) {
    if ((rc = pl_store_cursor_open(q->t, PL_TAB_EVENTS, &c))) goto fail;
    evscan_init(&e, q->t, c, from, to, inst, has_after ? after : NULL);
    while (n < limit && bytes < PL_QUERY_MAX_REPLY_BYTES && (rc = evscan_next(&e, &k, &v)) == 0) {
      rows[n].k = k;
      rows[n++].v = v;
      bytes += v.n;
    }
    /* One more step tells whether a next page exists, so the last page says so. */
    if (rc == 0) rc = evscan_next(&e, &k, &v);
    if (rc && rc != PL_ENOTFOUND) goto fail;
    more = rc == 0;
  }
  msgpack_pack_map(pk, 3);
  if ((rc = pack_page(pk, &u, rows, n, more, 'e', pack_event))) goto fail;
  /* Retention deletes raw events (not aggregates) before this date; nil keeps all. */
  pack_lit(pk, "retained_from");
  if (q->st.retained_from) {
    char date[11];
    pl_date_format(q->st.retained_from, date);
    pack_lit(pk, date);
  } else {
    msgpack_pack_nil(pk);
  }
  rc = 0;
  goto done;
fail:
  rc = store_fail(q, rc);
done:
  pl_store_cursor_close(c);
  msgpack_unpacked_destroy(&u);
  return rc;
}

/* Receive times are Unix ms; a reply shows them as ISO 8601 UTC with milliseconds. */
static void iso_ms(uint64_t ms, char *out, size_t cap) {
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  if (!gmtime_r(&secs, &tm)) {
    snprintf(out, cap, "%llu", (unsigned long long)ms);
    return;
  }
  snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
}

static int pack_reject(msgpack_packer *pk, msgpack_unpacked *u, pl_str_t k, pl_str_t v) {
  const msgpack_object *reason, *raw, *peer, *received;
  char when[64];
  size_t off = 0;
  if (k.n != 8 || msgpack_unpack_next(u, v.p, v.n, &off) != MSGPACK_UNPACK_SUCCESS)
    return PL_ECORRUPT;
  reason = field(&u->data, "reason");
  raw = field(&u->data, "raw");
  peer = field(&u->data, "peer");
  received = field(&u->data, "received");
  if (!reason || reason->type != MSGPACK_OBJECT_STR || !raw || raw->type != MSGPACK_OBJECT_BIN ||
      !peer || peer->type != MSGPACK_OBJECT_STR || !received ||
      received->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
    return PL_ECORRUPT;
  msgpack_pack_map(pk, 5);
  pack_lit(pk, "seq");
  msgpack_pack_uint64(pk, pl_be64_get((const unsigned char *)k.p));
  pack_lit(pk, "reason");
  msgpack_pack_object(pk, *reason);
  pack_lit(pk, "received");
  iso_ms(received->via.u64, when, sizeof(when));
  pack_lit(pk, when);
  pack_lit(pk, "peer");
  msgpack_pack_object(pk, *peer);
  pack_lit(pk, "raw");
  msgpack_pack_object(pk, *raw);
  return 0;
}

static int op_rejects(qctx_t *q) {
  msgpack_packer *pk = &q->pk;
  pl_cursor_t *c = NULL;
  pl_str_t k, v;
  unsigned char key[8] = {0};
  uint64_t limit;
  size_t n = 0, bytes = 0;
  int has_after, more = 0, rc;
  kv_row_t *rows = NULL;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  if ((rc = arg_uint(q, "limit", 100, PL_QUERY_MAX_EVENTS_LIMIT, 1, &limit)) ||
      (rc = has_after = arg_cursor(q, 'r', key, sizeof(key))) < 0)
    goto done;
  if (!(rows = scratch_buf(q->sc, 1, limit * sizeof(*rows)))) {
    rc = fail(q, PL_QERR_INTERNAL, "out of memory");
    goto done;
  }
  if (!has_after || !key_inc(key, sizeof(key))) {
    if ((rc = pl_store_cursor_open(q->t, PL_TAB_REJECTS, &c))) goto fail;
    for (rc = pl_store_cursor_seek(c, key, sizeof(key), &k, &v);
         rc == 0 && n < limit && bytes < PL_QUERY_MAX_REPLY_BYTES;
         rc = pl_store_cursor_next(c, &k, &v)) {
      rows[n].k = k;
      rows[n++].v = v;
      bytes += v.n;
    }
    if (rc && rc != PL_ENOTFOUND) goto fail;
    more = rc == 0;
  }
  msgpack_pack_map(pk, 2);
  if ((rc = pack_page(pk, &u, rows, n, more, 'r', pack_reject))) goto fail;
  rc = 0;
  goto done;
fail:
  rc = store_fail(q, rc);
done:
  pl_store_cursor_close(c);
  msgpack_unpacked_destroy(&u);
  return rc;
}

/* ---- dispatch ---- */

static const op_def_t ops[] = {
    {"ping", op_ping, 0, {NULL}},
    {"stats", op_stats, 1, {NULL}},
    {"activity", op_activity, 1, {"institution", "window", "as_of", NULL}},
    {"top", op_top, 1, {"window", "as_of", "by", "limit", "kind", "topic", "format", NULL}},
    {"series", op_series, 1, {"institution", "from", "to", "bucket", "kind", "topic", NULL}},
    {"pair", op_pair, 1, {"a", "b", "from", "to", "period", NULL}},
    {"topics", op_topics, 1, {"window", "as_of", "limit", NULL}},
    {"institutions", op_institutions, 1, {"prefix", "limit", NULL}},
    {"events", op_events, 1, {"from", "to", "institution", "limit", "after", NULL}},
    {"rejects", op_rejects, 1, {"limit", "after", NULL}},
};

static int check_args(qctx_t *q) {
  const msgpack_object_map *m = &q->req->via.map;
  char qs[QUOTE_MAX * 4 + 16];
  for (uint32_t i = 0; i < m->size; i++) {
    const msgpack_object *k = &m->ptr[i].key;
    int known = key_is(k, "op") || key_is(k, "req");
    if (k->type != MSGPACK_OBJECT_STR)
      return fail(q, PL_QERR_BAD_REQUEST, "argument names must be strings");
    for (uint32_t j = 0; j < i; j++)
      if (msgpack_object_equal(*k, m->ptr[j].key))
        return fail(q, PL_QERR_BAD_REQUEST, "argument \"%s\" is given twice",
                    quote(qs, sizeof(qs), k->via.str.ptr, k->via.str.size));
    for (int a = 0; !known && q->op->args[a]; a++) known = key_is(k, q->op->args[a]);
    if (!known)
      return fail(q, PL_QERR_BAD_REQUEST, "unknown argument \"%s\" for op %s",
                  quote(qs, sizeof(qs), k->via.str.ptr, k->via.str.size), q->op->name);
  }
  return 0;
}

static int run(qctx_t *q) {
  const msgpack_object *op = field(q->req, "op");
  char qs[QUOTE_MAX * 4 + 16];
  int rc;
  if (!q->req || q->req->type != MSGPACK_OBJECT_MAP)
    return fail(q, PL_QERR_BAD_REQUEST, "a request must be a map");
  if (!op) return fail(q, PL_QERR_BAD_REQUEST, "the request has no op");
  if (op->type != MSGPACK_OBJECT_STR) return fail(q, PL_QERR_BAD_REQUEST, "op must be a string");
  for (size_t i = 0; i < ARRAY_LEN(ops) && !q->op; i++)
    if (key_is(op, ops[i].name)) q->op = &ops[i];
  if (!q->op)
    return fail(q, PL_QERR_UNKNOWN_OP, "unknown op \"%s\"",
                quote(qs, sizeof(qs), op->via.str.ptr, op->via.str.size));
  if ((rc = check_args(q))) return rc;
  if (!q->op->txn) return q->op->fn(q);
  rc = q->env && q->env->no_wait ? pl_store_read_try_begin(q->s, &q->t)
                                 : pl_store_read_begin(q->s, &q->t);
  if (rc == PL_EAGAIN && q->env && q->env->no_wait) {
    q->again = 1;
    return rc;
  }
  if (rc)
    return fail(q, PL_QERR_UNAVAILABLE, "the store cannot be read now: %s", pl_strerror(rc));
  rc = pl_store_state(q->t, &q->st);
  q->sc->dense_limit = q->st.next_id; /* ids in this snapshot are below the next one */
  rc = rc ? store_fail(q, rc) : q->op->fn(q);
  pl_store_read_end(q->t);
  q->t = NULL;
  return rc;
}

int pl_query_exec(pl_store_t *s, const pl_query_env_t *env, const msgpack_object *req,
                  msgpack_packer *pk) {
  qctx_t q;
  int rc;
  memset(&q, 0, sizeof(q));
  q.s = s;
  q.env = env;
  q.req = req;
  if (!(q.sc = scratch_get()))
    return pl_query_pack_error(pk, req, PL_QERR_INTERNAL, "out of memory");
  q.out.sb = &q.sc->out;
  q.sc->out.size = 0;
  msgpack_packer_init(&q.pk, &q.out, out_write);
  rc = run(&q);
  if (q.again) {
    scratch_trim(q.sc);
    return PL_EAGAIN;
  }
  if (rc == 0 && q.out.oom) rc = fail(&q, PL_QERR_INTERNAL, "out of memory");
  if (rc == 0) {
    if (msgpack_pack_map(pk, 3) || pack_req(pk, req) || msgpack_pack_str_with_body(pk, "ok", 2) ||
        msgpack_pack_true(pk) || msgpack_pack_str_with_body(pk, "result", 6) ||
        pk->callback(pk->data, q.sc->out.data, q.sc->out.size))
      rc = PL_ENOMEM;
  } else {
    rc = pl_query_pack_error(pk, req, q.code, q.msg);
  }
  scratch_trim(q.sc);
  return rc;
}
