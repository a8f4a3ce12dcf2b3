/*
 * The whole C API driven from C11, the way a C host uses it.
 *
 * Usage: capi_test FIXTURES_DIR
 *
 * Ingests every recorded client payload, reads the aggregates back and
 * compares them with numbers computed here from the fixture files
 * themselves; then runs the same through lgr_handle_request() with exact
 * statuses and bodies, and walks the error paths. Runs under valgrind as a
 * separate ctest entry to prove that every returned object is freed.
 */
#define _POSIX_C_SOURCE 200809L

#include <loopgain/receiver.h>

#include "test_checks.h"
#include "test_file.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define FIXED_NOW 1796083200LL

/* ---- Fixtures ---------------------------------------------------------- */

#define MAX_FIXTURES 128

typedef struct fixture {
  char name[256];
  char *body;
  size_t len;
} fixture;

static fixture g_fixtures[MAX_FIXTURES];
static size_t g_fixture_count = 0;

static int compare_fixtures(const void *a, const void *b) {
  return strcmp(((const fixture *)a)->name, ((const fixture *)b)->name);
}

static void load_fixtures(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "cannot open fixtures dir %s\n", dir);
    exit(2);
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL && g_fixture_count < MAX_FIXTURES) {
    size_t n = strlen(e->d_name);
    if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0) continue;
    if (strcmp(e->d_name, "manifest.json") == 0) continue;
    fixture *fx = &g_fixtures[g_fixture_count++];
    snprintf(fx->name, sizeof fx->name, "%s", e->d_name);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    fx->body = read_file(path, &fx->len);
    if (!fx->body) {
      fprintf(stderr, "cannot read %s\n", path);
      exit(2);
    }
  }
  closedir(d);
  qsort(g_fixtures, g_fixture_count, sizeof g_fixtures[0],
        compare_fixtures);
}

/* The recorded bodies are Python json.dumps output: `"key": value`. These
 * helpers read one scalar of that exact form. */
static long long fixture_int(const char *body, const char *key, int *is_null) {
  char pattern[128];
  snprintf(pattern, sizeof pattern, "\"%s\": ", key);
  const char *p = strstr(body, pattern);
  if (!p) {
    fprintf(stderr, "fixture lacks %s\n", key);
    exit(2);
  }
  p += strlen(pattern);
  if (is_null) *is_null = strncmp(p, "null", 4) == 0;
  return strtoll(p, NULL, 10);
}

static int fixture_has(const char *body, const char *text) {
  return strstr(body, text) != NULL;
}

/* Occurrences of `needle` in `hay`. */
static int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) {
    ++n;
  }
  return n;
}

/* ---- Helpers ------------------------------------------------------------- */

static lgr_receiver *open_receiver(const char *db_path) {
  lgr_options *o = lgr_options_create();
  CHECK(o != NULL);
  CHECK_EQ_INT(lgr_options_set_db_path(o, db_path, NULL), LGR_OK);
  CHECK_EQ_INT(lgr_options_set_fixed_time(o, FIXED_NOW, NULL), LGR_OK);
  CHECK_EQ_INT(lgr_options_add_cors_origin(o, "https://dash.example", NULL),
               LGR_OK);
  lgr_receiver *r = NULL;
  lgr_error *err = NULL;
  lgr_status s = lgr_receiver_open(o, &r, &err);
  if (s != LGR_OK) {
    fprintf(stderr, "open failed: %s\n", err ? lgr_error_message(err) : "");
  }
  CHECK_EQ_INT(s, LGR_OK);
  CHECK(err == NULL);
  lgr_options_free(o);
  return r;
}

/* Response of one request through lgr_handle_request; the caller frees. */
static lgr_http_response *request(lgr_receiver *r, const char *method,
                                  const char *path, const char *query,
                                  const char *authorization,
                                  const char *origin, const char *body) {
  lgr_http_request req;
  lgr_http_request_init(&req);
  req.method = method;
  req.path = path;
  req.query = query;
  req.authorization = authorization;
  req.origin = origin;
  req.body = body;
  req.body_len = body ? strlen(body) : 0;
  lgr_http_response *res = NULL;
  lgr_status s = lgr_handle_request(r, &req, &res);
  CHECK(s == LGR_OK || s == LGR_ERR_CLOSED);
  CHECK(res != NULL);
  return res;
}

