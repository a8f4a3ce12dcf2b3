// The route table: statuses, bodies and headers for every route and error,
// and the small parsers under it (bearer tokens, query strings, UTF-8).
#include "receiver_fixture.hpp"

#include <doctest/doctest.h>

#include <optional>

namespace lgr::test {

namespace {

std::optional<std::string> header(const HttpResponse& r,
                                  std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

HttpResponse post(ReceiverFixture& f, std::optional<std::string> auth,
                  const std::string& body,
                  std::optional<std::string> origin = std::nullopt,
                  std::optional<std::string> content_type = std::nullopt,
                  std::optional<std::string> content_length = std::nullopt) {
  HttpRequest req;
  req.method = "POST";
  req.path = "/v1/aggregate";
  req.body = body;
  if (auth) req.authorization = *auth;
  if (origin) req.origin = *origin;
  if (content_type) req.content_type = *content_type;
  if (content_length) req.content_length = *content_length;
  return handle_http(f.receiver(), req);
}

}  // namespace

TEST_CASE("bearer_token accepts any case of the scheme and trims") {
  CHECK(bearer_token("Bearer abc") == "abc");
  CHECK(bearer_token("bearer abc") == "abc");
  CHECK(bearer_token("BEARER \t abc  ") == "abc");
  CHECK(bearer_token("Bearerabc") == "");
  CHECK(bearer_token("Basic abc") == "");
  CHECK(bearer_token("Bearer") == "");
  CHECK(bearer_token("") == "");
}

TEST_CASE("is_valid_utf8 refuses malformed sequences") {
  CHECK(is_valid_utf8("plain"));
  CHECK(is_valid_utf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
  CHECK_FALSE(is_valid_utf8("\xff"));
  CHECK_FALSE(is_valid_utf8("\xc3"));          // truncated
  CHECK_FALSE(is_valid_utf8("\xc0\xaf"));      // overlong
  CHECK_FALSE(is_valid_utf8("\xe0\x80\xaf"));  // overlong, three bytes
  CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));  // surrogate
  CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // beyond U+10FFFF
  CHECK(utf8_length("\xc3\xa9t\xc3\xa9") == 3);
}

TEST_CASE("is_browser_origin accepts only what browsers send") {
  CHECK(is_browser_origin("https://dash.example"));
  CHECK(is_browser_origin("http://localhost:5173"));
  CHECK(is_browser_origin("http://[::1]:8080"));
  CHECK(is_browser_origin("https://a.example:65535"));
  CHECK_FALSE(is_browser_origin("https://a.example/"));
  CHECK_FALSE(is_browser_origin("https://a.example:99999"));
  CHECK_FALSE(is_browser_origin("https://a.example:0"));
  CHECK_FALSE(is_browser_origin("https://a.example:"));
  CHECK_FALSE(is_browser_origin("https://"));
  CHECK_FALSE(is_browser_origin("*"));
  CHECK_FALSE(is_browser_origin("nope"));
  CHECK_FALSE(is_browser_origin("ftp://a.example"));
  CHECK_FALSE(is_browser_origin("https://user@a.example"));
  CHECK_FALSE(is_browser_origin("https://a b.example"));
}

TEST_CASE("parse_query decodes and names malformed parameters") {
  auto q = parse_query("workload_id=a%20b+c&&since_hours=5&flag");
  REQUIRE(q.has_value());
  REQUIRE(q->size() == 3);
  CHECK((*q)[0].name == "workload_id");
  CHECK((*q)[0].value == "a b c");
  CHECK((*q)[1].value == "5");
  CHECK((*q)[2].name == "flag");
  CHECK((*q)[2].value == "");

  auto bad = parse_query("workload_id=%zz");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == ErrorCode::invalid_query);
  CHECK(bad.error().pointer == "workload_id");
  CHECK(parse_query("workload_id=%4").error().pointer == "workload_id");
  CHECK(parse_query("workload_id=%ff").error().pointer == "workload_id");
}

