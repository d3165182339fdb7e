/* parley: the command-line client of parleyd. Reads the global options (accepted before or
 * after the op) and hands the rest of the command line to `send` or to a query op. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_head[] =
    "usage: parley [--addr HOST:PORT|unix:PATH] [--json] [--timeout SECONDS] OP [--arg value]...\n"
    "       parley OP --help\n";

void cli_usage(FILE *f, const char *op) {
  fputs(usage_head, f);
  if (op && strcmp(op, "send") == 0) {
    fputc('\n', f);
    cli_send_usage(f);
    return;
  }
  if (op) {
    fputc('\n', f);
    if (cli_query_usage(f, op) < 0)
      fprintf(f, "'%s' is not an op parley knows; it is sent anyway and the server answers\n"
                 "unknown_op if it does not know it either.\n", op);
    return;
  }
  fputs("\nSends JSON Lines to parleyd over the Fluentd Forward protocol and runs its query ops.\n"
        "\noptions (before or after OP):\n"
        "  --addr ADDR        HOST:PORT, [IPV6]:PORT or unix:PATH; default " CLI_QUERY_ADDR
        " for\n"
        "                     query ops, " CLI_SEND_ADDR " for send\n"
        "  --json             print the query result as indented JSON instead of tables\n"
        "  --timeout SECONDS  connect, reply and ack timeout (default 30)\n"
        "  -h, --help         this text; `parley OP --help` for one op\n"
        "\ningest:\n",
        f);
  cli_send_usage(f);
  fputs("\nquery ops: the request is {\"op\": OP, \"req\": 1, name: value...}; --as-of is sent as\n"
        "\"as_of\", --window and --limit as integers, every other value as a string.\n",
        f);
  cli_query_usage(f, NULL);
  fputs("\nexit status: 0 on success; 1 on any error (connection, the server's error reply,\n"
        "refused lines, unacknowledged records), with the reason on stderr; 2 on a bad\n"
        "command line.\n",
        f);
}

/* Parses a positive number of seconds ("30", "0.5") into milliseconds. */
static int parse_seconds(const char *s, int *ms) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !(v > 0) || v > 86400.0 * 365) return -1;
  *ms = v * 1000 < 1 ? 1 : (int)(v * 1000);
  return 0;
}

/* Matches "--name VALUE" (advancing *i) or "--name=VALUE". Returns 1 and sets *value, 0
 * when arg is another option, -1 when the value is missing. */
static int option_value(const char *name, int argc, char **argv, int *i, const char **value) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0) return 0;
  if (a[n] == '=') {
    *value = a + n + 1;
    return 1;
  }
  if (a[n] != '\0') return 0;
  if (*i + 1 >= argc) return -1;
  *value = argv[++*i];
  return 1;
}

int main(int argc, char **argv) {
  cli_opts_t o = {.timeout_ms = CLI_DEFAULT_TIMEOUT_MS};
  char **rest = calloc((size_t)argc + 1, sizeof *rest);
  const char *op = NULL, *value = NULL, *opt = NULL;
  int nrest = 0, help = 0, status, r;

  if (!rest) {
    cli_error("out of memory");
    return CLI_EXIT_FAIL;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (op && strcmp(a, "--") == 0) { /* the rest belongs to the op, even if it looks global */
      while (++i < argc) rest[nrest++] = argv[i];
    } else if (strcmp(a, "--json") == 0) {
      o.json = 1;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      help = 1;
    } else if ((r = option_value(opt = "--addr", argc, argv, &i, &value)) != 0) {
      if (r < 0 || !*value) goto missing;
      o.addr = value;
    } else if ((r = option_value(opt = "--timeout", argc, argv, &i, &value)) != 0) {
      if (r < 0) goto missing;
      if (parse_seconds(value, &o.timeout_ms) < 0) {
        cli_error("--timeout: expected a positive number of seconds, got '%s'", value);
        goto usage;
      }
    } else if (!op && strcmp(a, "help") == 0) {
      help = 1;
    } else if (!op && a[0] == '-') {
      cli_error("unknown option '%s' before the op", a);
      goto usage;
    } else if (!op) {
      op = a;
    } else {
      rest[nrest++] = argv[i];
    }
  }
  if (help) {
    cli_usage(stdout, op);
    free(rest);
    return CLI_EXIT_OK;
  }
  if (!op) {
    cli_usage(stderr, NULL);
    free(rest);
    return CLI_EXIT_USAGE;
  }
  status = strcmp(op, "send") == 0 ? cli_send(&o, nrest, rest) : cli_query(&o, op, nrest, rest);
  free(rest);
  return status;
missing:
  cli_error("%s needs a value", opt);
usage:
  fprintf(stderr, "run 'parley --help' for usage\n");
  free(rest);
  return CLI_EXIT_USAGE;
}
