/* `parley-bench ingest`: C Forward connections, W messages in flight each; with --ack each
 * message carries a chunk id and its latency is send -> {"ack": chunk}. Without acks the run
 * ends when parleyd, after our half-close, has committed everything and closed. */
#include "ingest.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include <zlib.h>

#include "bench.h"
#include "gen.h"
#include "parley/error.h"

#define CHUNK_LEN 24 /* base64 of 16 bytes, with "==" */

typedef struct msg {
  uint64_t off;
  uint32_t len;
  uint32_t nrec;
  char chunk[CHUNK_LEN];
} msg_t;

typedef struct slab {
  pb_buf_t data;
  msg_t *msgs;
  size_t nmsgs, cap;
  uint64_t events;
} slab_t;

typedef struct slot {
  uv_write_t w;
  size_t msg;
  uint64_t sent_ns;
  int writing;  /* uv_write not yet completed */
  int awaiting; /* ack not yet received */
} slot_t;

struct run;

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_shutdown_t sreq;
  struct run *run;
  uint32_t idx;
  size_t next; /* next message of the slab this connection sends */
  slot_t *slots;
  uint32_t inflight;
  msgpack_unpacker up;
  int connected, eof, closed;
} conn_t;

typedef struct run {
  const pb_ingest_opts_t *o;
  uv_loop_t loop;
  uv_timer_t watchdog;
  conn_t *conns;
  slab_t slab;
  size_t done; /* messages of the slab completed */
  uint32_t connected, eofs;
  int phase;   /* 0 connecting, 1 sending, 2 draining (no acks) */
  uint64_t progress, last_progress; /* completions, for the watchdog */
  uint64_t stalled_s;
  pb_ingest_result_t *res;
  char err[256];
  int failed;
} run_t;

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void make_chunk(pb_rng_t *r, char out[CHUNK_LEN]) {
  unsigned char raw[18] = {0};
  uint64_t a = pb_rng_next(r), b = pb_rng_next(r);
  memcpy(raw, &a, 8);
  memcpy(raw + 8, &b, 8);
  for (int i = 0, o = 0; i < 18; i += 3, o += 4) {
    uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
    out[o] = b64[v >> 18 & 63];
    out[o + 1] = b64[v >> 12 & 63];
    out[o + 2] = b64[v >> 6 & 63];
    out[o + 3] = b64[v & 63];
  }
  out[22] = out[23] = '=';
}

int pb_parse_mode(const char *s, pb_mode_t *m) {
  static const char *const names[] = {"message", "forward", "packed", "compressed"};
  for (int i = 0; i < 4; i++)
    if (strcmp(s, names[i]) == 0) {
      *m = (pb_mode_t)i;
      return 0;
    }
  return -1;
}

const char *pb_mode_name(pb_mode_t m) {
  static const char *const names[] = {"message", "forward", "packed", "compressed"};
  return (unsigned)m < 4 ? names[m] : "?";
}

/* ---- encoding ---- */

typedef struct encoder {
  const pb_ingest_opts_t *o;
  pb_gen_t *gen;
  pb_rng_t chunk_rng;
  pb_buf_t entries, zbuf;
  z_stream z;
  int z_ready;
  uint64_t left;
} encoder_t;

static void pack_event_time(msgpack_packer *pk, const pb_event_t *e) {
  unsigned char t[8];
  uint32_t s = (uint32_t)e->time_sec;
  t[0] = (unsigned char)(s >> 24), t[1] = (unsigned char)(s >> 16);
  t[2] = (unsigned char)(s >> 8), t[3] = (unsigned char)s;
  t[4] = (unsigned char)(e->time_nsec >> 24), t[5] = (unsigned char)(e->time_nsec >> 16);
  t[6] = (unsigned char)(e->time_nsec >> 8), t[7] = (unsigned char)e->time_nsec;
  msgpack_pack_ext(pk, 8, 0); /* Forward's EventTime: ext type 0, fixext8 */
  msgpack_pack_ext_body(pk, t, 8);
}

static void pack_lit(msgpack_packer *pk, const char *s) {
  size_t n = strlen(s);
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s, n);
}

