/* The bounded framer: complete objects, every split point, declared sizes over the limit,
 * nesting, reserved bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "parley/error.h"
#include "parley/mpscan.h"

static ssize_t frame(const void *buf, size_t len, size_t max, unsigned depth) {
  pl_mpscan_t s;
  pl_mpscan_init(&s, max, depth);
  return pl_mpscan_run(&s, buf, len);
}

static void test_scalars_and_containers(void **state) {
  (void)state;
  assert_int_equal(frame("\xc0", 1, 100, 8), 1);
  assert_int_equal(frame("\x05\x06", 2, 100, 8), 1); /* only the first object */
  assert_int_equal(frame("\xa3" "abc", 4, 100, 8), 4);
  assert_int_equal(frame("\x90", 1, 100, 8), 1);
  assert_int_equal(frame("\x80", 1, 100, 8), 1);
  assert_int_equal(frame("\x92\x01\x91\x02", 4, 100, 8), 4);
  assert_int_equal(frame("\x81\xa1k\x92\xc3\xc2", 6, 100, 8), 6);
  assert_int_equal(frame("\xd7\x00\x01\x02\x03\x04\x05\x06\x07\x08", 10, 100, 8), 10);
  assert_int_equal(frame("\xc7\x08\x00\x01\x02\x03\x04\x05\x06\x07\x08", 11, 100, 8), 11);
  assert_int_equal(frame("\xcb\x00\x00\x00\x00\x00\x00\x00\x00", 9, 100, 8), 9);
  assert_int_equal(frame("\xdc\x00\x02\x01\x02", 5, 100, 8), 5);
  assert_int_equal(frame("\xc4\x02zz", 4, 100, 8), 4);
}

static void test_every_split(void **state) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  (void)state;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_array(&pk, 3);
  msgpack_pack_str_with_body(&pk, "tag.name", 8);
  msgpack_pack_array(&pk, 2);
  for (int i = 0; i < 2; i++) {
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint32(&pk, 1700000000u + (unsigned)i);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "institution", 11);
    msgpack_pack_str_with_body(&pk, "A long enough name to need str8 headers here..", 47);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_double(&pk, 1.5);
  }
  msgpack_pack_map(&pk, 1);
  msgpack_pack_str_with_body(&pk, "chunk", 5);
  msgpack_pack_bin_with_body(&pk, "0123456789abcdef", 16);
  /* Fed one prefix at a time, the scanner resumes and ends exactly at the object's end. */
  {
    pl_mpscan_t s;
    pl_mpscan_init(&s, 4096, 8);
    for (size_t n = 0; n < sb.size; n++) assert_int_equal(pl_mpscan_run(&s, (void *)sb.data, n), 0);
    assert_int_equal(pl_mpscan_run(&s, (void *)sb.data, sb.size), (ssize_t)sb.size);
  }
  /* And from scratch at every split into two parts. */
  for (size_t cut = 0; cut <= sb.size; cut++) {
    pl_mpscan_t s;
    pl_mpscan_init(&s, 4096, 8);
    ssize_t a = pl_mpscan_run(&s, (void *)sb.data, cut);
    assert_int_equal(a, cut == sb.size ? (ssize_t)sb.size : 0);
    assert_int_equal(pl_mpscan_run(&s, (void *)sb.data, sb.size), (ssize_t)sb.size);
  }
  msgpack_sbuffer_destroy(&sb);
}

static void test_limits(void **state) {
  (void)state;
  /* declared sizes far beyond the limit fail before the bytes arrive */
  assert_int_equal(frame("\xdd\xff\xff\xff\xff", 5, 1 << 20, 8), PL_ETOOBIG);
  assert_int_equal(frame("\xdf\xff\xff\xff\xff", 5, 1 << 20, 8), PL_ETOOBIG);
  assert_int_equal(frame("\xdb\xff\xff\xff\xff", 5, 1 << 20, 8), PL_ETOOBIG);
  assert_int_equal(frame("\xc6\xff\xff\xff\xff", 5, 1 << 20, 8), PL_ETOOBIG);
  assert_int_equal(frame("\xc9\xff\xff\xff\xff\x01", 6, 1 << 20, 8), PL_ETOOBIG);
  /* a count that could only fit if elements were smaller than one byte */
  assert_int_equal(frame("\xdc\x00\x64", 3, 50, 8), PL_ETOOBIG);
  /* exactly at the limit is fine, one byte over is not */
  assert_int_equal(frame("\xa3" "abc", 4, 4, 8), 4);
  assert_int_equal(frame("\xa3" "abc", 4, 3, 8), PL_ETOOBIG);
  /* depth */
  assert_int_equal(frame("\x91\x91\x91\x01", 4, 100, 3), 4);
  assert_int_equal(frame("\x91\x91\x91\x91\x01", 5, 100, 3), PL_EDEPTH);
  /* an empty container still takes a level: msgpack-c would refuse it past its stack */
  assert_int_equal(frame("\x91\x91\x91\x90", 4, 100, 3), PL_EDEPTH);
  assert_int_equal(frame("\x91\x91\x90", 3, 100, 3), 3);
  /* reserved byte */
  assert_int_equal(frame("\xc1", 1, 100, 8), PL_EPROTO);
  assert_int_equal(frame("\x92\x01\xc1", 3, 100, 8), PL_EPROTO);
}

static void test_deep_nesting_capped(void **state) {
  unsigned char buf[200];
  (void)state;
  memset(buf, 0x91, sizeof(buf));
  assert_int_equal(frame(buf, sizeof(buf), 1000, 1000), PL_EDEPTH); /* capped at 32 */
}

/* What the scanner passes at its cap, msgpack-c decodes, and what msgpack-c cannot decode
 * the scanner refuses: nests of every depth around the cap, ending in a scalar or in an
 * empty array or map. The daemon relies on this, and a record stored one level deeper than
 * it arrived depends on the empty container counting (a fuzzer found that). */
static void test_depth_matches_msgpack(void **state) {
  static const unsigned char ends[] = {0x01, 0x90, 0x80};
  unsigned char buf[64];
  (void)state;
  for (unsigned d = 28; d <= 36; d++) {
    for (size_t e = 0; e < sizeof ends; e++) {
      msgpack_unpacked u;
      size_t off = 0;
      memset(buf, 0x91, d);
      buf[d] = ends[e];
      msgpack_unpacked_init(&u);
      int decodes = msgpack_unpack_next(&u, (const char *)buf, d + 1, &off) ==
                    MSGPACK_UNPACK_SUCCESS;
      msgpack_unpacked_destroy(&u);
      ssize_t n = frame(buf, d + 1, 1000, PL_MPSCAN_MAX_DEPTH);
      assert_int_equal(n > 0, decodes);
      assert_int_equal(n, decodes ? (ssize_t)d + 1 : PL_EDEPTH);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scalars_and_containers),
      cmocka_unit_test(test_every_split),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_deep_nesting_capped),
      cmocka_unit_test(test_depth_matches_msgpack),
  };
  return cmocka_run_group_tests_name("mpscan", tests, NULL, NULL);
}
