/* libFuzzer target: any MessagePack object as a record. A record that validates must pack,
 * unpack from its stored form, and validate again to the same fields. */
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parley/mpscan.h"
#include "parley/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(pl_str_t a, pl_str_t b) { return a.n == b.n && memcmp(a.p, b.p, a.n) == 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pl_mpscan_t scan;
  msgpack_unpacked u, back;
  msgpack_sbuffer sb;
  msgpack_packer pk;
  pl_record_t rec, rec2;
  pl_record_meta_t meta = {{"fuzz", 4}, 1700000000, 5, 7}, meta2;
  const msgpack_object *map;
  char why[160];
  size_t off = 0;
  ssize_t n;
  /* As in the daemon, only a frame the bounded scanner accepted reaches msgpack-c. There a
   * record sits inside [time, record] within msgpack-c's 32 levels, and its stored form
   * [1, tag, ..., record] nests it exactly as deep; here the record is the root, so it may
   * use one level less. */
  pl_mpscan_init(&scan, 1 << 20, 31);
  n = pl_mpscan_run(&scan, data, size);
  if (n <= 0) return 0;
  msgpack_unpacked_init(&u);
  if (msgpack_unpack_next(&u, (const char *)data, (size_t)n, &off) != MSGPACK_UNPACK_SUCCESS) {
    msgpack_unpacked_destroy(&u);
    return 0;
  }
  if (pl_record_parse(&rec, &u.data, 1700000000, why, sizeof(why)) == 0) {
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (pl_record_pack(&pk, &rec, &u.data, &meta) != 0) abort();
    msgpack_unpacked_init(&back);
    if (pl_record_unpack_stored(sb.data, sb.size, &back, &meta2, &map, &rec2) != 0) abort();
    if (rec.day != rec2.day || !same(rec.institution, rec2.institution) ||
        rec.ncounterparts != rec2.ncounterparts || rec.ntopics != rec2.ntopics ||
        rec.participants != rec2.participants || !same(rec.kind, rec2.kind) ||
        rec.id_type != rec2.id_type)
      abort();
    for (uint32_t i = 0; i < rec.ncounterparts; i++)
      if (!same(rec.counterparts[i], rec2.counterparts[i])) abort();
    msgpack_unpacked_destroy(&back);
    msgpack_sbuffer_destroy(&sb);
  } else if (why[0] == '\0') {
    abort(); /* a rejection always says why */
  }
  msgpack_unpacked_destroy(&u);
  return 0;
}
