/* Forward protocol reader: every mode and time encoding, framing across arbitrary splits,
 * hostile sizes and nesting, gzip (members, bombs, corruption), sticky errors, handshake. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>
#include <zlib.h>

#include "parley/error.h"
#include "parley/forward.h"

/* ---- building inputs ---- */

typedef struct mp {
  msgpack_sbuffer sb;
  msgpack_packer pk;
} mp_t;

static void mp_init(mp_t *m) {
  msgpack_sbuffer_init(&m->sb);
  msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mp_free(mp_t *m) { msgpack_sbuffer_destroy(&m->sb); }

static void mp_raw(mp_t *m, const void *p, size_t n) { msgpack_sbuffer_write(&m->sb, p, n); }

static void mp_s(mp_t *m, const char *s) {
  size_t n = strlen(s);
  msgpack_pack_str(&m->pk, n);
  msgpack_pack_str_body(&m->pk, s, n);
}

static void mp_b(mp_t *m, const void *p, size_t n) {
  msgpack_pack_bin(&m->pk, n);
  msgpack_pack_bin_body(&m->pk, p, n);
}

static void mp_sn(mp_t *m, const void *p, size_t n) {
  msgpack_pack_str(&m->pk, n);
  msgpack_pack_str_body(&m->pk, p, n);
}

static void mp_evt(mp_t *m, uint32_t sec, uint32_t nsec) {
  unsigned char d[8];
  pl_be32_put(d, sec);
  pl_be32_put(d + 4, nsec);
  msgpack_pack_ext(&m->pk, 8, 0);
  msgpack_pack_ext_body(&m->pk, d, 8);
}

static void mp_rec(mp_t *m, int i) {
  msgpack_pack_map(&m->pk, 2);
  mp_s(m, "institution");
  mp_s(m, "Brookings");
  mp_s(m, "i");
  msgpack_pack_int(&m->pk, i);
}

static void mp_ent(mp_t *m, int64_t t, int i) {
  msgpack_pack_array(&m->pk, 2);
  msgpack_pack_int64(&m->pk, t);
  mp_rec(m, i);
}

static unsigned char *gzip(const void *in, size_t n, size_t *outn) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  size_t cap = deflateBound(&zs, n);
  unsigned char *out = malloc(cap);
  assert_non_null(out);
  zs.next_in = (unsigned char *)in;
  zs.avail_in = (uInt)n;
  zs.next_out = out;
  zs.avail_out = (uInt)cap;
  assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
  *outn = zs.total_out;
  deflateEnd(&zs);
  return out;
}

static pl_fwd_reader_t *rd(size_t max_message, size_t max_record, unsigned depth) {
  pl_fwd_limits_t lim = {max_message, max_record, depth};
  pl_fwd_reader_t *r = pl_fwd_reader_new(&lim);
  assert_non_null(r);
  return r;
}

static pl_fwd_reader_t *rd_default(void) { return rd(1 << 20, 64 << 10, 16); }

/* Feeds the whole buffer and expects exactly one message. */
static pl_fwd_reader_t *one(const void *p, size_t n, pl_fwd_msg_t *m) {
  pl_fwd_reader_t *r = rd_default();
  assert_int_equal(pl_fwd_reader_feed(r, p, n), 0);
  int rc = pl_fwd_reader_next(r, m);
  if (rc != 1)
    fail_msg("next: %d %s", rc, pl_fwd_reader_errstr(r));
  assert_int_equal(m->wire_bytes, n);
  assert_int_equal(pl_fwd_reader_pending(r), 0);
  return r;
}

/* Feeds the bytes to a fresh reader and returns what next() says (1 or an error). */
static int try_with(pl_fwd_reader_t *r, const void *p, size_t n) {
  pl_fwd_msg_t m;
  assert_int_equal(pl_fwd_reader_feed(r, p, n), 0);
  int rc = pl_fwd_reader_next(r, &m);
  return rc;
}

static int try_bytes(const void *p, size_t n) {
  pl_fwd_reader_t *r = rd_default();
  int rc = try_with(r, p, n);
  pl_fwd_reader_free(r);
  return rc;
}

/* ---- a textual digest of everything a reader returns, to compare feeding patterns ---- */

typedef struct dstr {
  char *p;
  size_t n, cap;
} dstr_t;

static void dsf(dstr_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dsf(dstr_t *d, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(d->p ? d->p + d->n : NULL, d->p ? d->cap - d->n : 0, fmt, ap);
    va_end(ap);
    assert_true(k >= 0);
    if (d->p && d->n + (size_t)k < d->cap) {
      d->n += (size_t)k;
      return;
    }
    d->cap = (d->cap + (size_t)k + 1) * 2;
    d->p = realloc(d->p, d->cap);
    assert_non_null(d->p);
  }
}

static void dhex(dstr_t *d, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    dsf(d, "%02x", b[i]);
}

static int drain(pl_fwd_reader_t *r, dstr_t *d) {
  pl_fwd_msg_t m;
  int rc;
  char rec[4096];
  while ((rc = pl_fwd_reader_next(r, &m)) == 1) {
    dsf(d, "mode=%d tag=%.*s n=%zu wire=%zu chunk=", (int)m.mode, (int)m.tag.n, m.tag.p,
        m.nentries, m.wire_bytes);
    dhex(d, m.chunk, m.chunk_len);
    if (m.mode == PL_FWD_PING)
      dsf(d, " ping=%.*s", (int)m.ping_hostname.n, m.ping_hostname.p);
    dsf(d, "\n");
    pl_fwd_entry_t e;
    size_t k = 0;
    while (pl_fwd_reader_entry(r, &e) == 1) {
      k++;
      dsf(d, "  %lld.%09u skip=%d err=%s raw=", (long long)e.sec, e.nsec, e.skip,
          e.error ? e.error : "-");
      dhex(d, e.raw, e.raw_len);
      if (e.record) {
        msgpack_object_print_buffer(rec, sizeof rec, *e.record);
        dsf(d, " rec=%s", rec);
      }
      dsf(d, "\n");
    }
    assert_int_equal(k, m.nentries);
  }
  if (rc < 0)
    dsf(d, "error %d %s\n", rc, pl_fwd_reader_errstr(r));
  return rc;
}

/* ---- the corpus of valid messages ---- */

enum { NCORPUS = 14 };
typedef struct corpus {
  unsigned char *p[NCORPUS];
  size_t n[NCORPUS];
} corpus_t;

static void keep(corpus_t *c, int i, mp_t *m) {
  c->p[i] = malloc(m->sb.size);
  assert_non_null(c->p[i]);
  memcpy(c->p[i], m->sb.data, m->sb.size);
  c->n[i] = m->sb.size;
  mp_free(m);
}

static void packed_frame(mp_t *m, const char *tag, const void *pay, size_t n, int as_str,
                         const char *compressed, const char *chunk) {
  mp_init(m);
  int nopt = (compressed != NULL) + (chunk != NULL);
  msgpack_pack_array(&m->pk, nopt ? 3 : 2);
  mp_s(m, tag);
  if (as_str)
    mp_sn(m, pay, n);
  else
    mp_b(m, pay, n);
  if (nopt) {
    msgpack_pack_map(&m->pk, (size_t)nopt);
    if (compressed) {
      mp_s(m, "compressed");
      mp_s(m, compressed);
    }
    if (chunk) {
      mp_s(m, "chunk");
      mp_s(m, chunk);
    }
  }
}

