/* The LMDB store: environment lifecycle, the group-commit write path (dedup, interning,
 * events, rejects, aggregates folded in memory and written once per key per commit), the
 * rebuild of aggregates from events, and typed read access. The only file that includes
 * lmdb.h: LMDB codes are translated to PL_E* codes at this boundary. */
#include "parley/store.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "parley/date.h"
#include "parley/error.h"
#include "parley/record.h"

/* 2: compact aggregates, the stale table. 3: month rows count each day (PL_AGG_DAYS); a
 * version 2 store opens as it is and is marked 3: its month rows are read as before, and
 * pl_agg_days tells a query when a row still lacks some days and its day rows are needed. */
#define SCHEMA_VERSION 3u
#define PRUNE_PER_COMMIT 256
#define REBUILD_PER_TXN 50000

static const char *table_names[PL_TAB_COUNT] = {
    "events", "days",  "months", "pairs",     "pair_months", "idem", "insts",
    "dict",   "names", "chunks", "chunk_age", "rejects",     "meta", "stale",
};

const char *pl_store_table_name(pl_table_t t) {
  return t < PL_TAB_COUNT ? table_names[t] : "?";
}

/* ---- writer-side helpers: a string -> id hash and key -> slot maps ---- */

/* Interned names, all loaded at open so the writer never reads the dict table to intern.
 * Strings live in one growing arena; the table stores offsets so the arena may move. */
typedef struct name_slot {
  uint64_t off; /* offset of the name in the arena, + 1 (0 marks an empty slot) */
  uint32_t len;
  uint32_t id;
} name_slot_t;

typedef struct name_map {
  name_slot_t *slots;
  uint32_t cap, n;
  char *arena;
  size_t arena_len, arena_cap;
} name_map_t;

