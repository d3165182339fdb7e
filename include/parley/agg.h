/* Aggregates: the per-(period, institution) and per-(period, pair) counters kept beside the
 * events, their compact stored form, and the arithmetic queries do over them (merging many
 * periods, covering a day range with months and days, streaks). Pure: no I/O, no clock;
 * every date is passed in. */
#ifndef PARLEY_AGG_H
#define PARLEY_AGG_H

#include <stddef.h>
#include <stdint.h>

/* Sections of an aggregate: counts by kind, format, topic, counterpart (institution
 * aggregates), by the reporting side's country (pair aggregates), and by day of the month
 * (id 1..31: institution month rows only, so that a part of a month is read from its row
 * instead of one day row per day). */
enum {
  PL_AGG_KINDS = 0,
  PL_AGG_FORMATS,
  PL_AGG_TOPICS,
  PL_AGG_COUNTERPARTS,
  PL_AGG_COUNTRIES,
  PL_AGG_DAYS,
  PL_AGG_NSECT
};

#define PL_AGG_NO_DAY UINT32_MAX

/* One counter: events and participants for a dictionary id (a kind, topic, name...). */
typedef struct pl_agg_entry {
  uint32_t id;
  uint32_t events;
  uint64_t participants;
} pl_agg_entry_t;

/* An aggregate being built in memory. Owns its section arrays; pl_agg_free releases them.
 * Sections may hold repeated ids until pl_agg_normalize() sorts and combines them. */
typedef struct pl_agg {
  uint32_t events;
  uint32_t active_days; /* days with at least one event: 1 for a day aggregate */
  uint32_t first_day;   /* first and last day with an event, PL_AGG_NO_DAY when none */
  uint32_t last_day;
  uint64_t participants;
  struct {
    pl_agg_entry_t *v;
    uint32_t n, cap;
  } sect[PL_AGG_NSECT];
} pl_agg_t;

/* A read-only view of a stored aggregate: points into the blob (an LMDB value, valid until
 * its read transaction ends). Each section's entries are in id order, ids unique; they are
 * read with pl_agg_iter_*. */
typedef struct pl_agg_view {
  uint32_t events, active_days, first_day, last_day;
  uint64_t participants;
  const unsigned char *sect[PL_AGG_NSECT];
  uint32_t n[PL_AGG_NSECT];   /* entries */
  uint32_t len[PL_AGG_NSECT]; /* bytes */
} pl_agg_view_t;

/* Walks one section of a view. corrupt is set when the bytes do not decode. */
typedef struct pl_agg_iter {
  const unsigned char *p, *end;
  uint32_t left, id;
  int corrupt;
} pl_agg_iter_t;

void pl_agg_init(pl_agg_t *a);
void pl_agg_free(pl_agg_t *a);
/* Empties a but keeps its memory for reuse. */
void pl_agg_clear(pl_agg_t *a);

/* Adds events/participants to id in section sect (appended; combined by normalize).
 * Returns 0 or PL_ENOMEM. */
int pl_agg_add(pl_agg_t *a, int sect, uint32_t id, uint32_t events, uint64_t participants);

/* Counts one event on day with the given participants into the header fields. */
void pl_agg_count(pl_agg_t *a, uint32_t day, uint64_t participants);

/* Adds src (header and sections, except PL_AGG_COUNTERPARTS when skip_cps) into dst.
 * active_days are summed: the caller decides what a day means. Returns 0 or PL_ENOMEM. */
int pl_agg_merge(pl_agg_t *dst, const pl_agg_t *src, int skip_cps);
int pl_agg_merge_view(pl_agg_t *dst, const pl_agg_view_t *src);

/* Sorts every section by id and combines repeated ids. */
void pl_agg_normalize(pl_agg_t *a);

/* Adds src into dst when both are normalised, keeping dst normalised (a linear merge: no
 * sort), leaving out PL_AGG_COUNTERPARTS when skip_cps. Active days are summed. Returns 0
 * or PL_ENOMEM (dst is then unchanged). */
int pl_agg_merge_normalized(pl_agg_t *dst, const pl_agg_t *src, int skip_cps);

/* The stored form of delta + old (old may be NULL; delta normalised), merging the sorted
 * sections in one pass, into out, which must hold pl_agg_encode_bound(delta, old) bytes.
 * With day_level the result counts one active day (a day aggregate); otherwise active days
 * are summed. Returns the length written, or 0 when old's entries do not decode. */
size_t pl_agg_encode_bound(const pl_agg_t *delta, const pl_agg_view_t *old);
size_t pl_agg_encode_merged(const pl_agg_t *delta, const pl_agg_view_t *old, int day_level,
                            void *out);
/* The stored form of a normalised aggregate alone (active days as they are). */
size_t pl_agg_encode(const pl_agg_t *a, void *out);

/* Opens a stored aggregate (its header and section bounds; entries are checked as they
 * are read). Returns 0 or PL_ECORRUPT. */
int pl_agg_view(pl_agg_view_t *v, const void *blob, size_t len);
/* Reads only a stored aggregate's event and participant totals (cheaper than a view when
 * nothing else is needed). Returns 0 or PL_ECORRUPT. */
int pl_agg_peek(const void *blob, size_t len, uint64_t *events, uint64_t *participants);
/* Iterates a section: pl_agg_iter_next returns 1 with *e, or 0 at the end (or on corrupt
 * bytes, with it->corrupt set). */
