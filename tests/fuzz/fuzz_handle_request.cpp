// libFuzzer target: lgr_handle_request() and lgr_handle_request_async()
// over arbitrary HTTP-shaped requests, through the C API shim, against one
// receiver opened once (an in-memory store, fixed clock, one allowed CORS
// origin). One bit of each input picks which of the two calls answers it.
//
// Each input picks a method, a path (the routes, near misses and garbage),
// a query, the Authorization, Origin, Content-Type, Content-Length and
// Access-Control-Request-Method headers, and a body: raw input bytes, or a
// recorded client payload verbatim, truncated or overwritten in place (so
// that the accepted path is reached from the first run, without a corpus).
// The payloads are read from tests/fixtures/client-payloads beside this
// file, or from $LGR_FUZZ_FIXTURES.
//
// Beyond "no crash, no sanitizer report", every response must hold (a
// failed check traps, so libFuzzer keeps the input):
//   - the call returns LGR_OK with a response (the async call: its
//     callback runs exactly once, with a response; a second callback is
//     caught at the next async input); its status is one the
//     route table documents, never 500 (the store is in memory: no I/O
//     errors);
//   - the Content-Type is application/json; every status but 204 has a
//     JSON object body; an error body has "error", "path" and "message";
//   - a 503 carries Retry-After; a 202 names the authenticated customer.
#include <loopgain/receiver.h>

#include <fuzzer/FuzzedDataProvider.h>

#include <dirent.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr std::int64_t kNow = 1796083200;  // 2026-12-01T00:00:00Z
constexpr const char* kOrigin = "https://dash.example";
// The in-memory store grows with every accepted event; the customer is
// replaced (and its events deleted) this often to bound a long run.
constexpr int kEventsPerCustomer = 4096;

lgr_receiver* g_receiver = nullptr;
std::string g_customer_id;
std::string g_token;          // valid
std::string g_revoked_token;  // of a revoked customer
std::vector<std::string> g_fixtures;
int g_accepted = 0;

void require(bool ok) {
  if (!ok) __builtin_trap();
}

std::string fixtures_dir() {
  if (const char* env = std::getenv("LGR_FUZZ_FIXTURES")) return env;
  std::string here = __FILE__;
  here.erase(here.find_last_of('/') + 1);
  return here + "../fixtures/client-payloads";
}

void load_fixtures() {
  const std::string dir = fixtures_dir();
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  while (const struct dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() < 6 || name.substr(name.size() - 5) != ".json" ||
        name == "manifest.json") {
      continue;
    }
    std::ifstream in(dir + "/" + name, std::ios::binary);
    std::ostringstream body;
    body << in.rdbuf();
    g_fixtures.push_back(body.str());
  }
  closedir(d);
}

std::string new_customer(const char* name) {
  char* id = nullptr;
  char* token = nullptr;
  require(lgr_customer_create(g_receiver, name, nullptr, &id, &token,
                              nullptr) == LGR_OK);
  g_customer_id = id;
  std::string out = token;
  lgr_string_free(id);
  lgr_string_free(token);
  return out;
}

void rotate_customer() {
  require(lgr_customer_delete(g_receiver, g_customer_id.c_str(), nullptr) ==
          LGR_OK);
  g_token = new_customer("fuzz");
  g_accepted = 0;
}

bool documented_status(int status) {
  switch (status) {
    case 200:
    case 202:
    case 204:
    case 400:
    case 401:
    case 403:
    case 404:
    case 405:
    case 413:
    case 415:
    case 422:
    case 503:
      return true;
    default:
      return false;
  }
}

const char* const kMethods[] = {"GET",   "POST",   "OPTIONS", "HEAD", "PUT",
                                "PATCH", "DELETE", "get",     "",     "POST "};
const char* const kPaths[] = {"/v1/aggregate",
                              "/v1/stats",
                              "/v1/profiles",
                              "/v1/events",
                              "/health",
                              "/",
                              "",
                              "/v1/",
                              "/v1/stats/",
                              "/V1/STATS",
                              "//v1/stats",
                              "/v1/aggregate/",
                              "/v1/../health",
                              "/v1/aggregate%00",
                              "/v1/events?rollbacks_only=true"};