static void corpus_build(corpus_t *c) {
  mp_t m, pay;
  int i = 0;
  /* Message, no option */
  mp_init(&m);
  msgpack_pack_array(&m.pk, 3);
  mp_s(&m, "app");
  msgpack_pack_int(&m.pk, 1700000000);
  mp_rec(&m, 1);
  keep(c, i++, &m);
  /* Message with a chunk */
  mp_init(&m);
  msgpack_pack_array(&m.pk, 4);
  mp_s(&m, "app");
  msgpack_pack_int(&m.pk, 1700000001);
  mp_rec(&m, 2);
  msgpack_pack_map(&m.pk, 1);
  mp_s(&m, "chunk");
  mp_s(&m, "cGFybGV5\n");
  keep(c, i++, &m);
  /* Message with a nil option and an EventTime */
  mp_init(&m);
  msgpack_pack_array(&m.pk, 4);
  mp_s(&m, "app");
  mp_evt(&m, 1700000002, 5);
  mp_rec(&m, 3);
  msgpack_pack_nil(&m.pk);
  keep(c, i++, &m);
  /* Forward, option with extra keys */
  mp_init(&m);
  msgpack_pack_array(&m.pk, 3);
  mp_s(&m, "fw");
  msgpack_pack_array(&m.pk, 3);
  for (int k = 0; k < 3; k++)
    mp_ent(&m, 1700000010 + k, 10 + k);
  msgpack_pack_map(&m.pk, 3);
  mp_s(&m, "size");
  msgpack_pack_int(&m.pk, 3);
  mp_s(&m, "chunk");
  mp_s(&m, "abc");
  mp_s(&m, "extra");
  msgpack_pack_array(&m.pk, 2);
  msgpack_pack_int(&m.pk, 1);
  msgpack_pack_map(&m.pk, 0);
  keep(c, i++, &m);
  /* PackedForward bin, str, compressed:"text" */
  mp_init(&pay);
  for (int k = 0; k < 4; k++)
    mp_ent(&pay, 1700000020 + k, 20 + k);
  packed_frame(&m, "pk", pay.sb.data, pay.sb.size, 0, NULL, NULL);
  keep(c, i++, &m);
  packed_frame(&m, "pk", pay.sb.data, pay.sb.size, 1, NULL, "c2");
  keep(c, i++, &m);
  packed_frame(&m, "pk", pay.sb.data, pay.sb.size, 0, "text", NULL);
  keep(c, i++, &m);
  /* CompressedPackedForward: one member, two members, sniffed */
  size_t gn, gn2;
  unsigned char *gz = gzip(pay.sb.data, pay.sb.size, &gn);
  packed_frame(&m, "gz", gz, gn, 0, "gzip", "c3");
  keep(c, i++, &m);
  /* two gzip members of the same entries: 8 entries */
  unsigned char *gz2 = gzip(pay.sb.data, pay.sb.size, &gn2);
  unsigned char *two = malloc(gn + gn2);
  memcpy(two, gz, gn);
  memcpy(two + gn, gz2, gn2);
  packed_frame(&m, "gz2", two, gn + gn2, 1, "gzip", NULL);
  keep(c, i++, &m);
  packed_frame(&m, "sniff", gz, gn, 0, NULL, NULL);
  keep(c, i++, &m);
  free(two);
  free(gz2);
  free(gz);
  mp_free(&pay);
  /* heartbeat */
  mp_init(&m);
  msgpack_pack_nil(&m.pk);
  keep(c, i++, &m);
  /* Forward: every time encoding, v1.5, group markers */
  mp_init(&m);
  msgpack_pack_array(&m.pk, 2);
  mp_s(&m, "times");
  msgpack_pack_array(&m.pk, 6);
  msgpack_pack_array(&m.pk, 2);
  msgpack_pack_int(&m.pk, -5);
  mp_rec(&m, 1);
  msgpack_pack_array(&m.pk, 2);
  msgpack_pack_double(&m.pk, 1.5);
  mp_rec(&m, 2);
  msgpack_pack_array(&m.pk, 2);
  static const unsigned char ext8[] = {0xc7, 8, 0, 0x65, 0x53, 0xf1, 0x00, 0, 0, 0, 7};
  mp_raw(&m, ext8, sizeof ext8);
  mp_rec(&m, 3);
  msgpack_pack_array(&m.pk, 2);
  msgpack_pack_array(&m.pk, 2);
  mp_evt(&m, 1700000000, 9);
  msgpack_pack_map(&m.pk, 1);
  mp_s(&m, "otel");
  mp_s(&m, "x");
  mp_rec(&m, 4);
  msgpack_pack_array(&m.pk, 2);
  msgpack_pack_array(&m.pk, 2);
  mp_evt(&m, 0xffffffffu, 0);
  msgpack_pack_map(&m.pk, 0);
  msgpack_pack_map(&m.pk, 0);
  msgpack_pack_array(&m.pk, 2);
  msgpack_pack_array(&m.pk, 2);
  mp_evt(&m, 0xfffffffeu, 0);
  msgpack_pack_map(&m.pk, 0);
  msgpack_pack_map(&m.pk, 0);
  keep(c, i++, &m);
  /* Forward with entries the reject store keeps */
  mp_init(&m);
  msgpack_pack_array(&m.pk, 2);
  mp_s(&m, "bad");
  msgpack_pack_array(&m.pk, 3);
  msgpack_pack_int(&m.pk, 7);
  msgpack_pack_array(&m.pk, 2);
  mp_s(&m, "t");
  mp_rec(&m, 1);
  msgpack_pack_array(&m.pk, 2);
  msgpack_pack_int(&m.pk, 1);
  msgpack_pack_array(&m.pk, 0);
  keep(c, i++, &m);
  /* Forward with zero entries */
  mp_init(&m);
  msgpack_pack_array(&m.pk, 2);
  mp_s(&m, "empty");
  msgpack_pack_array(&m.pk, 0);
  keep(c, i++, &m);
  assert_int_equal(i, NCORPUS);
}

static void corpus_free(corpus_t *c) {
  for (int i = 0; i < NCORPUS; i++)
    free(c->p[i]);
}

static char *digest_whole(const void *p, size_t n, int *rc) {
  dstr_t d = {0};
  pl_fwd_reader_t *r = rd_default();
  assert_int_equal(pl_fwd_reader_feed(r, p, n), 0);
  *rc = drain(r, &d);
  dsf(&d, "pending=%zu\n", pl_fwd_reader_pending(r));
  pl_fwd_reader_free(r);
  return d.p;
}

/* ---- modes ---- */

static void test_message_mode(void **state) {
  (void)state;
  mp_t m, want;
  mp_init(&m);
  msgpack_pack_array(&m.pk, 3);
  mp_s(&m, "app.log");
  msgpack_pack_int(&m.pk, 1700000000);
  mp_rec(&m, 42);
  mp_init(&want);
  mp_ent(&want, 1700000000, 42);

  pl_fwd_msg_t msg;
  pl_fwd_entry_t e;
  pl_fwd_reader_t *r = one(m.sb.data, m.sb.size, &msg);
  assert_int_equal(msg.mode, PL_FWD_MESSAGE);
  assert_true(pl_str_eq(msg.tag, "app.log"));
  assert_null(msg.chunk);
  assert_int_equal(msg.chunk_len, 0);
  assert_int_equal(msg.nentries, 1);
  assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
  assert_int_equal(e.sec, 1700000000);
  assert_int_equal(e.nsec, 0);
  assert_int_equal(e.skip, 0);
  assert_null(e.error);
  assert_non_null(e.record);
  assert_int_equal(e.record->type, MSGPACK_OBJECT_MAP);
  assert_int_equal(e.record->via.map.size, 2);
  assert_int_equal(e.record->via.map.ptr[1].val.via.u64, 42);
  /* raw is re-packed as [time, record] */
  assert_int_equal(e.raw_len, want.sb.size);
  assert_memory_equal(e.raw, want.sb.data, want.sb.size);
  assert_int_equal(pl_fwd_reader_entry(r, &e), 0);
  assert_int_equal(pl_fwd_reader_next(r, &msg), 0);
  pl_fwd_reader_free(r);
  mp_free(&m);
  mp_free(&want);
}

static void test_message_option(void **state) {
  (void)state;
  mp_t m;
  pl_fwd_msg_t msg;
  pl_fwd_entry_t e;
  /* str chunk ending in "\n" (Ruby's Base64.encode64): echoed byte-exact */
  mp_init(&m);
  msgpack_pack_array(&m.pk, 4);
  mp_s(&m, "t");
  msgpack_pack_int(&m.pk, 1);
  mp_rec(&m, 1);
  msgpack_pack_map(&m.pk, 1);
  mp_s(&m, "chunk");
  mp_s(&m, "abc\n");
  pl_fwd_reader_t *r = one(m.sb.data, m.sb.size, &msg);
  static const char want_s[] = {(char)0xa4, 'a', 'b', 'c', '\n'};
  assert_int_equal(msg.chunk_len, 5);
  assert_memory_equal(msg.chunk, want_s, 5);
  assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
  assert_non_null(e.record);
  pl_fwd_reader_free(r);
  mp_free(&m);
  /* bin chunk of 16 bytes */
  unsigned char id[16];
  for (int i = 0; i < 16; i++)
    id[i] = (unsigned char)(0xf0 + i);
  mp_init(&m);
  msgpack_pack_array(&m.pk, 4);
  mp_s(&m, "t");
  msgpack_pack_int(&m.pk, 1);
  mp_rec(&m, 1);
  msgpack_pack_map(&m.pk, 1);
  mp_s(&m, "chunk");
  mp_b(&m, id, 16);
  r = one(m.sb.data, m.sb.size, &msg);
  assert_int_equal(msg.chunk_len, 18);
  assert_int_equal((unsigned char)msg.chunk[0], 0xc4);
  assert_int_equal((unsigned char)msg.chunk[1], 16);
  assert_memory_equal(msg.chunk + 2, id, 16);
  pl_fwd_reader_free(r);
  mp_free(&m);
  /* chunk of exactly 256 bytes is the largest accepted */
  char big[256];
  memset(big, 'k', sizeof big);
  mp_init(&m);
  msgpack_pack_array(&m.pk, 4);
  mp_s(&m, "t");
  msgpack_pack_int(&m.pk, 1);
  mp_rec(&m, 1);
  msgpack_pack_map(&m.pk, 1);
  mp_s(&m, "chunk");
  mp_sn(&m, big, 256);
  r = one(m.sb.data, m.sb.size, &msg);
  assert_int_equal(msg.chunk_len, 3 + 256);
  pl_fwd_reader_free(r);
  mp_free(&m);
  /* nil option, {} option, extra keys of any type (size as a byte count, non-str keys) */
  for (int variant = 0; variant < 3; variant++) {
    mp_init(&m);
    msgpack_pack_array(&m.pk, 4);
    mp_s(&m, "t");
    msgpack_pack_int(&m.pk, 9);
    mp_rec(&m, 1);
    if (variant == 0) {
      msgpack_pack_nil(&m.pk);
    } else if (variant == 1) {
      msgpack_pack_map(&m.pk, 0);
    } else {
      msgpack_pack_map(&m.pk, 5);
      mp_s(&m, "size");
      mp_s(&m, "1234");
      msgpack_pack_int(&m.pk, 7);
      msgpack_pack_int(&m.pk, 8);
      mp_s(&m, "compressed");
      msgpack_pack_int(&m.pk, 5);
      mp_s(&m, "fluent_signal");
      msgpack_pack_int(&m.pk, 0);
      mp_s(&m, "metadata");
      msgpack_pack_map(&m.pk, 1);
      mp_s(&m, "deep");
      msgpack_pack_array(&m.pk, 1);
      msgpack_pack_array(&m.pk, 0);
    }
    r = one(m.sb.data, m.sb.size, &msg);
    assert_int_equal(msg.mode, PL_FWD_MESSAGE);
    assert_null(msg.chunk);
    assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
    assert_int_equal(e.sec, 9);
    assert_non_null(e.record);
    pl_fwd_reader_free(r);
    mp_free(&m);
  }
}

