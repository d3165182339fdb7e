/* Query ops: turns `parley OP --arg value...` into {"op", "req", args...}, sends it to the
 * query port, reads the one reply and prints its result (show.c) or the server's error. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "parley/json.h"

/* A reply bigger than this is not a reply to one request: the peer is not parleyd. */
#define MAX_REPLY ((size_t)1 << 30)

typedef struct op_info {
  const char *name;
  const char *args;
  const char *what;
} op_info_t;

/* The SPEC's query table, for --help; the server stays the judge of what is valid. */
static const op_info_t ops[] = {
    {"ping", "", "check the server: pong, version"},
    {"stats", "",
     "counters: events, institutions, rejected, duplicates, first and last date, connections, "
     "uptime, database size"},
    {"activity", "--institution NAME [--window DAYS] [--as-of DATE]",
     "one institution over a window (30 days by default): events, participants, active days, "
     "kinds, formats, topics, counterparts, growth over the window before"},
    {"top",
     "[--window DAYS] [--as-of DATE] [--by events|participants|counterparts] [--limit N] "
     "[--kind KIND] [--topic TOPIC] [--format FORMAT]",
     "institutions ranked over a window (30 days, 10 rows, by events by default)"},
    {"series",
     "[--institution NAME] [--from DATE] [--to DATE] [--bucket day|week|month|year] "
     "[--kind KIND] [--topic TOPIC]",
     "events and participants per period, empty periods included"},
    {"pair", "--a NAME --b NAME [--from DATE] [--to DATE] [--period year|month]",
     "engagement between two institutions: events, kinds, first and last, streaks, "
     "participants by country"},
    {"topics", "[--window DAYS] [--as-of DATE] [--limit N]", "topics ranked by events"},
    {"institutions", "[--prefix TEXT] [--limit N]",
     "institutions with the events they reported and their first and last dates"},
    {"events", "[--from DATE] [--to DATE] [--institution NAME] [--limit N] [--after CURSOR]",
     "stored records in date order, a page at a time (100 by default); --after takes `next`"},
    {"rejects", "[--limit N] [--after CURSOR]",
     "rejected records with the reason, a page at a time"},
};

/* Prints text from column col, wrapped at 92 columns with later lines at indent; an option
 * group in brackets is never split. A space goes before the first word when lead is set. */
static void print_wrapped(FILE *f, const char *text, size_t col, size_t indent, int lead) {
  int first = 1;
  while (*text) {
    size_t word = 0;
    int depth = 0;
    while (text[word] && (depth > 0 || text[word] != ' ')) {
      depth += (text[word] == '[') - (text[word] == ']');
      word++;
    }
    if (!first && col + 1 + word > 92) {
      fprintf(f, "\n%*s", (int)indent, "");
      col = indent;
    } else if (!first || lead) {
      fputc(' ', f);
      col++;
    }
    fwrite(text, 1, word, f);
    col += word;
    text += word;
    text += strspn(text, " ");
    first = 0;
  }
  fputc('\n', f);
}

int cli_query_usage(FILE *f, const char *op) {
  int found = 0;
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    if (op && strcmp(op, ops[i].name) != 0) continue;
    fprintf(f, "  %s", ops[i].name);
    print_wrapped(f, ops[i].args, 2 + strlen(ops[i].name), 3 + strlen(ops[i].name), 1);
    fputs("      ", f);
    print_wrapped(f, ops[i].what, 6, 6, 0);
    found = 1;
  }
  return found ? 0 : -1;
}

/* Integer-valued args; the rest are sent as strings and parsed by the server. */
static int is_int_arg(const char *name) {
  return strcmp(name, "window") == 0 || strcmp(name, "limit") == 0;
}

typedef struct arg {
  char *name; /* "--as-of" -> "as_of", malloc'd */
  const char *value;
} arg_t;

/* Reads "--name value" and "--name=value" pairs. Returns the count, or -1 after printing why. */
static int parse_args(int argc, char **argv, arg_t *args) {
  int n = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *eq;
    size_t len;
    if (strncmp(a, "--", 2) != 0 || !a[2] || a[2] == '=') {
      cli_error("unexpected argument '%s': query arguments are --name value", a);
      return -1;
    }
    a += 2;
    eq = strchr(a, '=');
    len = eq ? (size_t)(eq - a) : strlen(a);
    if (!eq && i + 1 >= argc) {
      cli_error("--%s needs a value", a);
      return -1;
    }
    if (!(args[n].name = strndup(a, len))) {
      cli_error("out of memory");
      return -1;
    }
    for (char *p = args[n].name; *p; p++)
      if (*p == '-') *p = '_';
    args[n].value = eq ? eq + 1 : argv[++i];
    n++;
    if (strcmp(args[n - 1].name, "op") == 0 || strcmp(args[n - 1].name, "req") == 0) {
      cli_error("--%s is set by parley itself", args[n - 1].name);
      return -1;
    }
    for (int j = 0; j < n - 1; j++) {
      if (strcmp(args[j].name, args[n - 1].name) == 0) {
        cli_error("--%.*s given twice", (int)len, a);
        return -1;
      }
    }
  }
  return n;
}