const char* const kQueries[] = {
    "workload_id=wl-converged",
    "since_hours=24",
    "since_hours=0",
    "since_hours=8761",
    "since_hours=-1",
    "workload_id=a&workload_id=b",
    "rollbacks_only=true",
    "rollbacks_only=yes",
    "workload_id=%ZZ",
    "workload_id=%e2%82",
    "workload_id=wl-converged&since_hours=720&rollbacks_only=false",
    "=&&=&"};
const char* const kContentTypes[] = {
    "application/json",  "application/json; charset=utf-8",
    "APPLICATION/JSON",  "text/plain",
    "application/jsonx", ""};

// One of the fixed strings, or a random one from the input.
std::string pick(FuzzedDataProvider& in, const char* const* table,
                 std::size_t count) {
  const std::size_t i = in.ConsumeIntegralInRange<std::size_t>(0, count);
  if (i < count) return table[i];
  return in.ConsumeRandomLengthString(256);
}

template <std::size_t N>
std::string pick(FuzzedDataProvider& in, const char* const (&table)[N]) {
  return pick(in, table, N);
}

std::string make_body(FuzzedDataProvider& in, bool& has_body) {
  has_body = true;
  const int mode = in.ConsumeIntegralInRange<int>(0, 4);
  if (mode == 0 || g_fixtures.empty())
    return in.ConsumeRemainingBytesAsString();
  if (mode == 4) {
    has_body = false;
    return "";
  }
  std::string body = g_fixtures[in.ConsumeIntegralInRange<std::size_t>(
      0, g_fixtures.size() - 1)];
  if (mode == 2) {
    body.resize(in.ConsumeIntegralInRange<std::size_t>(0, body.size()));
  } else if (mode == 3) {
    const std::size_t at =
        in.ConsumeIntegralInRange<std::size_t>(0, body.size());
    const std::string patch = in.ConsumeRandomLengthString(64);
    body.replace(at, std::min(patch.size(), body.size() - at), patch);
  }
  return body;
}

std::string authorization(FuzzedDataProvider& in, bool& present) {
  present = true;
  switch (in.ConsumeIntegralInRange<int>(0, 6)) {
    case 0:
      present = false;
      return "";
    case 1:
      return "Bearer " + g_token;
    case 2:
      return "bearer\t" + g_token + " ";
    case 3:
      return "Bearer " + g_revoked_token;
    case 4:
      return "Bearer " + in.ConsumeRandomLengthString(64);
    case 5:
      return "Basic " + g_token;
    default:
      return in.ConsumeRandomLengthString(128);
  }
}

void check_response(const lgr_http_response* res, int status) {
  require(documented_status(status));
  require(std::strcmp(lgr_http_response_content_type(res),
                      "application/json") == 0);
  std::size_t len = 0;
  const char* body = lgr_http_response_body(res, &len);
  require(body != nullptr);
  const std::string_view text(body, len);
  if (status == 204) {
    require(text.empty());
  } else {
    require(len >= 2 && text.front() == '{' && text.back() == '}');
  }
  if (status >= 400) {
    require(text.find("\"error\":") != std::string_view::npos &&
            text.find("\"path\":") != std::string_view::npos &&
            text.find("\"message\":") != std::string_view::npos);
  }

  bool retry_after = false;
  const std::size_t headers = lgr_http_response_header_count(res);
  for (std::size_t i = 0; i < headers; ++i) {
    const char* name = nullptr;
    const char* value = nullptr;
    require(lgr_http_response_header(res, i, &name, &value) == LGR_OK);
    require(name && value && *name);
    if (std::strcmp(name, "Retry-After") == 0) retry_after = true;
  }
  const char* name = nullptr;
  const char* value = nullptr;
  require(lgr_http_response_header(res, headers, &name, &value) ==
          LGR_ERR_INVALID_ARGUMENT);
  if (status == 503) require(retry_after);
  if (status == 202) {
    require(g_customer_id == lgr_http_response_customer_id(res));
  }
}

// The answer of one lgr_handle_request_async() call, however it arrives.
// One object for the whole run, so that a callback made twice (a defect)
// writes into live memory and is caught: `calls` counts every callback
// ever made, and answer() requires it to equal the calls that promised
// one, before and after each request.
struct AsyncAnswers {
  std::mutex mutex;
  std::condition_variable arrived;
  long promised = 0;
  long calls = 0;
  lgr_http_response* response = nullptr;