static void test_forward_mode(void **state) {
  (void)state;
  corpus_t c;
  corpus_build(&c);
  pl_fwd_msg_t msg;
  pl_fwd_entry_t e;
  pl_fwd_reader_t *r = one(c.p[3], c.n[3], &msg);
  assert_int_equal(msg.mode, PL_FWD_FORWARD);
  assert_true(pl_str_eq(msg.tag, "fw"));
  assert_int_equal(msg.nentries, 3);
  assert_int_equal(msg.chunk_len, 4);
  assert_memory_equal(msg.chunk, "\xa3"
                                 "abc",
                      4);
  for (int k = 0; k < 3; k++) {
    mp_t want;
    mp_init(&want);
    mp_ent(&want, 1700000010 + k, 10 + k);
    assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
    assert_int_equal(e.sec, 1700000010 + k);
    assert_non_null(e.record);
    assert_int_equal(e.record->via.map.ptr[1].val.via.u64, 10 + k);
    assert_int_equal(e.raw_len, want.sb.size);
    assert_memory_equal(e.raw, want.sb.data, want.sb.size);
    mp_free(&want);
  }
  assert_int_equal(pl_fwd_reader_entry(r, &e), 0);
  pl_fwd_reader_free(r);
  /* an empty entries array followed by an option */
  r = one("\x93\xa1t\x90\x81\xa5" "chunk\xa1x", 13, &msg);
  assert_int_equal(msg.mode, PL_FWD_FORWARD);
  assert_int_equal(msg.nentries, 0);
  assert_int_equal(msg.chunk_len, 2);
  assert_memory_equal(msg.chunk, "\xa1x", 2);
  pl_fwd_reader_free(r);
  /* zero entries */
  r = one(c.p[13], c.n[13], &msg);
  assert_int_equal(msg.mode, PL_FWD_FORWARD);
  assert_int_equal(msg.nentries, 0);
  assert_int_equal(pl_fwd_reader_entry(r, &e), 0);
  pl_fwd_reader_free(r);
  corpus_free(&c);
}

static void check_packed_entries(pl_fwd_reader_t *r, int first) {
  pl_fwd_entry_t e;
  for (int k = 0; k < 4; k++) {
    mp_t want;
    mp_init(&want);
    mp_ent(&want, 1700000020 + k, first + k);
    assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
    assert_null(e.error);
    assert_int_equal(e.sec, 1700000020 + k);
    assert_int_equal(e.record->via.map.ptr[1].val.via.u64, first + k);
    assert_int_equal(e.raw_len, want.sb.size);
    assert_memory_equal(e.raw, want.sb.data, want.sb.size);
    mp_free(&want);
  }
}

static void test_packed_modes(void **state) {
  (void)state;
  corpus_t c;
  corpus_build(&c);
  pl_fwd_msg_t msg;
  pl_fwd_entry_t e;
  static const struct {
    int idx;
    pl_fwd_mode_t mode;
    size_t n;
    const char *chunk;
  } cases[] = {
      {4, PL_FWD_PACKED, 4, NULL},           {5, PL_FWD_PACKED, 4, "\xa2" "c2"},
      {6, PL_FWD_PACKED, 4, NULL},           {7, PL_FWD_COMPRESSED, 4, "\xa2" "c3"},
      {8, PL_FWD_COMPRESSED, 8, NULL},       {9, PL_FWD_COMPRESSED, 4, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pl_fwd_reader_t *r = one(c.p[cases[i].idx], c.n[cases[i].idx], &msg);
    assert_int_equal(msg.mode, cases[i].mode);
    assert_int_equal(msg.nentries, cases[i].n);
    if (cases[i].chunk) {
      assert_int_equal(msg.chunk_len, 3);
      assert_memory_equal(msg.chunk, cases[i].chunk, 3);
    } else {
      assert_null(msg.chunk);
    }
    check_packed_entries(r, 20);
    if (cases[i].n == 8)
      check_packed_entries(r, 20);
    assert_int_equal(pl_fwd_reader_entry(r, &e), 0);
    pl_fwd_reader_free(r);
  }
  /* sniffing also works with an option map that has no "compressed" key */
  mp_t pay, m;
  mp_init(&pay);
  for (int k = 0; k < 4; k++)
    mp_ent(&pay, 1700000020 + k, 20 + k);
  size_t gn;
  unsigned char *gz = gzip(pay.sb.data, pay.sb.size, &gn);
  packed_frame(&m, "pk", gz, gn, 0, NULL, "c9");
  pl_fwd_reader_t *r = one(m.sb.data, m.sb.size, &msg);
  assert_int_equal(msg.mode, PL_FWD_COMPRESSED);
  check_packed_entries(r, 20);
  pl_fwd_reader_free(r);
  mp_free(&m);
  /* compressed:"text" is plain even when the payload looks like gzip: the bytes are then
   * not entries, which is a protocol error, not a gunzip */
  packed_frame(&m, "pk", gz, gn, 0, "text", NULL);
  r = rd_default();
  assert_int_equal(try_with(r, m.sb.data, m.sb.size), PL_EPROTO);
  pl_fwd_reader_free(r);
  mp_free(&m);
  /* empty packed payload: no entries */
  packed_frame(&m, "pk", "", 0, 0, NULL, NULL);
  r = one(m.sb.data, m.sb.size, &msg);
  assert_int_equal(msg.mode, PL_FWD_PACKED);
  assert_int_equal(msg.nentries, 0);
  pl_fwd_reader_free(r);
  mp_free(&m);
  free(gz);
  mp_free(&pay);
  corpus_free(&c);
}

static void test_heartbeat(void **state) {
  (void)state;
  pl_fwd_msg_t msg;
  pl_fwd_entry_t e;
  pl_fwd_reader_t *r = rd_default();
  assert_int_equal(pl_fwd_reader_feed(r, "\xc0\xc0", 2), 0);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(pl_fwd_reader_next(r, &msg), 1);
    assert_int_equal(msg.mode, PL_FWD_HEARTBEAT);
    assert_int_equal(msg.nentries, 0);
    assert_int_equal(msg.wire_bytes, 1);
    assert_int_equal(msg.tag.n, 0);
    assert_int_equal(pl_fwd_reader_entry(r, &e), 0);
  }
  assert_int_equal(pl_fwd_reader_next(r, &msg), 0);
  pl_fwd_reader_free(r);
}

/* ---- times ---- */

static void test_times(void **state) {
  (void)state;
  corpus_t c;
  corpus_build(&c);
  pl_fwd_msg_t msg;
  pl_fwd_entry_t e;
  pl_fwd_reader_t *r = one(c.p[11], c.n[11], &msg);
  assert_int_equal(msg.nentries, 6);
  static const struct {
    int64_t sec;
    uint32_t nsec;
    int skip;
  } want[] = {{-5, 0, 0}, {1, 500000000, 0}, {1700000000, 7, 0},
              {1700000000, 9, 0}, {0xffffffffLL, 0, 1}, {0xfffffffeLL, 0, 1}};
  for (int k = 0; k < 6; k++) {
    assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
    assert_null(e.error);
    assert_non_null(e.record);
    assert_int_equal(e.sec, want[k].sec);
    assert_int_equal(e.nsec, want[k].nsec);
    assert_int_equal(e.skip, want[k].skip);
  }
  pl_fwd_reader_free(r);
  corpus_free(&c);

  /* message mode with fixext8, negative floats, float32, int64 extremes */
  struct {
    int kind;
    double f;
    int64_t sec;
    uint32_t nsec;
  } t[] = {{0, -1.25, -2, 750000000}, {1, 2.5, 2, 500000000}, {2, 0, 1700000000, 123456789},
           {3, 0, INT64_MIN, 0}, {4, 0, 1700000000, 123456789}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    mp_t m;
    mp_init(&m);
    msgpack_pack_array(&m.pk, 3);
    mp_s(&m, "t");
    if (t[i].kind == 0) {
      msgpack_pack_double(&m.pk, t[i].f);
    } else if (t[i].kind == 1) {
      msgpack_pack_float(&m.pk, (float)t[i].f);
    } else if (t[i].kind == 2) {
      mp_evt(&m, 1700000000, 123456789);
    } else if (t[i].kind == 3) {
      msgpack_pack_int64(&m.pk, INT64_MIN);
    } else {
      static const unsigned char x[] = {0xc7, 8, 0, 0x65, 0x53, 0xf1, 0x00, 0x07, 0x5b, 0xcd, 0x15};
      mp_raw(&m, x, sizeof x);
    }
    mp_rec(&m, 1);
    r = one(m.sb.data, m.sb.size, &msg);
    assert_int_equal(msg.mode, PL_FWD_MESSAGE);
    assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
    assert_null(e.error);
    assert_int_equal(e.sec, t[i].sec);
    assert_int_equal(e.nsec, t[i].nsec);
    pl_fwd_reader_free(r);
    mp_free(&m);
  }
}