static void pack_options(encoder_t *enc, msgpack_packer *pk, msg_t *m) {
  const pb_ingest_opts_t *o = enc->o;
  int compressed = o->mode == PB_MODE_COMPRESSED;
  msgpack_pack_map(pk, (size_t)(o->ack + 1 + compressed));
  if (o->ack) {
    make_chunk(&enc->chunk_rng, m->chunk);
    pack_lit(pk, "chunk");
    msgpack_pack_str(pk, CHUNK_LEN);
    msgpack_pack_str_body(pk, m->chunk, CHUNK_LEN);
  }
  pack_lit(pk, "size");
  msgpack_pack_uint32(pk, m->nrec);
  if (compressed) {
    pack_lit(pk, "compressed");
    pack_lit(pk, "gzip");
  }
}

static int gzip_entries(encoder_t *enc) {
  z_stream *z = &enc->z;
  int rc;
  if (!enc->z_ready) {
    memset(z, 0, sizeof(*z));
    if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      return PL_ENOMEM;
    enc->z_ready = 1;
  } else {
    deflateReset(z);
  }
  enc->zbuf.n = 0;
  if (pb_buf_reserve(&enc->zbuf, deflateBound(z, enc->entries.n) + 64)) return PL_ENOMEM;
  z->next_in = (unsigned char *)enc->entries.p;
  z->avail_in = (unsigned)enc->entries.n;
  z->next_out = (unsigned char *)enc->zbuf.p;
  z->avail_out = (unsigned)enc->zbuf.cap;
  rc = deflate(z, Z_FINISH);
  if (rc != Z_STREAM_END) return PL_EGZIP;
  enc->zbuf.n = enc->zbuf.cap - z->avail_out;
  return 0;
}

/* Appends one message of up to o->batch records to the slab. */
static int encode_message(encoder_t *enc, slab_t *s) {
  const pb_ingest_opts_t *o = enc->o;
  uint32_t nrec = o->mode == PB_MODE_MESSAGE ? 1 : o->batch;
  msgpack_packer pk, ek;
  msg_t *m;
  pb_event_t e;
  const char *tag = o->tag;
  size_t taglen = strlen(tag);
  if (nrec > enc->left) nrec = (uint32_t)enc->left;
  if (s->nmsgs == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 1024;
    msg_t *v = realloc(s->msgs, cap * sizeof(*v));
    if (!v) return PL_ENOMEM;
    s->msgs = v;
    s->cap = cap;
  }
  m = &s->msgs[s->nmsgs];
  memset(m, 0, sizeof(*m));
  m->off = s->data.n;
  m->nrec = nrec;
  msgpack_packer_init(&pk, &s->data, pb_buf_write);
  if (o->mode == PB_MODE_MESSAGE) {
    pb_gen_next(enc->gen, &e);
    msgpack_pack_array(&pk, o->ack ? 4 : 3);
    msgpack_pack_str(&pk, taglen);
    msgpack_pack_str_body(&pk, tag, taglen);
    pack_event_time(&pk, &e);
    if (pb_gen_pack(enc->gen, &e, &pk)) return PL_ENOMEM;
    if (o->ack) {
      make_chunk(&enc->chunk_rng, m->chunk);
      msgpack_pack_map(&pk, 1);
      pack_lit(&pk, "chunk");
      msgpack_pack_str(&pk, CHUNK_LEN);
      msgpack_pack_str_body(&pk, m->chunk, CHUNK_LEN);
    }
  } else {
    enc->entries.n = 0;
    msgpack_packer_init(&ek, &enc->entries, pb_buf_write);
    for (uint32_t i = 0; i < nrec; i++) {
      pb_gen_next(enc->gen, &e);
      msgpack_pack_array(&ek, 2);
      pack_event_time(&ek, &e);
      if (pb_gen_pack(enc->gen, &e, &ek)) return PL_ENOMEM;
    }
    msgpack_pack_array(&pk, 3);
    msgpack_pack_str(&pk, taglen);
    msgpack_pack_str_body(&pk, tag, taglen);
    if (o->mode == PB_MODE_FORWARD) {
      msgpack_pack_array(&pk, nrec);
      if (pb_buf_append(&s->data, enc->entries.p, enc->entries.n)) return PL_ENOMEM;
    } else if (o->mode == PB_MODE_PACKED) {
      msgpack_pack_bin(&pk, enc->entries.n);
      msgpack_pack_bin_body(&pk, enc->entries.p, enc->entries.n);
    } else {
      int rc = gzip_entries(enc);
      if (rc) return rc;
      msgpack_pack_bin(&pk, enc->zbuf.n);
      msgpack_pack_bin_body(&pk, enc->zbuf.p, enc->zbuf.n);
    }
    pack_options(enc, &pk, m);
  }
  if (!s->data.p) return PL_ENOMEM;
  m->len = (uint32_t)(s->data.n - m->off);
  s->nmsgs++;
  s->events += nrec;
  enc->left -= nrec;
  return 0;
}

