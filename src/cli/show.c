/* Readable output for query results: "key: value" lines for scalars, then aligned tables for
 * count maps (largest first) and row arrays. Widths are in terminal columns; numbers are
 * right-aligned; one column per table (the title, the reason) is cut to fit the terminal. */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"
#include "parley/json.h"

#define MAX_COLS 16

typedef struct col {
  const char *key;
  const char *head;
} col_t;

/* Columns of the `rows` of each tabular op, and the one that gives way to the terminal. */
typedef struct layout {
  const char *op;
  const col_t *cols;
  int ncols;
  int rank; /* prepend a 1-based rank column */
  const char *flex;
} layout_t;

static const col_t top_cols[] = {{"institution", "institution"}, {"value", NULL}};
static const col_t series_cols[] = {
    {"period", "period"}, {"events", "events"}, {"participants", "participants"}};
static const col_t topics_cols[] = {{"topic", "topic"}, {"events", "events"}};
static const col_t inst_cols[] = {
    {"institution", "institution"}, {"events", "events"}, {"first", "first"}, {"last", "last"}};
static const col_t events_cols[] = {{"seq", "seq"},
                                    {"date", "date"},
                                    {"institution", "institution"},
                                    {"kind", "kind"},
                                    {"title", "title"}};
static const col_t rejects_cols[] = {
    {"seq", "seq"}, {"received", "received"}, {"reason", "reason"}};

#define LAYOUT(op, cols, rank, flex) {op, cols, (int)(sizeof cols / sizeof cols[0]), rank, flex}
static const layout_t layouts[] = {
    LAYOUT("top", top_cols, 1, "institution"),
    LAYOUT("series", series_cols, 0, NULL),
    LAYOUT("topics", topics_cols, 0, "topic"),
    LAYOUT("institutions", inst_cols, 0, "institution"),
    LAYOUT("events", events_cols, 0, "title"),
    LAYOUT("rejects", rejects_cols, 0, "reason"),
};

/* Column heads of count maps: {name: n}. */
static const struct {
  const char *key, *name, *count;
} count_heads[] = {
    {"kinds", "kind", "events"},
    {"formats", "format", "events"},
    {"topics", "topic", "events"},
    {"counterparts", "counterpart", "events"},
    {"participants_by_country", "country", "participants"},
};

typedef struct table {
  int ncols;
  const char *heads[MAX_COLS];
  int numeric[MAX_COLS]; /* every cell that is not "-" is a number: right-align */
  int flex;              /* column cut to fit the terminal, or -1 */
  char **cells;          /* row-major, each malloc'd */
  size_t ncells, cap;
} table_t;

static int key_is(const msgpack_object *k, const char *name) {
  size_t n = strlen(name);
  return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
         memcmp(k->via.str.ptr, name, n) == 0;
}

const msgpack_object *cli_map_get(const msgpack_object *map, const char *key) {
  if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
  for (uint32_t i = 0; i < map->via.map.size; i++)
    if (key_is(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
  return NULL;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    cli_error("out of memory");
    exit(CLI_EXIT_FAIL);
  }
  return p;
}

/* Decodes one UTF-8 sequence. Returns its length, or 0 when p does not start a valid one. */
static size_t utf8_decode(const unsigned char *p, size_t n, uint32_t *cp) {
  size_t len;
  uint32_t c = p[0], min;
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if (c >= 0xC2 && c < 0xE0) {
    len = 2;
    c &= 0x1F;
    min = 0x80;
  } else if (c >= 0xE0 && c < 0xF0) {
    len = 3;
    c &= 0x0F;
    min = 0x800;
  } else if (c >= 0xF0 && c < 0xF5) {
    len = 4;
    c &= 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    c = c << 6 | (p[i] & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c < 0xE000)) return 0;
  *cp = c;
  return len;
}

/* Terminal columns of a code point: enough of East Asian Width and combining marks for
 * institution names in Chinese, Japanese and Korean to line up. */
static int cp_width(uint32_t c) {
  if ((c >= 0x300 && c < 0x370) || (c >= 0x200B && c < 0x2010) || (c >= 0xFE00 && c < 0xFE10))
    return 0;
  if ((c >= 0x1100 && c < 0x1160) || (c >= 0x2E80 && c < 0xA4D0) || (c >= 0xAC00 && c < 0xD7A4) ||
      (c >= 0xF900 && c < 0xFB00) || (c >= 0xFE30 && c < 0xFE50) || (c >= 0xFF00 && c < 0xFF61) ||
      (c >= 0xFFE0 && c < 0xFFE7) || (c >= 0x1F300 && c < 0x1FA00) || (c >= 0x20000 && c < 0x3FFFE))
    return 2;
  return 1;
}

/* Width of a sanitised (valid UTF-8) string. */
static size_t str_width(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s), w = 0, k;
  uint32_t c;
  for (size_t i = 0; i < n; i += k) {
    if (!(k = utf8_decode(p + i, n - i, &c))) {
      k = 1;
      c = '?';
    }
    w += (size_t)cp_width(c);
  }
  return w;
}

