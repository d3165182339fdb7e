/* Helpers shared by the C tests. */
#include "testutil.h"

#include <ftw.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parley/error.h"
#include "parley/record.h"

char *tu_tempdir(const char *tag) {
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  char *p = malloc(strlen(base) + strlen(tag) + 32);
  sprintf(p, "%s/parley-%s-XXXXXX", base, tag);
  if (!mkdtemp(p)) {
    perror("mkdtemp");
    abort();
  }
  return p;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

void tu_rmrf(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void pack_cstr(msgpack_packer *pk, const char *s) {
  msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void pack_list(msgpack_packer *pk, const char *list) {
  int n = 0;
  const char *p;
  for (p = list; *p; p++) n += *p == ',';
  msgpack_pack_array(pk, (size_t)n + 1);
  for (p = list;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    msgpack_pack_str_with_body(pk, p, len);
    if (!comma) break;
    p = comma + 1;
  }
}

int tu_add(pl_batch_t *b, const tu_rec_t *r, int64_t entry_sec) {
  msgpack_sbuffer sb, out;
  msgpack_packer pk;
  msgpack_unpacked u;
  pl_record_t rec;
  char why[200];
  int n = 0, rc;
  size_t off = 0;

  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  n += r->institution != NULL;
  n += r->date != NULL;
  n += r->id != NULL || r->uid >= 0;
  n += r->kind != NULL;
  n += r->format != NULL;
  n += r->country != NULL;
  n += r->participants >= 0;
  n += r->cps != NULL;
  n += r->topics != NULL;
  n += r->extra_key != NULL;
  msgpack_pack_map(&pk, (size_t)n);
  if (r->institution) pack_cstr(&pk, "institution"), pack_cstr(&pk, r->institution);
  if (r->date) pack_cstr(&pk, "date"), pack_cstr(&pk, r->date);
  if (r->id) pack_cstr(&pk, "id"), pack_cstr(&pk, r->id);
  else if (r->uid >= 0) pack_cstr(&pk, "id"), msgpack_pack_uint64(&pk, (uint64_t)r->uid);
  if (r->kind) pack_cstr(&pk, "kind"), pack_cstr(&pk, r->kind);
  if (r->format) pack_cstr(&pk, "format"), pack_cstr(&pk, r->format);
  if (r->country) pack_cstr(&pk, "country"), pack_cstr(&pk, r->country);
  if (r->participants >= 0)
    pack_cstr(&pk, "participants"), msgpack_pack_uint64(&pk, (uint64_t)r->participants);
  if (r->cps) pack_cstr(&pk, "counterparts"), pack_list(&pk, r->cps);
  if (r->topics) pack_cstr(&pk, "topics"), pack_list(&pk, r->topics);
  if (r->extra_key) pack_cstr(&pk, r->extra_key), pack_cstr(&pk, r->extra_val);

  msgpack_unpacked_init(&u);
  if (msgpack_unpack_next(&u, sb.data, sb.size, &off) != MSGPACK_UNPACK_SUCCESS) abort();
  if (pl_record_parse(&rec, &u.data, entry_sec, why, sizeof(why)) != 0) {
    if (pl_batch_add_reject(b, why, sb.data, sb.size, "test", 1)) abort();
    rc = 1;
  } else {
    pl_record_meta_t meta = {{"test", 4}, entry_sec, 0, 1};
    msgpack_sbuffer_init(&out);
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    if (pl_record_pack(&pk, &rec, &u.data, &meta)) abort();
    if (pl_batch_add_record(b, &rec, out.data, out.size)) abort();
    msgpack_sbuffer_destroy(&out);
    rc = 0;
  }
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
  return rc;
}

pl_store_t *tu_store(const char *dir, uint64_t map_size, uint64_t map_max) {
  pl_store_opts_t o = {dir, map_size, map_max, 0, 0, 600000, 0};
  pl_store_t *s = NULL;
  char err[256];
  int rc = pl_store_open(&s, &o, err, sizeof(err));
  if (rc) {
    fprintf(stderr, "tu_store: %s\n", err);
    return NULL;
  }
  return s;
}

int tu_commit1(pl_store_t *s, pl_batch_t *b, uint64_t now_ms) {
  return pl_store_commit(s, &b, 1, now_ms);
}

uint64_t tu_count(pl_store_t *s, pl_table_t tab) {
  pl_rtxn_t *t;
  pl_cursor_t *c;
  pl_str_t k, v;
  uint64_t n = 0;
  if (pl_store_read_begin(s, &t)) abort();
  if (pl_store_cursor_open(t, tab, &c)) abort();
  for (int rc = pl_store_cursor_first(c, &k, &v); rc == 0; rc = pl_store_cursor_next(c, &k, &v))
    n++;
  pl_store_cursor_close(c);
  pl_store_read_end(t);
  return n;
}

uint64_t tu_rand(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}
