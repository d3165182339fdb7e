/* The option table: defaults, INI files with file:line errors, flags, sizes and durations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "parley/config.h"
#include "parley/error.h"
#include "testutil.h"

static char *write_file(const char *text) {
  char *dir = tu_tempdir("conf");
  char *path = malloc(strlen(dir) + 16);
  FILE *f;
  sprintf(path, "%s/p.conf", dir);
  f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
  free(dir);
  return path;
}

static void test_defaults_match_spec(void **state) {
  pl_config_t c;
  (void)state;
  pl_config_defaults(&c);
  assert_string_equal(c.listen, "127.0.0.1:24224");
  assert_string_equal(c.query_listen, "127.0.0.1:24225");
  assert_string_equal(c.data_dir, "./data");
  assert_int_equal(c.sync_full, 1);
  assert_int_equal(c.max_connections, 4096);
  assert_int_equal(c.log_level, 2);
}

static void test_the_shipped_config_loads(void **state) {
  pl_config_t c, d;
  char err[256];
  (void)state;
  pl_config_defaults(&c);
  pl_config_defaults(&d);
  assert_int_equal(pl_config_load(&c, "config/parleyd.conf", err, sizeof(err)), 0);
  /* it documents the defaults: loading it changes nothing */
  assert_memory_equal(&c, &d, sizeof(c));
}

static void test_file_errors_name_the_line(void **state) {
  pl_config_t c;
  char err[256];
  char *p;
  (void)state;
  pl_config_defaults(&c);
  p = write_file("[storage]\nsync = full\n\n[ingest]\nmax_connections = lots\n");
  assert_int_equal(pl_config_load(&c, p, err, sizeof(err)), PL_ECONFIG);
  assert_non_null(strstr(err, "p.conf:5:"));
  assert_non_null(strstr(err, "ingest.max_connections"));
  free(p);
  p = write_file("[storage]\nsyncc = full\n");
  assert_int_equal(pl_config_load(&c, p, err, sizeof(err)), PL_ECONFIG);
  assert_non_null(strstr(err, ":2: unknown option \"syncc\""));
  free(p);
  p = write_file("[nope]\nx = 1\n");
  assert_int_equal(pl_config_load(&c, p, err, sizeof(err)), PL_ECONFIG);
  free(p);
  p = write_file("[storage]\nmap_size = 12\n");
  assert_int_equal(pl_config_load(&c, p, err, sizeof(err)), PL_ECONFIG);
  assert_non_null(strstr(err, "outside"));
  free(p);
  assert_int_equal(pl_config_load(&c, "/nonexistent/parley.conf", err, sizeof(err)), PL_ECONFIG);
  assert_non_null(strstr(err, "cannot open"));
}

static void test_values(void **state) {
  pl_config_t c;
  char err[256];
  char *p;
  (void)state;
  pl_config_defaults(&c);
  p = write_file("[storage]\nmap_size = 2GiB\nbatch_delay = 250ms\nsync = none\n"
                 "[ingest]\nidle_timeout = 2m\nuser = alice:s3cret\nuser = bob:pw\n"
                 "[log]\nlevel = debug\n");
  assert_int_equal(pl_config_load(&c, p, err, sizeof(err)), 0);
  assert_int_equal(c.map_size, 2ull << 30);
  assert_int_equal(c.batch_delay_ms, 250);
  assert_int_equal(c.sync_full, 0);
  assert_int_equal(c.idle_timeout_ms, 120000);
  assert_int_equal(c.nusers, 2);
  assert_string_equal(c.users[0].name, "alice");
  assert_string_equal(c.users[0].password, "s3cret");
  assert_int_equal(c.log_level, 3);
  free(p);
  /* flags override: by section.name or a unique bare name */
  assert_int_equal(pl_config_set(&c, "data_dir", "/tmp/x", err, sizeof(err)), 0);
  assert_string_equal(c.data_dir, "/tmp/x");
  assert_int_equal(pl_config_set(&c, "query.listen", "unix:/tmp/q.sock", err, sizeof(err)), 0);
  assert_int_equal(pl_config_set(&c, "listen", "x", err, sizeof(err)), PL_ECONFIG);
  assert_non_null(strstr(err, "ambiguous"));
  assert_int_equal(pl_config_set(&c, "storage.sync", "sometimes", err, sizeof(err)), PL_ECONFIG);
  assert_int_equal(pl_config_set(&c, "nope", "1", err, sizeof(err)), PL_ECONFIG);
}

static void test_units(void **state) {
  uint64_t v;
  (void)state;
  assert_int_equal(pl_config_parse_size("4096", &v), 0);
  assert_int_equal(v, 4096);
  assert_int_equal(pl_config_parse_size("64MiB", &v), 0);
  assert_int_equal(v, 64ull << 20);
  assert_int_equal(pl_config_parse_size("1T", &v), 0);
  assert_int_equal(v, 1ull << 40);
  assert_int_equal(pl_config_parse_size("12 parsecs", &v), PL_EINVAL);
  assert_int_equal(pl_config_parse_size("-1", &v), PL_EINVAL);
  assert_int_equal(pl_config_parse_size("99999999999999999999TiB", &v), PL_EINVAL);
  assert_int_equal(pl_config_parse_duration_ms("10", &v), 0);
  assert_int_equal(v, 10000);
  assert_int_equal(pl_config_parse_duration_ms("10ms", &v), 0);
  assert_int_equal(v, 10);
  assert_int_equal(pl_config_parse_duration_ms("1h", &v), 0);
  assert_int_equal(v, 3600000);
  assert_int_equal(pl_config_parse_duration_ms("soon", &v), PL_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_match_spec), cmocka_unit_test(test_the_shipped_config_loads),
      cmocka_unit_test(test_file_errors_name_the_line), cmocka_unit_test(test_values),
      cmocka_unit_test(test_units),
  };
  return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