static uint64_t hash_bytes(const void *p, size_t n) {
  /* FNV-1a, then a final mix so the low bits are usable as a table index. */
  const unsigned char *b = p;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

static void name_map_free(name_map_t *m) {
  free(m->slots);
  free(m->arena);
  memset(m, 0, sizeof(*m));
}

static void name_map_clear(name_map_t *m) {
  if (m->slots) memset(m->slots, 0, (size_t)m->cap * sizeof(*m->slots));
  m->n = 0;
  m->arena_len = 0;
}

static int name_map_find(const name_map_t *m, const char *p, size_t n, uint32_t *id) {
  if (!m->cap) return 0;
  for (uint32_t j = (uint32_t)hash_bytes(p, n) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
    const name_slot_t *s = &m->slots[j];
    if (!s->off) return 0;
    if (s->len == n && memcmp(m->arena + s->off - 1, p, n) == 0) {
      *id = s->id;
      return 1;
    }
  }
}

static int name_map_grow(name_map_t *m) {
  uint32_t cap = m->cap ? m->cap * 2 : 1024;
  name_slot_t *slots = calloc(cap, sizeof(*slots));
  if (!slots) return PL_ENOMEM;
  for (uint32_t i = 0; i < m->cap; i++) {
    name_slot_t *s = &m->slots[i];
    if (!s->off) continue;
    uint32_t j = (uint32_t)hash_bytes(m->arena + s->off - 1, s->len) & (cap - 1);
    while (slots[j].off) j = (j + 1) & (cap - 1);
    slots[j] = *s;
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  return 0;
}

static int name_map_put(name_map_t *m, const char *p, size_t n, uint32_t id) {
  uint32_t j;
  if ((m->n + 1) * 4 > m->cap * 3 && name_map_grow(m)) return PL_ENOMEM;
  if (m->arena_len + n > m->arena_cap) {
    size_t cap = m->arena_cap ? m->arena_cap : 65536;
    while (cap < m->arena_len + n) cap *= 2;
    char *a = realloc(m->arena, cap);
    if (!a) return PL_ENOMEM;
    m->arena = a;
    m->arena_cap = cap;
  }
  memcpy(m->arena + m->arena_len, p, n);
  for (j = (uint32_t)hash_bytes(p, n) & (m->cap - 1); m->slots[j].off; j = (j + 1) & (m->cap - 1)) {
  }
  m->slots[j].off = m->arena_len + 1;
  m->slots[j].len = (uint32_t)n;
  m->slots[j].id = id;
  m->arena_len += n;
  m->n++;
  return 0;
}

/* Maps a key of up to three u32 to a dense slot index, so per-commit accumulators live in
 * plain arrays that are reused from one commit to the next. */
typedef struct key_map {
  uint32_t *slots; /* index + 1; 0 is empty */
  uint32_t cap;
  uint32_t n;
  uint32_t (*keys)[3];
  uint32_t keys_cap;
} key_map_t;

static uint32_t hash3(uint32_t a, uint32_t b, uint32_t c) {
  uint64_t h = ((uint64_t)a * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)b * 0xC2B2AE3D27D4EB4Full) ^
               ((uint64_t)c * 0x165667B19E3779F9ull);
  h ^= h >> 29;
  return (uint32_t)h;
}

static void key_map_free(key_map_t *m) {
  free(m->slots);
  free(m->keys);
  memset(m, 0, sizeof(*m));
}

static void key_map_clear(key_map_t *m) {
  if (m->n && m->slots) memset(m->slots, 0, (size_t)m->cap * sizeof(*m->slots));
  m->n = 0;
}

static int key_map_grow(key_map_t *m) {
  uint32_t cap = m->cap ? m->cap * 2 : 1024;
  uint32_t *slots = calloc(cap, sizeof(*slots));
  if (!slots) return PL_ENOMEM;
  for (uint32_t i = 0; i < m->n; i++) {
    uint32_t j = hash3(m->keys[i][0], m->keys[i][1], m->keys[i][2]) & (cap - 1);
    while (slots[j]) j = (j + 1) & (cap - 1);
    slots[j] = i + 1;
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  return 0;
}

/* Returns the slot index of (a, b, c), adding it when new (*created = 1), or -1 on OOM. */
static int64_t key_map_get(key_map_t *m, uint32_t a, uint32_t b, uint32_t c, int *created) {
  uint32_t j;
  *created = 0;
  if ((m->n + 1) * 2 > m->cap && key_map_grow(m)) return -1;
  for (j = hash3(a, b, c) & (m->cap - 1); m->slots[j]; j = (j + 1) & (m->cap - 1)) {
    uint32_t *k = m->keys[m->slots[j] - 1];
    if (k[0] == a && k[1] == b && k[2] == c) return m->slots[j] - 1;
  }
  if (m->n == m->keys_cap) {
    uint32_t cap = m->keys_cap ? m->keys_cap * 2 : 1024;
    void *k = realloc(m->keys, (size_t)cap * sizeof(*m->keys));
    if (!k) return -1;
    m->keys = k;
    m->keys_cap = cap;
  }
  m->keys[m->n][0] = a;
  m->keys[m->n][1] = b;
  m->keys[m->n][2] = c;
  m->slots[j] = m->n + 1;
  *created = 1;
  return m->n++;
}

/* A key map whose slots each own an aggregate; aggregates keep their memory across commits. */
typedef struct agg_map {
  key_map_t keys;
  pl_agg_t *aggs;
  uint32_t aggs_cap;
  uint32_t *order; /* slot indices sorted by key, for writing in key order */
  uint32_t order_cap;
} agg_map_t;

static void agg_map_free(agg_map_t *m) {
  for (uint32_t i = 0; i < m->aggs_cap; i++) pl_agg_free(&m->aggs[i]);
  free(m->aggs);
  free(m->order);
  key_map_free(&m->keys);
  memset(m, 0, sizeof(*m));
}

/* Empties the map. Small aggregates keep their arrays for the next commit; large ones give
 * them back, or every slot would in time grow to the busiest institution's size. */
static void agg_map_clear(agg_map_t *m) {
  for (uint32_t i = 0; i < m->keys.n; i++) {
    uint32_t cap = 0;
    for (int s = 0; s < PL_AGG_NSECT; s++) cap += m->aggs[i].sect[s].cap;
    if (cap > 256) pl_agg_free(&m->aggs[i]);
  }
  key_map_clear(&m->keys);
}

static pl_agg_t *agg_map_get(agg_map_t *m, uint32_t a, uint32_t b, uint32_t c) {
  int created;
  int64_t i = key_map_get(&m->keys, a, b, c, &created);
  if (i < 0) return NULL;
  if ((uint32_t)i >= m->aggs_cap) {
    uint32_t cap = m->aggs_cap ? m->aggs_cap * 2 : 1024;
    pl_agg_t *v = realloc(m->aggs, (size_t)cap * sizeof(*v));
    if (!v) return NULL;
    for (uint32_t k = m->aggs_cap; k < cap; k++) pl_agg_init(&v[k]);
    m->aggs = v;
    m->aggs_cap = cap;
  }
  if (created) pl_agg_clear(&m->aggs[i]);
  return &m->aggs[i];
}

static const key_map_t *sort_keys_ctx;
static int cmp_slot(const void *x, const void *y) {
  const uint32_t *a = sort_keys_ctx->keys[*(const uint32_t *)x];
  const uint32_t *b = sort_keys_ctx->keys[*(const uint32_t *)y];
  for (int i = 0; i < 3; i++)
    if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}

/* Fills m->order with the slot indices in key order (writer thread only: uses a static). */
static int agg_map_sort(agg_map_t *m) {
  uint32_t n = m->keys.n;
  if (n == 0) return 0;
  if (n > m->order_cap) {
    uint32_t *o = realloc(m->order, (size_t)n * sizeof(*o));
    if (!o) return PL_ENOMEM;
    m->order = o;
    m->order_cap = n;
  }
  for (uint32_t i = 0; i < n; i++) m->order[i] = i;
  sort_keys_ctx = &m->keys;
  qsort(m->order, n, sizeof(*m->order), cmp_slot);
  return 0;
}

typedef struct inst_acc {
  key_map_t keys;
  pl_store_inst_t *v;
  uint32_t cap;
} inst_acc_t;

static pl_store_inst_t *inst_acc_get(inst_acc_t *m, uint32_t inst) {
  int created;
  int64_t i = key_map_get(&m->keys, inst, 0, 0, &created);
  if (i < 0) return NULL;
  if ((uint32_t)i >= m->cap) {
    uint32_t cap = m->cap ? m->cap * 2 : 1024;
    pl_store_inst_t *v = realloc(m->v, (size_t)cap * sizeof(*v));
    if (!v) return NULL;
    m->v = v;
    m->cap = cap;
  }
  if (created) {
    memset(&m->v[i], 0, sizeof(m->v[i]));
    m->v[i].first_day = m->v[i].last_day = PL_AGG_NO_DAY;
  }
  return &m->v[i];
}

/* A small set of month indexes (a handful are stale at a time). */
typedef struct month_set {
  uint32_t *v;
  uint32_t n, cap;
} month_set_t;

static int month_set_has(const month_set_t *m, uint32_t month) {
  for (uint32_t i = 0; i < m->n; i++)
    if (m->v[i] == month) return 1;
  return 0;
}

static int month_set_reserve(month_set_t *m, uint32_t n) {
  uint32_t *v;
  if (n <= m->cap) return 0;
  if (!(v = realloc(m->v, (size_t)n * sizeof(*v)))) return PL_ENOMEM;
  m->v = v;
  m->cap = n;
  return 0;
}

static int month_set_add(month_set_t *m, uint32_t month) {
  if (month_set_has(m, month)) return 0;
  if (m->n == m->cap) {
    uint32_t cap = m->cap ? m->cap * 2 : 8;
    uint32_t *v = realloc(m->v, cap * sizeof(*v));
    if (!v) return PL_ENOMEM;
    m->v = v;
    m->cap = cap;
  }
  m->v[m->n++] = month;
  return 0;
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the store ---- */

struct pl_store {
  uint64_t instance; /* see pl_store_instance */
  MDB_env *env;
  MDB_dbi dbi[PL_TAB_COUNT];
  int lock_fd;
  int sync_full;
  uint64_t map_size, map_size_max;
  uint64_t chunk_retention_ms;
  uint32_t retention_days;
  uint32_t prune_clean; /* no raw event is dated before this day (writer thread) */
  /* Held for reading by every read transaction, for writing while the map is resized:
   * LMDB requires that no transaction be active in the process during a resize. */
  pthread_rwlock_t maplock;
  /* Writer-side state, touched by the writing thread only. */
  pl_store_state_t state;
  name_map_t names;   /* committed names */
  name_map_t pending; /* names interned by the transaction in progress */
  uint32_t unknown_country;
  int names_partial; /* some committed names are missing from `names` (out of memory) */
  agg_map_t days, months, all_days, all_months, pairs, pair_months;
  inst_acc_t insts;
  /* Deferred month rollups (see store.h): deltas of committed transactions not yet folded
   * into the month rows (institutions and everyone in one map, pairs in another), and the
   * months marked stale: all of them, those whose deltas are not all in memory (marked
   * before this process opened the store), and those the transaction in progress marks. */
  int defer;
  uint64_t rollup_interval_ms, last_fold_ms;
  agg_map_t pend_months, pend_pairs;
  month_set_t stale, unknown, marking;
  int pending_lost; /* keeping a commit's deltas failed: recompute every stale month */
  char *scratch;
  size_t scratch_cap;
  /* Figures read by other threads (atomics). */
  uint64_t commits, commit_errors, map_grows;
  int full;
  uint32_t stale_readers;
  uint64_t info_map_size, info_used; /* published by publish_info() */
  uint32_t info_psize, info_readers;
  uint64_t info_span; /* first_day << 32 | last_day: one load gives a matching pair */
  uint32_t info_stale;
};

struct pl_rtxn {
  pl_store_t *s;
  MDB_txn *txn;
  /* The stale months of this snapshot, read at the first question: a handful at most, and
   * a query asks about every month it covers. stale_n == STALE_CACHE + 1: too many to
   * keep, ask the table each time. */
  int stale_read;
  uint32_t stale_n;
  uint32_t stale[16];
};
#define STALE_CACHE 16

struct pl_cursor {
  MDB_cursor *c;
};

static void publish_info(pl_store_t *s);

static int map_err(int rc) {
  switch (rc) {
    case 0:
      return 0;
    case MDB_NOTFOUND:
      return PL_ENOTFOUND;
    case MDB_MAP_FULL:
      return PL_ESTOREFULL;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
      return PL_ECORRUPT;
    case MDB_VERSION_MISMATCH:
      return PL_EVERSION;
    case ENOSPC:
      return PL_ENOSPACE;
    case ENOMEM:
      return PL_ENOMEM;
    case EIO:
      return PL_EIO;
    default:
      return rc > 0 ? -rc : PL_ESTORE;
  }
}

static int mkdir_p(const char *dir) {
  char path[4096];
  size_t n = strlen(dir);
  if (n >= sizeof(path)) return PL_EINVAL;
  memcpy(path, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (path[i] == '/' || path[i] == '\0') {
      char c = path[i];
      path[i] = '\0';
      if (mkdir(path, 0755) != 0 && errno != EEXIST) return -errno;
      path[i] = c;
    }
  }
  return 0;
}

static int load_names(pl_store_t *s, MDB_txn *txn) {
  MDB_cursor *c;
  MDB_val k, v;
  int rc = mdb_cursor_open(txn, s->dbi[PL_TAB_DICT], &c);
  if (rc) return map_err(rc);
  for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    uint32_t id;
    if (v.mv_size != 4) {
      rc = MDB_CORRUPTED;
      break;
    }
    id = pl_be32_get(v.mv_data);
    if (name_map_put(&s->names, k.mv_data, k.mv_size, id)) {
      mdb_cursor_close(c);
      return PL_ENOMEM;
    }
  }
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND ? 0 : map_err(rc);
}

/* Months marked stale by a previous process: their pending deltas died with it, so they
 * will be recomputed from their day rows. */
static int load_stale(pl_store_t *s, MDB_txn *txn) {
  MDB_cursor *c;
  MDB_val k, v;
  int rc = mdb_cursor_open(txn, s->dbi[PL_TAB_STALE], &c);
  if (rc) return map_err(rc);
  for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    uint32_t m;
    if (k.mv_size != 4) {
      rc = MDB_CORRUPTED;
      break;
    }
    m = pl_be32_get(k.mv_data);
    if (month_set_add(&s->stale, m) || month_set_add(&s->unknown, m)) {
      mdb_cursor_close(c);
      return PL_ENOMEM;
    }
  }
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND ? 0 : map_err(rc);
}

static int open_tables(pl_store_t *s, char *err, size_t errlen) {
  MDB_txn *txn;
  MDB_val k, v;
  int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
  if (rc) goto fail;
  for (int t = 0; t < PL_TAB_COUNT; t++) {
    rc = mdb_dbi_open(txn, table_names[t], MDB_CREATE, &s->dbi[t]);
    if (rc) goto fail_txn;
  }
  k.mv_data = "version";
  k.mv_size = 7;
  rc = mdb_get(txn, s->dbi[PL_TAB_META], &k, &v);
  if (rc == MDB_NOTFOUND) {
    unsigned char ver[4];
    pl_be32_put(ver, SCHEMA_VERSION);
    v.mv_data = ver;
    v.mv_size = 4;
    rc = mdb_put(txn, s->dbi[PL_TAB_META], &k, &v, 0);
    if (rc) goto fail_txn;
    memset(&s->state, 0, sizeof(s->state));
    s->state.next_seq = 1;
    s->state.next_rseq = 1;
    s->state.next_id = 1;
    s->state.first_day = s->state.last_day = PL_AGG_NO_DAY;
  } else if (rc) {
    goto fail_txn;
  } else {
    if (v.mv_size == 4 && pl_be32_get(v.mv_data) == 2) {
      unsigned char ver[4];
      pl_be32_put(ver, SCHEMA_VERSION);
      v.mv_data = ver;
      v.mv_size = 4;
      if ((rc = mdb_put(txn, s->dbi[PL_TAB_META], &k, &v, 0))) goto fail_txn;
    } else if (v.mv_size != 4 || pl_be32_get(v.mv_data) != SCHEMA_VERSION) {
      mdb_txn_abort(txn);
      snprintf(err, errlen, "the data directory holds schema version %u; this parleyd reads %u",
               v.mv_size == 4 ? pl_be32_get(v.mv_data) : 0, SCHEMA_VERSION);
      return PL_EVERSION;
    }
    k.mv_data = "state";
    k.mv_size = 5;
    rc = mdb_get(txn, s->dbi[PL_TAB_META], &k, &v);
    if (rc == 0 && v.mv_size == sizeof(s->state)) {
      memcpy(&s->state, v.mv_data, sizeof(s->state));
    } else if (rc == MDB_NOTFOUND) {
      memset(&s->state, 0, sizeof(s->state));
      s->state.next_seq = s->state.next_rseq = 1;
      s->state.next_id = 1;
      s->state.first_day = s->state.last_day = PL_AGG_NO_DAY;
    } else {
      rc = rc ? rc : MDB_CORRUPTED;
      goto fail_txn;
    }
  }
  rc = load_names(s, txn);
  if (!rc) rc = load_stale(s, txn);
  if (rc) {
    mdb_txn_abort(txn);
    snprintf(err, errlen, "cannot load the dictionary: %s", pl_strerror(rc));
    return rc;
  }
  rc = mdb_txn_commit(txn);
  if (rc) goto fail;
  return 0;
fail_txn:
  mdb_txn_abort(txn);
fail:
  snprintf(err, errlen, "cannot open the tables: %s", mdb_strerror(rc));
  return map_err(rc);
}

static uint64_t instances; /* stores opened by this process so far */

uint64_t pl_store_instance(const pl_store_t *s) { return s->instance; }

int pl_store_open(pl_store_t **out, const pl_store_opts_t *o, char *err, size_t errlen) {
  pl_store_t *s;
  char path[4096];
  MDB_envinfo info;
  int rc, dead = 0;
  pthread_rwlockattr_t attr;

  *out = NULL;
  s = calloc(1, sizeof(*s));
  if (!s) return PL_ENOMEM;
  s->instance = __atomic_add_fetch(&instances, 1, __ATOMIC_RELAXED);
  s->lock_fd = -1;
  s->sync_full = o->sync_full;
  s->map_size = o->map_size;
  s->map_size_max = o->map_size_max < o->map_size ? o->map_size : o->map_size_max;
  s->chunk_retention_ms = o->chunk_retention_ms;
  s->retention_days = o->retention_days;
  s->rollup_interval_ms = o->rollup_interval_ms ? o->rollup_interval_ms : 1000;
  s->defer = 1;
  pthread_rwlockattr_init(&attr);
  /* Writer preference: a resize must not starve behind a steady stream of queries. */
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&s->maplock, &attr);
  pthread_rwlockattr_destroy(&attr);

  rc = mkdir_p(o->dir);
  if (rc) {
    snprintf(err, errlen, "cannot create data directory %s: %s", o->dir, pl_strerror(rc));
    goto fail;
  }
  /* LMDB lets several processes share an environment; two daemons must not, since each
   * assumes it alone assigns sequence numbers and dictionary ids. */
  snprintf(path, sizeof(path), "%s/parleyd.lock", o->dir);
  s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (s->lock_fd < 0) {
    rc = -errno;
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    goto fail;
  }
  if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    rc = errno == EWOULDBLOCK ? PL_ELOCKED : -errno;
    snprintf(err, errlen, "data directory %s is in use by another parleyd (lock %s held)", o->dir,
             path);
    goto fail;
  }
  rc = mdb_env_create(&s->env);
  if (rc) goto fail_mdb;
  mdb_env_set_maxdbs(s->env, PL_TAB_COUNT + 2);
  mdb_env_set_maxreaders(s->env, o->max_readers ? o->max_readers : 512);
  mdb_env_set_mapsize(s->env, (size_t)o->map_size);
  rc = mdb_env_open(s->env, o->dir, MDB_NOTLS | (o->sync_full ? 0 : MDB_NOSYNC), 0644);
  if (rc) goto fail_mdb;
  /* A process killed inside a read transaction leaves its reader slot taken, which would
   * keep old pages from being reused: clear such slots now. */
  mdb_reader_check(s->env, &dead);
  s->stale_readers = (uint32_t)dead;
  mdb_env_info(s->env, &info);
  /* An existing environment keeps the larger size it was last grown to. */
  s->map_size = info.me_mapsize;
  if (s->map_size_max < s->map_size) s->map_size_max = s->map_size;
  rc = open_tables(s, err, errlen);
  if (rc) goto fail;
  publish_info(s);
  {
    static const char unknown[] = "unknown";
    if (!name_map_find(&s->names, unknown, sizeof(unknown) - 1, &s->unknown_country))
      s->unknown_country = 0; /* interned on first use */
  }
  *out = s;
  return 0;
