/*
 * lgr_handle_request_async() driven from C11 against its specification in
 * include/loopgain/receiver.h ("HTTP-shaped requests, completed by
 * callback").
 *
 * Usage: capi_async_test FIXTURES_DIR
 *
 * What it proves, group by group:
 *  1. Argument errors (NULL receiver, request or on_response, request
 *     version 0 or 99, and the requests lgr_handle_request() itself refuses
 *     without a response) return LGR_ERR_INVALID_ARGUMENT and the callback
 *     is never called, not even later.
 *  2. An accepted ingest returns LGR_OK and is answered exactly once, on a
 *     thread other than the caller's, with the very response
 *     lgr_handle_request() gives for the same payload (status, body,
 *     headers, customer); the event is committed when the callback runs, and
 *     GET /v1/stats shows the exact counts afterwards.
 *  3. Refused ingests and every other route are answered on the calling
 *     thread before the call returns, with the synchronous response.
 *  4. 8 threads x 50 ingests without waiting: every callback exactly once,
 *     all 202, all on the one writer thread, and exactly 400 events stored.
 *  5. Re-entrancy on the writer thread: calls that wait for a commit
 *     (lgr_ingest, lgr_customer_create) fail with LGR_ERR_INTERNAL instead
 *     of deadlocking, lgr_handle_request for an ingest answers 500; reads,
 *     synchronous GETs and lgr_handle_request_async (a GET, and a further
 *     ingest that completes later) work. A callback on the calling thread
 *     may still ingest synchronously.
 *  6. lgr_receiver_close() returns only after every accepted callback has
 *     returned (queued ingests, and a close racing a thread that keeps
 *     issuing); lgr_receiver_free() likewise. After close the call returns
 *     LGR_ERR_CLOSED having already answered 503 with Retry-After.
 *  7. Every response handed to a callback is freed by it; the valgrind
 *     variant of this test proves nothing leaks.
 *
 * Every wait for a callback has a deadline (WAIT_SECONDS): a lost callback
 * or a deadlock fails the test instead of hanging it.
 */
#define _POSIX_C_SOURCE 200809L

#include <loopgain/receiver.h>

#include "test_checks.h"
#include "test_file.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


/* 2026-12-01T00:00:00Z. Every fixture is stamped 2026-11-30T14:00:00Z,
 * ten hours earlier. */
#define FIXED_NOW 1796083200LL
#define SINCE (FIXED_NOW - 30LL * 86400)

/* How long any wait for callbacks may take before the test gives up. */
#define WAIT_SECONDS 60

#define FIXTURE "v4-0.6.4-converged.json"
#define ACCEPTED_BODY "{\"status\":\"ok\",\"redacted\":[\"/per_iteration\"]}"
#define CLOSED_PREFIX "{\"error\":\"closed\",\"path\":\"\",\"message\":"
#define CLOSED_BODY                                          \
  "{\"error\":\"closed\",\"path\":\"\",\"message\":\"the receiver is " \
  "shutting down\"}"

/* ---- Responses as plain data -------------------------------------------- */

/* Everything observable of one lgr_http_response, copied out so that the
 * response itself can be freed at once. */
typedef struct snapshot {
  int valid;
  int status;
  char *body;
  size_t body_len;
  char *content_type;
  char *customer_id;
  char *headers; /* "Name: value\n" for each header, in order */
  char *retry_after; /* NULL when absent */
} snapshot;

static char *dup_text(const char *s, size_t len) {
  char *copy = malloc(len + 1);
  if (!copy) {
    fprintf(stderr, "out of memory\n");
    _exit(2);
  }
  memcpy(copy, s, len);
  copy[len] = '\0';
  return copy;
}

static void snapshot_take(snapshot *snap, const lgr_http_response *res) {
  memset(snap, 0, sizeof *snap);
  snap->valid = 1;
  snap->status = lgr_http_response_status(res);
  size_t len = 0;
  const char *body = lgr_http_response_body(res, &len);
  snap->body = dup_text(body, len);
  snap->body_len = len;
  const char *ct = lgr_http_response_content_type(res);
  snap->content_type = dup_text(ct, strlen(ct));
  const char *cid = lgr_http_response_customer_id(res);
  snap->customer_id = dup_text(cid, strlen(cid));
  size_t total = 1;
  size_t n = lgr_http_response_header_count(res);
  for (size_t i = 0; i < n; ++i) {
    const char *k = NULL, *v = NULL;
    if (lgr_http_response_header(res, i, &k, &v) == LGR_OK) {
      total += strlen(k) + strlen(v) + 3;
    }
  }
  snap->headers = malloc(total);
  if (!snap->headers) _exit(2);
  snap->headers[0] = '\0';
  for (size_t i = 0; i < n; ++i) {
    const char *k = NULL, *v = NULL;
    if (lgr_http_response_header(res, i, &k, &v) == LGR_OK) {
      strcat(snap->headers, k);
      strcat(snap->headers, ": ");
      strcat(snap->headers, v);
      strcat(snap->headers, "\n");
      if (strcmp(k, "Retry-After") == 0 && !snap->retry_after) {
        snap->retry_after = dup_text(v, strlen(v));
      }
    }
  }
}

static void snapshot_free(snapshot *snap) {
  free(snap->body);
  free(snap->content_type);
  free(snap->customer_id);
  free(snap->headers);
  free(snap->retry_after);
  memset(snap, 0, sizeof *snap);
}

/* Same status, body, content type, headers and customer. */
static void check_same_response(const snapshot *got, const snapshot *want,
                                const char *what, int line) {
  ++g_checks;
  if (!got->valid || !want->valid || got->status != want->status ||
      got->body_len != want->body_len ||
      memcmp(got->body, want->body, got->body_len) != 0 ||
      strcmp(got->content_type, want->content_type) != 0 ||
      strcmp(got->customer_id, want->customer_id) != 0 ||
      strcmp(got->headers, want->headers) != 0) {
    ++g_failures;
    fprintf(stderr,
            "line %d: %s: async response differs from lgr_handle_request\n"
            "  async: %d %s [%s] %s\n  sync:  %d %s [%s] %s\n",
            line, what, got->status, got->valid ? got->body : "(none)",
            got->valid ? got->customer_id : "", got->valid ? got->headers : "",
            want->status, want->valid ? want->body : "(none)",
            want->valid ? want->customer_id : "",
            want->valid ? want->headers : "");
  }
}