/* Packs the request map. Returns 0, or -1 after printing why. */
static int pack_request(msgpack_packer *pk, const char *op, const arg_t *args, int n) {
  int rc = msgpack_pack_map(pk, 2 + (size_t)n) | msgpack_pack_str_with_body(pk, "op", 2) |
           msgpack_pack_str_with_body(pk, op, strlen(op)) |
           msgpack_pack_str_with_body(pk, "req", 3) | msgpack_pack_int(pk, 1);
  for (int i = 0; i < n; i++) {
    rc |= msgpack_pack_str_with_body(pk, args[i].name, strlen(args[i].name));
    if (is_int_arg(args[i].name)) {
      char *end;
      long long v;
      errno = 0;
      v = strtoll(args[i].value, &end, 10);
      if (errno || end == args[i].value || *end) {
        cli_error("--%s: expected an integer, got '%s'", args[i].name, args[i].value);
        return -1;
      }
      rc |= msgpack_pack_long_long(pk, v);
    } else {
      rc |= msgpack_pack_str_with_body(pk, args[i].value, strlen(args[i].value));
    }
  }
  if (rc) cli_error("out of memory");
  return rc ? -1 : 0;
}

static const char *read_error(int err) {
  switch (err) {
    case EPIPE:
      return "connection closed by the server before it replied";
    case ETIMEDOUT:
      return "no reply before the timeout";
    case EPROTO:
      return "the reply is not MessagePack";
    case EMSGSIZE:
      return "the reply is too large";
    default:
      return strerror(err);
  }
}

/* Prints the error of a {"ok": false} reply: "parley: <code>: <message>". */
static void print_server_error(const msgpack_object *reply) {
  const msgpack_object *e = cli_map_get(reply, "error");
  const msgpack_object *code = cli_map_get(e, "code"), *msg = cli_map_get(e, "message");
  int have_code = code && code->type == MSGPACK_OBJECT_STR;
  int have_msg = msg && msg->type == MSGPACK_OBJECT_STR;
  cli_error("%.*s: %.*s", have_code ? (int)code->via.str.size : 7,
            have_code ? code->via.str.ptr : "unknown", have_msg ? (int)msg->via.str.size : 21,
            have_msg ? msg->via.str.ptr : "the server gave no reason");
}

/* Checks and prints one reply. Returns the exit status. */
static int handle_reply(const cli_opts_t *o, const char *op, const msgpack_object *reply) {
  const msgpack_object *ok = cli_map_get(reply, "ok"), *req = cli_map_get(reply, "req");
  const msgpack_object *result = cli_map_get(reply, "result");
  msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
  pl_json_buf_t out = {0};

  if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN) {
    pl_json_from_msgpack(reply, 0, &out);
    cli_error("unexpected reply (no \"ok\"): %.200s", out.data ? out.data : "");
    pl_json_buf_free(&out);
    return CLI_EXIT_FAIL;
  }
  if (req && !(req->type == MSGPACK_OBJECT_POSITIVE_INTEGER && req->via.u64 == 1)) {
    cli_error("the reply answers another request (\"req\" is not 1)");
    return CLI_EXIT_FAIL;
  }
  if (!ok->via.boolean) {
    print_server_error(reply);
    return CLI_EXIT_FAIL;
  }
  if (!result) result = &nil;
  if (o->json) {
    if (pl_json_from_msgpack(result, PL_JSON_PRETTY, &out) ||
        pl_json_buf_append(&out, "\n", 1)) {
      cli_error("out of memory");
      return CLI_EXIT_FAIL;
    }
    fwrite(out.data, 1, out.len, stdout);
    pl_json_buf_free(&out);
  } else {
    cli_show(stdout, op, result);
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    cli_error("cannot write the output: %s", strerror(errno));
    return CLI_EXIT_FAIL;
  }
  return CLI_EXIT_OK;
}

int cli_query(const cli_opts_t *o, const char *op, int argc, char **argv) {
  const char *addr = o->addr ? o->addr : CLI_QUERY_ADDR;
  arg_t *args = calloc((size_t)argc + 1, sizeof *args);
  msgpack_sbuffer req;
  msgpack_packer pk;
  msgpack_unpacker up;
  msgpack_unpacked reply;
  char err[512];
  int n, fd = -1, status = CLI_EXIT_USAGE;
  int64_t deadline;

  msgpack_sbuffer_init(&req);
  msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
  msgpack_unpacked_init(&reply);
  if (!msgpack_unpacker_init(&up, MSGPACK_UNPACKER_INIT_BUFFER_SIZE) || !args) {
    cli_error("out of memory");
    free(args);
    return CLI_EXIT_FAIL;
  }
  if ((n = parse_args(argc, argv, args)) < 0 || pack_request(&pk, op, args, n) < 0) goto done;
  status = CLI_EXIT_FAIL;
  if ((fd = cli_connect(addr, o->timeout_ms, err, sizeof err)) < 0) {
    cli_error("%s", err);
    goto done;
  }
  deadline = cli_now_ms() + o->timeout_ms;
  if (cli_write_all(fd, req.data, req.size, deadline) < 0) {
    cli_error("cannot send the request to %s: %s", addr, strerror(errno));
    goto done;
  }
  if (cli_read_object(fd, &up, &reply, deadline, MAX_REPLY) < 0) {
    cli_error("%s: %s", addr, read_error(errno));
    goto done;
  }
  status = handle_reply(o, op, &reply.data);
done:
  if (fd >= 0) close(fd);
  for (int i = 0; args[i].name; i++) free(args[i].name);
  free(args);
  msgpack_unpacked_destroy(&reply);
  msgpack_unpacker_destroy(&up);
  msgpack_sbuffer_destroy(&req);
  return status;
}
