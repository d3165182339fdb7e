/* Record rules, both sides of every bound, the stored form and its round trip. Records are
 * written in a small literal syntax (see lit_value) and packed with msgpack-c's packer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "parley/date.h"
#include "parley/error.h"
#include "parley/record.h"

/* ---- literals ----
 * {'k': 'str', 'n': 12, 'neg': -1, 'f': 1.5, 'f32': 1.5f, 'x': nil, true, false,
 *  'b': b'\x00\x01', 'e': ext(5, 'abc'), 'l': [1, 'a'], 1: 'non-string key'}
 * Strings take \xNN, \' and \\ escapes; integers pack as the smallest msgpack type. */

static const char *lit;

static void lit_ws(void) {
  while (*lit == ' ' || *lit == '\n' || *lit == ',' || *lit == ':') lit++;
}

static size_t lit_string(char *out) {
  size_t n = 0;
  assert_int_equal(*lit, '\'');
  lit++;
  while (*lit != '\'') {
    assert_true(*lit != '\0');
    if (*lit == '\\' && lit[1] == 'x') {
      char hex[3] = {lit[2], lit[3], 0};
      out[n++] = (char)strtoul(hex, NULL, 16);
      lit += 4;
    } else if (*lit == '\\') {
      out[n++] = lit[1];
      lit += 2;
    } else {
      out[n++] = *lit++;
    }
  }
  lit++;
  return n;
}

static void lit_value(msgpack_packer *pk);

/* A container is packed into its own buffer first: its header needs the item count. */
static void lit_container(msgpack_packer *pk, char close, int is_map) {
  msgpack_sbuffer sb;
  msgpack_packer sub;
  uint32_t count = 0;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&sub, &sb, msgpack_sbuffer_write);
  lit++;
  for (lit_ws(); *lit != close; lit_ws()) {
    lit_value(&sub);
    if (is_map) {
      lit_ws();
      lit_value(&sub);
    }
    count++;
  }
  lit++;
  if (is_map)
    msgpack_pack_map(pk, count);
  else
    msgpack_pack_array(pk, count);
  if (sb.size > 0) pk->callback(pk->data, sb.data, sb.size);
  msgpack_sbuffer_destroy(&sb);
}

static void lit_value(msgpack_packer *pk) {
  static char s[1 << 18];
  lit_ws();
  if (*lit == '{') {
    lit_container(pk, '}', 1);
  } else if (*lit == '[') {
    lit_container(pk, ']', 0);
  } else if (*lit == '\'') {
    size_t n = lit_string(s);
    msgpack_pack_str_with_body(pk, s, n);
  } else if (*lit == 'b' && lit[1] == '\'') {
    lit++;
    size_t n = lit_string(s);
    msgpack_pack_bin_with_body(pk, s, n);
  } else if (strncmp(lit, "ext(", 4) == 0) {
    char *end;
    long type = strtol(lit + 4, &end, 10);
    lit = end;
    lit_ws();
    size_t n = lit_string(s);
    assert_int_equal(*lit, ')');
    lit++;
    msgpack_pack_ext_with_body(pk, s, n, (int8_t)type);
  } else if (strncmp(lit, "nil", 3) == 0) {
    lit += 3;
    msgpack_pack_nil(pk);
  } else if (strncmp(lit, "true", 4) == 0) {
    lit += 4;
    msgpack_pack_true(pk);
  } else if (strncmp(lit, "false", 5) == 0) {
    lit += 5;
    msgpack_pack_false(pk);
  } else {
    size_t len = strspn(lit, "-0123456789.");
    char *end;
    assert_true(len > 0);
    if (memchr(lit, '.', len) != NULL) {
      double d = strtod(lit, &end);
      if (*end == 'f') {
        msgpack_pack_float(pk, (float)d);
        end++;
      } else {
        msgpack_pack_double(pk, d);
      }
    } else if (*lit == '-') {
      msgpack_pack_int64(pk, strtoll(lit, &end, 10));
    } else {
      msgpack_pack_uint64(pk, strtoull(lit, &end, 10));
    }
    lit = end;
  }
}

/* Each literal lives in a slot (its bytes and the unpacked object pointing into them) until
 * the slot comes round again, so a test can hold a few at once. */
#define SLOTS 8
static struct slot {
  msgpack_sbuffer sb;
  msgpack_unpacked u;
} slots[SLOTS];
static unsigned next_slot;

static struct slot *vbuild(const char *fmt, va_list ap) {
  static char text[1 << 18];
  struct slot *sl = &slots[next_slot++ % SLOTS];
  msgpack_packer pk;
  int n = vsnprintf(text, sizeof text, fmt, ap);
  assert_true(n > 0 && (size_t)n < sizeof text);
  msgpack_sbuffer_clear(&sl->sb);
  msgpack_packer_init(&pk, &sl->sb, msgpack_sbuffer_write);
  lit = text;
  lit_value(&pk);
  lit_ws();
  assert_int_equal(*lit, '\0');
  size_t off = 0;
  assert_int_equal(msgpack_unpack_next(&sl->u, sl->sb.data, sl->sb.size, &off),
                   MSGPACK_UNPACK_SUCCESS);
  assert_int_equal(off, sl->sb.size);
  return sl;
}

__attribute__((format(printf, 1, 2))) static struct slot *build(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  struct slot *sl = vbuild(fmt, ap);
  va_end(ap);
  return sl;
}

