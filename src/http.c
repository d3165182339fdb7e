/* HTTP/1.1 connections framed by http-parser. One request runs at a time per connection (the
 * parser is paused meanwhile), so pipelined requests are answered in order; query ops run on
 * the work pool, metrics and health on the loop, where the servers' stats are valid. */
#include "parley/http.h"

#include <http_parser.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parley/error.h"
#include "parley/json.h"
#include "parley/log.h"
#include "parley/metrics.h"
#include "parley/net.h"
#include "parley/version.h"

#define READ_CHUNK (16 * 1024) /* also the most unparsed (pipelined) bytes held per connection */
#define COMBINE_MAX (64 * 1024) /* bodies up to this go out in one write with their header */
#define LINGER_MS 2000          /* how long a closing connection drains what the client sent */
#define STOP_GRACE_MS 2000      /* how long a stop waits for a response still being written */
#define OP_MAX 64

#define NO_STORE "Cache-Control: no-store\r\n"

/* web/dashboard.html, compiled in by web/web.mk. */
extern const unsigned char pl_dashboard_html[];
extern const size_t pl_dashboard_html_len;

/* base.holds is 1 while an API request runs on the work pool. */
typedef struct hconn {
  pl_conn_t base; /* first */
  uv_work_t work;
  uv_shutdown_t shut;
  struct pl_http *hs;
  http_parser parser;
  char *buf; /* bytes read and not yet parsed: pipelined requests wait here */
  size_t len;
  /* the request being parsed */
  char *url;
  size_t url_len, url_cap;
  uint64_t body_bytes;
  int in_message;
  int too_large;
  uint64_t msg_started;
  /* the request being answered */
  int method;
  int keep_alive;
  int http10;
  int head_only;
  /* an API request on the work pool */
  pl_store_t *store;
  pl_qserver_env_cb env;
  void *env_arg;
  msgpack_sbuffer req;
  char op[OP_MAX];
  size_t op_len;
  uint64_t us;
  int status;
  pl_json_buf_t body;
  int eof;
  int close_after;
  int lingering;
  uint64_t linger_started;
} hconn_t;

struct pl_http {
  uv_loop_t *loop;
  pl_http_sources_t src;
  pl_http_opts_t o;
  pl_listener_t listener;
  pl_conn_list_t conns;
  pl_http_stats_t st;
  int stopping;
  int listener_closed;
  uint64_t stop_started;
  void (*stop_cb)(void *);
  void *stop_arg;
  /* The writer's counters at the last health check, and what they implied. */
  uint64_t seen_commits, seen_errors;
  int commit_failing;
};

static void feed(hconn_t *c);
static void check_stopped(pl_http_t *hs);

static uint64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- connection lifetime ---- */

static void on_free(pl_conn_t *base) {
  hconn_t *c = (hconn_t *)base;
  pl_http_t *hs = c->hs;
  free(c->buf);
  free(c->url);
  msgpack_sbuffer_destroy(&c->req);
  pl_json_buf_free(&c->body);
  hs->st.connections--;
  free(c);
  check_stopped(hs);
}

static void update_reading(hconn_t *c) {
  pl_http_t *hs = c->hs;
  /* While lingering, input is read only to be thrown away. Otherwise stop when the buffer is
   * full (a request is running) or the client does not read its responses: further
   * requests then wait in the socket, not in our memory. */
  pl_conn_set_reading(&c->base, !c->eof && (c->lingering ||
                                             (!c->close_after && !hs->stopping &&
                                              c->len < READ_CHUNK &&
                                              c->base.wq.pending <= hs->o.write_queue_max_bytes)));
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  hconn_t *c = req->data;
  if (status < 0) pl_conn_close(&c->base);
}

/* Closes once nothing is running or being written. A connection closed after a response
 * (Connection: close, or an error) first sends FIN and drains the client's input for a
 * while: closing with unread input would reset the connection and could destroy the
 * response before the client read it. */
static void maybe_finish(hconn_t *c) {
  pl_http_t *hs = c->hs;
  if (c->base.closing || c->lingering || !pl_conn_quiet(&c->base)) return;
  if (hs->stopping || (c->eof && !c->close_after)) {
    pl_conn_close(&c->base);
  } else if (c->close_after) {
    c->lingering = 1;
    c->linger_started = uv_now(hs->loop);
    c->len = 0;
    c->shut.data = c;
    if (c->eof || uv_shutdown(&c->shut, &c->base.h.stream, on_shutdown) != 0) {
      pl_conn_close(&c->base);
      return;
    }
    update_reading(c);
  }
}

