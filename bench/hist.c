/* Log-bucketed latency histogram (see hist.h): constant memory, O(1) add, quantiles by a
 * walk over 1,216 counters. */
#include "hist.h"

#include <string.h>

#define SUB 128u /* exact range, and twice the sub-buckets per power of two */
#define HALF 64u

static unsigned msb(uint64_t v) { return 63u - (unsigned)__builtin_clzll(v); }

static unsigned bucket_of(uint64_t us) {
  unsigned shift;
  if (us > PB_HIST_MAX_US) us = PB_HIST_MAX_US;
  if (us < SUB) return (unsigned)us;
  /* v >> shift lands in [64, 128): 6 bits of mantissa below the leading one. */
  shift = msb(us) - 6;
  return SUB + (shift - 1) * HALF + (unsigned)((us >> shift) - HALF);
}

/* Lowest value of a bucket, and its width. */
static void bucket_range(unsigned i, uint64_t *lo, uint64_t *width) {
  unsigned shift;
  if (i < SUB) {
    *lo = i;
    *width = 1;
    return;
  }
  shift = (i - SUB) / HALF + 1;
  *lo = (uint64_t)(HALF + (i - SUB) % HALF) << shift;
  *width = (uint64_t)1 << shift;
}

void pb_hist_init(pb_hist_t *h) {
  memset(h, 0, sizeof(*h));
  h->min_us = UINT64_MAX;
}

void pb_hist_add(pb_hist_t *h, uint64_t us) {
  h->b[bucket_of(us)]++;
  h->count++;
  h->sum_us += us;
  if (us < h->min_us) h->min_us = us;
  if (us > h->max_us) h->max_us = us;
}

void pb_hist_add_ns(pb_hist_t *h, uint64_t ns) { pb_hist_add(h, (ns + 500) / 1000); }

void pb_hist_merge(pb_hist_t *into, const pb_hist_t *from) {
  for (unsigned i = 0; i < PB_HIST_BUCKETS; i++) into->b[i] += from->b[i];
  into->count += from->count;
  into->sum_us += from->sum_us;
  if (from->min_us < into->min_us) into->min_us = from->min_us;
  if (from->max_us > into->max_us) into->max_us = from->max_us;
}

double pb_hist_quantile_us(const pb_hist_t *h, double q) {
  uint64_t rank, seen = 0;
  if (h->count == 0) return 0;
  if (q >= 1.0) return (double)h->max_us;
  /* The smallest value with at least q of the samples at or below it. */
  rank = (uint64_t)(q * (double)h->count);
  if ((double)rank < q * (double)h->count) rank++;
  if (rank == 0) rank = 1;
  for (unsigned i = 0; i < PB_HIST_BUCKETS; i++) {
    seen += h->b[i];
    if (seen >= rank) {
      uint64_t lo, width;
      double mid;
      bucket_range(i, &lo, &width);
      mid = width == 1 ? (double)lo : (double)lo + (double)(width - 1) / 2.0;
      /* The midpoint may overshoot the largest sample in a sparse top bucket. */
      if (mid > (double)h->max_us) mid = (double)h->max_us;
      if (mid < (double)h->min_us) mid = (double)h->min_us;
      return mid;
    }
  }
  return (double)h->max_us;
}