fail_mdb:
  snprintf(err, errlen, "cannot open LMDB environment in %s: %s", o->dir, mdb_strerror(rc));
  rc = map_err(rc);
fail:
  pl_store_close(s);
  return rc;
}

void pl_store_close(pl_store_t *s) {
  if (!s) return;
  if (s->env) mdb_env_close(s->env);
  if (s->lock_fd >= 0) close(s->lock_fd);
  name_map_free(&s->names);
  name_map_free(&s->pending);
  agg_map_free(&s->days);
  agg_map_free(&s->months);
  agg_map_free(&s->all_days);
  agg_map_free(&s->all_months);
  agg_map_free(&s->pairs);
  agg_map_free(&s->pair_months);
  agg_map_free(&s->pend_months);
  agg_map_free(&s->pend_pairs);
  free(s->stale.v);
  free(s->unknown.v);
  free(s->marking.v);
  key_map_free(&s->insts.keys);
  free(s->insts.v);
  free(s->scratch);
  pthread_rwlock_destroy(&s->maplock);
  free(s);
}

/* ---- write path ---- */

typedef struct wctx {
  pl_store_t *s;
  MDB_txn *txn;
} wctx_t;

static int intern(wctx_t *w, const char *p, size_t n, uint32_t *id) {
  pl_store_t *s = w->s;
  unsigned char idb[4];
  MDB_val k, v;
  int rc;
  if (n > 511) return PL_EINVAL; /* LMDB's key limit; record.c keeps names far below it */
  if (name_map_find(&s->names, p, n, id) || name_map_find(&s->pending, p, n, id)) return 0;
  if (s->names_partial) {
    k.mv_data = (void *)p;
    k.mv_size = n;
    rc = mdb_get(w->txn, s->dbi[PL_TAB_DICT], &k, &v);
    if (rc == 0 && v.mv_size == 4) {
      *id = pl_be32_get(v.mv_data);
      return 0;
    }
    if (rc != MDB_NOTFOUND) return rc ? map_err(rc) : PL_ECORRUPT;
  }
  *id = s->state.next_id++;
  pl_be32_put(idb, *id);
  k.mv_data = (void *)p;
  k.mv_size = n;
  v.mv_data = idb;
  v.mv_size = 4;
  rc = mdb_put(w->txn, s->dbi[PL_TAB_DICT], &k, &v, MDB_NOOVERWRITE);
  if (rc) return map_err(rc);
  rc = mdb_put(w->txn, s->dbi[PL_TAB_NAMES], &v, &k, MDB_APPEND);
  if (rc) return map_err(rc);
  return name_map_put(&s->pending, p, n, *id);
}

static int put_reject(wctx_t *w, const pl_batch_item_t *it) {
  pl_store_t *s = w->s;
  msgpack_sbuffer sb;
  msgpack_packer pk;
  unsigned char key[8];
  MDB_val k, v;
  int rc;
  size_t rn = strlen(it->reason), pn = strlen(it->peer);

  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 4);
  msgpack_pack_str_with_body(&pk, "reason", 6);
  msgpack_pack_str_with_body(&pk, it->reason, rn);
  msgpack_pack_str_with_body(&pk, "raw", 3);
  msgpack_pack_bin_with_body(&pk, it->raw, it->raw_len);
  msgpack_pack_str_with_body(&pk, "peer", 4);
  msgpack_pack_str_with_body(&pk, it->peer, pn);
  msgpack_pack_str_with_body(&pk, "received", 8);
  msgpack_pack_uint64(&pk, it->received_ms);
  if (!sb.data) return PL_ENOMEM;
  pl_be64_put(key, s->state.next_rseq++);
  k.mv_data = key;
  k.mv_size = 8;
  v.mv_data = sb.data;
  v.mv_size = sb.size;
  rc = mdb_put(w->txn, s->dbi[PL_TAB_REJECTS], &k, &v, MDB_APPEND);
  msgpack_sbuffer_destroy(&sb);
  if (rc) return map_err(rc);
  s->state.rejected++;
  return 0;
}

/* Folds one stored record into the commit's in-memory accumulators. A rebuild folds only
 * the aggregates: it derives insts and the totals from the day aggregates afterwards. */
static int fold_record(wctx_t *w, const pl_record_t *r, uint32_t inst, int rebuild) {
  pl_store_t *s = w->s;
  uint32_t kind = 0, format = 0, country = 0, id;
  uint64_t parts = r->has_participants ? r->participants : 0;
  pl_agg_t *a;
  pl_store_inst_t *ii;
  int rc;

  if (r->kind.n && (rc = intern(w, r->kind.p, r->kind.n, &kind))) return rc;
  if (r->format.n && (rc = intern(w, r->format.p, r->format.n, &format))) return rc;
  if (r->country.n) {
    if ((rc = intern(w, r->country.p, r->country.n, &country))) return rc;
  } else {
    if (!s->unknown_country && (rc = intern(w, "unknown", 7, &s->unknown_country))) return rc;
    country = s->unknown_country;
  }
  a = agg_map_get(&s->days, r->day, inst, 0);
  if (!a) return PL_ENOMEM;
  pl_agg_count(a, r->day, parts);
  if (kind && pl_agg_add(a, PL_AGG_KINDS, kind, 1, parts)) return PL_ENOMEM;
  if (format && pl_agg_add(a, PL_AGG_FORMATS, format, 1, parts)) return PL_ENOMEM;
  for (uint32_t i = 0; i < r->ntopics; i++) {
    if ((rc = intern(w, r->topics[i].p, r->topics[i].n, &id))) return rc;
    if (pl_agg_add(a, PL_AGG_TOPICS, id, 1, parts)) return PL_ENOMEM;
  }
  if (!rebuild) {
    ii = inst_acc_get(&s->insts, inst);
    if (!ii) return PL_ENOMEM;
    ii->events++;
    ii->flags |= PL_INST_REPORTER;
    if (ii->first_day == PL_AGG_NO_DAY || r->day < ii->first_day) ii->first_day = r->day;
    if (ii->last_day == PL_AGG_NO_DAY || r->day > ii->last_day) ii->last_day = r->day;
  }
  for (uint32_t i = 0; i < r->ncounterparts; i++) {
    pl_agg_t *p;
    if ((rc = intern(w, r->counterparts[i].p, r->counterparts[i].n, &id))) return rc;
    /* `a` stays valid: only another agg_map_get on s->days could move it. */
    if (pl_agg_add(a, PL_AGG_COUNTERPARTS, id, 1, parts)) return PL_ENOMEM;
    if (!rebuild) {
      ii = inst_acc_get(&s->insts, id);
      if (!ii) return PL_ENOMEM;
      ii->flags |= PL_INST_COUNTERPART;
    }
    p = agg_map_get(&s->pairs, r->day, inst < id ? inst : id, inst < id ? id : inst);
    if (!p) return PL_ENOMEM;
    pl_agg_count(p, r->day, parts);
    if (kind && pl_agg_add(p, PL_AGG_KINDS, kind, 1, parts)) return PL_ENOMEM;
    if (pl_agg_add(p, PL_AGG_COUNTRIES, country, 1, parts)) return PL_ENOMEM;
  }
  if (rebuild) return 0;
  s->state.events++;
  if (s->state.first_day == PL_AGG_NO_DAY || r->day < s->state.first_day)
    s->state.first_day = r->day;
  if (s->state.last_day == PL_AGG_NO_DAY || r->day > s->state.last_day) s->state.last_day = r->day;
  if (r->day < s->prune_clean) s->prune_clean = r->day; /* a late event for retention to see */
  return 0;
}

