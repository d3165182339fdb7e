/* Day numbers, parsing, ISO weeks and period labels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "parley/date.h"
#include "parley/error.h"

static uint32_t D(const char *s) {
  uint32_t d = 0;
  assert_int_equal(pl_date_parse(s, strlen(s), &d), 0);
  return d;
}

static void test_parse_bounds(void **state) {
  uint32_t d;
  (void)state;
  assert_int_equal(D("1900-01-01"), 0);
  assert_int_equal(D("2199-12-31"), PL_DATE_LAST_DAY);
  assert_int_equal(pl_date_parse("1899-12-31", 10, &d), PL_ERANGE);
  assert_int_equal(pl_date_parse("2200-01-01", 10, &d), PL_ERANGE);
  assert_int_equal(pl_date_parse("2023-02-29", 10, &d), PL_EINVAL);
  assert_int_equal(pl_date_parse("2024-02-29", 10, &d), 0);
  assert_int_equal(pl_date_parse("1900-02-29", 10, &d), PL_EINVAL); /* 1900 is not leap */
  assert_int_equal(pl_date_parse("2000-02-29", 10, &d), 0);
  assert_int_equal(pl_date_parse("2023-13-01", 10, &d), PL_EINVAL);
  assert_int_equal(pl_date_parse("2023-00-10", 10, &d), PL_EINVAL);
  assert_int_equal(pl_date_parse("2023-04-31", 10, &d), PL_EINVAL);
  assert_int_equal(pl_date_parse("2023-4-1", 8, &d), PL_EINVAL);
  assert_int_equal(pl_date_parse("2023/04/01", 10, &d), PL_EINVAL);
  assert_int_equal(pl_date_parse("2023-04-01T", 11, &d), PL_EINVAL);
  assert_int_equal(pl_date_parse("+023-04-01", 10, &d), PL_EINVAL);
}

static void test_roundtrip(void **state) {
  char buf[11];
  (void)state;
  for (uint32_t d = 0; d <= PL_DATE_LAST_DAY; d += 17) {
    uint32_t back;
    pl_date_format(d, buf);
    assert_int_equal(pl_date_parse(buf, 10, &back), 0);
    assert_int_equal(back, d);
  }
}

static void test_unix(void **state) {
  uint32_t d;
  char buf[11];
  (void)state;
  assert_int_equal(pl_date_from_unix(0, &d), 0);
  pl_date_format(d, buf);
  assert_string_equal(buf, "1970-01-01");
  assert_int_equal(pl_date_from_unix(1700000000, &d), 0); /* 2023-11-14T22:13:20Z */
  pl_date_format(d, buf);
  assert_string_equal(buf, "2023-11-14");
  assert_int_equal(pl_date_from_unix(-1, &d), 0);
  pl_date_format(d, buf);
  assert_string_equal(buf, "1969-12-31");
  assert_int_equal(pl_date_from_unix(-2208988800LL, &d), 0);
  assert_int_equal(d, 0);
  assert_int_equal(pl_date_from_unix(-2208988801LL, &d), PL_ERANGE);
  assert_int_equal(pl_date_from_unix(INT64_MAX / 2, &d), PL_ERANGE);
  assert_int_equal(pl_date_from_unix(INT64_MIN, &d), PL_ERANGE);
  assert_int_equal(pl_date_from_unix(INT64_MAX, &d), PL_ERANGE);
  assert_int_equal(pl_date_from_unix(-86400, &d), 0);
  pl_date_format(d, buf);
  assert_string_equal(buf, "1969-12-31");
  assert_int_equal(pl_date_from_unix(-86401, &d), 0);
  pl_date_format(d, buf);
  assert_string_equal(buf, "1969-12-30");
}

static void test_iso_week(void **state) {
  int y, w;
  char buf[11];
  (void)state;
  /* 2021-01-03 is a Sunday in ISO week 2020-W53; 2021-01-04 starts 2021-W01. */
  pl_date_iso_week(D("2021-01-03"), &y, &w);
  assert_int_equal(y, 2020);
  assert_int_equal(w, 53);
  pl_date_iso_week(D("2021-01-04"), &y, &w);
  assert_int_equal(y, 2021);
  assert_int_equal(w, 1);
  /* 2024-12-30 (Monday) belongs to 2025-W01. */
  pl_date_iso_week(D("2024-12-30"), &y, &w);
  assert_int_equal(y, 2025);
  assert_int_equal(w, 1);
  pl_date_period_label(PL_BUCKET_WEEK, pl_date_period_start(PL_BUCKET_WEEK, D("2024-12-31")), buf);
  assert_string_equal(buf, "2025-W01");
  assert_int_equal(pl_date_period_start(PL_BUCKET_WEEK, D("2023-11-05")), D("2023-10-30"));
}

static void test_periods(void **state) {
  char buf[11];
  (void)state;
  uint32_t m = pl_date_period_start(PL_BUCKET_MONTH, D("2024-02-17"));
  assert_int_equal(m, D("2024-02-01"));
  assert_int_equal(pl_date_period_next(PL_BUCKET_MONTH, m), D("2024-03-01"));
  pl_date_period_label(PL_BUCKET_MONTH, m, buf);
  assert_string_equal(buf, "2024-02");
  uint32_t y = pl_date_period_start(PL_BUCKET_YEAR, D("2024-02-17"));
  assert_int_equal(pl_date_period_next(PL_BUCKET_YEAR, y), D("2025-01-01"));
  pl_date_period_label(PL_BUCKET_YEAR, y, buf);
  assert_string_equal(buf, "2024");
  assert_int_equal(pl_date_month(D("1900-01-31")), 0);
  assert_int_equal(pl_date_month(D("2023-11-13")), 123 * 12 + 10);
  assert_int_equal(pl_date_month_first(123 * 12 + 10), D("2023-11-01"));
  assert_int_equal(pl_date_month_len(124 * 12 + 1), 29);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_bounds), cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_unix),         cmocka_unit_test(test_iso_week),
      cmocka_unit_test(test_periods),
  };
  return cmocka_run_group_tests_name("date", tests, NULL, NULL);
}
