/* Record validation, normalisation and the stored form. Runs once per ingested record, so
 * it never allocates, walks the map keys once and reads msgpack strings by their length. */
#include "parley/record.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "parley/date.h"
#include "parley/error.h"

/* Known keys, in the order pl_record_pack writes them. */
enum {
  K_OTHER = -1,
  K_INSTITUTION,
  K_DATE,
  K_ID,
  K_COUNTERPARTS,
  K_KIND,
  K_FORMAT,
  K_LOCATION,
  K_COUNTRY,
  K_TITLE,
  K_PARTICIPANTS,
  K_TOPICS,
  K_COUNT
};

/* Names as pl_str_t, so packing a key never measures it. */
static const pl_str_t key_names[K_COUNT] = {
    {"institution", 11}, {"date", 4},          {"id", 2},       {"counterparts", 12},
    {"kind", 4},         {"format", 6},        {"location", 8}, {"country", 7},
    {"title", 5},        {"participants", 12}, {"topics", 6},
};

/* Length first, then a fixed-size memcmp the compiler turns into a word compare. */
static inline int key_of(const char *p, uint32_t n) {
  switch (n) {
    case 2:
      return memcmp(p, "id", 2) == 0 ? K_ID : K_OTHER;
    case 4:
      if (memcmp(p, "date", 4) == 0) return K_DATE;
      return memcmp(p, "kind", 4) == 0 ? K_KIND : K_OTHER;
    case 5:
      return memcmp(p, "title", 5) == 0 ? K_TITLE : K_OTHER;
    case 6:
      if (memcmp(p, "format", 6) == 0) return K_FORMAT;
      return memcmp(p, "topics", 6) == 0 ? K_TOPICS : K_OTHER;
    case 7:
      return memcmp(p, "country", 7) == 0 ? K_COUNTRY : K_OTHER;
    case 8:
      return memcmp(p, "location", 8) == 0 ? K_LOCATION : K_OTHER;
    case 11:
      return memcmp(p, "institution", 11) == 0 ? K_INSTITUTION : K_OTHER;
    case 12:
      if (memcmp(p, "counterparts", 12) == 0) return K_COUNTERPARTS;
      return memcmp(p, "participants", 12) == 0 ? K_PARTICIPANTS : K_OTHER;
    default:
      return K_OTHER;
  }
}

/* ---- UTF-8 ---- */

enum { TEXT_OK, TEXT_BAD_UTF8, TEXT_NUL };

#define HIGH_BITS 0x8080808080808080ull
#define LOW_BITS 0x0101010101010101ull

/* One pass for both rules a name must meet. Whole 8-byte words of ASCII are skipped at
 * once; (v - 0x01..) & ~v & 0x80.. is non-zero exactly when some byte of v is zero. */
static inline int text_scan(const unsigned char *s, size_t n, int nul_ok) {
  size_t i = 0;
  while (i < n) {
    if (n - i >= 8) {
      uint64_t v;
      memcpy(&v, s + i, 8);
      if ((v & HIGH_BITS) == 0) {
        if (!nul_ok && ((v - LOW_BITS) & ~v & HIGH_BITS) != 0) return TEXT_NUL;
        i += 8;
        continue;
      }
    }
    unsigned c = s[i];
    if (c < 0x80) {
      if (c == 0 && !nul_ok) return TEXT_NUL;
      i++;
      continue;
    }
    /* The second byte's range is what excludes overlongs (E0, F0), surrogates (ED) and
     * code points above U+10FFFF (F4); C0, C1 and F5..FF never start a valid sequence. */
    unsigned lo = 0x80, hi = 0xBF;
    size_t len;
    if (c < 0xC2) {
      return TEXT_BAD_UTF8;
    } else if (c < 0xE0) {
      len = 2;
    } else if (c < 0xF0) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c < 0xF5) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return TEXT_BAD_UTF8;
    }
    if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return TEXT_BAD_UTF8;
    for (size_t k = 2; k < len; k++)
      if ((s[i + k] & 0xC0) != 0x80) return TEXT_BAD_UTF8;
    i += len;
  }
  return TEXT_OK;
}