static int setup(void **state) {
  (void)state;
  for (int i = 0; i < SLOTS; i++) {
    msgpack_sbuffer_init(&slots[i].sb);
    msgpack_unpacked_init(&slots[i].u);
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  for (int i = 0; i < SLOTS; i++) {
    msgpack_sbuffer_destroy(&slots[i].sb);
    msgpack_unpacked_destroy(&slots[i].u);
  }
  return 0;
}

/* ---- helpers ---- */

#define ENTRY 1700000000 /* 2023-11-14T22:13:20Z */

static pl_record_t rec;
static char why[256];
static const msgpack_object *last_obj;

__attribute__((format(printf, 2, 3))) static int parse_at(int64_t entry, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  struct slot *sl = vbuild(fmt, ap);
  va_end(ap);
  last_obj = &sl->u.data;
  memset(why, 0, sizeof why);
  int rc = pl_record_parse(&rec, last_obj, entry, why, sizeof why);
  if (rc != 0 && rc != PL_EREJECT) fail_msg("pl_record_parse returned %d", rc);
  return rc;
}

#define ACCEPTS_AT(entry, ...)                   \
  do {                                           \
    int rc_ = parse_at(entry, __VA_ARGS__);      \
    if (rc_ != 0) fail_msg("rejected: %s", why); \
  } while (0)
#define ACCEPTS(...) ACCEPTS_AT(ENTRY, __VA_ARGS__)
#define REJECTS_AT(entry, reason, ...)                          \
  do {                                                          \
    assert_int_equal(parse_at(entry, __VA_ARGS__), PL_EREJECT); \
    assert_string_equal(why, reason);                           \
  } while (0)
#define REJECTS(reason, ...) REJECTS_AT(ENTRY, reason, __VA_ARGS__)

/* NUL-terminated copy of s, for assert_string_equal; a few at once. */
static const char *cstr(pl_str_t s) {
  static char bufs[4][2048];
  static unsigned k;
  char *b = bufs[k++ % 4];
  assert_true(s.n < sizeof bufs[0]);
  if (s.n > 0) memcpy(b, s.p, s.n);
  b[s.n] = '\0';
  return b;
}
#define STR_EQ(s, lit) assert_string_equal(cstr(s), lit)

/* n copies of c. */
static const char *rep(char c, size_t n) {
  static char bufs[4][2048];
  static unsigned k;
  char *b = bufs[k++ % 4];
  assert_true(n < sizeof bufs[0]);
  memset(b, c, n);
  b[n] = '\0';
  return b;
}

/* A literal list of n strings: ['p0', 'p1', ...]. */
static const char *list(const char *prefix, int n) {
  static char bufs[2][8192];
  static unsigned k;
  char *b = bufs[k++ % 2];
  size_t o = 0;
  b[o++] = '[';
  for (int i = 0; i < n; i++)
    o += (size_t)snprintf(b + o, sizeof bufs[0] - o, "%s'%s%d'", i ? ", " : "", prefix, i);
  snprintf(b + o, sizeof bufs[0] - o, "]");
  return b;
}

static uint32_t D(const char *s) {
  uint32_t d = 0;
  assert_int_equal(pl_date_parse(s, strlen(s), &d), 0);
  return d;
}

/* Unix time of the start of a day number; day 25,567 is 1970-01-01. */
static int64_t unix_of(uint32_t day) { return ((int64_t)day - 25567) * 86400; }

#define INST "'institution': 'Brookings'"

/* ---- UTF-8 ---- */

static int valid(const char *s) { return pl_utf8_valid(s, strlen(s)); }

static void test_utf8_cases(void **state) {
  (void)state;
  assert_true(pl_utf8_valid("", 0));
  assert_true(pl_utf8_valid(NULL, 0));
  assert_true(valid("plain ASCII longer than one eight-byte word"));
  assert_true(valid("\x7F"));
  assert_true(valid("\xC2\x80"));         /* U+0080 */
  assert_true(valid("\xDF\xBF"));         /* U+07FF */
  assert_true(valid("\xE0\xA0\x80"));     /* U+0800 */
  assert_true(valid("\xED\x9F\xBF"));     /* U+D7FF */
  assert_true(valid("\xEE\x80\x80"));     /* U+E000 */
  assert_true(valid("\xEF\xBF\xBF"));     /* U+FFFF */
  assert_true(valid("\xF0\x90\x80\x80")); /* U+10000 */
  assert_true(valid("\xF4\x8F\xBF\xBF")); /* U+10FFFF */
  assert_true(valid("北京大学 Peking University 国际关系学院"));
  assert_true(pl_utf8_valid("a\0b", 3)); /* NUL is a valid code point */

  assert_false(valid("\xC0\x80"));         /* overlong NUL */
  assert_false(valid("\xC1\xBF"));         /* overlong */
  assert_false(valid("\xE0\x80\x80"));     /* overlong */
  assert_false(valid("\xE0\x9F\xBF"));     /* overlong */
  assert_false(valid("\xF0\x80\x80\x80")); /* overlong */
  assert_false(valid("\xF0\x8F\xBF\xBF")); /* overlong */
  assert_false(valid("\xED\xA0\x80"));     /* U+D800 */
  assert_false(valid("\xED\xBF\xBF"));     /* U+DFFF */
  assert_false(valid("\xF4\x90\x80\x80")); /* U+110000 */
  assert_false(valid("\xF5\x80\x80\x80"));
  assert_false(valid("\xFF"));
  assert_false(valid("\x80"));         /* lone continuation */
  assert_false(valid("\xC3"));         /* truncated */
  assert_false(valid("\xE2\x82"));     /* truncated */
  assert_false(valid("\xF0\x9F\x98")); /* truncated */
  assert_false(valid("\xC3\x28"));     /* bad continuation */
  assert_false(valid("\xE2\x28\xA1"));
  assert_false(valid("\xE2\x82\x28"));
  assert_false(valid("\xF0\x9F\x28\x80"));
  assert_false(valid("\xF0\x9F\x98\x28"));
  /* the length ends a sequence even when the bytes after it would complete it */
  assert_true(pl_utf8_valid("\xE2\x82\xAC", 3));
  assert_false(pl_utf8_valid("\xC3\xA9", 1));
  assert_false(pl_utf8_valid("\xE2\x82\xAC", 2));
  assert_false(pl_utf8_valid("\xF0\x9F\x98\x80", 3));
  assert_false(pl_utf8_valid("abcdefgh\xE2\x82\xAC", 10));
  assert_false(valid("abcdefgh\xE2\x82"));            /* truncated after a whole word */
  assert_false(valid("abcdefghijklmnop\x80qrstuvw")); /* found past the fast path */
}

/* The same sequences at every offset around the 8-byte words, so the word loop and the
 * byte loop both meet them. */
static void test_utf8_offsets(void **state) {
  static const struct {
    const char *s;
    int ok;
  } seqs[] = {{"\xE4\xB8\xAD", 1}, {"\xF0\x9F\x98\x80", 1}, {"\xC2\xA9", 1}, {"\xED\xA0\x80", 0},
              {"\xC0\x80", 0},     {"\xF4\x90\x80\x80", 0}, {"\xE2\x82", 0}, {"\x80", 0}};
  char buf[64];
  (void)state;
  for (size_t k = 0; k < sizeof seqs / sizeof seqs[0]; k++)
    for (size_t pre = 0; pre < 17; pre++)
      for (size_t post = 0; post < 17; post++) {
        size_t n = strlen(seqs[k].s);
        memset(buf, 'a', pre);
        memcpy(buf + pre, seqs[k].s, n);
        memset(buf + pre + n, 'z', post);
        assert_int_equal(pl_utf8_valid(buf, pre + n + post), seqs[k].ok);
      }
}

/* Reference decoder written from the definition, compared on every 1..3 byte string and
 * on 4 byte strings over the interesting byte values. */
static int ref_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i], len, cp;
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return 0;
    }
    if (i + len > n) return 0;
    for (unsigned k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    i += len;
  }
  return 1;
}

static void test_utf8_reference(void **state) {
  unsigned char b[4];
  (void)state;
  for (unsigned x = 0; x < 256; x++) {
    b[0] = (unsigned char)x;
    assert_int_equal(pl_utf8_valid((char *)b, 1), ref_valid(b, 1));
    for (unsigned y = 0; y < 256; y++) {
      b[1] = (unsigned char)y;
      assert_int_equal(pl_utf8_valid((char *)b, 2), ref_valid(b, 2));
      for (unsigned z = 0; z < 256; z++) {
        b[2] = (unsigned char)z;
        if (pl_utf8_valid((char *)b, 3) != ref_valid(b, 3)) fail_msg("%02X %02X %02X", x, y, z);
      }
    }
  }
  static const unsigned char edge[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90,
                                       0x9F, 0xA0, 0xBF, 0xC0, 0xF4, 0xFF};
  for (unsigned x = 0xC0; x < 256; x++)
    for (unsigned y = 0; y < 256; y++)
      for (size_t z = 0; z < sizeof edge; z++)
        for (size_t w = 0; w < sizeof edge; w++) {
          b[0] = (unsigned char)x, b[1] = (unsigned char)y, b[2] = edge[z], b[3] = edge[w];
          if (pl_utf8_valid((char *)b, 4) != ref_valid(b, 4))
            fail_msg("%02X %02X %02X %02X", b[0], b[1], b[2], b[3]);
        }
}

/* ---- map shape ---- */

static void test_not_a_map(void **state) {
  (void)state;
  REJECTS("record is not a map", "['institution', 'Brookings']");
  REJECTS("record is not a map", "'Brookings'");
  REJECTS("record is not a map", "nil");
  REJECTS("institution is missing", "{}");
}

static void test_keys(void **state) {
  (void)state;
  REJECTS("record has a non-string key", "{" INST ", 1: 'x'}");
  REJECTS("record has a non-string key", "{b'institution': 'Brookings'}");
  REJECTS("record has a non-string key", "{nil: 1, " INST "}");
  REJECTS("duplicate key \"institution\"", "{" INST ", 'institution': 'RAND'}");
  REJECTS("duplicate key \"id\"", "{" INST ", 'id': nil, 'id': 1}");
  REJECTS("duplicate key \"topics\"", "{" INST ", 'topics': ['a'], 'kind': 'x', 'topics': nil}");
  /* unknown keys are not ours to judge, repeated or not */
  ACCEPTS("{" INST ", 'note': 1, 'note': 2}");
  /* keys are matched exactly: case and prefixes are other keys */
  ACCEPTS("{" INST ", 'Institution': 5, 'dates': 1, 'i': 2, 'format ': 3, 'Kind': 4}");
  assert_int_equal(rec.kind.n, 0);
  assert_int_equal(rec.format.n, 0);
}