TEST_CASE("query parameters are validated, not defaulted") {
  ReceiverFixture f;
  auto auth = f.new_customer();
  struct Case {
    const char* path;
    const char* query;
    int status;
    const char* pointer;
  };
  const Case cases[] = {
      {"/v1/profiles", "since_hours=0", 400, "since_hours"},
      {"/v1/profiles", "since_hours=-1", 400, "since_hours"},
      {"/v1/profiles", "since_hours=8761", 400, "since_hours"},
      {"/v1/profiles", "since_hours=1.5", 400, "since_hours"},
      {"/v1/profiles", "since_hours=", 400, "since_hours"},
      {"/v1/profiles", "since_hours=99999999999", 400, "since_hours"},
      {"/v1/profiles", "since_hours=1&since_hours=2", 400, "since_hours"},
      {"/v1/profiles", "workload_id=", 400, "workload_id"},
      {"/v1/profiles", "workload_id=%00", 400, "workload_id"},
      {"/v1/profiles", "workload_id=a%0Ab", 400, "workload_id"},
      {"/v1/profiles", "since_hours=8760&workload_id=x", 200, ""},
      {"/v1/events", "rollbacks_only=1", 400, "rollbacks_only"},
      {"/v1/events", "rollbacks_only=TRUE", 400, "rollbacks_only"},
      {"/v1/events", "rollbacks_only=false", 200, ""},
      // Parameters a read does not know are ignored (later dashboards
      // send filters this version does not implement).
      {"/v1/events", "framework=langgraph", 200, ""},
      {"/v1/stats", "include_calibration=true", 200, ""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.path);
    CAPTURE(c.query);
    auto r = f.get(c.path, c.query, auth);
    CHECK(r.status == c.status);
    if (c.status == 400) {
      CHECK(r.body.find(std::string(R"("error":"invalid_query","path":")") +
                        c.pointer + "\"") != std::string::npos);
    }
  }
  std::string long_id(201, 'w');
  CHECK(f.get("/v1/profiles", "workload_id=" + long_id, auth).status == 400);
  CHECK(f.get("/v1/profiles", "workload_id=" + long_id.substr(1), auth)
            .status == 200);
}

TEST_CASE("routes, methods and authentication") {
  ReceiverFixture f;
  auto auth = f.new_customer();
  struct Case {
    const char* method;
    const char* path;
    bool with_auth;
    int status;
    const char* error;
  };
  const Case cases[] = {
      {"GET", "/health", false, 200, nullptr},
      {"HEAD", "/health", false, 200, nullptr},
      {"POST", "/health", false, 405, "method_not_allowed"},
      {"HEAD", "/v1/stats", true, 200, nullptr},
      {"HEAD", "/v1/stats", false, 401, "unauthorized"},
      {"HEAD", "/v1/aggregate", true, 405, "method_not_allowed"},
      {"GET", "/v1/stats", true, 200, nullptr},
      {"GET", "/v1/stats", false, 401, "unauthorized"},
      {"GET", "/v1/profiles", true, 200, nullptr},
      {"GET", "/v1/events", true, 200, nullptr},
      {"DELETE", "/v1/events", true, 405, "method_not_allowed"},
      {"GET", "/v1/aggregate", true, 405, "method_not_allowed"},
      {"POST", "/v1/aggregate", false, 401, "unauthorized"},
      {"GET", "/v1/stats/", true, 404, "not_found"},
      {"GET", "/", false, 404, "not_found"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.method);
    CAPTURE(c.path);
    HttpRequest req;
    req.method = c.method;
    req.path = c.path;
    if (c.with_auth) req.authorization = auth;
    auto r = handle_http(f.receiver(), req);
    CHECK(r.status == c.status);
    CHECK(header(r, "X-Content-Type-Options") == "nosniff");
    CHECK(header(r, "Cache-Control") == "no-store");
    CHECK(header(r, "Referrer-Policy") == "no-referrer");
    if (c.error) {
      CHECK(r.body.rfind(std::string(R"({"error":")") + c.error + "\"", 0) ==
            0);
    }
  }
  CHECK(f.get("/v1/stats", "", "Bearer lgk_unknown").status == 401);
  CHECK(f.get("/v1/stats", "", "Token abc").status == 401);
}

TEST_CASE("HEAD answers as GET, body included, and Allow lists it") {
  ReceiverFixture f;
  auto auth = f.new_customer();
  HttpRequest head;
  head.method = "HEAD";
  head.path = "/v1/stats";
  head.authorization = auth;
  const auto as_head = handle_http(f.receiver(), head);
  const auto as_get = f.get("/v1/stats", "", auth);
  CHECK(as_head.status == 200);
  CHECK(as_head.body == as_get.body);  // the host sends only its length
  CHECK(as_head.body.rfind(R"({"customer_id":)", 0) == 0);

  HttpRequest wrong;
  wrong.method = "DELETE";
  wrong.path = "/health";
  const auto refused = handle_http(f.receiver(), wrong);
  CHECK(refused.status == 405);
  CHECK(header(refused, "Allow") == "GET, HEAD, OPTIONS");
  wrong.method = "HEAD";
  wrong.path = "/v1/aggregate";
  CHECK(header(handle_http(f.receiver(), wrong), "Allow") == "POST");
}

