/* Helpers shared by the C tests: temporary directories, records built from a few fields,
 * stores opened with small maps. */
#ifndef PARLEY_TESTUTIL_H
#define PARLEY_TESTUTIL_H

#include <stdint.h>

#include "parley/batch.h"
#include "parley/store.h"

/* A fresh directory under $TMPDIR (malloc'd path); tu_rmrf removes it and frees nothing. */
char *tu_tempdir(const char *tag);
void tu_rmrf(const char *path);

/* Field values for tu_add_record; NULL/negative means absent. cps and topics are
 * comma-separated lists. */
typedef struct tu_rec {
  const char *institution;
  const char *date;
  const char *id;     /* a string id */
  int64_t uid;        /* >= 0: an unsigned id instead */
  const char *kind;
  const char *format;
  const char *country;
  int64_t participants;
  const char *cps;
  const char *topics;
  const char *extra_key; /* one unknown field kept as received */
  const char *extra_val;
} tu_rec_t;

/* Packs the record as a map, validates it with pl_record_parse (entry time entry_sec) and
 * adds it to b with its stored form; a record that fails validation is added as a reject
 * instead. Returns 0 when stored as a record, 1 when added as a reject. Aborts on OOM. */
int tu_add(pl_batch_t *b, const tu_rec_t *r, int64_t entry_sec);

/* Opens a store in dir with the given map sizes (sync none: tests need no fsync). */
pl_store_t *tu_store(const char *dir, uint64_t map_size, uint64_t map_max);

/* Commits one batch alone and returns its status. */
int tu_commit1(pl_store_t *s, pl_batch_t *b, uint64_t now_ms);

/* Counts the entries of a table. */
uint64_t tu_count(pl_store_t *s, pl_table_t tab);

/* A deterministic PRNG (xorshift64*). */
uint64_t tu_rand(uint64_t *state);

#endif