/* Fields are checked in map order; the first broken rule is the reason. */
static void test_first_rule_wins(void **state) {
  (void)state;
  REJECTS("kind is empty", "{'kind': '', 'institution': ''}");
  REJECTS("institution is empty", "{'institution': '', 'kind': ''}");
  REJECTS("institution must be a string", "{'institution': 1, 1: 2}");
  REJECTS("record has a non-string key", "{1: 2, 'institution': 1}");
  REJECTS("participants must be an unsigned integer", "{'participants': -1}");
  /* a missing institution is only known at the end */
  REJECTS("institution is missing", "{'kind': 'visit'}");
}

/* ---- institution ---- */

static void test_institution(void **state) {
  (void)state;
  ACCEPTS("{'institution': 'Brookings'}");
  STR_EQ(rec.institution, "Brookings");
  ACCEPTS("{'institution': '%s'}", rep('a', 256));
  assert_int_equal(rec.institution.n, 256);
  REJECTS("institution is longer than 256 bytes", "{'institution': '%s'}", rep('a', 257));
  /* the bound is on the trimmed bytes */
  ACCEPTS("{'institution': ' \\x09\\x0A%s\\x0D\\x0B\\x0C '}", rep('a', 256));
  assert_int_equal(rec.institution.n, 256);
  assert_int_equal(rec.institution.p[0], 'a');
  ACCEPTS("{'institution': '  China-U.S. Green Fund\\x09\\x0A'}");
  STR_EQ(rec.institution, "China-U.S. Green Fund");
  ACCEPTS("{'institution': 'a'}");
  ACCEPTS("{'institution': ' inner  spaces stay '}");
  STR_EQ(rec.institution, "inner  spaces stay");
  REJECTS("institution is empty", "{'institution': ''}");
  REJECTS("institution is empty", "{'institution': ' \\x09\\x0A\\x0B\\x0C\\x0D '}");
  REJECTS("institution is missing", "{'kind': 'visit'}");
  REJECTS("institution is missing", "{'institution': nil}");
  REJECTS("institution must be a string", "{'institution': 42}");
  REJECTS("institution must be a string", "{'institution': b'Brookings'}");
  REJECTS("institution must be a string", "{'institution': ['Brookings']}");
  /* 85 three-byte characters and one byte: 256 bytes; one more byte is 257 */
  char zh[300] = "";
  for (int i = 0; i < 85; i++) strcat(zh, "中");
  ACCEPTS("{'institution': '%sa'}", zh);
  assert_int_equal(rec.institution.n, 256);
  REJECTS("institution is longer than 256 bytes", "{'institution': '%sab'}", zh);
  /* non-ASCII whitespace is content, not trimmed */
  ACCEPTS("{'institution': '\\xC2\\xA0x'}");
  assert_int_equal(rec.institution.n, 3);
}

static void test_institution_utf8(void **state) {
  (void)state;
  ACCEPTS("{'institution': '清华大学 Tsinghua'}");
  STR_EQ(rec.institution, "清华大学 Tsinghua");
  ACCEPTS("{'institution': 'Fundação Getulio Vargas \\xF0\\x9F\\x8C\\x8E'}");
  REJECTS("institution is not valid UTF-8", "{'institution': 'a\\xC0\\x80'}");
  REJECTS("institution is not valid UTF-8", "{'institution': 'a\\xED\\xA0\\x80'}");
  REJECTS("institution is not valid UTF-8", "{'institution': 'a\\xF4\\x90\\x80\\x80'}");
  REJECTS("institution is not valid UTF-8", "{'institution': 'abc\\xE2\\x82'}");
  REJECTS("institution is not valid UTF-8", "{'institution': '\\xFF\\xFE'}");
  REJECTS("institution contains a NUL byte", "{'institution': 'a\\x00b'}");
  REJECTS("institution contains a NUL byte", "{'institution': 'abcdefgh\\x00ijklmnop'}");
  REJECTS("institution contains a NUL byte", "{'institution': '\\x00'}");
}

/* ---- date ---- */

