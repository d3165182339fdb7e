/* The Forward handshake: HELO shape, a PING computed as Fluentd does, wrong keys and users. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "parley/auth.h"
#include "parley/error.h"

static const pl_config_user_t users[] = {{"alice", "wonderland"}};

static void unpack(msgpack_sbuffer *sb, msgpack_unpacked *u) {
  size_t off = 0;
  msgpack_unpacked_init(u);
  assert_int_equal(msgpack_unpack_next(u, sb->data, sb->size, &off), MSGPACK_UNPACK_SUCCESS);
}

static void test_helo_shape(void **state) {
  pl_auth_cfg_t cfg = {"k3y", "server.example", users, 1};
  pl_auth_t a;
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_unpacked u;
  (void)state;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  assert_int_equal(pl_auth_helo(&a, &cfg, &pk), 0);
  unpack(&sb, &u);
  assert_int_equal(u.data.via.array.size, 2);
  assert_memory_equal(u.data.via.array.ptr[0].via.str.ptr, "HELO", 4);
  msgpack_object_map *m = &u.data.via.array.ptr[1].via.map;
  assert_int_equal(m->size, 3);
  /* nonce and auth are bin (fluent-logger needs a Buffer to enable user auth) */
  assert_int_equal(m->ptr[0].val.type, MSGPACK_OBJECT_BIN);
  assert_int_equal(m->ptr[0].val.via.bin.size, 16);
  assert_memory_equal(m->ptr[0].val.via.bin.ptr, a.nonce, 16);
  assert_int_equal(m->ptr[1].val.type, MSGPACK_OBJECT_BIN);
  assert_int_equal(m->ptr[1].val.via.bin.size, 16);
  assert_int_equal(m->ptr[2].val.type, MSGPACK_OBJECT_BOOLEAN);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
}

static int check(const pl_auth_cfg_t *cfg, const char *key, const char *user, const char *pass,
                 msgpack_sbuffer *out) {
  pl_auth_t a;
  pl_fwd_msg_t m;
  msgpack_sbuffer sb;
  msgpack_packer pk;
  char digest[129], pwd[129], why[128];
  const char *salt = "0123456789abcdef0123456789abcdef";
  const char *host = "client.example";
  int rc;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  assert_int_equal(pl_auth_helo(&a, cfg, &pk), 0);
  pl_auth_digest(digest, salt, strlen(salt), host, strlen(host), a.nonce, 16, key, strlen(key));
  pl_auth_digest(pwd, a.auth, a.has_auth ? 16 : 0, user, strlen(user), pass, strlen(pass), NULL,
                 0);
  memset(&m, 0, sizeof(m));
  m.mode = PL_FWD_PING;
  m.ping_hostname = pl_cstr(host);
  m.ping_salt = pl_cstr(salt);
  m.ping_digest = pl_cstr(digest);
  m.ping_username = pl_cstr(user);
  m.ping_password = pl_str(pwd, 128);
  msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
  rc = pl_auth_check_ping(&a, cfg, &m, &pk, why, sizeof(why));
  msgpack_sbuffer_destroy(&sb);
  return rc;
}

static void test_ping_pong(void **state) {
  pl_auth_cfg_t cfg = {"k3y", "server.example", NULL, 0};
  msgpack_sbuffer out;
  msgpack_unpacked u;
  char want[129];
  (void)state;
  msgpack_sbuffer_init(&out);
  assert_int_equal(check(&cfg, "k3y", "", "", &out), 0);
  unpack(&out, &u);
  assert_int_equal(u.data.via.array.size, 5);
  assert_true(u.data.via.array.ptr[1].via.boolean);
  assert_memory_equal(u.data.via.array.ptr[3].via.str.ptr, "server.example", 14);
  assert_int_equal(u.data.via.array.ptr[4].via.str.size, 128);
  (void)want;
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_clear(&out);
  assert_int_equal(check(&cfg, "wrong", "", "", &out), PL_EAUTH);
  unpack(&out, &u);
  assert_false(u.data.via.array.ptr[1].via.boolean);
  assert_memory_equal(u.data.via.array.ptr[2].via.str.ptr, "shared_key mismatch", 19);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&out);
}

static void test_users(void **state) {
  pl_auth_cfg_t cfg = {"k3y", "server.example", users, 1};
  msgpack_sbuffer out;
  (void)state;
  msgpack_sbuffer_init(&out);
  assert_int_equal(check(&cfg, "k3y", "alice", "wonderland", &out), 0);
  msgpack_sbuffer_clear(&out);
  assert_int_equal(check(&cfg, "k3y", "alice", "looking-glass", &out), PL_EAUTH);
  msgpack_sbuffer_clear(&out);
  assert_int_equal(check(&cfg, "k3y", "bob", "wonderland", &out), PL_EAUTH);
  msgpack_sbuffer_destroy(&out);
}

static void test_digest_known_value(void **state) {
  char out[129];
  (void)state;
  /* SHA-512("abc"), FIPS 180-2 appendix C */
  pl_auth_digest(out, "a", 1, "b", 1, "c", 1, NULL, 0);
  assert_string_equal(out,
                      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                      "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_helo_shape),
      cmocka_unit_test(test_ping_pong),
      cmocka_unit_test(test_users),
      cmocka_unit_test(test_digest_known_value),
  };
  return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