static void on_written(pl_conn_t *base) {
  hconn_t *c = (hconn_t *)base;
  pl_conn_touch(&c->base);
  feed(c);
  update_reading(c);
  maybe_finish(c);
}

/* ---- responses ---- */

static const char *status_text(int status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 413: return "Payload Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Error";
  }
}

/* RFC 7231 IMF-fixdate, built by hand so the C locale never matters. */
static void http_date(char out[32]) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  snprintf(out, 32, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
           months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Writes one response. extra holds further header lines, each ending in CRLF. */
static void respond(hconn_t *c, int status, const char *type, const char *extra, const void *body,
                    size_t len) {
  pl_http_t *hs = c->hs;
  char date[32], hdr[768];
  const char *conn = "";
  int n;
  if (!c->keep_alive || hs->stopping) c->close_after = 1;
  if (c->close_after)
    conn = "Connection: close\r\n";
  else if (c->http10)
    conn = "Connection: keep-alive\r\n"; /* HTTP/1.0 closes unless told otherwise */
  http_date(date);
  n = snprintf(hdr, sizeof(hdr),
               "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "X-Content-Type-Options: nosniff\r\n%s%s\r\n",
               status, status_text(status), date, type, len, extra, conn);
  if (status < 300) hs->st.responses_2xx++;
  else if (status < 500) hs->st.responses_4xx++;
  else hs->st.responses_5xx++;
  pl_log_debug("http: %s: %s %.*s: %d", c->base.peer,
               c->url_len ? http_method_str((enum http_method)c->method) : "-",
               (int)(c->url_len > 200 ? 200 : c->url_len), c->url_len ? c->url : "", status);
  if (c->head_only || len == 0) {
    pl_conn_send(&c->base, hdr, (size_t)n);
  } else if (len <= COMBINE_MAX) {
    char *p = malloc((size_t)n + len);
    if (!p) {
      pl_conn_close(&c->base);
      return;
    }
    memcpy(p, hdr, (size_t)n);
    memcpy(p + n, body, len);
    pl_conn_send(&c->base, p, (size_t)n + len);
    free(p);
  } else if (pl_conn_send(&c->base, hdr, (size_t)n) == 0) {
    pl_conn_send(&c->base, body, len);
  }
}

static void respond_text(hconn_t *c, int status, const char *extra, const char *text) {
  respond(c, status, "text/plain; charset=utf-8", extra, text, strlen(text));
}

/* ---- query ops as JSON ---- */

static int http_status(pl_str_t code) {
  static const struct {
    const char *code;
    int status;
  } map[] = {{"bad_request", 400}, {"unknown_op", 404},  {"not_found", 404},
             {"too_large", 413},   {"unavailable", 503}, {"internal", 500}};
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (pl_str_eq(code, map[i].code)) return map[i].status;
  return 500;
}

static const msgpack_object *map_get(const msgpack_object *m, const char *key) {
  size_t n = strlen(key);
  if (m->type != MSGPACK_OBJECT_MAP) return NULL;
  for (uint32_t i = 0; i < m->via.map.size; i++) {
    const msgpack_object *k = &m->via.map.ptr[i].key;
    if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && !memcmp(k->via.str.ptr, key, n))
      return &m->via.map.ptr[i].val;
  }
  return NULL;
}

static const char oom_json[] =
    "{\"req\":null,\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";

/* Turns a packed reply map into c->body (JSON and a newline) and c->status. Any thread. */
static void render_reply(hconn_t *c, const char *data, size_t size) {
  msgpack_unpacked u;
  size_t off = 0;
  const msgpack_object *ok, *err, *code;
  c->body.len = 0;
  msgpack_unpacked_init(&u);
  if (msgpack_unpack_next(&u, data, size, &off) != MSGPACK_UNPACK_SUCCESS ||
      pl_json_from_msgpack(&u.data, 0, &c->body) != 0 || pl_json_buf_append(&c->body, "\n", 1)) {
    c->body.len = 0;
    c->status = 500;
  } else if ((ok = map_get(&u.data, "ok")) && ok->type == MSGPACK_OBJECT_BOOLEAN &&
             ok->via.boolean) {
    c->status = 200;
  } else if ((err = map_get(&u.data, "error")) && (code = map_get(err, "code")) &&
             code->type == MSGPACK_OBJECT_STR) {
    c->status = http_status(pl_str(code->via.str.ptr, code->via.str.size));
  } else {
    c->status = 500;
  }
  msgpack_unpacked_destroy(&u);
}

