/* The option table and its parsers: defaults, INI file (inih) and flags all go through
 * set_option(), so a value is checked the same way wherever it comes from. */
#include "parley/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley/error.h"
#include "parley/log.h"

typedef enum { T_STR, T_BOOL, T_UINT, T_SIZE, T_DURATION, T_SYNC, T_LEVEL, T_USER } opt_type_t;

typedef struct opt {
  const char *section;
  const char *name;
  opt_type_t type;
  size_t offset;
  size_t size; /* for T_STR: the buffer size */
  uint64_t min, max;
  const char *def;
} opt_t;

#define OFF(f) offsetof(pl_config_t, f)
#define STR(f) OFF(f), sizeof(((pl_config_t *)0)->f)
#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define TiB (UINT64_C(1) << 40)
#define DAY_MS (UINT64_C(86400000))

/* Keep config/parleyd.conf and the README's configuration table in step with this. */
static const opt_t opts[] = {
    {"storage", "data_dir", T_STR, STR(data_dir), 1, 0, "./data"},
    {"storage", "sync", T_SYNC, OFF(sync_full), 0, 0, 1, "full"},
    {"storage", "map_size", T_SIZE, OFF(map_size), 0, MiB, 64 * TiB, "64MiB"},
    {"storage", "map_size_max", T_SIZE, OFF(map_size_max), 0, MiB, 64 * TiB, "1TiB"},
    {"storage", "batch_records", T_UINT, OFF(batch_records), 0, 1, 1000000, "10000"},
    {"storage", "batch_delay", T_DURATION, OFF(batch_delay_ms), 0, 0, 1000, "0ms"},
    {"storage", "chunk_retention", T_DURATION, OFF(chunk_retention_ms), 0, 1000, 30 * DAY_MS,
     "10m"},
    {"storage", "retention_days", T_UINT, OFF(retention_days), 0, 0, 36525, "0"},
    {"storage", "rollup_interval", T_DURATION, OFF(rollup_interval_ms), 0, 10, DAY_MS, "1s"},
    {"ingest", "listen", T_STR, STR(listen), 1, 0, "127.0.0.1:24224"},
    {"ingest", "max_connections", T_UINT, OFF(max_connections), 0, 1, 1000000, "4096"},
    {"ingest", "idle_timeout", T_DURATION, OFF(idle_timeout_ms), 0, 100, 7 * DAY_MS, "5m"},
    {"ingest", "record_max_bytes", T_SIZE, OFF(record_max_bytes), 0, 64, GiB, "1MiB"},
    {"ingest", "message_max_bytes", T_SIZE, OFF(message_max_bytes), 0, 64, 4 * GiB, "16MiB"},
    {"ingest", "inflight_max_bytes", T_SIZE, OFF(inflight_max_bytes), 0, 64 * KiB, 64 * GiB,
     "32MiB"},
    {"ingest", "buffer_max_bytes", T_SIZE, OFF(buffer_max_bytes), 0, 64 * KiB, 64 * GiB,
     "64MiB"},
    {"ingest", "write_queue_max_bytes", T_SIZE, OFF(write_queue_max_bytes), 0, 4 * KiB, GiB,
     "1MiB"},
    {"ingest", "max_depth", T_UINT, OFF(max_depth), 0, 4, 32, "32"},
    {"ingest", "shared_key", T_STR, STR(shared_key), 0, 0, ""},
    {"ingest", "self_hostname", T_STR, STR(self_hostname), 0, 0, ""},
    {"ingest", "user", T_USER, 0, 0, 0, 0, NULL},
    {"query", "listen", T_STR, STR(query_listen), 1, 0, "127.0.0.1:24225"},
    {"query", "max_request_bytes", T_SIZE, OFF(query_max_request_bytes), 0, 1 * KiB, GiB,
     "1MiB"},
    {"query", "max_connections", T_UINT, OFF(query_max_connections), 0, 1, 1000000, "1024"},
    {"http", "listen", T_STR, STR(http_listen), 1, 0, "127.0.0.1:24226"},
    {"http", "max_request_bytes", T_SIZE, OFF(http_max_request_bytes), 0, 1 * KiB, 64 * MiB,
     "16KiB"},
    {"http", "max_connections", T_UINT, OFF(http_max_connections), 0, 1, 1000000, "256"},
    {"log", "level", T_LEVEL, OFF(log_level), 0, 0, 0, "info"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

struct unit {
  const char *suffix;
  uint64_t mul;
};

static int parse_scaled(const char *s, uint64_t *out, const struct unit *units, size_t nunits) {
  char *end;
  unsigned long long v;
  if (!isdigit((unsigned char)*s)) return PL_EINVAL;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno) return PL_EINVAL;
  while (*end == ' ') end++;
  for (size_t i = 0; i < nunits; i++) {
    if (strcmp(end, units[i].suffix) == 0) {
      if (units[i].mul && v > UINT64_MAX / units[i].mul) return PL_EINVAL;
      *out = v * units[i].mul;
      return 0;
    }
  }
  return PL_EINVAL;
}

int pl_config_parse_size(const char *s, uint64_t *out) {
  static const struct unit units[] = {
      {"", 1},     {"B", 1},     {"k", KiB},   {"K", KiB},   {"KiB", KiB}, {"KB", KiB},
      {"M", MiB},  {"MiB", MiB}, {"MB", MiB},  {"G", GiB},   {"GiB", GiB}, {"GB", GiB},
      {"T", TiB},  {"TiB", TiB}, {"TB", TiB},
  };
  return parse_scaled(s, out, units, sizeof(units) / sizeof(units[0]));
}

int pl_config_parse_duration_ms(const char *s, uint64_t *out) {
  static const struct unit units[] = {
      {"ms", 1}, {"s", 1000}, {"", 1000}, {"m", 60000}, {"h", 3600000}, {"d", DAY_MS},
  };
  return parse_scaled(s, out, units, sizeof(units) / sizeof(units[0]));
}

static int set_option(pl_config_t *cfg, const opt_t *o, const char *value, char *err,
                      size_t errlen) {
  char *field = (char *)cfg + o->offset;
  uint64_t v = 0;
  int rc;

  switch (o->type) {
    case T_STR:
      if (strlen(value) >= o->size) {
        snprintf(err, errlen, "%s.%s: value longer than %zu bytes", o->section, o->name,
                 o->size - 1);
        return PL_ECONFIG;
      }
      if (o->min && value[0] == '\0') {
        snprintf(err, errlen, "%s.%s: must not be empty", o->section, o->name);
        return PL_ECONFIG;
      }
      memcpy(field, value, strlen(value) + 1);
      return 0;
    case T_SYNC:
      if (strcmp(value, "full") == 0)
        *(int *)field = 1;
      else if (strcmp(value, "none") == 0)
        *(int *)field = 0;
      else {
        snprintf(err, errlen, "%s.%s: expected full or none, got \"%s\"", o->section, o->name,
                 value);
        return PL_ECONFIG;
      }
      return 0;
    case T_LEVEL:
      rc = pl_log_parse_level(value);
      if (rc < 0) {
        snprintf(err, errlen, "%s.%s: expected error, warn, info or debug, got \"%s\"",
                 o->section, o->name, value);
        return PL_ECONFIG;
      }
      *(int *)field = rc;
      return 0;
    case T_BOOL:
      if (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "on"))
        *(int *)field = 1;
      else if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "off"))
        *(int *)field = 0;
      else {
        snprintf(err, errlen, "%s.%s: expected yes or no, got \"%s\"", o->section, o->name,
                 value);
        return PL_ECONFIG;
      }
      return 0;
    case T_USER: {
      const char *colon = strchr(value, ':');
      pl_config_user_t *u;
      if (!colon || colon == value) {
        snprintf(err, errlen, "%s.%s: expected name:password", o->section, o->name);
        return PL_ECONFIG;
      }
      if (cfg->nusers >= PL_CONFIG_MAX_USERS) {
        snprintf(err, errlen, "%s.%s: at most %d users", o->section, o->name,
                 PL_CONFIG_MAX_USERS);
        return PL_ECONFIG;
      }
      u = &cfg->users[cfg->nusers];
      if ((size_t)(colon - value) >= sizeof(u->name) || strlen(colon + 1) >= sizeof(u->password)) {
        snprintf(err, errlen, "%s.%s: name or password too long", o->section, o->name);
        return PL_ECONFIG;
      }
      memcpy(u->name, value, (size_t)(colon - value));
      u->name[colon - value] = '\0';
      strcpy(u->password, colon + 1);
      cfg->nusers++;
      return 0;
    }
    case T_UINT:
    case T_SIZE:
    case T_DURATION:
      if (o->type == T_UINT) {
        char *end;
        errno = 0;
        if (!isdigit((unsigned char)value[0])) rc = PL_EINVAL;
        else {
          v = strtoull(value, &end, 10);
          rc = (errno || *end) ? PL_EINVAL : 0;
        }
      } else if (o->type == T_SIZE)
        rc = pl_config_parse_size(value, &v);
      else
        rc = pl_config_parse_duration_ms(value, &v);
      if (rc) {
        snprintf(err, errlen, "%s.%s: \"%s\" is not a %s", o->section, o->name, value,
                 o->type == T_UINT   ? "whole number"
                 : o->type == T_SIZE ? "size (e.g. 64MiB)"
                                     : "duration (e.g. 10s, 250ms)");
        return PL_ECONFIG;
      }
      if (v < o->min || v > o->max) {
        snprintf(err, errlen, "%s.%s: %s is outside %llu..%llu%s", o->section, o->name, value,
                 (unsigned long long)o->min, (unsigned long long)o->max,
                 o->type == T_SIZE ? " bytes" : o->type == T_DURATION ? " ms" : "");
        return PL_ECONFIG;
      }
      *(uint64_t *)field = v;
      return 0;
  }
  return PL_ECONFIG;
}