static void check_body(const snapshot *got, int status, const char *body,
                       int line) {
  ++g_checks;
  if (!got->valid || got->status != status || strlen(body) != got->body_len ||
      memcmp(got->body, body, got->body_len) != 0) {
    ++g_failures;
    fprintf(stderr, "line %d: expected %d %s\n         got %d %s\n", line,
            status, body, got->status, got->valid ? got->body : "(none)");
  }
}

/* ---- Requests ------------------------------------------------------------- */

static lgr_http_request make_request(const char *method, const char *path,
                                     const char *authorization,
                                     const char *body, size_t body_len) {
  lgr_http_request req;
  lgr_http_request_init(&req);
  req.method = method;
  req.path = path;
  req.authorization = authorization;
  req.body = body;
  req.body_len = body_len;
  return req;
}

/* The synchronous answer to `req`, as a snapshot. */
static snapshot sync_snapshot(lgr_receiver *r, const lgr_http_request *req,
                              lgr_status want_status) {
  lgr_http_response *res = NULL;
  lgr_status s = lgr_handle_request(r, req, &res);
  CHECK_EQ_INT(s, want_status);
  CHECK(res != NULL);
  snapshot snap;
  memset(&snap, 0, sizeof snap);
  if (res) snapshot_take(&snap, res);
  lgr_http_response_free(res);
  return snap;
}

/* ---- Callback bookkeeping ------------------------------------------------- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv; /* on CLOCK_MONOTONIC, set up in main */
static long g_total_calls = 0;       /* guarded by g_mu */
static atomic_long g_expected_calls = 0; /* calls that promised a callback */
static atomic_int g_close_returned = 0;

typedef enum slot_mode {
  MODE_PLAIN = 0,
  MODE_PROBE_STATS,     /* read the stats from inside the callback */
  MODE_REENTER,         /* call back into the receiver (group 5) */
  MODE_INGEST_ON_CALLER /* lgr_ingest from a calling-thread callback */
} slot_mode;

typedef struct reentry {
  /* Set before the call. */
  lgr_receiver *r;
  const char *customer_id;
  const char *auth;
  const char *body;
  size_t body_len;
  struct slot *nested_ingest;
  struct slot *nested_get;
  /* Filled in by the callback. */
  lgr_status stats_rc;
  char *stats_json;
  lgr_status ingest_rc;
  lgr_status ingest_err_status;
  char *ingest_err_code;
  int ingest_result_null;
  lgr_status handle_ingest_rc;
  int handle_ingest_out_null;
  snapshot handle_ingest; /* what came back if *out was not left NULL */
  lgr_status customer_rc;
  int customer_out_null;
  lgr_status close_rc;
  char *close_err_code;
  lgr_status handle_get_rc;
  snapshot handle_get;
  lgr_status nested_get_rc;
  int nested_get_calls_at_return;
  int nested_get_same_thread;
  lgr_status nested_ingest_rc;
} reentry;

typedef struct slot {
  /* Set by the issuer before the call. */
  slot_mode mode;
  reentry *re;
  pthread_t issuer;
  lgr_status rc; /* what lgr_handle_request_async returned */
  /* Guarded by g_mu, filled in by the callback. */
  int calls;
  int null_response;
  int after_close; /* the callback ran after close had returned */
  pthread_t cb_thread;
  snapshot snap;
} slot;

static const char *find_counter(const char *json, const char *key,
                                long long *out) {
  char pattern[64];
  snprintf(pattern, sizeof pattern, "\"%s\":", key);
  const char *p = json ? strstr(json, pattern) : NULL;
  if (p) *out = strtoll(p + strlen(pattern), NULL, 10);
  return p;
}

static void count_issued(lgr_status rc) {
  if (rc == LGR_OK || rc == LGR_ERR_CLOSED) atomic_fetch_add(&g_expected_calls, 1);
}

static void on_response(void *user_data, lgr_http_response *res);

/* Group 5: everything a writer-thread callback tries on its own receiver.
 * Runs without g_mu held. */
static void reenter(reentry *re) {
  lgr_error *err = NULL;

  re->stats_rc =
      lgr_stats_json(re->r, re->customer_id, &re->stats_json, NULL, NULL);

  static char sentinel;
  lgr_ingest_result *result = (lgr_ingest_result *)(void *)&sentinel;
  re->ingest_rc =
      lgr_ingest(re->r, re->auth, re->body, re->body_len, &result, &err);
  re->ingest_result_null = result == NULL;
  if (err) {
    re->ingest_err_status = lgr_error_status(err);
    const char *code = lgr_error_code_name(err);
    re->ingest_err_code = dup_text(code, strlen(code));
    lgr_error_free(err);
    err = NULL;
  }
  if (re->ingest_rc == LGR_OK) lgr_ingest_result_free(result);

  lgr_http_request post =
      make_request("POST", "/v1/aggregate", re->auth, re->body, re->body_len);
  lgr_http_response *res = (lgr_http_response *)(void *)&sentinel;
  re->handle_ingest_rc = lgr_handle_request(re->r, &post, &res);
  re->handle_ingest_out_null = res == NULL;
  if (res != (lgr_http_response *)(void *)&sentinel) {
    if (res) snapshot_take(&re->handle_ingest, res);
    lgr_http_response_free(res);
  }

  char *cust = NULL, *token = NULL;
  re->customer_rc =
      lgr_customer_create(re->r, "Inside", NULL, &cust, &token, NULL);
  re->customer_out_null = cust == NULL && token == NULL;
  lgr_string_free(cust);
  lgr_string_free(token);

  /* Closing from here would wait for this very thread: refused, and the
   * receiver stays open (the calls below still work). */
  lgr_error *close_err = NULL;
  re->close_rc = lgr_receiver_close(re->r, &close_err);
  if (close_err) {
    const char *code = lgr_error_code_name(close_err);
    re->close_err_code = dup_text(code, strlen(code));
    lgr_error_free(close_err);
  }

  lgr_http_request get = make_request("GET", "/v1/stats", re->auth, NULL, 0);
  res = NULL;
  re->handle_get_rc = lgr_handle_request(re->r, &get, &res);
  if (res) snapshot_take(&re->handle_get, res);
  lgr_http_response_free(res);

  lgr_http_request health = make_request("GET", "/health", NULL, NULL, 0);
  re->nested_get->issuer = pthread_self();
  re->nested_get_rc =
      lgr_handle_request_async(re->r, &health, on_response, re->nested_get);
  count_issued(re->nested_get_rc);
  pthread_mutex_lock(&g_mu);
  re->nested_get_calls_at_return = re->nested_get->calls;
  re->nested_get_same_thread =
      re->nested_get->calls == 1 &&
      pthread_equal(re->nested_get->cb_thread, pthread_self());
  pthread_mutex_unlock(&g_mu);

  re->nested_ingest->issuer = pthread_self();
  re->nested_ingest_rc =
      lgr_handle_request_async(re->r, &post, on_response, re->nested_ingest);
  count_issued(re->nested_ingest_rc);
}

