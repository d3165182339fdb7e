/* JSON <-> MessagePack: jansson parses and a tree walk packs into a msgpack_sbuffer; a direct
 * writer renders a msgpack_object as JSON text with no intermediate tree. */
#include "parley/json.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley/error.h"

/* ---- JSON text -> MessagePack ---- */

typedef struct pack_ctx {
  msgpack_packer pk;
  const char *text;
  size_t len;
  size_t scan;    /* where the number scanner resumes (exact_ints only) */
  int exact_ints; /* jansson read every number as a real: integers come back from the text */
  pl_json_error_t *err;
} pack_ctx_t;

static void set_error(pl_json_error_t *err, int line, int column, size_t pos, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));

static void set_error(pl_json_error_t *err, int line, int column, size_t pos, const char *fmt,
                      ...) {
  va_list ap;
  if (!err) return;
  err->line = line;
  err->column = column;
  err->position = pos;
  va_start(ap, fmt);
  vsnprintf(err->text, sizeof err->text, fmt, ap);
  va_end(ap);
}

/* Line and column (in code points) of the byte at off, the way jansson counts them. */
static void set_error_at(pl_json_error_t *err, const char *text, size_t off, const char *what) {
  int line = 1, column = 0;
  for (size_t i = 0; i <= off; i++) {
    if (text[i] == '\n') {
      line++;
      column = 0;
    } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
      column++;
    }
  }
  set_error(err, line, column, off, "%s", what);
}

/* The next number token at or after c->scan. Only called on text jansson accepted, so a
 * string always ends and a number is [-0-9][-+0-9.eE]*. */
static size_t next_number(pack_ctx_t *c, size_t *n) {
  const char *t = c->text;
  size_t i = c->scan, start;
  while (i < c->len && t[i] != '-' && (t[i] < '0' || t[i] > '9')) {
    if (t[i] == '"') {
      for (i++; i < c->len && t[i] != '"'; i++)
        if (t[i] == '\\') i++;
    }
    i++;
  }
  start = i;
  while (i < c->len && ((t[i] >= '0' && t[i] <= '9') || t[i] == '-' || t[i] == '+' ||
                        t[i] == '.' || t[i] == 'e' || t[i] == 'E'))
    i++;
  c->scan = i;
  *n = i - start;
  return start;
}

static int range_error(pack_ctx_t *c, size_t off, size_t n) {
  char what[96];
  snprintf(what, sizeof what, "integer out of range near '%.*s'", n > 60 ? 60 : (int)n,
           c->text + off);
  set_error_at(c->err, c->text, off + n - 1, what);
  return PL_ERANGE;
}

/* Packs a number jansson read as a real: an integer token exactly, anything else as the
 * float64 jansson computed. */
static int pack_exact_number(pack_ctx_t *c, double real) {
  size_t n, off = next_number(c, &n);
  const char *p = c->text + off;
  uint64_t mag = 0;
  int neg = n > 0 && p[0] == '-';

  if (n == 0 || memchr(p, '.', n) || memchr(p, 'e', n) || memchr(p, 'E', n))
    return msgpack_pack_double(&c->pk, real) ? PL_ENOMEM : 0;
  for (size_t i = (size_t)neg; i < n; i++) {
    unsigned d = (unsigned)(p[i] - '0');
    if (mag > (UINT64_MAX - d) / 10) goto range;
    mag = mag * 10 + d;
  }
  if (!neg) return msgpack_pack_uint64(&c->pk, mag) ? PL_ENOMEM : 0;
  if (mag > (uint64_t)INT64_MAX + 1) goto range;
  /* -2^63 has no positive int64 twin, so negate in unsigned arithmetic. */
  return msgpack_pack_int64(&c->pk, (int64_t)(0 - mag)) ? PL_ENOMEM : 0;
range:
  return range_error(c, off, n);
}

static int pack_value(pack_ctx_t *c, json_t *v) {
  msgpack_packer *pk = &c->pk;
  int rc;

  switch (json_typeof(v)) {
    case JSON_OBJECT:
      if (msgpack_pack_map(pk, json_object_size(v))) return PL_ENOMEM;
      for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
        if (msgpack_pack_str_with_body(pk, json_object_iter_key(it), json_object_iter_key_len(it)))
          return PL_ENOMEM;
        if ((rc = pack_value(c, json_object_iter_value(it)))) return rc;
      }
      return 0;
    case JSON_ARRAY: {
      size_t n = json_array_size(v);
      if (msgpack_pack_array(pk, n)) return PL_ENOMEM;
      for (size_t i = 0; i < n; i++)
        if ((rc = pack_value(c, json_array_get(v, i)))) return rc;
      return 0;
    }
    case JSON_STRING:
      return msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v)) ? PL_ENOMEM
                                                                                        : 0;
    case JSON_INTEGER:
      return msgpack_pack_int64(pk, json_integer_value(v)) ? PL_ENOMEM : 0;
    case JSON_REAL:
      if (c->exact_ints) return pack_exact_number(c, json_real_value(v));
      return msgpack_pack_double(pk, json_real_value(v)) ? PL_ENOMEM : 0;
    case JSON_TRUE:
      return msgpack_pack_true(pk) ? PL_ENOMEM : 0;
    case JSON_FALSE:
      return msgpack_pack_false(pk) ? PL_ENOMEM : 0;
    case JSON_NULL:
    default:
      return msgpack_pack_nil(pk) ? PL_ENOMEM : 0;
  }
}

