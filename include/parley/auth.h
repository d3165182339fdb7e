/* Forward protocol handshake (HELO / PING / PONG) with shared-key and optional user
 * authentication: SHA-512 digests in lowercase hex, as Fluentd and Fluent Bit compute them.
 * Pure: builds and checks messages; the connection code sends them. Uses OpenSSL. */
#ifndef PARLEY_AUTH_H
#define PARLEY_AUTH_H

#include <msgpack.h>
#include <stddef.h>

#include "parley/config.h"
#include "parley/forward.h"

#define PL_AUTH_NONCE_LEN 16

typedef struct pl_auth_cfg {
  const char *shared_key;        /* non-empty: the handshake is on */
  const char *hostname;          /* our name in PONG */
  const pl_config_user_t *users; /* when nusers > 0, PING must carry a known user */
  int nusers;
} pl_auth_cfg_t;

/* Per-connection handshake state. */
typedef struct pl_auth {
  unsigned char nonce[PL_AUTH_NONCE_LEN];
  unsigned char auth[PL_AUTH_NONCE_LEN]; /* user-auth salt; empty (not sent) without users */
  int has_auth;
} pl_auth_t;

/* Draws a fresh nonce (and user-auth salt) and packs
 *   ["HELO", {"nonce": bin, "auth": bin, "keepalive": true}]
 * into pk. nonce and auth are bin: fluent-logger turns user auth off for a str auth, and
 * random bytes do not survive a UTF-8 decode. Returns 0, or PL_EIO when no randomness. */
int pl_auth_helo(pl_auth_t *a, const pl_auth_cfg_t *cfg, msgpack_packer *pk);

/* Checks a PING (from the forward reader) and packs the PONG into pk:
 *   ["PONG", true, "", hostname, hex(SHA512(salt . hostname . nonce . shared_key))]
 *   ["PONG", false, reason, "", ""]
 * Returns 0 when the peer is authenticated, PL_EAUTH (reason in why) otherwise; the caller
 * closes the connection after the failed PONG is written. */
int pl_auth_check_ping(const pl_auth_t *a, const pl_auth_cfg_t *cfg, const pl_fwd_msg_t *ping,
                       msgpack_packer *pk, char *why, size_t whylen);

/* hex(SHA512(p1 . p2 . p3 . p4)) into out (129 bytes, NUL-terminated); a part may be
 * NULL/0. For clients and tests as well. */
void pl_auth_digest(char out[129], const void *p1, size_t n1, const void *p2, size_t n2,
                    const void *p3, size_t n3, const void *p4, size_t n4);

#endif
