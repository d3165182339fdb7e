/* Forward protocol connections: read into the forward reader, turn each message into a
 * batch for the writer, ack after commit, and keep memory bounded (a shared buffer budget,
 * a writer backlog bound, a per-connection write queue bound, an idle timeout). */
#include "parley/ingest.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parley/batch.h"
#include "parley/error.h"
#include "parley/forward.h"
#include "parley/log.h"
#include "parley/net.h"
#include "parley/record.h"

#define READ_CHUNK (64 * 1024)

/* Reasons a connection is not reading (bits). */
enum {
  P_WRITEQ = 1,  /* the client is not reading its acks */
  P_BUDGET = 2,  /* the shared buffer budget is spent */
  P_DRAIN = 4,   /* shutting down, or closing after a last write */
};

/* base.holds counts the batches submitted and not completed. */
typedef struct conn {
  pl_conn_t base; /* first */
  pl_ingest_t *in;
  pl_fwd_reader_t *reader;
  size_t mem_counted; /* reader memory already counted in in->buffer_bytes */
  msgpack_sbuffer sb;
  pl_auth_t auth;
  unsigned pause;
  int authenticated;
  int eof;          /* the client half-closed: finish what arrived, then close */
  int close_after;  /* close once the write queue drains (after a failed PONG) */
} conn_t;

struct pl_ingest {
  uv_loop_t *loop;
  pl_writer_t *writer;
  pl_ingest_opts_t o;
  pl_listener_t listener;
  pl_conn_list_t conns;
  int paused;
  int stopping;
  uv_timer_t grace;
  int grace_open;
  int listener_closed;
  void (*stop_cb)(void *);
  void *stop_arg;
  pl_ingest_stats_t st;
};

static void update_reading(conn_t *c);
static void check_stopped(pl_ingest_t *in);

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Connections waiting for the buffer budget read again as soon as memory comes back. */
static void wake_budget_waiters(pl_ingest_t *in) {
  PL_CONN_EACH(conn_t, o, &in->conns) {
    if (in->st.buffer_bytes >= in->o.buffer_max_bytes) break;
    if (o->pause & P_BUDGET) {
      o->pause &= ~(unsigned)P_BUDGET;
      update_reading(o);
    }
  }
}

static void account_memory(conn_t *c) {
  size_t now = c->reader ? pl_fwd_reader_memory(c->reader) : 0;
  int shrank = now < c->mem_counted;
  c->in->st.buffer_bytes += now;
  c->in->st.buffer_bytes -= c->mem_counted;
  c->mem_counted = now;
  if (shrank) wake_budget_waiters(c->in);
}

static void on_free(pl_conn_t *base) {
  conn_t *c = (conn_t *)base;
  pl_ingest_t *in = c->in;
  msgpack_sbuffer_destroy(&c->sb);
  in->st.connections--;
  free(c);
  check_stopped(in);
}

static void on_close(pl_conn_t *base) {
  conn_t *c = (conn_t *)base;
  /* Buffers are not needed any more; in-flight batches own copies of their data. */
  if (c->reader) {
    pl_fwd_reader_free(c->reader);
    c->reader = NULL;
    account_memory(c);
  }
}

/* Closes once nothing is left to do: no batch in flight, no unwritten ack. */
static void maybe_finish(conn_t *c) {
  if ((c->eof || c->close_after || (c->pause & P_DRAIN)) && pl_conn_quiet(&c->base))
    pl_conn_close(&c->base);
}

static void update_reading(conn_t *c) {
  pl_conn_set_reading(&c->base, !c->eof && !c->close_after && !c->pause && !c->in->paused);
}

static void set_paused(pl_ingest_t *in, int paused) {
  if (in->paused == paused) return;
  in->paused = paused;
  in->st.paused = paused;
  if (paused) {
    in->st.pauses++;
    pl_log_debug("ingest: %llu bytes wait for the writer; pausing reads",
                 (unsigned long long)in->st.inflight_bytes);
  }
  PL_CONN_EACH(conn_t, c, &in->conns) update_reading(c);
}

