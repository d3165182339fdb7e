/* The `parley` client: global options, socket helpers bound by deadlines, and the entry
 * points of its commands (send.c: Forward ingest; query.c: query ops; show.c: tables). */
#ifndef PARLEY_CLI_H
#define PARLEY_CLI_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_QUERY_ADDR "127.0.0.1:24225"
#define CLI_SEND_ADDR "127.0.0.1:24224"
#define CLI_DEFAULT_TIMEOUT_MS 30000

/* Exit statuses: 1 for anything that went wrong at run time, 2 for a bad command line. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

typedef struct cli_opts {
  const char *addr; /* --addr, or NULL for the command's default */
  int json;         /* --json: print results as indented JSON */
  int timeout_ms;   /* --timeout: connect, reply and ack timeout */
} cli_opts_t;

/* Prints "parley: " and the message and a newline on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Milliseconds on the monotonic clock. */
int64_t cli_now_ms(void);

/* Connects to "HOST:PORT", "[V6]:PORT" or "unix:PATH" within timeout_ms. Returns a
 * non-blocking socket, or -1 with the reason in err (errlen bytes). */
int cli_connect(const char *addr, int timeout_ms, char *err, size_t errlen);

/* Waits until fd is ready for events (POLLIN/POLLOUT) or the deadline passes. Returns 1
 * when ready, 0 on timeout, -1 with errno on error. */
int cli_wait(int fd, short events, int64_t deadline_ms);

/* Writes all n bytes to the non-blocking socket fd before the deadline. Returns 0, or -1
 * with errno (ETIMEDOUT when the deadline passed). */
int cli_write_all(int fd, const void *p, size_t n, int64_t deadline_ms);

/* Reads from fd into u until one whole object is unpacked into out (owned by the caller,
 * valid until the next call on u). Returns 0; -1 with errno on a socket error, ETIMEDOUT
 * past the deadline, EPIPE when the peer closed first, EPROTO on bytes that are not
 * MessagePack, EMSGSIZE past max_bytes of buffered input. */
int cli_read_object(int fd, msgpack_unpacker *u, msgpack_unpacked *out, int64_t deadline_ms,
                    size_t max_bytes);

/* Prints usage: every command with its arguments (op NULL), or one command's. */
void cli_usage(FILE *f, const char *op);

/* `parley send [FILE|-] ...`; argv holds the arguments after "send". Returns an exit status. */
int cli_send(const cli_opts_t *o, int argc, char **argv);
void cli_send_usage(FILE *f);

/* `parley OP [--arg value]...`. Returns an exit status. */
int cli_query(const cli_opts_t *o, const char *op, int argc, char **argv);
/* Prints the query ops and their arguments (op NULL: all); returns 0, or -1 if op is unknown. */
int cli_query_usage(FILE *f, const char *op);

/* The value of the str key in a map, or NULL when map is not a map or lacks the key. */
const msgpack_object *cli_map_get(const msgpack_object *map, const char *key);

/* Prints a query result as readable, aligned text (see show.c for each op's layout). */
void cli_show(FILE *f, const char *op, const msgpack_object *result);

#endif