/* Entries that are well-formed MessagePack but not [time, record]: handed out with an error
 * and their raw bytes, never a connection error. */
static void test_rejected_entries(void **state) {
  (void)state;
  mp_t pay, ent, m;
  mp_init(&pay);
  size_t offs[16], nent = 0;
  const char *why[16];
#define ENTRY_BEGIN() (offs[nent] = pay.sb.size)
  /* not an array */
  ENTRY_BEGIN();
  msgpack_pack_int(&pay.pk, 7);
  why[nent++] = "entry must be a [time, record] array";
  /* 3-array */
  ENTRY_BEGIN();
  msgpack_pack_array(&pay.pk, 3);
  msgpack_pack_int(&pay.pk, 1);
  mp_rec(&pay, 1);
  msgpack_pack_int(&pay.pk, 1);
  why[nent++] = "entry must be a [time, record] array";
  /* time str */
  ENTRY_BEGIN();
  msgpack_pack_array(&pay.pk, 2);
  mp_s(&pay, "1700000000");
  mp_rec(&pay, 1);
  why[nent++] = "time must be an int, a float or an EventTime";
  /* ext0 of 4 bytes */
  ENTRY_BEGIN();
  msgpack_pack_array(&pay.pk, 2);
  mp_raw(&pay, "\xd6\x00\x01\x02\x03\x04", 6);
  mp_rec(&pay, 1);
  why[nent++] = "EventTime must have exactly 8 data bytes";
  /* msgpack timestamp ext -1 is not an EventTime */
  ENTRY_BEGIN();
  msgpack_pack_array(&pay.pk, 2);
  mp_raw(&pay, "\xd7\xff\x00\x00\x00\x00\x65\x53\xf1\x00", 10);
  mp_rec(&pay, 1);
  why[nent++] = "time ext must be EventTime (ext type 0)";
  /* record an array */
  ENTRY_BEGIN();
  msgpack_pack_array(&pay.pk, 2);
  msgpack_pack_int(&pay.pk, 1);
  msgpack_pack_array(&pay.pk, 1);
  msgpack_pack_int(&pay.pk, 1);
  why[nent++] = "record must be a map";
  /* v1.5 time arrays: one element, metadata not a map, nested array */
  ENTRY_BEGIN();
  msgpack_pack_array(&pay.pk, 2);
  msgpack_pack_array(&pay.pk, 1);
  mp_evt(&pay, 1, 0);
  mp_rec(&pay, 1);
  why[nent++] = "time must be [EventTime, metadata map] when it is an array";
  ENTRY_BEGIN();
  msgpack_pack_array(&pay.pk, 2);
  msgpack_pack_array(&pay.pk, 2);
  mp_evt(&pay, 1, 0);
  msgpack_pack_int(&pay.pk, 1);
  mp_rec(&pay, 1);
  why[nent++] = "time must be [EventTime, metadata map] when it is an array";
  ENTRY_BEGIN();
  msgpack_pack_array(&pay.pk, 2);
  msgpack_pack_array(&pay.pk, 2);
  msgpack_pack_array(&pay.pk, 0);
  msgpack_pack_map(&pay.pk, 0);
  mp_rec(&pay, 1);
  why[nent++] = "time must be [EventTime, metadata map] when it is an array";
  /* EventTime nanoseconds >= 10^9 */
  ENTRY_BEGIN();
  msgpack_pack_array(&pay.pk, 2);
  mp_evt(&pay, 1, 1000000000);
  mp_rec(&pay, 1);
  why[nent++] = "EventTime nanoseconds out of range";
  /* uint64 time beyond int64 */
  ENTRY_BEGIN();
  msgpack_pack_array(&pay.pk, 2);
  msgpack_pack_uint64(&pay.pk, UINT64_MAX);
  mp_rec(&pay, 1);
  why[nent++] = "time out of range";
  /* float NaN */
  ENTRY_BEGIN();
  msgpack_pack_array(&pay.pk, 2);
  msgpack_pack_double(&pay.pk, 0.0 / 0.0);
  mp_rec(&pay, 1);
  why[nent++] = "time out of range";
  /* and a good one after them */
  ENTRY_BEGIN();
  mp_ent(&pay, 5, 5);
  why[nent++] = NULL;
  offs[nent] = pay.sb.size;
#undef ENTRY_BEGIN

  for (int mode = 0; mode < 2; mode++) {
    mp_init(&m);
    if (mode == 0) { /* PackedForward */
      msgpack_pack_array(&m.pk, 2);
      mp_s(&m, "rej");
      mp_b(&m, pay.sb.data, pay.sb.size);
    } else { /* Forward: the same entries inside an array */
      msgpack_pack_array(&m.pk, 2);
      mp_s(&m, "rej");
      msgpack_pack_array(&m.pk, nent);
      mp_raw(&m, pay.sb.data, pay.sb.size);
    }
    pl_fwd_msg_t msg;
    pl_fwd_entry_t e;
    pl_fwd_reader_t *r = one(m.sb.data, m.sb.size, &msg);
    assert_int_equal(msg.nentries, nent);
    for (size_t k = 0; k < nent; k++) {
      assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
      assert_int_equal(e.raw_len, offs[k + 1] - offs[k]);
      assert_memory_equal(e.raw, pay.sb.data + offs[k], e.raw_len);
      if (why[k]) {
        assert_null(e.record);
        assert_non_null(e.error);
        assert_string_equal(e.error, why[k]);
        assert_int_equal(e.skip, 0);
      } else {
        assert_null(e.error);
        assert_non_null(e.record);
        assert_int_equal(e.sec, 5);
      }
    }
    assert_int_equal(pl_fwd_reader_entry(r, &e), 0);
    pl_fwd_reader_free(r);
    mp_free(&m);
  }
  mp_free(&pay);

  /* Message mode: record not a map is a rejected entry; raw is [time, record] */
  mp_init(&m);
  msgpack_pack_array(&m.pk, 3);
  mp_s(&m, "t");
  msgpack_pack_int(&m.pk, 3);
  mp_s(&m, "not a map");
  mp_init(&ent);
  msgpack_pack_array(&ent.pk, 2);
  msgpack_pack_int(&ent.pk, 3);
  mp_s(&ent, "not a map");
  pl_fwd_msg_t msg;
  pl_fwd_entry_t e;
  pl_fwd_reader_t *r = one(m.sb.data, m.sb.size, &msg);
  assert_int_equal(msg.mode, PL_FWD_MESSAGE);
  assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
  assert_null(e.record);
  assert_string_equal(e.error, "record must be a map");
  assert_int_equal(e.raw_len, ent.sb.size);
  assert_memory_equal(e.raw, ent.sb.data, ent.sb.size);
  pl_fwd_reader_free(r);
  mp_free(&m);
  mp_free(&ent);
}

/* ---- framing ---- */

static void test_split_every_offset(void **state) {
  (void)state;
  corpus_t c;
  corpus_build(&c);
  for (int i = 0; i < NCORPUS; i++) {
    int rc;
    char *whole = digest_whole(c.p[i], c.n[i], &rc);
    assert_int_equal(rc, 0);
    /* one byte at a time */
    dstr_t d = {0};
    pl_fwd_reader_t *r = rd_default();
    for (size_t k = 0; k < c.n[i]; k++) {
      assert_int_equal(pl_fwd_reader_feed(r, (const char *)c.p[i] + k, 1), 0);
      assert_int_equal(drain(r, &d), 0);
    }
    dsf(&d, "pending=%zu\n", pl_fwd_reader_pending(r));
    assert_string_equal(d.p, whole);
    pl_fwd_reader_free(r);
    free(d.p);
    /* two feeds, split at every offset */
    for (size_t k = 0; k <= c.n[i]; k++) {
      dstr_t s = {0};
      r = rd_default();
      assert_int_equal(pl_fwd_reader_feed(r, (const char *)c.p[i], k), 0);
      assert_int_equal(drain(r, &s), 0);
      assert_int_equal(pl_fwd_reader_feed(r, (const char *)c.p[i] + k, c.n[i] - k), 0);
      assert_int_equal(drain(r, &s), 0);
      dsf(&s, "pending=%zu\n", pl_fwd_reader_pending(r));
      assert_string_equal(s.p, whole);
      pl_fwd_reader_free(r);
      free(s.p);
    }
    free(whole);
  }
  corpus_free(&c);
}

