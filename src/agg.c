/* Aggregate arithmetic and the stored form of aggregates. The stored form is compact
 * (varints, ids as deltas) because every commit rewrites the day rows it touches and every
 * query reads many: a typical day row is a quarter of a fixed-width layout. */
#include "parley/agg.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "parley/date.h"
#include "parley/error.h"

/* Stored layout (LEB128 varints):
 *   u8 version, events, active_days, first_day + 1 (0: none), last_day - first_day (only
 *   with a first day), participants, then per section its entry count and its byte length,
 *   then the sections: per entry the id's delta from the previous id, events, participants.
 * Sections' byte lengths let a reader jump to any section without decoding the others.
 * Version 2 had no days section; its rows are still read (with that section empty) and are
 * rewritten as version 3 when merged. */
#define AGG_VERSION 3
#define AGG_NSECT_V2 (PL_AGG_NSECT - 1)
#define VARINT_MAX 10
#define HDR_MAX (1 + 5 * VARINT_MAX + 2 * PL_AGG_NSECT * VARINT_MAX)

static unsigned char *put_varint(unsigned char *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  *p++ = (unsigned char)v;
  return p;
}

/* Reads one varint from [*p, end). Returns 0, or -1 when it runs past end or is too long. */
static int get_varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    unsigned char b = *(*p)++;
    if (shift == 63 && b > 1) return -1; /* more than 64 bits */
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

void pl_agg_init(pl_agg_t *a) {
  memset(a, 0, sizeof(*a));
  a->first_day = PL_AGG_NO_DAY;
  a->last_day = PL_AGG_NO_DAY;
}

void pl_agg_free(pl_agg_t *a) {
  for (int s = 0; s < PL_AGG_NSECT; s++) free(a->sect[s].v);
  pl_agg_init(a);
}

void pl_agg_clear(pl_agg_t *a) {
  a->events = a->active_days = 0;
  a->participants = 0;
  a->first_day = a->last_day = PL_AGG_NO_DAY;
  for (int s = 0; s < PL_AGG_NSECT; s++) a->sect[s].n = 0;
}

int pl_agg_add(pl_agg_t *a, int sect, uint32_t id, uint32_t events, uint64_t participants) {
  __typeof__(a->sect[0]) *s = &a->sect[sect];
  if (s->n == s->cap) {
    uint32_t cap = s->cap ? s->cap * 2 : 8;
    pl_agg_entry_t *v = realloc(s->v, cap * sizeof(*v));
    if (!v) return PL_ENOMEM;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n].id = id;
  s->v[s->n].events = events;
  s->v[s->n].participants = participants;
  s->n++;
  return 0;
}

static void span(pl_agg_t *a, uint32_t first, uint32_t last) {
  if (first == PL_AGG_NO_DAY) return;
  if (a->first_day == PL_AGG_NO_DAY || first < a->first_day) a->first_day = first;
  if (a->last_day == PL_AGG_NO_DAY || last > a->last_day) a->last_day = last;
}

void pl_agg_count(pl_agg_t *a, uint32_t day, uint64_t participants) {
  a->events++;
  a->participants += participants;
  span(a, day, day);
}

int pl_agg_merge(pl_agg_t *dst, const pl_agg_t *src, int skip_cps) {
  dst->events += src->events;
  dst->active_days += src->active_days;
  dst->participants += src->participants;
  span(dst, src->first_day, src->last_day);
  for (int s = 0; s < PL_AGG_NSECT; s++) {
    if (skip_cps && s == PL_AGG_COUNTERPARTS) continue;
    for (uint32_t i = 0; i < src->sect[s].n; i++) {
      const pl_agg_entry_t *e = &src->sect[s].v[i];
      if (pl_agg_add(dst, s, e->id, e->events, e->participants)) return PL_ENOMEM;
    }
  }
  return 0;
}

