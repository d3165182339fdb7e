/* JSON <-> MessagePack: exact bytes, integer limits, strings and escapes, error positions,
 * and msgpack-only types (bin, ext, floats) on the way out. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "parley/error.h"
#include "parley/json.h"

/* Packs json and returns its bytes as lowercase hex, space separated (static buffer). */
static const char *pack_hex(const char *json, unsigned flags) {
  static char hex[4096];
  msgpack_sbuffer sb;
  pl_json_error_t err;
  size_t o = 0;
  msgpack_sbuffer_init(&sb);
  int rc = pl_json_to_msgpack(json, strlen(json), flags, &sb, &err);
  if (rc) print_error("%s: %s at %d:%d\n", json, err.text, err.line, err.column);
  assert_int_equal(rc, 0);
  hex[0] = '\0';
  for (size_t i = 0; i < sb.size && o + 4 < sizeof hex; i++)
    o += (size_t)snprintf(hex + o, sizeof hex - o, i ? " %02x" : "%02x", (unsigned char)sb.data[i]);
  msgpack_sbuffer_destroy(&sb);
  return hex;
}

/* Renders msgpack bytes as JSON; the caller frees the result. */
static char *render(const char *bytes, size_t n, unsigned flags) {
  msgpack_unpacked u;
  pl_json_buf_t out = {0};
  size_t off = 0;
  msgpack_unpacked_init(&u);
  assert_int_equal(msgpack_unpack_next(&u, bytes, n, &off), MSGPACK_UNPACK_SUCCESS);
  assert_int_equal(off, n);
  assert_int_equal(pl_json_from_msgpack(&u.data, flags, &out), 0);
  assert_int_equal(strlen(out.data), out.len);
  msgpack_unpacked_destroy(&u);
  return out.data;
}

/* JSON -> msgpack -> JSON, compact. The caller frees the result. */
static char *round_trip(const char *json, unsigned flags) {
  msgpack_sbuffer sb;
  pl_json_error_t err;
  char *s;
  msgpack_sbuffer_init(&sb);
  assert_int_equal(pl_json_to_msgpack(json, strlen(json), 0, &sb, &err), 0);
  s = render(sb.data, sb.size, flags);
  msgpack_sbuffer_destroy(&sb);
  return s;
}

static void expect_round_trip(const char *json, const char *want) {
  char *s = round_trip(json, 0);
  assert_string_equal(s, want ? want : json);
  free(s);
}

/* Parses json expecting failure rc at line:column; checks nothing was left in the buffer. */
static void expect_error(const char *json, size_t len, unsigned flags, int rc, int line,
                         int column, const char *text_part) {
  msgpack_sbuffer sb;
  pl_json_error_t err;
  msgpack_sbuffer_init(&sb);
  msgpack_sbuffer_write(&sb, "xyz", 3);
  memset(&err, 0, sizeof err);
  assert_int_equal(pl_json_to_msgpack(json, len, flags, &sb, &err), rc);
  assert_int_equal(sb.size, 3);
  assert_memory_equal(sb.data, "xyz", 3);
  if (!strstr(err.text, text_part)) fail_msg("error text \"%s\" lacks \"%s\"", err.text, text_part);
  assert_int_equal(err.line, line);
  assert_int_equal(err.column, column);
  msgpack_sbuffer_destroy(&sb);
}

static void test_exact_bytes(void **state) {
  (void)state;
  assert_string_equal(pack_hex("{\"a\":1}", PL_JSON_OBJECT), "81 a1 61 01");
  assert_string_equal(pack_hex("[1,-1,127,128,-32,-33,200,-200,65536,true,false,null]", 0),
                      "9c 01 ff 7f cc 80 e0 d0 df cc c8 d1 ff 38 ce 00 01 00 00 c3 c2 c0");
  assert_string_equal(pack_hex("1.5", 0), "cb 3f f8 00 00 00 00 00 00");
  assert_string_equal(pack_hex("1e2", 0), "cb 40 59 00 00 00 00 00 00");
  assert_string_equal(pack_hex("-0", 0), "00");
  assert_string_equal(pack_hex("[]", 0), "90");
  assert_string_equal(pack_hex(" {} ", 0), "80");
  assert_string_equal(pack_hex("\"\"", 0), "a0");
  assert_string_equal(pack_hex("{\"z\":1,\"a\":{\"y\":[]}}", 0), "82 a1 7a 01 a1 61 81 a1 79 90");
}