static void test_date(void **state) {
  (void)state;
  ACCEPTS("{" INST ", 'date': '2023-11-05'}");
  assert_int_equal(rec.day, D("2023-11-05"));
  ACCEPTS("{" INST ", 'date': '2024-02-29'}");
  assert_int_equal(rec.day, D("2024-02-29"));
  ACCEPTS("{" INST ", 'date': '2000-02-29'}");
  ACCEPTS("{" INST ", 'date': '1900-01-01'}");
  assert_int_equal(rec.day, 0);
  ACCEPTS("{" INST ", 'date': '2199-12-31'}");
  assert_int_equal(rec.day, PL_DATE_LAST_DAY);
  REJECTS("date 1899-12-31 is outside 1900..2199", "{" INST ", 'date': '1899-12-31'}");
  REJECTS("date 2200-01-01 is outside 1900..2199", "{" INST ", 'date': '2200-01-01'}");
  REJECTS("date 2023-02-29 is not a calendar date", "{" INST ", 'date': '2023-02-29'}");
  REJECTS("date 2023-02-30 is not a calendar date", "{" INST ", 'date': '2023-02-30'}");
  REJECTS("date 1900-02-29 is not a calendar date", "{" INST ", 'date': '1900-02-29'}");
  REJECTS("date 2023-13-01 is not a calendar date", "{" INST ", 'date': '2023-13-01'}");
  REJECTS("date 2023-04-00 is not a calendar date", "{" INST ", 'date': '2023-04-00'}");
  REJECTS("date 2023-04-31 is not a calendar date", "{" INST ", 'date': '2023-04-31'}");
  const char *bad[] = {"2023-4-01",  "2023/04/01",  "2023-04-01T10:00:00Z",
                       "",           "20230401",    "+023-04-01",
                       "2023-04-0a", "2023-04-01 ", "\\xFF023-04-01"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    REJECTS("date must be a string YYYY-MM-DD", "{" INST ", 'date': '%s'}", bad[i]);
  REJECTS("date must be a string YYYY-MM-DD", "{" INST ", 'date': 20230401}");
  REJECTS("date must be a string YYYY-MM-DD", "{" INST ", 'date': b'2023-04-01'}");
  REJECTS("date must be a string YYYY-MM-DD", "{" INST ", 'date': 1.5}");
}

static void test_date_from_entry(void **state) {
  (void)state;
  ACCEPTS("{" INST "}");
  assert_int_equal(rec.day, D("2023-11-14"));
  ACCEPTS("{" INST ", 'date': nil}");
  assert_int_equal(rec.day, D("2023-11-14"));
  /* the record's own date wins over the entry time */
  ACCEPTS_AT(-5000000000LL, "{" INST ", 'date': '2009-10-11'}");
  assert_int_equal(rec.day, D("2009-10-11"));

  const int64_t first = -2208988800LL;                 /* 1900-01-01T00:00:00Z */
  const int64_t after = unix_of(PL_DATE_LAST_DAY + 1); /* 2200-01-01T00:00:00Z */
  ACCEPTS_AT(first, "{" INST "}");
  assert_int_equal(rec.day, 0);
  ACCEPTS_AT(after - 1, "{" INST "}");
  assert_int_equal(rec.day, PL_DATE_LAST_DAY);
  ACCEPTS_AT(-1, "{" INST "}");
  assert_int_equal(rec.day, D("1969-12-31"));
  REJECTS_AT(first - 1, "date is absent and the entry time is outside 1900..2199", "{" INST "}");
  REJECTS_AT(after, "date is absent and the entry time is outside 1900..2199", "{" INST "}");
  REJECTS_AT(INT64_MIN, "date is absent and the entry time is outside 1900..2199",
             "{" INST ", 'date': nil}");
}

/* ---- id ---- */

static void test_id(void **state) {
  (void)state;
  ACCEPTS("{" INST "}");
  assert_int_equal(rec.id_type, PL_ID_NONE);
  ACCEPTS("{" INST ", 'id': nil}");
  assert_int_equal(rec.id_type, PL_ID_NONE);
  ACCEPTS("{" INST ", 'id': 't2-2009-10-11-hld'}");
  assert_int_equal(rec.id_type, PL_ID_STR);
  STR_EQ(rec.id_str, "t2-2009-10-11-hld");
  ACCEPTS("{" INST ", 'id': '%s'}", rep('i', 128));
  assert_int_equal(rec.id_str.n, 128);
  REJECTS("id is longer than 128 bytes", "{" INST ", 'id': '%s'}", rep('i', 129));
  ACCEPTS("{" INST ", 'id': ''}");
  assert_int_equal(rec.id_type, PL_ID_STR);
  assert_int_equal(rec.id_str.n, 0);
  ACCEPTS("{" INST ", 'id': 0}");
  assert_int_equal(rec.id_type, PL_ID_UINT);
  assert_int_equal(rec.id_uint, 0);
  ACCEPTS("{" INST ", 'id': 18446744073709551615}");
  assert_int_equal(rec.id_type, PL_ID_UINT);
  assert_true(rec.id_uint == UINT64_MAX);
  ACCEPTS("{" INST ", 'id': 4294967296}");
  assert_true(rec.id_uint == 4294967296ull);
  REJECTS("id must be a string or an unsigned integer", "{" INST ", 'id': -1}");
  REJECTS("id must be a string or an unsigned integer", "{" INST ", 'id': 1.0}");
  REJECTS("id must be a string or an unsigned integer", "{" INST ", 'id': 1.0f}");
  REJECTS("id must be a string or an unsigned integer", "{" INST ", 'id': true}");
  REJECTS("id must be a string or an unsigned integer", "{" INST ", 'id': b'x'}");
  REJECTS("id must be a string or an unsigned integer", "{" INST ", 'id': [1]}");
}

/* ---- counterparts ---- */

static void test_counterparts(void **state) {
  (void)state;
  ACCEPTS("{" INST ", 'counterparts': []}");
  assert_int_equal(rec.ncounterparts, 0);
  ACCEPTS("{" INST ", 'counterparts': nil}");
  assert_int_equal(rec.ncounterparts, 0);
  ACCEPTS("{" INST ", 'counterparts': ' China-U.S. Green Fund '}");
  assert_int_equal(rec.ncounterparts, 1);
  STR_EQ(rec.counterparts[0], "China-U.S. Green Fund");
  ACCEPTS("{" INST ", 'counterparts': %s}", list("c", 64));
  assert_int_equal(rec.ncounterparts, 64);
  STR_EQ(rec.counterparts[0], "c0");
  STR_EQ(rec.counterparts[63], "c63");
  REJECTS("counterparts has more than 64 items", "{" INST ", 'counterparts': %s}", list("c", 65));
  /* de-duplicated after trimming, first-seen order */
  ACCEPTS("{" INST ", 'counterparts': ['RAND', ' CSIS', 'RAND ', 'CSIS', 'Rand', 'CSIS']}");
  assert_int_equal(rec.ncounterparts, 3);
  STR_EQ(rec.counterparts[0], "RAND");
  STR_EQ(rec.counterparts[1], "CSIS");
  STR_EQ(rec.counterparts[2], "Rand");
  /* 64 copies of one name are 64 items received, one kept */
  char same[64 * 8 + 4] = "[";
  for (int i = 0; i < 64; i++) strcat(same, i ? ", 'RAND'" : "'RAND'");
  strcat(same, "]");
  ACCEPTS("{" INST ", 'counterparts': %s}", same);
  assert_int_equal(rec.ncounterparts, 1);
  /* each item follows the institution rules */
  ACCEPTS("{" INST ", 'counterparts': ['%s']}", rep('a', 256));
  assert_int_equal(rec.counterparts[0].n, 256);
  REJECTS("counterparts[1] is longer than 256 bytes", "{" INST ", 'counterparts': ['a', '%s']}",
          rep('a', 257));
  REJECTS("counterparts is longer than 256 bytes", "{" INST ", 'counterparts': '%s'}",
          rep('a', 257));
  REJECTS("counterparts[0] is empty", "{" INST ", 'counterparts': ['  ']}");
  REJECTS("counterparts is empty", "{" INST ", 'counterparts': ''}");
  REJECTS("counterparts[2] is not valid UTF-8",
          "{" INST ", 'counterparts': ['a', 'b', '\\xED\\xA0\\x80']}");
  REJECTS("counterparts[0] contains a NUL byte", "{" INST ", 'counterparts': ['a\\x00']}");
  REJECTS("counterparts[1] must be a string", "{" INST ", 'counterparts': ['a', nil]}");
  REJECTS("counterparts[0] must be a string", "{" INST ", 'counterparts': [['a']]}");
  REJECTS("counterparts must be an array of strings or a string", "{" INST ", 'counterparts': 5}");
  REJECTS("counterparts must be an array of strings or a string",
          "{" INST ", 'counterparts': {'a': 1}}");
}

/* ---- kind, format, country, location, title ---- */

static void test_kind(void **state) {
  (void)state;
  ACCEPTS("{" INST ", 'kind': 'book_launch'}");
  STR_EQ(rec.kind, "book_launch");
  ACCEPTS("{" INST ", 'kind': nil}");
  assert_int_equal(rec.kind.n, 0);
  assert_non_null(rec.kind.p); /* absent strings are "", safe to memcpy */
  ACCEPTS("{" INST ", 'kind': '%s'}", rep('k', 64));
  assert_int_equal(rec.kind.n, 64);
  REJECTS("kind is longer than 64 bytes", "{" INST ", 'kind': '%s'}", rep('k', 65));
  REJECTS("kind is empty", "{" INST ", 'kind': ''}");
  REJECTS("kind is not valid UTF-8", "{" INST ", 'kind': '\\xC0\\x80'}");
  REJECTS("kind contains a NUL byte", "{" INST ", 'kind': 'vis\\x00it'}");
  REJECTS("kind must be a string", "{" INST ", 'kind': 3}");
  ACCEPTS("{" INST ", 'kind': '座谈会'}");
}

#define NOT_ONE_OF "\" is not one of in_person, virtual, hybrid"

static void test_format(void **state) {
  (void)state;
  ACCEPTS("{" INST ", 'format': 'in_person'}");
  STR_EQ(rec.format, "in_person");
  ACCEPTS("{" INST ", 'format': 'virtual'}");
  STR_EQ(rec.format, "virtual");
  ACCEPTS("{" INST ", 'format': 'hybrid'}");
  STR_EQ(rec.format, "hybrid");
  ACCEPTS("{" INST ", 'format': nil}");
  assert_int_equal(rec.format.n, 0);
  REJECTS("format \"online" NOT_ONE_OF, "{" INST ", 'format': 'online'}");
  REJECTS("format \"In_Person" NOT_ONE_OF, "{" INST ", 'format': 'In_Person'}");
  REJECTS("format \"" NOT_ONE_OF, "{" INST ", 'format': ''}");
  REJECTS("format \"hybrid\\x00" NOT_ONE_OF, "{" INST ", 'format': 'hybrid\\x00'}");
  /* binary bytes, quotes and newlines never reach the reason raw */
  REJECTS("format \"\\xFF\\x0Aa\\x22b\\x5C" NOT_ONE_OF,
          "{" INST ", 'format': '\\xFF\\x0Aa\"b\\\\'}");
  REJECTS("format \"\\xE7\\xBA\\xBF\\xE4\\xB8\\x8A" NOT_ONE_OF, "{" INST ", 'format': '线上'}");
  /* long values are cut at 32 bytes */
  REJECTS("format \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" NOT_ONE_OF, "{" INST ", 'format': '%s'}",
          rep('x', 32));
  REJECTS("format \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..." NOT_ONE_OF, "{" INST ", 'format': '%s'}",
          rep('x', 33));
  REJECTS("format \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..." NOT_ONE_OF, "{" INST ", 'format': '%s'}",
          rep('x', 1000));
  REJECTS("format must be a string", "{" INST ", 'format': 1}");
}

static void test_country_location_title(void **state) {
  (void)state;
  ACCEPTS("{" INST ", 'country': 'CN'}");
  STR_EQ(rec.country, "CN");
  ACCEPTS("{" INST ", 'country': '%s'}", rep('c', 64));
  assert_int_equal(rec.country.n, 64);
  REJECTS("country is longer than 64 bytes", "{" INST ", 'country': '%s'}", rep('c', 65));
  REJECTS("country is empty", "{" INST ", 'country': ''}");
  REJECTS("country is not valid UTF-8", "{" INST ", 'country': 'U\\x80S'}");
  REJECTS("country must be a string", "{" INST ", 'country': 86}");
  ACCEPTS("{" INST ", 'country': nil}");
  assert_int_equal(rec.country.n, 0);

  ACCEPTS("{" INST ", 'location': 'Washington, D.C.', 'title': '%s'}", rep('t', 2000));
  ACCEPTS("{" INST ", 'location': '', 'title': ''}");
  ACCEPTS("{" INST ", 'location': nil, 'title': nil}");
  ACCEPTS("{" INST ", 'title': 'line one\\x0Aline\\x00two'}"); /* free text */
  REJECTS("location must be a string", "{" INST ", 'location': ['Beijing']}");
  REJECTS("title must be a string", "{" INST ", 'title': 1}");
  REJECTS("location is not valid UTF-8", "{" INST ", 'location': 'Bei\\xC1\\x81jing'}");
  REJECTS("title is not valid UTF-8", "{" INST ", 'title': '%s\\xF0\\x9F'}", rep('t', 100));
}

/* ---- participants ---- */

static void test_participants(void **state) {
  (void)state;
  ACCEPTS("{" INST "}");
  assert_int_equal(rec.has_participants, 0);
  ACCEPTS("{" INST ", 'participants': nil}");
  assert_int_equal(rec.has_participants, 0);
  ACCEPTS("{" INST ", 'participants': 0}");
  assert_int_equal(rec.has_participants, 1);
  assert_int_equal(rec.participants, 0);
  ACCEPTS("{" INST ", 'participants': 1000000}");
  assert_int_equal(rec.participants, 1000000);
  REJECTS("participants is more than 1000000", "{" INST ", 'participants': 1000001}");
  REJECTS("participants is more than 1000000", "{" INST ", 'participants': 18446744073709551615}");
  REJECTS("participants is more than 1000000", "{" INST ", 'participants': 4294967296}");
  REJECTS("participants must be an unsigned integer", "{" INST ", 'participants': -1}");
  REJECTS("participants must be an unsigned integer", "{" INST ", 'participants': 20.0}");
  REJECTS("participants must be an unsigned integer", "{" INST ", 'participants': 20.0f}");
  REJECTS("participants must be an unsigned integer", "{" INST ", 'participants': '20'}");
}

/* ---- topics ---- */

static void test_topics(void **state) {
  (void)state;
  ACCEPTS("{" INST ", 'topics': []}");
  assert_int_equal(rec.ntopics, 0);
  ACCEPTS("{" INST ", 'topics': nil}");
  assert_int_equal(rec.ntopics, 0);
  ACCEPTS("{" INST ", 'topics': %s}", list("t", 32));
  assert_int_equal(rec.ntopics, 32);
  STR_EQ(rec.topics[31], "t31");
  REJECTS("topics has more than 32 items", "{" INST ", 'topics': %s}", list("t", 33));
  ACCEPTS("{" INST ", 'topics': ['%s']}", rep('t', 128));
  assert_int_equal(rec.topics[0].n, 128);
  REJECTS("topics[1] is longer than 128 bytes", "{" INST ", 'topics': ['a', '%s']}", rep('t', 129));
  REJECTS("topics[0] is empty", "{" INST ", 'topics': ['']}");
  REJECTS("topics[2] is not valid UTF-8", "{" INST ", 'topics': ['a', 'b', '\\xE0\\x80\\x80']}");
  REJECTS("topics[0] contains a NUL byte", "{" INST ", 'topics': ['\\x00']}");
  REJECTS("topics[0] must be a string", "{" INST ", 'topics': [7]}");
  REJECTS("topics must be an array of strings", "{" INST ", 'topics': 'data'}");
  REJECTS("topics must be an array of strings", "{" INST ", 'topics': {'data': 1}}");
  ACCEPTS("{" INST ", 'topics': ['data', 'semiconductors', 'data', 'Data', 'semiconductors']}");
  assert_int_equal(rec.ntopics, 3);
  STR_EQ(rec.topics[0], "data");
  STR_EQ(rec.topics[1], "semiconductors");
  STR_EQ(rec.topics[2], "Data");
  /* topics are not trimmed: ' data' is a different topic */
  ACCEPTS("{" INST ", 'topics': ['data', ' data']}");
  assert_int_equal(rec.ntopics, 2);
}

/* ---- reasons ---- */

static void test_reason_buffer(void **state) {
  char small[12];
  (void)state;
  struct slot *sl = build("{'institution': '%s'}", rep('a', 300));
  memset(small, 'Z', sizeof small);
  assert_int_equal(pl_record_parse(&rec, &sl->u.data, ENTRY, small, sizeof small), PL_EREJECT);
  assert_string_equal(small, "institution");
  assert_int_equal(pl_record_parse(&rec, &sl->u.data, ENTRY, small, 1), PL_EREJECT);
  assert_string_equal(small, "");
  assert_int_equal(pl_record_parse(&rec, &sl->u.data, ENTRY, NULL, 0), PL_EREJECT);
  /* a valid record leaves why alone */
  sl = build("{" INST "}");
  strcpy(small, "untouched");
  assert_int_equal(pl_record_parse(&rec, &sl->u.data, ENTRY, small, sizeof small), 0);
  assert_string_equal(small, "untouched");
}

/* ---- the sample's shapes ---- */

static void test_sample_records(void **state) {
  (void)state;
  ACCEPTS(
      "{'id': 't2-2009-10-11-hld', 'date': '2009-10-11', 'institution': 'China-U.S. "
      "Track II High-Level Dialogue', 'counterparts': [], 'kind': 'dialogue', 'format': "
      "'in_person', 'location': 'Beijing', 'country': 'CN', 'participants': 20, 'topics': "
      "['bilateral relations'], 'title': 'First China-U.S. Track II high-level dialogue, "
      "co-chaired by Tang Jiaxuan and Henry Kissinger'}");
  assert_int_equal(rec.day, D("2009-10-11"));
  STR_EQ(rec.institution, "China-U.S. Track II High-Level Dialogue");
  assert_int_equal(rec.id_type, PL_ID_STR);
  STR_EQ(rec.id_str, "t2-2009-10-11-hld");
  assert_int_equal(rec.ncounterparts, 0);
  STR_EQ(rec.kind, "dialogue");
  STR_EQ(rec.format, "in_person");
  STR_EQ(rec.country, "CN");
  assert_int_equal(rec.has_participants, 1);
  assert_int_equal(rec.participants, 20);
  assert_int_equal(rec.ntopics, 1);
  STR_EQ(rec.topics[0], "bilateral relations");

  ACCEPTS(
      "{'id': 't2-2019-03-digital', 'date': '2019-03-01', 'date_precision': 'month', "
      "'institution': 'National Committee on U.S.-China Relations', 'counterparts': "
      "['China-U.S. Green Fund'], 'kind': 'dialogue', 'format': 'in_person', 'country': "
      "'US', 'topics': ['digital economy'], 'title': 'Track II mechanism on the digital "
      "economy established'}");
  assert_int_equal(rec.day, D("2019-03-01"));
  assert_int_equal(rec.ncounterparts, 1);
  STR_EQ(rec.counterparts[0], "China-U.S. Green Fund");
  assert_int_equal(rec.has_participants, 0);

  ACCEPTS(
      "{'id': 't2-2023-02-14-fifth', 'date': '2023-02-14', 'institution': 'National "
      "Committee on U.S.-China Relations', 'counterparts': ['China-U.S. Green Fund'], "
      "'kind': 'dialogue', 'format': 'virtual', 'country': 'US', 'topics': ['data', "
      "'financial services', 'semiconductors', 'digital economy', 'green energy', "
      "'healthcare', 'food security'], 'title': 'Fifth Track II dialogue on the digital "
      "economy, second session', 'outcome': 'consensus'}");
  STR_EQ(rec.format, "virtual");
  assert_int_equal(rec.ntopics, 7);
  STR_EQ(rec.topics[6], "food security");
}

/* ---- stored form ---- */

static pl_record_meta_t meta_of(const char *tag, int64_t sec, uint32_t nsec, uint64_t ms) {
  pl_record_meta_t m = {pl_cstr(tag), sec, nsec, ms};
  return m;
}

/* Packs rec (just parsed from last_obj) into sb. */
static void pack_into(msgpack_sbuffer *sb, const pl_record_meta_t *m) {
  msgpack_packer pk;
  msgpack_sbuffer_clear(sb);
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  assert_int_equal(pl_record_pack(&pk, &rec, last_obj, m), 0);
}

#define assert_bytes(sb, expect)                                 \
  do {                                                           \
    assert_int_equal((sb)->size, (expect)->size);                \
    assert_memory_equal((sb)->data, (expect)->data, (sb)->size); \
  } while (0)

static void test_pack_exact(void **state) {
  msgpack_sbuffer sb;
  (void)state;
  msgpack_sbuffer_init(&sb);
  pl_record_meta_t m = meta_of("track2", 1700000000, 5, 1700000000123ull);

  /* known fields normalised and in a fixed order, nil fields dropped, the rest as sent */
  ACCEPTS(
      "{'note': {'k': [1, -2, 1.5, 2.5f, true, nil, b'\\x00\\xFF', ext(7, 'xy')]}, "
      "'topics': ['b', 'a', 'b'], 'participants': 12, 'title': 'T', 'country': 'US', "
      "'location': 'L', 'format': 'hybrid', 'kind': 'visit', "
      "'counterparts': ' RAND ', 'id': 99, 'date': nil, 'institution': ' Brookings\\x0A', "
      "'zz': 'last', 'empty': '', 'bytes': '\\xFF'}");
  pack_into(&sb, &m);
  struct slot *want = build(
      "[1, 'track2', 1700000000, 5, 1700000000123, {'institution': 'Brookings', 'date': "
      "'2023-11-14', 'id': 99, 'counterparts': ['RAND'], 'kind': 'visit', 'format': "
      "'hybrid', 'location': 'L', 'country': 'US', 'title': 'T', 'participants': 12, "
      "'topics': ['b', 'a'], 'note': {'k': [1, -2, 1.5, 2.5f, true, nil, b'\\x00\\xFF', "
      "ext(7, 'xy')]}, 'zz': 'last', 'empty': '', 'bytes': '\\xFF'}]");
  assert_bytes(&sb, &want->sb);

  /* the smallest record: institution and date only; empty lists stay empty lists */
  ACCEPTS(
      "{'institution': 'A', 'date': '2009-10-11', 'id': nil, 'kind': nil, "
      "'location': nil, 'counterparts': [], 'topics': []}");
  m = meta_of("", -1, 0, 0);
  pack_into(&sb, &m);
  want = build(
      "[1, '', -1, 0, 0, {'institution': 'A', 'date': '2009-10-11', 'counterparts': "
      "[], 'topics': []}]");
  assert_bytes(&sb, &want->sb);

  /* an empty string id is kept; a string id is not a number */
  ACCEPTS("{'institution': 'A', 'date': '2009-10-11', 'id': '', 'location': ''}");
  pack_into(&sb, &m);
  want = build(
      "[1, '', -1, 0, 0, {'institution': 'A', 'date': '2009-10-11', 'id': '', "
      "'location': ''}]");
  assert_bytes(&sb, &want->sb);
  msgpack_sbuffer_destroy(&sb);
}

/* n copies of c, for strings too long for rep(). */
static const char *big(char c, size_t n) {
  static char b[1 << 17];
  assert_true(n < sizeof b);
  memset(b, c, n);
  b[n] = '\0';
  return b;
}

/* Every size class of every msgpack item the packer writes itself, against msgpack-c. */
static void test_pack_encodings(void **state) {
  static const int64_t secs[] = {
      0,         1,  127, 128, 255,  256,  65535,  65536,  4294967295, 4294967296LL,
      INT64_MAX, -1, -32, -33, -128, -129, -32768, -32769, INT32_MIN,  (int64_t)INT32_MIN - 1,
      INT64_MIN};
  static const uint64_t uints[] = {0,     127,   128,        255,           256,
                                   65535, 65536, UINT32_MAX, 4294967296ull, UINT64_MAX};
  static const uint32_t lens[] = {1, 31, 32, 255, 256, 2040, 2048, 2049, 65535, 65536, 100000};
  static char tag[300];
  msgpack_sbuffer sb;
  struct slot *want;
  (void)state;
  msgpack_sbuffer_init(&sb);

  for (size_t i = 0; i < sizeof secs / sizeof secs[0]; i++) {
    /* parsed again each time: rec points into a literal's slot, and slots are reused */
    ACCEPTS("{'institution': 'A', 'date': '2000-01-01'}");
    pl_record_meta_t m = meta_of("t", secs[i], (uint32_t)uints[i % 8], uints[i % 10]);
    pack_into(&sb, &m);
    want = build("[1, 't', %lld, %llu, %llu, {'institution': 'A', 'date': '2000-01-01'}]",
                 (long long)secs[i], (unsigned long long)(uint32_t)uints[i % 8],
                 (unsigned long long)uints[i % 10]);
    assert_bytes(&sb, &want->sb);
  }
  pl_record_meta_t m = meta_of("t", 0, 0, 0);
  for (size_t i = 0; i < sizeof uints / sizeof uints[0]; i++) {
    ACCEPTS("{'institution': 'A', 'date': '2000-01-01', 'id': %llu}", (unsigned long long)uints[i]);
    pack_into(&sb, &m);
    want = build("[1, 't', 0, 0, 0, {'institution': 'A', 'date': '2000-01-01', 'id': %llu}]",
                 (unsigned long long)uints[i]);
    assert_bytes(&sb, &want->sb);
  }
  /* strings of every header size, and past the packer's own buffer */
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    uint32_t name = lens[i] > 256 ? 256 : lens[i];
    snprintf(tag, sizeof tag, "%s", rep('g', lens[i] > 299 ? 299 : lens[i]));
    m = meta_of(tag, 1, 2, 3);
    ACCEPTS("{'title': '%s', 'institution': '%s', 'date': '2000-01-01', 'x': 1}", big('t', lens[i]),
            rep('a', name));
    pack_into(&sb, &m);
    want = build(
        "[1, '%s', 1, 2, 3, {'institution': '%s', 'date': '2000-01-01', 'title': '%s', "
        "'x': 1}]",
        tag, rep('a', name), big('t', lens[i]));
    assert_bytes(&sb, &want->sb);
  }
  /* 16 and more: map16 and array16 headers; a full buffer of counterparts */
  ACCEPTS(
      "{'institution': 'A', 'date': '2000-01-01', 'id': 'i', 'counterparts': %s, "
      "'kind': 'k', 'format': 'hybrid', 'location': 'l', 'country': 'c', 'title': 't', "
      "'participants': 1, 'topics': %s, 'u1': 1, 'u2': 2, 'u3': 3, 'u4': 4, 'u5': 5}",
      list("c", 16), list("t", 16));
  pack_into(&sb, &m);
  want = build(
      "[1, '%s', 1, 2, 3, {'institution': 'A', 'date': '2000-01-01', 'id': 'i', "
      "'counterparts': %s, 'kind': 'k', 'format': 'hybrid', 'location': 'l', "
      "'country': 'c', 'title': 't', 'participants': 1, 'topics': %s, 'u1': 1, "
      "'u2': 2, 'u3': 3, 'u4': 4, 'u5': 5}]",
      cstr(m.tag), list("c", 16), list("t", 16));
  assert_bytes(&sb, &want->sb);
  char names[64 * 262] = "[";
  for (int i = 0; i < 64; i++) {
    char item[270];
    snprintf(item, sizeof item, "%s'%02d%s'", i ? ", " : "", i, rep('n', 254));
    strcat(names, item);
  }
  strcat(names, "]");
  ACCEPTS("{'institution': '%s', 'date': '2000-01-01', 'counterparts': %s}", rep('a', 256), names);
  pack_into(&sb, &m);
  want = build(
      "[1, '%s', 1, 2, 3, {'institution': '%s', 'date': '2000-01-01', "
      "'counterparts': %s}]",
      cstr(m.tag), rep('a', 256), names);
  assert_bytes(&sb, &want->sb);
  msgpack_sbuffer_destroy(&sb);
}