static void test_back_to_back(void **state) {
  (void)state;
  corpus_t c;
  corpus_build(&c);
  dstr_t all = {0}, want = {0};
  for (int i = 0; i < NCORPUS; i++) {
    for (size_t k = 0; k < c.n[i]; k++)
      dsf(&all, "%c", 0); /* grow */
  }
  all.n = 0;
  for (int i = 0; i < NCORPUS; i++) {
    memcpy(all.p + all.n, c.p[i], c.n[i]);
    all.n += c.n[i];
    pl_fwd_reader_t *r = rd_default();
    assert_int_equal(pl_fwd_reader_feed(r, (const char *)c.p[i], c.n[i]), 0);
    assert_int_equal(drain(r, &want), 0);
    pl_fwd_reader_free(r);
  }
  dsf(&want, "pending=0\n");
  int rc;
  char *got = digest_whole(all.p, all.n, &rc);
  assert_int_equal(rc, 0);
  assert_string_equal(got, want.p);
  free(got);
  /* the same stream through space()/wrote() in 7-byte reads */
  dstr_t z = {0};
  pl_fwd_reader_t *r = rd_default();
  for (size_t off = 0; off < all.n;) {
    char *b;
    size_t len;
    assert_int_equal(pl_fwd_reader_space(r, 7, &b, &len), 0);
    assert_true(len >= 7);
    size_t k = all.n - off < 7 ? all.n - off : 7;
    memcpy(b, all.p + off, k);
    pl_fwd_reader_wrote(r, k);
    off += k;
    assert_int_equal(drain(r, &z), 0);
  }
  dsf(&z, "pending=%zu\n", pl_fwd_reader_pending(r));
  assert_string_equal(z.p, want.p);
  pl_fwd_reader_free(r);
  free(z.p);
  free(all.p);
  free(want.p);
  corpus_free(&c);
}

static void test_truncation(void **state) {
  (void)state;
  corpus_t c;
  corpus_build(&c);
  for (int i = 0; i < NCORPUS; i++) {
    for (size_t k = 0; k < c.n[i]; k++) {
      pl_fwd_msg_t msg;
      pl_fwd_reader_t *r = rd_default();
      assert_int_equal(pl_fwd_reader_feed(r, (const char *)c.p[i], k), 0);
      assert_int_equal(pl_fwd_reader_next(r, &msg), 0);
      assert_int_equal(pl_fwd_reader_next(r, &msg), 0);
      assert_int_equal(pl_fwd_reader_pending(r), k);
      assert_string_equal(pl_fwd_reader_errstr(r), "");
      pl_fwd_reader_free(r);
    }
  }
  corpus_free(&c);
}

/* ---- hostile sizes, nesting, reserved bytes ---- */

static void test_huge_declared_sizes(void **state) {
  (void)state;
  static const struct {
    const char *bytes;
    size_t n;
    size_t at;
  } cases[] = {
      {"\xdd\xff\xff\xff\xff", 5, 0},                     /* array32 root */
      {"\x92\xa1t\xdb\xff\xff\xff\xff", 8, 3},            /* str32 entries */
      {"\x92\xa1t\xc6\xff\xff\xff\xff", 8, 3},            /* bin32 entries */
      {"\x93\xa1t\x01\xdf\xff\xff\xff\xff", 9, 4},        /* map32 record */
      {"\x92\xa1t\xdc\xff\xff", 6, 3},                    /* array16 of 65535 */
      {"\x93\xa1t\x01\xc9\xff\xff\xff\xff\x00", 10, 4},   /* ext32 */
      {"\x92\xa1t\xda\x04\x00", 6, 3},                    /* str16 of 1024 in a 1024 limit */
      {"\x92\xa1t\x91\xdc\x01\x90\xdc\x01\x90\xdc\x01\x90", 13, 10}, /* 400 x 400 x 400 */
      {"\x92\xdb\xff\xff\xff\xff", 6, 1},                 /* str32 tag */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pl_fwd_reader_t *r = rd(1024, 512, 16);
    size_t base = pl_fwd_reader_memory(r);
    assert_int_equal(try_with(r, cases[i].bytes, cases[i].n), PL_ETOOBIG);
    char want[32];
    snprintf(want, sizeof want, "offset %zu: ", cases[i].at);
    assert_memory_equal(pl_fwd_reader_errstr(r), want, strlen(want));
    /* nothing was allocated for the declared sizes: only the small input buffer */
    assert_true(pl_fwd_reader_memory(r) <= base + 4096);
    pl_fwd_reader_free(r);
  }
  /* a bin payload that fits the frame limit but whose entry declares more than max_record */
  mp_t m;
  mp_init(&m);
  msgpack_pack_array(&m.pk, 2);
  mp_s(&m, "t");
  mp_b(&m, "\x92\x01\xdf\x7f\xff\xff\xff", 7);
  pl_fwd_reader_t *r = rd(1024, 512, 16);
  assert_int_equal(try_with(r, m.sb.data, m.sb.size), PL_ETOOBIG);
  assert_non_null(strstr(pl_fwd_reader_errstr(r), "packed entry 0 too big"));
  pl_fwd_reader_free(r);
  mp_free(&m);
}

static void nest(mp_t *m, int levels) {
  for (int i = 0; i < levels; i++)
    msgpack_pack_array(&m->pk, 1);
  msgpack_pack_int(&m->pk, 1);
}

/* An entry [1, {"a": <levels arrays>}] has depth 2 + levels. */
static void deep_entry(mp_t *m, int levels) {
  msgpack_pack_array(&m->pk, 2);
  msgpack_pack_int(&m->pk, 1);
  msgpack_pack_map(&m->pk, 1);
  mp_s(m, "a");
  nest(m, levels);
}