static void test_big_integers(void **state) {
  (void)state;
  assert_string_equal(pack_hex("9223372036854775807", 0), "cf 7f ff ff ff ff ff ff ff");
  assert_string_equal(pack_hex("-9223372036854775808", 0), "d3 80 00 00 00 00 00 00 00");
  assert_string_equal(pack_hex("4294967296", 0), "cf 00 00 00 01 00 00 00 00");
  assert_string_equal(pack_hex("-2147483649", 0), "d3 ff ff ff ff 7f ff ff ff");
  /* Above INT64_MAX jansson cannot hold the value: the exact path reads it from the text. */
  assert_string_equal(pack_hex("18446744073709551615", 0), "cf ff ff ff ff ff ff ff ff");
  assert_string_equal(pack_hex("9223372036854775808", 0), "cf 80 00 00 00 00 00 00 00");
  /* Every other number in such a text keeps its type and value, strings with digits too. */
  assert_string_equal(
      pack_hex("{\"a1\":[\"-2\\\"3\",1,-1,2.5,-9223372036854775808],\"u\":18446744073709551615}",
               PL_JSON_OBJECT),
      "82 a2 61 31 95 a4 2d 32 22 33 01 ff cb 40 04 00 00 00 00 00 00"
      " d3 80 00 00 00 00 00 00 00 a1 75 cf ff ff ff ff ff ff ff ff");
  expect_round_trip("[18446744073709551615,-9223372036854775808,9223372036854775807,0,1e+300]",
                    NULL);
}

static void test_out_of_range(void **state) {
  (void)state;
  expect_error("18446744073709551616", 20, 0, PL_ERANGE, 1, 20, "integer out of range");
  expect_error("[1,\n -9223372036854775809]", 26, 0, PL_ERANGE, 2, 21,
               "near '-9223372036854775809'");
  expect_error("[18446744073709551615,\n 99999999999999999999]", 45, 0, PL_ERANGE, 2, 21,
               "near '99999999999999999999'");
  expect_error("{\"n\": 1e400}", 12, 0, PL_ERANGE, 1, 11, "overflow");
}

static void test_strings(void **state) {
  (void)state;
  assert_string_equal(pack_hex("\"\\u00e9\\ud83d\\ude00\"", 0), "a6 c3 a9 f0 9f 98 80");
  assert_string_equal(pack_hex("\"é\"", 0), "a2 c3 a9");
  assert_string_equal(pack_hex("\"a\\u0000b\"", 0), "a3 61 00 62");
  assert_string_equal(pack_hex("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", 0), "a8 22 5c 2f 08 0c 0a 0d 09");
  expect_round_trip("{\"t\":\"a\\\"b\\\\c\\nd\\te\\u0001\\u001f\\u007f/é中😀\"}",
                    "{\"t\":\"a\\\"b\\\\c\\nd\\te\\u0001\\u001f\x7f/é中😀\"}");
  expect_round_trip("\"\\u0000\"", NULL);
  /* A 40-byte string takes str8, a 300-byte one str16. */
  {
    char json[400];
    memset(json, 'x', sizeof json);
    json[0] = '"';
    json[301] = '"';
    json[302] = '\0';
    assert_memory_equal(pack_hex(json, 0), "da 01 2c 78", 11);
  }
}