TEST_CASE("ingest answers 202 and reports what it removed") {
  ReceiverFixture f;
  std::string id;
  auto auth = f.new_customer(&id);
  auto r = post(f, auth, payload());
  CHECK(r.status == 202);
  CHECK(r.body == R"({"status":"ok"})");
  CHECK(r.customer_id == id);

  auto with_extra = payload();
  with_extra.insert(with_extra.size() - 1, R"(, "future_stat": 1)");
  r = post(f, auth, with_extra, {}, "application/json; charset=utf-8");
  CHECK(r.status == 202);
  CHECK(r.body == R"({"status":"ok","ignored":["/future_stat"]})");

  // The echo of ignored keys is bounded: 40 unknown keys list 32.
  auto many = payload();
  std::string extra;
  for (int i = 0; i < 40; ++i) extra += ", \"k" + std::to_string(i) + "\": 1";
  many.insert(many.size() - 1, extra);
  r = post(f, auth, many);
  CHECK(r.status == 202);
  CHECK(r.body.find(R"("/k31"],"ignored_total":40})") != std::string::npos);
  CHECK(r.body.find("/k32") == std::string::npos);
}

TEST_CASE("ingest refusals") {
  ReceiverFixture f;
  auto auth = f.new_customer();
  auto r = post(f, auth, payload(), std::string("https://x.example"));
  CHECK(r.status == 403);
  CHECK(r.body.rfind(R"({"error":"browser_requests_not_allowed")", 0) == 0);

  r = post(f, auth, payload(), {}, std::string("text/plain"));
  CHECK(r.status == 415);
  CHECK(r.body.rfind(R"({"error":"unsupported_media_type")", 0) == 0);

  r = post(f, auth, payload(), {}, {}, std::string("999999999"));
  CHECK(r.status == 413);
  CHECK(r.body.rfind(R"({"error":"payload_too_large")", 0) == 0);

  r = post(f, auth, payload(), {}, {}, std::string("12"));
  CHECK(r.status == 400);
  CHECK(r.body.rfind(R"({"error":"bad_request")", 0) == 0);

  r = post(f, auth, payload(), {}, {}, std::string("12x"));
  CHECK(r.status == 400);

  r = post(f, auth, "{\"schema_version\": 3,");
  CHECK(r.status == 400);
  CHECK(r.body.rfind(R"({"error":"invalid_json","path":"")", 0) == 0);

  r = post(f, std::nullopt, payload());
  CHECK(r.status == 401);
  CHECK(header(r, "WWW-Authenticate") == "Bearer");
}

TEST_CASE("CORS: allowed origins on reads, preflights, public health") {
  ReceiverOptions options;
  options.cors_origins = {"https://dash.example"};
  ReceiverFixture f(options);
  auto auth = f.new_customer();

  HttpRequest req;
  req.method = "GET";
  req.path = "/v1/stats";
  req.authorization = auth;
  req.origin = "https://dash.example";
  auto r = handle_http(f.receiver(), req);
  CHECK(header(r, "Access-Control-Allow-Origin") == "https://dash.example");
  CHECK(header(r, "Vary") == "Origin");

  req.origin = "https://elsewhere.example";
  CHECK_FALSE(header(handle_http(f.receiver(), req),
                     "Access-Control-Allow-Origin"));

  req.method = "OPTIONS";
  req.authorization.reset();
  req.origin = "https://dash.example";
  r = handle_http(f.receiver(), req);
  CHECK(r.status == 204);
  CHECK(r.body.empty());
  CHECK(header(r, "Access-Control-Allow-Origin") == "https://dash.example");
  CHECK(header(r, "Access-Control-Allow-Headers") ==
        "Authorization, Content-Type");

  req.path = "/v1/aggregate";
  CHECK(handle_http(f.receiver(), req).status == 403);

  req.method = "GET";
  req.path = "/health";
  CHECK(header(handle_http(f.receiver(), req),
               "Access-Control-Allow-Origin") == "*");
}

TEST_CASE("a closed receiver answers 503 with Retry-After") {
  ReceiverFixture f;
  auto auth = f.new_customer();
  REQUIRE(f.receiver().close().has_value());
  auto r = f.get("/v1/stats", "", auth);
  CHECK(r.status == 503);
  CHECK(header(r, "Retry-After") == "1");
  CHECK(r.body.rfind(R"({"error":"closed")", 0) == 0);
  CHECK(f.receiver().ingest(auth, payload()).error().code ==
        ErrorCode::closed);
}

}  // namespace lgr::test