static int deep_message(int mode, int levels, unsigned max_depth) {
  mp_t m, pay;
  mp_init(&m);
  mp_init(&pay);
  deep_entry(&pay, levels);
  msgpack_pack_array(&m.pk, mode == 0 ? 3 : 2);
  mp_s(&m, "deep");
  if (mode == 0) { /* Message: splice [tag] + time, record */
    msgpack_pack_int(&m.pk, 1);
    mp_raw(&m, pay.sb.data + 2, pay.sb.size - 2); /* skip 0x92 0x01 */
  } else if (mode == 1) {
    msgpack_pack_array(&m.pk, 1);
    mp_raw(&m, pay.sb.data, pay.sb.size);
  } else {
    mp_b(&m, pay.sb.data, pay.sb.size);
  }
  pl_fwd_reader_t *r = rd(1 << 16, 1 << 16, max_depth);
  pl_fwd_msg_t msg;
  pl_fwd_entry_t e;
  assert_int_equal(pl_fwd_reader_feed(r, m.sb.data, m.sb.size), 0);
  int rc = pl_fwd_reader_next(r, &msg);
  if (rc == 1) {
    assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
    assert_null(e.error);
    assert_non_null(e.record);
    /* walk down to the innermost int: msgpack-c decoded every level */
    const msgpack_object *o = &e.record->via.map.ptr[0].val;
    for (int i = 0; i < levels; i++) {
      assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
      o = &o->via.array.ptr[0];
    }
    assert_int_equal(o->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
  } else {
    assert_int_equal(pl_fwd_reader_entry(r, &e), 0);
  }
  pl_fwd_reader_free(r);
  mp_free(&m);
  mp_free(&pay);
  return rc;
}

static void test_depth(void **state) {
  (void)state;
  for (int mode = 0; mode < 3; mode++) {
    assert_int_equal(deep_message(mode, 2, 4), 1);  /* depth 4: allowed */
    assert_int_equal(deep_message(mode, 3, 4), PL_EDEPTH);
    assert_int_equal(deep_message(mode, 30, 32), 1); /* msgpack-c's whole stack */
    assert_int_equal(deep_message(mode, 31, 32), PL_EDEPTH);
    assert_int_equal(deep_message(mode, 40, 1000), PL_EDEPTH); /* capped at 32 */
  }
  /* deep nesting right at the root fails before the frame is complete */
  pl_fwd_reader_t *r = rd(1024, 1024, 4);
  assert_int_equal(try_with(r, "\x92\xa1t\x91\x91\x91\x91\x91\x91", 9), PL_EDEPTH);
  assert_string_equal(pl_fwd_reader_errstr(r),
                      "offset 8: arrays and maps nest deeper than the depth limit (4)");
  pl_fwd_reader_free(r);
}

static void test_reserved_byte(void **state) {
  (void)state;
  pl_fwd_reader_t *r = rd_default();
  assert_int_equal(try_with(r, "\xc1", 1), PL_EPROTO);
  assert_string_equal(pl_fwd_reader_errstr(r),
                      "offset 0: a message must be an array or nil, not reserved byte 0xc1");
  pl_fwd_reader_free(r);
  r = rd_default();
  assert_int_equal(try_with(r, "\x93\xa1t\x01\xc1", 5), PL_EPROTO);
  assert_string_equal(pl_fwd_reader_errstr(r),
                      "offset 4: reserved byte 0xc1 is not MessagePack");
  pl_fwd_reader_free(r);
  /* inside a packed payload */
  mp_t m;
  mp_init(&m);
  msgpack_pack_array(&m.pk, 2);
  mp_s(&m, "t");
  mp_b(&m, "\x92\x01\x81\xa1k\xc1", 6);
  assert_int_equal(try_bytes(m.sb.data, m.sb.size), PL_EPROTO);
  mp_free(&m);
}

/* ---- wrong types in every position ---- */

static void test_protocol_errors(void **state) {
  (void)state;
  static const struct {
    const char *bytes;
    size_t n;
    const char *err;
  } cases[] = {
      {"\x05", 1, "offset 0: a message must be an array or nil, not int"},
      {"\x80", 1, "offset 0: a message must be an array or nil, not map"},
      {"\xa1x", 2, "offset 0: a message must be an array or nil, not str"},
      {"\x91\xa1t", 3, "offset 0: a message must be an array of 2 to 4 elements, not 1"},
      {"\x90", 1, "offset 0: a message must be an array of 2 to 4 elements, not 0"},
      {"\x95\xa1t\x01\x80\x80\x80", 7,
       "offset 0: a message must be an array of 2 to 4 elements, not 5"},
      {"\x93\x01\x01\x80", 4, "offset 1: tag must be a string, not int"},
      {"\x93\xc4\x01t\x01\x80", 6, "offset 1: tag must be a string, not bin"},
      {"\x92\xa1t\x80", 4,
       "offset 3: second element must be entries (array, bin, str) or a time, not map"},
      {"\x92\xa1t\xc0", 4,
       "offset 3: second element must be entries (array, bin, str) or a time, not nil"},
      {"\x92\xa1t\xc3", 4,
       "offset 3: second element must be entries (array, bin, str) or a time, not bool"},
      {"\x93\xa1t\x90\x90", 5, "offset 4: option must be a map or nil, not array"},
      {"\x93\xa1t\x90\xa1x", 6, "offset 4: option must be a map or nil, not str"},
      {"\x94\xa1t\x01\x80\x01", 6, "offset 5: option must be a map or nil, not int"},
      {"\x93\xa1t\x90\x81\xa5" "chunk\x01", 12,
       "offset 11: option chunk must be a str or bin of 1 to 256 bytes (got int of 0)"},
      {"\x93\xa1t\x90\x81\xa5" "chunk\xa0", 12,
       "offset 11: option chunk must be a str or bin of 1 to 256 bytes (got str of 0)"},
      {"\x93\xa1t\x90\x81\xa5" "chunk\x90", 12,
       "offset 11: option chunk must be a str or bin of 1 to 256 bytes (got array of 0)"},
      {"\x92\xa1t\x01", 4,
       "offset 0: Message mode is [tag, time, record, option?]: got 2 elements"},
      {"\x94\xa1t\x90\x80\x80", 6, "offset 0: Forward mode is [tag, entries, option?]: got 4 "
                                   "elements"},
      {"\x94\xa1t\xa0\x80\x80", 6, "offset 0: PackedForward mode is [tag, entries, option?]: "
                                   "got 4 elements"},
      {"\x92\xa1t\xc4\x02\x92\x01", 7, "offset 7: packed entry 0 is truncated"},
      {"\x92\xa1t\xc4\x05\x92\x01\x80\x92\x01", 10, "offset 10: packed entry 1 is truncated"},
      {"\x92\xa1t\xa2\x92\x01", 6, "offset 6: packed entry 0 is truncated"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pl_fwd_reader_t *r = rd_default();
    int rc = try_with(r, cases[i].bytes, cases[i].n);
    if (rc != PL_EPROTO)
      fail_msg("case %zu: rc %d (%s)", i, rc, pl_fwd_reader_errstr(r));
    assert_string_equal(pl_fwd_reader_errstr(r), cases[i].err);
    pl_fwd_reader_free(r);
  }
  /* chunk of 300 bytes */
  mp_t m;
  char big[300];
  memset(big, 'x', sizeof big);
  mp_init(&m);
  msgpack_pack_array(&m.pk, 3);
  mp_s(&m, "t");
  msgpack_pack_array(&m.pk, 0);
  msgpack_pack_map(&m.pk, 1);
  mp_s(&m, "chunk");
  mp_b(&m, big, sizeof big);
  assert_int_equal(try_bytes(m.sb.data, m.sb.size), PL_EPROTO);
  mp_free(&m);
  /* truncated entries after gunzip */
  size_t gn;
  unsigned char *gz = gzip("\x92\x01\x80\x92\x01", 5, &gn);
  packed_frame(&m, "t", gz, gn, 0, "gzip", NULL);
  pl_fwd_reader_t *r = rd_default();
  assert_int_equal(try_with(r, m.sb.data, m.sb.size), PL_EPROTO);
  assert_non_null(strstr(pl_fwd_reader_errstr(r), "gzip entries, inflated byte 5: entry 1 is "
                                                  "truncated"));
  pl_fwd_reader_free(r);
  free(gz);
  mp_free(&m);
}

static void test_bad_gzip(void **state) {
  (void)state;
  mp_t pay, m;
  mp_init(&pay);
  for (int k = 0; k < 50; k++)
    mp_ent(&pay, k, k);
  size_t gn;
  unsigned char *gz = gzip(pay.sb.data, pay.sb.size, &gn);
  /* not gzip at all */
  packed_frame(&m, "t", "not gzip data", 13, 0, "gzip", NULL);
  assert_int_equal(try_bytes(m.sb.data, m.sb.size), PL_EGZIP);
  mp_free(&m);
  /* truncated member */
  packed_frame(&m, "t", gz, gn - 10, 0, "gzip", NULL);
  pl_fwd_reader_t *r = rd_default();
  assert_int_equal(try_with(r, m.sb.data, m.sb.size), PL_EGZIP);
  assert_non_null(strstr(pl_fwd_reader_errstr(r), "truncated"));
  pl_fwd_reader_free(r);
  mp_free(&m);
  /* a corrupt byte in the deflate data (CRC or data error) */
  unsigned char *bad = malloc(gn);
  memcpy(bad, gz, gn);
  bad[gn / 2] ^= 0x55;
  packed_frame(&m, "t", bad, gn, 0, "gzip", NULL);
  assert_int_equal(try_bytes(m.sb.data, m.sb.size), PL_EGZIP);
  mp_free(&m);
  /* a good member followed by garbage */
  unsigned char *tail = malloc(gn + 4);
  memcpy(tail, gz, gn);
  memcpy(tail + gn, "junk", 4);
  packed_frame(&m, "t", tail, gn + 4, 0, "gzip", NULL);
  assert_int_equal(try_bytes(m.sb.data, m.sb.size), PL_EGZIP);
  mp_free(&m);
  /* sniffed magic with nothing valid behind it */
  packed_frame(&m, "t", "\x1f\x8b\x00\x00", 4, 0, NULL, NULL);
  assert_int_equal(try_bytes(m.sb.data, m.sb.size), PL_EGZIP);
  mp_free(&m);
  /* empty payload declared gzip */
  packed_frame(&m, "t", "", 0, 0, "gzip", NULL);
  assert_int_equal(try_bytes(m.sb.data, m.sb.size), PL_EGZIP);
  mp_free(&m);
  free(tail);
  free(bad);
  free(gz);
  mp_free(&pay);
}

static void test_gzip_bomb(void **state) {
  (void)state;
  /* 100 MB of zeros deflate to ~100 KB; the limit is 1 MiB of inflated entries */
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY),
                   Z_OK);
  static unsigned char zeros[1 << 16];
  size_t cap = 1 << 20, outn = 0;
  unsigned char *out = malloc(cap);
  for (int i = 0; i < 1600; i++) {
    zs.next_in = zeros;
    zs.avail_in = sizeof zeros;
    do {
      zs.next_out = out + outn;
      zs.avail_out = (uInt)(cap - outn);
      assert_int_not_equal(deflate(&zs, i == 1599 ? Z_FINISH : Z_NO_FLUSH), Z_STREAM_ERROR);
      outn = cap - zs.avail_out;
    } while (zs.avail_in || (i == 1599 && zs.avail_out == 0));
  }
  assert_int_equal(zs.total_in, 1600u << 16);
  deflateEnd(&zs);
  assert_true(outn < 200000);
  mp_t m;
  packed_frame(&m, "bomb", out, outn, 0, "gzip", "c");
  pl_fwd_reader_t *r = rd(1 << 20, 1 << 16, 16);
  assert_int_equal(try_with(r, m.sb.data, m.sb.size), PL_ETOOBIG);
  assert_non_null(strstr(pl_fwd_reader_errstr(r), "inflated entries exceed"));
  /* input buffer + at most max_message + 1 of output + zlib state */
  assert_true(pl_fwd_reader_memory(r) < (1u << 20) + 2 * cap + 64 * 1024);
  pl_fwd_reader_free(r);
  mp_free(&m);
  free(out);
}