static void test_invalid(void **state) {
  (void)state;
  expect_error("{\"a\":}", 6, PL_JSON_OBJECT, PL_EINVAL, 1, 6, "unexpected token");
  expect_error("{\n  \"a\": tru }", 14, 0, PL_EINVAL, 2, 10, "invalid token near 'tru'");
  expect_error("[1,2", 4, 0, PL_EINVAL, 1, 4, "']' expected");
  expect_error("{} x", 4, 0, PL_EINVAL, 1, 4, "end of file expected");
  expect_error("", 0, 0, PL_EINVAL, 1, 1, "end of file");
  expect_error("\"\xff\"", 3, 0, PL_EINVAL, 1, 1, "unable to decode byte 0xff");
  expect_error("{\"a\":1,\"a\":2}", 13, 0, PL_EINVAL, 1, 10, "duplicate object key");
  expect_error("{\"\\u0000\":1}", 12, 0, PL_EINVAL, 1, 9, "NUL byte in object key");
  expect_error("\"\\ud800\"", 8, 0, PL_EINVAL, 1, 8, "invalid Unicode");
  expect_error("{'a':1}", 7, 0, PL_EINVAL, 1, 2, "string or '}' expected");
  /* The length is honoured: a valid prefix followed by bytes past len is not read. */
  expect_error("{\"a\":1}", 6, 0, PL_EINVAL, 1, 6, "'}' expected");
}

static void test_not_an_object(void **state) {
  (void)state;
  expect_error("[1]", 3, PL_JSON_OBJECT, PL_ETYPE, 1, 1, "not an array");
  expect_error("  \"s\"", 5, PL_JSON_OBJECT, PL_ETYPE, 1, 3, "not a string");
  expect_error("\n 42", 4, PL_JSON_OBJECT, PL_ETYPE, 2, 2, "not a number");
  expect_error("null", 4, PL_JSON_OBJECT, PL_ETYPE, 1, 1, "not null");
  expect_error("true", 4, PL_JSON_OBJECT, PL_ETYPE, 1, 1, "not a boolean");
  assert_string_equal(pack_hex("[1]", 0), "91 01");
}

static void test_depth(void **state) {
  char json[3001];
  (void)state;
  memset(json, '[', 3000);
  json[3000] = '\0';
  expect_error(json, 3000, 0, PL_EDEPTH, 1, 2049, "maximum parsing depth");
}

static void test_appends(void **state) {
  msgpack_sbuffer sb;
  pl_json_error_t err;
  (void)state;
  msgpack_sbuffer_init(&sb);
  assert_int_equal(pl_json_to_msgpack("1", 1, 0, &sb, NULL), 0);
  assert_int_equal(pl_json_to_msgpack("[2]", 3, 0, &sb, &err), 0);
  assert_int_equal(pl_json_to_msgpack("[3", 2, 0, &sb, NULL), PL_EINVAL);
  assert_int_equal(pl_json_to_msgpack("[18446744073709551616]", 22, 0, &sb, NULL), PL_ERANGE);
  assert_int_equal(sb.size, 3);
  assert_memory_equal(sb.data, "\x01\x91\x02", 3);
  msgpack_sbuffer_destroy(&sb);
}

/* Renders a msgpack literal compactly into s and compares. */
#define R(bytes, want)                       \
  do {                                       \
    s = render(bytes, sizeof(bytes) - 1, 0); \
    assert_string_equal(s, want);            \
    free(s);                                 \
  } while (0)

static void test_render_scalars(void **state) {
  char *s;
  (void)state;
  R("\xc0", "null");
  R("\xc3", "true");
  R("\xc2", "false");
  R("\x7f", "127");
  R("\xe0", "-32");
  R("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", "18446744073709551615");
  R("\xd3\x80\x00\x00\x00\x00\x00\x00\x00", "-9223372036854775808");
  R("\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", "1.0");
  R("\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a", "0.1");
  R("\xcb\x80\x00\x00\x00\x00\x00\x00\x00", "-0.0");
  R("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", "null");           /* NaN */
  R("\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00", "null");           /* +Inf */
  R("\xcb\xff\xf0\x00\x00\x00\x00\x00\x00", "null");           /* -Inf */
  R("\xca\x3d\xcc\xcc\xcd", "0.1");                            /* float32 0.1f */
  R("\xca\x7f\xc0\x00\x00", "null");                           /* float32 NaN */
  R("\xca\x4b\x80\x00\x00", "16777216.0");                     /* float32 2^24 */
  R("\xcb\x3f\xd5\x55\x55\x55\x55\x55\x55", "0.3333333333333333");
  R("\xcb\x7e\x37\xe4\x3c\x88\x00\x75\x9c", "1e+300");
  R("\xc4\x00", "\"\"");
  R("\xc4\x01\x66", "\"Zg==\"");
  R("\xc4\x02\x66\x6f", "\"Zm8=\"");
  R("\xc4\x03\x66\x6f\x6f", "\"Zm9v\"");
  R("\xc4\x04\x00\x01\x02\xff", "\"AAEC/w==\"");
  R("\xd7\x00\x00\x00\x00\x01\x00\x00\x00\x02", "{\"ext\":0,\"data\":\"AAAAAQAAAAI=\"}");
  R("\xd4\xff\x2a", "{\"ext\":-1,\"data\":\"Kg==\"}");
  R("\xc7\x00\x05", "{\"ext\":5,\"data\":\"\"}");
}