int pl_utf8_valid(const char *s, size_t n) {
  return text_scan((const unsigned char *)s, n, 1) == TEXT_OK;
}

/* ---- reasons ---- */

static int reject(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int reject(char *why, size_t whylen, const char *fmt, ...) {
  if (why != NULL && whylen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
  }
  return PL_EREJECT;
}

enum { T_TYPE, T_EMPTY, T_LONG, T_UTF8, T_NUL };

/* field alone, or field[idx] for a list item (idx counts from 0 in the list as received). */
static int text_reject(char *why, size_t whylen, const char *field, int idx, int what,
                       uint32_t max) {
  char f[48];
  if (idx < 0)
    snprintf(f, sizeof f, "%s", field);
  else
    snprintf(f, sizeof f, "%s[%d]", field, idx);
  switch (what) {
    case T_TYPE:
      return reject(why, whylen, "%s must be a string", f);
    case T_EMPTY:
      return reject(why, whylen, "%s is empty", f);
    case T_LONG:
      return reject(why, whylen, "%s is longer than %u bytes", f, (unsigned)max);
    case T_UTF8:
      return reject(why, whylen, "%s is not valid UTF-8", f);
    default:
      return reject(why, whylen, "%s contains a NUL byte", f);
  }
}

/* Writes at most 32 bytes of a value into out as printable ASCII: the value may be binary,
 * and a reason is one line that ends up in logs and JSON. */
static void quote_safe(char *out, size_t outlen, const char *p, uint32_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  uint32_t lim = n > 32 ? 32 : n;
  for (uint32_t i = 0; i < lim && o + 5 < outlen; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      out[o++] = (char)c;
    } else {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  if (n > lim && o + 4 < outlen) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
}

/* ---- fields ---- */

static inline int is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* A string field: type, optional trim of ASCII whitespace, length min..max bytes, UTF-8,
 * and NUL unless nul_ok. NUL is refused in everything that becomes part of a key or an
 * aggregate name; free text (location, title) may hold it. */
static inline int parse_text(pl_str_t *out, const msgpack_object *v, int trim, uint32_t min,
                             uint32_t max, int nul_ok, const char *field, int idx, char *why,
                             size_t whylen) {
  if (v->type != MSGPACK_OBJECT_STR) return text_reject(why, whylen, field, idx, T_TYPE, 0);
  const char *p = v->via.str.ptr;
  uint32_t n = v->via.str.size;
  if (trim) {
    while (n > 0 && is_space((unsigned char)p[n - 1])) n--;
    while (n > 0 && is_space((unsigned char)*p)) p++, n--;
  }
  if (n < min) return text_reject(why, whylen, field, idx, T_EMPTY, 0);
  if (n > max) return text_reject(why, whylen, field, idx, T_LONG, max);
  int r = text_scan((const unsigned char *)p, n, nul_ok);
  if (r != TEXT_OK) return text_reject(why, whylen, field, idx, r == TEXT_NUL ? T_NUL : T_UTF8, 0);
  out->p = p;
  out->n = n;
  return 0;
}

static inline int seen_before(const pl_str_t *list, uint32_t count, pl_str_t s) {
  for (uint32_t i = 0; i < count; i++)
    if (list[i].n == s.n && memcmp(list[i].p, s.p, s.n) == 0) return 1;
  return 0;
}

static int parse_counterparts(pl_record_t *rec, const msgpack_object *v, char *why, size_t whylen) {
  pl_str_t s;
  if (v->type == MSGPACK_OBJECT_STR) {
    int rc = parse_text(&s, v, 1, 1, PL_RECORD_MAX_NAME, 0, "counterparts", -1, why, whylen);
    if (rc != 0) return rc;
    rec->counterparts[0] = s;
    rec->ncounterparts = 1;
    return 0;
  }
  if (v->type != MSGPACK_OBJECT_ARRAY)
    return reject(why, whylen, "counterparts must be an array of strings or a string");
  if (v->via.array.size > PL_RECORD_MAX_COUNTERPARTS)
    return reject(why, whylen, "counterparts has more than %d items", PL_RECORD_MAX_COUNTERPARTS);
  uint32_t count = 0;
  for (uint32_t i = 0; i < v->via.array.size; i++) {
    int rc = parse_text(&s, &v->via.array.ptr[i], 1, 1, PL_RECORD_MAX_NAME, 0, "counterparts",
                        (int)i, why, whylen);
    if (rc != 0) return rc;
    if (!seen_before(rec->counterparts, count, s)) rec->counterparts[count++] = s;
  }
  rec->ncounterparts = count;
  return 0;
}

static int parse_topics(pl_record_t *rec, const msgpack_object *v, char *why, size_t whylen) {
  if (v->type != MSGPACK_OBJECT_ARRAY)
    return reject(why, whylen, "topics must be an array of strings");
  if (v->via.array.size > PL_RECORD_MAX_TOPICS)
    return reject(why, whylen, "topics has more than %d items", PL_RECORD_MAX_TOPICS);
  uint32_t count = 0;
  for (uint32_t i = 0; i < v->via.array.size; i++) {
    pl_str_t s;
    int rc = parse_text(&s, &v->via.array.ptr[i], 0, 1, PL_RECORD_MAX_TOPIC, 0, "topics", (int)i,
                        why, whylen);
    if (rc != 0) return rc;
    if (!seen_before(rec->topics, count, s)) rec->topics[count++] = s;
  }
  rec->ntopics = count;
  return 0;
}

static int parse_date(uint32_t *day, const msgpack_object *v, char *why, size_t whylen) {
  /* pl_date_parse cannot tell a malformed string from an impossible date; checking the
   * shape first gives each its own reason and makes the value safe to quote. */
  if (v->type != MSGPACK_OBJECT_STR || v->via.str.size != PL_DATE_LEN)
    return reject(why, whylen, "date must be a string YYYY-MM-DD");
  const char *p = v->via.str.ptr;
  int shaped = 1;
  for (int i = 0; shaped && i < PL_DATE_LEN; i++)
    shaped = i == 4 || i == 7 ? p[i] == '-' : p[i] >= '0' && p[i] <= '9';
  if (!shaped) return reject(why, whylen, "date must be a string YYYY-MM-DD");
  int rc = pl_date_parse(p, PL_DATE_LEN, day);
  if (rc == PL_ERANGE) return reject(why, whylen, "date %.10s is outside 1900..2199", p);
  if (rc != 0) return reject(why, whylen, "date %.10s is not a calendar date", p);
  return 0;
}

static int parse_id(pl_record_t *rec, const msgpack_object *v, char *why, size_t whylen) {
  if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
    rec->id_type = PL_ID_UINT;
    rec->id_uint = v->via.u64;
    return 0;
  }
  if (v->type != MSGPACK_OBJECT_STR)
    return reject(why, whylen, "id must be a string or an unsigned integer");
  if (v->via.str.size > PL_RECORD_MAX_ID)
    return reject(why, whylen, "id is longer than %d bytes", PL_RECORD_MAX_ID);
  rec->id_type = PL_ID_STR;
  rec->id_str = pl_str(v->via.str.ptr, v->via.str.size);
  return 0;
}

static int parse_format(pl_str_t *out, const msgpack_object *v, char *why, size_t whylen) {
  if (v->type != MSGPACK_OBJECT_STR) return reject(why, whylen, "format must be a string");
  const char *p = v->via.str.ptr;
  uint32_t n = v->via.str.size;
  if ((n == 9 && memcmp(p, "in_person", 9) == 0) || (n == 7 && memcmp(p, "virtual", 7) == 0) ||
      (n == 6 && memcmp(p, "hybrid", 6) == 0)) {
    *out = pl_str(p, n);
    return 0;
  }
  char q[32 * 4 + 8];
  quote_safe(q, sizeof q, p, n);
  return reject(why, whylen, "format \"%s\" is not one of in_person, virtual, hybrid", q);
}

static int parse_participants(pl_record_t *rec, const msgpack_object *v, char *why, size_t whylen) {
  if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
    return reject(why, whylen, "participants must be an unsigned integer");
  if (v->via.u64 > PL_RECORD_MAX_PARTICIPANTS)
    return reject(why, whylen, "participants is more than %u", PL_RECORD_MAX_PARTICIPANTS);
  rec->has_participants = 1;
  rec->participants = (uint32_t)v->via.u64;
  return 0;
}

#define ENTRY_SEC_FAR ((int64_t)1 << 40) /* ~35,000 years in seconds */

int pl_record_parse(pl_record_t *rec, const msgpack_object *obj, int64_t entry_sec, char *why,
                    size_t whylen) {
  if (obj->type != MSGPACK_OBJECT_MAP) return reject(why, whylen, "record is not a map");
  /* Only the scalars: the two lists are valid up to their counts, and clearing them would
   * cost more than the rest of the parse. Absent strings point at "", not NULL, so that
   * callers may memcpy or memcmp them. */
  static const pl_str_t none = {"", 0};
  rec->day = 0;
  rec->institution = none;
  rec->id_type = PL_ID_NONE;
  rec->id_str = none;
  rec->id_uint = 0;
  rec->kind = none;
  rec->format = none;
  rec->country = none;
  rec->has_participants = 0;
  rec->participants = 0;
  rec->ncounterparts = 0;
  rec->ntopics = 0;

  unsigned seen = 0;
  int have_date = 0;
  const msgpack_object_kv *kv = obj->via.map.ptr;
  const msgpack_object_kv *end = kv + obj->via.map.size;
  for (; kv < end; kv++) {
    if (kv->key.type != MSGPACK_OBJECT_STR)
      return reject(why, whylen, "record has a non-string key");
    int k = key_of(kv->key.via.str.ptr, kv->key.via.str.size);
    if (k == K_OTHER) continue;
    if (seen & (1u << k)) return reject(why, whylen, "duplicate key \"%s\"", key_names[k].p);
    seen |= 1u << k;
    const msgpack_object *v = &kv->val;
    if (v->type == MSGPACK_OBJECT_NIL) continue;
    pl_str_t ignored;
    int rc;
    switch (k) {
      case K_INSTITUTION:
        rc = parse_text(&rec->institution, v, 1, 1, PL_RECORD_MAX_NAME, 0, "institution", -1, why,
                        whylen);
        break;
      case K_DATE:
        rc = parse_date(&rec->day, v, why, whylen);
        have_date = 1;
        break;
      case K_ID:
        rc = parse_id(rec, v, why, whylen);
        break;
      case K_COUNTERPARTS:
        rc = parse_counterparts(rec, v, why, whylen);
        break;
      case K_KIND:
        rc = parse_text(&rec->kind, v, 0, 1, PL_RECORD_MAX_KIND, 0, "kind", -1, why, whylen);
        break;
      case K_FORMAT:
        rc = parse_format(&rec->format, v, why, whylen);
        break;
      case K_LOCATION:
        rc = parse_text(&ignored, v, 0, 0, UINT32_MAX, 1, "location", -1, why, whylen);
        break;
      case K_COUNTRY:
        rc = parse_text(&rec->country, v, 0, 1, PL_RECORD_MAX_COUNTRY, 0, "country", -1, why,
                        whylen);
        break;
      case K_TITLE:
        rc = parse_text(&ignored, v, 0, 0, UINT32_MAX, 1, "title", -1, why, whylen);
        break;
      case K_PARTICIPANTS:
        rc = parse_participants(rec, v, why, whylen);
        break;
      default:
        rc = parse_topics(rec, v, why, whylen);
        break;
    }
    if (rc != 0) return rc;
  }
  if (rec->institution.n == 0) return reject(why, whylen, "institution is missing");
  /* pl_date_from_unix negates negative times, which overflows near INT64_MIN; any time a
   * client can send must be safe here, and those are all far outside 1900..2199 anyway. */
  if (!have_date && (entry_sec < -ENTRY_SEC_FAR || pl_date_from_unix(entry_sec, &rec->day) != 0))
    return reject(why, whylen, "date is absent and the entry time is outside 1900..2199");
  return 0;
}

/* ---- stored form ---- */

#define STORED_VERSION 1
#define STORED_FIELDS 6

/* The normalised fields are encoded into a buffer on the stack and reach the packer in a
 * few writes: one callback per msgpack item costs more than the rest of the pack. The
 * encodings are the smallest ones, as msgpack-c's packer would choose. */
typedef struct out {
  msgpack_packer *pk;
  size_t n;
  unsigned char buf[2048];
} out_t;

static int out_flush(out_t *o) {
  if (o->n > 0 && o->pk->callback(o->pk->data, (const char *)o->buf, o->n) != 0) return -1;
  o->n = 0;
  return 0;
}

/* Leaves room for at least need bytes (need <= sizeof buf). */
static inline int out_room(out_t *o, size_t need) {
  return sizeof o->buf - o->n >= need ? 0 : out_flush(o);
}

static inline void put8(out_t *o, unsigned v) { o->buf[o->n++] = (unsigned char)v; }

static inline void put_be(out_t *o, unsigned tag, uint64_t v, int bytes) {
  o->buf[o->n++] = (unsigned char)tag;
  for (int i = bytes - 1; i >= 0; i--) o->buf[o->n++] = (unsigned char)(v >> (8 * i));
}

/* fix, 16 and 32-bit forms of a header: map and array (str has an 8-bit form too). */
static int out_head(out_t *o, unsigned fix, unsigned fixmax, unsigned tag16, uint32_t n) {
  if (out_room(o, 5) != 0) return -1;
  if (n <= fixmax)
    put8(o, fix | n);
  else if (n <= 0xFFFF)
    put_be(o, tag16, n, 2);
  else
    put_be(o, tag16 + 1, n, 4);
  return 0;
}

static int out_uint(out_t *o, uint64_t v) {
  if (out_room(o, 9) != 0) return -1;
  if (v < 0x80)
    put8(o, (unsigned)v);
  else if (v <= 0xFF)
    put_be(o, 0xCC, v, 1);
  else if (v <= 0xFFFF)
    put_be(o, 0xCD, v, 2);
  else if (v <= 0xFFFFFFFF)
    put_be(o, 0xCE, v, 4);
  else
    put_be(o, 0xCF, v, 8);
  return 0;
}

static int out_int(out_t *o, int64_t v) {
  if (v >= 0) return out_uint(o, (uint64_t)v);
  if (out_room(o, 9) != 0) return -1;
  if (v >= -32)
    put8(o, (unsigned)(v & 0xFF));
  else if (v >= INT8_MIN)
    put_be(o, 0xD0, (uint64_t)v, 1);
  else if (v >= INT16_MIN)
    put_be(o, 0xD1, (uint64_t)v, 2);
  else if (v >= INT32_MIN)
    put_be(o, 0xD2, (uint64_t)v, 4);
  else
    put_be(o, 0xD3, (uint64_t)v, 8);
  return 0;
}

static int out_str(out_t *o, const char *p, uint32_t n) {
  if (out_room(o, 5) != 0) return -1;
  if (n < 32)
    put8(o, 0xA0 | n);
  else if (n <= 0xFF)
    put_be(o, 0xD9, n, 1);
  else if (n <= 0xFFFF)
    put_be(o, 0xDA, n, 2);
  else
    put_be(o, 0xDB, n, 4);
  if (n > sizeof o->buf - o->n) {
    /* Text longer than the buffer (only location and title can be) skips it. */
    if (out_flush(o) != 0) return -1;
    if (n > sizeof o->buf) return o->pk->callback(o->pk->data, p, n);
  }
  if (n > 0) memcpy(o->buf + o->n, p, n);
  o->n += n;
  return 0;
}

static inline int out_key(out_t *o, int key) {
  return out_str(o, key_names[key].p, key_names[key].n);
}

static inline int out_field(out_t *o, int key, pl_str_t s) {
  return out_key(o, key) != 0 ? -1 : out_str(o, s.p, s.n);
}

static int out_list(out_t *o, int key, const pl_str_t *items, uint32_t count) {
  if (out_key(o, key) != 0 || out_head(o, 0x90, 15, 0xDC, count) != 0) return -1;
  for (uint32_t i = 0; i < count; i++)
    if (out_str(o, items[i].p, items[i].n) != 0) return -1;
  return 0;
}

/* pl_date_format goes through snprintf, which alone costs as much as the whole pack. */
static void format_date(uint32_t day, char out[PL_DATE_LEN]) {
  int y, m, d;
  pl_date_to_ymd(day, &y, &m, &d);
  out[0] = (char)('0' + y / 1000);
  out[1] = (char)('0' + y / 100 % 10);
  out[2] = (char)('0' + y / 10 % 10);
  out[3] = (char)('0' + y % 10);
  out[4] = '-';
  out[5] = (char)('0' + m / 10);
  out[6] = (char)('0' + m % 10);
  out[7] = '-';
  out[8] = (char)('0' + d / 10);
  out[9] = (char)('0' + d % 10);
}

static inline int is_other(const msgpack_object_kv *kv) {
  return kv->key.type != MSGPACK_OBJECT_STR ||
         key_of(kv->key.via.str.ptr, kv->key.via.str.size) == K_OTHER;
}

#define OUT(expr)                      \
  do {                                 \
    if ((expr) != 0) return PL_ENOMEM; \
  } while (0)

int pl_record_pack(msgpack_packer *pk, const pl_record_t *rec, const msgpack_object *obj,
                   const pl_record_meta_t *meta) {
  /* rec has no room for location and title, and cannot tell an empty list from an absent
   * one: both come from obj, which is also where the other keys are counted. */
  const msgpack_object *location = NULL, *title = NULL;
  int has_counterparts = rec->ncounterparts > 0, has_topics = rec->ntopics > 0;
  uint32_t others = 0, nobj = obj->type == MSGPACK_OBJECT_MAP ? obj->via.map.size : 0;
  for (uint32_t i = 0; i < nobj; i++) {
    const msgpack_object_kv *kv = &obj->via.map.ptr[i];
    if (is_other(kv)) {
      others++;
      continue;
    }
    if (kv->val.type == MSGPACK_OBJECT_NIL) continue;
    switch (key_of(kv->key.via.str.ptr, kv->key.via.str.size)) {
      case K_LOCATION:
        if (kv->val.type == MSGPACK_OBJECT_STR) location = &kv->val;
        break;
      case K_TITLE:
        if (kv->val.type == MSGPACK_OBJECT_STR) title = &kv->val;
        break;
      case K_COUNTERPARTS:
        has_counterparts = 1;
        break;
      case K_TOPICS:
        has_topics = 1;
        break;
      default:
        break;
    }
  }
  uint32_t n = 2 + (rec->id_type != PL_ID_NONE) + (uint32_t)has_counterparts + (rec->kind.n > 0) +
               (rec->format.n > 0) + (location != NULL) + (rec->country.n > 0) + (title != NULL) +
               (rec->has_participants != 0) + (uint32_t)has_topics + others;

  out_t o;
  o.pk = pk;
  o.n = 0;
  put8(&o, 0x90 | STORED_FIELDS);
  put8(&o, STORED_VERSION);
  OUT(out_str(&o, meta->tag.p, meta->tag.n));
  OUT(out_int(&o, meta->time_sec));
  OUT(out_uint(&o, meta->time_nsec));
  OUT(out_uint(&o, meta->received_ms));
  OUT(out_head(&o, 0x80, 15, 0xDE, n));

  char date[PL_DATE_LEN];
  format_date(rec->day, date);
  OUT(out_field(&o, K_INSTITUTION, rec->institution));
  OUT(out_field(&o, K_DATE, pl_str(date, PL_DATE_LEN)));
  if (rec->id_type == PL_ID_UINT) OUT(out_key(&o, K_ID) || out_uint(&o, rec->id_uint));
  if (rec->id_type == PL_ID_STR) OUT(out_field(&o, K_ID, rec->id_str));
  if (has_counterparts) OUT(out_list(&o, K_COUNTERPARTS, rec->counterparts, rec->ncounterparts));
  if (rec->kind.n > 0) OUT(out_field(&o, K_KIND, rec->kind));
  if (rec->format.n > 0) OUT(out_field(&o, K_FORMAT, rec->format));
  if (location != NULL)
    OUT(out_field(&o, K_LOCATION, pl_str(location->via.str.ptr, location->via.str.size)));
  if (rec->country.n > 0) OUT(out_field(&o, K_COUNTRY, rec->country));
  if (title != NULL) OUT(out_field(&o, K_TITLE, pl_str(title->via.str.ptr, title->via.str.size)));
  if (rec->has_participants) OUT(out_key(&o, K_PARTICIPANTS) || out_uint(&o, rec->participants));
  if (has_topics) OUT(out_list(&o, K_TOPICS, rec->topics, rec->ntopics));
  OUT(out_flush(&o));
  for (uint32_t i = 0; i < nobj && others > 0; i++) {
    const msgpack_object_kv *kv = &obj->via.map.ptr[i];
    if (!is_other(kv)) continue;
    OUT(msgpack_pack_object(pk, kv->key));
    OUT(msgpack_pack_object(pk, kv->val));
    others--;
  }
  return 0;
}

int pl_record_unpack_stored(const char *buf, size_t len, msgpack_unpacked *u,
                            pl_record_meta_t *meta, const msgpack_object **map, pl_record_t *rec) {
  size_t off = 0;
  if (msgpack_unpack_next(u, buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
    return PL_ECORRUPT;
  const msgpack_object *o = &u->data;
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != STORED_FIELDS) return PL_ECORRUPT;
  const msgpack_object *a = o->via.array.ptr;
  if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 != STORED_VERSION)
    return PL_ECORRUPT;
  if (a[1].type != MSGPACK_OBJECT_STR) return PL_ECORRUPT;
  int64_t time_sec;
  if (a[2].type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
    time_sec = a[2].via.i64;
  else if (a[2].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[2].via.u64 <= INT64_MAX)
    time_sec = (int64_t)a[2].via.u64;
  else
    return PL_ECORRUPT;
  if (a[3].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[3].via.u64 > UINT32_MAX) return PL_ECORRUPT;
  if (a[4].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[5].type != MSGPACK_OBJECT_MAP)
    return PL_ECORRUPT;
  if (rec != NULL && pl_record_parse(rec, &a[5], time_sec, NULL, 0) != 0) return PL_ECORRUPT;
  if (meta != NULL) {
    meta->tag = pl_str(a[1].via.str.ptr, a[1].via.str.size);
    meta->time_sec = time_sec;
    meta->time_nsec = (uint32_t)a[3].via.u64;
    meta->received_ms = a[4].via.u64;
  }
  if (map != NULL) *map = &a[5];
  return 0;
}
