/* Aggregate arithmetic and the stored form of aggregates. The stored form is a fixed header
 * followed by sorted (id, events, participants) entries per section, so a query can read
 * the totals without decoding and find one id by binary search. */
#include "parley/agg.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "parley/date.h"
#include "parley/error.h"

/* Stored layout, native endian like LMDB's own pages:
 *   u32 version, events, active_days, first_day, last_day, n[PL_AGG_NSECT], u64 participants,
 *   then per section n entries of { u32 id, u32 events, u64 participants }. */
#define AGG_VERSION 1
#define HDR_SIZE (4 * (5 + PL_AGG_NSECT) + 8)
#define ENTRY_SIZE 16

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
  for (int s = 0; s < PL_AGG_NSECT; s++)
    for (uint32_t i = 0; i < src->n[s]; i++) {
      pl_agg_view_entry(src, s, i, &e);
      if (pl_agg_add(dst, s, e.id, e.events, e.participants)) return PL_ENOMEM;
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

size_t pl_agg_encoded_size(const pl_agg_t *a) {
  size_t n = HDR_SIZE;
  for (int s = 0; s < PL_AGG_NSECT; s++) n += (size_t)a->sect[s].n * ENTRY_SIZE;
  return n;
}

void pl_agg_encode(const pl_agg_t *a, void *out) {
  unsigned char *p = out;
  uint32_t h[5 + PL_AGG_NSECT] = {AGG_VERSION, a->events, a->active_days, a->first_day,
                                  a->last_day};
  for (int s = 0; s < PL_AGG_NSECT; s++) h[5 + s] = a->sect[s].n;
  memcpy(p, h, sizeof(h));
  memcpy(p + sizeof(h), &a->participants, 8);
  p += HDR_SIZE;
  for (int s = 0; s < PL_AGG_NSECT; s++) {
    for (uint32_t i = 0; i < a->sect[s].n; i++) {
      const pl_agg_entry_t *e = &a->sect[s].v[i];
      memcpy(p, &e->id, 4);
      memcpy(p + 4, &e->events, 4);
      memcpy(p + 8, &e->participants, 8);
      p += ENTRY_SIZE;
    }
  }
}

static uint32_t old_id(const pl_agg_view_t *o, int s, uint32_t i) {
  uint32_t id;
  memcpy(&id, o->sect[s] + (size_t)i * ENTRY_SIZE, 4);
  return id;
}

size_t pl_agg_merged_size(const pl_agg_t *d, const pl_agg_view_t *o) {
  size_t n = HDR_SIZE;
  for (int s = 0; s < PL_AGG_NSECT; s++) {
    uint32_t i = 0, j = 0, dn = d->sect[s].n, on = o ? o->n[s] : 0, k = 0;
    while (i < dn || j < on) {
      if (j >= on || (i < dn && d->sect[s].v[i].id < old_id(o, s, j)))
        i++;
      else if (i >= dn || old_id(o, s, j) < d->sect[s].v[i].id)
        j++;
      else
        i++, j++;
      k++;
    }
    n += (size_t)k * ENTRY_SIZE;
  }
  return n;
}

void pl_agg_encode_merged(const pl_agg_t *d, const pl_agg_view_t *o, int day_level, void *out) {
  unsigned char *p = out;
  uint32_t h[5 + PL_AGG_NSECT];
  uint64_t participants = d->participants + (o ? o->participants : 0);
  uint32_t first = d->first_day, last = d->last_day;
  if (o && o->first_day != PL_AGG_NO_DAY && (first == PL_AGG_NO_DAY || o->first_day < first))
    first = o->first_day;
  if (o && o->last_day != PL_AGG_NO_DAY && (last == PL_AGG_NO_DAY || o->last_day > last))
    last = o->last_day;
  h[0] = AGG_VERSION;
  h[1] = d->events + (o ? o->events : 0);
  h[2] = day_level ? 1 : d->active_days + (o ? o->active_days : 0);
  h[3] = first;
  h[4] = last;
  p += HDR_SIZE;
  for (int s = 0; s < PL_AGG_NSECT; s++) {
    uint32_t i = 0, j = 0, dn = d->sect[s].n, on = o ? o->n[s] : 0, k = 0;
    while (i < dn || j < on) {
      pl_agg_entry_t e;
      if (j >= on || (i < dn && d->sect[s].v[i].id < old_id(o, s, j))) {
        e = d->sect[s].v[i++];
      } else if (i >= dn || old_id(o, s, j) < d->sect[s].v[i].id) {
        pl_agg_view_entry(o, s, j++, &e);
      } else {
        pl_agg_view_entry(o, s, j++, &e);
        e.events += d->sect[s].v[i].events;
        e.participants += d->sect[s].v[i].participants;
        i++;
      }
      memcpy(p, &e.id, 4);
      memcpy(p + 4, &e.events, 4);
      memcpy(p + 8, &e.participants, 8);
      p += ENTRY_SIZE;
      k++;
    }
    h[5 + s] = k;
  }
  memcpy(out, h, sizeof(h));
  memcpy((unsigned char *)out + sizeof(h), &participants, 8);
}

int pl_agg_view(pl_agg_view_t *v, const void *blob, size_t len) {
  const unsigned char *p = blob;
  uint32_t h[5 + PL_AGG_NSECT];
  size_t need = HDR_SIZE;
  if (len < HDR_SIZE) return PL_ECORRUPT;
  memcpy(h, p, sizeof(h));
  if (h[0] != AGG_VERSION) return PL_ECORRUPT;
  v->events = h[1];
  v->active_days = h[2];
  v->first_day = h[3];
  v->last_day = h[4];
  memcpy(&v->participants, p + sizeof(h), 8);
  for (int s = 0; s < PL_AGG_NSECT; s++) {
    v->n[s] = h[5 + s];
    v->sect[s] = p + need;
    need += (size_t)h[5 + s] * ENTRY_SIZE;
    if (need > len) return PL_ECORRUPT;
  }
  return need == len ? 0 : PL_ECORRUPT;
}

void pl_agg_view_entry(const pl_agg_view_t *v, int sect, uint32_t i, pl_agg_entry_t *e) {
  const unsigned char *p = v->sect[sect] + (size_t)i * ENTRY_SIZE;
  memcpy(&e->id, p, 4);
  memcpy(&e->events, p + 4, 4);
  memcpy(&e->participants, p + 8, 8);
}

int pl_agg_view_find(const pl_agg_view_t *v, int sect, uint32_t id, pl_agg_entry_t *e) {
  uint32_t lo = 0, hi = v->n[sect];
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2, mid_id;
    memcpy(&mid_id, v->sect[sect] + (size_t)mid * ENTRY_SIZE, 4);
    if (mid_id == id) {
      pl_agg_view_entry(v, sect, mid, e);
      return 1;
    }
    if (mid_id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 0;
}

/* ---- id maps ---- */

void pl_idmap_init(pl_idmap_t *m) { memset(m, 0, sizeof(*m)); }

void pl_idmap_free(pl_idmap_t *m) {
  free(m->slots);
  pl_idmap_init(m);
}

void pl_idmap_clear(pl_idmap_t *m) {
  if (m->slots) memset(m->slots, 0, (size_t)m->cap * sizeof(*m->slots));
  m->n = 0;
}

static uint32_t hash_id(uint32_t id) {
  id ^= id >> 16;
  id *= 0x45d9f3bu;
  id ^= id >> 16;
  return id;
}

static int grow(pl_idmap_t *m) {
  uint32_t cap = m->cap ? m->cap * 2 : 64;
  pl_agg_entry_t *slots = calloc(cap, sizeof(*slots));
  if (!slots) return PL_ENOMEM;
  for (uint32_t i = 0; i < m->cap; i++) {
    if (!m->slots[i].id) continue;
    uint32_t j = hash_id(m->slots[i].id) & (cap - 1);
    while (slots[j].id) j = (j + 1) & (cap - 1);
    slots[j] = m->slots[i];
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  return 0;
}

pl_agg_entry_t *pl_idmap_get(const pl_idmap_t *m, uint32_t id) {
  if (!m->cap) return NULL;
  for (uint32_t j = hash_id(id) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
    if (m->slots[j].id == id) return &m->slots[j];
    if (!m->slots[j].id) return NULL;
  }
}

pl_agg_entry_t *pl_idmap_add(pl_idmap_t *m, uint32_t id, uint32_t events, uint64_t participants) {
  uint32_t j;
  assert(id != 0); /* 0 marks an empty slot; dictionary ids start at 1 */
  if ((m->n + 1) * 4 > m->cap * 3 && grow(m)) return NULL;
  for (j = hash_id(id) & (m->cap - 1); m->slots[j].id && m->slots[j].id != id;
       j = (j + 1) & (m->cap - 1)) {
  }
  if (!m->slots[j].id) {
    m->slots[j].id = id;
    m->n++;
  }
  m->slots[j].events += events;
  m->slots[j].participants += participants;
  return &m->slots[j];
}

int pl_idmap_add_view(pl_idmap_t *m, const pl_agg_view_t *v, int sect) {
  pl_agg_entry_t e;
  for (uint32_t i = 0; i < v->n[sect]; i++) {
    pl_agg_view_entry(v, sect, i, &e);
    if (!pl_idmap_add(m, e.id, e.events, e.participants)) return PL_ENOMEM;
  }
  return 0;
}

static int cmp_events_desc(const void *x, const void *y) {
  const pl_agg_entry_t *a = x, *b = y;
  if (a->events != b->events) return a->events > b->events ? -1 : 1;
  return a->id < b->id ? -1 : a->id > b->id;
}

pl_agg_entry_t *pl_idmap_sorted(const pl_idmap_t *m, uint32_t *n) {
  pl_agg_entry_t *out;
  uint32_t k = 0;
  *n = 0;
  if (!m->n) return NULL;
  out = malloc((size_t)m->n * sizeof(*out));
  if (!out) return NULL;
  for (uint32_t i = 0; i < m->cap; i++)
    if (m->slots[i].id) out[k++] = m->slots[i];
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
      if (n < cap) out[n] = (pl_agg_piece_t){1, month};
      n++;
      d = end + 1;
    } else {
      if (n < cap) out[n] = (pl_agg_piece_t){0, d};
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