  static void Receive(void* self, lgr_http_response* response) {
    auto* answers = static_cast<AsyncAnswers*>(self);
    std::lock_guard lock(answers->mutex);
    ++answers->calls;
    answers->response = response;
    answers->arrived.notify_one();
  }
};
AsyncAnswers g_async;

// The response to `req` through the call the input chose.
lgr_http_response* answer(const lgr_http_request& req, bool async) {
  if (!async) {
    lgr_http_response* res = nullptr;
    require(lgr_handle_request(g_receiver, &req, &res) == LGR_OK);
    return res;
  }
  {
    std::lock_guard lock(g_async.mutex);
    require(g_async.calls == g_async.promised);  // no late second callback
    ++g_async.promised;
    g_async.response = nullptr;
  }
  require(lgr_handle_request_async(g_receiver, &req, &AsyncAnswers::Receive,
                                   &g_async) == LGR_OK);
  std::unique_lock lock(g_async.mutex);
  require(g_async.arrived.wait_for(
      lock, std::chrono::seconds(30),
      [&] { return g_async.calls >= g_async.promised; }));
  require(g_async.calls == g_async.promised);
  return g_async.response;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  load_fixtures();
  lgr_options* options = lgr_options_create();
  require(options != nullptr);
  require(lgr_options_set_db_path(options, ":memory:", nullptr) == LGR_OK);
  require(lgr_options_set_fixed_time(options, kNow, nullptr) == LGR_OK);
  require(lgr_options_add_cors_origin(options, kOrigin, nullptr) == LGR_OK);
  require(lgr_receiver_open(options, &g_receiver, nullptr) == LGR_OK);
  lgr_options_free(options);

  g_revoked_token = new_customer("revoked");
  require(lgr_customer_revoke(g_receiver, g_customer_id.c_str(), nullptr) ==
          LGR_OK);
  g_token = new_customer("fuzz");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  FuzzedDataProvider in(data, size);
  const std::string method = pick(in, kMethods);
  const std::string path = pick(in, kPaths);
  const int flags = in.ConsumeIntegral<std::uint8_t>();
  std::string query;
  if (flags & 1) query = pick(in, kQueries);
  bool has_auth = false;
  const std::string auth = authorization(in, has_auth);
  const std::string origin =
      (flags & 2) ? ((flags & 4) ? in.ConsumeRandomLengthString(64)
                                 : std::string(kOrigin))
                  : "";
  const std::string content_type = pick(in, kContentTypes);
  const std::string acrm = (flags & 8) ? pick(in, kMethods) : "";
  const int length_mode = in.ConsumeIntegralInRange<int>(0, 3);
  const std::string length_garbage =
      length_mode == 3 ? in.ConsumeRandomLengthString(24) : "";
  bool has_body = false;
  const std::string body = make_body(in, has_body);

  std::string content_length;
  if (length_mode == 1) content_length = std::to_string(body.size());
  if (length_mode == 2) content_length = std::to_string(body.size() + 1);
  if (length_mode == 3) content_length = length_garbage;

  lgr_http_request req;
  lgr_http_request_init(&req);
  req.method = method.c_str();
  req.path = path.c_str();
  req.query = (flags & 1) ? query.c_str() : nullptr;
  req.authorization = has_auth ? auth.c_str() : nullptr;
  req.origin = (flags & 2) ? origin.c_str() : nullptr;
  req.content_type = content_type.empty() ? nullptr : content_type.c_str();
  req.content_length = length_mode == 0 ? nullptr : content_length.c_str();
  req.access_control_request_method = (flags & 8) ? acrm.c_str() : nullptr;
  req.body = has_body ? body.data() : nullptr;
  req.body_len = has_body ? body.size() : 0;

  lgr_http_response* res = answer(req, (flags & 16) != 0);
  require(res != nullptr);
  const int http = lgr_http_response_status(res);
  check_response(res, http);
  lgr_http_response_free(res);

  if (http == 202 && ++g_accepted >= kEventsPerCustomer) rotate_customer();
  return 0;
}