static int from_jansson_error(const json_error_t *je, pl_json_error_t *err) {
  int code = json_error_code(je);
  if (code == json_error_out_of_memory) {
    set_error(err, 0, 0, 0, "out of memory");
    return PL_ENOMEM;
  }
  /* jansson reports column 0 for a bad byte or end of input at the start of a line. */
  set_error(err, je->line > 0 ? je->line : 1, je->column > 0 ? je->column : 1,
            je->position > 0 ? (size_t)je->position : 0, "%s", je->text);
  if (code == json_error_stack_overflow) return PL_EDEPTH;
  if (code == json_error_numeric_overflow) return PL_ERANGE;
  return PL_EINVAL;
}

static const char *json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_ARRAY:
      return "an array";
    case JSON_STRING:
      return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
      return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
      return "a boolean";
    case JSON_NULL:
      return "null";
    default:
      return "an object";
  }
}

int pl_json_to_msgpack(const char *text, size_t len, unsigned flags, msgpack_sbuffer *out,
                       pl_json_error_t *err) {
  const size_t jflags = JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES;
  pack_ctx_t c = {.text = text, .len = len, .err = err};
  size_t mark = out->size;
  json_error_t je;
  json_t *root;
  int rc;

  if (len > UINT32_MAX) {
    set_error(err, 0, 0, 0, "JSON text larger than 4 GiB");
    return PL_ETOOBIG;
  }
  root = json_loadb(text, len, jflags, &je);
  if (!root && json_error_code(&je) == json_error_numeric_overflow) {
    /* json_int_t is long long, so an integer above INT64_MAX stops jansson. Parse again
     * with every number as a real and read each integer back from the text: with objects
     * in text order and duplicates refused, the tree walk meets the numbers in text order. */
    root = json_loadb(text, len, jflags | JSON_DECODE_INT_AS_REAL, &je);
    c.exact_ints = 1;
  }
  if (!root) return from_jansson_error(&je, err);
  if ((flags & PL_JSON_OBJECT) && !json_is_object(root)) {
    size_t at = 0;
    char what[64];
    while (at + 1 < len && (text[at] == ' ' || text[at] == '\t' || text[at] == '\r' ||
                            text[at] == '\n'))
      at++;
    snprintf(what, sizeof what, "expected a JSON object, not %s", json_type_name(root));
    set_error_at(err, text, at, what);
    json_decref(root);
    return PL_ETYPE;
  }
  msgpack_packer_init(&c.pk, out, msgpack_sbuffer_write);
  rc = pack_value(&c, root);
  json_decref(root);
  if (rc) {
    out->size = mark;
    if (rc == PL_ENOMEM) set_error(err, 0, 0, 0, "out of memory");
  }
  return rc;
}

/* ---- MessagePack -> JSON text ---- */

typedef struct writer {
  pl_json_buf_t *b;
  int pretty;
  int depth;
} writer_t;

