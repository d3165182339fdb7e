/* `parley-bench limit`: the storage ceiling. Records are validated into stored-form batches
 * before the clock starts; then only pl_store_commit is timed, with parleyd's tables, commit
 * size and sync mode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "gen.h"
#include "parley/batch.h"
#include "parley/config.h"
#include "parley/date.h"
#include "parley/error.h"
#include "parley/record.h"
#include "parley/store.h"

static const char limit_usage[] =
    "usage: parley-bench limit --dir DIR [--events N] [--batch B] [--message M] [--chunks]\n"
    "         [--sync full|none] [--seed S] [--per-day D] [--slab-mb MB] [--tag TAG]\n"
    "         [--trace FILE] [--quiet]\n"
    "Commits N generated records (default 1,000,000) into the store in DIR (created when\n"
    "missing; use an empty one) with B records a commit (10,000, parleyd's batch_records),\n"
    "fsync'd per commit under --sync full (the default). Records are grouped M to a batch\n"
    "(default B), as parleyd groups messages; --chunks gives each batch a chunk id, as acked\n"
    "messages have. Batches are built before the clock starts, at most --slab-mb (512) at a\n"
    "time; latency figures are per commit. --trace writes one CSV line per commit (number,\n"
    "last date, records, milliseconds, bytes written) to FILE. --per-day sets the generator's\n"
    "events a day (5,000): the query store of make bench uses N / 3,653 for ten years.\n";

typedef struct builder {
  pb_gen_t *gen;
  pb_buf_t rec;         /* one record as a client would send it */
  msgpack_sbuffer sb;   /* its stored form */
  msgpack_unpacked u;
  const char *tag;
  uint64_t received_ms;
  uint64_t record_bytes;
  pb_rng_t chunk_rng;
} builder_t;

/* Bytes this process has written through write(2) and friends so far (Linux), or 0. LMDB
 * writes every dirty page at commit, so the growth across a commit is its write volume. */
static uint64_t written_bytes(void) {
  char line[128];
  uint64_t v = 0;
  FILE *f = fopen("/proc/self/io", "r");
  if (!f) return 0;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "wchar: %llu", (unsigned long long *)&v) == 1) break;
  fclose(f);
  return v;
}

/* CPU time of this thread, ns: on a shared machine, commit CPU per record is steadier than
 * wall time, and wall minus CPU is time spent waiting for the disk (or for a core). */
static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int add_record(builder_t *bd, pl_batch_t *b, uint32_t *day) {
  pb_event_t e;
  msgpack_packer pk;
  pl_record_t rec;
  pl_record_meta_t meta;
  size_t off = 0;
  char why[160];
  int rc;
  pb_gen_next(bd->gen, &e);
  if (e.day > *day) *day = e.day;
  bd->rec.n = 0;
  msgpack_packer_init(&pk, &bd->rec, pb_buf_write);
  if ((rc = pb_gen_pack(bd->gen, &e, &pk))) return rc;
  bd->record_bytes += bd->rec.n;
  if (msgpack_unpack_next(&bd->u, bd->rec.p, bd->rec.n, &off) != MSGPACK_UNPACK_SUCCESS)
    return PL_EPROTO;
  if (pl_record_parse(&rec, &bd->u.data, e.time_sec, why, sizeof(why)))
    pb_die("limit: the generator made a record parleyd rejects: %s", why);
  meta.tag = pl_cstr(bd->tag);
  meta.time_sec = e.time_sec;
  meta.time_nsec = e.time_nsec;
  meta.received_ms = bd->received_ms;
  msgpack_sbuffer_clear(&bd->sb);
  msgpack_packer_init(&pk, &bd->sb, msgpack_sbuffer_write);
  if ((rc = pl_record_pack(&pk, &rec, &bd->u.data, &meta))) return rc;
  return pl_batch_add_record(b, &rec, bd->sb.data, bd->sb.size);
}

