/* Shared helpers of parley-bench: clocks, a growable byte buffer that msgpack-c can pack
 * into, command-line parsing, address parsing, and the one-line JSON result every
 * subcommand ends with (run.sh reads that line). */
#ifndef PARLEY_BENCH_H
#define PARLEY_BENCH_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "hist.h"

/* Monotonic clock in nanoseconds, and the wall clock in Unix milliseconds. */
uint64_t pb_now_ns(void);
uint64_t pb_wall_ms(void);

/* A growable buffer. pb_buf_write has msgpack_packer_write's signature. */
typedef struct pb_buf {
  char *p;
  size_t n, cap;
} pb_buf_t;

int pb_buf_reserve(pb_buf_t *b, size_t more);
int pb_buf_append(pb_buf_t *b, const void *p, size_t n);
int pb_buf_write(void *data, const char *p, size_t n);
void pb_buf_free(pb_buf_t *b);

/* Prints "parley-bench: <message>" to stderr and exits with status 1. */
void pb_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Command-line options: a table of (name, kind, destination). Unknown options, missing
 * values and bad numbers are fatal (pb_die) with a usage hint. */
typedef enum { PB_OPT_U64, PB_OPT_STR, PB_OPT_FLAG, PB_OPT_DOUBLE } pb_opt_kind_t;
typedef struct pb_opt {
  const char *name; /* "--events" */
  pb_opt_kind_t kind;
  void *dst; /* uint64_t *, const char **, int *, double * */
} pb_opt_t;
void pb_parse_opts(const char *cmd, int argc, char **argv, const pb_opt_t *opts, size_t nopts,
                   const char *usage);

/* Resolves "HOST:PORT" (IPv4 literal, [IPv6] literal or "localhost"). Returns 0 or -1. */
int pb_parse_addr(const char *spec, struct sockaddr_storage *ss);

/* The closing line of every subcommand, exactly:
 *   {"events":N,"seconds":S,"events_per_s":R,"mb_per_s":M,"p50_ms":..,"p99_ms":..,
 *    "p999_ms":..,"max_ms":..}
 * Latency fields are null when h is NULL or empty (nothing was measured). */
void pb_print_result(uint64_t events, double seconds, double mb, const pb_hist_t *h);

/* Human-readable latency summary on one line: "p50 1.234 p99 ... max ... ms". */
void pb_print_latency(const char *label, const pb_hist_t *h);

/* Formats n with thousands separators into out (at least 32 bytes); returns out. */
const char *pb_fmt_count(double n, char *out);

/* Subcommands. Each returns the process exit status. */
int pb_cmd_gen(int argc, char **argv);
int pb_cmd_ingest(int argc, char **argv);
int pb_cmd_query(int argc, char **argv);
int pb_cmd_limit(int argc, char **argv);
int pb_cmd_redis(int argc, char **argv);

#endif