static int scratch(pl_store_t *s, size_t n) {
  if (n <= s->scratch_cap) return 0;
  size_t cap = s->scratch_cap ? s->scratch_cap : 65536;
  while (cap < n) cap *= 2;
  char *p = realloc(s->scratch, cap);
  if (!p) return PL_ENOMEM;
  s->scratch = p;
  s->scratch_cap = cap;
  return 0;
}

/* Writes delta merged with what the table holds under key. *was_new tells whether the key
 * was absent before (a first event of that day, for the month's active-day count). */
static int write_agg(wctx_t *w, pl_table_t tab, const unsigned char *key, size_t klen,
                     pl_agg_t *delta, int day_level, int *was_new) {
  pl_store_t *s = w->s;
  MDB_val k = {klen, (void *)key}, v;
  pl_agg_view_t old;
  size_t n;
  int rc = mdb_get(w->txn, s->dbi[tab], &k, &v);
  pl_agg_normalize(delta);
  if (rc == MDB_NOTFOUND) {
    *was_new = 1;
    if (scratch(s, pl_agg_encode_bound(delta, NULL))) return PL_ENOMEM;
    n = pl_agg_encode_merged(delta, NULL, day_level, s->scratch);
  } else if (rc) {
    return map_err(rc);
  } else {
    *was_new = 0;
    if (pl_agg_view(&old, v.mv_data, v.mv_size)) return PL_ECORRUPT;
    if (scratch(s, pl_agg_encode_bound(delta, &old))) return PL_ENOMEM;
    /* The merged value is built apart from the old one: putting may move the page the
     * old value lives on. */
    n = pl_agg_encode_merged(delta, &old, day_level, s->scratch);
    if (n == 0) return PL_ECORRUPT; /* the old row does not decode: never write a part of it */
  }
  v.mv_data = s->scratch;
  v.mv_size = n;
  return map_err(mdb_put(w->txn, s->dbi[tab], &k, &v, 0));
}

/* Writes the day-level map, rolling each delta up into the month-level map (and, for
 * institutions, into the all-institutions day map). */
static int flush_level(wctx_t *w, agg_map_t *day_map, pl_table_t day_tab, agg_map_t *month_map,
                       agg_map_t *all_map, int pair) {
  unsigned char key[12];
  int rc, was_new;
  if ((rc = agg_map_sort(day_map))) return rc;
  for (uint32_t oi = 0; oi < day_map->keys.n; oi++) {
    uint32_t i = day_map->order[oi];
    const uint32_t *k = day_map->keys.keys[i];
    pl_agg_t *d = &day_map->aggs[i], *m;
    size_t klen = pair ? pl_key_pair(key, k[0], k[1], k[2]) : pl_key_day_inst(key, k[0], k[1]);
    if ((rc = write_agg(w, day_tab, key, klen, d, 1, &was_new))) return rc;
    /* d was normalised by write_agg; merging keeps the month and all-institution deltas
     * normalised too, so they are never sorted again. */
    m = agg_map_get(month_map, pl_date_month(k[0]), k[1], k[2]);
    if (!m) return PL_ENOMEM;
    d->active_days = (uint32_t)was_new;
    if (pl_agg_merge_normalized(m, d, 0)) return PL_ENOMEM;
    if (!pair) {
      uint32_t dom = k[0] - pl_date_month_first(pl_date_month(k[0])) + 1;
      /* Keys are in day order, so each month's days arrive in order and m stays normalised. */
      assert(m->sect[PL_AGG_DAYS].n == 0 ||
             m->sect[PL_AGG_DAYS].v[m->sect[PL_AGG_DAYS].n - 1].id < dom);
      if (pl_agg_add(m, PL_AGG_DAYS, dom, d->events, d->participants)) return PL_ENOMEM;
    }
    if (all_map) {
      pl_agg_t *a = agg_map_get(all_map, k[0], 0, 0);
      if (!a) return PL_ENOMEM;
      d->active_days = 0;
      if (pl_agg_merge_normalized(a, d, 1)) return PL_ENOMEM;
    }
  }
  return 0;
}

/* Writes month deltas merged into the month rows; months in skip (may be NULL) are left out. */
static int flush_months(wctx_t *w, agg_map_t *map, pl_table_t tab, int pair,
                        const month_set_t *skip) {
  unsigned char key[12];
  int rc, was_new;
  if ((rc = agg_map_sort(map))) return rc;
  for (uint32_t oi = 0; oi < map->keys.n; oi++) {
    uint32_t i = map->order[oi];
    const uint32_t *k = map->keys.keys[i];
    if (skip && month_set_has(skip, k[0])) continue;
    size_t klen = pair ? pl_key_pair(key, k[0], k[1], k[2]) : pl_key_day_inst(key, k[0], k[1]);
    if ((rc = write_agg(w, tab, key, klen, &map->aggs[i], 0, &was_new))) return rc;
  }
  return 0;
}

/* Marks every month of a month-delta map stale, once per month per transaction. */
static int mark_months(wctx_t *w, const agg_map_t *map) {
  pl_store_t *s = w->s;
  for (uint32_t i = 0; i < map->keys.n; i++) {
    uint32_t m = map->keys.keys[i][0];
    unsigned char key[4];
    MDB_val k = {4, key}, v = {0, NULL};
    int rc;
    if (month_set_has(&s->stale, m) || month_set_has(&s->marking, m)) continue;
    pl_be32_put(key, m);
    if ((rc = mdb_put(w->txn, s->dbi[PL_TAB_STALE], &k, &v, 0))) return map_err(rc);
    if (month_set_add(&s->marking, m)) return PL_ENOMEM;
  }
  /* Room to record the marks once committed, so that step cannot fail. */
  return month_set_reserve(&s->stale, s->stale.n + s->marking.n);
}

/* After a commit: its month deltas join the pending ones (kept normalised, so they stay as
 * small as the month rows they will be folded into). */
static int keep_pending(pl_store_t *s) {
  agg_map_t *from[3] = {&s->months, &s->all_months, &s->pair_months};
  /* The marks first: whatever happens to the deltas below, a marked month is known to be
   * stale (and recomputed from its days when its deltas were lost). */
  for (uint32_t i = 0; i < s->marking.n; i++)
    if (!month_set_has(&s->stale, s->marking.v[i])) s->stale.v[s->stale.n++] = s->marking.v[i];
  s->marking.n = 0;
  for (int f = 0; f < 3; f++) {
    agg_map_t *src = from[f], *dst = f == 2 ? &s->pend_pairs : &s->pend_months;
    for (uint32_t i = 0; i < src->keys.n; i++) {
      const uint32_t *k = src->keys.keys[i];
      pl_agg_t *d = agg_map_get(dst, k[0], k[1], k[2]);
      if (!d || pl_agg_merge_normalized(d, &src->aggs[i], 0)) return PL_ENOMEM;
    }
  }
  return 0;
}

static int flush_insts(wctx_t *w) {
  pl_store_t *s = w->s;
  inst_acc_t *m = &s->insts;
  for (uint32_t i = 0; i < m->keys.n; i++) {
    unsigned char key[4];
    pl_store_inst_t cur, *d = &m->v[i];
    MDB_val k = {4, key}, v;
    int rc;
    pl_be32_put(key, m->keys.keys[i][0]);
    rc = mdb_get(w->txn, s->dbi[PL_TAB_INSTS], &k, &v);
    if (rc == MDB_NOTFOUND) {
      memset(&cur, 0, sizeof(cur));
      cur.first_day = cur.last_day = PL_AGG_NO_DAY;
      s->state.institutions++;
    } else if (rc) {
      return map_err(rc);
    } else if (v.mv_size != sizeof(cur)) {
      return PL_ECORRUPT;
    } else {
      memcpy(&cur, v.mv_data, sizeof(cur));
    }
    cur.events += d->events;
    cur.flags |= d->flags;
    if (d->first_day != PL_AGG_NO_DAY &&
        (cur.first_day == PL_AGG_NO_DAY || d->first_day < cur.first_day))
      cur.first_day = d->first_day;
    if (d->last_day != PL_AGG_NO_DAY &&
        (cur.last_day == PL_AGG_NO_DAY || d->last_day > cur.last_day))
      cur.last_day = d->last_day;
    v.mv_data = &cur;
    v.mv_size = sizeof(cur);
    if ((rc = mdb_put(w->txn, s->dbi[PL_TAB_INSTS], &k, &v, 0))) return map_err(rc);
  }
  return 0;
}