static const char *header_of(const lgr_http_response *res, const char *name) {
  size_t n = lgr_http_response_header_count(res);
  for (size_t i = 0; i < n; ++i) {
    const char *k = NULL, *v = NULL;
    if (lgr_http_response_header(res, i, &k, &v) == LGR_OK &&
        strcmp(k, name) == 0) {
      return v;
    }
  }
  return NULL;
}

/* Checks status and exact body, then frees the response. */
static void expect_response(lgr_http_response *res, int status,
                            const char *body, int line) {
  size_t len = 0;
  const char *got = lgr_http_response_body(res, &len);
  if (lgr_http_response_status(res) != status || strlen(body) != len ||
      memcmp(got, body, len) != 0) {
    ++g_failures;
    fprintf(stderr, "line %d: expected %d %s\n         got %d %.*s\n", line,
            status, body, lgr_http_response_status(res), (int)len, got);
  }
  ++g_checks;
  lgr_http_response_free(res);
}

/* ---- The test ------------------------------------------------------------- */

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: capi_test FIXTURES_DIR\n");
    return 2;
  }
  load_fixtures(argv[1]);
  CHECK_EQ_INT(g_fixture_count, 54);

  char dir_template[] = "/tmp/lgr-capi-XXXXXX";
  char *dir = mkdtemp(dir_template);
  CHECK(dir != NULL);
  char db_path[512];
  snprintf(db_path, sizeof db_path, "%s/telemetry.db", dir);

  /* Versions. */
  CHECK_EQ_STR(lgr_version(), LGR_VERSION_STRING);
  CHECK_EQ_INT(lgr_version_number(), LGR_VERSION_NUMBER);
  CHECK_EQ_STR(lgr_status_name(LGR_ERR_STORAGE), "LGR_ERR_STORAGE");
  CHECK_EQ_STR(lgr_status_name((lgr_status)999), "LGR_ERR_UNKNOWN");

  /* Caller mistakes give codes, never crashes. */
  lgr_error *err = NULL;
  CHECK_EQ_INT(lgr_receiver_open(NULL, NULL, &err), LGR_ERR_INVALID_ARGUMENT);
  CHECK_EQ_STR(lgr_error_code_name(err), "invalid_argument");
  lgr_error_free(err);
  char *json = NULL;
  CHECK_EQ_INT(lgr_stats_json(NULL, "cust_x", &json, NULL, NULL),
               LGR_ERR_INVALID_ARGUMENT);
  CHECK(json == NULL);
  CHECK_EQ_INT(lgr_handle_request(NULL, NULL, NULL),
               LGR_ERR_INVALID_ARGUMENT);
  lgr_options *bad = lgr_options_create();
  CHECK_EQ_INT(lgr_options_set_privacy_policy_name(bad, "everything", NULL),
               LGR_ERR_INVALID_ARGUMENT);
  CHECK_EQ_INT(lgr_options_set_max_body_bytes(bad, 0, NULL),
               LGR_ERR_INVALID_ARGUMENT);
  lgr_options_free(bad);
  lgr_options_free(NULL);
  lgr_error_free(NULL);
  lgr_string_free(NULL);
  lgr_receiver_free(NULL);

  lgr_receiver *r = open_receiver(db_path);

  /* Two customers. */
  char *cust_a = NULL, *token_a = NULL, *cust_b = NULL, *token_b = NULL;
  CHECK_EQ_INT(lgr_customer_create(r, "Acme", "ops@acme.example", &cust_a,
                                   &token_a, NULL),
               LGR_OK);
  CHECK_EQ_INT(lgr_customer_create(r, "Beta", NULL, &cust_b, &token_b, NULL),
               LGR_OK);
  char long_name[202];
  memset(long_name, 'n', 201);
  long_name[201] = '\0';
  char *no_id = NULL, *no_token = NULL;
  CHECK_EQ_INT(lgr_customer_create(r, long_name, NULL, &no_id, &no_token,
                                   &err),
               LGR_ERR_INVALID_ARGUMENT);
  CHECK_EQ_STR(lgr_error_code_name(err), "invalid_argument");
  lgr_error_free(err);
  CHECK_EQ_INT(lgr_customer_create(r, "", NULL, &no_id, &no_token, NULL),
               LGR_ERR_INVALID_ARGUMENT);
  CHECK(no_id == NULL && no_token == NULL);
  CHECK_EQ_INT(strlen(cust_a), 5 + 16);
  CHECK(strncmp(cust_a, "cust_", 5) == 0);
  CHECK_EQ_INT(strlen(token_a), 4 + 32);
  CHECK(strncmp(token_a, "lgk_", 4) == 0);
  char auth_a[128], auth_b[128];
  snprintf(auth_a, sizeof auth_a, "Bearer %s", token_a);
  snprintf(auth_b, sizeof auth_b, "bearer %s", token_b);

  char *who = NULL;
  CHECK_EQ_INT(lgr_authenticate(r, auth_a, &who, NULL), LGR_OK);
  CHECK_EQ_STR(who, cust_a);
  lgr_string_free(who);
  CHECK_EQ_INT(lgr_authenticate(r, auth_b, &who, NULL), LGR_OK);
  CHECK_EQ_STR(who, cust_b);
  lgr_string_free(who);
  CHECK_EQ_INT(lgr_authenticate(r, "Bearer lgk_nope", &who, &err),
               LGR_ERR_UNAUTHORIZED);
  CHECK(who == NULL);
  CHECK_EQ_INT(lgr_error_http_status(err), 401);
  lgr_error_free(err);

  /* Ingest every fixture for customer A, tallying what they imply. */
  long long iterations = 0, savings = 0, rollbacks = 0;
  int converged = 0, with_per_iteration = 0, workload_converged = 0;
  for (size_t i = 0; i < g_fixture_count; ++i) {
    const fixture *fx = &g_fixtures[i];
    int null_savings = 0;
    iterations += fixture_int(fx->body, "iterations_used", NULL);
    long long s = fixture_int(fx->body, "savings_vs_fixed_cap", &null_savings);
    if (!null_savings) savings += s;
    if (fixture_has(fx->body, "\"rollback_triggered\": true")) ++rollbacks;
    if (fixture_has(fx->body, "\"outcome\": \"converged\"")) ++converged;
    if (fixture_has(fx->body, "\"workload_id\": \"wl-converged\"")) {
      ++workload_converged;
    }
    const int has_pi = fixture_has(fx->body, "\"per_iteration\": {");
    with_per_iteration += has_pi;

    lgr_ingest_result *res = NULL;
    lgr_status st = lgr_ingest(r, auth_a, fx->body, fx->len, &res, &err);
    if (st != LGR_OK) {
      fprintf(stderr, "%s: %s %s %s\n", fx->name, lgr_status_name(st),
              lgr_error_pointer(err), lgr_error_message(err));
      lgr_error_free(err);
      err = NULL;
    }
    CHECK_EQ_INT(st, LGR_OK);
    CHECK_EQ_STR(lgr_ingest_result_customer_id(res), cust_a);
    CHECK_EQ_INT(lgr_ingest_result_redacted_count(res), has_pi ? 1 : 0);
    if (has_pi) {
      CHECK_EQ_STR(lgr_ingest_result_redacted(res, 0), "/per_iteration");
    }
    CHECK(lgr_ingest_result_redacted(res, 5) == NULL);
    lgr_ingest_result_free(res);
  }
  CHECK_EQ_INT(with_per_iteration, 36);

  /* Stats for A match the fixtures; B sees nothing of A's. */
  size_t len = 0;
  CHECK_EQ_INT(lgr_stats_json(r, cust_a, &json, &len, NULL), LGR_OK);
  CHECK_EQ_INT(strlen(json), len);
  char expected[512];
  snprintf(expected, sizeof expected,
           "\"totals\":{\"event_count\":%zu,\"total_iterations\":%lld,"
           "\"total_savings\":%lld,\"rollbacks\":%lld}",
           g_fixture_count, iterations, savings, rollbacks);
  CHECK(strstr(json, expected) != NULL);
  snprintf(expected, sizeof expected,
           "{\"outcome\":\"converged\",\"count\":%d}", converged);
  CHECK(strstr(json, expected) != NULL);
  snprintf(expected, sizeof expected,
           "\"customer_id\":\"%s\",\"window_days\":30,\"since\":%lld", cust_a,
           FIXED_NOW - 30LL * 86400);
  CHECK(strstr(json, expected) != NULL);
  lgr_string_free(json);

  CHECK_EQ_INT(lgr_stats_json(r, cust_b, &json, NULL, NULL), LGR_OK);
  snprintf(expected, sizeof expected,
           "{\"customer_id\":\"%s\",\"window_days\":30,\"since\":%lld,"
           "\"outcomes\":[],\"totals\":{\"event_count\":0,"
           "\"total_iterations\":0,\"total_savings\":0,\"rollbacks\":0},"
           "\"workloads\":[]}",
           cust_b, FIXED_NOW - 30LL * 86400);
  CHECK_EQ_STR(json, expected);
  lgr_string_free(json);

  /* Events: all 54 (under the 500 cap); the rollback filter. */
  CHECK_EQ_INT(lgr_events_json(r, cust_a, 0, &json, NULL, NULL), LGR_OK);
  CHECK_EQ_INT(count_of(json, "\"timestamp_hour\":1796047200"), 54);
  lgr_string_free(json);
  CHECK_EQ_INT(lgr_events_json(r, cust_a, 1, &json, NULL, NULL), LGR_OK);
  CHECK_EQ_INT(count_of(json, "\"timestamp_hour\":"), rollbacks);
  lgr_string_free(json);

  /* Profiles: the workload filter and the since_hours edge (the fixtures
   * lie exactly 10 hours before the fixed clock). */
  CHECK_EQ_INT(
      lgr_profiles_json(r, cust_a, "wl-converged", 0, &json, NULL, NULL),
      LGR_OK);
  CHECK_EQ_INT(count_of(json, "\"timestamp_hour\":"), workload_converged);
  CHECK(strstr(json, "\"workload_id\":\"wl-converged\",\"events\":[") !=
        NULL);
  lgr_string_free(json);
  CHECK_EQ_INT(lgr_profiles_json(r, cust_a, NULL, 10, &json, NULL, NULL),
               LGR_OK);
  CHECK_EQ_INT(count_of(json, "\"timestamp_hour\":"), 54);
  lgr_string_free(json);
  CHECK_EQ_INT(lgr_profiles_json(r, cust_a, NULL, 9, &json, NULL, NULL),
               LGR_OK);
  CHECK_EQ_INT(count_of(json, "\"timestamp_hour\":"), 0);
  lgr_string_free(json);
  CHECK_EQ_INT(lgr_profiles_json(r, cust_a, NULL, 8761, &json, NULL, &err),
               LGR_ERR_INVALID_QUERY);
  CHECK_EQ_STR(lgr_error_pointer(err), "since_hours");
  CHECK_EQ_INT(lgr_error_http_status(err), 400);
  lgr_error_free(err);

  /* Payload errors carry code, pointer and HTTP status. */
  const char *broken = "{\"schema_version\": 4,";
  CHECK_EQ_INT(lgr_ingest(r, auth_a, broken, strlen(broken), NULL, &err),
               LGR_ERR_INVALID_PAYLOAD);
  CHECK_EQ_STR(lgr_error_code_name(err), "invalid_json");
  CHECK_EQ_INT(lgr_error_http_status(err), 400);
  lgr_error_free(err);
  CHECK_EQ_INT(lgr_ingest(r, "Bearer wrong", g_fixtures[0].body,
                          g_fixtures[0].len, NULL, &err),
               LGR_ERR_UNAUTHORIZED);
  CHECK_EQ_STR(lgr_error_code_name(err), "unauthorized");
  lgr_error_free(err);
  CHECK_EQ_INT(lgr_stats_json(r, "cust_\xff", &json, NULL, &err),
               LGR_ERR_INVALID_ARGUMENT);
  lgr_error_free(err);
  CHECK_EQ_INT(lgr_ingest(r, auth_a, NULL, 5, NULL, NULL),
               LGR_ERR_INVALID_ARGUMENT);

  /* The same through the HTTP-shaped handler. */
  lgr_http_response *res;
  res = request(r, "POST", "/v1/aggregate", NULL, auth_a, NULL,
                g_fixtures[g_fixture_count - 1].body);
  CHECK_EQ_STR(header_of(res, "X-Content-Type-Options"), "nosniff");
  CHECK_EQ_STR(lgr_http_response_customer_id(res), cust_a);
  CHECK_EQ_STR(lgr_http_response_content_type(res), "application/json");
  expect_response(res, 202, "{\"status\":\"ok\",\"redacted\":[\"/per_iteration\"]}",
                  __LINE__);
  res = request(r, "POST", "/v1/aggregate", NULL, auth_a, NULL,
                g_fixtures[0].body);
  expect_response(res, 202, "{\"status\":\"ok\"}", __LINE__);
  res = request(r, "POST", "/v1/aggregate", NULL, NULL, NULL,
                g_fixtures[0].body);
  CHECK_EQ_STR(header_of(res, "WWW-Authenticate"), "Bearer");
  expect_response(res, 401,
                  "{\"error\":\"unauthorized\",\"path\":\"\",\"message\":"
                  "\"a valid bearer token is required\"}",
                  __LINE__);
  res = request(r, "POST", "/v1/aggregate", NULL, auth_a,
                "https://evil.example", g_fixtures[0].body);
  expect_response(res, 403,
                  "{\"error\":\"browser_requests_not_allowed\",\"path\":\"\","
                  "\"message\":\"the ingest route does not accept browser "
                  "requests\"}",
                  __LINE__);
  res = request(r, "GET", "/v1/aggregate", NULL, auth_a, NULL, NULL);
  CHECK_EQ_STR(header_of(res, "Allow"), "POST");
  expect_response(res, 405,
                  "{\"error\":\"method_not_allowed\",\"path\":\"\","
                  "\"message\":\"this route accepts POST\"}",
                  __LINE__);
  res = request(r, "GET", "/v2/nothing", NULL, auth_a, NULL, NULL);
  expect_response(res, 404,
                  "{\"error\":\"not_found\",\"path\":\"\",\"message\":"
                  "\"no such route\"}",
                  __LINE__);
  res = request(r, "GET", "/v1/events", "rollbacks_only=yes", auth_a, NULL,
                NULL);
  expect_response(res, 400,
                  "{\"error\":\"invalid_query\",\"path\":\"rollbacks_only\","
                  "\"message\":\"must be true or false\"}",
                  __LINE__);
  res = request(r, "GET", "/health", NULL, NULL, NULL, NULL);
  expect_response(res, 200,
                  "{\"status\":\"ok\",\"service\":\"loopgain-receiver\","
                  "\"version\":\"" LGR_VERSION_STRING
                  "\",\"api\":\"v1\",\"payload_schema_versions\":[1,2,3,4]}",
                  __LINE__);

  /* GET /v1/stats answers exactly what lgr_stats_json gives, with CORS
   * for the allowed origin only. */
  CHECK_EQ_INT(lgr_stats_json(r, cust_a, &json, NULL, NULL), LGR_OK);
  res = request(r, "GET", "/v1/stats", NULL, auth_a, "https://dash.example",
                NULL);
  CHECK_EQ_STR(header_of(res, "Access-Control-Allow-Origin"),
               "https://dash.example");
  expect_response(res, 200, json, __LINE__);
  lgr_string_free(json);
  res = request(r, "GET", "/v1/stats", NULL, auth_a, "https://other.example",
                NULL);
  CHECK(header_of(res, "Access-Control-Allow-Origin") == NULL);
  lgr_http_response_free(res);

  /* Rotation: the old token stops at once, the new one works. */
  char *token_a2 = NULL;
  CHECK_EQ_INT(lgr_token_rotate(r, cust_a, 0, &token_a2, NULL), LGR_OK);
  CHECK_EQ_INT(lgr_authenticate(r, auth_a, &who, NULL), LGR_ERR_UNAUTHORIZED);
  char auth_a2[128];
  snprintf(auth_a2, sizeof auth_a2, "Bearer %s", token_a2);
  CHECK_EQ_INT(lgr_authenticate(r, auth_a2, &who, NULL), LGR_OK);
  lgr_string_free(who);
  CHECK_EQ_INT(lgr_token_rotate(r, "cust_0000000000000000", 0, &no_token,
                                &err),
               LGR_ERR_NOT_FOUND);
  CHECK(no_token == NULL);
  lgr_error_free(err);

  /* Listing, revocation and deletion. */
  CHECK_EQ_INT(lgr_customers_list_json(r, &json, NULL, NULL), LGR_OK);
  CHECK_EQ_INT(count_of(json, "\"customer_id\":"), 2);
  CHECK(strstr(json, "\"name\":\"Acme\",\"email\":\"ops@acme.example\"") !=
        NULL);
  lgr_string_free(json);
  /* An ingest has seen cust_b's token just before the revocation; the next
     one is refused all the same. */
  CHECK_EQ_INT(lgr_ingest(r, auth_b, g_fixtures[0].body, g_fixtures[0].len,
                          NULL, NULL),
               LGR_OK);
  CHECK_EQ_INT(lgr_customer_revoke(r, cust_b, NULL), LGR_OK);
  CHECK_EQ_INT(lgr_authenticate(r, auth_b, &who, NULL), LGR_ERR_UNAUTHORIZED);
  CHECK_EQ_INT(lgr_ingest(r, auth_b, g_fixtures[0].body, g_fixtures[0].len,
                          NULL, NULL),
               LGR_ERR_UNAUTHORIZED);
  CHECK_EQ_INT(lgr_customer_delete(r, cust_b, NULL), LGR_OK);
  CHECK_EQ_INT(lgr_customer_delete(r, cust_b, &err), LGR_ERR_NOT_FOUND);
  lgr_error_free(err);

  /* After close: codes, and a 503 a host can still send. */
  CHECK_EQ_INT(lgr_receiver_close(r, NULL), LGR_OK);
  CHECK_EQ_INT(lgr_receiver_close(r, NULL), LGR_OK);
  CHECK_EQ_INT(lgr_stats_json(r, cust_a, &json, NULL, &err), LGR_ERR_CLOSED);
  CHECK_EQ_STR(lgr_error_code_name(err), "closed");
  lgr_error_free(err);
  lgr_http_request req;
  lgr_http_request_init(&req);
  req.method = "GET";
  req.path = "/health";
  lgr_http_response *closed = NULL;
  CHECK_EQ_INT(lgr_handle_request(r, &req, &closed), LGR_ERR_CLOSED);
  CHECK_EQ_INT(lgr_http_response_status(closed), 503);
  CHECK_EQ_STR(header_of(closed, "Retry-After"), "1");
  lgr_http_response_free(closed);
  lgr_receiver_free(r);

  /* Everything acknowledged is there after reopening. */
  r = open_receiver(db_path);
  CHECK_EQ_INT(lgr_stats_json(r, cust_a, &json, NULL, NULL), LGR_OK);
  snprintf(expected, sizeof expected, "\"event_count\":%zu",
           g_fixture_count + 2);
  CHECK(strstr(json, expected) != NULL);
  lgr_string_free(json);
  lgr_receiver_free(r);

  lgr_string_free(cust_a);
  lgr_string_free(token_a);
  lgr_string_free(cust_b);
  lgr_string_free(token_b);
  lgr_string_free(token_a2);
  for (size_t i = 0; i < g_fixture_count; ++i) free(g_fixtures[i].body);
  char cleanup[600];
  snprintf(cleanup, sizeof cleanup, "rm -rf '%s'", dir);
  if (system(cleanup) != 0) fprintf(stderr, "could not remove %s\n", dir);

  return checks_exit_code();
}