static void test_record_limit(void **state) {
  (void)state;
  char filler[100];
  memset(filler, 'f', sizeof filler);
  for (int size = 0; size < 2; size++) {
    /* entry [1, {"k": str}] is 1 + 1 + 1 + 2 + (2 + len) bytes */
    size_t len = size == 0 ? 57 : 58; /* 64 bytes, then 65 */
    mp_t ent;
    mp_init(&ent);
    msgpack_pack_array(&ent.pk, 2);
    msgpack_pack_int(&ent.pk, 1);
    msgpack_pack_map(&ent.pk, 1);
    mp_s(&ent, "k");
    mp_sn(&ent, filler, len);
    assert_int_equal(ent.sb.size, 64 + (size_t)size);
    for (int mode = 0; mode < 4; mode++) {
      mp_t m;
      mp_init(&m);
      msgpack_pack_array(&m.pk, mode == 0 ? 3 : 2);
      mp_s(&m, "t");
      if (mode == 0) {
        mp_raw(&m, ent.sb.data + 1, ent.sb.size - 1);
      } else if (mode == 1) {
        msgpack_pack_array(&m.pk, 1);
        mp_raw(&m, ent.sb.data, ent.sb.size);
      } else if (mode == 2) {
        mp_b(&m, ent.sb.data, ent.sb.size);
      } else {
        size_t gn;
        unsigned char *gz = gzip(ent.sb.data, ent.sb.size, &gn);
        mp_b(&m, gz, gn);
        free(gz);
      }
      pl_fwd_reader_t *r = rd(4096, 64, 16);
      int rc = try_with(r, m.sb.data, m.sb.size);
      assert_int_equal(rc, size == 0 ? 1 : PL_ETOOBIG);
      pl_fwd_reader_free(r);
      mp_free(&m);
    }
    mp_free(&ent);
  }
  /* Forward entries are held to max_record by the frame scan itself: whatever the entry's
   * position (after a fixint entry, last), and before the rest of the frame arrives */
  mp_t ent, m;
  mp_init(&ent);
  msgpack_pack_array(&ent.pk, 2);
  msgpack_pack_int(&ent.pk, 1);
  msgpack_pack_map(&ent.pk, 1);
  mp_s(&ent, "k");
  mp_sn(&ent, filler, 58); /* 65 bytes */
  for (int where = 0; where < 3; where++) {
    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    mp_s(&m, "t");
    msgpack_pack_array(&m.pk, where == 2 ? 1000 : 3);
    msgpack_pack_int(&m.pk, 7);
    size_t at = m.sb.size;
    if (where == 1) {
      mp_ent(&m, 1, 1);
      at = m.sb.size;
    }
    mp_raw(&m, ent.sb.data, ent.sb.size);
    if (where == 0)
      mp_ent(&m, 1, 1);
    if (where == 2)
      msgpack_pack_array(&m.pk, 2); /* the next entry starts; 997 more never arrive */
    pl_fwd_reader_t *r = rd(1 << 16, 64, 16);
    assert_int_equal(try_with(r, m.sb.data, m.sb.size), PL_ETOOBIG);
    char want[96];
    snprintf(want, sizeof want, "offset %zu: entry exceeds the record size limit (64 bytes)", at);
    assert_string_equal(pl_fwd_reader_errstr(r), want);
    pl_fwd_reader_free(r);
    mp_free(&m);
  }
  mp_free(&ent);
  /* option values are not entries: a long one is fine */
  mp_init(&m);
  msgpack_pack_array(&m.pk, 3);
  mp_s(&m, "t");
  msgpack_pack_array(&m.pk, 2);
  mp_ent(&m, 1, 1);
  msgpack_pack_int(&m.pk, 3);
  msgpack_pack_map(&m.pk, 2);
  mp_s(&m, "metadata");
  mp_sn(&m, filler, 100);
  mp_s(&m, "chunk");
  mp_s(&m, "ck");
  {
    pl_fwd_reader_t *r = rd(1 << 16, 64, 16);
    pl_fwd_msg_t msg;
    pl_fwd_entry_t e;
    assert_int_equal(try_with(r, m.sb.data, m.sb.size), 1);
    pl_fwd_reader_free(r);
    r = one(m.sb.data, m.sb.size, &msg);
    assert_int_equal(msg.mode, PL_FWD_FORWARD);
    assert_int_equal(msg.nentries, 2);
    assert_int_equal(msg.chunk_len, 3);
    assert_memory_equal(msg.chunk, "\xa2" "ck", 3);
    assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
    assert_non_null(e.record);
    assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
    assert_string_equal(e.error, "entry must be a [time, record] array");
    assert_int_equal(e.raw_len, 1);
    assert_int_equal(pl_fwd_reader_entry(r, &e), 0);
    pl_fwd_reader_free(r);
  }
  mp_free(&m);

  /* a frame over max_message fails at the header, long before its bytes arrive */
  pl_fwd_reader_t *r = rd(4096, 1024, 16);
  assert_int_equal(try_with(r, "\x92\xa1t\xc5\x10\x00", 6), PL_ETOOBIG);
  assert_string_equal(pl_fwd_reader_errstr(r),
                      "offset 3: declared str/bin/ext length exceeds the size limit (4096 bytes)");
  pl_fwd_reader_free(r);
  /* ... while one of exactly max_message is fine */
  mp_init(&m);
  msgpack_pack_array(&m.pk, 2);
  mp_s(&m, "t");
  char *pad = calloc(1, 4096);
  mp_b(&m, pad, 4096 - 6); /* 0x92, a1 74, c5 hh ll */
  memcpy(m.sb.data + 6, "\x92\xcc\x01\x80", 4);
  for (size_t i = 10; i < 4096; i += 3)
    memcpy(m.sb.data + i, "\x92\x01\x80", 3);
  assert_int_equal(m.sb.size, 4096);
  r = rd(4096, 1024, 16);
  pl_fwd_msg_t msg;
  assert_int_equal(pl_fwd_reader_feed(r, m.sb.data, m.sb.size), 0);
  assert_int_equal(pl_fwd_reader_next(r, &msg), 1);
  assert_int_equal(msg.nentries, 1 + (4096 - 10) / 3);
  pl_fwd_reader_free(r);
  free(pad);
  mp_free(&m);
}

/* ---- reader behaviour ---- */

static void test_sticky_error(void **state) {
  (void)state;
  corpus_t c;
  corpus_build(&c);
  pl_fwd_reader_t *r = rd_default();
  pl_fwd_msg_t msg;
  pl_fwd_entry_t e;
  /* a good message, then one with an int tag: the error names the stream offset */
  assert_int_equal(pl_fwd_reader_feed(r, (const char *)c.p[0], c.n[0]), 0);
  assert_int_equal(pl_fwd_reader_feed(r, "\x93\x07\x01\x80", 4), 0);
  assert_int_equal(pl_fwd_reader_feed(r, (const char *)c.p[0], c.n[0]), 0);
  assert_int_equal(pl_fwd_reader_next(r, &msg), 1);
  assert_int_equal(pl_fwd_reader_next(r, &msg), PL_EPROTO);
  char want[64];
  snprintf(want, sizeof want, "offset %zu: tag must be a string, not int", c.n[0] + 1);
  assert_string_equal(pl_fwd_reader_errstr(r), want);
  assert_int_equal(pl_fwd_reader_next(r, &msg), PL_EPROTO);
  assert_int_equal(pl_fwd_reader_entry(r, &e), 0);
  assert_int_equal(pl_fwd_reader_feed(r, "\xc0", 1), PL_EPROTO);
  char *b;
  size_t len;
  assert_int_equal(pl_fwd_reader_space(r, 16, &b, &len), PL_EPROTO);
  assert_string_equal(pl_fwd_reader_errstr(r), want);
  pl_fwd_reader_free(r);
  corpus_free(&c);
}

static void ping(mp_t *m, const char *first, int salt_bin, int salt_int, int n) {
  mp_init(m);
  msgpack_pack_array(&m->pk, (size_t)n);
  mp_s(m, first);
  mp_s(m, "client.example");
  if (salt_int)
    msgpack_pack_int(&m->pk, 5);
  else if (salt_bin)
    mp_b(m, "\x00\x01salt", 6);
  else
    mp_s(m, "0123456789abcdef0123456789abcdef");
  mp_s(m, "digest");
  if (n > 4)
    mp_s(m, "user");
  if (n > 5)
    mp_s(m, "");
}

static void test_ping(void **state) {
  (void)state;
  pl_fwd_msg_t msg;
  pl_fwd_entry_t e;
  mp_t m;
  for (int bin = 0; bin < 2; bin++) {
    ping(&m, "PING", bin, 0, 6);
    pl_fwd_reader_t *r = rd_default();
    pl_fwd_reader_expect_ping(r, 1);
    assert_int_equal(pl_fwd_reader_feed(r, m.sb.data, m.sb.size), 0);
    assert_int_equal(pl_fwd_reader_next(r, &msg), 1);
    assert_int_equal(msg.mode, PL_FWD_PING);
    assert_int_equal(msg.nentries, 0);
    assert_true(pl_str_eq(msg.ping_hostname, "client.example"));
    if (bin) {
      assert_int_equal(msg.ping_salt.n, 6);
      assert_memory_equal(msg.ping_salt.p, "\x00\x01salt", 6);
    } else {
      assert_true(pl_str_eq(msg.ping_salt, "0123456789abcdef0123456789abcdef"));
    }
    assert_true(pl_str_eq(msg.ping_digest, "digest"));
    assert_true(pl_str_eq(msg.ping_username, "user"));
    assert_int_equal(msg.ping_password.n, 0);
    assert_int_equal(pl_fwd_reader_entry(r, &e), 0);
    /* once the handshake is done, ordinary messages flow */
    pl_fwd_reader_expect_ping(r, 0);
    assert_int_equal(pl_fwd_reader_feed(r, "\x93\xa1t\x01\x80", 5), 0);
    assert_int_equal(pl_fwd_reader_next(r, &msg), 1);
    assert_int_equal(msg.mode, PL_FWD_MESSAGE);
    pl_fwd_reader_free(r);
    mp_free(&m);
  }
  /* what is not a PING while one is expected */
  struct {
    const char *first;
    int salt_int, n;
    const char *err;
  } bad[] = {
      {"PONG", 0, 6, "offset 0: expected a handshake PING, got \"PONG\""},
      {"PING", 0, 5, "offset 0: expected a handshake PING of 6 elements, got an array of 5"},
      {"PING", 1, 6, "offset 21: handshake PING element 2 must be a str or bin, not int"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ping(&m, bad[i].first, 0, bad[i].salt_int, bad[i].n);
    pl_fwd_reader_t *r = rd_default();
    pl_fwd_reader_expect_ping(r, 1);
    assert_int_equal(try_with(r, m.sb.data, m.sb.size), PL_EPROTO);
    assert_string_equal(pl_fwd_reader_errstr(r), bad[i].err);
    pl_fwd_reader_free(r);
    mp_free(&m);
  }
  static const struct {
    const char *bytes;
    size_t n;
  } other[] = {{"\xc0", 1}, {"\x93\xa1t\x01\x80", 5}, {"\x01", 1}};
  for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
    pl_fwd_reader_t *r = rd_default();
    pl_fwd_reader_expect_ping(r, 1);
    assert_int_equal(try_with(r, other[i].bytes, other[i].n), PL_EPROTO);
    pl_fwd_reader_free(r);
  }
  /* a PING without expect_ping is just a malformed message */
  ping(&m, "PING", 0, 0, 6);
  assert_int_equal(try_bytes(m.sb.data, m.sb.size), PL_EPROTO);
  mp_free(&m);
}