/* The stored map's header at the 16/32-bit boundary: 65,535 and 65,536 entries. */
static void test_pack_huge_map(void **state) {
  (void)state;
  for (uint32_t total = 65535; total <= 65536; total++) {
    msgpack_sbuffer in, want, got;
    msgpack_packer pk;
    msgpack_unpacked u;
    char key[16];
    uint32_t others = total - 2; /* institution and date are the other two */
    msgpack_sbuffer_init(&in);
    msgpack_sbuffer_init(&want);
    msgpack_sbuffer_init(&got);
    msgpack_unpacked_init(&u);

    msgpack_packer_init(&pk, &in, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, others + 1);
    msgpack_pack_str_with_body(&pk, "institution", 11);
    msgpack_pack_str_with_body(&pk, "A", 1);
    for (uint32_t i = 0; i < others; i++) {
      snprintf(key, sizeof key, "k%u", i);
      msgpack_pack_str_with_body(&pk, key, strlen(key));
      msgpack_pack_uint32(&pk, i);
    }
    msgpack_packer_init(&pk, &want, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_uint8(&pk, 2);
    msgpack_pack_uint8(&pk, 3);
    msgpack_pack_map(&pk, total);
    msgpack_pack_str_with_body(&pk, "institution", 11);
    msgpack_pack_str_with_body(&pk, "A", 1);
    msgpack_pack_str_with_body(&pk, "date", 4);
    msgpack_pack_str_with_body(&pk, "2000-01-01", 10);
    for (uint32_t i = 0; i < others; i++) {
      snprintf(key, sizeof key, "k%u", i);
      msgpack_pack_str_with_body(&pk, key, strlen(key));
      msgpack_pack_uint32(&pk, i);
    }

    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, in.data, in.size, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(pl_record_parse(&rec, &u.data, unix_of(D("2000-01-01")), why, sizeof why), 0);
    pl_record_meta_t m = meta_of("t", 1, 2, 3);
    msgpack_packer_init(&pk, &got, msgpack_sbuffer_write);
    assert_int_equal(pl_record_pack(&pk, &rec, &u.data, &m), 0);
    assert_int_equal(got.size, want.size);
    assert_memory_equal(got.data, want.data, want.size);

    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&in);
    msgpack_sbuffer_destroy(&want);
    msgpack_sbuffer_destroy(&got);
  }
}