/* A printable copy: control characters become spaces, invalid UTF-8 becomes U+FFFD. */
static char *sanitize(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  char *out = xmalloc(n * 3 + 1), *o = out;
  size_t k;
  uint32_t c;
  for (size_t i = 0; i < n; i += k) {
    if (!(k = utf8_decode(p + i, n - i, &c))) {
      memcpy(o, "\xEF\xBF\xBD", 3);
      o += 3;
      k = 1;
    } else if (c < 0x20 || (c >= 0x7F && c < 0xA0)) { /* C0, DEL and C1 move terminals */
      *o++ = ' ';
    } else {
      memcpy(o, p + i, k);
      o += k;
    }
  }
  *o = '\0';
  return out;
}

/* Cuts s in place to at most width columns, ending in "…" when anything was cut. s must have
 * room for the 3-byte ellipsis, which sanitize() guarantees by allocating 3 bytes a byte. */
static void truncate_to(char *s, size_t width) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s), w = 0, k, cut = 0;
  uint32_t c;
  if (str_width(s) <= width || width == 0) return;
  for (size_t i = 0; i < n; i += k) {
    if (!(k = utf8_decode(p + i, n - i, &c))) {
      k = 1;
      c = '?';
    }
    if (w + (size_t)cp_width(c) + 1 > width) break;
    w += (size_t)cp_width(c);
    cut = i + k;
  }
  memcpy(s + cut, "\xE2\x80\xA6", 4);
}

static int is_number(const msgpack_object *o) {
  return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
         o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64;
}

/* The text of one value as shown in a cell or after "key: ". nil and absent show as "-". */
static char *cell_text(const msgpack_object *o) {
  pl_json_buf_t b = {0};
  char *s;
  if (!o || o->type == MSGPACK_OBJECT_NIL) return sanitize("-", 1);
  if (o->type == MSGPACK_OBJECT_STR) return sanitize(o->via.str.ptr, o->via.str.size);
  if (pl_json_from_msgpack(o, 0, &b)) {
    cli_error("out of memory");
    exit(CLI_EXIT_FAIL);
  }
  /* Strings nested in arrays and maps are already escaped by the JSON writer. */
  s = sanitize(b.data, b.len);
  pl_json_buf_free(&b);
  return s;
}

static void table_init(table_t *t, int ncols) {
  memset(t, 0, sizeof *t);
  t->ncols = ncols;
  t->flex = -1;
  for (int i = 0; i < ncols; i++) t->numeric[i] = 1;
}

/* Appends the next cell, rows filling left to right; o may be NULL (absent: "-"). */
static void table_add(table_t *t, const msgpack_object *o) {
  int col = (int)(t->ncells % (size_t)t->ncols);
  if (t->ncells == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 64;
    if (!(t->cells = realloc(t->cells, t->cap * sizeof *t->cells))) {
      cli_error("out of memory");
      exit(CLI_EXIT_FAIL);
    }
  }
  if (o && o->type != MSGPACK_OBJECT_NIL && !is_number(o)) t->numeric[col] = 0;
  t->cells[t->ncells++] = cell_text(o);
}

static void table_free(table_t *t) {
  for (size_t i = 0; i < t->ncells; i++) free(t->cells[i]);
  free(t->cells);
}