void pl_ingest_writer_drained(pl_ingest_t *in) {
  if (in->paused && in->st.inflight_bytes <= in->o.inflight_max_bytes / 2) set_paused(in, 0);
}

static void on_written(pl_conn_t *base) {
  conn_t *c = (conn_t *)base;
  if ((c->pause & P_WRITEQ) && c->base.wq.pending <= c->in->o.write_queue_max_bytes / 2) {
    c->pause &= ~(unsigned)P_WRITEQ;
    update_reading(c);
  }
  maybe_finish(c);
}

static void send_bytes(conn_t *c, const void *p, size_t n) {
  if (pl_conn_send(&c->base, p, n) != 0) return;
  if (c->base.wq.pending > c->in->o.write_queue_max_bytes) {
    /* The client does not read what we send: stop reading from it too. */
    c->pause |= P_WRITEQ;
    update_reading(c);
  }
}

static void on_batch_done(pl_batch_t *b) {
  conn_t *c = b->data;
  pl_ingest_t *in = c->in;
  uint64_t us = (mono_ns() - b->submitted_ns) / 1000;
  int bucket = 0;
  in->st.acks_pending--;
  in->st.inflight_bytes -= pl_batch_bytes(b);
  if (b->status == 0) {
    in->st.records += b->stored;
    in->st.rejected += b->rejected;
    in->st.duplicates += b->duplicates + (b->chunk_seen ? 1 : 0);
    if (b->chunk && !c->base.closing) {
      /* {"ack": <chunk exactly as the client sent it>} in one write */
      char stack[600];
      size_t n = 5 + b->chunk_len;
      char *buf = n <= sizeof(stack) ? stack : malloc(n);
      if (buf) {
        memcpy(buf, "\x81\xa3" "ack", 5);
        memcpy(buf + 5, b->chunk, b->chunk_len);
        send_bytes(c, buf, n);
        if (buf != stack) free(buf);
        in->st.acks++;
        for (uint64_t v = us / 16; v && bucket < 23; v >>= 1) bucket++;
        in->st.ack_us_hist[bucket]++;
        in->st.ack_us_sum += us;
      }
    }
  } else {
    in->st.commit_failures++;
    if (!c->base.closing) {
      /* Nothing was stored and no ack will come: closing tells the client to resend now
       * instead of after its ack timeout. */
      pl_log_warn("ingest: %s: commit failed (%s); closing so the client resends", c->base.peer,
                  pl_strerror(b->status));
      pl_conn_close(&c->base);
    }
  }
  pl_batch_free(b);
  if (pl_conn_release(&c->base) == 0) maybe_finish(c);
}

static void handle_ping(conn_t *c, const pl_fwd_msg_t *m) {
  pl_ingest_t *in = c->in;
  msgpack_packer pk;
  char why[128];
  msgpack_sbuffer_clear(&c->sb);
  msgpack_packer_init(&pk, &c->sb, msgpack_sbuffer_write);
  if (pl_auth_check_ping(&c->auth, &in->o.auth, m, &pk, why, sizeof(why)) == 0) {
    c->authenticated = 1;
    pl_fwd_reader_expect_ping(c->reader, 0);
    send_bytes(c, c->sb.data, c->sb.size);
    pl_log_debug("ingest: %s: authenticated as %.*s", c->base.peer, (int)m->ping_hostname.n,
                 m->ping_hostname.p);
  } else {
    in->st.auth_failures++;
    pl_log_warn("ingest: %s: handshake failed: %s", c->base.peer, why);
    send_bytes(c, c->sb.data, c->sb.size);
    c->close_after = 1;
    update_reading(c);
  }
}