static void respond_reply(hconn_t *c) {
  if (c->body.len == 0)
    respond(c, 500, "application/json", NO_STORE, oom_json, sizeof(oom_json) - 1);
  else
    respond(c, c->status, "application/json", NO_STORE, c->body.data, c->body.len);
  if (c->body.cap > 1024 * 1024) pl_json_buf_free(&c->body); /* no big page kept for a ping */
}

/* An error found before the query ran, shaped like the query port's error replies. */
static void api_error(hconn_t *c, pl_qerr_t code, const char *message) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  if (pl_query_pack_error(&pk, NULL, code, message) == 0) render_reply(c, sb.data, sb.size);
  else c->body.len = 0;
  msgpack_sbuffer_destroy(&sb);
  respond_reply(c);
}

static void work_cb(uv_work_t *w) {
  hconn_t *c = w->data;
  msgpack_sbuffer reply;
  msgpack_packer pk;
  msgpack_unpacked u;
  size_t off = 0;
  uint64_t t0 = mono_us();
  msgpack_sbuffer_init(&reply);
  msgpack_packer_init(&pk, &reply, msgpack_sbuffer_write);
  msgpack_unpacked_init(&u);
  if (msgpack_unpack_next(&u, c->req.data, c->req.size, &off) != MSGPACK_UNPACK_SUCCESS) {
    pl_query_pack_error(&pk, NULL, PL_QERR_INTERNAL, "out of memory");
  } else {
    pl_query_env_t env = {PL_VERSION, 0, 0};
    if (c->env) c->env(c->env_arg, &env);
    if (pl_query_exec(c->store, &env, &u.data, &pk) != 0) {
      msgpack_sbuffer_clear(&reply);
      pl_query_pack_error(&pk, NULL, PL_QERR_INTERNAL, "out of memory");
    }
  }
  c->us = mono_us() - t0;
  msgpack_unpacked_destroy(&u);
  render_reply(c, reply.data, reply.size);
  msgpack_sbuffer_destroy(&reply);
}

static void after_work(uv_work_t *w, int status) {
  hconn_t *c = w->data;
  pl_http_t *hs = c->hs;
  (void)status;
  hs->st.running--;
  /* Looked up now, on the loop: the query server may have stopped while this ran. */
  if (hs->src.qserver) pl_qserver_record(hs->src.qserver, pl_str(c->op, c->op_len), c->us);
  if (pl_conn_release(&c->base) != 0) return;
  respond_reply(c);
  feed(c);
  update_reading(c);
  maybe_finish(c);
}

static int unhex(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Decodes %XX and '+' (form encoding) from s[0..n) into out, which has room for n bytes.
 * Returns the decoded length, or -1 for a malformed escape. */
static long url_decode(const char *s, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      int hi = i + 2 < n ? unhex(s[i + 1]) : -1, lo = i + 2 < n ? unhex(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) return -1;
      out[o++] = (char)(hi << 4 | lo);
      i += 2;
    } else {
      out[o++] = s[i] == '+' ? ' ' : s[i];
    }
  }
  return (long)o;
}

/* Packs {"op": op, name: value, ...} from the path's op and the query string, every value a
 * string (the query module reads decimal strings where it wants integers). */