/* Makes room for n more bytes plus the terminating NUL. */
static int reserve(pl_json_buf_t *b, size_t n) {
  size_t cap;
  char *p;
  if (b->cap - b->len > n) return 0;
  cap = b->cap ? b->cap : 256;
  while (cap - b->len <= n) {
    if (cap > SIZE_MAX / 2) return PL_ENOMEM;
    cap *= 2;
  }
  if (!(p = realloc(b->data, cap))) return PL_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

static int put(writer_t *w, const char *p, size_t n) {
  if (reserve(w->b, n)) return PL_ENOMEM;
  memcpy(w->b->data + w->b->len, p, n);
  w->b->len += n;
  return 0;
}

static int put_char(writer_t *w, char ch) {
  if (reserve(w->b, 1)) return PL_ENOMEM;
  w->b->data[w->b->len++] = ch;
  return 0;
}

static int put_newline(writer_t *w) {
  size_t n = 1 + 2 * (size_t)w->depth;
  if (reserve(w->b, n)) return PL_ENOMEM;
  w->b->data[w->b->len] = '\n';
  memset(w->b->data + w->b->len + 1, ' ', n - 1);
  w->b->len += n;
  return 0;
}

static int put_int(writer_t *w, uint64_t mag, int neg) {
  char tmp[24], *end = tmp + sizeof tmp, *p = end;
  do {
    *--p = (char)('0' + mag % 10);
    mag /= 10;
  } while (mag);
  if (neg) *--p = '-';
  return put(w, p, (size_t)(end - p));
}

/* Shortest "%.Ng" that reads back as the same value: 0.1 stays "0.1", not 0.1000000000000000055. */
static int put_real(writer_t *w, double d, int single) {
  char tmp[40];
  int n = 0;
  if (!isfinite(d)) return put(w, "null", 4);
  if (single) {
    float f = (float)d;
    for (int prec = 6; prec <= 9; prec++) {
      n = snprintf(tmp, sizeof tmp - 2, "%.*g", prec, (double)f);
      if (strtof(tmp, NULL) == f) break;
    }
  } else {
    for (int prec = 15; prec <= 17; prec++) {
      n = snprintf(tmp, sizeof tmp - 2, "%.*g", prec, d);
      if (strtod(tmp, NULL) == d) break;
    }
  }
  /* printf pads the exponent to two digits; JavaScript and Python do not. */
  char *e = strchr(tmp, 'e');
  if (e && e[2] == '0') {
    memmove(e + 2, e + 3, (size_t)(tmp + n - (e + 2)));
    n--;
  }
  /* Keep it a real on the way back in: "1" would parse as an integer. */
  if (!e && !strchr(tmp, '.')) {
    tmp[n++] = '.';
    tmp[n++] = '0';
  }
  return put(w, tmp, (size_t)n);
}

/* Length of the valid UTF-8 sequence at p (2..4), or 0 when p[0] does not start one. */
static size_t utf8_seq(const unsigned char *p, size_t avail) {
  unsigned c = p[0];
  if (c < 0xC2) return 0; /* a continuation byte, or the lead of an overlong 2-byte form */
  if (c < 0xE0) return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c < 0xF0) {
    if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
    /* overlong, or a UTF-16 surrogate */
    if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0)) return 0;
    return 3;
  }
  if (c < 0xF5) {
    if (avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
      return 0;
    /* overlong, or above U+10FFFF */
    if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90)) return 0;
    return 4;
  }
  return 0;
}

static int put_string(writer_t *w, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s, *end = p + n, *run;
  char esc[8];
  size_t k, escn;

  if (put_char(w, '"')) return PL_ENOMEM;
  while (p < end) {
    /* Copy the longest stretch that needs no escaping in one go. */
    for (run = p; p < end; p += k) {
      if (*p >= 0x80) {
        if (!(k = utf8_seq(p, (size_t)(end - p)))) break;
      } else if (*p < 0x20 || *p == '"' || *p == '\\') {
        break;
      } else {
        k = 1;
      }
    }
    if (p > run && put(w, (const char *)run, (size_t)(p - run))) return PL_ENOMEM;
    if (p == end) break;
    escn = 2;
    esc[0] = '\\';
    switch (*p) {
      case '"': esc[1] = '"'; break;
      case '\\': esc[1] = '\\'; break;
      case '\b': esc[1] = 'b'; break;
      case '\f': esc[1] = 'f'; break;
      case '\n': esc[1] = 'n'; break;
      case '\r': esc[1] = 'r'; break;
      case '\t': esc[1] = 't'; break;
      default:
        if (*p >= 0x80) {
          memcpy(esc, "\\ufffd", 6);
        } else {
          memcpy(esc, "\\u00", 4);
          esc[4] = hex[*p >> 4];
          esc[5] = hex[*p & 15];
        }
        escn = 6;
    }
    if (put(w, esc, escn)) return PL_ENOMEM;
    p++;
  }
  return put_char(w, '"');
}