static void reset_accumulators(pl_store_t *s) {
  agg_map_clear(&s->days);
  agg_map_clear(&s->months);
  agg_map_clear(&s->all_days);
  agg_map_clear(&s->all_months);
  agg_map_clear(&s->pairs);
  agg_map_clear(&s->pair_months);
  key_map_clear(&s->insts.keys);
}

/* Writes every accumulator and the state. */
static int flush_all(wctx_t *w) {
  pl_store_t *s = w->s;
  MDB_val k = {5, "state"}, v = {sizeof(s->state), &s->state};
  int rc;
  if ((rc = flush_level(w, &s->days, PL_TAB_DAYS, &s->months, &s->all_days, 0))) return rc;
  if ((rc = flush_level(w, &s->all_days, PL_TAB_DAYS, &s->all_months, NULL, 0))) return rc;
  if ((rc = flush_level(w, &s->pairs, PL_TAB_PAIRS, &s->pair_months, NULL, 1))) return rc;
  if (s->defer) {
    /* The month rows wait for the next fold; readers see the month as stale meanwhile. */
    if ((rc = mark_months(w, &s->months)) || (rc = mark_months(w, &s->all_months)) ||
        (rc = mark_months(w, &s->pair_months)))
      return rc;
  } else if ((rc = flush_months(w, &s->months, PL_TAB_MONTHS, 0, NULL)) ||
             (rc = flush_months(w, &s->all_months, PL_TAB_MONTHS, 0, NULL)) ||
             (rc = flush_months(w, &s->pair_months, PL_TAB_PAIR_MONTHS, 1, NULL))) {
    return rc;
  }
  if ((rc = flush_insts(w))) return rc;
  return map_err(mdb_put(w->txn, s->dbi[PL_TAB_META], &k, &v, 0));
}

static int store_record(wctx_t *w, const pl_batch_item_t *it, pl_batch_t *b) {
  pl_store_t *s = w->s;
  const pl_record_t *r = &it->rec;
  unsigned char key[16], seqb[8];
  MDB_val k, v;
  uint32_t inst;
  int rc = intern(w, r->institution.p, r->institution.n, &inst);
  if (rc) return rc;
  if (r->id_type != PL_ID_NONE) {
    unsigned char ik[4 + 1 + PL_RECORD_MAX_ID];
    size_t n = 5;
    pl_be32_put(ik, r->day);
    if (r->id_type == PL_ID_UINT) {
      ik[4] = 'u';
      pl_be64_put(ik + 5, r->id_uint);
      n += 8;
    } else {
      ik[4] = 's';
      if (r->id_str.n > PL_RECORD_MAX_ID) return PL_EINVAL;
      memcpy(ik + 5, r->id_str.p, r->id_str.n);
      n += r->id_str.n;
    }
    pl_be64_put(seqb, s->state.next_seq);
    k.mv_data = ik;
    k.mv_size = n;
    v.mv_data = seqb;
    v.mv_size = 8;
    rc = mdb_put(w->txn, s->dbi[PL_TAB_IDEM], &k, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
      b->duplicates++;
      s->state.duplicates++;
      return 0;
    }
    if (rc) return map_err(rc);
  }
  k.mv_data = key;
  k.mv_size = pl_key_event(key, r->day, inst, s->state.next_seq++);
  v.mv_data = (void *)it->value;
  v.mv_size = it->value_len;
  if ((rc = mdb_put(w->txn, s->dbi[PL_TAB_EVENTS], &k, &v, 0))) return map_err(rc);
  b->stored++;
  return fold_record(w, r, inst, 0);
}

static int prune_chunks(wctx_t *w, uint64_t now_ms) {
  pl_store_t *s = w->s;
  MDB_cursor *c;
  MDB_val k, v;
  int rc, n = 0;
  uint64_t cutoff = now_ms > s->chunk_retention_ms ? now_ms - s->chunk_retention_ms : 0;
  if ((rc = mdb_cursor_open(w->txn, s->dbi[PL_TAB_CHUNK_AGE], &c))) return map_err(rc);
  for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && n < PRUNE_PER_COMMIT;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), n++) {
    MDB_val ck;
    if (k.mv_size < 8 || pl_be64_get(k.mv_data) >= cutoff) break;
    ck.mv_data = (char *)k.mv_data + 8;
    ck.mv_size = k.mv_size - 8;
    rc = mdb_del(w->txn, s->dbi[PL_TAB_CHUNKS], &ck, NULL);
    if (rc && rc != MDB_NOTFOUND) break;
    if ((rc = mdb_cursor_del(c, 0))) break;
  }
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND ? 0 : map_err(rc);
}

/* One attempt at committing the group; the caller retries after growing the map. */
static int commit_once(pl_store_t *s, pl_batch_t *const *batches, size_t n, uint64_t now_ms) {
  wctx_t w = {s, NULL};
  int rc = mdb_txn_begin(s->env, NULL, 0, &w.txn);
  if (rc) return map_err(rc);
  reset_accumulators(s);
  for (size_t i = 0; i < n; i++) {
    pl_batch_t *b = batches[i];
    pl_batch_item_t it;
    size_t pos = 0;
    MDB_val ck, cv;
    b->stored = b->duplicates = b->rejected = 0;
    b->chunk_seen = 0;
    if (b->chunk) {
      ck.mv_data = b->chunk;
      ck.mv_size = b->chunk_len;
      rc = ck.mv_size > 0 && ck.mv_size <= 500 ? mdb_get(w.txn, s->dbi[PL_TAB_CHUNKS], &ck, &cv)
                                                : MDB_BAD_VALSIZE;
      if (rc == 0) {
        b->chunk_seen = 1;
        continue;
      }
      if (rc != MDB_NOTFOUND) goto fail;
    }
    while (pl_batch_next(b, &pos, &it)) {
      if (it.kind == 'x') {
        if ((rc = put_reject(&w, &it))) goto fail_pl;
        b->rejected++;
      } else if ((rc = store_record(&w, &it, b))) {
        goto fail_pl;
      }
    }
    if (b->chunk) {
      unsigned char tb[8 + 500];
      uint64_t t = now_ms;
      cv.mv_data = &t;
      cv.mv_size = 8;
      if ((rc = mdb_put(w.txn, s->dbi[PL_TAB_CHUNKS], &ck, &cv, 0))) goto fail;
      pl_be64_put(tb, now_ms);
      memcpy(tb + 8, b->chunk, b->chunk_len);
      ck.mv_data = tb;
      ck.mv_size = 8 + b->chunk_len;
      cv.mv_size = 0;
      if ((rc = mdb_put(w.txn, s->dbi[PL_TAB_CHUNK_AGE], &ck, &cv, 0))) goto fail;
    }
  }
  if ((rc = flush_all(&w))) goto fail_pl;
  if ((rc = prune_chunks(&w, now_ms))) goto fail_pl;
  rc = mdb_txn_commit(w.txn);
  return map_err(rc);
fail:
  rc = map_err(rc);
fail_pl:
  mdb_txn_abort(w.txn);
  return rc;
}

/* After a commit, the names it interned join the committed ones. When memory runs out
 * here, intern() finds such a name in the dict table instead (names_partial). */
static void adopt_pending(pl_store_t *s) {
  for (uint32_t i = 0; i < s->pending.cap; i++) {
    name_slot_t *p = &s->pending.slots[i];
    if (p->off && name_map_put(&s->names, s->pending.arena + p->off - 1, p->len, p->id))
      s->names_partial = 1;
  }
  name_map_clear(&s->pending);
}

static int grow_map(pl_store_t *s) {
  uint64_t size = s->map_size * 2;
  int rc;
  if (s->map_size >= s->map_size_max) return PL_ESTOREFULL;
  if (size > s->map_size_max) size = s->map_size_max;
  pthread_rwlock_wrlock(&s->maplock);
  rc = mdb_env_set_mapsize(s->env, (size_t)size);
  pthread_rwlock_unlock(&s->maplock);
  if (rc) return map_err(rc);
  s->map_size = size;
  __atomic_add_fetch(&s->map_grows, 1, __ATOMIC_RELAXED);
  publish_info(s);
  return 0;
}

int pl_store_commit(pl_store_t *s, pl_batch_t *const *batches, size_t n, uint64_t now_ms) {
  pl_store_state_t saved = s->state;
  uint32_t saved_unknown = s->unknown_country;
  int rc;
  for (;;) {
    rc = commit_once(s, batches, n, now_ms);
    if (rc == 0) break;
    /* Nothing of the attempt is stored: forget its names and counters. */
    s->state = saved;
    s->unknown_country = saved_unknown;
    s->marking.n = 0;
    name_map_clear(&s->pending);
    if (rc != PL_ESTOREFULL || grow_map(s) != 0) break;
  }
  if (rc == 0) {
    adopt_pending(s);
    if (s->defer && keep_pending(s)) s->pending_lost = 1;
    __atomic_add_fetch(&s->commits, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&s->full, 0, __ATOMIC_RELAXED);
  } else {
    __atomic_add_fetch(&s->commit_errors, 1, __ATOMIC_RELAXED);
    if (rc == PL_ESTOREFULL || rc == PL_ENOSPACE) __atomic_store_n(&s->full, 1, __ATOMIC_RELAXED);
  }
  for (size_t i = 0; i < n; i++) {
    batches[i]->status = rc;
    if (rc) batches[i]->stored = batches[i]->duplicates = batches[i]->rejected = 0;
  }
  publish_info(s);
  return rc;
}