static void on_response(void *user_data, lgr_http_response *res) {
  slot *s = user_data;
  const pthread_t self = pthread_self();
  const int after_close = atomic_load(&g_close_returned);
  const int is_null = res == NULL;

  if (s->mode == MODE_REENTER && s->re) reenter(s->re);
  if (s->mode == MODE_PROBE_STATS && s->re) {
    s->re->stats_rc = lgr_stats_json(s->re->r, s->re->customer_id,
                                     &s->re->stats_json, NULL, NULL);
  }
  if (s->mode == MODE_INGEST_ON_CALLER && s->re) {
    s->re->ingest_rc = lgr_ingest(s->re->r, s->re->auth, s->re->body,
                                  s->re->body_len, NULL, NULL);
  }

  snapshot snap;
  memset(&snap, 0, sizeof snap);
  if (res) snapshot_take(&snap, res);
  lgr_http_response_free(res); /* the callee owns it */

  pthread_mutex_lock(&g_mu);
  if (++s->calls == 1) {
    s->snap = snap;
    s->cb_thread = self;
    s->after_close = after_close;
  } else {
    snapshot_free(&snap);
  }
  s->null_response |= is_null;
  ++g_total_calls;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
}

static int slot_calls(slot *s) {
  pthread_mutex_lock(&g_mu);
  int n = s->calls;
  pthread_mutex_unlock(&g_mu);
  return n;
}

static void fail_timeout(const char *what) {
  fprintf(stderr, "FAILED: timed out after %d s waiting for %s\n",
          WAIT_SECONDS, what);
  printf("%d passed, %d failed (+1 timeout)\n",
         atomic_load(&g_checks) - atomic_load(&g_failures),
         atomic_load(&g_failures));
  fflush(stdout);
  fflush(stderr);
  _exit(1); /* a callback may still be pending: do not run destructors */
}

static struct timespec deadline(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  t.tv_sec += WAIT_SECONDS;
  return t;
}

/* Waits until every slot of `slots` has been called at least once. */
static void wait_slots(slot *slots, size_t n, const char *what) {
  const struct timespec until = deadline();
  pthread_mutex_lock(&g_mu);
  for (;;) {
    size_t done = 0;
    while (done < n && slots[done].calls > 0) ++done;
    if (done == n) break;
    if (pthread_cond_timedwait(&g_cv, &g_mu, &until) == ETIMEDOUT) {
      pthread_mutex_unlock(&g_mu);
      fail_timeout(what);
    }
  }
  pthread_mutex_unlock(&g_mu);
}

/* Waits until at least `total` callbacks have run in all. */
static void wait_total(long total, const char *what) {
  const struct timespec until = deadline();
  pthread_mutex_lock(&g_mu);
  while (g_total_calls < total) {
    if (pthread_cond_timedwait(&g_cv, &g_mu, &until) == ETIMEDOUT) {
      pthread_mutex_unlock(&g_mu);
      fail_timeout(what);
    }
  }
  pthread_mutex_unlock(&g_mu);
}

static void slot_free(slot *s) { snapshot_free(&s->snap); }

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
}

/* ---- Setup helpers -------------------------------------------------------- */

/* One integer of the fixture's `"key": value` form. */
static long long fixture_int(const char *body, const char *key) {
  char pattern[128];
  snprintf(pattern, sizeof pattern, "\"%s\": ", key);
  const char *p = strstr(body, pattern);
  if (!p) {
    fprintf(stderr, "fixture lacks %s\n", key);
    exit(2);
  }
  return strtoll(p + strlen(pattern), NULL, 10);
}

static lgr_receiver *open_receiver(const char *db_path) {
  lgr_options *o = lgr_options_create();
  CHECK(o != NULL);
  CHECK_EQ_INT(lgr_options_set_db_path(o, db_path, NULL), LGR_OK);
  CHECK_EQ_INT(lgr_options_set_fixed_time(o, FIXED_NOW, NULL), LGR_OK);
  lgr_receiver *r = NULL;
  lgr_error *err = NULL;
  lgr_status s = lgr_receiver_open(o, &r, &err);
  if (s != LGR_OK) {
    fprintf(stderr, "open failed: %s\n", err ? lgr_error_message(err) : "");
    lgr_error_free(err);
    exit(2);
  }
  lgr_options_free(o);
  return r;
}

typedef struct customer {
  char *id;
  char *token;
  char auth[128];
} customer;

static customer make_customer(lgr_receiver *r, const char *name) {
  customer c;
  memset(&c, 0, sizeof c);
  CHECK_EQ_INT(lgr_customer_create(r, name, NULL, &c.id, &c.token, NULL),
               LGR_OK);
  snprintf(c.auth, sizeof c.auth, "Bearer %s", c.token ? c.token : "");
  return c;
}

static void customer_free(customer *c) {
  lgr_string_free(c->id);
  lgr_string_free(c->token);
}

static long long g_iterations = 0; /* of the fixture */
static long long g_savings = 0;

/* The exact GET /v1/stats body for `events` copies of the fixture. */
static void expected_stats(char *out, size_t size, const char *customer_id,
                           long long events) {
  if (events == 0) {
    snprintf(out, size,
             "{\"customer_id\":\"%s\",\"window_days\":30,\"since\":%lld,"
             "\"outcomes\":[],\"totals\":{\"event_count\":0,"
             "\"total_iterations\":0,\"total_savings\":0,\"rollbacks\":0},"
             "\"workloads\":[]}",
             customer_id, SINCE);
    return;
  }
  snprintf(out, size,
           "{\"customer_id\":\"%s\",\"window_days\":30,\"since\":%lld,"
           "\"outcomes\":[{\"outcome\":\"converged\",\"count\":%lld}],"
           "\"totals\":{\"event_count\":%lld,\"total_iterations\":%lld,"
           "\"total_savings\":%lld,\"rollbacks\":0},"
           "\"workloads\":[{\"workload_id\":\"wl-converged\",\"count\":%lld}]}",
           customer_id, SINCE, events, events, events * g_iterations,
           events * g_savings, events);
}

/* GET /v1/stats through lgr_handle_request is exactly the body for
 * `events` stored copies of the fixture. */