int pl_agg_merge_view(pl_agg_t *dst, const pl_agg_view_t *src) {
  pl_agg_entry_t e;
  dst->events += src->events;
  dst->active_days += src->active_days;
  dst->participants += src->participants;
  span(dst, src->first_day, src->last_day);
  for (int s = 0; s < PL_AGG_NSECT; s++) {
    pl_agg_iter_t it;
    pl_agg_iter_init(&it, src, s);
    while (pl_agg_iter_next(&it, &e) == 1)
      if (pl_agg_add(dst, s, e.id, e.events, e.participants)) return PL_ENOMEM;
    if (it.corrupt) return PL_ECORRUPT;
  }
  return 0;
}

static int cmp_id(const void *x, const void *y) {
  uint32_t a = ((const pl_agg_entry_t *)x)->id, b = ((const pl_agg_entry_t *)y)->id;
  return a < b ? -1 : a > b;
}

void pl_agg_normalize(pl_agg_t *a) {
  for (int s = 0; s < PL_AGG_NSECT; s++) {
    pl_agg_entry_t *v = a->sect[s].v;
    uint32_t n = a->sect[s].n, out = 0;
    int sorted = 1;
    if (n < 2) continue;
    for (uint32_t i = 1; i < n && sorted; i++) sorted = v[i - 1].id < v[i].id;
    if (sorted) continue;
    qsort(v, n, sizeof(*v), cmp_id);
    for (uint32_t i = 0; i < n; i++) {
      if (out && v[out - 1].id == v[i].id) {
        v[out - 1].events += v[i].events;
        v[out - 1].participants += v[i].participants;
      } else {
        v[out++] = v[i];
      }
    }
    a->sect[s].n = out;
  }
}

int pl_agg_merge_normalized(pl_agg_t *dst, const pl_agg_t *src, int skip_cps) {
  uint32_t need[PL_AGG_NSECT];
  /* Count each union first, so every allocation happens before anything changes. */
  for (int s = 0; s < PL_AGG_NSECT; s++) {
    const pl_agg_entry_t *a = dst->sect[s].v, *b = src->sect[s].v;
    uint32_t na = dst->sect[s].n, nb = src->sect[s].n, i = 0, j = 0, k = 0;
    if (skip_cps && s == PL_AGG_COUNTERPARTS) nb = 0;
    while (i < na && j < nb) {
      if (a[i].id < b[j].id) i++;
      else if (b[j].id < a[i].id) j++;
      else i++, j++;
      k++;
    }
    need[s] = k + (na - i) + (nb - j);
    if (need[s] > dst->sect[s].cap) {
      uint32_t cap = dst->sect[s].cap ? dst->sect[s].cap : 8;
      pl_agg_entry_t *v;
      while (cap < need[s]) cap *= 2;
      if (!(v = realloc(dst->sect[s].v, (size_t)cap * sizeof(*v)))) return PL_ENOMEM;
      dst->sect[s].v = v;
      dst->sect[s].cap = cap;
    }
  }
  /* Merge from the back, in place: the union's end is known, so nothing is overwritten
   * before it is read. */
  for (int s = 0; s < PL_AGG_NSECT; s++) {
    pl_agg_entry_t *a = dst->sect[s].v;
    const pl_agg_entry_t *b = src->sect[s].v;
    int64_t i = (int64_t)dst->sect[s].n - 1, j = (int64_t)src->sect[s].n - 1, w = need[s];
    if (skip_cps && s == PL_AGG_COUNTERPARTS) continue;
    while (j >= 0) {
      if (i >= 0 && a[i].id > b[j].id) {
        a[--w] = a[i--];
      } else if (i >= 0 && a[i].id == b[j].id) {
        a[--w] = a[i--];
        a[w].events += b[j].events;
        a[w].participants += b[j--].participants;
      } else {
        a[--w] = b[j--];
      }
    }
    dst->sect[s].n = need[s];
  }
  dst->events += src->events;
  dst->active_days += src->active_days;
  dst->participants += src->participants;
  span(dst, src->first_day, src->last_day);
  return 0;
}

/* The entries of one section in id order: either a delta's array or an old row's bytes. */
typedef struct src_iter {
  int from_view;           /* reads it (an old row) rather than v (a delta) */
  const pl_agg_entry_t *v;
  uint32_t i, n;
  pl_agg_iter_t it;
  int have;
  pl_agg_entry_t cur;
} src_iter_t;