/* ---- folding month rollups ---- */

/* Deletes the rows of one month from a month table (keys start with the month). */
static int delete_month(wctx_t *w, pl_table_t tab, uint32_t month) {
  MDB_cursor *c;
  MDB_val k, v;
  unsigned char key[4];
  int rc = mdb_cursor_open(w->txn, w->s->dbi[tab], &c);
  if (rc) return map_err(rc);
  pl_be32_put(key, month);
  k.mv_data = key;
  k.mv_size = 4;
  for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    if (k.mv_size < 4 || pl_be32_get(k.mv_data) != month) break;
    if ((rc = mdb_cursor_del(c, 0))) break;
  }
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND || rc == 0 ? 0 : map_err(rc);
}

/* Sums the day rows of a month (day · inst, or day · lo · hi) into month deltas. */
static int sum_days(wctx_t *w, pl_table_t tab, uint32_t month, agg_map_t *out, int pair) {
  MDB_cursor *c;
  MDB_val k, v;
  unsigned char key[4];
  uint32_t first = pl_date_month_first(month);
  uint32_t last = first + (uint32_t)pl_date_month_len(month) - 1;
  int rc = mdb_cursor_open(w->txn, w->s->dbi[tab], &c);
  if (rc) return map_err(rc);
  pl_be32_put(key, first);
  k.mv_data = key;
  k.mv_size = 4;
  for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    const unsigned char *kp = k.mv_data;
    pl_agg_view_t day;
    pl_agg_t *m;
    if (k.mv_size != (pair ? 12u : 8u) || pl_be32_get(kp) > last) break;
    if (pl_agg_view(&day, v.mv_data, v.mv_size)) {
      rc = MDB_CORRUPTED;
      break;
    }
    m = agg_map_get(out, month, pl_be32_get(kp + 4), pair ? pl_be32_get(kp + 8) : 0);
    if (!m || pl_agg_merge_view(m, &day) ||
        (!pair && pl_agg_add(m, PL_AGG_DAYS, pl_be32_get(kp) - first + 1, day.events,
                             day.participants))) {
      mdb_cursor_close(c);
      return PL_ENOMEM;
    }
  }
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND || rc == 0 ? 0 : map_err(rc);
}

static int fold_once(pl_store_t *s) {
  wctx_t w = {s, NULL};
  const month_set_t *unknown = &s->unknown;
  month_set_t all = {s->stale.v, s->stale.n, s->stale.cap};
  int rc = mdb_txn_begin(s->env, NULL, 0, &w.txn);
  if (rc) return map_err(rc);
  if (s->pending_lost) unknown = &all;
  /* Months whose deltas are all in memory: fold them into the rows. */
  if ((rc = flush_months(&w, &s->pend_months, PL_TAB_MONTHS, 0, unknown)) ||
      (rc = flush_months(&w, &s->pend_pairs, PL_TAB_PAIR_MONTHS, 1, unknown)))
    goto fail;
  /* The others: recompute from their day rows (the commit maps are free between commits). */
  for (uint32_t i = 0; i < unknown->n; i++) {
    uint32_t m = unknown->v[i];
    reset_accumulators(s);
    if ((rc = delete_month(&w, PL_TAB_MONTHS, m)) || (rc = delete_month(&w, PL_TAB_PAIR_MONTHS, m)) ||
        (rc = sum_days(&w, PL_TAB_DAYS, m, &s->months, 0)) ||
        (rc = sum_days(&w, PL_TAB_PAIRS, m, &s->pair_months, 1)) ||
        (rc = flush_months(&w, &s->months, PL_TAB_MONTHS, 0, NULL)) ||
        (rc = flush_months(&w, &s->pair_months, PL_TAB_PAIR_MONTHS, 1, NULL)))
      goto fail;
  }
  for (uint32_t i = 0; i < s->stale.n; i++) {
    unsigned char key[4];
    MDB_val k = {4, key};
    pl_be32_put(key, s->stale.v[i]);
    rc = mdb_del(w.txn, s->dbi[PL_TAB_STALE], &k, NULL);
    if (rc && rc != MDB_NOTFOUND) {
      rc = map_err(rc);
      goto fail;
    }
  }
  reset_accumulators(s);
  return map_err(mdb_txn_commit(w.txn));
fail:
  reset_accumulators(s);
  mdb_txn_abort(w.txn);
  return rc;
}

int pl_store_refresh(pl_store_t *s) {
  int rc = 0;
  if (s->stale.n == 0) return 0;
  for (;;) {
    rc = fold_once(s);
    if (rc != PL_ESTOREFULL || grow_map(s) != 0) break;
  }
  s->last_fold_ms = mono_ms();
  if (rc == 0) {
    agg_map_clear(&s->pend_months);
    agg_map_clear(&s->pend_pairs);
    s->stale.n = s->unknown.n = 0;
    s->pending_lost = 0;
  }
  publish_info(s);
  return rc;
}

int pl_store_refresh_due(const pl_store_t *s, uint64_t now_ms) {
  return s->stale.n > 0 && now_ms - s->last_fold_ms >= s->rollup_interval_ms;
}

/* ---- rebuild ---- */

/* Deletes the keys >= from (a big-endian prefix) of a table, in transactions of bounded
 * size, or the whole table when from is NULL. */
static int clear_from(pl_store_t *s, pl_table_t tab, const unsigned char *from, size_t fromlen) {
  for (;;) {
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k, v;
    int rc, n = 0, more = 0;
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn))) return map_err(rc);
    if (!from) {
      rc = mdb_drop(txn, s->dbi[tab], 0);
    } else if (!(rc = mdb_cursor_open(txn, s->dbi[tab], &c))) {
      k.mv_data = (void *)from;
      k.mv_size = fromlen;
      for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
           rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (++n > REBUILD_PER_TXN) {
          more = 1;
          break;
        }
        if ((rc = mdb_cursor_del(c, 0))) break;
      }
      mdb_cursor_close(c);
      if (rc == MDB_NOTFOUND || more) rc = 0;
    }
    if (rc) {
      mdb_txn_abort(txn);
      if (rc == MDB_MAP_FULL && grow_map(s) == 0) continue;
      return map_err(rc);
    }
    if ((rc = mdb_txn_commit(txn))) return map_err(rc);
    if (!more) return 0;
  }
}

static int rebuild_step(pl_store_t *s, unsigned char *last, size_t *lastlen, uint64_t *seen,
                        int *done) {
  wctx_t w = {s, NULL};
  MDB_cursor *c = NULL;
  MDB_val k, v;
  msgpack_unpacked u;
  int rc, prc = 0, n = 0;
  uint32_t from = s->state.retained_from;
  msgpack_unpacked_init(&u);
  rc = mdb_txn_begin(s->env, NULL, 0, &w.txn);
  if (rc) {
    msgpack_unpacked_destroy(&u);
    return map_err(rc);
  }
  reset_accumulators(s);
  if ((rc = mdb_cursor_open(w.txn, s->dbi[PL_TAB_EVENTS], &c))) goto fail;
  if (*lastlen) {
    k.mv_data = last;
    k.mv_size = *lastlen;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && k.mv_size == *lastlen && memcmp(k.mv_data, last, *lastlen) == 0)
      rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
  } else {
    /* Events before the retention boundary (late arrivals not yet pruned) are already in
     * the aggregates that were kept. */
    unsigned char start[4];
    pl_be32_put(start, from);
    k.mv_data = start;
    k.mv_size = 4;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
  }
  for (; rc == 0 && n < REBUILD_PER_TXN; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), n++) {
    pl_record_t r;
    if (k.mv_size != 16 ||
        pl_record_unpack_stored(v.mv_data, v.mv_size, &u, NULL, NULL, &r) != 0) {
      rc = MDB_CORRUPTED;
      goto fail;
    }
    if ((prc = fold_record(&w, &r, pl_be32_get((const unsigned char *)k.mv_data + 4), 1)))
      goto fail;
    memcpy(last, k.mv_data, 16);
    *lastlen = 16;
  }
  if (rc != 0 && rc != MDB_NOTFOUND) goto fail;
  *done = rc == MDB_NOTFOUND;
  mdb_cursor_close(c);
  c = NULL;
  *seen += (uint64_t)n;
  if ((prc = flush_all(&w))) goto fail;
  rc = mdb_txn_commit(w.txn);
  msgpack_unpacked_destroy(&u);
  if (rc == 0) adopt_pending(s);
  return map_err(rc);
fail:
  if (c) mdb_cursor_close(c);
  mdb_txn_abort(w.txn);
  msgpack_unpacked_destroy(&u);
  return prc ? prc : map_err(rc);
}

/* insts and the totals from the day aggregates: they cover periods whose raw events were
 * deleted by retention as well as the rebuilt ones. */
