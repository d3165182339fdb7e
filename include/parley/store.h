/* The LMDB store: one environment in the data directory holding the events, their
 * aggregates, the dictionaries, the dedup tables and the reject store. store.c is the only
 * file that includes lmdb.h; everyone else reads through the typed calls below.
 *
 * Tables and keys (integers big-endian, so cursors walk in date order; every table written
 * per record is keyed date-first so a stream of current events touches few B-tree pages):
 *   events       day u32 . inst u32 . seq u64    -> stored record (record.h stored form)
 *   days         day u32 . inst u32              -> aggregate (agg.h); inst 0 = all institutions
 *   months       month u32 . inst u32            -> aggregate rolled up per month, with
 *                                                   each day's totals (PL_AGG_DAYS)
 *   pairs        day u32 . lo u32 . hi u32       -> pair aggregate (lo < hi, or lo == hi)
 *   pair_months  month u32 . lo u32 . hi u32     -> pair aggregate rolled up per month
 *   idem         day u32 . type u8 . id bytes     -> seq u64 (type 's' string, 'u' uint BE)
 *   insts        inst u32                        -> pl_store_inst_t (written once per commit)
 *   dict         name bytes                      -> id u32 (institutions and vocabularies)
 *   names        id u32                          -> name bytes
 *   chunks       chunk bytes                     -> commit time u64 ms
 *   chunk_age    time u64 ms . chunk bytes       -> (empty), for pruning in time order
 *   rejects      rseq u64                        -> msgpack {reason, raw, peer, received}
 *   meta         "version" | "state"             -> schema version | pl_store_state_t
 *   stale        month u32                       -> (empty): months whose rollups lag
 * Day numbers are date.h's; month is date.h's month index. Dictionary ids start at 1.
 *
 * Month rollups (months, pair_months) are not rewritten by every commit: that would rewrite
 * the open month's rows for every busy institution and pair each time, several times the
 * bytes of the events themselves. A commit writes day rows and marks the month stale in the
 * same transaction; the writer folds the accumulated deltas into the month rows now and
 * then (pl_store_maintain) and clears the mark. Readers use a month's rollups only when it
 * is not stale (pl_store_month_stale), and its day rows otherwise, so answers are always
 * exact. After a crash the deltas in memory are gone but the marks are not: those months
 * are recomputed from their day rows. */
#ifndef PARLEY_STORE_H
#define PARLEY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "parley/agg.h"
#include "parley/batch.h"
#include "parley/types.h"

typedef struct pl_store pl_store_t;

typedef enum pl_table {
  PL_TAB_EVENTS = 0,
  PL_TAB_DAYS,
  PL_TAB_MONTHS,
  PL_TAB_PAIRS,
  PL_TAB_PAIR_MONTHS,
  PL_TAB_IDEM,
  PL_TAB_INSTS,
  PL_TAB_DICT,
  PL_TAB_NAMES,
  PL_TAB_CHUNKS,
  PL_TAB_CHUNK_AGE,
  PL_TAB_REJECTS,
  PL_TAB_META,
  PL_TAB_STALE,
  PL_TAB_COUNT
} pl_table_t;

/* Name of a table as it is stored in LMDB ("events", "days", ...). */
const char *pl_store_table_name(pl_table_t t);

typedef struct pl_store_opts {
  const char *dir;             /* created if missing */
  uint64_t map_size;           /* initial map size, bytes */
  uint64_t map_size_max;       /* the map doubles on demand up to this */
  int sync_full;               /* 1: fsync every commit; 0: MDB_NOSYNC (fast, not durable) */
  unsigned max_readers;        /* 0: 512 */
  uint64_t chunk_retention_ms; /* how long committed chunk ids are remembered */
  uint32_t retention_days;     /* 0: keep raw events forever (aggregates are always kept) */
  uint64_t rollup_interval_ms; /* fold month rollups at least this often under load */
} pl_store_opts_t;

/* Opens (creating when needed) the store in o->dir and takes the directory's lock, so a
 * second process on the same directory gets PL_ELOCKED. Clears reader slots left by
 * crashed processes. Returns 0, or an error with a sentence in err. */
int pl_store_open(pl_store_t **out, const pl_store_opts_t *o, char *err, size_t errlen);

/* Closes the environment and releases the lock. No transaction may be open. */
void pl_store_close(pl_store_t *s);

/* A number that no other store opened by this process has (from 1), for caches kept
 * across transactions that must not outlive their store. */