static void src_next(src_iter_t *s) {
  if (!s->from_view) {
    s->have = s->i < s->n;
    if (s->have) s->cur = s->v[s->i++];
  } else {
    s->have = pl_agg_iter_next(&s->it, &s->cur) == 1;
  }
}

size_t pl_agg_encode_bound(const pl_agg_t *d, const pl_agg_view_t *o) {
  size_t n = HDR_MAX;
  for (int s = 0; s < PL_AGG_NSECT; s++)
    n += ((size_t)d->sect[s].n + (o ? o->n[s] : 0)) * 3 * VARINT_MAX;
  return n;
}

size_t pl_agg_encode_merged(const pl_agg_t *d, const pl_agg_view_t *o, int day_level, void *out) {
  unsigned char hdr[HDR_MAX], *h = hdr, *body = (unsigned char *)out + HDR_MAX, *p = body;
  uint64_t count[PL_AGG_NSECT], bytes[PL_AGG_NSECT];
  uint64_t events = (uint64_t)d->events + (o ? o->events : 0);
  uint64_t participants = d->participants + (o ? o->participants : 0);
  uint32_t first = d->first_day, last = d->last_day;
  if (o && o->first_day != PL_AGG_NO_DAY && (first == PL_AGG_NO_DAY || o->first_day < first))
    first = o->first_day;
  if (o && o->last_day != PL_AGG_NO_DAY && (last == PL_AGG_NO_DAY || o->last_day > last))
    last = o->last_day;
  /* Sections first (after room for the largest header), then the header before them. */
  for (int s = 0; s < PL_AGG_NSECT; s++) {
    src_iter_t a = {0, d->sect[s].v, 0, d->sect[s].n, {0}, 0, {0, 0, 0}};
    src_iter_t b = {1, NULL, 0, 0, {0}, 0, {0, 0, 0}};
    unsigned char *start = p;
    uint32_t prev = 0;
    count[s] = 0;
    if (o) pl_agg_iter_init(&b.it, o, s);
    src_next(&a);
    src_next(&b);
    while (a.have || b.have) {
      pl_agg_entry_t e;
      if (!b.have || (a.have && a.cur.id < b.cur.id)) {
        e = a.cur;
        src_next(&a);
      } else if (!a.have || b.cur.id < a.cur.id) {
        e = b.cur;
        src_next(&b);
      } else {
        e = b.cur;
        e.events += a.cur.events;
        e.participants += a.cur.participants;
        src_next(&a);
        src_next(&b);
      }
      p = put_varint(p, e.id - prev);
      p = put_varint(p, e.events);
      p = put_varint(p, e.participants);
      prev = e.id;
      count[s]++;
    }
    if (b.it.corrupt) return 0; /* never write a shortened copy of a corrupt row */
    bytes[s] = (uint64_t)(p - start);
  }
  *h++ = AGG_VERSION;
  h = put_varint(h, events);
  h = put_varint(h, day_level ? 1 : (uint64_t)d->active_days + (o ? o->active_days : 0));
  if (first == PL_AGG_NO_DAY) {
    h = put_varint(h, 0);
  } else {
    h = put_varint(h, (uint64_t)first + 1);
    h = put_varint(h, (uint64_t)(last - first));
  }
  h = put_varint(h, participants);
  for (int s = 0; s < PL_AGG_NSECT; s++) {
    h = put_varint(h, count[s]);
    h = put_varint(h, bytes[s]);
  }
  memcpy(out, hdr, (size_t)(h - hdr));
  memmove((unsigned char *)out + (h - hdr), body, (size_t)(p - body));
  return (size_t)(h - hdr) + (size_t)(p - body);
}

size_t pl_agg_encode(const pl_agg_t *a, void *out) { return pl_agg_encode_merged(a, NULL, 0, out); }