static int rebuild_insts(pl_store_t *s) {
  wctx_t w = {s, NULL};
  MDB_cursor *c = NULL;
  MDB_val k, v;
  int rc, prc = 0;
  if ((rc = mdb_txn_begin(s->env, NULL, 0, &w.txn))) return map_err(rc);
  reset_accumulators(s);
  s->state.events = 0;
  s->state.institutions = 0;
  s->state.first_day = s->state.last_day = PL_AGG_NO_DAY;
  if ((rc = mdb_drop(w.txn, s->dbi[PL_TAB_INSTS], 0))) goto fail;
  if ((rc = mdb_cursor_open(w.txn, s->dbi[PL_TAB_DAYS], &c))) goto fail;
  for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    pl_agg_view_t a;
    uint32_t day, inst;
    if (k.mv_size != 8 || pl_agg_view(&a, v.mv_data, v.mv_size) != 0) {
      rc = MDB_CORRUPTED;
      goto fail;
    }
    day = pl_be32_get(k.mv_data);
    inst = pl_be32_get((const unsigned char *)k.mv_data + 4);
    if (inst == 0) {
      s->state.events += a.events;
      if (s->state.first_day == PL_AGG_NO_DAY || day < s->state.first_day) s->state.first_day = day;
      if (s->state.last_day == PL_AGG_NO_DAY || day > s->state.last_day) s->state.last_day = day;
      continue;
    }
    pl_store_inst_t *ii = inst_acc_get(&s->insts, inst);
    if (!ii) {
      prc = PL_ENOMEM;
      goto fail;
    }
    ii->events += a.events;
    ii->flags |= PL_INST_REPORTER;
    if (ii->first_day == PL_AGG_NO_DAY || day < ii->first_day) ii->first_day = day;
    if (ii->last_day == PL_AGG_NO_DAY || day > ii->last_day) ii->last_day = day;
    pl_agg_iter_t it;
    pl_agg_entry_t e;
    pl_agg_iter_init(&it, &a, PL_AGG_COUNTERPARTS);
    while (pl_agg_iter_next(&it, &e) == 1) {
      if (!(ii = inst_acc_get(&s->insts, e.id))) {
        prc = PL_ENOMEM;
        goto fail;
      }
      ii->flags |= PL_INST_COUNTERPART;
    }
    if (it.corrupt) {
      rc = MDB_CORRUPTED;
      goto fail;
    }
  }
  if (rc != MDB_NOTFOUND) goto fail;
  mdb_cursor_close(c);
  c = NULL;
  if ((prc = flush_insts(&w))) goto fail;
  {
    MDB_val sk = {5, "state"}, sv = {sizeof(s->state), &s->state};
    if ((rc = mdb_put(w.txn, s->dbi[PL_TAB_META], &sk, &sv, 0))) goto fail;
  }
  return map_err(mdb_txn_commit(w.txn));
fail:
  if (c) mdb_cursor_close(c);
  mdb_txn_abort(w.txn);
  return prc ? prc : map_err(rc);
}

/* Recomputes the rows from the retention boundary on from the raw events (writing month
 * rows directly), then insts and the totals from the day rows. */
static int rebuild_from(pl_store_t *s, uint32_t rf, uint64_t *events) {
  unsigned char last[16], from[4], month_from[4];
  size_t lastlen = 0;
  int rc, done = 0;
  pl_be32_put(from, rf);
  pl_be32_put(month_from, pl_date_month(rf));
  if ((rc = clear_from(s, PL_TAB_DAYS, rf ? from : NULL, 4)) ||
      (rc = clear_from(s, PL_TAB_PAIRS, rf ? from : NULL, 4)) ||
      (rc = clear_from(s, PL_TAB_MONTHS, rf ? month_from : NULL, 4)) ||
      (rc = clear_from(s, PL_TAB_PAIR_MONTHS, rf ? month_from : NULL, 4)))
    return rc;
  while (!done) {
    pl_store_state_t before = s->state;
    unsigned char last_before[16];
    size_t lastlen_before = lastlen;
    uint64_t seen_before = *events;
    memcpy(last_before, last, sizeof(last_before));
    rc = rebuild_step(s, last, &lastlen, events, &done);
    if (rc == 0) continue;
    s->state = before;
    name_map_clear(&s->pending);
    memcpy(last, last_before, sizeof(last_before));
    lastlen = lastlen_before;
    *events = seen_before;
    done = 0;
    if (rc != PL_ESTOREFULL || grow_map(s)) return rc;
  }
  for (;;) {
    pl_store_state_t before = s->state;
    rc = rebuild_insts(s);
    if (rc == 0) return 0;
    s->state = before;
    if (rc != PL_ESTOREFULL || grow_map(s)) return rc;
  }
}

int pl_store_rebuild(pl_store_t *s, uint64_t *events) {
  int rc;
  *events = 0;
  /* With retention, months before the boundary keep their rollups: bring any stale ones up
   * to date from their day rows first. Without it every month is recomputed from the
   * events below, so a stale month (even one with a corrupt day row) needs nothing. */
  if (s->state.retained_from && (rc = pl_store_refresh(s))) return rc;
  s->defer = 0;
  rc = rebuild_from(s, s->state.retained_from, events);
  s->defer = 1;
  if (rc == 0 && s->stale.n) {
    if ((rc = clear_from(s, PL_TAB_STALE, NULL, 0))) return rc;
    agg_map_clear(&s->pend_months);
    agg_map_clear(&s->pend_pairs);
    s->stale.n = s->unknown.n = 0;
    s->pending_lost = 0;
  }
  publish_info(s);
  return rc;
}

/* ---- retention ---- */

int pl_store_maintain(pl_store_t *s, size_t max, int *more) {
  MDB_txn *txn;
  MDB_cursor *c;
  MDB_val k, v;
  unsigned char key[4];
  uint32_t cutoff;
  size_t n = 0;
  int rc;
  *more = 0;
  /* Folding is a transaction with its own fsync: at light load, do it on the interval
   * rather than after every commit (answers are exact either way). */
  if (pl_store_refresh_due(s, mono_ms()) && (rc = pl_store_refresh(s))) return rc;
  {
    /* A tool (mdb_copy, a backup script) killed inside a read transaction while we run
     * would keep pages from being reused until the next open: clear its slot now. */
    int dead = 0;
    mdb_reader_check(s->env, &dead);
    if (dead) __atomic_add_fetch(&s->stale_readers, (uint32_t)dead, __ATOMIC_RELAXED);
  }
  if (!s->retention_days || s->state.last_day == PL_AGG_NO_DAY ||
      s->state.last_day + 1 < s->retention_days)
    return 0;
  /* Whole months go, so the month aggregates of what is left match the raw events left
   * and a rebuild can recompute every month it touches. */
  cutoff = pl_date_month_first(pl_date_month(s->state.last_day + 1 - s->retention_days));
  if (cutoff <= s->prune_clean && cutoff <= s->state.retained_from) return 0;
  if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn))) return map_err(rc);
  pl_be32_put(key, 0);
  /* Only raw events go: the idem rows (a few dozen bytes each) stay, so a record re-sent
   * after its month was pruned is still recognised and not aggregated twice. */
  {
    if ((rc = mdb_cursor_open(txn, s->dbi[PL_TAB_EVENTS], &c))) goto fail;
    k.mv_data = key;
    k.mv_size = 4;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && n < max;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
      if (k.mv_size < 4 || pl_be32_get(k.mv_data) >= cutoff) {
        rc = MDB_NOTFOUND;
        break;
      }
      if ((rc = mdb_cursor_del(c, 0))) break;
      n++;
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND && rc != 0) goto fail;
  }
  *more = n >= max;
  if (cutoff > s->state.retained_from) {
    pl_store_state_t st = s->state;
    MDB_val sk = {5, "state"}, sv = {sizeof(st), &st};
    st.retained_from = cutoff;
    if ((rc = mdb_put(txn, s->dbi[PL_TAB_META], &sk, &sv, 0))) goto fail;
    if ((rc = mdb_txn_commit(txn))) return map_err(rc);
    s->state.retained_from = cutoff;
  } else if ((rc = mdb_txn_commit(txn))) {
    return map_err(rc);
  }
  if (!*more) s->prune_clean = cutoff;
  return 0;
fail:
  mdb_txn_abort(txn);
  return map_err(rc);
}

/* ---- read path ---- */

static int read_begin(pl_store_t *s, pl_rtxn_t **out, int wait) {
  pl_rtxn_t *t = malloc(sizeof(*t));
  int rc;
  if (!t) return PL_ENOMEM;
  if (!wait) {
    if (pthread_rwlock_tryrdlock(&s->maplock) != 0) {
      free(t);
      return PL_EAGAIN;
    }
  } else {
    pthread_rwlock_rdlock(&s->maplock);
  }
  rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn);
  if (rc == MDB_MAP_RESIZED) {
    /* Another process grew the map (a tool such as parleyd --rebuild): adopt its size. */
    pthread_rwlock_unlock(&s->maplock);
    pthread_rwlock_wrlock(&s->maplock);
    mdb_env_set_mapsize(s->env, 0);
    pthread_rwlock_unlock(&s->maplock);
    pthread_rwlock_rdlock(&s->maplock);
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn);
  }
  if (rc) {
    pthread_rwlock_unlock(&s->maplock);
    free(t);
    return map_err(rc);
  }
  t->s = s;
  t->stale_read = 0;
  *out = t;
  return 0;
}

int pl_store_read_begin(pl_store_t *s, pl_rtxn_t **out) { return read_begin(s, out, 1); }

int pl_store_read_try_begin(pl_store_t *s, pl_rtxn_t **out) { return read_begin(s, out, 0); }

void pl_store_read_end(pl_rtxn_t *t) {
  if (!t) return;
  mdb_txn_abort(t->txn);
  pthread_rwlock_unlock(&t->s->maplock);
  free(t);
}

int pl_store_get(pl_rtxn_t *t, pl_table_t tab, const void *key, size_t klen, pl_str_t *val) {
  MDB_val k = {klen, (void *)key}, v;
  int rc;
  val->p = NULL;
  val->n = 0;
  if (klen == 0 || klen > 511) return PL_ENOTFOUND;
  rc = mdb_get(t->txn, t->s->dbi[tab], &k, &v);
  if (rc) return map_err(rc);
  val->p = v.mv_data;
  val->n = (uint32_t)v.mv_size;
  return 0;
}