int pb_cmd_limit(int argc, char **argv) {
  const char *dir = NULL, *sync = "full", *tag = "parley.bench", *trace = NULL;
  uint64_t events = 1000000, batch = 10000, message = 0, seed = 1, slab_mb = 512, per_day = 0;
  int chunks = 0, quiet = 0;
  pb_opt_t opts[] = {{"--dir", PB_OPT_STR, &dir},         {"--events", PB_OPT_U64, &events},
                     {"--batch", PB_OPT_U64, &batch},     {"--message", PB_OPT_U64, &message},
                     {"--chunks", PB_OPT_FLAG, &chunks},  {"--sync", PB_OPT_STR, &sync},
                     {"--seed", PB_OPT_U64, &seed},       {"--slab-mb", PB_OPT_U64, &slab_mb},
                     {"--tag", PB_OPT_STR, &tag},         {"--quiet", PB_OPT_FLAG, &quiet},
                     {"--trace", PB_OPT_STR, &trace},       {"--per-day", PB_OPT_U64, &per_day}};
  pl_config_t cfg;
  pl_store_opts_t so;
  pl_store_t *store;
  pl_store_info_t info;
  pb_gen_opts_t go = {0, 0, 0, -1, -1};
  builder_t bd;
  pl_batch_t **batches = NULL;
  uint32_t *batch_day = NULL; /* latest date in each batch, for --trace */
  size_t nbatches = 0, per_commit;
  uint64_t left, stored = 0, dups = 0, commits = 0, gen_ns = 0, commit_ns = 0, wrote = 0,
           cpu_ns = 0;
  FILE *tf = NULL;
  pb_hist_t lat;
  char err[512], a[32], b[32];

  pb_parse_opts("limit", argc, argv, opts, sizeof(opts) / sizeof(opts[0]), limit_usage);
  if (!dir) pb_die("limit: --dir is required");
  if (strcmp(sync, "full") != 0 && strcmp(sync, "none") != 0)
    pb_die("limit: --sync: expected full or none");
  if (batch < 1 || batch > 10000000) pb_die("limit: --batch must be 1..10000000");
  if (message == 0 || message > batch) message = batch;
  per_commit = (size_t)((batch + message - 1) / message);

  /* parleyd's own defaults for the map and the chunk retention. */
  pl_config_defaults(&cfg);
  so.dir = dir;
  so.map_size = cfg.map_size;
  so.map_size_max = cfg.map_size_max;
  so.sync_full = strcmp(sync, "full") == 0;
  so.max_readers = 0;
  so.chunk_retention_ms = cfg.chunk_retention_ms;
  if (pl_store_open(&store, &so, err, sizeof(err))) pb_die("limit: %s", err);

  memset(&bd, 0, sizeof(bd));
  go.seed = seed;
  if (per_day > UINT32_MAX) pb_die("limit: --per-day must be below 2^32");
  go.per_day = (uint32_t)per_day;
  bd.gen = pb_gen_new(&go);
  if (!bd.gen) pb_die("limit: out of memory");
  bd.tag = tag;
  bd.received_ms = pb_wall_ms();
  bd.chunk_rng.s = pb_now_ns() ^ bd.received_ms;
  msgpack_sbuffer_init(&bd.sb);
  msgpack_unpacked_init(&bd.u);
  pb_hist_init(&lat);
  if (trace) {
    tf = fopen(trace, "w");
    if (!tf) pb_die("limit: cannot write %s", trace);
    fprintf(tf, "commit,date,records,ms,bytes_written\n");
  }

  left = events;
  while (left > 0) {
    /* Build a slab of commits (untimed). */
    uint64_t g0 = pb_now_ns(), bytes = 0;
    size_t used = 0;
    while (left > 0 && bytes < slab_mb * 1024 * 1024) {
      for (size_t k = 0; k < per_commit && left > 0; k++) {
        pl_batch_t *bt;
        if (used == nbatches) {
          pl_batch_t **v = realloc(batches, (nbatches + 1) * sizeof(*v));
          uint32_t *d = v ? realloc(batch_day, (nbatches + 1) * sizeof(*d)) : NULL;
          if (!v || !d || !(v[nbatches] = pl_batch_new())) pb_die("limit: out of memory");
          batches = v;
          batch_day = d;
          nbatches++;
        }
        batch_day[used] = 0;
        bt = batches[used++];
        pl_batch_reset(bt);
        if (chunks) {
          uint64_t id[2] = {pb_rng_next(&bd.chunk_rng), pb_rng_next(&bd.chunk_rng)};
          if (pl_batch_set_chunk(bt, id, sizeof(id))) pb_die("limit: out of memory");
        }
        for (uint64_t i = 0; i < message && left > 0; i++, left--)
          if (add_record(&bd, bt, &batch_day[used - 1]))
            pb_die("limit: out of memory building batches");
        bytes += pl_batch_bytes(bt);
      }
    }
    gen_ns += pb_now_ns() - g0;
    /* Commit it (timed), per_commit batches to a transaction as the writer groups them. */
    for (size_t i = 0; i < used; i += per_commit) {
      size_t n = used - i < per_commit ? used - i : per_commit;
      uint64_t w0 = written_bytes(), c0 = thread_cpu_ns(), t0 = pb_now_ns(), dt, w;
      int rc = pl_store_commit(store, batches + i, n, pb_wall_ms());
      dt = pb_now_ns() - t0;
      cpu_ns += thread_cpu_ns() - c0;
      w = written_bytes() - w0;
      if (rc) pb_die("limit: commit failed: %s", pl_strerror(rc));
      commit_ns += dt;
      wrote += w;
      pb_hist_add_ns(&lat, dt);
      commits++;
      if (tf) {
        uint32_t recs = 0, day = 0;
        char d[11];
        for (size_t k = i; k < i + n; k++) {
          recs += batches[k]->nrecords;
          if (batch_day[k] > day) day = batch_day[k];
        }
        pl_date_format(day, d);
        fprintf(tf, "%llu,%s,%u,%.3f,%llu\n", (unsigned long long)commits, d, recs,
                (double)dt / 1e6, (unsigned long long)w);
      }
      for (size_t k = i; k < i + n; k++) {
        stored += batches[k]->stored;
        dups += batches[k]->duplicates;
      }
      /* Fold month rollups on the daemon's schedule (its writer does it between commits). */
      if (pl_store_refresh_due(store, pb_now_ns() / 1000000)) {
        w0 = written_bytes();
        c0 = thread_cpu_ns();
        t0 = pb_now_ns();
        if ((rc = pl_store_refresh(store))) pb_die("limit: folding rollups failed: %s", pl_strerror(rc));
        commit_ns += pb_now_ns() - t0;
        cpu_ns += thread_cpu_ns() - c0;
        wrote += written_bytes() - w0;
      }
    }
  }
  {
    /* The last fold belongs to the work, as the daemon does it before it stops. */
    uint64_t w0 = written_bytes(), c0 = thread_cpu_ns(), t0 = pb_now_ns();
    int rc = pl_store_refresh(store);
    if (rc) pb_die("limit: folding rollups failed: %s", pl_strerror(rc));
    commit_ns += pb_now_ns() - t0;
    cpu_ns += thread_cpu_ns() - c0;
    wrote += written_bytes() - w0;
  }
  if (tf) fclose(tf);
  pl_store_get_info(store, &info);
  for (size_t i = 0; i < nbatches; i++) pl_batch_free(batches[i]);
  free(batches);
  free(batch_day);
  pl_store_close(store);

  if (!quiet) {
    double secs = (double)commit_ns / 1e9;
    printf("limit: %s records, %llu a commit (%zu batch%s of %llu), sync %s%s, into %s\n",
           pb_fmt_count((double)events, a), (unsigned long long)batch, per_commit,
           per_commit == 1 ? "" : "es", (unsigned long long)message, sync,
           chunks ? ", chunk ids" : "", dir);
    printf("  built in %.2f s untimed (%.1f bytes a record as sent); %s stored, %s duplicates\n",
           (double)gen_ns / 1e9, (double)bd.record_bytes / (double)(events ? events : 1),
           pb_fmt_count((double)stored, a), pb_fmt_count((double)dups, b));
    printf("  %llu commits in %.3f s: %s records/s, %.1f MB/s of records; store %.1f MB\n",
           (unsigned long long)commits, secs, pb_fmt_count((double)events / secs, a),
           (double)bd.record_bytes / 1e6 / secs, (double)info.used_bytes / 1e6);
    printf("  LMDB wrote %.1f MB at commit: %.0f bytes a record; commit CPU %.2f s (%.2f us a "
           "record), %.0f%% of the commit time\n",
           (double)wrote / 1e6, (double)wrote / (double)(events ? events : 1),
           (double)cpu_ns / 1e9, (double)cpu_ns / 1e3 / (double)(events ? events : 1),
           100.0 * (double)cpu_ns / (double)(commit_ns ? commit_ns : 1));
    pb_print_latency("commit", &lat);
  }
  pb_print_result(events, (double)commit_ns / 1e9, (double)bd.record_bytes / 1e6, &lat);
  msgpack_unpacked_destroy(&bd.u);
  msgpack_sbuffer_destroy(&bd.sb);
  pb_buf_free(&bd.rec);
  pb_gen_free(bd.gen);
  return 0;
}