static int term_width(FILE *f) {
  struct winsize ws;
  const char *env = getenv("COLUMNS");
  if (isatty(fileno(f)) && ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col < 40 ? 40 : ws.ws_col;
  if (env && atoi(env) >= 40) return atoi(env);
  return 120;
}

static void pad(FILE *f, size_t n) {
  while (n--) fputc(' ', f);
}

static void table_print(FILE *f, table_t *t, int indent) {
  size_t width[MAX_COLS], total = (size_t)indent, nrows = t->ncells / (size_t)t->ncols;
  for (int c = 0; c < t->ncols; c++) {
    width[c] = str_width(t->heads[c]);
    for (size_t r = 0; r < nrows; r++) {
      size_t w = str_width(t->cells[r * (size_t)t->ncols + (size_t)c]);
      if (w > width[c]) width[c] = w;
    }
    total += width[c] + (c ? 2 : 0);
  }
  if (t->flex >= 0 && total > (size_t)term_width(f)) {
    size_t others = total - width[t->flex], room = 12;
    if ((size_t)term_width(f) > others + room) room = (size_t)term_width(f) - others;
    if (room < width[t->flex]) {
      width[t->flex] = room > str_width(t->heads[t->flex]) ? room : str_width(t->heads[t->flex]);
      for (size_t r = 0; r < nrows; r++)
        truncate_to(t->cells[r * (size_t)t->ncols + (size_t)t->flex], width[t->flex]);
    }
  }
  for (size_t r = 0; r <= nrows; r++) {
    pad(f, (size_t)indent);
    for (int c = 0; c < t->ncols; c++) {
      const char *s = r == 0 ? t->heads[c] : t->cells[(r - 1) * (size_t)t->ncols + (size_t)c];
      size_t gap = width[c] - str_width(s);
      if (c) fputs("  ", f);
      if (t->numeric[c]) pad(f, gap);
      fputs(s, f);
      if (!t->numeric[c] && c + 1 < t->ncols) pad(f, gap);
    }
    fputc('\n', f);
  }
}

/* Maps, arrays of maps and `rows` (even empty) become tables; everything else goes on a
 * "key: value" line. */
static int is_table(const msgpack_object_kv *kv) {
  const msgpack_object *o = &kv->val;
  if (o->type == MSGPACK_OBJECT_MAP) return 1;
  if (o->type != MSGPACK_OBJECT_ARRAY) return 0;
  if (key_is(&kv->key, "rows")) return 1;
  for (uint32_t i = 0; i < o->via.array.size; i++)
    if (o->via.array.ptr[i].type == MSGPACK_OBJECT_MAP) return 1;
  return 0;
}

static int print_kv(FILE *f, const msgpack_object *r) {
  size_t keyw = 0;
  int lines = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (uint32_t i = 0; i < r->via.map.size; i++) {
      const msgpack_object_kv *kv = &r->via.map.ptr[i];
      char *k, *v;
      if (is_table(kv) || key_is(&kv->key, "next")) continue;
      k = cell_text(&kv->key);
      if (pass == 0) {
        if (str_width(k) + 1 > keyw) keyw = str_width(k) + 1;
      } else {
        v = cell_text(&kv->val);
        fprintf(f, "%s:", k);
        pad(f, keyw - str_width(k));
        fprintf(f, "%s\n", v);
        free(v);
        lines++;
      }
      free(k);
    }
  }
  return lines;
}

static double sort_value(const msgpack_object *o) {
  switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      return (double)o->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      return (double)o->via.i64;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
      return o->via.f64 == o->via.f64 ? o->via.f64 : -1e308;
    default:
      return -1e308;
  }
}

/* Count maps: largest count first, then by name (bytewise), like `top`. */
static int count_cmp(const void *a, const void *b) {
  const msgpack_object_kv *x = *(const msgpack_object_kv *const *)a;
  const msgpack_object_kv *y = *(const msgpack_object_kv *const *)b;
  double vx = sort_value(&x->val), vy = sort_value(&y->val);
  uint32_t nx, ny;
  int c;
  if (vx != vy) return vx > vy ? -1 : 1;
  if (x->key.type != MSGPACK_OBJECT_STR || y->key.type != MSGPACK_OBJECT_STR) return 0;
  nx = x->key.via.str.size;
  ny = y->key.via.str.size;
  c = memcmp(x->key.via.str.ptr, y->key.via.str.ptr, nx < ny ? nx : ny);
  return c ? c : (nx > ny) - (nx < ny);
}

static void print_counts(FILE *f, const char *name, const msgpack_object *map) {
  uint32_t n = map->via.map.size;
  const msgpack_object_kv **rows;
  table_t t;
  fprintf(f, "%s:\n", name);
  if (n == 0) {
    fputs("  (none)\n", f);
    return;
  }
  table_init(&t, 2);
  t.flex = 0;
  t.heads[0] = name;
  t.heads[1] = "count";
  for (size_t i = 0; i < sizeof count_heads / sizeof count_heads[0]; i++) {
    if (strcmp(count_heads[i].key, name) == 0) {
      t.heads[0] = count_heads[i].name;
      t.heads[1] = count_heads[i].count;
    }
  }
  rows = xmalloc(n * sizeof *rows);
  for (uint32_t i = 0; i < n; i++) rows[i] = &map->via.map.ptr[i];
  qsort(rows, n, sizeof *rows, count_cmp);
  for (uint32_t i = 0; i < n; i++) {
    table_add(&t, &rows[i]->key);
    table_add(&t, &rows[i]->val);
  }
  /* A name column of numbers (years, ids) still reads better left-aligned. */
  t.numeric[0] = 0;
  table_print(f, &t, 2);
  table_free(&t);
  free(rows);
}

