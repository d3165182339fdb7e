/* Calendar arithmetic on day numbers since 1900-01-01 (proleptic Gregorian, UTC). */
#include "parley/date.h"

#include <string.h>

#include "parley/error.h"

/* Days from 1970-01-01 to 1900-01-01. */
#define EPOCH_OFFSET 25567

static int is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int month_len(int y, int m) {
  static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : len[m - 1];
}

/* Days since 1970-01-01 of a civil date (H. Hinnant's algorithm, public domain). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = (unsigned)(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *yy, int *mm, int *dd) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = (unsigned)(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t y = (int64_t)yoe + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  *yy = (int)(y + (m <= 2));
  *mm = (int)m;
  *dd = (int)d;
}

uint32_t pl_date_from_ymd(int y, int m, int d) {
  return (uint32_t)(days_from_civil(y, (unsigned)m, (unsigned)d) + EPOCH_OFFSET);
}

void pl_date_to_ymd(uint32_t day, int *y, int *m, int *d) {
  civil_from_days((int64_t)day - EPOCH_OFFSET, y, m, d);
}

static int digits(const char *s, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 0;
}

int pl_date_parse(const char *s, size_t n, uint32_t *day) {
  int y, m, d;
  if (n != PL_DATE_LEN || s[4] != '-' || s[7] != '-') return PL_EINVAL;
  if (digits(s, 4, &y) || digits(s + 5, 2, &m) || digits(s + 8, 2, &d)) return PL_EINVAL;
  if (m < 1 || m > 12 || d < 1 || d > month_len(y, m)) return PL_EINVAL;
  if (y < PL_DATE_MIN_YEAR || y > PL_DATE_MAX_YEAR) return PL_ERANGE;
  *day = pl_date_from_ymd(y, m, d);
  return 0;
}

/* Writes n digits of v (0 <= v < 10^n) at out. Series and events replies format a date a
 * row, and snprintf took a third of a year-by-day series. */
static char *put_digits(char *out, int v, int n) {
  for (int i = n - 1; i >= 0; i--) {
    out[i] = (char)('0' + v % 10);
    v /= 10;
  }
  return out + n;
}

void pl_date_format(uint32_t day, char out[11]) {
  int y, m, d;
  char *o = out;
  pl_date_to_ymd(day, &y, &m, &d);
  o = put_digits(o, y, 4);
  *o++ = '-';
  o = put_digits(o, m, 2);
  *o++ = '-';
  o = put_digits(o, d, 2);
  *o = 0;
}

int pl_date_from_unix(int64_t secs, uint32_t *day) {
  /* Floor division that cannot overflow, even for INT64_MIN. */
  int64_t days = secs / 86400 - (secs % 86400 < 0);
  int64_t v = days + EPOCH_OFFSET;
  if (v < 0 || v > (int64_t)PL_DATE_LAST_DAY) return PL_ERANGE;
  *day = (uint32_t)v;
  return 0;
}

uint32_t pl_date_month(uint32_t day) {
  int y, m, d;
  pl_date_to_ymd(day, &y, &m, &d);
  return (uint32_t)((y - PL_DATE_MIN_YEAR) * 12 + m - 1);
}

uint32_t pl_date_month_first(uint32_t month) {
  return pl_date_from_ymd((int)(month / 12) + PL_DATE_MIN_YEAR, (int)(month % 12) + 1, 1);
}

int pl_date_month_len(uint32_t month) {
  return month_len((int)(month / 12) + PL_DATE_MIN_YEAR, (int)(month % 12) + 1);
}

/* Day 0 (1900-01-01) is a Monday, so day % 7 is the ISO weekday minus one. */
void pl_date_iso_week(uint32_t day, int *iso_year, int *week) {
  int y, m, d;
  uint32_t thursday = day - day % 7 + 3; /* the Thursday of this ISO week decides its year */
  pl_date_to_ymd(thursday, &y, &m, &d);
  uint32_t jan1 = pl_date_from_ymd(y, 1, 1);
  *iso_year = y;
  *week = (int)((thursday - jan1) / 7) + 1;
}

uint32_t pl_date_period_start(pl_bucket_t b, uint32_t day) {
  int y, m, d;
  switch (b) {
    case PL_BUCKET_DAY:
      return day;
    case PL_BUCKET_WEEK:
      return day - day % 7;
    case PL_BUCKET_MONTH:
      pl_date_to_ymd(day, &y, &m, &d);
      return pl_date_from_ymd(y, m, 1);
    case PL_BUCKET_YEAR:
      pl_date_to_ymd(day, &y, &m, &d);
      return pl_date_from_ymd(y, 1, 1);
  }
  return day;
}

uint32_t pl_date_period_next(pl_bucket_t b, uint32_t start) {
  int y, m, d;
  switch (b) {
    case PL_BUCKET_DAY:
      return start + 1;
    case PL_BUCKET_WEEK:
      return start + 7;
    case PL_BUCKET_MONTH:
      pl_date_to_ymd(start, &y, &m, &d);
      return start + (uint32_t)month_len(y, m);
    case PL_BUCKET_YEAR:
      pl_date_to_ymd(start, &y, &m, &d);
      return start + (is_leap(y) ? 366u : 365u);
  }
  return start + 1;
}

void pl_date_period_label(pl_bucket_t b, uint32_t start, char out[11]) {
  int y, m, d, w;
  switch (b) {
    case PL_BUCKET_DAY:
      pl_date_format(start, out);
      return;
    case PL_BUCKET_WEEK:
      pl_date_iso_week(start, &y, &w);
      out = put_digits(out, y, 4);
      *out++ = '-';
      *out++ = 'W';
      *put_digits(out, w, 2) = 0;
      return;
    case PL_BUCKET_MONTH:
      pl_date_to_ymd(start, &y, &m, &d);
      out = put_digits(out, y, 4);
      *out++ = '-';
      *put_digits(out, m, 2) = 0;
      return;
    case PL_BUCKET_YEAR:
      pl_date_to_ymd(start, &y, &m, &d);
      *put_digits(out, y, 4) = 0;
      return;
  }
}

int pl_date_parse_bucket(const char *s, size_t n, pl_bucket_t *b) {
  static const struct {
    const char *name;
    pl_bucket_t b;
  } names[] = {{"day", PL_BUCKET_DAY},
               {"week", PL_BUCKET_WEEK},
               {"month", PL_BUCKET_MONTH},
               {"year", PL_BUCKET_YEAR}};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strlen(names[i].name) == n && memcmp(names[i].name, s, n) == 0) {
      *b = names[i].b;
      return 0;
    }
  return PL_EINVAL;
}
