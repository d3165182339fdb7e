/* Calendar arithmetic on day numbers: day 0 is 1900-01-01 (a Monday), the last valid day
 * is 2199-12-31. Day numbers are what keys, aggregates and windows are made of; a u32 in
 * big-endian sorts in date order. Pure functions, no clock. */
#ifndef PARLEY_DATE_H
#define PARLEY_DATE_H

#include <stddef.h>
#include <stdint.h>

#define PL_DATE_MIN_YEAR 1900
#define PL_DATE_MAX_YEAR 2199
#define PL_DATE_LAST_DAY 109572u /* 2199-12-31 */
#define PL_DATE_LEN 10           /* "YYYY-MM-DD" */

/* Period buckets for series and streaks. */
typedef enum { PL_BUCKET_DAY, PL_BUCKET_WEEK, PL_BUCKET_MONTH, PL_BUCKET_YEAR } pl_bucket_t;

/* Parses exactly "YYYY-MM-DD" (n bytes, no NUL needed). Returns 0 and sets *day, PL_EINVAL
 * when the text is not of that form or not a real calendar date, PL_ERANGE when the year is
 * outside 1900..2199. */
int pl_date_parse(const char *s, size_t n, uint32_t *day);

/* Writes "YYYY-MM-DD" and a NUL into out (11 bytes). */
void pl_date_format(uint32_t day, char out[11]);

/* Converts a valid (y, m, d) to a day number; the caller has checked the ranges. */
uint32_t pl_date_from_ymd(int y, int m, int d);
void pl_date_to_ymd(uint32_t day, int *y, int *m, int *d);

/* The UTC date of a Unix time in seconds. Returns 0, or PL_ERANGE outside 1900..2199. */
int pl_date_from_unix(int64_t secs, uint32_t *day);

/* Month index ((year - 1900) * 12 + month - 1) of a day, and its first day and length. */
uint32_t pl_date_month(uint32_t day);
uint32_t pl_date_month_first(uint32_t month);
int pl_date_month_len(uint32_t month);

/* ISO 8601 week: the ISO year and week (1..53) holding day. */
void pl_date_iso_week(uint32_t day, int *iso_year, int *week);

/* First day of the bucket holding day (Monday for weeks; day 0 is a Monday, so a week
 * start is never before day 0). */
uint32_t pl_date_period_start(pl_bucket_t b, uint32_t day);
/* First day of the next bucket after the one starting at start. */
uint32_t pl_date_period_next(pl_bucket_t b, uint32_t start);
/* Label of the bucket starting at start: YYYY-MM-DD, YYYY-Www, YYYY-MM or YYYY.
 * Writes a NUL-terminated string into out (at least 11 bytes). */
void pl_date_period_label(pl_bucket_t b, uint32_t start, char out[11]);
/* Parses "day", "week", "month", "year". Returns 0 or PL_EINVAL. */
int pl_date_parse_bucket(const char *s, size_t n, pl_bucket_t *b);

#endif
