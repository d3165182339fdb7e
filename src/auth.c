/* Forward handshake: HELO out, PING checked, PONG out. Digests with OpenSSL's SHA-512. */
#include "parley/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "parley/error.h"

void pl_auth_digest(char out[129], const void *p1, size_t n1, const void *p2, size_t n2,
                    const void *p3, size_t n3, const void *p4, size_t n4) {
  static const char hex[] = "0123456789abcdef";
  unsigned char md[64];
  unsigned int mdlen = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha512(), NULL);
  if (n1) EVP_DigestUpdate(ctx, p1, n1);
  if (n2) EVP_DigestUpdate(ctx, p2, n2);
  if (n3) EVP_DigestUpdate(ctx, p3, n3);
  if (n4) EVP_DigestUpdate(ctx, p4, n4);
  EVP_DigestFinal_ex(ctx, md, &mdlen);
  EVP_MD_CTX_free(ctx);
  for (unsigned i = 0; i < 64; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[128] = '\0';
}

static void pack_str(msgpack_packer *pk, const char *s, size_t n) {
  msgpack_pack_str_with_body(pk, s, n);
}

int pl_auth_helo(pl_auth_t *a, const pl_auth_cfg_t *cfg, msgpack_packer *pk) {
  a->has_auth = cfg->nusers > 0;
  if (RAND_bytes(a->nonce, sizeof(a->nonce)) != 1) return PL_EIO;
  if (a->has_auth && RAND_bytes(a->auth, sizeof(a->auth)) != 1) return PL_EIO;
  msgpack_pack_array(pk, 2);
  pack_str(pk, "HELO", 4);
  msgpack_pack_map(pk, 3);
  pack_str(pk, "nonce", 5);
  msgpack_pack_bin_with_body(pk, a->nonce, sizeof(a->nonce));
  pack_str(pk, "auth", 4);
  msgpack_pack_bin_with_body(pk, a->auth, a->has_auth ? sizeof(a->auth) : 0);
  pack_str(pk, "keepalive", 9);
  msgpack_pack_true(pk);
  return 0;
}

static void pong(msgpack_packer *pk, int ok, const char *reason, const char *host,
                 const char *digest) {
  msgpack_pack_array(pk, 5);
  pack_str(pk, "PONG", 4);
  if (ok)
    msgpack_pack_true(pk);
  else
    msgpack_pack_false(pk);
  pack_str(pk, reason, strlen(reason));
  pack_str(pk, host, strlen(host));
  pack_str(pk, digest, strlen(digest));
}

static int digest_eq(pl_str_t got, const char *want) {
  /* Constant time: the digest is a secret-derived value. */
  return got.n == 128 && CRYPTO_memcmp(got.p, want, 128) == 0;
}

int pl_auth_check_ping(const pl_auth_t *a, const pl_auth_cfg_t *cfg, const pl_fwd_msg_t *ping,
                       msgpack_packer *pk, char *why, size_t whylen) {
  char want[129];
  const char *key = cfg->shared_key;
  size_t keylen = strlen(key);

  pl_auth_digest(want, ping->ping_salt.p, ping->ping_salt.n, ping->ping_hostname.p,
                 ping->ping_hostname.n, a->nonce, sizeof(a->nonce), key, keylen);
  if (!digest_eq(ping->ping_digest, want)) {
    snprintf(why, whylen, "shared_key mismatch");
    goto fail;
  }
  if (a->has_auth) {
    const pl_config_user_t *u = NULL;
    for (int i = 0; i < cfg->nusers; i++)
      if (strlen(cfg->users[i].name) == ping->ping_username.n &&
          memcmp(cfg->users[i].name, ping->ping_username.p, ping->ping_username.n) == 0)
        u = &cfg->users[i];
    if (!u) {
      snprintf(why, whylen, "username/password mismatch");
      goto fail;
    }
    pl_auth_digest(want, a->auth, sizeof(a->auth), u->name, strlen(u->name), u->password,
                   strlen(u->password), NULL, 0);
    if (!digest_eq(ping->ping_password, want)) {
      snprintf(why, whylen, "username/password mismatch");
      goto fail;
    }
  }
  pl_auth_digest(want, ping->ping_salt.p, ping->ping_salt.n, cfg->hostname,
                 strlen(cfg->hostname), a->nonce, sizeof(a->nonce), key, keylen);
  pong(pk, 1, "", cfg->hostname, want);
  return 0;
fail:
  pong(pk, 0, why, "", "");
  return PL_EAUTH;
}
