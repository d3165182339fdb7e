/* Leveled logging: one line per call, one write(2) per line so threads never interleave. */
#include "parley/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "parley/error.h"

int pl_log_threshold = PL_LOG_INFO;
static const char *ident = "parley";

static const char level_chars[] = {'E', 'W', 'I', 'D'};
static const char *level_names[] = {"error", "warn", "info", "debug"};

void pl_log_set_ident(const char *name) { ident = name; }

int pl_log_parse_level(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, level_names[i]) == 0) return i;
  return PL_EINVAL;
}

const char *pl_log_level_name(int level) {
  return level >= 0 && level < 4 ? level_names[level] : "?";
}

void pl_log_write(int level, const char *fmt, ...) {
  char line[2048];
  struct timeval tv;
  struct tm tm;
  size_t n;
  int m;
  va_list ap;

  if (level < 0) level = 0;
  if (level > 3) level = 3;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
  m = snprintf(line + n, sizeof(line) - n, ".%03dZ %s[%d] %c ", (int)(tv.tv_usec / 1000),
               ident, (int)getpid(), level_chars[level]);
  if (m > 0) n += (size_t)m;
  va_start(ap, fmt);
  m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
  va_end(ap);
  if (m > 0) n += (size_t)m < sizeof(line) - n - 1 ? (size_t)m : sizeof(line) - n - 2;
  line[n++] = '\n';
  /* A short write to stderr is not worth retrying: logging must never block the loop. */
  if (write(STDERR_FILENO, line, n) < 0) {
  }
}