uint64_t pl_store_instance(const pl_store_t *s);

/* ---- write path: one thread only (the writer, or a tool that owns the store) ---- */

/* Commits a group of batches in one write transaction: chunk-id dedup, interning, (date,
 * id) dedup, events, rejects, every aggregate, insts and the state. Before returning it
 * sets each batch's status and counters (stored, duplicates, rejected, chunk_seen).
 * The map grows on MDB_MAP_FULL (the group is retried) up to map_size_max; past it the
 * group fails with PL_ESTOREFULL and nothing of it is stored. Also prunes a bounded number
 * of expired chunk ids. now_ms is the commit time (Unix ms) for the chunk table.
 * Returns 0 or the error every batch also carries. */
int pl_store_commit(pl_store_t *s, pl_batch_t *const *batches, size_t n, uint64_t now_ms);

/* Recomputes every aggregate (days, months, pairs, pair_months, insts, the state's event
 * totals) from the stored events, in transactions of a bounded size. Periods before the
 * retention boundary (state.retained_from, always the first of a month) have no raw events
 * left: their aggregates are kept as they are, and insts and the totals are recomputed from
 * the day aggregates. *events gets the number of events read. Returns 0 or an error (a
 * failure part-way leaves a partial rebuild that a rerun completes). */
int pl_store_rebuild(pl_store_t *s, uint64_t *events);

/* Background upkeep, one small transaction per call (writer thread, between commits):
 * folds pending month rollups, clears reader slots left by crashed processes, and deletes
 * up to max raw events (their idem rows stay, for dedup) dated before the retention
 * boundary: the first of the month holding (last stored day - retention_days + 1).
 * *more is set when work remains. Returns 0 or an error. */
int pl_store_maintain(pl_store_t *s, size_t max, int *more);

/* Folds the pending month rollups now (months marked stale become current). Returns 0 or an
 * error (the marks then stay and readers keep using day rows). */
int pl_store_refresh(pl_store_t *s);

/* Whether folding is due: rollups are pending and rollup_interval_ms passed since the
 * last fold. now_ms is a monotonic clock. */
int pl_store_refresh_due(const pl_store_t *s, uint64_t now_ms);

/* ---- read path: any thread ---- */

typedef struct pl_rtxn pl_rtxn_t;
typedef struct pl_cursor pl_cursor_t;

/* Opens a read transaction: a consistent snapshot. Keep it short (a long reader stops
 * LMDB from reusing pages) and end it on the thread that began it. Values returned
 * through it are valid until pl_store_read_end(). Returns 0 or an error. */
int pl_store_read_begin(pl_store_t *s, pl_rtxn_t **out);
/* The same, but never waits: PL_EAGAIN while the map is being resized (for the event loop,
 * which must not block). */
int pl_store_read_try_begin(pl_store_t *s, pl_rtxn_t **out);
void pl_store_read_end(pl_rtxn_t *t);

/* Point lookup. Returns 0 and *val (pointing into the map), or PL_ENOTFOUND. */
int pl_store_get(pl_rtxn_t *t, pl_table_t tab, const void *key, size_t klen, pl_str_t *val);

/* Cursors (closed by pl_store_cursor_close, before the transaction ends). Each move
 * returns 0 and fills *k and *v, or PL_ENOTFOUND at the end. seek goes to the first key
 * >= key; seek_le to the last key <= key. */
int pl_store_cursor_open(pl_rtxn_t *t, pl_table_t tab, pl_cursor_t **out);
void pl_store_cursor_close(pl_cursor_t *c);
int pl_store_cursor_seek(pl_cursor_t *c, const void *key, size_t klen, pl_str_t *k, pl_str_t *v);
int pl_store_cursor_seek_le(pl_cursor_t *c, const void *key, size_t klen, pl_str_t *k,
                            pl_str_t *v);
int pl_store_cursor_next(pl_cursor_t *c, pl_str_t *k, pl_str_t *v);
int pl_store_cursor_prev(pl_cursor_t *c, pl_str_t *k, pl_str_t *v);
int pl_store_cursor_first(pl_cursor_t *c, pl_str_t *k, pl_str_t *v);
int pl_store_cursor_last(pl_cursor_t *c, pl_str_t *k, pl_str_t *v);

/* 1 when the month's rollups (months and pair_months rows) lag its day rows: read the
 * days instead. 0 when they are current. */