static void check_stats(lgr_receiver *r, const customer *c, long long events,
                        int line) {
  char want[1024];
  expected_stats(want, sizeof want, c->id, events);
  lgr_http_request req = make_request("GET", "/v1/stats", c->auth, NULL, 0);
  snapshot got = sync_snapshot(r, &req, LGR_OK);
  check_body(&got, 200, want, line);
  snapshot_free(&got);
}

/* ---- Group 3 helper -------------------------------------------------------- */

/* A request answered on the calling thread before the call returns, with
 * the synchronous response. Returns the async snapshot (caller frees). */
static snapshot expect_inline(lgr_receiver *r, const lgr_http_request *req,
                              const char *what, int line) {
  snapshot want = sync_snapshot(r, req, LGR_OK);
  slot s;
  memset(&s, 0, sizeof s);
  s.issuer = pthread_self();
  lgr_status rc = lgr_handle_request_async(r, req, on_response, &s);
  count_issued(rc);
  int calls_at_return = slot_calls(&s);
  if (rc != LGR_OK || calls_at_return != 1) {
    fprintf(stderr, "line %d: %s: rc %s, %d calls at return\n", line, what,
            lgr_status_name(rc), calls_at_return);
  }
  CHECK_EQ_INT(rc, LGR_OK);
  CHECK_EQ_INT(calls_at_return, 1);
  if (rc == LGR_OK && calls_at_return == 0) wait_slots(&s, 1, what);
  pthread_mutex_lock(&g_mu);
  CHECK(pthread_equal(s.cb_thread, pthread_self()));
  CHECK_EQ_INT(s.null_response, 0);
  pthread_mutex_unlock(&g_mu);
  check_same_response(&s.snap, &want, what, line);
  snapshot got = s.snap;
  snapshot_free(&want);
  return got;
}

/* ---- Group 4: concurrent issuers ------------------------------------------ */

enum { ISSUERS = 8, PER_ISSUER = 50 };

typedef struct issuer_arg {
  lgr_receiver *r;
  const char *auth;
  const char *body;
  size_t body_len;
  slot *slots;
  size_t n;
  int stop_on_closed; /* group 6: keep issuing until the receiver closes */
  size_t issued;
} issuer_arg;

static void *issue_ingests(void *p) {
  issuer_arg *a = p;
  lgr_http_request req =
      make_request("POST", "/v1/aggregate", a->auth, a->body, a->body_len);
  for (size_t i = 0; i < a->n; ++i) {
    slot *s = &a->slots[i];
    s->issuer = pthread_self();
    s->rc = lgr_handle_request_async(a->r, &req, on_response, s);
    count_issued(s->rc);
    a->issued = i + 1;
    if (a->stop_on_closed && s->rc == LGR_ERR_CLOSED) break;
  }
  return NULL;
}