static int put_base64(writer_t *w, const unsigned char *p, size_t n) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *o;
  size_t i;
  if (n > (SIZE_MAX - 8) / 4 * 3 || reserve(w->b, (n + 2) / 3 * 4 + 2)) return PL_ENOMEM;
  o = w->b->data + w->b->len;
  *o++ = '"';
  for (i = 0; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *o++ = tab[v >> 18];
    *o++ = tab[(v >> 12) & 63];
    *o++ = tab[(v >> 6) & 63];
    *o++ = tab[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
    *o++ = tab[v >> 18];
    *o++ = tab[(v >> 12) & 63];
    *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  *o++ = '"';
  w->b->len = (size_t)(o - w->b->data);
  return 0;
}

static int write_value(writer_t *w, const msgpack_object *o);

/* Opens a container: '{' or '['; the members follow, each after member_sep(). */
static int open_container(writer_t *w, char ch) {
  if (w->depth >= PL_JSON_MAX_DEPTH) return PL_EDEPTH;
  w->depth++;
  return put_char(w, ch);
}

static int member_sep(writer_t *w, size_t i) {
  if (i > 0 && put_char(w, ',')) return PL_ENOMEM;
  return w->pretty ? put_newline(w) : 0;
}

static int close_container(writer_t *w, char ch, size_t count) {
  w->depth--;
  if (w->pretty && count > 0 && put_newline(w)) return PL_ENOMEM;
  return put_char(w, ch);
}

static int put_colon(writer_t *w) { return w->pretty ? put(w, ": ", 2) : put_char(w, ':'); }

static int write_key(writer_t *w, const msgpack_object *k) {
  pl_json_buf_t scratch = {0};
  writer_t sub = {&scratch, 0, w->depth};
  int rc;
  if (k->type == MSGPACK_OBJECT_STR) return put_string(w, k->via.str.ptr, k->via.str.size);
  if (k->type == MSGPACK_OBJECT_BIN)
    return put_base64(w, (const unsigned char *)k->via.bin.ptr, k->via.bin.size);
  /* Rare enough (the daemon's maps have string keys) to afford a scratch buffer. */
  rc = write_value(&sub, k);
  if (!rc) rc = put_string(w, scratch.data, scratch.len);
  free(scratch.data);
  return rc;
}

static int write_value(writer_t *w, const msgpack_object *o) {
  int rc;
  switch (o->type) {
    case MSGPACK_OBJECT_NIL:
      return put(w, "null", 4);
    case MSGPACK_OBJECT_BOOLEAN:
      return o->via.boolean ? put(w, "true", 4) : put(w, "false", 5);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      return put_int(w, o->via.u64, 0);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: /* negative when msgpack-c made it; not trusted */
      return o->via.i64 < 0 ? put_int(w, 0 - (uint64_t)o->via.i64, 1)
                            : put_int(w, (uint64_t)o->via.i64, 0);
    case MSGPACK_OBJECT_FLOAT32:
      return put_real(w, o->via.f64, 1);
    case MSGPACK_OBJECT_FLOAT64:
      return put_real(w, o->via.f64, 0);
    case MSGPACK_OBJECT_STR:
      return put_string(w, o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
      return put_base64(w, (const unsigned char *)o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_EXT:
      if ((rc = open_container(w, '{')) || (rc = member_sep(w, 0)) ||
          (rc = put(w, "\"ext\"", 5)) || (rc = put_colon(w)) ||
          (rc = put_int(w, (uint64_t)(o->via.ext.type < 0 ? -o->via.ext.type : o->via.ext.type),
                        o->via.ext.type < 0)) ||
          (rc = member_sep(w, 1)) || (rc = put(w, "\"data\"", 6)) || (rc = put_colon(w)) ||
          (rc = put_base64(w, (const unsigned char *)o->via.ext.ptr, o->via.ext.size)))
        return rc;
      return close_container(w, '}', 2);
    case MSGPACK_OBJECT_ARRAY:
      if ((rc = open_container(w, '['))) return rc;
      for (uint32_t i = 0; i < o->via.array.size; i++)
        if ((rc = member_sep(w, i)) || (rc = write_value(w, &o->via.array.ptr[i]))) return rc;
      return close_container(w, ']', o->via.array.size);
    case MSGPACK_OBJECT_MAP:
      if ((rc = open_container(w, '{'))) return rc;
      for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if ((rc = member_sep(w, i)) || (rc = write_key(w, &kv->key)) || (rc = put_colon(w)) ||
            (rc = write_value(w, &kv->val)))
          return rc;
      }
      return close_container(w, '}', o->via.map.size);
    default:
      return put(w, "null", 4);
  }
}

/* Shared tail of the public writers: a failed call leaves the buffer as it found it. */
static int finish(pl_json_buf_t *out, size_t mark, int rc) {
  if (rc) out->len = mark;
  if (out->data) out->data[out->len] = '\0';
  return rc;
}

int pl_json_from_msgpack(const msgpack_object *obj, unsigned flags, pl_json_buf_t *out) {
  writer_t w = {out, (flags & PL_JSON_PRETTY) != 0, 0};
  size_t mark = out->len;
  return finish(out, mark, write_value(&w, obj));
}

int pl_json_buf_append(pl_json_buf_t *out, const char *p, size_t n) {
  writer_t w = {out, 0, 0};
  size_t mark = out->len;
  return finish(out, mark, put(&w, p, n));
}

int pl_json_append_string(pl_json_buf_t *out, const char *p, size_t n) {
  writer_t w = {out, 0, 0};
  size_t mark = out->len;
  return finish(out, mark, put_string(&w, p, n));
}

void pl_json_buf_free(pl_json_buf_t *out) {
  free(out->data);
  out->data = NULL;
  out->len = 0;
  out->cap = 0;
}
