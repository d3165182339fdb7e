/* libFuzzer target: any MessagePack object as a query request against a small store loaded
 * at start-up. Every request must get exactly one well-formed reply map. */
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parley/mpscan.h"
#include "parley/query.h"
#include "testutil.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pl_store_t *store;
static char *dir;

static void cleanup(void) {
  pl_store_close(store);
  tu_rmrf(dir);
  free(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  static const char *insts[] = {"Alpha Center", "Beta Institute", "Gamma Fund", "Delta Forum"};
  dir = tu_tempdir("fuzz-query");
  pl_batch_t *b = pl_batch_new();
  (void)argc;
  (void)argv;
  store = tu_store(dir, 16 << 20, 256 << 20);
  if (!store) abort();
  for (int i = 0; i < 400; i++) {
    char date[16], id[16];
    tu_rec_t r = {0};
    snprintf(date, sizeof(date), "20%02d-%02d-%02d", 18 + i % 6, 1 + i % 12, 1 + i % 28);
    snprintf(id, sizeof(id), "q%d", i);
    r.institution = insts[i % 4];
    r.date = date;
    r.id = id;
    r.uid = -1;
    r.participants = i % 3 ? i : -1;
    r.kind = i % 2 ? "visit" : "dialogue";
    r.format = i % 3 ? "virtual" : "in_person";
    r.country = i % 2 ? "CN" : "US";
    r.cps = insts[(i + 1) % 4];
    r.topics = i % 5 ? "trade,climate" : "health";
    tu_add(b, &r, 0);
  }
  if (tu_commit1(store, b, 1000)) abort();
  pl_batch_free(b);
  atexit(cleanup);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pl_mpscan_t scan;
  msgpack_unpacked u, reply;
  msgpack_sbuffer sb;
  msgpack_packer pk;
  pl_query_env_t env = {"fuzz", 1, 2};
  size_t off = 0;
  ssize_t n;
  pl_mpscan_init(&scan, 64 * 1024, 32);
  n = pl_mpscan_run(&scan, data, size);
  if (n <= 0) return 0;
  msgpack_unpacked_init(&u);
  if (msgpack_unpack_next(&u, (const char *)data, (size_t)n, &off) == MSGPACK_UNPACK_SUCCESS) {
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (pl_query_exec(store, &env, &u.data, &pk) != 0) abort();
    msgpack_unpacked_init(&reply);
    off = 0;
    if (msgpack_unpack_next(&reply, sb.data, sb.size, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != sb.size || reply.data.type != MSGPACK_OBJECT_MAP)
      abort();
    msgpack_unpacked_destroy(&reply);
    msgpack_sbuffer_destroy(&sb);
  }
  msgpack_unpacked_destroy(&u);
  return 0;
}