/* Turns one message into a batch and submits it. */
static int handle_message(conn_t *c, const pl_fwd_msg_t *m, uint64_t now) {
  pl_ingest_t *in = c->in;
  pl_batch_t *b;
  pl_fwd_entry_t e;
  char why[160];
  int rc;

  if (m->mode == PL_FWD_HEARTBEAT) return 0;
  if (m->mode == PL_FWD_PING) {
    handle_ping(c, m);
    return 0;
  }
  in->st.messages++;
  b = pl_batch_new();
  if (!b) return PL_ENOMEM;
  b->done = on_batch_done;
  b->data = c;
  if (m->chunk && (rc = pl_batch_set_chunk(b, m->chunk, m->chunk_len))) goto fail;
  while (pl_fwd_reader_entry(c->reader, &e) == 1) {
    pl_record_t rec;
    if (e.skip) continue;
    if (!e.record) {
      rc = pl_batch_add_reject(b, e.error, e.raw, e.raw_len, c->base.peer, now);
    } else if (pl_record_parse(&rec, e.record, e.sec, why, sizeof(why)) != 0) {
      rc = pl_batch_add_reject(b, why, e.raw, e.raw_len, c->base.peer, now);
    } else {
      msgpack_packer pk;
      pl_record_meta_t meta = {m->tag, e.sec, e.nsec, now};
      msgpack_sbuffer_clear(&c->sb);
      msgpack_packer_init(&pk, &c->sb, msgpack_sbuffer_write);
      rc = pl_record_pack(&pk, &rec, e.record, &meta);
      if (!rc) rc = pl_batch_add_record(b, &rec, c->sb.data, c->sb.size);
    }
    if (rc) goto fail;
  }
  if (pl_batch_items(b) == 0 && !b->chunk) {
    pl_batch_free(b); /* a message with no events and nothing to ack */
    return 0;
  }
  pl_conn_hold(&c->base);
  in->st.acks_pending++;
  in->st.inflight_bytes += pl_batch_bytes(b);
  pl_writer_submit(in->writer, b);
  if (in->st.inflight_bytes > in->o.inflight_max_bytes) set_paused(in, 1);
  return 0;
fail:
  pl_batch_free(b);
  return rc;
}

static void on_alloc(pl_conn_t *base, uv_buf_t *buf) {
  conn_t *c = (conn_t *)base;
  pl_ingest_t *in = c->in;
  char *p;
  size_t len;
  if (!c->reader) return;
  /* A connection that holds nothing yet may not take a fresh buffer from a spent budget;
   * one already mid-message may, so it can finish and give its memory back. */
  if (in->st.buffer_bytes >= in->o.buffer_max_bytes && pl_fwd_reader_pending(c->reader) == 0)
    return;
  if (pl_fwd_reader_space(c->reader, READ_CHUNK, &p, &len) != 0) return;
  account_memory(c);
  *buf = uv_buf_init(p, (unsigned)(len > UINT32_MAX ? UINT32_MAX : len));
}

