/* A log-bucketed latency histogram in the manner of HdrHistogram: microsecond values,
 * exact below 128 us, then 64 sub-buckets per power of two (under 0.8% error), up to 10 s
 * (longer values land in the last bucket; the exact maximum is kept beside). */
#ifndef PARLEY_BENCH_HIST_H
#define PARLEY_BENCH_HIST_H

#include <stdint.h>

#define PB_HIST_MAX_US 10000000ull /* 10 s */
#define PB_HIST_BUCKETS (128 + 17 * 64)

typedef struct pb_hist {
  uint64_t count;
  uint64_t sum_us;
  uint64_t min_us, max_us; /* exact */
  uint64_t b[PB_HIST_BUCKETS];
} pb_hist_t;

void pb_hist_init(pb_hist_t *h);
void pb_hist_add(pb_hist_t *h, uint64_t us);
void pb_hist_add_ns(pb_hist_t *h, uint64_t ns);
void pb_hist_merge(pb_hist_t *into, const pb_hist_t *from);

/* The value at quantile q (0..1) in microseconds: the midpoint of the bucket holding it
 * (the exact maximum for q = 1). 0 when empty. */
double pb_hist_quantile_us(const pb_hist_t *h, double q);

#endif