static void test_space_wrote(void **state) {
  (void)state;
  pl_fwd_reader_t *r = rd(1000, 1000, 16);
  char *b;
  size_t len;
  pl_fwd_msg_t msg;
  /* writes land where the message is read from */
  assert_int_equal(pl_fwd_reader_space(r, 100, &b, &len), 0);
  assert_true(len >= 100);
  memcpy(b, "\x93\xa1t\x05\x81\xa1k\xa1v", 9);
  pl_fwd_reader_wrote(r, 4);
  assert_int_equal(pl_fwd_reader_pending(r), 4);
  assert_int_equal(pl_fwd_reader_next(r, &msg), 0);
  assert_int_equal(pl_fwd_reader_space(r, 5, &b, &len), 0);
  assert_true(len >= 5);
  memcpy(b, "\x81\xa1k\xa1v", 5);
  pl_fwd_reader_wrote(r, 5);
  assert_int_equal(pl_fwd_reader_next(r, &msg), 1);
  assert_int_equal(msg.mode, PL_FWD_MESSAGE);
  assert_int_equal(pl_fwd_reader_next(r, &msg), 0);
  /* the buffer never offers more than max_message + slack, and refuses when full */
  assert_int_equal(pl_fwd_reader_space(r, 1 << 20, &b, &len), 0);
  assert_true(len >= 1000);
  assert_true(len <= 1000 + 65536);
  size_t total = 0;
  for (;;) {
    int rc = pl_fwd_reader_space(r, 1 << 20, &b, &len);
    if (rc < 0) {
      assert_int_equal(rc, PL_ETOOBIG);
      break;
    }
    assert_true(len > 0);
    memset(b, 0xc0, len); /* heartbeats, never read */
    pl_fwd_reader_wrote(r, len);
    total += len;
    assert_true(total <= 1000 + 65536);
  }
  assert_int_equal(total, 1000 + 65536);
  assert_true(pl_fwd_reader_memory(r) < 1000 + 65536 + 8192);
  assert_non_null(strstr(pl_fwd_reader_errstr(r), "pending without a complete message"));
  pl_fwd_reader_free(r);
}

static void test_trim(void **state) {
  (void)state;
  corpus_t c;
  corpus_build(&c);
  pl_fwd_reader_t *r = rd_default();
  size_t base = pl_fwd_reader_memory(r);
  pl_fwd_msg_t msg;
  pl_fwd_entry_t e;
  /* a compressed message uses the input buffer, inflate output, zlib state and the zone */
  assert_int_equal(pl_fwd_reader_feed(r, (const char *)c.p[7], c.n[7]), 0);
  assert_int_equal(pl_fwd_reader_next(r, &msg), 1);
  assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
  size_t busy = pl_fwd_reader_memory(r);
  assert_true(busy > base + 16384);
  /* trimming while a message is out keeps what it points into */
  pl_fwd_reader_trim(r);
  assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
  assert_non_null(e.record);
  assert_int_equal(e.sec, 1700000021);
  assert_int_equal(pl_fwd_reader_next(r, &msg), 0);
  pl_fwd_reader_trim(r);
  assert_int_equal(pl_fwd_reader_memory(r), base);
  /* pending bytes survive a trim */
  assert_int_equal(pl_fwd_reader_feed(r, (const char *)c.p[3], 10), 0);
  pl_fwd_reader_trim(r);
  assert_int_equal(pl_fwd_reader_pending(r), 10);
  assert_true(pl_fwd_reader_memory(r) > base);
  assert_int_equal(pl_fwd_reader_feed(r, (const char *)c.p[3] + 10, c.n[3] - 10), 0);
  assert_int_equal(pl_fwd_reader_next(r, &msg), 1);
  assert_int_equal(msg.nentries, 3);
  assert_int_equal(pl_fwd_reader_next(r, &msg), 0);
  pl_fwd_reader_trim(r);
  assert_int_equal(pl_fwd_reader_memory(r), base);
  pl_fwd_reader_free(r);
  corpus_free(&c);
}

/* A returned message stays valid while more input is buffered, even when the buffer has
 * to grow (AddressSanitizer checks the pointers). */
static void test_message_survives_feed(void **state) {
  (void)state;
  corpus_t c;
  corpus_build(&c);
  pl_fwd_reader_t *r = rd_default();
  pl_fwd_msg_t msg;
  pl_fwd_entry_t e;
  assert_int_equal(pl_fwd_reader_feed(r, (const char *)c.p[3], c.n[3]), 0);
  assert_int_equal(pl_fwd_reader_feed(r, (const char *)c.p[4], 5), 0);
  assert_int_equal(pl_fwd_reader_next(r, &msg), 1);
  assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
  /* grow the buffer well past its first size, through feed() and then space() */
  char *big = malloc(200000);
  memcpy(big, c.p[4] + 5, c.n[4] - 5);
  size_t n = c.n[4] - 5;
  while (n + c.n[0] <= 100000) {
    memcpy(big + n, c.p[0], c.n[0]);
    n += c.n[0];
  }
  assert_int_equal(pl_fwd_reader_feed(r, big, n), 0);
  char *b;
  size_t len;
  assert_int_equal(pl_fwd_reader_space(r, 300000, &b, &len), 0);
  assert_true(len >= 300000);
  assert_true(pl_str_eq(msg.tag, "fw"));
  assert_memory_equal(msg.chunk, "\xa3"
                                 "abc",
                      4);
  for (int k = 1; k < 3; k++) {
    assert_int_equal(pl_fwd_reader_entry(r, &e), 1);
    assert_int_equal(e.sec, 1700000010 + k);
    assert_int_equal(e.record->via.map.ptr[1].val.via.u64, 10 + k);
  }
  assert_int_equal(pl_fwd_reader_next(r, &msg), 1);
  assert_int_equal(msg.mode, PL_FWD_PACKED);
  assert_int_equal(msg.nentries, 4);
  size_t count = 0;
  int rc;
  while ((rc = pl_fwd_reader_next(r, &msg)) == 1) {
    assert_int_equal(msg.mode, PL_FWD_MESSAGE);
    count++;
  }
  assert_int_equal(rc, 0);
  assert_int_equal(count, (n - (c.n[4] - 5)) / c.n[0]);
  assert_int_equal(pl_fwd_reader_pending(r), 0);
  /* offsets in error messages still count every byte of the stream */
  assert_int_equal(pl_fwd_reader_feed(r, "\x93\x07\x01\x80", 4), 0);
  assert_int_equal(pl_fwd_reader_next(r, &msg), PL_EPROTO);
  char want[64];
  snprintf(want, sizeof want, "offset %zu: tag must be a string, not int", c.n[3] + 5 + n + 1);
  assert_string_equal(pl_fwd_reader_errstr(r), want);
  free(big);
  pl_fwd_reader_free(r);
  corpus_free(&c);
}

static void test_entry_without_message(void **state) {
  (void)state;
  pl_fwd_reader_t *r = rd_default();
  pl_fwd_entry_t e;
  pl_fwd_msg_t msg;
  assert_int_equal(pl_fwd_reader_entry(r, &e), 0);
  assert_int_equal(pl_fwd_reader_next(r, &msg), 0);
  assert_int_equal(pl_fwd_reader_entry(r, &e), 0);
  assert_string_equal(pl_fwd_reader_errstr(r), "");
  assert_int_equal(pl_fwd_reader_pending(r), 0);
  pl_fwd_reader_free(r);
  pl_fwd_reader_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_message_mode),
      cmocka_unit_test(test_message_option),
      cmocka_unit_test(test_forward_mode),
      cmocka_unit_test(test_packed_modes),
      cmocka_unit_test(test_heartbeat),
      cmocka_unit_test(test_times),
      cmocka_unit_test(test_rejected_entries),
      cmocka_unit_test(test_split_every_offset),
      cmocka_unit_test(test_back_to_back),
      cmocka_unit_test(test_truncation),
      cmocka_unit_test(test_huge_declared_sizes),
      cmocka_unit_test(test_depth),
      cmocka_unit_test(test_reserved_byte),
      cmocka_unit_test(test_protocol_errors),
      cmocka_unit_test(test_bad_gzip),
      cmocka_unit_test(test_gzip_bomb),
      cmocka_unit_test(test_record_limit),
      cmocka_unit_test(test_sticky_error),
      cmocka_unit_test(test_ping),
      cmocka_unit_test(test_space_wrote),
      cmocka_unit_test(test_trim),
      cmocka_unit_test(test_message_survives_feed),
      cmocka_unit_test(test_entry_without_message),
  };
  return cmocka_run_group_tests_name("forward", tests, NULL, NULL);
}
