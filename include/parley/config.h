/* parleyd configuration: one table of options (section, name, type, bounds, default),
 * filled from defaults, then an INI file (config/parleyd.conf), then command-line flags.
 * Sizes take suffixes (KiB, MiB, GiB, TiB or k, M, G, T); durations take ms, s, m, h. */
#ifndef PARLEY_CONFIG_H
#define PARLEY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define PL_CONFIG_STR_MAX 1024
#define PL_CONFIG_MAX_USERS 16

typedef struct pl_config_user {
  char name[128];
  char password[256];
} pl_config_user_t;

typedef struct pl_config {
  /* [storage] */
  char data_dir[PL_CONFIG_STR_MAX];
  int sync_full;               /* sync = full | none */
  uint64_t map_size;           /* initial LMDB map size, bytes */
  uint64_t map_size_max;       /* the map grows on demand up to this, bytes */
  uint64_t batch_records;      /* most records committed in one transaction */
  uint64_t batch_delay_ms;     /* how long the writer waits to fill a commit */
  uint64_t chunk_retention_ms; /* how long Forward chunk ids are remembered */
  uint64_t retention_days;     /* raw events older than this are deleted; 0 keeps all */
  uint64_t rollup_interval_ms; /* month rollups are folded at least this often */
  /* [ingest] */
  char listen[PL_CONFIG_STR_MAX];
  uint64_t max_connections;
  uint64_t idle_timeout_ms;
  uint64_t record_max_bytes;
  uint64_t message_max_bytes;
  uint64_t inflight_max_bytes; /* bytes queued for the writer before reading pauses */
  uint64_t buffer_max_bytes;   /* all connection read buffers together */
  uint64_t write_queue_max_bytes;
  uint64_t max_depth;
  char shared_key[PL_CONFIG_STR_MAX];
  char self_hostname[256];
  pl_config_user_t users[PL_CONFIG_MAX_USERS];
  int nusers;
  /* [query] */
  char query_listen[PL_CONFIG_STR_MAX];
  uint64_t query_max_request_bytes;
  uint64_t query_max_connections;
  /* [http] */
  char http_listen[PL_CONFIG_STR_MAX]; /* "none" turns HTTP off */
  uint64_t http_max_request_bytes;
  uint64_t http_max_connections;
  /* [log] */
  int log_level;
} pl_config_t;

/* Fills cfg with every option's default. */
void pl_config_defaults(pl_config_t *cfg);

/* Reads an INI file over cfg. Returns 0, or PL_ECONFIG with "file:line: message" (or
 * "file: message" when it cannot be opened) in err. Unknown sections and keys are errors. */
int pl_config_load(pl_config_t *cfg, const char *path, char *err, size_t errlen);

/* Sets one option by name: "section.name" or the bare name when it is unique (flags use
 * this: --data-dir maps to "data_dir"). Returns 0, or PL_ECONFIG with a message in err. */
int pl_config_set(pl_config_t *cfg, const char *name, const char *value, char *err, size_t errlen);

/* Writes every option with its current value, one "section.name = value" per line. */
void pl_config_dump(const pl_config_t *cfg, char *buf, size_t len);

/* Parses a size ("64MiB", "1G", "4096") or a duration ("10s", "250ms", "5m") into bytes
 * or milliseconds. Return 0 or PL_EINVAL. */
int pl_config_parse_size(const char *s, uint64_t *out);
int pl_config_parse_duration_ms(const char *s, uint64_t *out);

#endif