static void on_read(pl_conn_t *base, ssize_t nread) {
  conn_t *c = (conn_t *)base;
  pl_ingest_t *in = c->in;
  pl_fwd_msg_t m;
  uint64_t now;
  int rc;

  if (nread == UV_ENOBUFS) {
    if (!c->reader) return;
    if (pl_fwd_reader_errstr(c->reader)[0]) {
      in->st.protocol_errors++;
      pl_log_warn("ingest: %s: closing: %s", c->base.peer, pl_fwd_reader_errstr(c->reader));
      pl_conn_close(&c->base);
    } else if (pl_fwd_reader_pending(c->reader) == 0) {
      c->pause |= P_BUDGET; /* resumed when another connection frees memory */
      update_reading(c);
    } else {
      in->st.protocol_errors++;
      pl_log_warn("ingest: %s: closing: message larger than message_max_bytes (%llu)",
                  c->base.peer, (unsigned long long)in->o.message_max_bytes);
      pl_conn_close(&c->base);
    }
    return;
  }
  if (nread < 0) {
    if (nread != UV_EOF) {
      pl_log_debug("ingest: %s: read error: %s", c->base.peer, uv_strerror((int)nread));
      pl_conn_close(&c->base);
      return;
    }
    /* Half-close: whatever complete messages arrived are committed and acked first. */
    if (c->reader && pl_fwd_reader_pending(c->reader))
      pl_log_warn("ingest: %s: closed with %zu bytes of an unfinished message, dropped",
                  c->base.peer, pl_fwd_reader_pending(c->reader));
    c->eof = 1;
    update_reading(c);
    maybe_finish(c);
    return;
  }
  if (nread == 0) return;
  pl_fwd_reader_wrote(c->reader, (size_t)nread);
  in->st.bytes_in += (uint64_t)nread;
  pl_conn_touch(&c->base);
  now = wall_ms();
  while ((rc = pl_fwd_reader_next(c->reader, &m)) == 1) {
    if (handle_message(c, &m, now) != 0) {
      pl_log_error("ingest: %s: out of memory building a batch; closing", c->base.peer);
      pl_conn_close(&c->base);
      return;
    }
    if (c->base.closing || c->close_after) break;
  }
  if (rc < 0) {
    in->st.protocol_errors++;
    pl_log_warn("ingest: %s: closing: %s", c->base.peer, pl_fwd_reader_errstr(c->reader));
    pl_conn_close(&c->base);
    return;
  }
  /* Give idle buffers back only when memory is tight; otherwise the idle timer does it, so a
   * busy connection does not reallocate its buffer (and inflater) on every read. */
  if (c->close_after) {
    maybe_finish(c); /* the failed PONG may already be written */
    return;
  }
  if (c->reader && in->st.buffer_bytes > in->o.buffer_max_bytes / 2 &&
      pl_fwd_reader_pending(c->reader) == 0)
    pl_fwd_reader_trim(c->reader);
  account_memory(c);
}

static void on_idle(pl_conn_t *base, uint64_t now) {
  conn_t *c = (conn_t *)base;
  if (c->reader && now - c->base.last_active >= 1000 && pl_fwd_reader_pending(c->reader) == 0 &&
      pl_fwd_reader_memory(c->reader) > 0) {
    pl_fwd_reader_trim(c->reader);
    account_memory(c);
  }
  /* Time spent waiting on us (commits, paused reads) is not the client's idleness. */
  if (c->base.holds || c->in->paused || (c->pause & P_BUDGET) ||
      now - c->base.last_active < c->in->o.idle_timeout_ms) {
    if (c->base.holds || c->in->paused || (c->pause & P_BUDGET)) c->base.last_active = now;
    return;
  }
  c->in->st.idle_closed++;
  pl_log_info("ingest: %s: idle for %llu ms; closing", c->base.peer,
              (unsigned long long)c->in->o.idle_timeout_ms);
  pl_conn_close(&c->base);
}

static const pl_conn_ops_t conn_ops = {on_alloc, on_read, on_written, on_idle, on_close, on_free};

static void on_connection(uv_stream_t *server, int status) {
  pl_fwd_reader_t *reader;
  pl_ingest_t *in = server->data;
  pl_fwd_limits_t lim;
  conn_t *c;
  char peer[96];
  if (status < 0) {
    pl_log_warn("ingest: accept failed: %s", uv_strerror(status));
    return;
  }
  if (in->stopping) return;
  if (in->st.connections >= in->o.max_connections) {
    in->st.refused++;
    if (pl_net_refuse(&in->listener, NULL, 0, peer, sizeof(peer)) == 0)
      pl_log_warn("ingest: %s: refused: %llu connections already open (max_connections)", peer,
                  (unsigned long long)in->st.connections);
    return;
  }
  lim.max_message = in->o.message_max_bytes;
  lim.max_record = in->o.record_max_bytes;
  lim.max_depth = in->o.max_depth;
  c = calloc(1, sizeof(*c));
  if (!c || !(c->reader = pl_fwd_reader_new(&lim))) {
    free(c);
    in->st.refused++;
    if (pl_net_refuse(&in->listener, NULL, 0, peer, sizeof(peer)) == 0)
      pl_log_error("ingest: %s: refused: out of memory", peer);
    return;
  }
  c->in = in;
  reader = c->reader; /* c may be freed by the time pl_conn_accept fails */
  if (pl_conn_accept(&in->conns, &in->listener, &c->base) != 0) {
    pl_fwd_reader_free(reader); /* c itself is freed by the base */
    return;
  }
  msgpack_sbuffer_init(&c->sb);
  in->st.connections++;
  in->st.accepted++;
  if (in->o.auth.shared_key && in->o.auth.shared_key[0]) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, &c->sb, msgpack_sbuffer_write);
    if (pl_auth_helo(&c->auth, &in->o.auth, &pk) != 0) {
      pl_log_error("ingest: %s: no randomness for the handshake; closing", c->base.peer);
      pl_conn_close(&c->base);
      return;
    }
    pl_fwd_reader_expect_ping(c->reader, 1);
    send_bytes(c, c->sb.data, c->sb.size);
  } else {
    c->authenticated = 1;
  }
  update_reading(c);
}