static int pack_request(hconn_t *c, const char *op, size_t oplen, const char *q, size_t qlen) {
  msgpack_packer pk;
  char *scratch = malloc(oplen + qlen + 1);
  uint32_t n = 0;
  long len;
  int rc = PL_EINVAL;
  if (!scratch) return PL_ENOMEM;
  msgpack_sbuffer_clear(&c->req);
  msgpack_packer_init(&pk, &c->req, msgpack_sbuffer_write);
  for (size_t i = 0; i < qlen;) {
    size_t e = i;
    while (e < qlen && q[e] != '&') e++;
    if (e > i) n++;
    i = e + 1;
  }
  if ((len = url_decode(op, oplen, scratch)) < 0) goto out;
  c->op_len = (size_t)len < OP_MAX ? (size_t)len : OP_MAX;
  memcpy(c->op, scratch, c->op_len);
  rc = PL_ENOMEM;
  if (msgpack_pack_map(&pk, n + 1) || msgpack_pack_str_with_body(&pk, "op", 2) ||
      msgpack_pack_str_with_body(&pk, scratch, (size_t)len))
    goto out;
  for (size_t i = 0; i < qlen;) {
    size_t e = i, eq;
    while (e < qlen && q[e] != '&') e++;
    if (e == i) {
      i++;
      continue;
    }
    for (eq = i; eq < e && q[eq] != '='; eq++) continue;
    rc = PL_EINVAL;
    if ((len = url_decode(q + i, eq - i, scratch)) < 0) goto out;
    rc = PL_ENOMEM;
    if (msgpack_pack_str_with_body(&pk, scratch, (size_t)len)) goto out;
    rc = PL_EINVAL;
    len = eq < e ? url_decode(q + eq + 1, e - eq - 1, scratch) : 0;
    if (len < 0) goto out;
    rc = PL_ENOMEM;
    if (msgpack_pack_str_with_body(&pk, scratch, (size_t)len)) goto out;
    i = e + 1;
  }
  rc = 0;
out:
  free(scratch);
  return rc;
}

static void serve_api(hconn_t *c, const char *op, size_t oplen, const char *q, size_t qlen) {
  pl_http_t *hs = c->hs;
  int rc;
  if (!hs->src.store) {
    api_error(c, PL_QERR_UNAVAILABLE, "the store is closed (shutting down)");
    return;
  }
  rc = pack_request(c, op, oplen, q, qlen);
  if (rc == PL_EINVAL) {
    api_error(c, PL_QERR_BAD_REQUEST, "malformed %-escape in the request target");
    return;
  }
  if (rc) {
    api_error(c, PL_QERR_INTERNAL, "out of memory");
    return;
  }
  c->store = hs->src.store;
  c->env = hs->src.env;
  c->env_arg = hs->src.env_arg;
  pl_conn_hold(&c->base);
  hs->st.running++;
  c->work.data = c;
  if (uv_queue_work(hs->loop, &c->work, work_cb, after_work) != 0) {
    pl_conn_release(&c->base);
    hs->st.running--;
    api_error(c, PL_QERR_INTERNAL, "cannot queue the request");
  }
}

/* ---- metrics, health, dashboard ---- */

static void serve_metrics(hconn_t *c) {
  pl_http_t *hs = c->hs;
  const pl_http_sources_t *s = &hs->src;
  pl_ingest_stats_t in;
  pl_writer_stats_t ws;
  pl_store_info_t si;
  pl_qserver_stats_t qs;
  pl_qserver_op_stats_t ops[PL_QSERVER_OPS];
  pl_http_stats_t hst = hs->st;
  pl_metrics_src_t m;
  struct timespec now;
  char *text;
  size_t len;
  memset(&m, 0, sizeof(m));
  if (s->ingest) {
    pl_ingest_get_stats(s->ingest, &in);
    m.ingest = &in;
  }
  if (s->writer) {
    pl_writer_get_stats(s->writer, &ws);
    m.writer = &ws;
  }
  if (s->store) {
    pl_store_get_info(s->store, &si);
    m.store = &si;
  }
  if (s->qserver) {
    pl_qserver_get_stats(s->qserver, &qs);
    pl_qserver_get_op_stats(s->qserver, ops);
    m.query = &qs;
    m.query_ops = ops;
  }
  m.http = &hst;
  m.version = PL_VERSION;
  m.started_unix = s->started_unix;
  clock_gettime(CLOCK_REALTIME, &now);
  m.now_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
  if (pl_metrics_render(&m, &text, &len) != 0) {
    respond_text(c, 500, NO_STORE, "out of memory\n");
    return;
  }
  respond(c, 200, PL_METRICS_CONTENT_TYPE, NO_STORE, text, len);
  free(text);
}

/* The writer counts commits and failures but not their order, so "the last commit failed"
 * is read from the counters between two checks: failures and no success means failing,
 * successes alone mean healthy again; when both moved, a failure may be the latest, and it
 * reports failing until a check sees successes only. */
static void update_commit_health(pl_http_t *hs) {
  pl_writer_stats_t ws;
  if (!hs->src.writer) return;
  pl_writer_get_stats(hs->src.writer, &ws);
  hs->commit_failing = ws.last_failed;
  hs->seen_commits = ws.commits;
  hs->seen_errors = ws.commit_errors;
}