static void assert_same_record(const pl_record_t *a, const pl_record_t *b) {
  assert_int_equal(a->day, b->day);
  STR_EQ(a->institution, cstr(b->institution));
  assert_int_equal(a->id_type, b->id_type);
  if (a->id_type == PL_ID_STR) STR_EQ(a->id_str, cstr(b->id_str));
  if (a->id_type == PL_ID_UINT) assert_true(a->id_uint == b->id_uint);
  STR_EQ(a->kind, cstr(b->kind));
  STR_EQ(a->format, cstr(b->format));
  STR_EQ(a->country, cstr(b->country));
  assert_int_equal(a->has_participants, b->has_participants);
  assert_int_equal(a->participants, b->participants);
  assert_int_equal(a->ncounterparts, b->ncounterparts);
  for (uint32_t i = 0; i < a->ncounterparts; i++)
    STR_EQ(a->counterparts[i], cstr(b->counterparts[i]));
  assert_int_equal(a->ntopics, b->ntopics);
  for (uint32_t i = 0; i < a->ntopics; i++) STR_EQ(a->topics[i], cstr(b->topics[i]));
}

static int is_known_key(const msgpack_object *k) {
  static const char *const names[] = {"institution", "date",         "id",       "counterparts",
                                      "kind",        "format",       "location", "country",
                                      "title",       "participants", "topics"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(names[i]) &&
        memcmp(k->via.str.ptr, names[i], k->via.str.size) == 0)
      return 1;
  return 0;
}