int pl_store_cursor_open(pl_rtxn_t *t, pl_table_t tab, pl_cursor_t **out) {
  pl_cursor_t *c = malloc(sizeof(*c));
  int rc;
  if (!c) return PL_ENOMEM;
  rc = mdb_cursor_open(t->txn, t->s->dbi[tab], &c->c);
  if (rc) {
    free(c);
    return map_err(rc);
  }
  *out = c;
  return 0;
}

void pl_store_cursor_close(pl_cursor_t *c) {
  if (!c) return;
  mdb_cursor_close(c->c);
  free(c);
}

static int cursor_op(pl_cursor_t *c, MDB_val *k, MDB_cursor_op op, pl_str_t *ko, pl_str_t *vo) {
  MDB_val v;
  int rc = mdb_cursor_get(c->c, k, &v, op);
  if (rc) return map_err(rc);
  ko->p = k->mv_data;
  ko->n = (uint32_t)k->mv_size;
  vo->p = v.mv_data;
  vo->n = (uint32_t)v.mv_size;
  return 0;
}

int pl_store_cursor_seek(pl_cursor_t *c, const void *key, size_t klen, pl_str_t *k, pl_str_t *v) {
  MDB_val kk = {klen, (void *)key};
  if (klen == 0) return cursor_op(c, &kk, MDB_FIRST, k, v);
  return cursor_op(c, &kk, MDB_SET_RANGE, k, v);
}

int pl_store_cursor_seek_le(pl_cursor_t *c, const void *key, size_t klen, pl_str_t *k,
                            pl_str_t *v) {
  MDB_val kk = {klen, (void *)key};
  int rc = cursor_op(c, &kk, MDB_SET_RANGE, k, v);
  if (rc == PL_ENOTFOUND) return cursor_op(c, &kk, MDB_LAST, k, v);
  if (rc) return rc;
  if (k->n == klen && memcmp(k->p, key, klen) == 0) return 0;
  return cursor_op(c, &kk, MDB_PREV, k, v);
}

int pl_store_cursor_next(pl_cursor_t *c, pl_str_t *k, pl_str_t *v) {
  MDB_val kk;
  return cursor_op(c, &kk, MDB_NEXT, k, v);
}

int pl_store_cursor_prev(pl_cursor_t *c, pl_str_t *k, pl_str_t *v) {
  MDB_val kk;
  return cursor_op(c, &kk, MDB_PREV, k, v);
}

int pl_store_cursor_first(pl_cursor_t *c, pl_str_t *k, pl_str_t *v) {
  MDB_val kk;
  return cursor_op(c, &kk, MDB_FIRST, k, v);
}

int pl_store_cursor_last(pl_cursor_t *c, pl_str_t *k, pl_str_t *v) {
  MDB_val kk;
  return cursor_op(c, &kk, MDB_LAST, k, v);
}

int pl_store_month_stale(pl_rtxn_t *t, uint32_t month) {
  unsigned char k[4];
  pl_str_t v;
  if (!t->stale_read) {
    MDB_cursor *c;
    MDB_val mk, mv;
    int rc;
    t->stale_read = 1;
    t->stale_n = STALE_CACHE + 1;
    if (mdb_cursor_open(t->txn, t->s->dbi[PL_TAB_STALE], &c) == 0) {
      uint32_t n = 0;
      for (rc = mdb_cursor_get(c, &mk, &mv, MDB_FIRST); rc == 0 && n <= STALE_CACHE;
           rc = mdb_cursor_get(c, &mk, &mv, MDB_NEXT)) {
        if (mk.mv_size != 4) break;
        if (n < STALE_CACHE) t->stale[n] = pl_be32_get(mk.mv_data);
        n++;
      }
      if (rc == MDB_NOTFOUND && n <= STALE_CACHE) t->stale_n = n;
      mdb_cursor_close(c);
    }
  }
  if (t->stale_n <= STALE_CACHE) {
    for (uint32_t i = 0; i < t->stale_n; i++)
      if (t->stale[i] == month) return 1;
    return 0;
  }
  pl_be32_put(k, month);
  return pl_store_get(t, PL_TAB_STALE, k, 4, &v) == 0;
}

int pl_store_id(pl_rtxn_t *t, const char *name, size_t n, uint32_t *id) {
  pl_str_t v;
  int rc = pl_store_get(t, PL_TAB_DICT, name, n, &v);
  if (rc) return rc;
  if (v.n != 4) return PL_ECORRUPT;
  *id = pl_be32_get((const unsigned char *)v.p);
  return 0;
}

int pl_store_name(pl_rtxn_t *t, uint32_t id, pl_str_t *name) {
  unsigned char k[4];
  pl_be32_put(k, id);
  return pl_store_get(t, PL_TAB_NAMES, k, 4, name);
}

int pl_store_day_totals(pl_rtxn_t *t, uint32_t day, uint32_t inst, uint64_t *events,
                        uint64_t *participants) {
  unsigned char k[8];
  pl_str_t val;
  int rc = pl_store_get(t, PL_TAB_DAYS, k, pl_key_day_inst(k, day, inst), &val);
  if (rc) return rc;
  return pl_agg_peek(val.p, val.n, events, participants);
}

int pl_store_agg(pl_rtxn_t *t, int months, uint32_t period, uint32_t inst, pl_agg_view_t *v) {
  unsigned char k[8];
  pl_str_t val;
  int rc;
  if (months && pl_store_month_stale(t, period)) return PL_ESTALE;
  rc = pl_store_get(t, months ? PL_TAB_MONTHS : PL_TAB_DAYS, k, pl_key_day_inst(k, period, inst),
                    &val);
  if (rc) return rc;
  return pl_agg_view(v, val.p, val.n);
}

int pl_store_pair(pl_rtxn_t *t, int months, uint32_t period, uint32_t a, uint32_t b,
                  pl_agg_view_t *v) {
  unsigned char k[12];
  pl_str_t val;
  int rc;
  if (months && pl_store_month_stale(t, period)) return PL_ESTALE;
  rc = pl_store_get(t, months ? PL_TAB_PAIR_MONTHS : PL_TAB_PAIRS, k, pl_key_pair(k, period, a, b),
                    &val);
  if (rc) return rc;
  return pl_agg_view(v, val.p, val.n);
}

int pl_store_inst(pl_rtxn_t *t, uint32_t id, pl_store_inst_t *info) {
  unsigned char k[4];
  pl_str_t v;
  int rc;
  pl_be32_put(k, id);
  rc = pl_store_get(t, PL_TAB_INSTS, k, 4, &v);
  if (rc) return rc;
  if (v.n != sizeof(*info)) return PL_ECORRUPT;
  memcpy(info, v.p, sizeof(*info));
  return 0;
}

int pl_store_state(pl_rtxn_t *t, pl_store_state_t *st) {
  pl_str_t v;
  int rc = pl_store_get(t, PL_TAB_META, "state", 5, &v);
  if (rc == PL_ENOTFOUND) {
    memset(st, 0, sizeof(*st));
    st->next_seq = st->next_rseq = 1;
    st->next_id = 1;
    st->first_day = st->last_day = PL_AGG_NO_DAY;
    return 0;
  }
  if (rc) return rc;
  if (v.n != sizeof(*st)) return PL_ECORRUPT;
  memcpy(st, v.p, sizeof(*st));
  return 0;
}

/* Publishes the environment's figures for other threads. Only the thread that may resize
 * the map calls this: mdb_env_info reads the meta pages, which a resize unmaps. */
static void publish_info(pl_store_t *s) {
  MDB_envinfo ei;
  MDB_stat st;
  mdb_env_info(s->env, &ei);
  mdb_env_stat(s->env, &st);
  __atomic_store_n(&s->info_map_size, (uint64_t)ei.me_mapsize, __ATOMIC_RELAXED);
  __atomic_store_n(&s->info_used, (uint64_t)(ei.me_last_pgno + 1) * st.ms_psize, __ATOMIC_RELAXED);
  __atomic_store_n(&s->info_psize, (uint32_t)st.ms_psize, __ATOMIC_RELAXED);
  __atomic_store_n(&s->info_readers, (uint32_t)ei.me_numreaders, __ATOMIC_RELAXED);
  __atomic_store_n(&s->info_span, (uint64_t)s->state.first_day << 32 | s->state.last_day,
                   __ATOMIC_RELAXED);
  __atomic_store_n(&s->info_stale, s->stale.n, __ATOMIC_RELAXED);
}

void pl_store_get_info(pl_store_t *s, pl_store_info_t *info) {
  memset(info, 0, sizeof(*info));
  info->map_size = __atomic_load_n(&s->info_map_size, __ATOMIC_RELAXED);
  info->map_size_max = s->map_size_max;
  info->page_size = __atomic_load_n(&s->info_psize, __ATOMIC_RELAXED);
  info->used_bytes = __atomic_load_n(&s->info_used, __ATOMIC_RELAXED);
  info->readers = __atomic_load_n(&s->info_readers, __ATOMIC_RELAXED);
  {
    uint64_t span = __atomic_load_n(&s->info_span, __ATOMIC_RELAXED);
    info->first_day = (uint32_t)(span >> 32);
    info->last_day = (uint32_t)span;
  }
  info->stale_months = __atomic_load_n(&s->info_stale, __ATOMIC_RELAXED);
  info->stale_readers = __atomic_load_n(&s->stale_readers, __ATOMIC_RELAXED);
  info->commits = __atomic_load_n(&s->commits, __ATOMIC_RELAXED);
  info->commit_errors = __atomic_load_n(&s->commit_errors, __ATOMIC_RELAXED);
  info->map_grows = __atomic_load_n(&s->map_grows, __ATOMIC_RELAXED);
  info->full = __atomic_load_n(&s->full, __ATOMIC_RELAXED);
}
