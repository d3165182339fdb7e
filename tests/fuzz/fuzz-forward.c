/* libFuzzer target: the Forward reader fed arbitrary bytes in arbitrary splits, every
 * message and entry walked, every valid record validated and packed as the daemon does. */
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parley/forward.h"
#include "parley/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pl_fwd_limits_t lim = {64 * 1024, 16 * 1024, 32};
  pl_fwd_reader_t *r = pl_fwd_reader_new(&lim);
  msgpack_sbuffer sb;
  size_t off = 0;
  /* The first byte picks the split size, so the corpus explores partial reads too. */
  size_t step = size ? (size_t)data[0] % 64 + 1 : 1;
  if (!r) return 0;
  msgpack_sbuffer_init(&sb);
  if (size) {
    data++;
    size--;
  }
  while (off < size) {
    size_t n = size - off < step ? size - off : step;
    pl_fwd_msg_t m;
    int rc;
    if (off % 2) {
      char *buf;
      size_t len;
      if (pl_fwd_reader_space(r, n, &buf, &len) != 0) break;
      if (len < n) n = len;
      memcpy(buf, data + off, n);
      pl_fwd_reader_wrote(r, n);
    } else if (pl_fwd_reader_feed(r, (const char *)data + off, n) != 0) {
      break;
    }
    off += n;
    while ((rc = pl_fwd_reader_next(r, &m)) == 1) {
      pl_fwd_entry_t e;
      if (m.mode == PL_FWD_PING) pl_fwd_reader_expect_ping(r, 0);
      while (pl_fwd_reader_entry(r, &e) == 1) {
        pl_record_t rec;
        char why[160];
        if (!e.record) continue;
        if (pl_record_parse(&rec, e.record, e.sec, why, sizeof(why)) == 0) {
          msgpack_packer pk;
          pl_record_meta_t meta = {m.tag, e.sec, e.nsec, 0};
          msgpack_sbuffer_clear(&sb);
          msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
          pl_record_pack(&pk, &rec, e.record, &meta);
        }
      }
    }
    if (rc < 0) break;
  }
  msgpack_sbuffer_destroy(&sb);
  pl_fwd_reader_free(r);
  return 0;
}