/* Every key of the input the record does not own is in the stored map with an equal
 * value, in the same order, and the stored map holds nothing else beyond known fields. */
static void assert_others_kept(const msgpack_object *in, const msgpack_object *stored) {
  uint32_t j = 0;
  for (uint32_t i = 0; i < stored->via.map.size; i++) {
    const msgpack_object_kv *s = &stored->via.map.ptr[i];
    if (is_known_key(&s->key)) continue;
    while (j < in->via.map.size && is_known_key(&in->via.map.ptr[j].key)) j++;
    assert_true(j < in->via.map.size);
    assert_true(msgpack_object_equal(in->via.map.ptr[j].key, s->key));
    assert_true(msgpack_object_equal(in->via.map.ptr[j].val, s->val));
    j++;
  }
  while (j < in->via.map.size && is_known_key(&in->via.map.ptr[j].key)) j++;
  assert_int_equal(j, in->via.map.size);
}

static void round_trip(const pl_record_meta_t *m) {
  msgpack_sbuffer sb, again;
  msgpack_unpacked u;
  pl_record_meta_t back;
  pl_record_t stored;
  const msgpack_object *map = NULL;
  pl_record_t orig = rec;
  const msgpack_object *in = last_obj;

  msgpack_sbuffer_init(&sb);
  msgpack_sbuffer_init(&again);
  msgpack_unpacked_init(&u);
  pack_into(&sb, m);
  memset(&stored, 0xA5, sizeof stored);
  assert_int_equal(pl_record_unpack_stored(sb.data, sb.size, &u, &back, &map, &stored), 0);
  assert_non_null(map);
  assert_int_equal(map->type, MSGPACK_OBJECT_MAP);
  STR_EQ(back.tag, cstr(m->tag));
  assert_true(back.time_sec == m->time_sec);
  assert_int_equal(back.time_nsec, m->time_nsec);
  assert_true(back.received_ms == m->received_ms);
  assert_same_record(&stored, &orig);
  assert_others_kept(in, map);

  /* the stored form is a fixed point: packing it again gives the same bytes */
  msgpack_packer pk;
  msgpack_packer_init(&pk, &again, msgpack_sbuffer_write);
  assert_int_equal(pl_record_pack(&pk, &stored, map, &back), 0);
  assert_int_equal(again.size, sb.size);
  assert_memory_equal(again.data, sb.data, sb.size);

  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
  msgpack_sbuffer_destroy(&again);
}