int pl_agg_view(pl_agg_view_t *v, const void *blob, size_t len) {
  const unsigned char *p = blob, *end = p + len;
  uint64_t events, active, first, span_days = 0, participants, n, bytes;
  int nsect;
  if (len < 1 || (*p != AGG_VERSION && *p != 2)) return PL_ECORRUPT;
  nsect = *p++ == 2 ? AGG_NSECT_V2 : PL_AGG_NSECT;
  if (get_varint(&p, end, &events) || get_varint(&p, end, &active) ||
      get_varint(&p, end, &first) || (first && get_varint(&p, end, &span_days)) ||
      get_varint(&p, end, &participants) || events > UINT32_MAX || active > UINT32_MAX ||
      first > PL_AGG_NO_DAY || span_days > UINT32_MAX)
    return PL_ECORRUPT;
  v->events = (uint32_t)events;
  v->active_days = (uint32_t)active;
  if (first && (uint64_t)(first - 1) + span_days >= PL_AGG_NO_DAY) return PL_ECORRUPT;
  v->first_day = first ? (uint32_t)(first - 1) : PL_AGG_NO_DAY;
  v->last_day = first ? v->first_day + (uint32_t)span_days : PL_AGG_NO_DAY;
  v->participants = participants;
  for (int s = 0; s < PL_AGG_NSECT; s++) {
    v->n[s] = v->len[s] = 0;
    if (s >= nsect) continue;
    /* an entry takes at least 3 bytes: a larger count is corrupt, not a huge section */
    if (get_varint(&p, end, &n) || get_varint(&p, end, &bytes) || bytes > UINT32_MAX ||
        n > bytes / 3)
      return PL_ECORRUPT;
    v->n[s] = (uint32_t)n;
    v->len[s] = (uint32_t)bytes;
  }
  for (int s = 0; s < PL_AGG_NSECT; s++) {
    if ((size_t)(end - p) < v->len[s]) return PL_ECORRUPT;
    v->sect[s] = p;
    p += v->len[s];
  }
  return p == end ? 0 : PL_ECORRUPT;
}

int pl_agg_peek(const void *blob, size_t len, uint64_t *events, uint64_t *participants) {
  const unsigned char *p = blob, *end = p + len;
  uint64_t active, first, span_days;
  if (len < 1 || (*p != AGG_VERSION && *p != 2) || (p++, get_varint(&p, end, events)) ||
      get_varint(&p, end, &active) || get_varint(&p, end, &first) ||
      (first && get_varint(&p, end, &span_days)) || get_varint(&p, end, participants))
    return PL_ECORRUPT;
  return 0;
}

void pl_agg_iter_init(pl_agg_iter_t *it, const pl_agg_view_t *v, int sect) {
  it->p = v->sect[sect];
  it->end = v->sect[sect] + v->len[sect];
  it->left = v->n[sect];
  it->id = 0;
  it->corrupt = 0;
}

/* get_varint with the one- and two-byte cases inline: most deltas and counts are below
 * 16384, and queries decode tens of thousands of entries a request. */
static inline int get_varint_fast(const unsigned char **p, const unsigned char *end,
                                  uint64_t *v) {
  const unsigned char *q = *p;
  if (end - q >= 2) {
    if (!(q[0] & 0x80)) {
      *v = q[0];
      *p = q + 1;
      return 0;
    }
    if (!(q[1] & 0x80)) {
      *v = (uint64_t)(q[0] & 0x7f) | (uint64_t)q[1] << 7;
      *p = q + 2;
      return 0;
    }
  }
  return get_varint(p, end, v);
}

static inline int iter_step(pl_agg_iter_t *it, pl_agg_entry_t *e) {
  uint64_t delta, events, participants;
  if (it->left == 0) {
    if (it->p != it->end) it->corrupt = 1; /* bytes left over after the stated count */
    return 0;
  }
  /* All three fields in one byte each: the common case, with one test. */
  if (it->end - it->p >= 3 && !((it->p[0] | it->p[1] | it->p[2]) & 0x80) && it->p[0] &&
      it->id <= UINT32_MAX - 0x7f) {
    it->id += it->p[0];
    e->id = it->id;
    e->events = it->p[1];
    e->participants = it->p[2];
    it->p += 3;
    it->left--;
    return 1;
  }
  if (get_varint_fast(&it->p, it->end, &delta) || get_varint_fast(&it->p, it->end, &events) ||
      get_varint_fast(&it->p, it->end, &participants) || events > UINT32_MAX ||
      delta == 0 || delta > UINT32_MAX - it->id) { /* ids are unique, ascending, from 1 */
    it->corrupt = 1;
    it->left = 0;
    return 0;
  }
  it->id += (uint32_t)delta;
  it->left--;
  e->id = it->id;
  e->events = (uint32_t)events;
  e->participants = participants;
  return 1;
}