/* 0 when storage works; otherwise an error with a one-line reason in why. */
static int health(pl_http_t *hs, char *why, size_t n) {
  pl_store_info_t si;
  pl_rtxn_t *t;
  int rc;
  if (hs->stopping || !hs->src.writer || !hs->src.store) {
    snprintf(why, n, "unavailable: shutting down");
    return PL_ECLOSED;
  }
  pl_store_get_info(hs->src.store, &si);
  if (si.full) {
    snprintf(why, n, "unavailable: the store is full (map at storage.map_size_max, %llu bytes)",
             (unsigned long long)si.map_size_max);
    return PL_ESTOREFULL;
  }
  update_commit_health(hs);
  if (hs->commit_failing) {
    snprintf(why, n, "unavailable: the last commit failed (%llu failed commits since start)",
             (unsigned long long)hs->seen_errors);
    return PL_ESTORE;
  }
  /* On the loop thread: never wait for a map resize (the writer is busy, not broken). */
  rc = pl_store_read_try_begin(hs->src.store, &t);
  if (rc == PL_EAGAIN) return 0;
  if (rc) {
    snprintf(why, n, "unavailable: cannot read the store: %s", pl_strerror(rc));
    return rc;
  }
  pl_store_read_end(t);
  return 0;
}

static void serve_health(hconn_t *c) {
  char why[256];
  if (health(c->hs, why, sizeof(why) - 1) == 0) {
    respond_text(c, 200, NO_STORE, "ok\n");
    return;
  }
  strcat(why, "\n");
  respond_text(c, 503, NO_STORE, why);
}

static void serve_dashboard(hconn_t *c) {
  /* The page is one self-contained document: the policy keeps it that way in the browser. */
  respond(c, 200, "text/html; charset=utf-8",
          "Cache-Control: no-cache\r\n"
          "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
          "style-src 'unsafe-inline'; img-src data:; connect-src 'self'; "
          "frame-ancestors 'none'\r\n",
          pl_dashboard_html, pl_dashboard_html_len);
}

/* ---- requests ---- */

