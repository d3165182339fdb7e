/* Leveled logging to stderr, one fixed line format:
 *   2026-11-28T19:15:34.123Z parleyd[1234] W message
 * The level is checked before the arguments are formatted. Thread-safe: each line is
 * written with a single write(2). Only edge modules (main, ingest, qserver, http) log;
 * readers and the store return codes instead. */
#ifndef PARLEY_LOG_H
#define PARLEY_LOG_H

enum pl_log_level {
  PL_LOG_ERROR = 0,
  PL_LOG_WARN = 1,
  PL_LOG_INFO = 2,
  PL_LOG_DEBUG = 3
};

/* Current threshold; lines above it are skipped. Set with pl_log_set_level(). */
extern int pl_log_threshold;

#define pl_log(level, ...)                     \
  do {                                         \
    if ((int)(level) <= pl_log_threshold)      \
      pl_log_write((level), __VA_ARGS__);      \
  } while (0)

#define pl_log_error(...) pl_log(PL_LOG_ERROR, __VA_ARGS__)
#define pl_log_warn(...) pl_log(PL_LOG_WARN, __VA_ARGS__)
#define pl_log_info(...) pl_log(PL_LOG_INFO, __VA_ARGS__)
#define pl_log_debug(...) pl_log(PL_LOG_DEBUG, __VA_ARGS__)

/* Formats and writes one line (a trailing newline is added). */
void pl_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets the program name shown in each line (default "parley"). name must outlive logging. */
void pl_log_set_ident(const char *name);

/* Parses "error", "warn", "info" or "debug". Returns the level or PL_EINVAL. */
int pl_log_parse_level(const char *name);

/* Returns the name of a level. */
const char *pl_log_level_name(int level);

#endif
