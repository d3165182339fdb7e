/* Engagement records: validation and normalisation of a decoded MessagePack map against
 * the SPEC's record rules, and the stored form kept in the events table. No I/O. */
#ifndef PARLEY_RECORD_H
#define PARLEY_RECORD_H

#include <msgpack.h>
#include <stdint.h>

#include "parley/types.h"

#define PL_RECORD_MAX_NAME 256         /* institution and counterpart names, bytes */
#define PL_RECORD_MAX_ID 128           /* id as a string, bytes */
#define PL_RECORD_MAX_KIND 64          /* kind, bytes */
#define PL_RECORD_MAX_COUNTRY 64       /* country, bytes */
#define PL_RECORD_MAX_COUNTERPARTS 64  /* items */
#define PL_RECORD_MAX_TOPICS 32        /* items */
#define PL_RECORD_MAX_TOPIC 128        /* bytes each */
#define PL_RECORD_MAX_PARTICIPANTS 1000000u

typedef enum { PL_ID_NONE = 0, PL_ID_STR = 1, PL_ID_UINT = 2 } pl_id_type_t;

/* A validated, normalised record. Every pl_str_t points into the memory the record was
 * parsed from (a msgpack object's zone, or a batch's arena): valid only as long as that.
 * Absent optional strings have n == 0. Names are trimmed and valid UTF-8; counterparts and
 * topics are de-duplicated, in first-seen order. */
typedef struct pl_record {
  uint32_t day; /* date as a day number (date.h) */
  pl_str_t institution;
  pl_id_type_t id_type;
  pl_str_t id_str;  /* when id_type == PL_ID_STR (may be empty) */
  uint64_t id_uint; /* when id_type == PL_ID_UINT */
  pl_str_t kind;
  pl_str_t format; /* "in_person", "virtual", "hybrid" or absent */
  pl_str_t country;
  int has_participants;
  uint32_t participants;
  uint32_t ncounterparts;
  uint32_t ntopics;
  pl_str_t counterparts[PL_RECORD_MAX_COUNTERPARTS];
  pl_str_t topics[PL_RECORD_MAX_TOPICS];
} pl_record_t;

/* Validates and normalises one record. obj must be the record map; entry_sec is the
 * Forward entry's time in seconds, used for the date when the record has none.
 * Returns 0 with *rec filled (strings point into obj's zone), or PL_EREJECT with a
 * one-line reason naming the field and the rule in why (e.g. "institution is longer than
 * 256 bytes"). Never allocates. */
int pl_record_parse(pl_record_t *rec, const msgpack_object *obj, int64_t entry_sec, char *why,
                    size_t whylen);

/* Envelope kept beside each stored record. */
typedef struct pl_record_meta {
  pl_str_t tag;         /* the Forward tag (points into the stored value) */
  int64_t time_sec;     /* the entry's time */
  uint32_t time_nsec;
  uint64_t received_ms; /* when parleyd received it, Unix ms */
} pl_record_meta_t;

/* Packs the stored form of a record into pk:
 *   [1, tag, time_sec, time_nsec, received_ms, record-map]
 * where record-map holds the normalised known fields (institution trimmed, date always
 * present as YYYY-MM-DD, counterparts always an array, de-duplicated lists) followed by
 * every other key of obj exactly as received. Returns 0 or PL_ENOMEM. */
int pl_record_pack(msgpack_packer *pk, const pl_record_t *rec, const msgpack_object *obj,
                   const pl_record_meta_t *meta);

/* Unpacks a stored value (as made by pl_record_pack) into u, then fills *meta, *map (the
 * record map inside u) and, when rec is not NULL, *rec. Everything points into u or buf:
 * valid until u is destroyed. Returns 0 or PL_ECORRUPT. */
int pl_record_unpack_stored(const char *buf, size_t len, msgpack_unpacked *u,
                            pl_record_meta_t *meta, const msgpack_object **map,
                            pl_record_t *rec);

/* Checks that s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
 * Returns 1 when valid. */
int pl_utf8_valid(const char *s, size_t n);

#endif