void pl_agg_iter_init(pl_agg_iter_t *it, const pl_agg_view_t *v, int sect);
int pl_agg_iter_next(pl_agg_iter_t *it, pl_agg_entry_t *e);
/* The days section of a month row (month_first: the month's first day number) as events
 * and participants per day of the month, ev[1..31] and pa[1..31], for the days of the
 * month between lo and hi (day numbers, inclusive); other days are left zero. Returns 1
 * when the section counts every event of the row, 0 when it does not (a row written by a
 * parleyd before the section existed, since merged with newer days: read its day rows),
 * or PL_ECORRUPT (a day the month does not have, or bytes that do not decode). */
int pl_agg_days(const pl_agg_view_t *v, uint32_t month_first, uint32_t lo, uint32_t hi,
                uint32_t ev[32], uint64_t pa[32]);

/* Looks id up in a section (a scan: sections are short, and sorted, so it stops early).
 * Returns 1 and fills *e, or 0. */
int pl_agg_view_find(const pl_agg_view_t *v, int sect, uint32_t id, pl_agg_entry_t *e);

/* ---- id maps: summing counters by id across many aggregates (queries) ---- */

/* A map from a u32 id to a counter: an open-addressing hash table, or, when the caller
 * knows the ids are all below a small limit (a small dictionary), an array indexed by id,
 * which is several times faster. Owns its table and list. Walk it with pl_idmap_next. */
#define PL_IDMAP_DENSE_MAX 65536u
typedef struct pl_idmap {
  pl_agg_entry_t *slots; /* id 0 marks an empty slot: dictionary ids start at 1 */
  uint32_t cap, n;
  uint32_t alloc; /* slots allocated (>= cap) */
  int dense;      /* slots[id] holds id */
  /* dense: the n ids present, in the order they came (room for alloc). Every other slot
   * of [0, alloc) is zero, so emptying and walking the array cost what it holds, not its
   * size: a quiet institution's request fills a few dozen of thousands of slots. */
  uint32_t *used;
} pl_idmap_t;

/* Walks m: *pos starts at 0. Returns the next entry (in no set order), or NULL after the
 * last. Entries may be changed, not added, during the walk. */
static inline pl_agg_entry_t *pl_idmap_next(const pl_idmap_t *m, uint32_t *pos) {
  if (m->dense) return *pos < m->n ? &m->slots[m->used[(*pos)++]] : NULL;
  for (; *pos < m->cap; (*pos)++)
    if (m->slots[*pos].id) return &m->slots[(*pos)++];
  return NULL;
}

void pl_idmap_init(pl_idmap_t *m);
void pl_idmap_free(pl_idmap_t *m);
void pl_idmap_clear(pl_idmap_t *m);
/* Empties m and, when limit <= PL_IDMAP_DENSE_MAX, makes it an array for ids below limit
 * (an id at or past it still works: the map turns into a hash table). Returns 0 or
 * PL_ENOMEM. */
int pl_idmap_dense(pl_idmap_t *m, uint32_t limit);
/* Adds to the counter of id (id != 0). Returns the entry, or NULL when out of memory. */
pl_agg_entry_t *pl_idmap_add(pl_idmap_t *m, uint32_t id, uint32_t events, uint64_t participants);
pl_agg_entry_t *pl_idmap_get(const pl_idmap_t *m, uint32_t id);
/* pl_idmap_add for each of e[0..n) (ids != 0). Returns 0 or PL_ENOMEM. */
int pl_idmap_add_entries(pl_idmap_t *m, const pl_agg_entry_t *e, size_t n);
/* Adds every entry of a section of a view. Returns 0 or PL_ENOMEM. */
int pl_idmap_add_view(pl_idmap_t *m, const pl_agg_view_t *v, int sect);
/* The same, taking a section away: counters wrap modulo their width, so a map that got
 * the section's superset first (a month before its days) ends exact, and an entry brought
 * to zero stays in the map with zero counts. */
int pl_idmap_sub_view(pl_idmap_t *m, const pl_agg_view_t *v, int sect);
/* Copies the entries into a new array sorted by events descending then id (the caller
 * frees it). *n gets the count. Returns NULL when out of memory or empty. */
pl_agg_entry_t *pl_idmap_sorted(const pl_idmap_t *m, uint32_t *n);

/* ---- covering a day range with stored periods ---- */

/* A piece of a day range: either one whole month (is_month, key = month index) or one day
 * (key = day number). neg: the piece is taken away (a day of a month piece that lies
 * outside the range); pl_agg_cover never sets it. */
typedef struct pl_agg_piece {
  int is_month;
  uint32_t key;
  int neg;
} pl_agg_piece_t;

/* Splits [from, to] (inclusive days) into whole months plus single days at the edges, in
 * date order. Writes at most cap pieces and returns how many the range needs (call again
 * with a larger array when the result exceeds cap). */
size_t pl_agg_cover(uint32_t from, uint32_t to, pl_agg_piece_t *out, size_t cap);

/* Streaks over a run of periods: active[i] != 0 when period i had an event. current is the
 * run that ends at period last (the one holding `to`; 0 when that period is inactive),
 * longest the longest run anywhere. */
void pl_agg_streaks(const unsigned char *active, size_t n, size_t last, uint32_t *current,
                    uint32_t *longest);

#endif
