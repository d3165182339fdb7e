/* parley-bench: load generator and latency benchmark for parleyd. One subcommand per
 * measurement; each ends with a one-line JSON result that bench/run.sh collects. */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

static const char usage[] =
    "usage: parley-bench COMMAND [options]   (parley-bench COMMAND --help for each)\n"
    "  gen      write generated engagement records as JSON Lines (for `parley send`)\n"
    "  ingest   Forward-protocol load against parleyd's ingest port: events/s, ack latency\n"
    "  query    query-op latency against parleyd's query port\n"
    "  limit    the storage ceiling: the same records committed in-process, no network\n"
    "  redis    the same events into a Redis server (XADD + HINCRBY), for comparison\n"
    "  free-port  print a TCP port on 127.0.0.1 that is free now (for bench/run.sh)\n"
    "Every command except gen ends with one line of JSON:\n"
    "  {\"events\":N,\"seconds\":S,\"events_per_s\":R,\"mb_per_s\":M,\"p50_ms\":..,\"p99_ms\":..,"
    "\"p999_ms\":..,\"max_ms\":..}\n";

/* Prints a TCP port on 127.0.0.1 that was free a moment ago, for servers that cannot bind
 * port 0 and report what they got (redis-server). */
static int cmd_free_port(int argc, char **argv) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  (void)argc;
  (void)argv;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
    pb_die("free-port: cannot bind 127.0.0.1:0");
  printf("%u\n", ntohs(sa.sin_port));
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  static const struct {
    const char *name;
    int (*fn)(int, char **);
  } cmds[] = {{"gen", pb_cmd_gen},
              {"ingest", pb_cmd_ingest},
              {"query", pb_cmd_query},
              {"limit", pb_cmd_limit},
              {"redis", pb_cmd_redis},
              {"free-port", cmd_free_port}};
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  /* A server that closes on us must surface as a write error, not kill the benchmark. */
  signal(SIGPIPE, SIG_IGN);
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
    if (strcmp(argv[1], cmds[i].name) == 0) return cmds[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "parley-bench: unknown command \"%s\"\n%s", argv[1], usage);
  return 2;
}