static void free_owner(uv_handle_t *h) { free(h->data); }

int pl_ingest_start(pl_ingest_t **out, uv_loop_t *loop, pl_writer_t *writer,
                    const pl_ingest_opts_t *opts, char *err, size_t errlen) {
  pl_ingest_t *in = calloc(1, sizeof(*in));
  int rc;
  if (!in) return PL_ENOMEM;
  in->loop = loop;
  in->writer = writer;
  in->o = *opts;
  /* The tick also returns idle buffers to the budget, so it runs at least every second. */
  pl_conn_list_init(&in->conns, &conn_ops,
                    opts->idle_timeout_ms / 4 > 1000 ? 1000 : opts->idle_timeout_ms / 4);
  rc = pl_net_listen(&in->listener, loop, opts->listen, on_connection, in, err, errlen);
  if (rc) {
    if (in->listener.open)
      pl_net_listener_close(&in->listener, free_owner);
    else
      free(in);
    return rc;
  }
  *out = in;
  return 0;
}

const char *pl_ingest_address(const pl_ingest_t *in) { return in->listener.bound; }

void pl_ingest_get_stats(const pl_ingest_t *in, pl_ingest_stats_t *st) { *st = in->st; }

static void on_grace_closed(uv_handle_t *h) {
  pl_ingest_t *in = h->data;
  in->grace_open = 0;
  check_stopped(in);
}

static void on_listener_closed(uv_handle_t *h) {
  pl_ingest_t *in = h->data;
  in->listener_closed = 1;
  check_stopped(in);
}

static void check_stopped(pl_ingest_t *in) {
  if (!in->stopping || in->conns.head || !in->listener_closed) return;
  if (in->grace_open) {
    if (!uv_is_closing((uv_handle_t *)&in->grace)) uv_close((uv_handle_t *)&in->grace, on_grace_closed);
    return;
  }
  if (in->stop_cb) {
    void (*cb)(void *) = in->stop_cb;
    in->stop_cb = NULL;
    cb(in->stop_arg);
    free(in);
  }
}

static void on_grace(uv_timer_t *t) {
  pl_ingest_t *in = t->data;
  PL_CONN_EACH(conn_t, c, &in->conns) {
    if (!c->base.closing) {
      pl_log_warn("ingest: %s: still busy after the shutdown grace period; closing", c->base.peer);
      pl_conn_close(&c->base);
    }
  }
}

void pl_ingest_stop(pl_ingest_t *in, uint64_t grace_ms, void (*cb)(void *arg), void *arg) {
  in->stopping = 1;
  in->stop_cb = cb;
  in->stop_arg = arg;
  uv_timer_init(in->loop, &in->grace);
  in->grace.data = in;
  in->grace_open = 1;
  uv_timer_start(&in->grace, on_grace, grace_ms, 0);
  in->listener.h.handle.data = in;
  pl_net_listener_close(&in->listener, on_listener_closed);
  PL_CONN_EACH(conn_t, c, &in->conns) {
    c->pause |= P_DRAIN;
    update_reading(c);
    maybe_finish(c);
  }
  check_stopped(in);
}