int pl_agg_iter_next(pl_agg_iter_t *it, pl_agg_entry_t *e) { return iter_step(it, e); }

int pl_agg_view_find(const pl_agg_view_t *v, int sect, uint32_t id, pl_agg_entry_t *e) {
  pl_agg_iter_t it;
  pl_agg_iter_init(&it, v, sect);
  while (pl_agg_iter_next(&it, e) == 1) {
    if (e->id == id) return 1;
    if (e->id > id) return 0; /* sorted */
  }
  return 0;
}

/* ---- id maps ---- */

void pl_idmap_init(pl_idmap_t *m) { memset(m, 0, sizeof(*m)); }

void pl_idmap_free(pl_idmap_t *m) {
  free(m->slots);
  free(m->used);
  pl_idmap_init(m);
}

void pl_idmap_clear(pl_idmap_t *m) {
  if (m->dense && m->n < m->cap / 4) {
    for (uint32_t k = 0; k < m->n; k++) memset(&m->slots[m->used[k]], 0, sizeof(*m->slots));
  } else if (m->slots) {
    memset(m->slots, 0, (size_t)m->cap * sizeof(*m->slots)); /* a dense one is zero past cap */
  }
  m->n = 0;
}

static uint32_t hash_id(uint32_t id) {
  id ^= id >> 16;
  id *= 0x45d9f3bu;
  id ^= id >> 16;
  return id;
}

/* Rehashes into a table twice the size (or the first one), leaving direct indexing. */
static int grow(pl_idmap_t *m) {
  uint32_t cap = 64;
  pl_agg_entry_t *slots;
  while (cap < m->n * 2 + 2 || (!m->dense && cap <= m->cap)) cap *= 2;
  if (!(slots = calloc(cap, sizeof(*slots)))) return PL_ENOMEM;
  for (uint32_t i = 0; i < m->cap; i++) {
    if (!m->slots[i].id) continue;
    uint32_t j = hash_id(m->slots[i].id) & (cap - 1);
    while (slots[j].id) j = (j + 1) & (cap - 1);
    slots[j] = m->slots[i];
  }
  free(m->slots);
  free(m->used);
  m->used = NULL;
  m->slots = slots;
  m->cap = m->alloc = cap;
  m->dense = 0;
  return 0;
}

int pl_idmap_dense(pl_idmap_t *m, uint32_t limit) {
  if (limit == 0 || limit > PL_IDMAP_DENSE_MAX) {
    if (m->dense) pl_idmap_free(m); /* back to an empty hash table */
    pl_idmap_clear(m);
    return 0;
  }
  if (m->dense && limit <= m->alloc) {
    pl_idmap_clear(m); /* the whole array is zero again */
  } else {
    /* Rounded up: a dictionary grows a name at a time, and each request asks for its size. */
    uint32_t alloc = 64;
    while (alloc < limit) alloc *= 2;
    free(m->slots);
    free(m->used);
    pl_idmap_init(m);
    m->slots = calloc(alloc, sizeof(*m->slots));
    m->used = malloc((size_t)alloc * sizeof(*m->used));
    if (!m->slots || !m->used) {
      pl_idmap_free(m);
      return PL_ENOMEM;
    }
    m->alloc = alloc;
  }
  m->cap = limit;
  m->n = 0;
  m->dense = 1;
  return 0;
}