void pl_config_defaults(pl_config_t *cfg) {
  char err[256];
  memset(cfg, 0, sizeof(*cfg));
  for (size_t i = 0; i < NOPTS; i++)
    if (opts[i].def) {
      int rc = set_option(cfg, &opts[i], opts[i].def, err, sizeof(err));
      (void)rc;
      /* A default that fails its own bounds is a bug in the table. */
      if (rc) {
        fprintf(stderr, "parley: bad default: %s\n", err);
        abort();
      }
    }
}

static const opt_t *find(const char *section, const char *name) {
  for (size_t i = 0; i < NOPTS; i++)
    if (strcmp(opts[i].section, section) == 0 && strcmp(opts[i].name, name) == 0)
      return &opts[i];
  return NULL;
}

typedef struct load_ctx {
  pl_config_t *cfg;
  char *err;
  size_t errlen;
  int failed;
} load_ctx_t;

static int on_ini(void *user, const char *section, const char *name, const char *value) {
  load_ctx_t *ctx = user;
  const opt_t *o;
  if (ctx->failed) return 0;
  o = find(section, name);
  if (!o) {
    snprintf(ctx->err, ctx->errlen, "unknown option \"%s\" in section [%s]", name, section);
    ctx->failed = 1;
    return 0;
  }
  if (set_option(ctx->cfg, o, value, ctx->err, ctx->errlen)) {
    ctx->failed = 1;
    return 0;
  }
  return 1;
}

