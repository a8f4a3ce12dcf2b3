/*
 * The process that crash_safety_test.py kills: a C host of the library
 * ingesting the real client's payload from several threads at once.
 *
 *   crash_ingest ingest DB FIXTURE THREADS CUSTOMERS PREFIX
 *     Opens DB, creates CUSTOMERS customers and prints "customer I ID" for
 *     each, then "ready". Every thread then ingests FIXTURE with its
 *     workload_id replaced by PREFIX-N (N unique in the process) for
 *     customer N % CUSTOMERS, and once lgr_ingest() returned LGR_OK prints
 *     "ack PREFIX-N ID". A refused ingest prints "nack PREFIX-N STATUS".
 *     Runs until it is killed; gives up by itself after 60 s.
 *
 *   crash_ingest verify DB CUSTOMER_ID...
 *     Reopens DB through the library (the restart after a crash) and prints
 *     "stats ID JSON" per customer, from lgr_stats_json().
 *
 * Each line goes out with one write(2), smaller than PIPE_BUF, so lines of
 * different threads never interleave and a line is either in the pipe
 * before the kill or not at all. Exit status 2 on a setup failure.
 */
#define _POSIX_C_SOURCE 200809L

#include <loopgain/receiver.h>

#include "../c/test_file.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 2026-12-01T00:00:00Z: the fixture's 2026-11-30T14:00Z hour is in range. */
#define FIXED_NOW 1796083200LL
#define MAX_CUSTOMERS 16
#define MAX_THREADS 64
#define SELF_LIMIT_SECONDS 60

static lgr_receiver *g_receiver;
static char *g_fixture;
static const char *g_prefix;
static char *g_authorization[MAX_CUSTOMERS];
static char *g_customer_id[MAX_CUSTOMERS];
static int g_customers;
static atomic_long g_next;

static void emit(const char *line) {
  size_t len = strlen(line);
  while (len > 0) {
    ssize_t n = write(STDOUT_FILENO, line, len);
    if (n <= 0) _exit(3); /* the driver is gone */
    line += n;
    len -= (size_t)n;
  }
}

static void die(const char *what, lgr_error *error) {
  fprintf(stderr, "crash_ingest: %s: %s\n", what,
          error ? lgr_error_message(error) : "(no detail)");
  lgr_error_free(error);
  exit(2);
}

/* The fixture with its workload_id value replaced by `workload`. */
static char *with_workload(const char *fixture, const char *workload) {
  static const char key[] = "\"workload_id\": \"";
  const char *start = strstr(fixture, key);
  if (!start) return NULL;
  const char *value = start + sizeof key - 1;
  const char *end = strchr(value, '"');
  if (!end) return NULL;
  size_t head = (size_t)(value - fixture);
  size_t out_len = head + strlen(workload) + strlen(end);
  char *out = malloc(out_len + 1);
  if (!out) return NULL;
  memcpy(out, fixture, head);
  strcpy(out + head, workload);
  strcat(out, end);
  return out;
}

static lgr_receiver *open_db(const char *db) {
  lgr_options *options = lgr_options_create();
  lgr_error *error = NULL;
  if (!options) die("lgr_options_create", NULL);
  if (lgr_options_set_db_path(options, db, &error) != LGR_OK ||
      lgr_options_set_fixed_time(options, FIXED_NOW, &error) != LGR_OK) {
    die("options", error);
  }
  lgr_receiver *r = NULL;
  if (lgr_receiver_open(options, &r, &error) != LGR_OK) die("open", error);
  lgr_options_free(options);
  return r;
}

static void *ingest_loop(void *unused) {
  (void)unused;
  char workload[128];
  char line[256];
  for (;;) {
    long n = atomic_fetch_add(&g_next, 1);
    int c = (int)(n % g_customers);
    snprintf(workload, sizeof workload, "%s-%ld", g_prefix, n);
    char *body = with_workload(g_fixture, workload);
    if (!body) die("building a payload", NULL);

    lgr_error *error = NULL;
    lgr_status s = lgr_ingest(g_receiver, g_authorization[c], body,
                              strlen(body), NULL, &error);
    if (s == LGR_OK) {
      snprintf(line, sizeof line, "ack %s %s\n", workload, g_customer_id[c]);
    } else {
      snprintf(line, sizeof line, "nack %s %s\n", workload,
               lgr_status_name(s));
    }
    emit(line);
    lgr_error_free(error);
    free(body);
  }
  return NULL;
}

static int run_ingest(const char *db, const char *fixture_path, int threads,
                      int customers, const char *prefix) {
  size_t len = 0;
  g_fixture = read_file(fixture_path, &len);
  if (!g_fixture) die("reading the fixture", NULL);
  if (threads < 1 || threads > MAX_THREADS || customers < 1 ||
      customers > MAX_CUSTOMERS) {
    die("THREADS must be 1..64 and CUSTOMERS 1..16", NULL);
  }
  g_prefix = prefix;
  g_customers = customers;
  g_receiver = open_db(db);

  char line[256];
  for (int i = 0; i < customers; ++i) {
    char name[64];
    char *token = NULL;
    lgr_error *error = NULL;
    snprintf(name, sizeof name, "%s-customer-%d", prefix, i);
    if (lgr_customer_create(g_receiver, name, NULL, &g_customer_id[i], &token,
                            &error) != LGR_OK) {
      die("lgr_customer_create", error);
    }
    g_authorization[i] = malloc(strlen(token) + 8);
    if (!g_authorization[i]) die("out of memory", NULL);
    sprintf(g_authorization[i], "Bearer %s", token);
    lgr_string_free(token);
    snprintf(line, sizeof line, "customer %d %s\n", i, g_customer_id[i]);
    emit(line);
  }
  emit("ready\n");

  alarm(SELF_LIMIT_SECONDS); /* never outlive a driver that forgot us */
  pthread_t tids[MAX_THREADS];
  for (int i = 0; i < threads; ++i) {
    if (pthread_create(&tids[i], NULL, ingest_loop, NULL) != 0) {
      die("pthread_create", NULL);
    }
  }
  for (int i = 0; i < threads; ++i) pthread_join(tids[i], NULL);
  return 0;
}

static int run_verify(const char *db, int count, char **customer_ids) {
  lgr_receiver *r = open_db(db);
  for (int i = 0; i < count; ++i) {
    char *json = NULL;
    lgr_error *error = NULL;
    if (lgr_stats_json(r, customer_ids[i], &json, NULL, &error) != LGR_OK) {
      die("lgr_stats_json", error);
    }
    printf("stats %s %s\n", customer_ids[i], json);
    lgr_string_free(json);
  }
  lgr_error *error = NULL;
  if (lgr_receiver_close(r, &error) != LGR_OK) die("close", error);
  lgr_receiver_free(r);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 7 && strcmp(argv[1], "ingest") == 0) {
    return run_ingest(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]),
                      argv[6]);
  }
  if (argc >= 3 && strcmp(argv[1], "verify") == 0) {
    return run_verify(argv[2], argc - 3, argv + 3);
  }
  fprintf(stderr,
          "usage: crash_ingest ingest DB FIXTURE THREADS CUSTOMERS PREFIX\n"
          "       crash_ingest verify DB CUSTOMER_ID...\n");
  return 2;
}