/* ---- The test ------------------------------------------------------------- */

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: capi_async_test FIXTURES_DIR\n");
    return 2;
  }
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&g_cv, &ca);
  pthread_condattr_destroy(&ca);

  char fixture_path[1024];
  snprintf(fixture_path, sizeof fixture_path, "%s/%s", argv[1], FIXTURE);
  size_t body_len = 0;
  char *body = read_file(fixture_path, &body_len);
  if (!body) {
    fprintf(stderr, "cannot read %s\n", fixture_path);
    return 2;
  }
  g_iterations = fixture_int(body, "iterations_used");
  g_savings = fixture_int(body, "savings_vs_fixed_cap");
  CHECK_EQ_INT(g_iterations, 5);
  CHECK_EQ_INT(g_savings, 5);

  char dir_template[] = "/tmp/lgr-capi-async-XXXXXX";
  char *dir = mkdtemp(dir_template);
  if (!dir) {
    perror("mkdtemp");
    return 2;
  }
  char db_path[512], db_close[512], db_race[512], db_free[512];
  snprintf(db_path, sizeof db_path, "%s/telemetry.db", dir);
  snprintf(db_close, sizeof db_close, "%s/close.db", dir);
  snprintf(db_race, sizeof db_race, "%s/race.db", dir);
  snprintf(db_free, sizeof db_free, "%s/free.db", dir);

  const pthread_t main_thread = pthread_self();
  lgr_receiver *r = open_receiver(db_path);
  customer a = make_customer(r, "Acme");
  customer b = make_customer(r, "Beta");
  customer c = make_customer(r, "Gamma");

  /* ---- 1. Argument errors: never called. ---------------------------------- */
  {
    slot never;
    memset(&never, 0, sizeof never);
    lgr_http_request ok = make_request("GET", "/health", NULL, NULL, 0);
    CHECK_EQ_INT(lgr_handle_request_async(NULL, &ok, on_response, &never),
                 LGR_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(lgr_handle_request_async(r, NULL, on_response, &never),
                 LGR_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(lgr_handle_request_async(r, &ok, NULL, &never),
                 LGR_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(lgr_handle_request_async(NULL, NULL, NULL, NULL),
                 LGR_ERR_INVALID_ARGUMENT);
    lgr_http_request v0 = ok;
    v0.version = 0;
    CHECK_EQ_INT(lgr_handle_request_async(r, &v0, on_response, &never),
                 LGR_ERR_INVALID_ARGUMENT);
    lgr_http_request v99 = ok;
    v99.version = 99;
    CHECK_EQ_INT(lgr_handle_request_async(r, &v99, on_response, &never),
                 LGR_ERR_INVALID_ARGUMENT);
    /* An ingest with an unknown version is refused the same way. */
    lgr_http_request v99_post =
        make_request("POST", "/v1/aggregate", a.auth, body, body_len);
    v99_post.version = 99;
    CHECK_EQ_INT(lgr_handle_request_async(r, &v99_post, on_response, &never),
                 LGR_ERR_INVALID_ARGUMENT);
    /* Requests lgr_handle_request() answers with no response at all
     * (LGR_ERR_INVALID_ARGUMENT, *out NULL): there is no "same response"
     * to call back with. */
    lgr_http_request no_method = ok;
    no_method.method = NULL;
    lgr_http_response *res = NULL;
    CHECK_EQ_INT(lgr_handle_request(r, &no_method, &res),
                 LGR_ERR_INVALID_ARGUMENT);
    CHECK(res == NULL);
    CHECK_EQ_INT(lgr_handle_request_async(r, &no_method, on_response, &never),
                 LGR_ERR_INVALID_ARGUMENT);
    lgr_http_request no_body =
        make_request("POST", "/v1/aggregate", a.auth, NULL, 10);
    CHECK_EQ_INT(lgr_handle_request(r, &no_body, &res),
                 LGR_ERR_INVALID_ARGUMENT);
    CHECK(res == NULL);
    CHECK_EQ_INT(lgr_handle_request_async(r, &no_body, on_response, &never),
                 LGR_ERR_INVALID_ARGUMENT);
    /* Nothing stored by any of them. */
    check_stats(r, &a, 0, __LINE__);
    CHECK_EQ_INT(slot_calls(&never), 0);
    /* "Never": still not called once other work has gone through the
     * writer (a later accepted ingest is committed after anything these
     * calls could have queued). */
    slot later;
    memset(&later, 0, sizeof later);
    lgr_http_request post =
        make_request("POST", "/v1/aggregate", b.auth, body, body_len);
    later.rc = lgr_handle_request_async(r, &post, on_response, &later);
    count_issued(later.rc);
    CHECK_EQ_INT(later.rc, LGR_OK);
    wait_slots(&later, 1, "group 1 sentinel ingest");
    CHECK_EQ_INT(slot_calls(&never), 0);
    slot_free(&later);
  }
  long long b_events = 1; /* the sentinel above */

  /* ---- 2. One accepted ingest. --------------------------------------------- */
  pthread_t writer_thread = main_thread;
  {
    lgr_http_request post =
        make_request("POST", "/v1/aggregate", a.auth, body, body_len);
    snapshot want = sync_snapshot(r, &post, LGR_OK);
    check_body(&want, 202, ACCEPTED_BODY, __LINE__);
    CHECK_EQ_STR(want.customer_id, a.id);

    reentry probe;
    memset(&probe, 0, sizeof probe);
    probe.r = r;
    probe.customer_id = a.id;
    slot s;
    memset(&s, 0, sizeof s);
    s.mode = MODE_PROBE_STATS;
    s.re = &probe;
    s.issuer = main_thread;
    s.rc = lgr_handle_request_async(r, &post, on_response, &s);
    count_issued(s.rc);
    CHECK_EQ_INT(s.rc, LGR_OK);
    wait_slots(&s, 1, "group 2 accepted ingest");
    pthread_mutex_lock(&g_mu);
    CHECK_EQ_INT(s.calls, 1);
    CHECK_EQ_INT(s.null_response, 0);
    CHECK(!pthread_equal(s.cb_thread, main_thread));
    writer_thread = s.cb_thread;
    pthread_mutex_unlock(&g_mu);
    check_same_response(&s.snap, &want, "accepted ingest", __LINE__);
    check_body(&s.snap, 202, ACCEPTED_BODY, __LINE__);
    /* The callback runs after the commit: its own read sees the event
     * (one from the synchronous call, one from this one). */
    long long seen = -1;
    CHECK_EQ_INT(probe.stats_rc, LGR_OK);
    CHECK(find_counter(probe.stats_json, "event_count", &seen) != NULL);
    CHECK_EQ_INT(seen, 2);
    lgr_string_free(probe.stats_json);
    /* Still exactly one call a little later. */
    sleep_ms(50);
    CHECK_EQ_INT(slot_calls(&s), 1);
    check_stats(r, &a, 2, __LINE__);
    snapshot_free(&want);
    slot_free(&s);
  }
  long long a_events = 2;

  /* ---- 3. Refused ingests and other routes: inline, on the caller. -------- */
  {
    snapshot got;
    lgr_http_request req =
        make_request("POST", "/v1/aggregate",
                     "Bearer lgk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", body,
                     body_len);
    got = expect_inline(r, &req, "bad token", __LINE__);
    check_body(&got, 401,
               "{\"error\":\"unauthorized\",\"path\":\"\",\"message\":"
               "\"a valid bearer token is required\"}",
               __LINE__);
    CHECK(strstr(got.headers, "WWW-Authenticate: Bearer\n") != NULL);
    snapshot_free(&got);

    req = make_request("POST", "/v1/aggregate", NULL, body, body_len);
    got = expect_inline(r, &req, "no token", __LINE__);
    CHECK_EQ_INT(got.status, 401);
    snapshot_free(&got);

    const char *broken = "{\"schema_version\": 4,";
    req = make_request("POST", "/v1/aggregate", a.auth, broken,
                       strlen(broken));
    got = expect_inline(r, &req, "invalid json", __LINE__);
    CHECK_EQ_INT(got.status, 400);
    const char *prefix = "{\"error\":\"invalid_json\",\"path\":\"\",\"message\":";
    CHECK(got.body && strncmp(got.body, prefix, strlen(prefix)) == 0);
    snapshot_free(&got);

    const char *leaky =
        "{\"schema_version\": 4, \"library\": \"loopgain\", "
        "\"prompt\": \"tell me everything\"}";
    req = make_request("POST", "/v1/aggregate", a.auth, leaky, strlen(leaky));
    got = expect_inline(r, &req, "privacy violation", __LINE__);
    CHECK(got.status == 400 || got.status == 422);
    snapshot_free(&got);

    req = make_request("POST", "/v1/aggregate", a.auth, body, body_len);
    req.origin = "https://evil.example";
    got = expect_inline(r, &req, "browser ingest", __LINE__);
    check_body(&got, 403,
               "{\"error\":\"browser_requests_not_allowed\",\"path\":\"\","
               "\"message\":\"the ingest route does not accept browser "
               "requests\"}",
               __LINE__);
    snapshot_free(&got);

    size_t big_len = 300 * 1024;
    char *big = malloc(big_len);
    CHECK(big != NULL);
    if (big) {
      memset(big, ' ', big_len);
      big[0] = '{';
      big[big_len - 1] = '}';
      req = make_request("POST", "/v1/aggregate", a.auth, big, big_len);
      got = expect_inline(r, &req, "too large", __LINE__);
      CHECK_EQ_INT(got.status, 413);
      snapshot_free(&got);
      free(big);
    }

    req = make_request("GET", "/v1/aggregate", a.auth, NULL, 0);
    got = expect_inline(r, &req, "wrong method", __LINE__);
    check_body(&got, 405,
               "{\"error\":\"method_not_allowed\",\"path\":\"\","
               "\"message\":\"this route accepts POST\"}",
               __LINE__);
    snapshot_free(&got);

    req = make_request("GET", "/health", NULL, NULL, 0);
    got = expect_inline(r, &req, "health", __LINE__);
    check_body(&got, 200,
               "{\"status\":\"ok\",\"service\":\"loopgain-receiver\","
               "\"version\":\"" LGR_VERSION_STRING
               "\",\"api\":\"v1\",\"payload_schema_versions\":[1,2,3,4]}",
               __LINE__);
    snapshot_free(&got);

    req = make_request("GET", "/v2/nothing", a.auth, NULL, 0);
    got = expect_inline(r, &req, "unknown route", __LINE__);
    check_body(&got, 404,
               "{\"error\":\"not_found\",\"path\":\"\",\"message\":"
               "\"no such route\"}",
               __LINE__);
    snapshot_free(&got);

    req = make_request("GET", "/v1/stats", a.auth, NULL, 0);
    got = expect_inline(r, &req, "stats", __LINE__);
    char want[1024];
    expected_stats(want, sizeof want, a.id, a_events);
    check_body(&got, 200, want, __LINE__);
    CHECK_EQ_STR(got.customer_id, a.id);
    snapshot_free(&got);

    req = make_request("GET", "/v1/stats", "Bearer nope", NULL, 0);
    got = expect_inline(r, &req, "stats without a valid token", __LINE__);
    CHECK_EQ_INT(got.status, 401);
    snapshot_free(&got);

    req = make_request("GET", "/v1/events", a.auth, NULL, 0);
    req.query = "rollbacks_only=yes";
    got = expect_inline(r, &req, "invalid query", __LINE__);
    check_body(&got, 400,
               "{\"error\":\"invalid_query\",\"path\":\"rollbacks_only\","
               "\"message\":\"must be true or false\"}",
               __LINE__);
    snapshot_free(&got);

    /* None of the refused ingests stored anything. */
    check_stats(r, &a, a_events, __LINE__);
  }

  /* ---- 4. Concurrent issuers. ----------------------------------------------- */
  {
    lgr_http_request post =
        make_request("POST", "/v1/aggregate", b.auth, body, body_len);
    snapshot want = sync_snapshot(r, &post, LGR_OK);
    ++b_events;
    check_body(&want, 202, ACCEPTED_BODY, __LINE__);

    slot *slots = calloc(ISSUERS * PER_ISSUER, sizeof *slots);
    if (!slots) return 2;
    pthread_t threads[ISSUERS];
    issuer_arg args[ISSUERS];
    for (int t = 0; t < ISSUERS; ++t) {
      args[t] = (issuer_arg){r, b.auth, body, body_len,
                             slots + (size_t)t * PER_ISSUER, PER_ISSUER, 0, 0};
      CHECK_EQ_INT(pthread_create(&threads[t], NULL, issue_ingests, &args[t]),
                   0);
    }
    for (int t = 0; t < ISSUERS; ++t) pthread_join(threads[t], NULL);
    wait_slots(slots, ISSUERS * PER_ISSUER, "group 4 concurrent ingests");
    sleep_ms(50); /* a second call would show up here */

    int rc_ok = 0, once = 0, accepted = 0, same_response = 0,
        on_writer = 0, not_on_issuer = 0;
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < ISSUERS * PER_ISSUER; ++i) {
      slot *s = &slots[i];
      rc_ok += s->rc == LGR_OK;
      once += s->calls == 1 && !s->null_response;
      accepted += s->snap.valid && s->snap.status == 202;
      same_response +=
          s->snap.valid && s->snap.body_len == want.body_len &&
          memcmp(s->snap.body, want.body, want.body_len) == 0 &&
          strcmp(s->snap.headers, want.headers) == 0 &&
          strcmp(s->snap.customer_id, want.customer_id) == 0;
      on_writer += pthread_equal(s->cb_thread, writer_thread) != 0;
      not_on_issuer += !pthread_equal(s->cb_thread, s->issuer);
    }
    pthread_mutex_unlock(&g_mu);
    CHECK_EQ_INT(rc_ok, ISSUERS * PER_ISSUER);
    CHECK_EQ_INT(once, ISSUERS * PER_ISSUER);
    CHECK_EQ_INT(accepted, ISSUERS * PER_ISSUER);
    CHECK_EQ_INT(same_response, ISSUERS * PER_ISSUER);
    /* "On the store's writer thread": one thread, the one of group 2. */
    CHECK_EQ_INT(on_writer, ISSUERS * PER_ISSUER);
    CHECK_EQ_INT(not_on_issuer, ISSUERS * PER_ISSUER);
    b_events += ISSUERS * PER_ISSUER;
    check_stats(r, &b, b_events, __LINE__);
    for (size_t i = 0; i < ISSUERS * PER_ISSUER; ++i) slot_free(&slots[i]);
    free(slots);
    snapshot_free(&want);
  }

  /* ---- 5. Re-entrancy. ------------------------------------------------------- */
  {
    slot outer, nested_ingest, nested_get;
    memset(&outer, 0, sizeof outer);
    memset(&nested_ingest, 0, sizeof nested_ingest);
    memset(&nested_get, 0, sizeof nested_get);
    reentry re;
    memset(&re, 0, sizeof re);
    re.r = r;
    re.customer_id = c.id;
    re.auth = c.auth;
    re.body = body;
    re.body_len = body_len;
    re.nested_ingest = &nested_ingest;
    re.nested_get = &nested_get;
    outer.mode = MODE_REENTER;
    outer.re = &re;
    outer.issuer = main_thread;

    lgr_http_request post =
        make_request("POST", "/v1/aggregate", c.auth, body, body_len);
    outer.rc = lgr_handle_request_async(r, &post, on_response, &outer);
    count_issued(outer.rc);
    CHECK_EQ_INT(outer.rc, LGR_OK);
    wait_slots(&outer, 1, "group 5 outer ingest (deadlock inside it?)");
    wait_slots(&nested_ingest, 1, "group 5 ingest issued from a callback");

    pthread_mutex_lock(&g_mu);
    CHECK(pthread_equal(outer.cb_thread, writer_thread));
    CHECK_EQ_INT(outer.calls, 1);
    CHECK_EQ_INT(nested_ingest.calls, 1);
    CHECK(pthread_equal(nested_ingest.cb_thread, writer_thread));
    CHECK_EQ_INT(nested_get.calls, 1);
    pthread_mutex_unlock(&g_mu);
    check_body(&outer.snap, 202, ACCEPTED_BODY, __LINE__);

    /* A read from the writer thread works and sees the committed event. */
    long long seen = -1;
    CHECK_EQ_INT(re.stats_rc, LGR_OK);
    CHECK(find_counter(re.stats_json, "event_count", &seen) != NULL);
    CHECK_EQ_INT(seen, 1);
    /* Calls that wait for a commit fail instead of waiting for themselves. */
    CHECK_EQ_INT(re.ingest_rc, LGR_ERR_INTERNAL);
    CHECK_EQ_INT(re.ingest_err_status, LGR_ERR_INTERNAL);
    CHECK_EQ_STR(re.ingest_err_code, "internal_error");
    CHECK_EQ_INT(re.ingest_result_null, 1);
    /* Through the route table the same refusal is a 500 to send. */
    CHECK_EQ_INT(re.handle_ingest_rc, LGR_OK);
    CHECK_EQ_INT(re.handle_ingest_out_null, 0);
    CHECK_EQ_INT(re.handle_ingest.status, 500);
    CHECK_EQ_STR(re.handle_ingest.body,
                 "{\"error\":\"internal_error\",\"path\":\"\",\"message\":"
                 "\"append: called from an append callback, on the thread it "
                 "would wait for\"}");
    CHECK_EQ_INT(re.customer_rc, LGR_ERR_INTERNAL);
    CHECK_EQ_INT(re.customer_out_null, 1);
    CHECK_EQ_INT(re.close_rc, LGR_ERR_INTERNAL);
    CHECK_EQ_STR(re.close_err_code, "internal_error");
    free(re.close_err_code);
    /* A synchronous GET works there, and equals the read. */
    CHECK_EQ_INT(re.handle_get_rc, LGR_OK);
    CHECK_EQ_INT(re.handle_get.status, 200);
    CHECK_EQ_STR(re.handle_get.body, re.stats_json);
    /* An async GET from there is answered inline, on that thread. */
    CHECK_EQ_INT(re.nested_get_rc, LGR_OK);
    CHECK_EQ_INT(re.nested_get_calls_at_return, 1);
    CHECK_EQ_INT(re.nested_get_same_thread, 1);
    CHECK_EQ_INT(nested_get.snap.status, 200);
    /* An async ingest from there is accepted and completes later. */
    CHECK_EQ_INT(re.nested_ingest_rc, LGR_OK);
    check_body(&nested_ingest.snap, 202, ACCEPTED_BODY, __LINE__);
    /* Exactly the outer and the nested ingest are stored. */
    check_stats(r, &c, 2, __LINE__);

    /* A callback that runs on the calling thread (a GET) is not on the
     * writer: a synchronous ingest works there. */
    reentry caller;
    memset(&caller, 0, sizeof caller);
    caller.r = r;
    caller.auth = c.auth;
    caller.body = body;
    caller.body_len = body_len;
    caller.ingest_rc = LGR_ERR_INTERNAL;
    slot get;
    memset(&get, 0, sizeof get);
    get.mode = MODE_INGEST_ON_CALLER;
    get.re = &caller;
    get.issuer = main_thread;
    lgr_http_request health = make_request("GET", "/health", NULL, NULL, 0);
    get.rc = lgr_handle_request_async(r, &health, on_response, &get);
    count_issued(get.rc);
    CHECK_EQ_INT(get.rc, LGR_OK);
    CHECK_EQ_INT(slot_calls(&get), 1);
    CHECK_EQ_INT(caller.ingest_rc, LGR_OK);
    check_stats(r, &c, 3, __LINE__);

    lgr_string_free(re.stats_json);
    free(re.ingest_err_code);
    snapshot_free(&re.handle_get);
    snapshot_free(&re.handle_ingest);
    slot_free(&outer);
    slot_free(&nested_ingest);
    slot_free(&nested_get);
    slot_free(&get);
  }

  /* Everything so far, once more after a clean close and reopen. */
  CHECK_EQ_INT(lgr_receiver_close(r, NULL), LGR_OK);
  lgr_receiver_free(r);
  r = open_receiver(db_path);
  check_stats(r, &a, a_events, __LINE__);
  check_stats(r, &b, b_events, __LINE__);
  check_stats(r, &c, 3, __LINE__);
  lgr_receiver_free(r);

  /* ---- 6. Close. ------------------------------------------------------------- */
  enum { QUEUED = 24 };
  {
    /* 6a: ingests still queued when close is called. */
    r = open_receiver(db_close);
    customer d = make_customer(r, "Delta");
    slot slots[QUEUED];
    memset(slots, 0, sizeof slots);
    issuer_arg queue = {r, d.auth, body, body_len, slots, QUEUED, 0, 0};
    issue_ingests(&queue); /* from this thread */
    CHECK_EQ_INT(lgr_receiver_close(r, NULL), LGR_OK);
    atomic_store(&g_close_returned, 1);
    int rc_ok = 0, called = 0, accepted = 0, before_close = 0;
    pthread_mutex_lock(&g_mu); /* no waiting: close already waited */
    for (int i = 0; i < QUEUED; ++i) {
      rc_ok += slots[i].rc == LGR_OK;
      called += slots[i].calls == 1;
      accepted += slots[i].snap.valid && slots[i].snap.status == 202;
      before_close += slots[i].calls == 1 && !slots[i].after_close;
    }
    pthread_mutex_unlock(&g_mu);
    CHECK_EQ_INT(rc_ok, QUEUED);
    CHECK_EQ_INT(called, QUEUED);
    CHECK_EQ_INT(before_close, QUEUED);
    /* close commits what it accepted. */
    CHECK_EQ_INT(accepted, QUEUED);
    if (called != QUEUED) wait_slots(slots, QUEUED, "group 6a after close");

    /* After close: LGR_ERR_CLOSED with the 503 already delivered. */
    lgr_http_request health = make_request("GET", "/health", NULL, NULL, 0);
    lgr_http_request post =
        make_request("POST", "/v1/aggregate", d.auth, body, body_len);
    lgr_http_request *after[2] = {&health, &post};
    for (int k = 0; k < 2; ++k) {
      snapshot want = sync_snapshot(r, after[k], LGR_ERR_CLOSED);
      slot s;
      memset(&s, 0, sizeof s);
      s.issuer = main_thread;
      s.rc = lgr_handle_request_async(r, after[k], on_response, &s);
      count_issued(s.rc);
      CHECK_EQ_INT(s.rc, LGR_ERR_CLOSED);
      CHECK_EQ_INT(slot_calls(&s), 1);
      if (slot_calls(&s) != 1) wait_slots(&s, 1, "503 after close");
      pthread_mutex_lock(&g_mu);
      CHECK(pthread_equal(s.cb_thread, main_thread));
      pthread_mutex_unlock(&g_mu);
      check_body(&s.snap, 503, CLOSED_BODY, __LINE__);
      CHECK_EQ_STR(s.snap.retry_after, "1");
      check_same_response(&s.snap, &want, "after close", __LINE__);
      snapshot_free(&want);
      slot_free(&s);
    }
    /* Argument errors stay argument errors after close: never called. */
    slot never;
    memset(&never, 0, sizeof never);
    lgr_http_request v0 = health;
    v0.version = 0;
    CHECK_EQ_INT(lgr_handle_request_async(r, &v0, on_response, &never),
                 LGR_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(lgr_handle_request_async(r, &health, NULL, &never),
                 LGR_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(slot_calls(&never), 0);
    lgr_receiver_free(r);
    atomic_store(&g_close_returned, 0);

    r = open_receiver(db_close);
    check_stats(r, &d, QUEUED, __LINE__);
    lgr_receiver_free(r);
    customer_free(&d);
    for (int i = 0; i < QUEUED; ++i) slot_free(&slots[i]);
  }
  {
    /* 6b: close racing a thread that keeps issuing ingests. Every call
     * that returned LGR_OK was answered before close returned; every call
     * refused as closed was answered 503 on its own thread. */
    enum { RACE_MAX = 2000 };
    r = open_receiver(db_race);
    customer e = make_customer(r, "Epsilon");
    slot *slots = calloc(RACE_MAX, sizeof *slots);
    if (!slots) return 2;
    issuer_arg arg = {r, e.auth, body, body_len, slots, RACE_MAX, 1, 0};
    long base;
    pthread_mutex_lock(&g_mu);
    base = g_total_calls;
    pthread_mutex_unlock(&g_mu);
    pthread_t t;
    CHECK_EQ_INT(pthread_create(&t, NULL, issue_ingests, &arg), 0);
    wait_total(base + 5, "group 6b first callbacks");
    CHECK_EQ_INT(lgr_receiver_close(r, NULL), LGR_OK);
    atomic_store(&g_close_returned, 1);
    pthread_join(t, NULL);
    wait_slots(slots, arg.issued, "group 6b callbacks");
    /* A call already past its own closed check when close begins is
     * refused by the route itself: LGR_OK with the 503 `closed` answered
     * inline on the calling thread, exactly as lgr_handle_request() answers
     * in the same race. Anything else returning LGR_OK must be a 202
     * delivered on the writer thread before close returned. */
    int accepted = 0, in_flight = 0, ok_bad = 0, closed = 0, closed_bad = 0,
        other = 0, once = 0;
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < arg.issued; ++i) {
      slot *s = &slots[i];
      once += s->calls == 1;
      const int inline_503 =
          s->snap.valid && s->snap.status == 503 &&
          strncmp(s->snap.body, CLOSED_PREFIX, strlen(CLOSED_PREFIX)) == 0 &&
          s->snap.retry_after != NULL &&
          pthread_equal(s->cb_thread, s->issuer);
      if (s->rc == LGR_OK && s->snap.valid && s->snap.status == 202 &&
          !s->after_close && !pthread_equal(s->cb_thread, s->issuer)) {
        ++accepted;
      } else if (s->rc == LGR_OK && inline_503) {
        ++in_flight;
      } else if (s->rc == LGR_OK) {
        ++ok_bad;
        fprintf(stderr,
                "  race slot %zu: LGR_OK, answered %s close returned, on "
                "the %s thread: %d %s\n",
                i, s->after_close ? "after" : "before",
                pthread_equal(s->cb_thread, s->issuer) ? "calling" : "other",
                s->snap.status, s->snap.valid ? s->snap.body : "(none)");
      } else if (s->rc == LGR_ERR_CLOSED) {
        ++closed;
        closed_bad += !inline_503;
      } else {
        ++other;
      }
    }
    pthread_mutex_unlock(&g_mu);
    CHECK_EQ_INT(once, arg.issued);
    CHECK_EQ_INT(ok_bad, 0);
    CHECK_EQ_INT(closed_bad, 0);
    CHECK_EQ_INT(other, 0);
    CHECK(accepted >= 5);
    /* The issuer stops at its first LGR_ERR_CLOSED (unless it ran out of
     * slots before close began). */
    if (arg.issued < RACE_MAX) CHECK_EQ_INT(closed, 1);
    printf("close race: %d accepted, %d refused in flight, %d refused as "
           "closed\n",
           accepted, in_flight, closed);
    lgr_receiver_free(r);
    atomic_store(&g_close_returned, 0);
    r = open_receiver(db_race);
    /* Exactly the acknowledged events are stored. */
    check_stats(r, &e, accepted, __LINE__);
    lgr_receiver_free(r);
    customer_free(&e);
    for (size_t i = 0; i < arg.issued; ++i) slot_free(&slots[i]);
    free(slots);
  }
  {
    /* 6c: lgr_receiver_free closes too: every callback has returned when
     * it returns. */
    r = open_receiver(db_free);
    customer f = make_customer(r, "Zeta");
    slot slots[QUEUED];
    memset(slots, 0, sizeof slots);
    issuer_arg queue = {r, f.auth, body, body_len, slots, QUEUED, 0, 0};
    issue_ingests(&queue); /* from this thread */
    lgr_receiver_free(r);
    atomic_store(&g_close_returned, 1);
    int called = 0, accepted = 0;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < QUEUED; ++i) {
      called += slots[i].calls == 1 && !slots[i].after_close;
      accepted += slots[i].rc == LGR_OK && slots[i].snap.valid &&
                  slots[i].snap.status == 202;
    }
    pthread_mutex_unlock(&g_mu);
    CHECK_EQ_INT(called, QUEUED);
    CHECK_EQ_INT(accepted, QUEUED);
    if (called != QUEUED) wait_slots(slots, QUEUED, "group 6c after free");
    atomic_store(&g_close_returned, 0);
    r = open_receiver(db_free);
    check_stats(r, &f, QUEUED, __LINE__);
    lgr_receiver_free(r);
    customer_free(&f);
    for (int i = 0; i < QUEUED; ++i) slot_free(&slots[i]);
  }

  /* Every call that promised a callback got exactly one, and no other
   * callback ever ran (group 1's calls included). */
  pthread_mutex_lock(&g_mu);
  CHECK_EQ_INT(g_total_calls, atomic_load(&g_expected_calls));
  pthread_mutex_unlock(&g_mu);

  customer_free(&a);
  customer_free(&b);
  customer_free(&c);
  free(body);
  char cleanup[600];
  snprintf(cleanup, sizeof cleanup, "rm -rf '%s'", dir);
  if (system(cleanup) != 0) fprintf(stderr, "could not remove %s\n", dir);
  pthread_cond_destroy(&g_cv);

  return checks_exit_code();
}