int pl_config_load(pl_config_t *cfg, const char *path, char *err, size_t errlen) {
  char msg[512] = "";
  load_ctx_t ctx = {cfg, msg, sizeof(msg), 0};
  int line = ini_parse(path, on_ini, &ctx);
  if (line == -1) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return PL_ECONFIG;
  }
  if (line == -2) {
    snprintf(err, errlen, "%s: out of memory", path);
    return PL_ECONFIG;
  }
  if (line > 0) {
    snprintf(err, errlen, "%s:%d: %s", path, line, msg[0] ? msg : "syntax error");
    return PL_ECONFIG;
  }
  return 0;
}

int pl_config_set(pl_config_t *cfg, const char *name, const char *value, char *err,
                  size_t errlen) {
  const char *dot = strchr(name, '.');
  const opt_t *hit = NULL;
  if (dot) {
    char section[64];
    size_t n = (size_t)(dot - name);
    if (n < sizeof(section)) {
      memcpy(section, name, n);
      section[n] = '\0';
      hit = find(section, dot + 1);
    }
  } else {
    for (size_t i = 0; i < NOPTS; i++) {
      if (strcmp(opts[i].name, name) != 0) continue;
      if (hit) {
        snprintf(err, errlen, "option \"%s\" is ambiguous: say %s.%s or %s.%s", name,
                 hit->section, name, opts[i].section, name);
        return PL_ECONFIG;
      }
      hit = &opts[i];
    }
  }
  if (!hit) {
    snprintf(err, errlen, "unknown option \"%s\"", name);
    return PL_ECONFIG;
  }
  return set_option(cfg, hit, value, err, errlen);
}

void pl_config_dump(const pl_config_t *cfg, char *buf, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < NOPTS && n < len; i++) {
    const opt_t *o = &opts[i];
    const char *field = (const char *)cfg + o->offset;
    int m = 0;
    switch (o->type) {
      case T_STR:
        m = snprintf(buf + n, len - n, "%s.%s = %s\n", o->section, o->name,
                     strcmp(o->name, "shared_key") == 0 && *field ? "(set)" : field);
        break;
      case T_SYNC:
        m = snprintf(buf + n, len - n, "%s.%s = %s\n", o->section, o->name,
                     *(const int *)field ? "full" : "none");
        break;
      case T_LEVEL:
        m = snprintf(buf + n, len - n, "%s.%s = %s\n", o->section, o->name,
                     pl_log_level_name(*(const int *)field));
        break;
      case T_BOOL:
        m = snprintf(buf + n, len - n, "%s.%s = %s\n", o->section, o->name,
                     *(const int *)field ? "yes" : "no");
        break;
      case T_USER:
        for (int u = 0; u < cfg->nusers && n < len; u++) {
          m = snprintf(buf + n, len - n, "%s.%s = %s:(set)\n", o->section, o->name,
                       cfg->users[u].name);
          if (m > 0) n += (size_t)m < len - n ? (size_t)m : len - n - 1;
        }
        m = 0;
        break;
      case T_UINT:
      case T_SIZE:
        m = snprintf(buf + n, len - n, "%s.%s = %llu\n", o->section, o->name,
                     (unsigned long long)*(const uint64_t *)field);
        break;
      case T_DURATION:
        m = snprintf(buf + n, len - n, "%s.%s = %llums\n", o->section, o->name,
                     (unsigned long long)*(const uint64_t *)field);
        break;
    }
    if (m > 0) n += (size_t)m < len - n ? (size_t)m : len - n - 1;
  }
}
