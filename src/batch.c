/* Batches: records (normalised fields plus stored form) and rejects packed one after another
 * into a single arena, so a batch is one allocation that moves between threads whole. */
#include "parley/batch.h"

#include <stdlib.h>
#include <string.h>

#include "parley/error.h"

/* Item layout (native endian, read with memcpy so nothing needs alignment):
 *   'r' u32 day u32 participants u8 has_participants u8 id_type u8 ncp u8 ntopics u64 id_uint
 *       str institution, id_str, kind, format, country, counterparts..., topics..., value
 *   'x' u64 received_ms str reason str raw str peer
 * where str is u32 length + bytes + NUL (the NUL lets reason and peer be C strings). */

static int reserve(pl_batch_t *b, size_t more) {
  size_t need = b->arena_len + more, cap = b->arena_cap ? b->arena_cap : 4096;
  char *p;
  if (need <= b->arena_cap) return 0;
  while (cap < need) cap *= 2;
  p = realloc(b->arena, cap);
  if (!p) return PL_ENOMEM;
  b->arena = p;
  b->arena_cap = cap;
  return 0;
}

static void put(pl_batch_t *b, const void *p, size_t n) {
  memcpy(b->arena + b->arena_len, p, n);
  b->arena_len += n;
}

static void put_u8(pl_batch_t *b, uint8_t v) { put(b, &v, 1); }
static void put_u32(pl_batch_t *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(pl_batch_t *b, uint64_t v) { put(b, &v, 8); }

static void put_str(pl_batch_t *b, const void *p, size_t n) {
  put_u32(b, (uint32_t)n);
  if (n) put(b, p, n);
  put_u8(b, 0);
}

pl_batch_t *pl_batch_new(void) { return calloc(1, sizeof(pl_batch_t)); }

void pl_batch_free(pl_batch_t *b) {
  if (!b) return;
  free(b->arena);
  free(b->chunk);
  free(b);
}

void pl_batch_reset(pl_batch_t *b) {
  free(b->chunk);
  b->chunk = NULL;
  b->chunk_len = 0;
  b->arena_len = 0;
  b->nrecords = b->nrejects = 0;
  b->status = 0;
  b->stored = b->duplicates = b->rejected = 0;
  b->chunk_seen = 0;
  b->next = NULL;
}

int pl_batch_set_chunk(pl_batch_t *b, const void *chunk, size_t len) {
  char *p = malloc(len ? len : 1);
  if (!p) return PL_ENOMEM;
  memcpy(p, chunk, len);
  free(b->chunk);
  b->chunk = p;
  b->chunk_len = len;
  return 0;
}

int pl_batch_add_record(pl_batch_t *b, const pl_record_t *rec, const void *value, size_t len) {
  size_t need = 1 + 4 + 4 + 4 + 8 + 5 * 5 + len + 5;
  uint32_t i;
  need += rec->institution.n + rec->id_str.n + rec->kind.n + rec->format.n + rec->country.n;
  for (i = 0; i < rec->ncounterparts; i++) need += 5 + rec->counterparts[i].n;
  for (i = 0; i < rec->ntopics; i++) need += 5 + rec->topics[i].n;
  if (reserve(b, need)) return PL_ENOMEM;
  put_u8(b, 'r');
  put_u32(b, rec->day);
  put_u32(b, rec->participants);
  put_u8(b, (uint8_t)rec->has_participants);
  put_u8(b, (uint8_t)rec->id_type);
  put_u8(b, (uint8_t)rec->ncounterparts);
  put_u8(b, (uint8_t)rec->ntopics);
  put_u64(b, rec->id_uint);
  put_str(b, rec->institution.p, rec->institution.n);
  put_str(b, rec->id_str.p, rec->id_str.n);
  put_str(b, rec->kind.p, rec->kind.n);
  put_str(b, rec->format.p, rec->format.n);
  put_str(b, rec->country.p, rec->country.n);
  for (i = 0; i < rec->ncounterparts; i++)
    put_str(b, rec->counterparts[i].p, rec->counterparts[i].n);
  for (i = 0; i < rec->ntopics; i++) put_str(b, rec->topics[i].p, rec->topics[i].n);
  put_str(b, value, len);
  b->nrecords++;
  return 0;
}

int pl_batch_add_reject(pl_batch_t *b, const char *reason, const void *raw, size_t rawlen,
                        const char *peer, uint64_t received_ms) {
  size_t rn = strlen(reason), pn = peer ? strlen(peer) : 0;
  if (reserve(b, 1 + 8 + 15 + rn + rawlen + pn)) return PL_ENOMEM;
  put_u8(b, 'x');
  put_u64(b, received_ms);
  put_str(b, reason, rn);
  put_str(b, raw, rawlen);
  put_str(b, peer ? peer : "", pn);
  b->nrejects++;
  return 0;
}

static uint32_t get_u32(const char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static uint64_t get_u64(const char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static pl_str_t get_str(const char *arena, size_t *pos) {
  uint32_t n = get_u32(arena + *pos);
  pl_str_t s = {arena + *pos + 4, n};
  *pos += 4 + (size_t)n + 1;
  return s;
}

int pl_batch_next(const pl_batch_t *b, size_t *pos, pl_batch_item_t *it) {
  const char *a = b->arena;
  size_t p = *pos;
  if (p >= b->arena_len) return 0;
  it->kind = a[p++];
  if (it->kind == 'r') {
    pl_record_t *r = &it->rec;
    uint32_t i;
    r->day = get_u32(a + p);
    r->participants = get_u32(a + p + 4);
    r->has_participants = (unsigned char)a[p + 8];
    r->id_type = (pl_id_type_t)(unsigned char)a[p + 9];
    r->ncounterparts = (unsigned char)a[p + 10];
    r->ntopics = (unsigned char)a[p + 11];
    r->id_uint = get_u64(a + p + 12);
    p += 20;
    r->institution = get_str(a, &p);
    r->id_str = get_str(a, &p);
    r->kind = get_str(a, &p);
    r->format = get_str(a, &p);
    r->country = get_str(a, &p);
    for (i = 0; i < r->ncounterparts; i++) r->counterparts[i] = get_str(a, &p);
    for (i = 0; i < r->ntopics; i++) r->topics[i] = get_str(a, &p);
    pl_str_t v = get_str(a, &p);
    it->value = v.p;
    it->value_len = v.n;
  } else {
    pl_str_t s;
    it->received_ms = get_u64(a + p);
    p += 8;
    s = get_str(a, &p);
    it->reason = s.p;
    s = get_str(a, &p);
    it->raw = s.p;
    it->raw_len = s.n;
    s = get_str(a, &p);
    it->peer = s.p;
  }
  *pos = p;
  return 1;
}
