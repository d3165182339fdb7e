/* JSON <-> MessagePack for the `parley` client and the HTTP API. jansson parses; a direct
 * writer renders msgpack as JSON with no tree, allocating only the output buffer.
 * Thread-safe (no global state); numbers are formatted in the C locale. */
#ifndef PARLEY_JSON_H
#define PARLEY_JSON_H

#include <msgpack.h>
#include <stddef.h>

/* pl_json_to_msgpack() flag: the text must be a JSON object (a record). */
#define PL_JSON_OBJECT 0x1u
/* pl_json_from_msgpack() flag: one member per line, two-space indents, "key": value. */
#define PL_JSON_PRETTY 0x2u

/* Deepest nesting pl_json_from_msgpack() writes; jansson itself refuses to parse deeper
 * than 2048 levels. */
#define PL_JSON_MAX_DEPTH 1024

/* Where and why a JSON text was refused. */
typedef struct pl_json_error {
  int line;        /* 1-based; 0 when the error has no position (out of memory) */
  int column;      /* 1-based, in characters (code points), of the last character read:
                    * for a bad token, its last character */
  size_t position; /* byte offset matching line and column */
  char text[160];  /* NUL-terminated reason, e.g. "invalid token near 'tru'" */
} pl_json_error_t;

/* Parses one JSON text of len bytes (no NUL needed) and appends its MessagePack encoding to
 * out. Any JSON value is accepted unless flags has PL_JSON_OBJECT.
 *   integers -> the smallest int/uint encoding, exact over INT64_MIN..UINT64_MAX;
 *   numbers with a fraction or exponent -> float64; strings -> str (UTF-8, may hold NUL);
 *   objects -> map, keys in text order; arrays, true, false, null as themselves.
 * Refused: invalid JSON or UTF-8, trailing garbage, a duplicated key in one object (which
 * value a reader of the map would take is unspecified), a NUL in a key, nesting deeper than
 * 2048, an integer outside INT64_MIN..UINT64_MAX or a real that overflows float64.
 * Returns 0; PL_EINVAL (not valid JSON), PL_ETYPE (PL_JSON_OBJECT and not an object),
 * PL_ERANGE (number out of range), PL_EDEPTH, PL_ETOOBIG (len over 4 GiB) or PL_ENOMEM.
 * On error nothing is left appended to out, and err (when not NULL) says where and why.
 * out keeps ownership of its memory; text is only read during the call. */
int pl_json_to_msgpack(const char *text, size_t len, unsigned flags, msgpack_sbuffer *out,
                       pl_json_error_t *err);

/* A growable output buffer for JSON text. All-zero is a valid empty buffer. data is owned by
 * the buffer (malloc'd), freed by pl_json_buf_free() or by the caller with free(); after any
 * successful append data[len] is '\0' (not counted in len). Set len = 0 to reuse it. */
typedef struct pl_json_buf {
  char *data;
  size_t len;
  size_t cap;
} pl_json_buf_t;

/* Appends the JSON text of obj to out: compact, or indented with PL_JSON_PRETTY (no trailing
 * newline either way).
 *   nil, bool -> null, true, false; ints -> exact decimal; float32/64 -> the shortest
 *   decimal that reads back as the same value, with ".0" when it would look like an integer,
 *   and null for NaN or infinity (JSON has neither);
 *   str -> string: '"', '\\' and control characters escaped, valid UTF-8 copied as is, and
 *   each byte that is not part of a valid UTF-8 sequence (overlong forms, surrogates and
 *   code points above U+10FFFF included) written as "\ufffd";
 *   bin -> standard base64 string with padding; ext -> {"ext": type, "data": base64};
 *   array -> array; map -> object in map order, duplicates kept; a str key as itself, a bin
 *   key as its base64, any other key as its compact JSON text (1 -> "1", [1] -> "[1]").
 * Returns 0, PL_EDEPTH (nested deeper than PL_JSON_MAX_DEPTH) or PL_ENOMEM; on error out
 * holds what it held before the call. obj is only read during the call. */
int pl_json_from_msgpack(const msgpack_object *obj, unsigned flags, pl_json_buf_t *out);

/* Appends n raw bytes. Returns 0 or PL_ENOMEM (out unchanged). */
int pl_json_buf_append(pl_json_buf_t *out, const char *p, size_t n);

/* Appends the n bytes at p as one quoted JSON string, escaped as pl_json_from_msgpack()
 * escapes a str. Returns 0 or PL_ENOMEM (out unchanged). */
int pl_json_append_string(pl_json_buf_t *out, const char *p, size_t n);

/* Frees data and empties the buffer; the buffer may be reused afterwards. */
void pl_json_buf_free(pl_json_buf_t *out);

#endif