int pl_store_month_stale(pl_rtxn_t *t, uint32_t month);

/* Dictionary: id of a name (PL_ENOTFOUND when never seen) and name of an id. */
int pl_store_id(pl_rtxn_t *t, const char *name, size_t n, uint32_t *id);
int pl_store_name(pl_rtxn_t *t, uint32_t id, pl_str_t *name);

/* Aggregate of (period, inst) at a level: 0 days (period = day), 1 months (period =
 * month index). inst 0 is every institution together. Returns 0, PL_ENOTFOUND,
 * PL_ESTALE (a month whose rollups lag its days: read the days) or PL_ECORRUPT. */
int pl_store_agg(pl_rtxn_t *t, int months, uint32_t period, uint32_t inst, pl_agg_view_t *v);
/* Only a day row's events and participants (its header): PL_ENOTFOUND when the
 * institution had no event that day. */
int pl_store_day_totals(pl_rtxn_t *t, uint32_t day, uint32_t inst, uint64_t *events,
                        uint64_t *participants);
/* Pair aggregate of (period, a, b), either order. */
int pl_store_pair(pl_rtxn_t *t, int months, uint32_t period, uint32_t a, uint32_t b,
                  pl_agg_view_t *v);

/* What the store knows of an institution (reporter or counterpart). */
#define PL_INST_REPORTER 1u
#define PL_INST_COUNTERPART 2u
typedef struct pl_store_inst {
  uint64_t events;    /* events it reported */
  uint32_t first_day; /* PL_AGG_NO_DAY when it never reported */
  uint32_t last_day;
  uint32_t flags;
  uint32_t pad;
} pl_store_inst_t;
int pl_store_inst(pl_rtxn_t *t, uint32_t id, pl_store_inst_t *info);

/* Totals kept in meta, updated in every commit. */
typedef struct pl_store_state {
  uint64_t next_seq;    /* next event sequence number */
  uint64_t next_rseq;   /* next reject sequence number */
  uint64_t events;      /* events stored */
  uint64_t rejected;    /* rejects stored */
  uint64_t duplicates;  /* records acknowledged as duplicates */
  uint64_t institutions;/* distinct institutions (reporters and counterparts) */
  uint32_t next_id;     /* next dictionary id */
  uint32_t first_day;   /* PL_AGG_NO_DAY when no events */
  uint32_t last_day;
  uint32_t retained_from; /* raw events before this day were deleted by retention (0: none) */
} pl_store_state_t;
int pl_store_state(pl_rtxn_t *t, pl_store_state_t *st);

/* Environment figures: map size, bytes in use, and the page size. */
typedef struct pl_store_info {
  uint64_t map_size;
  uint64_t map_size_max;
  uint64_t used_bytes;
  uint32_t page_size;
  uint32_t readers;         /* reader slots in use at most so far */
  uint32_t stale_readers;   /* reader slots of crashed processes cleared (at open, and by
                             * pl_store_maintain while running) */
  uint64_t commits;        /* write transactions committed since open */
  uint64_t commit_errors;  /* groups that failed */
  uint64_t map_grows;      /* times the map was enlarged */
  int full;                /* the last commit failed for lack of room */
  /* Hints for planning a query, not a snapshot's answers, as of the last commit, fold or
   * rebuild: the days the stored events span (PL_AGG_NO_DAY for both when there are none),
   * and how many months are marked stale (read from their day rows until the next fold). */
  uint32_t first_day, last_day;
  uint32_t stale_months;
} pl_store_info_t;
void pl_store_get_info(pl_store_t *s, pl_store_info_t *info);

/* ---- key builders (big-endian) ---- */
static inline size_t pl_key_day_inst(unsigned char k[8], uint32_t day, uint32_t inst) {
  pl_be32_put(k, day);
  pl_be32_put(k + 4, inst);
  return 8;
}
static inline size_t pl_key_event(unsigned char k[16], uint32_t day, uint32_t inst,
                                  uint64_t seq) {
  pl_be32_put(k, day);
  pl_be32_put(k + 4, inst);
  pl_be64_put(k + 8, seq);
  return 16;
}
static inline size_t pl_key_pair(unsigned char k[12], uint32_t period, uint32_t a, uint32_t b) {
  pl_be32_put(k, period);
  pl_be32_put(k + 4, a < b ? a : b);
  pl_be32_put(k + 8, a < b ? b : a);
  return 12;
}

#endif