static int build_slab(encoder_t *enc, slab_t *s) {
  s->data.n = 0;
  s->nmsgs = 0;
  s->events = 0;
  while (enc->left > 0 && s->data.n < enc->o->slab_bytes) {
    int rc = encode_message(enc, s);
    if (rc) return rc;
  }
  return 0;
}

/* ---- the connections ---- */

static void fail(run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(run_t *r, const char *fmt, ...) {
  va_list ap;
  if (!r->failed) {
    r->failed = 1;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
  }
  uv_stop(&r->loop);
}

static void pump(conn_t *c);

/* A message is done (written, and acked when acks are on): its slot is free again. */
static void slot_release(conn_t *c) {
  run_t *r = c->run;
  c->inflight--;
  r->done++;
  r->progress++;
  if (r->done == r->slab.nmsgs) uv_stop(&r->loop);
  else pump(c);
}

static void on_write(uv_write_t *w, int status) {
  slot_t *s = (slot_t *)w; /* the write request is the slot's first member */
  conn_t *c = w->data;
  if (status == UV_ECANCELED) return; /* closing after a failure */
  if (status < 0) {
    fail(c->run, "write failed: %s", uv_strerror(status));
    return;
  }
  s->writing = 0;
  if (!s->awaiting) slot_release(c);
}

static void pump(conn_t *c) {
  run_t *r = c->run;
  const pb_ingest_opts_t *o = r->o;
  while (r->phase == 1 && c->inflight < o->window && c->next < r->slab.nmsgs) {
    slot_t *s = NULL;
    const msg_t *m = &r->slab.msgs[c->next];
    uv_buf_t buf;
    int rc;
    for (uint32_t i = 0; i < o->window; i++)
      if (!c->slots[i].writing && !c->slots[i].awaiting) {
        s = &c->slots[i];
        break;
      }
    if (!s) return;
    s->msg = c->next;
    s->writing = 1;
    s->awaiting = o->ack;
    s->w.data = c;
    buf = uv_buf_init(r->slab.data.p + m->off, m->len);
    s->sent_ns = pb_now_ns();
    rc = uv_write(&s->w, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
    if (rc) {
      fail(r, "write failed: %s", uv_strerror(rc));
      return;
    }
    c->inflight++;
    c->next += o->conns;
    r->res->bytes += m->len;
    r->res->messages++;
    r->res->events += m->nrec;
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn_t *c = h->data;
  (void)hint;
  if (!msgpack_unpacker_reserve_buffer(&c->up, 65536)) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(msgpack_unpacker_buffer(&c->up),
                     (unsigned)msgpack_unpacker_buffer_capacity(&c->up));
}

static void handle_ack(conn_t *c, const msgpack_object *o) {
  run_t *r = c->run;
  const msgpack_object *v = NULL;
  if (o->type == MSGPACK_OBJECT_MAP && o->via.map.size == 1) {
    const msgpack_object_kv *kv = o->via.map.ptr;
    if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 3 &&
        memcmp(kv->key.via.str.ptr, "ack", 3) == 0)
      v = &kv->val;
  }
  if (!v || v->type != MSGPACK_OBJECT_STR || v->via.str.size != CHUNK_LEN) {
    fail(r, "unexpected reply on the ingest connection (not {\"ack\": chunk})");
    return;
  }
  for (uint32_t i = 0; i < r->o->window; i++) {
    slot_t *s = &c->slots[i];
    if (s->awaiting && memcmp(r->slab.msgs[s->msg].chunk, v->via.str.ptr, CHUNK_LEN) == 0) {
      pb_hist_add_ns(&r->res->lat, pb_now_ns() - s->sent_ns);
      s->awaiting = 0;
      if (!s->writing) slot_release(c);
      return;
    }
  }
  fail(r, "ack for a chunk id that is not in flight");
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = st->data;
  run_t *r = c->run;
  msgpack_unpacked u;
  (void)buf;
  if (nread == UV_EOF) {
    c->eof = 1;
    uv_read_stop(st);
    if (r->phase == 2) {
      r->progress++;
      if (++r->eofs == r->o->conns) uv_stop(&r->loop);
    } else {
      fail(r, "parleyd closed an ingest connection during the run (see its log)");
    }
    return;
  }
  if (nread < 0) {
    fail(r, "read failed: %s", uv_strerror((int)nread));
    return;
  }
  msgpack_unpacker_buffer_consumed(&c->up, (size_t)nread);
  msgpack_unpacked_init(&u);
  for (;;) {
    msgpack_unpack_return rc = msgpack_unpacker_next(&c->up, &u);
    if (rc == MSGPACK_UNPACK_CONTINUE) break;
    if (rc != MSGPACK_UNPACK_SUCCESS) {
      fail(r, "undecodable reply on the ingest connection");
      break;
    }
    handle_ack(c, &u.data);
    if (r->failed) break;
  }
  msgpack_unpacked_destroy(&u);
}

static void on_connect(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  run_t *r = c->run;
  if (status < 0) {
    fail(r, "connect failed: %s", uv_strerror(status));
    return;
  }
  c->connected = 1;
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (++r->connected == r->o->conns) uv_stop(&r->loop);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->data;
  if (status < 0) fail(c->run, "shutdown failed: %s", uv_strerror(status));
}

/* Fires every second while a phase runs: a server that stops acking ends the run. */
static void on_watchdog(uv_timer_t *t) {
  run_t *r = t->data;
  if (r->progress != r->last_progress) {
    r->last_progress = r->progress;
    r->stalled_s = 0;
    return;
  }
  if (++r->stalled_s < r->o->timeout_s) return;
  fail(r, "no progress for %llu s (is parleyd alive and acking?)",
       (unsigned long long)r->o->timeout_s);
}

static void on_closed(uv_handle_t *h) { (void)h; }

int pb_ingest_run(const pb_ingest_opts_t *o, pb_ingest_result_t *res, char *err, size_t errlen) {
  run_t r;
  encoder_t enc;
  pb_gen_opts_t go = {o->seed, 0, 0, -1, -1};
  struct sockaddr_storage ss;
  int rc = -1, started = 0;

  memset(&r, 0, sizeof(r));
  memset(&enc, 0, sizeof(enc));
  memset(res, 0, sizeof(*res));
  pb_hist_init(&res->lat);
  r.o = o;
  r.res = res;
  if (pb_parse_addr(o->addr, &ss)) {
    snprintf(err, errlen, "bad address \"%s\": expected HOST:PORT", o->addr);
    return -1;
  }
  enc.o = o;
  enc.left = o->events;
  /* Chunk ids must never repeat across runs (parleyd would ack a repeat without storing
   * it), so they come from the clock and pid, not from the workload seed. */
  enc.chunk_rng.s = pb_now_ns() ^ ((uint64_t)getpid() << 32) ^ pb_wall_ms();
  enc.gen = pb_gen_new(&go);
  r.conns = calloc(o->conns, sizeof(*r.conns));
  if (!enc.gen || !r.conns) {
    snprintf(err, errlen, "out of memory");
    goto out_free;
  }
  uv_loop_init(&r.loop);
  uv_timer_init(&r.loop, &r.watchdog);
  r.watchdog.data = &r;
  for (uint32_t i = 0; i < o->conns; i++) {
    conn_t *c = &r.conns[i];
    c->run = &r;
    c->idx = i;
    c->slots = calloc(o->window, sizeof(*c->slots));
    if (!c->slots || !msgpack_unpacker_init(&c->up, 65536)) {
      snprintf(err, errlen, "out of memory");
      goto out_loop;
    }
    uv_tcp_init(&r.loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    c->sreq.data = c;
    if ((rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&ss, on_connect))) {
      snprintf(err, errlen, "connect to %s: %s", o->addr, uv_strerror(rc));
      rc = -1;
      goto out_loop;
    }
  }
  rc = -1;
  uv_run(&r.loop, UV_RUN_DEFAULT);
  if (r.failed) goto out_err;

  while (enc.left > 0) {
    uint64_t g0 = pb_now_ns(), t0, t1;
    if (build_slab(&enc, &r.slab)) {
      snprintf(err, errlen, "out of memory generating messages");
      goto out_loop;
    }
    res->gen_seconds += (double)(pb_now_ns() - g0) / 1e9;
    res->slabs++;
    r.done = 0;
    r.phase = 1;
    for (uint32_t i = 0; i < o->conns; i++) r.conns[i].next = i;
    if (!started && o->started) o->started(o->started_arg);
    started = 1;
    uv_timer_start(&r.watchdog, on_watchdog, 1000, 1000);
    t0 = pb_now_ns();
    for (uint32_t i = 0; i < o->conns; i++) pump(&r.conns[i]);
    if (r.slab.nmsgs > 0 && !r.failed) uv_run(&r.loop, UV_RUN_DEFAULT);
    t1 = pb_now_ns();
    uv_timer_stop(&r.watchdog);
    if (r.failed) goto out_err;
    res->seconds += (double)(t1 - t0) / 1e9;
  }
  if (!o->ack) {
    /* Without acks, "stored" is when parleyd, after our half-close, has committed what it
     * received and closed its end. */
    uint64_t t0 = pb_now_ns();
    r.phase = 2;
    for (uint32_t i = 0; i < o->conns; i++)
      uv_shutdown(&r.conns[i].sreq, (uv_stream_t *)&r.conns[i].tcp, on_shutdown);
    uv_timer_start(&r.watchdog, on_watchdog, 1000, 1000);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_timer_stop(&r.watchdog);
    if (r.failed) goto out_err;
    res->seconds += (double)(pb_now_ns() - t0) / 1e9;
  }
  rc = 0;
  goto out_loop;
out_err:
  snprintf(err, errlen, "%s", r.err);
out_loop:
  for (uint32_t i = 0; i < o->conns; i++)
    if (!uv_is_closing((uv_handle_t *)&r.conns[i].tcp) && r.conns[i].tcp.loop)
      uv_close((uv_handle_t *)&r.conns[i].tcp, on_closed);
  if (!uv_is_closing((uv_handle_t *)&r.watchdog)) uv_close((uv_handle_t *)&r.watchdog, on_closed);
  r.phase = 3;
  for (int i = 0; i < 100 && uv_run(&r.loop, UV_RUN_DEFAULT); i++) {
  }
  uv_loop_close(&r.loop);
out_free:
  if (r.conns)
    for (uint32_t i = 0; i < o->conns; i++) {
      free(r.conns[i].slots);
      if (r.conns[i].up.buffer) msgpack_unpacker_destroy(&r.conns[i].up);
    }
  free(r.conns);
  pb_buf_free(&r.slab.data);
  free(r.slab.msgs);
  pb_buf_free(&enc.entries);
  pb_buf_free(&enc.zbuf);
  if (enc.z_ready) deflateEnd(&enc.z);
  pb_gen_free(enc.gen);
  return rc;
}

/* ---- parley-bench ingest ---- */

static const char ingest_usage[] =
    "usage: parley-bench ingest [--addr HOST:PORT] [--events N] [--conns C]\n"
    "         [--mode message|forward|packed|compressed] [--batch B] [--ack] [--window W]\n"
    "         [--seed S] [--slab-mb MB] [--tag TAG] [--timeout SECONDS] [--quiet]\n"
    "Sends N generated records (default 1,000,000) to parleyd's Forward port (default\n"
    "127.0.0.1:24224) over C connections (4), B records a message (1000; message mode: 1),\n"
    "EventTime times. With --ack each message carries a chunk id and W messages (8) are in\n"
    "flight per connection; the latency of each is send -> ack. Messages are encoded before\n"
    "the clock starts, at most --slab-mb (1024) at a time; the clock pauses between slabs.\n"
    "Use a fresh data dir or another --seed per run: parleyd stores each (date, id) once.\n";

int pb_cmd_ingest(int argc, char **argv) {
  const char *addr = "127.0.0.1:24224", *mode = "packed", *tag = "parley.bench";
  uint64_t events = 1000000, conns = 4, batch = 1000, window = 8, seed = 1, slab_mb = 1024,
           timeout_s = 60;
  int ack = 0, quiet = 0;
  pb_opt_t opts[] = {{"--addr", PB_OPT_STR, &addr},        {"--events", PB_OPT_U64, &events},
                     {"--conns", PB_OPT_U64, &conns},      {"--mode", PB_OPT_STR, &mode},
                     {"--batch", PB_OPT_U64, &batch},      {"--ack", PB_OPT_FLAG, &ack},
                     {"--window", PB_OPT_U64, &window},    {"--seed", PB_OPT_U64, &seed},
                     {"--slab-mb", PB_OPT_U64, &slab_mb},  {"--tag", PB_OPT_STR, &tag},
                     {"--timeout", PB_OPT_U64, &timeout_s}, {"--quiet", PB_OPT_FLAG, &quiet}};
  pb_ingest_opts_t o;
  pb_ingest_result_t res;
  char err[256], a[32], b[32];

  pb_parse_opts("ingest", argc, argv, opts, sizeof(opts) / sizeof(opts[0]), ingest_usage);
  memset(&o, 0, sizeof(o));
  if (pb_parse_mode(mode, &o.mode))
    pb_die("ingest: --mode: expected message, forward, packed or compressed");
  if (conns < 1 || conns > 10000) pb_die("ingest: --conns must be 1..10000");
  if (batch < 1 || batch > 1000000) pb_die("ingest: --batch must be 1..1000000");
  if (window < 1 || window > 4096) pb_die("ingest: --window must be 1..4096");
  if (events < 1) pb_die("ingest: --events must be at least 1");
  o.addr = addr;
  o.events = events;
  o.conns = (uint32_t)conns;
  o.batch = o.mode == PB_MODE_MESSAGE ? 1 : (uint32_t)batch;
  o.window = (uint32_t)window;
  o.ack = ack;
  o.seed = seed;
  o.slab_bytes = slab_mb * 1024 * 1024;
  o.timeout_s = timeout_s;
  o.tag = tag;
  o.quiet = quiet;
  if (pb_ingest_run(&o, &res, err, sizeof(err))) pb_die("ingest: %s", err);
  if (!quiet) {
    printf("ingest: %s mode, %u connections, %u records a message, window %u, acks %s\n",
           pb_mode_name(o.mode), o.conns, o.batch, o.window, o.ack ? "on" : "off");
    printf("  %s events in %s messages (%.1f MB on the wire), encoded in %.2f s untimed, "
           "%llu slab%s\n",
           pb_fmt_count((double)res.events, a), pb_fmt_count((double)res.messages, b),
           (double)res.bytes / 1e6, res.gen_seconds, (unsigned long long)res.slabs,
           res.slabs == 1 ? "" : "s");
    printf("  %.3f s: %s events/s, %.1f MB/s\n", res.seconds,
           pb_fmt_count((double)res.events / res.seconds, a),
           (double)res.bytes / 1e6 / res.seconds);
    if (o.ack) pb_print_latency("ack latency", &res.lat);
  }
  pb_print_result(res.events, res.seconds, (double)res.bytes / 1e6, o.ack ? &res.lat : NULL);
  return 0;
}
