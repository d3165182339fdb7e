/* Group commit: a thread that drains a queue of batches into LMDB transactions and hands
 * completed batches back to the libuv loop through a uv_async_t. The loop never waits on
 * the disk; this thread never touches a socket. */
#include "parley/writer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parley/error.h"
#include "parley/log.h"

#define MAINTAIN_SLICE 5000 /* raw events deleted per retention transaction */

struct pl_writer {
  pl_store_t *store;
  uv_loop_t *loop;
  uv_async_t async;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pl_writer_opts_t opts;
  /* protected by mu */
  pl_batch_t *qhead, *qtail; /* submitted, not yet taken by the thread */
  uint32_t qitems;
  pl_batch_t *dhead, *dtail; /* completed, waiting for the loop */
  int stopping;
  int exited;
  pl_writer_stats_t stats;
  /* loop thread only */
  pl_writer_drain_cb drain_cb;
  void *drain_arg;
  pl_writer_stopped_cb stopped_cb;
  void *stopped_arg;
  int joined;
  /* writer thread only */
  pl_batch_t **group;
  size_t group_cap;
  uint64_t map_grows_seen;
  int failing;
};

static uint64_t now_ns(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int log2_bucket(uint64_t v) {
  int b = 0;
  while (v && b < PL_WRITER_HIST - 1) {
    v >>= 1;
    b++;
  }
  return b;
}

/* Logs what an operator must know: the map grew, commits started or stopped failing. */
static void report(pl_writer_t *w, int rc, size_t batches, uint32_t items) {
  pl_store_info_t info;
  pl_store_get_info(w->store, &info);
  if (info.map_grows != w->map_grows_seen) {
    w->map_grows_seen = info.map_grows;
    pl_log_info("storage: map grown to %llu MiB (limit %llu MiB)",
                (unsigned long long)(info.map_size >> 20),
                (unsigned long long)(info.map_size_max >> 20));
  }
  if (rc && !w->failing) {
    pl_log_error("storage: commit of %zu batches (%u records) failed: %s; nothing of them is "
                 "acknowledged, clients will resend",
                 batches, items, pl_strerror(rc));
  } else if (!rc && w->failing) {
    pl_log_info("storage: commits succeed again");
  }
  w->failing = rc != 0;
}

static void *writer_main(void *arg) {
  pl_writer_t *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    size_t n = 0;
    uint32_t items = 0;
    uint64_t bytes = 0;
    while (!w->qhead && !w->stopping) {
      /* Idle: do a slice of background upkeep (retention), one small transaction at a time
       * so a batch that arrives meanwhile waits for at most one of them. */
      int more = 0;
      pthread_mutex_unlock(&w->mu);
      int rc = pl_store_maintain(w->store, MAINTAIN_SLICE, &more);
      pthread_mutex_lock(&w->mu);
      if (rc) w->stats.maintain_errors++;
      if (more && !rc) continue;
      if (w->qhead || w->stopping) break;
      struct timespec until;
      uint64_t t = now_ns(CLOCK_MONOTONIC) + 1000000000ull;
      until.tv_sec = (time_t)(t / 1000000000ull);
      until.tv_nsec = (long)(t % 1000000000ull);
      pthread_cond_timedwait(&w->cv, &w->mu, &until);
    }
    if (!w->qhead) break; /* stopping and drained */
    if (w->opts.batch_delay_ms && w->qitems < w->opts.batch_records && !w->stopping) {
      /* Let a commit fill: one fsync for many small messages beats one each. */
      struct timespec until;
      uint64_t t = now_ns(CLOCK_MONOTONIC) + (uint64_t)w->opts.batch_delay_ms * 1000000ull;
      until.tv_sec = (time_t)(t / 1000000000ull);
      until.tv_nsec = (long)(t % 1000000000ull);
      while (w->qitems < w->opts.batch_records && !w->stopping)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) != 0) break;
    }
    /* Take whole batches (a batch is all-or-nothing) until the commit is full. */
    while (w->qhead && (n == 0 || items + pl_batch_items(w->qhead) <= w->opts.batch_records)) {
      pl_batch_t *b = w->qhead;
      if (n == w->group_cap) {
        size_t cap = w->group_cap ? w->group_cap * 2 : 64;
        pl_batch_t **g = realloc(w->group, cap * sizeof(*g));
        if (!g) break;
        w->group = g;
        w->group_cap = cap;
      }
      w->qhead = b->next;
      if (!w->qhead) w->qtail = NULL;
      b->next = NULL;
      items += pl_batch_items(b);
      bytes += pl_batch_bytes(b);
      w->group[n++] = b;
    }
    w->qitems -= items;
    pthread_mutex_unlock(&w->mu);

    if (n == 0) {
      /* Out of memory for the group array: fail the head batch rather than spin. */
      pthread_mutex_lock(&w->mu);
      pl_batch_t *b = w->qhead;
      if (b) {
        w->qhead = b->next;
        if (!w->qhead) w->qtail = NULL;
        w->qitems -= pl_batch_items(b);
        w->stats.queued_bytes -= pl_batch_bytes(b);
        w->stats.queued_batches--;
        b->status = PL_ENOMEM;
        b->next = NULL;
        if (w->dtail) w->dtail->next = b;
        else w->dhead = b;
        w->dtail = b;
      }
      pthread_mutex_unlock(&w->mu);
      uv_async_send(&w->async);
      pthread_mutex_lock(&w->mu);
      continue;
    }

    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    int rc = pl_store_commit(w->store, w->group, n, now_ns(CLOCK_REALTIME) / 1000000ull);
    uint64_t us = (now_ns(CLOCK_MONOTONIC) - t0) / 1000;
    report(w, rc, n, items);
    /* Under steady load the writer is never idle: fold month rollups on a schedule too. The
     * completions wait for it, so it runs after they are handed over (below). */
    int fold = rc == 0 && pl_store_refresh_due(w->store, now_ns(CLOCK_MONOTONIC) / 1000000ull);

    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < n; i++) {
      if (w->dtail) w->dtail->next = w->group[i];
      else w->dhead = w->group[i];
      w->dtail = w->group[i];
    }
    w->stats.last_failed = rc != 0;
    if (rc == 0) {
      w->stats.commits++;
      w->stats.items += items;
    } else {
      w->stats.commit_errors++;
    }
    w->stats.commit_us_sum += us;
    w->stats.commit_us_hist[log2_bucket(us / 16)]++;
    w->stats.batch_items_hist[log2_bucket(items)]++;
    w->stats.queued_bytes -= bytes;
    w->stats.queued_batches -= n;
    pthread_mutex_unlock(&w->mu);
    uv_async_send(&w->async);
    if (fold && pl_store_refresh(w->store) != 0) {
      pthread_mutex_lock(&w->mu);
      w->stats.maintain_errors++;
      pthread_mutex_unlock(&w->mu);
    }
    pthread_mutex_lock(&w->mu);
  }
  /* Leave the month rollups current for the next start (a crash would recompute them). */
  pthread_mutex_unlock(&w->mu);
  if (pl_store_refresh(w->store) != 0) pl_log_warn("storage: folding month rollups at exit failed");
  pthread_mutex_lock(&w->mu);
  w->exited = 1;
  pthread_mutex_unlock(&w->mu);
  uv_async_send(&w->async);
  return NULL;
}