static void test_render_strings(void **state) {
  char *s;
  (void)state;
  R("\xa8\"\\\n\t\x01\x7f/\x08", "\"\\\"\\\\\\n\\t\\u0001\x7f/\\b\"");
  R("\xa4\x61\xff\x62\xc3", "\"a\\ufffdb\\ufffd\"");              /* stray byte, cut sequence */
  R("\xa2\xc0\x80", "\"\\ufffd\\ufffd\"");                        /* overlong NUL */
  R("\xa3\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");             /* surrogate D800 */
  R("\xa4\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");   /* above U+10FFFF */
  R("\xa4\xf0\x9f\x98\x80", "\"😀\"");
  R("\xa3\xe4\xb8\xad", "\"中\"");
  R("\xa3\x61\x00\x62", "\"a\\u0000b\"");
}

static void test_render_maps(void **state) {
  char *s;
  (void)state;
  /* {1: "a", nil: 1, [1,2]: 3, true: 4, bin 01: 5, "\"": 6, 1.5: 7} */
  R("\x87\x01\xa1\x61\xc0\x01\x92\x01\x02\x03\xc3\x04\xc4\x01\x01\x05\xa1\"\x06"
    "\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\x07",
    "{\"1\":\"a\",\"null\":1,\"[1,2]\":3,\"true\":4,\"AQ==\":5,\"\\\"\":6,\"1.5\":7}");
  /* A key that is itself a map with string keys is escaped as a string. */
  R("\x81\x81\xa1\x6b\xa1\x76\x01", "{\"{\\\"k\\\":\\\"v\\\"}\":1}");
  /* Duplicate keys stay, in order. */
  R("\x82\xa1\x61\x01\xa1\x61\x02", "{\"a\":1,\"a\":2}");
}

static void test_pretty(void **state) {
  char *s;
  (void)state;
  s = round_trip("{\"a\":[1,{\"b\":null}],\"c\":{},\"d\":[],\"e\":\"x\"}", PL_JSON_PRETTY);
  assert_string_equal(s,
                      "{\n"
                      "  \"a\": [\n"
                      "    1,\n"
                      "    {\n"
                      "      \"b\": null\n"
                      "    }\n"
                      "  ],\n"
                      "  \"c\": {},\n"
                      "  \"d\": [],\n"
                      "  \"e\": \"x\"\n"
                      "}");
  free(s);
  s = render("\xd4\x07\x2a", 3, PL_JSON_PRETTY);
  assert_string_equal(s, "{\n  \"ext\": 7,\n  \"data\": \"Kg==\"\n}");
  free(s);
  s = round_trip("5", PL_JSON_PRETTY);
  assert_string_equal(s, "5");
  free(s);
}