static int path_is(const char *p, size_t n, const char *lit) {
  return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

static void dispatch(hconn_t *c) {
  struct http_parser_url u;
  const char *path, *q = "";
  size_t plen, qlen = 0;
  c->hs->st.requests++;
  c->head_only = c->method == HTTP_HEAD;
  if (c->method != HTTP_GET && c->method != HTTP_HEAD) {
    respond_text(c, 405, NO_STORE "Allow: GET, HEAD\r\n", "method not allowed: use GET or HEAD\n");
    return;
  }
  http_parser_url_init(&u);
  if (!c->url || http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 ||
      !(u.field_set & (1 << UF_PATH))) {
    c->close_after = 1;
    respond_text(c, 400, NO_STORE, "bad request: malformed request target\n");
    return;
  }
  path = c->url + u.field_data[UF_PATH].off;
  plen = u.field_data[UF_PATH].len;
  if (u.field_set & (1 << UF_QUERY)) {
    q = c->url + u.field_data[UF_QUERY].off;
    qlen = u.field_data[UF_QUERY].len;
  }
  if (path_is(path, plen, "/"))
    serve_dashboard(c);
  else if (path_is(path, plen, "/metrics"))
    serve_metrics(c);
  else if (path_is(path, plen, "/healthz"))
    serve_health(c);
  else if (plen > 4 && memcmp(path, "/v1/", 4) == 0)
    serve_api(c, path + 4, plen - 4, q, qlen);
  else
    respond_text(c, 404, NO_STORE, "not found\n");
}

static int on_message_begin(http_parser *p) {
  hconn_t *c = p->data;
  c->url_len = 0;
  c->body_bytes = 0;
  c->in_message = 1;
  c->msg_started = uv_now(c->hs->loop);
  return 0;
}

/* The target's size is bounded by the header limit (http_parser_set_max_header_size). */
static int on_url(http_parser *p, const char *at, size_t n) {
  hconn_t *c = p->data;
  if (c->url_len + n + 1 > c->url_cap) {
    size_t cap = c->url_cap ? c->url_cap : 256;
    while (cap < c->url_len + n + 1) cap *= 2;
    char *u = realloc(c->url, cap);
    if (!u) return -1;
    c->url = u;
    c->url_cap = cap;
  }
  memcpy(c->url + c->url_len, at, n);
  c->url_len += n;
  c->url[c->url_len] = '\0';
  return 0;
}

/* Bodies are read and thrown away (GET and HEAD need none), up to the same bound. */
static int on_body(http_parser *p, const char *at, size_t n) {
  hconn_t *c = p->data;
  (void)at;
  c->body_bytes += n;
  if (c->body_bytes > c->hs->o.max_request_bytes) {
    c->too_large = 1;
    return -1;
  }
  return 0;
}

static int on_message_complete(http_parser *p) {
  hconn_t *c = p->data;
  c->method = p->method;
  c->http10 = p->http_major == 1 && p->http_minor == 0;
  /* After an upgrade request the bytes that follow are not HTTP: answer it, then close. */
  c->keep_alive = !p->upgrade && http_should_keep_alive(p);
  c->in_message = 0;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void parse_error(hconn_t *c, enum http_errno e) {
  c->close_after = 1;
  c->keep_alive = 0;
  c->head_only = 0;
  c->url_len = 0;
  if (c->too_large || e == HPE_HEADER_OVERFLOW) {
    pl_log_warn("http: %s: request larger than http.max_request_bytes; closing", c->base.peer);
    respond_text(c, 413, NO_STORE, "request too large\n");
  } else if (e == HPE_CB_url) {
    respond_text(c, 500, NO_STORE, "out of memory\n");
  } else {
    char text[160];
    pl_log_warn("http: %s: malformed request (%s); closing", c->base.peer,
                http_errno_description(e));
    snprintf(text, sizeof(text), "bad request: %s\n", http_errno_description(e));
    respond_text(c, 400, NO_STORE, text);
  }
}

/* Parses what is buffered, answering each complete request before parsing the next. */
static void feed(hconn_t *c) {
  size_t off = 0;
  while (!c->base.holds && !c->base.closing && !c->close_after && !c->lingering &&
         off < c->len && c->base.wq.pending <= c->hs->o.write_queue_max_bytes) {
    size_t n = http_parser_execute(&c->parser, &parser_settings, c->buf + off, c->len - off);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    off += n;
    if (e == HPE_PAUSED) {
      http_parser_pause(&c->parser, 0);
      dispatch(c);
    } else if (e != HPE_OK) {
      parse_error(c, e);
    } else if (n == 0 || c->parser.upgrade) {
      c->close_after = 1;
    }
  }
  if (c->close_after || c->base.closing) {
    c->len = 0;
  } else if (off) {
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
  }
}

static void on_alloc(pl_conn_t *base, uv_buf_t *buf) {
  hconn_t *c = (hconn_t *)base;
  if (!c->buf) c->buf = malloc(READ_CHUNK);
  if (!c->buf || c->len >= READ_CHUNK) return;
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(READ_CHUNK - c->len));
}

static void on_read(pl_conn_t *base, ssize_t nread) {
  hconn_t *c = (hconn_t *)base;
  if (nread == UV_ENOBUFS) {
    update_reading(c);
    return;
  }
  if (nread < 0) {
    if (nread != UV_EOF || c->lingering) {
      pl_conn_close(&c->base);
      return;
    }
    c->eof = 1;
    update_reading(c);
    feed(c);
    maybe_finish(c);
    return;
  }
  if (c->lingering) return; /* drained, never parsed */
  c->len += (size_t)nread;
  pl_conn_touch(&c->base);
  feed(c);
  update_reading(c);
  maybe_finish(c);
  if (c->len == 0 && !c->lingering) {
    free(c->buf);
    c->buf = NULL;
  }
}

static void on_idle(pl_conn_t *base, uint64_t now) {
  hconn_t *c = (hconn_t *)base;
  pl_http_t *hs = c->hs;
  if (c->lingering) {
    if (now - c->linger_started >= LINGER_MS) pl_conn_close(&c->base);
    return;
  }
  if (hs->stopping) {
    if (!c->base.holds && now - hs->stop_started >= STOP_GRACE_MS) pl_conn_close(&c->base);
    return;
  }
  if (c->base.holds) {
    c->base.last_active = now;
    return;
  }
  /* A request must arrive whole within the timeout too, however slowly its bytes trickle. */
  if (c->in_message && now - c->msg_started >= hs->o.idle_timeout_ms) {
    pl_log_info("http: %s: request not completed within the idle timeout; closing", c->base.peer);
    pl_conn_close(&c->base);
  } else if (now - c->base.last_active >= hs->o.idle_timeout_ms) {
    pl_log_debug("http: %s: idle; closing", c->base.peer);
    pl_conn_close(&c->base);
  }
}

static const pl_conn_ops_t conn_ops = {on_alloc, on_read, on_written, on_idle, NULL, on_free};

/* ---- listener ---- */

static void on_connection(uv_stream_t *server, int status) {
  pl_http_t *hs = server->data;
  hconn_t *c;
  if (status < 0 || hs->stopping) return;
  if (hs->st.connections >= hs->o.max_connections) {
    static const char busy[] =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n";
    char peer[96];
    hs->st.refused++;
    if (pl_net_refuse(&hs->listener, busy, sizeof(busy) - 1, peer, sizeof(peer)) == 0) {
      hs->st.responses_5xx++;
      pl_log_warn("http: %s: refused: too many connections", peer);
    }
    return;
  }
  c = calloc(1, sizeof(*c));
  if (!c) {
    char peer[96];
    hs->st.refused++;
    if (pl_net_refuse(&hs->listener, NULL, 0, peer, sizeof(peer)) == 0)
      pl_log_error("http: %s: refused: out of memory", peer);
    return;
  }
  c->hs = hs;
  if (pl_conn_accept(&hs->conns, &hs->listener, &c->base) != 0) return;
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  c->keep_alive = 1;
  msgpack_sbuffer_init(&c->req);
  hs->st.connections++;
  hs->st.accepted++;
  update_reading(c);
}

static void free_owner(uv_handle_t *h) { free(h->data); }

int pl_http_start(pl_http_t **out, uv_loop_t *loop, const pl_http_sources_t *src,
                  const pl_http_opts_t *opts, char *err, size_t errlen) {
  pl_http_t *hs = calloc(1, sizeof(*hs));
  int rc;
  if (!hs) {
    snprintf(err, errlen, "out of memory");
    return PL_ENOMEM;
  }
  hs->loop = loop;
  hs->src = *src;
  hs->o = *opts;
  pl_conn_list_init(&hs->conns, &conn_ops,
                    opts->idle_timeout_ms / 4 > 1000 ? 1000 : opts->idle_timeout_ms / 4);
  /* http-parser's only size knob is process-wide; this is the only HTTP parser in it. */
  http_parser_set_max_header_size(opts->max_request_bytes > UINT32_MAX
                                      ? UINT32_MAX
                                      : (uint32_t)opts->max_request_bytes);
  update_commit_health(hs);
  rc = pl_net_listen(&hs->listener, loop, opts->listen, on_connection, hs, err, errlen);
  if (rc) {
    if (hs->listener.open)
      pl_net_listener_close(&hs->listener, free_owner);
    else
      free(hs);
    return rc;
  }
  *out = hs;
  return 0;
}

const char *pl_http_address(const pl_http_t *h) { return h->listener.bound; }

void pl_http_set_sources(pl_http_t *h, const pl_http_sources_t *src) { h->src = *src; }

void pl_http_get_stats(const pl_http_t *h, pl_http_stats_t *st) { *st = h->st; }

static void check_stopped(pl_http_t *hs) {
  if (!hs->stopping || hs->conns.head || !hs->listener_closed || !hs->stop_cb) return;
  void (*cb)(void *) = hs->stop_cb;
  hs->stop_cb = NULL;
  cb(hs->stop_arg);
  free(hs);
}

static void on_listener_closed(uv_handle_t *h) {
  pl_http_t *hs = h->data;
  hs->listener_closed = 1;
  check_stopped(hs);
}

void pl_http_stop(pl_http_t *h, void (*cb)(void *arg), void *arg) {
  h->stopping = 1;
  h->stop_started = uv_now(h->loop);
  h->stop_cb = cb;
  h->stop_arg = arg;
  pl_net_listener_close(&h->listener, on_listener_closed);
  PL_CONN_EACH(hconn_t, c, &h->conns) {
    update_reading(c);
    /* A response still being written gets STOP_GRACE_MS (the idle timer); a running query
     * answers first (after_work). */
    if (!c->base.holds && (c->base.wq.pending == 0 || c->lingering)) pl_conn_close(&c->base);
  }
  check_stopped(h);
}
