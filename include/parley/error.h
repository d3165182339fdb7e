/* Error codes shared by every parley module: 0 is success, a negative int is an error.
 * Our codes live in -20000..-20099, clear of negated errno (-1..-4095, which libuv
 * also uses) and of LMDB's own range (-30799..-30779); store.c translates MDB_* codes. */
#ifndef PARLEY_ERROR_H
#define PARLEY_ERROR_H

#define PL_ERRNO_MAP(XX)                                                  \
  XX(NOMEM, -20000, "out of memory")                                      \
  XX(INVAL, -20001, "invalid argument")                                   \
  XX(AGAIN, -20002, "more input needed")                                  \
  XX(PROTO, -20003, "protocol error")                                     \
  XX(TOOBIG, -20004, "size limit exceeded")                               \
  XX(DEPTH, -20005, "nesting too deep")                                   \
  XX(TYPE, -20006, "wrong type")                                          \
  XX(GZIP, -20007, "bad gzip data")                                       \
  XX(NOTFOUND, -20008, "not found")                                       \
  XX(STOREFULL, -20009, "store is at its configured size limit")          \
  XX(LOCKED, -20010, "data directory is in use by another parleyd")       \
  XX(CORRUPT, -20011, "stored data is corrupt")                           \
  XX(VERSION, -20012, "store was written by an incompatible version")     \
  XX(CONFIG, -20013, "configuration error")                               \
  XX(CLOSED, -20014, "shutting down")                                     \
  XX(AUTH, -20015, "authentication failed")                               \
  XX(STORE, -20016, "storage error")                                      \
  XX(RANGE, -20017, "value out of range")                                 \
  XX(REJECT, -20018, "record rejected")                                   \
  XX(NOSPACE, -20019, "no space left on device")                          \
  XX(TIMEOUT, -20020, "timed out")                                        \
  XX(IO, -20021, "input/output error")                                    \
  XX(STALE, -20022, "month rollup not current; read its days")

enum {
#define PL_ERR_ENUM(name, code, text) PL_E##name = (code),
  PL_ERRNO_MAP(PL_ERR_ENUM)
#undef PL_ERR_ENUM
  PL_OK = 0
};

/* Returns a static string describing err: one of ours, or strerror(-err) for a
 * negated errno. Never NULL. */
const char *pl_strerror(int err);

/* Returns the symbolic name of err ("PL_ENOMEM", "EIO", ...). Never NULL. */
const char *pl_errname(int err);

#endif