pl_agg_entry_t *pl_idmap_get(const pl_idmap_t *m, uint32_t id) {
  if (!m->cap) return NULL;
  if (m->dense) return id < m->cap && m->slots[id].id ? &m->slots[id] : NULL;
  for (uint32_t j = hash_id(id) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
    if (m->slots[j].id == id) return &m->slots[j];
    if (!m->slots[j].id) return NULL;
  }
}

pl_agg_entry_t *pl_idmap_add(pl_idmap_t *m, uint32_t id, uint32_t events, uint64_t participants) {
  uint32_t j;
  assert(id != 0); /* 0 marks an empty slot; dictionary ids start at 1 */
  if (m->dense && id < m->cap) {
    j = id;
  } else {
    /* an id past a dense table's end turns it into a hash table */
    if ((m->dense || (m->n + 1) * 4 > m->cap * 3) && grow(m)) return NULL;
    for (j = hash_id(id) & (m->cap - 1); m->slots[j].id && m->slots[j].id != id;
         j = (j + 1) & (m->cap - 1)) {
    }
  }
  if (!m->slots[j].id) {
    m->slots[j].id = id;
    if (m->dense) m->used[m->n] = id;
    m->n++;
  }
  m->slots[j].events += events;
  m->slots[j].participants += participants;
  return &m->slots[j];
}

int pl_idmap_add_entries(pl_idmap_t *m, const pl_agg_entry_t *e, size_t n) {
  size_t i = 0;
  if (m->dense) {
    /* the same as pl_idmap_add, without a call and a branch on the kind of map an entry */
    pl_agg_entry_t *slots = m->slots;
    uint32_t cap = m->cap, added = 0, *used = m->used + m->n;
    for (; i < n && e[i].id < cap; i++) {
      pl_agg_entry_t *slot = &slots[e[i].id];
      assert(e[i].id != 0);
      used[added] = e[i].id; /* kept only if new: there is room for every id below cap */
      added += slot->id == 0;
      slot->id = e[i].id;
      slot->events += e[i].events;
      slot->participants += e[i].participants;
    }
    m->n += added;
  }
  for (; i < n; i++)
    if (!pl_idmap_add(m, e[i].id, e[i].events, e[i].participants)) return PL_ENOMEM;
  return 0;
}

/* Sums a section into an array-backed map, decoding with locals the compiler keeps in
 * registers: this loop is most of an activity query's time. Stops early (it->left > 0)
 * at the first id past the array, which the caller adds the slow way. Returns 0, or
 * PL_ECORRUPT with the same checks as iter_step. */
static inline __attribute__((always_inline)) int add_dense(pl_idmap_t *m, pl_agg_iter_t *it,
                                                            int neg) {
  const unsigned char *p = it->p, *end = it->end;
  uint32_t id = it->id, left = it->left, n = m->n, cap = m->cap;
  pl_agg_entry_t *slots = m->slots;
  uint32_t *used = m->used;
  int rc = 0;
  while (left) {
    const unsigned char *entry = p;
    uint64_t d, ev, pa;
    pl_agg_entry_t *slot;
    if (end - p >= 3 && !((p[0] | p[1] | p[2]) & 0x80)) {
      d = p[0];
      ev = p[1];
      pa = p[2];
      p += 3;
    } else if (get_varint_fast(&p, end, &d) || get_varint_fast(&p, end, &ev) ||
               get_varint_fast(&p, end, &pa) || ev > UINT32_MAX) {
      rc = PL_ECORRUPT;
      break;
    }
    if (d == 0) { /* ids are unique, ascending, from 1 */
      rc = PL_ECORRUPT;
      break;
    }
    if (d >= cap - id) { /* past the array (or past 2^32): the caller decodes it again */
      p = entry;
      break;
    }
    id += (uint32_t)d;
    left--;
    slot = &slots[id];
    if (!slot->id) {
      slot->id = id;
      used[n++] = id;
    }
    slot->events += neg ? 0u - (uint32_t)ev : (uint32_t)ev;
    slot->participants += neg ? 0u - pa : pa;
  }
  m->n = n;
  it->p = p;
  it->id = id;
  it->left = left;
  if (rc) {
    it->corrupt = 1;
    it->left = 0;
  }
  return rc;
}