static void test_render_depth(void **state) {
  enum { DEEP = PL_JSON_MAX_DEPTH + 1 };
  msgpack_object *objs = calloc(DEEP, sizeof *objs);
  pl_json_buf_t out = {0};
  (void)state;
  assert_non_null(objs);
  for (int i = 0; i < DEEP; i++) {
    objs[i].type = MSGPACK_OBJECT_ARRAY;
    objs[i].via.array.size = i + 1 < DEEP ? 1 : 0;
    objs[i].via.array.ptr = i + 1 < DEEP ? &objs[i + 1] : NULL;
  }
  assert_int_equal(pl_json_buf_append(&out, "keep", 4), 0);
  assert_int_equal(pl_json_from_msgpack(&objs[0], 0, &out), PL_EDEPTH);
  assert_int_equal(out.len, 4);
  assert_string_equal(out.data, "keep");
  out.len = 0;
  assert_int_equal(pl_json_from_msgpack(&objs[1], PL_JSON_PRETTY, &out), 0);
  assert_int_equal(out.data[0], '[');
  assert_int_equal(out.data[out.len - 1], ']');
  pl_json_buf_free(&out);
  assert_null(out.data);
  free(objs);
}

static void test_buf_helpers(void **state) {
  pl_json_buf_t out = {0};
  (void)state;
  assert_int_equal(pl_json_buf_append(&out, "", 0), 0);
  assert_string_equal(out.data, "");
  assert_int_equal(pl_json_buf_append(&out, "{\"k\":", 5), 0);
  assert_int_equal(pl_json_append_string(&out, "a\"b\n\xff", 5), 0);
  assert_int_equal(pl_json_buf_append(&out, "}", 1), 0);
  assert_string_equal(out.data, "{\"k\":\"a\\\"b\\n\\ufffd\"}");
  /* Growth across many appends keeps every byte. */
  out.len = 0;
  for (int i = 0; i < 10000; i++) assert_int_equal(pl_json_buf_append(&out, "0123456789", 10), 0);
  assert_int_equal(out.len, 100000);
  assert_memory_equal(out.data + 99990, "0123456789", 11);
  pl_json_buf_free(&out);
}

static void test_round_trips(void **state) {
  (void)state;
  expect_round_trip(
      "{\"a\":[1,-2,3.5,\"x\",true,false,null],\"b\":{\"c\":\"d\"},\"e\":[],\"f\":{}}", NULL);
  expect_round_trip("[0.1,-0.0,1.0,1e-7,1e+21,123456789.125,2.2250738585072014e-308]", NULL);
  /* Subnormals read back from 15 digits, so they keep them rather than the shortest form. */
  expect_round_trip("[5e-324,1.7976931348623157e+308,-1e-100]",
                    "[4.94065645841247e-324,1.7976931348623157e+308,-1e-100]");
  expect_round_trip("[1E3, 2.5e-3, -1.5E+2]", "[1000.0,0.0025,-150.0]");
}

/* Every record of the sample data survives JSON -> msgpack -> JSON -> msgpack bit for bit. */
static void test_sample_file(void **state) {
  const char *path = "tests/data/track2-sample.jsonl"; /* the suite runs from the repo */
  FILE *f = fopen(path, "r");
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int records = 0;
  (void)state;
  assert_non_null(f);
  while ((n = getline(&line, &cap, f)) > 0) {
    msgpack_sbuffer a, b;
    pl_json_error_t err;
    char *json;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    assert_int_equal(pl_json_to_msgpack(line, (size_t)n, PL_JSON_OBJECT, &a, &err), 0);
    json = render(a.data, a.size, 0);
    assert_int_equal(pl_json_to_msgpack(json, strlen(json), PL_JSON_OBJECT, &b, &err), 0);
    assert_int_equal(a.size, b.size);
    assert_memory_equal(a.data, b.data, a.size);
    free(json);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
    records++;
  }
  free(line);
  fclose(f);
  assert_true(records > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_bytes),    cmocka_unit_test(test_big_integers),
      cmocka_unit_test(test_out_of_range),   cmocka_unit_test(test_strings),
      cmocka_unit_test(test_invalid),        cmocka_unit_test(test_not_an_object),
      cmocka_unit_test(test_depth),          cmocka_unit_test(test_appends),
      cmocka_unit_test(test_render_scalars), cmocka_unit_test(test_render_strings),
      cmocka_unit_test(test_render_maps),    cmocka_unit_test(test_pretty),
      cmocka_unit_test(test_render_depth),   cmocka_unit_test(test_buf_helpers),
      cmocka_unit_test(test_round_trips),    cmocka_unit_test(test_sample_file),
  };
  return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