static void on_closed(uv_handle_t *h) {
  pl_writer_t *w = h->data;
  pl_writer_stopped_cb cb = w->stopped_cb;
  void *arg = w->stopped_arg;
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w->group);
  free(w);
  if (cb) cb(arg);
}

static void on_async(uv_async_t *h) {
  pl_writer_t *w = h->data;
  pl_batch_t *done;
  int exited;
  pthread_mutex_lock(&w->mu);
  done = w->dhead;
  w->dhead = w->dtail = NULL;
  exited = w->exited;
  pthread_mutex_unlock(&w->mu);
  while (done) {
    pl_batch_t *next = done->next;
    done->next = NULL;
    done->done(done);
    done = next;
  }
  if (w->drain_cb) w->drain_cb(w->drain_arg);
  if (exited && !w->joined) {
    w->joined = 1;
    pthread_join(w->thread, NULL);
    uv_close((uv_handle_t *)&w->async, on_closed);
  }
}

int pl_writer_start(pl_writer_t **out, uv_loop_t *loop, pl_store_t *store,
                    const pl_writer_opts_t *opts) {
  pl_writer_t *w = calloc(1, sizeof(*w));
  int rc;
  if (!w) return PL_ENOMEM;
  w->store = store;
  w->loop = loop;
  w->opts = *opts;
  if (!w->opts.batch_records) w->opts.batch_records = 10000;
  pthread_mutex_init(&w->mu, NULL);
  {
    /* Waits measure time on the monotonic clock: a wall-clock step must not stall acks. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
  }
  rc = uv_async_init(loop, &w->async, on_async);
  if (rc) {
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    return rc;
  }
  w->async.data = w;
  rc = pthread_create(&w->thread, NULL, writer_main, w);
  if (rc) {
    w->joined = 1;
    uv_close((uv_handle_t *)&w->async, on_closed);
    return -rc;
  }
  *out = w;
  return 0;
}

void pl_writer_submit(pl_writer_t *w, pl_batch_t *b) {
  b->next = NULL;
  b->submitted_ns = now_ns(CLOCK_MONOTONIC);
  pthread_mutex_lock(&w->mu);
  if (w->stopping) {
    b->status = PL_ECLOSED;
    if (w->dtail) w->dtail->next = b;
    else w->dhead = b;
    w->dtail = b;
    pthread_mutex_unlock(&w->mu);
    uv_async_send(&w->async);
    return;
  }
  if (w->qtail) w->qtail->next = b;
  else w->qhead = b;
  w->qtail = b;
  w->qitems += pl_batch_items(b);
  w->stats.queued_bytes += pl_batch_bytes(b);
  w->stats.queued_batches++;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

uint64_t pl_writer_queued_bytes(const pl_writer_t *w) {
  uint64_t v;
  pthread_mutex_lock((pthread_mutex_t *)&w->mu);
  v = w->stats.queued_bytes;
  pthread_mutex_unlock((pthread_mutex_t *)&w->mu);
  return v;
}

void pl_writer_on_drain(pl_writer_t *w, pl_writer_drain_cb cb, void *arg) {
  w->drain_cb = cb;
  w->drain_arg = arg;
}

void pl_writer_stop(pl_writer_t *w, pl_writer_stopped_cb cb, void *arg) {
  w->stopped_cb = cb;
  w->stopped_arg = arg;
  pthread_mutex_lock(&w->mu);
  w->stopping = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

void pl_writer_get_stats(pl_writer_t *w, pl_writer_stats_t *st) {
  pthread_mutex_lock(&w->mu);
  *st = w->stats;
  pthread_mutex_unlock(&w->mu);
}