static int add_view(pl_idmap_t *m, const pl_agg_view_t *v, int sect, int neg) {
  pl_agg_entry_t e;
  pl_agg_iter_t it;
  pl_agg_iter_init(&it, v, sect);
  if (m->dense && (neg ? add_dense(m, &it, 1) : add_dense(m, &it, 0))) return PL_ECORRUPT;
  while (iter_step(&it, &e) == 1) {
    if (neg) {
      e.events = 0u - e.events;
      e.participants = 0u - e.participants;
    }
    if (!pl_idmap_add(m, e.id, e.events, e.participants)) return PL_ENOMEM;
  }
  return it.corrupt ? PL_ECORRUPT : 0;
}

int pl_idmap_add_view(pl_idmap_t *m, const pl_agg_view_t *v, int sect) {
  return add_view(m, v, sect, 0);
}

int pl_idmap_sub_view(pl_idmap_t *m, const pl_agg_view_t *v, int sect) {
  return add_view(m, v, sect, 1);
}

static int cmp_events_desc(const void *x, const void *y) {
  const pl_agg_entry_t *a = x, *b = y;
  if (a->events != b->events) return a->events > b->events ? -1 : 1;
  return a->id < b->id ? -1 : a->id > b->id;
}

pl_agg_entry_t *pl_idmap_sorted(const pl_idmap_t *m, uint32_t *n) {
  pl_agg_entry_t *out;
  const pl_agg_entry_t *e;
  uint32_t k = 0;
  *n = 0;
  if (!m->n) return NULL;
  out = malloc((size_t)m->n * sizeof(*out));
  if (!out) return NULL;
  for (uint32_t pos = 0; (e = pl_idmap_next(m, &pos));) out[k++] = *e;
  qsort(out, k, sizeof(*out), cmp_events_desc);
  *n = k;
  return out;
}

/* ---- covering ---- */

size_t pl_agg_cover(uint32_t from, uint32_t to, pl_agg_piece_t *out, size_t cap) {
  size_t n = 0;
  uint32_t d = from;
  while (d <= to) {
    uint32_t month = pl_date_month(d);
    uint32_t first = pl_date_month_first(month);
    uint32_t end = first + (uint32_t)pl_date_month_len(month) - 1;
    if (d == first && end <= to) {
      if (n < cap) out[n] = (pl_agg_piece_t){.is_month = 1, .key = month};
      n++;
      d = end + 1;
    } else {
      if (n < cap) out[n] = (pl_agg_piece_t){.is_month = 0, .key = d};
      n++;
      d++;
    }
  }
  return n;
}

void pl_agg_streaks(const unsigned char *active, size_t n, size_t last, uint32_t *current,
                    uint32_t *longest) {
  uint32_t run = 0, best = 0;
  for (size_t i = 0; i < n; i++) {
    run = active[i] ? run + 1 : 0;
    if (run > best) best = run;
  }
  *longest = best;
  run = 0;
  if (last < n)
    for (size_t i = last + 1; i-- > 0 && active[i];) run++;
  *current = run;
}

int pl_agg_days(const pl_agg_view_t *v, uint32_t month_first, uint32_t lo, uint32_t hi,
                uint32_t ev[32], uint64_t pa[32]) {
  pl_agg_iter_t it;
  pl_agg_entry_t e;
  uint64_t sum = 0;
  uint32_t len = (uint32_t)pl_date_month_len(pl_date_month(month_first));
  memset(ev, 0, 32 * sizeof(*ev));
  memset(pa, 0, 32 * sizeof(*pa));
  pl_agg_iter_init(&it, v, PL_AGG_DAYS);
  while (pl_agg_iter_next(&it, &e) == 1) {
    uint32_t day = month_first + e.id - 1;
    if (e.id < 1 || e.id > len) return PL_ECORRUPT;
    sum += e.events;
    if (day >= lo && day <= hi) {
      ev[e.id] = e.events;
      pa[e.id] = e.participants;
    }
  }
  if (it.corrupt) return PL_ECORRUPT;
  return sum == v->events;
}
