/* Query ops (SPEC "Query protocol"): each request map is answered from one short LMDB read
 * transaction, opened and ended inside pl_query_exec. No I/O, no clock: dates default to
 * what the store holds, and the caller passes the few live figures (connections, uptime). */
#ifndef PARLEY_QUERY_H
#define PARLEY_QUERY_H

#include <msgpack.h>
#include <stdint.h>

#include "parley/store.h"

#define PL_QUERY_MAX_LIMIT 1000         /* top, topics, institutions */
#define PL_QUERY_MAX_EVENTS_LIMIT 10000 /* events, rejects */
#define PL_QUERY_MAX_PERIODS 10000      /* series rows */
#define PL_QUERY_MAX_WINDOW 36525       /* days */
/* A page of events or rejects stops early (with a next cursor) once its rows hold this
 * many bytes, so one request cannot build a reply of gigabytes. */
#define PL_QUERY_MAX_REPLY_BYTES (16u << 20)

/* Live figures the store cannot know. */
typedef struct pl_query_env {
  const char *version;   /* parley version string */
  uint64_t connections;  /* open client connections (ingest + query + http) */
  uint64_t uptime_s;
  int no_wait;           /* an event loop's thread: never wait for the store's map resize */
} pl_query_env_t;

/* Error codes of the protocol, as strings in replies. */
typedef enum {
  PL_QERR_BAD_REQUEST = 0,
  PL_QERR_UNKNOWN_OP,
  PL_QERR_NOT_FOUND,
  PL_QERR_TOO_LARGE,
  PL_QERR_UNAVAILABLE,
  PL_QERR_INTERNAL
} pl_qerr_t;
const char *pl_query_errcode(pl_qerr_t e);

/* Answers one request. req is the decoded request (any object: a non-map gets a
 * bad_request reply). Packs exactly one reply map into pk:
 *   {"req": <req's "req" value or nil>, "ok": true, "result": {...}}
 *   {"req": ..., "ok": false, "error": {"code": str, "message": str}}
 * Returns 0 when a reply was packed (errors included), PL_ENOMEM when packing failed, or,
 * with env->no_wait, PL_EAGAIN while the store's map is being resized (nothing packed:
 * run it again where waiting is fine). */
int pl_query_exec(pl_store_t *s, const pl_query_env_t *env, const msgpack_object *req,
                  msgpack_packer *pk);

/* Packs an error reply for a request that could not be decoded at all (the server uses
 * this for oversized or malformed frames). req may be NULL. */
int pl_query_pack_error(msgpack_packer *pk, const msgpack_object *req, pl_qerr_t code,
                        const char *message);

/* Returns the op name of a request ("" when none), for metrics labels; points into req. */
pl_str_t pl_query_op_name(const msgpack_object *req);

/* Returns 1 when req reads a bounded number of aggregate rows (ping, stats, activity over
 * at most PL_QUERY_LIGHT_WINDOW days, series over a from..to range that short with at most
 * one filter, pair over at most PL_QUERY_LIGHT_PAIR_DAYS while at most
 * PL_QUERY_LIGHT_PAIR_STALE months are stale), else 0. Their cost still grows with what one
 * institution's rows hold (its counterparts, up to the dictionary), not with the number of
 * events. A server may run such a request where it read it, sparing the hand-off to a pool
 * thread; anything that scans (events, rejects, top, long ranges) goes to the pool. info is
 * the store's figures as the caller last read them (pl_store_get_info), or NULL (then no
 * pair is light): a pair's range defaults to the store's days. Reads only req and info. */
#define PL_QUERY_LIGHT_WINDOW 400
/* 20 years: ~240 pair-month rows, some 0.3 ms on the project's machine, about twice the
 * busiest institution's 365-day activity. A stale month is read as its ~30 day rows: a few
 * (the current month under live ingest) add a little; a backfill's hundreds would not. */
#define PL_QUERY_LIGHT_PAIR_DAYS 7305
#define PL_QUERY_LIGHT_PAIR_STALE 2
int pl_query_is_light(const msgpack_object *req, const pl_store_info_t *info);

/* Sets how much memory all threads together may keep of merged runs of whole months
 * (activity reuses them while the month rows are unchanged; 0 keeps none) and the fewest
 * merged entries worth keeping. Defaults: 8 MiB, 4096. Call before queries run. */
void pl_query_set_month_cache(size_t max_bytes, uint32_t min_entries);

#endif