static void test_round_trip(void **state) {
  (void)state;
  pl_record_meta_t m = meta_of("app.track2", 1700000000, 999999999, 1700000000123ull);
  ACCEPTS(
      "{'id': 't2-2023-06-denver', 'date': '2023-06-01', 'date_precision': 'month', "
      "'institution': 'National Institute for South China Sea Studies', 'counterparts': "
      "[], 'kind': 'seminar', 'format': 'in_person', 'location': 'Denver', 'country': "
      "'CN', 'topics': ['strategic conflicts', 'diplomatic strategy', 'crisis management', "
      "'Taiwan Straits', 'South China Sea', 'Track II mechanisms'], 'title': 'Closed-door "
      "seminar on Sino-American relations'}");
  round_trip(&m);
  ACCEPTS(
      "{'id': 't2-2023-11-13-quincy-letter', 'date': '2023-11-13', 'institution': "
      "'Quincy Institute for Responsible Statecraft', 'counterparts': [], 'kind': "
      "'letter', 'format': 'virtual', 'location': 'Washington, D.C.', 'country': 'US', "
      "'participants': 34, 'topics': ['bilateral relations'], 'title': 'Open letter', "
      "'outcome': 'consensus'}");
  round_trip(&m);
  m = meta_of("x", -2208988800LL, 0, 0);
  ACCEPTS_AT(m.time_sec, "{'institution': ' \\x09北京大学 ', 'counterparts': 'RAND', 'id': 7}");
  round_trip(&m);
  m = meta_of("", INT64_MAX, UINT32_MAX, UINT64_MAX);
  ACCEPTS(
      "{'institution': 'A', 'date': '2199-12-31', 'counterparts': %s, 'topics': %s, "
      "'kind': '%s', 'country': '%s', 'participants': 1000000, 'id': '%s', 'x': {1: [2]}}",
      list("c", 64), list("t", 32), rep('k', 64), rep('c', 64), rep('i', 128));
  round_trip(&m);
  ACCEPTS(
      "{'institution': 'A', 'date': '1900-01-01', 'id': 18446744073709551615, "
      "'participants': 0, 'location': '', 'title': ''}");
  round_trip(&m);
}

static int corrupt(const char *text, int with_rec) {
  msgpack_unpacked u;
  pl_record_meta_t m;
  const msgpack_object *map;
  pl_record_t r;
  struct slot *sl = build("%s", text);
  msgpack_unpacked_init(&u);
  int rc = pl_record_unpack_stored(sl->sb.data, sl->sb.size, &u, &m, &map, with_rec ? &r : NULL);
  msgpack_unpacked_destroy(&u);
  return rc;
}

static void test_unpack_stored_corrupt(void **state) {
  (void)state;
  const char *good = "[1, 't', 1700000000, 0, 1, {'institution': 'A'}]";
  assert_int_equal(corrupt(good, 1), 0);
  assert_int_equal(corrupt("[1, 't', -1, 0, 1, {'institution': 'A'}]", 1), 0);
  assert_int_equal(corrupt("[1, 't', 1, 4294967295, 1, {'institution': 'A'}]", 1), 0);
  assert_int_equal(corrupt("[2, 't', 1700000000, 0, 1, {'institution': 'A'}]", 1), PL_ECORRUPT);
  assert_int_equal(corrupt("[1, 't', 1700000000, 0, 1]", 1), PL_ECORRUPT);
  assert_int_equal(corrupt("[1, 't', 1700000000, 0, 1, {'institution': 'A'}, 0]", 1), PL_ECORRUPT);
  assert_int_equal(corrupt("{'institution': 'A'}", 1), PL_ECORRUPT);
  assert_int_equal(corrupt("[1, b't', 1700000000, 0, 1, {'institution': 'A'}]", 1), PL_ECORRUPT);
  assert_int_equal(corrupt("[1, 't', 1.5, 0, 1, {'institution': 'A'}]", 1), PL_ECORRUPT);
  assert_int_equal(corrupt("[1, 't', 9223372036854775808, 0, 1, {'institution': 'A'}]", 1),
                   PL_ECORRUPT);
  assert_int_equal(corrupt("[1, 't', 1, 4294967296, 1, {'institution': 'A'}]", 1), PL_ECORRUPT);
  assert_int_equal(corrupt("[1, 't', 1, -1, 1, {'institution': 'A'}]", 1), PL_ECORRUPT);
  assert_int_equal(corrupt("[1, 't', 1, 0, -1, {'institution': 'A'}]", 1), PL_ECORRUPT);
  assert_int_equal(corrupt("[1, 't', 1, 0, 1, ['institution', 'A']]", 1), PL_ECORRUPT);
  /* a map that is no longer a valid record is corrupt only when the record is asked for */
  assert_int_equal(corrupt("[1, 't', 1, 0, 1, {'kind': 'x'}]", 1), PL_ECORRUPT);
  assert_int_equal(corrupt("[1, 't', 1, 0, 1, {'kind': 'x'}]", 0), 0);
  assert_int_equal(corrupt("[1, 't', -9223372036854775807, 0, 1, {'institution': 'A'}]", 1),
                   PL_ECORRUPT); /* no date, and the time is outside the range */

  /* truncated at every length, and trailing bytes */
  struct slot *sl = build("%s", good);
  msgpack_unpacked u;
  pl_record_meta_t m;
  const msgpack_object *map;
  pl_record_t r;
  msgpack_unpacked_init(&u);
  for (size_t n = 0; n < sl->sb.size; n++)
    assert_int_equal(pl_record_unpack_stored(sl->sb.data, n, &u, &m, &map, &r), PL_ECORRUPT);
  msgpack_sbuffer_write(&sl->sb, "\xC0", 1);
  assert_int_equal(pl_record_unpack_stored(sl->sb.data, sl->sb.size, &u, &m, &map, &r),
                   PL_ECORRUPT);
  assert_int_equal(pl_record_unpack_stored("\xC1", 1, &u, &m, &map, &r), PL_ECORRUPT);
  msgpack_unpacked_destroy(&u);
}

/* A writer that fails after a budget of bytes: every failure point reports PL_ENOMEM. */
static size_t budget;
static int failing_write(void *data, const char *buf, size_t len) {
  if (len > budget) return -1;
  budget -= len;
  return msgpack_sbuffer_write(data, buf, len);
}

static void test_pack_nomem(void **state) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  (void)state;
  pl_record_meta_t m = meta_of("track2", 1700000000, 5, 1);
  ACCEPTS(
      "{'institution': 'A', 'id': 's', 'counterparts': ['b'], 'kind': 'k', 'format': "
      "'virtual', 'location': 'l', 'country': 'c', 'title': 't', 'participants': 3, "
      "'topics': ['x'], 'other': [1, 2, {'a': 'b'}]}");
  msgpack_sbuffer_init(&sb);
  pack_into(&sb, &m);
  size_t full = sb.size;
  for (size_t b = 0; b < full; b++) {
    msgpack_sbuffer_clear(&sb);
    budget = b;
    msgpack_packer_init(&pk, &sb, failing_write);
    assert_int_equal(pl_record_pack(&pk, &rec, last_obj, &m), PL_ENOMEM);
  }
  msgpack_sbuffer_clear(&sb);
  budget = full;
  msgpack_packer_init(&pk, &sb, failing_write);
  assert_int_equal(pl_record_pack(&pk, &rec, last_obj, &m), 0);
  assert_int_equal(sb.size, full);
  msgpack_sbuffer_destroy(&sb);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_utf8_cases),
      cmocka_unit_test(test_utf8_offsets),
      cmocka_unit_test(test_utf8_reference),
      cmocka_unit_test(test_not_a_map),
      cmocka_unit_test(test_keys),
      cmocka_unit_test(test_first_rule_wins),
      cmocka_unit_test(test_institution),
      cmocka_unit_test(test_institution_utf8),
      cmocka_unit_test(test_date),
      cmocka_unit_test(test_date_from_entry),
      cmocka_unit_test(test_id),
      cmocka_unit_test(test_counterparts),
      cmocka_unit_test(test_kind),
      cmocka_unit_test(test_format),
      cmocka_unit_test(test_country_location_title),
      cmocka_unit_test(test_participants),
      cmocka_unit_test(test_topics),
      cmocka_unit_test(test_reason_buffer),
      cmocka_unit_test(test_sample_records),
      cmocka_unit_test(test_pack_exact),
      cmocka_unit_test(test_pack_encodings),
      cmocka_unit_test(test_pack_huge_map),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_unpack_stored_corrupt),
      cmocka_unit_test(test_pack_nomem),
  };
  return cmocka_run_group_tests_name("record", tests, setup, teardown);
}
