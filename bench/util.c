/* parley-bench helpers: clocks, buffers, option parsing, addresses and result lines. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "bench.h"
#include "parley/error.h"

uint64_t pb_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t pb_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

int pb_buf_reserve(pb_buf_t *b, size_t more) {
  size_t cap;
  char *p;
  if (b->cap - b->n >= more) return 0;
  cap = b->cap ? b->cap : 4096;
  while (cap - b->n < more) cap *= 2;
  p = realloc(b->p, cap);
  if (!p) return PL_ENOMEM;
  b->p = p;
  b->cap = cap;
  return 0;
}

int pb_buf_append(pb_buf_t *b, const void *p, size_t n) {
  if (pb_buf_reserve(b, n)) return PL_ENOMEM;
  if (n) memcpy(b->p + b->n, p, n);
  b->n += n;
  return 0;
}

int pb_buf_write(void *data, const char *p, size_t n) { return pb_buf_append(data, p, n); }

void pb_buf_free(pb_buf_t *b) {
  free(b->p);
  memset(b, 0, sizeof(*b));
}

void pb_die(const char *fmt, ...) {
  va_list ap;
  fputs("parley-bench: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

void pb_parse_opts(const char *cmd, int argc, char **argv, const pb_opt_t *opts, size_t nopts,
                   const char *usage) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    size_t k;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, stdout);
      exit(0);
    }
    for (k = 0; k < nopts; k++)
      if (strcmp(a, opts[k].name) == 0) break;
    if (k == nopts) {
      fputs(usage, stderr);
      pb_die("%s: unknown option \"%s\"", cmd, a);
    }
    if (opts[k].kind == PB_OPT_FLAG) {
      *(int *)opts[k].dst = 1;
      continue;
    }
    if (i + 1 >= argc) pb_die("%s: %s needs a value", cmd, a);
    const char *v = argv[++i];
    char *end;
    errno = 0;
    switch (opts[k].kind) {
      case PB_OPT_U64: {
        /* Accept 10000000, 10M, 10k and 1e7: benchmark sizes are easier to read that way. */
        double d = strtod(v, &end);
        if (end == v || errno || d < 0) pb_die("%s: %s: not a number: \"%s\"", cmd, a, v);
        if (*end == 'k' || *end == 'K') d *= 1e3, end++;
        else if (*end == 'M') d *= 1e6, end++;
        else if (*end == 'G') d *= 1e9, end++;
        if (*end) pb_die("%s: %s: not a number: \"%s\"", cmd, a, v);
        *(uint64_t *)opts[k].dst = (uint64_t)(d + 0.5);
        break;
      }
      case PB_OPT_DOUBLE: {
        double d = strtod(v, &end);
        if (end == v || *end || errno) pb_die("%s: %s: not a number: \"%s\"", cmd, a, v);
        *(double *)opts[k].dst = d;
        break;
      }
      case PB_OPT_STR:
        *(const char **)opts[k].dst = v;
        break;
      case PB_OPT_FLAG:
        break;
    }
  }
}

int pb_parse_addr(const char *spec, struct sockaddr_storage *ss) {
  char host[256];
  const char *colon;
  size_t hn;
  long port;
  char *end;
  if (spec[0] == '[') {
    const char *close = strchr(spec, ']');
    if (!close || close[1] != ':') return -1;
    hn = (size_t)(close - spec - 1);
    if (hn >= sizeof(host)) return -1;
    memcpy(host, spec + 1, hn);
    colon = close + 1;
  } else {
    colon = strrchr(spec, ':');
    if (!colon) return -1;
    hn = (size_t)(colon - spec);
    if (hn >= sizeof(host)) return -1;
    memcpy(host, spec, hn);
  }
  host[hn] = '\0';
  port = strtol(colon + 1, &end, 10);
  if (*end || port <= 0 || port > 65535) return -1;
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return -1;
}

static void print_ms(const char *name, const pb_hist_t *h, double q) {
  if (!h || h->count == 0)
    printf(",\"%s\":null", name);
  else
    printf(",\"%s\":%.3f", name, pb_hist_quantile_us(h, q) / 1000.0);
}

void pb_print_result(uint64_t events, double seconds, double mb, const pb_hist_t *h) {
  double rate = seconds > 0 ? (double)events / seconds : 0;
  printf("{\"events\":%llu,\"seconds\":%.3f,\"events_per_s\":%.0f,\"mb_per_s\":%.1f",
         (unsigned long long)events, seconds, rate, seconds > 0 ? mb / seconds : 0);
  print_ms("p50_ms", h, 0.5);
  print_ms("p99_ms", h, 0.99);
  print_ms("p999_ms", h, 0.999);
  print_ms("max_ms", h, 1.0);
  printf("}\n");
  fflush(stdout);
}

void pb_print_latency(const char *label, const pb_hist_t *h) {
  if (h->count == 0) {
    printf("  %s: none measured\n", label);
    return;
  }
  printf("  %s ms: p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (mean %.3f, n %llu)\n", label,
         pb_hist_quantile_us(h, 0.5) / 1000.0, pb_hist_quantile_us(h, 0.99) / 1000.0,
         pb_hist_quantile_us(h, 0.999) / 1000.0, (double)h->max_us / 1000.0,
         (double)h->sum_us / (double)h->count / 1000.0, (unsigned long long)h->count);
}

const char *pb_fmt_count(double n, char *out) {
  char tmp[32];
  int len = snprintf(tmp, sizeof(tmp), "%.0f", n), o = 0;
  for (int i = 0; i < len; i++) {
    if (i > 0 && (len - i) % 3 == 0 && tmp[i - 1] != '-') out[o++] = ',';
    out[o++] = tmp[i];
  }
  out[o] = '\0';
  return out;
}
