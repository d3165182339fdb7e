/* The workload generator: seeded, reproducible engagement records shaped like Track II data
 * at scale (2,000 Zipf-active institutions, ~5,000 events a day, ~1% late, ~0.5% re-sent
 * duplicates, ~250 bytes of MessagePack each). The tables in gen.c hold the distributions. */
#ifndef PARLEY_BENCH_GEN_H
#define PARLEY_BENCH_GEN_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "bench.h"

/* splitmix64: fast, seedable, good enough for workload shapes. */
typedef struct pb_rng {
  uint64_t s;
} pb_rng_t;

static inline uint64_t pb_rng_next(pb_rng_t *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
/* Uniform in [0, 1). */
static inline double pb_rng_unit(pb_rng_t *r) { return (double)(pb_rng_next(r) >> 11) * 0x1p-53; }
/* Uniform in [0, n). */
static inline uint32_t pb_rng_below(pb_rng_t *r, uint32_t n) {
  return (uint32_t)(((pb_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

#define PB_GEN_INSTITUTIONS 2000
#define PB_GEN_MAX_COUNTERPARTS 3
#define PB_GEN_MAX_TOPICS 5

typedef struct pb_event {
  uint64_t n;        /* sequence number of the original event; its id derives from it */
  uint32_t day;      /* date.h day number */
  int64_t time_sec;  /* EventTime of the entry */
  uint32_t time_nsec;
  uint16_t inst;     /* institution index (0 is the most active) */
  uint16_t cp[PB_GEN_MAX_COUNTERPARTS];
  uint8_t ncp;
  uint8_t kind, format;
  uint8_t ntopics;
  uint8_t topics[PB_GEN_MAX_TOPICS];
  uint8_t has_participants;
  uint32_t participants;
  uint8_t has_title, title_ordinal;
  uint8_t has_location, location;
  uint8_t late; /* dated weeks or months before the stream's current day */
  uint8_t dup;  /* a re-send of an earlier event */
} pb_event_t;

typedef struct pb_gen_opts {
  uint64_t seed;
  uint32_t start_day;  /* 0: 2015-01-01 */
  uint32_t per_day;    /* 0: 5,000 events a day */
  double late_ratio;   /* < 0: 0.01 */
  double dup_ratio;    /* < 0: 0.005 */
} pb_gen_opts_t;

typedef struct pb_gen pb_gen_t;

/* Returns a generator, or NULL when out of memory. Institution names do not depend on the
 * seed, so a query load generated with any seed names what an ingest load stored. */
pb_gen_t *pb_gen_new(const pb_gen_opts_t *o);
void pb_gen_free(pb_gen_t *g);

/* The next event of the stream. */
void pb_gen_next(pb_gen_t *g, pb_event_t *e);

/* The current (latest non-late) day of the stream, and the first day. */
uint32_t pb_gen_current_day(const pb_gen_t *g);
uint32_t pb_gen_start_day(const pb_gen_t *g);

/* An institution index drawn with the same Zipf weights as the stream's reporters. */
uint32_t pb_gen_pick_inst(pb_gen_t *g);

/* Name of institution i (NUL-terminated, owned by g), and its length. */
const char *pb_gen_inst_name(const pb_gen_t *g, uint32_t i, size_t *len);

/* Packs the event's record map (id, date, institution, counterparts, kind, format,
 * location?, country, participants?, topics, title?). Returns 0 or PL_ENOMEM. */
int pb_gen_pack(const pb_gen_t *g, const pb_event_t *e, msgpack_packer *pk);

/* Appends the record as one JSON line (with the newline) to out. Returns 0 or PL_ENOMEM. */
int pb_gen_json(const pb_gen_t *g, const pb_event_t *e, pb_buf_t *out);

/* Unix seconds of midnight UTC of a day number. */
int64_t pb_day_unix(uint32_t day);

#endif