static void print_rows(FILE *f, const char *op, const char *name, const msgpack_object *arr,
                       const msgpack_object *result) {
  const layout_t *lay = NULL;
  const msgpack_object *first = NULL, *by;
  const char *keys[MAX_COLS];
  char *heads_owned[MAX_COLS] = {0};
  int nkeys = 0, off, titled = strcmp(name, "rows") != 0;
  table_t t;

  if (!titled)
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
      if (strcmp(layouts[i].op, op) == 0) lay = &layouts[i];
  if (titled) fprintf(f, "%s:\n", name);
  if (arr->via.array.size == 0) {
    fputs(titled ? "  (none)\n" : "(no rows)\n", f);
    return;
  }
  for (uint32_t i = 0; i < arr->via.array.size && !first; i++)
    if (arr->via.array.ptr[i].type == MSGPACK_OBJECT_MAP) first = &arr->via.array.ptr[i];
  off = lay && lay->rank;
  if (lay) {
    nkeys = lay->ncols;
    for (int c = 0; c < nkeys; c++) keys[c] = lay->cols[c].key;
  } else if (first) {
    /* Unknown shape: the columns are the string keys of the first row. */
    for (uint32_t i = 0; i < first->via.map.size && nkeys < MAX_COLS; i++) {
      const msgpack_object *k = &first->via.map.ptr[i].key;
      if (k->type != MSGPACK_OBJECT_STR) continue;
      heads_owned[nkeys] = sanitize(k->via.str.ptr, k->via.str.size);
      keys[nkeys] = heads_owned[nkeys];
      nkeys++;
    }
  }
  if (nkeys == 0) { /* nothing to make columns of: one value per line */
    for (uint32_t i = 0; i < arr->via.array.size; i++) {
      char *v = cell_text(&arr->via.array.ptr[i]);
      fprintf(f, "%s%s\n", titled ? "  " : "", v);
      free(v);
    }
    return;
  }
  table_init(&t, nkeys + off);
  if (off) t.heads[0] = "rank";
  for (int c = 0; c < nkeys; c++) {
    t.heads[c + off] = lay ? lay->cols[c].head : keys[c];
    if (lay && lay->flex && strcmp(lay->flex, keys[c]) == 0) t.flex = c + off;
  }
  /* top's value column is named after what it ranks by. */
  if (lay && strcmp(lay->op, "top") == 0) {
    by = cli_map_get(result, "by");
    heads_owned[MAX_COLS - 1] = by && by->type == MSGPACK_OBJECT_STR
                                    ? sanitize(by->via.str.ptr, by->via.str.size)
                                    : sanitize("value", 5);
    t.heads[t.ncols - 1] = heads_owned[MAX_COLS - 1];
  }
  for (uint32_t i = 0; i < arr->via.array.size; i++) {
    const msgpack_object *row = &arr->via.array.ptr[i];
    if (off) {
      msgpack_object rank = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = i + 1};
      table_add(&t, &rank);
    }
    for (int c = 0; c < nkeys; c++)
      table_add(&t, row->type == MSGPACK_OBJECT_MAP ? cli_map_get(row, keys[c]) : c ? NULL : row);
  }
  table_print(f, &t, titled ? 2 : 0);
  table_free(&t);
  for (int c = 0; c < MAX_COLS; c++) free(heads_owned[c]);
}

void cli_show(FILE *f, const char *op, const msgpack_object *result) {
  const msgpack_object *next = cli_map_get(result, "next");
  int sections;
  if (result->type != MSGPACK_OBJECT_MAP) {
    char *s = cell_text(result);
    fprintf(f, "%s\n", s);
    free(s);
    return;
  }
  sections = print_kv(f, result) > 0;
  for (uint32_t i = 0; i < result->via.map.size; i++) {
    const msgpack_object_kv *kv = &result->via.map.ptr[i];
    char *name;
    if (!is_table(kv)) continue;
    if (sections++) fputc('\n', f);
    name = cell_text(&kv->key);
    if (kv->val.type == MSGPACK_OBJECT_MAP)
      print_counts(f, name, &kv->val);
    else
      print_rows(f, op, name, &kv->val, result);
    free(name);
  }
  if (next && next->type != MSGPACK_OBJECT_NIL) {
    char *s = cell_text(next);
    if (sections) fputc('\n', f);
    fprintf(f, "next: %s\n", s);
    free(s);
  }
}
