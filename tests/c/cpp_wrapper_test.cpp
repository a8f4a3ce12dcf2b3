// The header-only C++ layer (include/loopgain/receiver.hpp) as a C++
// gateway uses it: handle() and handle_async() give the same answers;
// handle_async() answers an accepted ingest from the library's writer
// thread after the commit, and everything else (refusals, reads, a closed
// receiver's 503) before it returns, on the caller's thread.
//
// Usage: cpp_wrapper_test FIXTURES_DIR DATABASE
#include <loopgain/receiver.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <iterator>
#include <string>
#include <thread>

namespace {

int g_failures = 0;

void check(bool ok, const char* what, int line) {
  if (ok) return;
  ++g_failures;
  std::fprintf(stderr, "cpp_wrapper_test.cpp:%d: CHECK failed: %s\n", line,
               what);
}
#define CHECK(cond) check((cond), #cond, __LINE__)

// 2026-12-01T00:00:00Z; the fixture is stamped 2026-11-30T14:00Z.
constexpr std::int64_t kNow = 1796083200;
constexpr const char* kAccepted =
    R"({"status":"ok","redacted":["/per_iteration"]})";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct Answer {
  loopgain::Response response;
  std::thread::id thread;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: cpp_wrapper_test FIXTURES_DIR DATABASE\n");
    return 2;
  }
  const std::string body =
      read_file(std::string(argv[1]) + "/v4-0.6.4-converged.json");
  CHECK(!body.empty());

  loopgain::Options options;
  options.db_path = argv[2];
  options.fixed_time = kNow;
  loopgain::Receiver rx(options);
  auto [customer, token] = rx.create_customer("acme");

  loopgain::Request ingest;
  ingest.method = "POST";
  ingest.path = "/v1/aggregate";
  ingest.authorization = "Bearer " + token;
  ingest.body = body;

  // The blocking call, for comparison.
  const loopgain::Response sync = rx.handle(ingest);
  CHECK(sync.status == 202);
  CHECK(sync.body == kAccepted);

  // An accepted ingest: answered later, from another thread.
  std::promise<Answer> accepted;
  rx.handle_async(ingest, [&accepted](loopgain::Response response) {
    accepted.set_value({std::move(response), std::this_thread::get_id()});
  });
  auto future = accepted.get_future();
  CHECK(future.wait_for(std::chrono::seconds(30)) ==
        std::future_status::ready);
  const Answer answer = future.get();
  CHECK(answer.response.status == 202);
  CHECK(answer.response.body == sync.body);
  CHECK(answer.response.headers == sync.headers);
  CHECK(answer.response.customer_id == customer);
  CHECK(answer.thread != std::this_thread::get_id());
  // Committed before the answer: both events count.
  CHECK(rx.stats_json(customer).find(R"("event_count":2)") !=
        std::string::npos);

  // A refused ingest and a read: answered before handle_async() returns.
  loopgain::Request bad = ingest;
  bad.authorization = "Bearer lgk_wrong";
  int inline_calls = 0;
  loopgain::Response refused;
  rx.handle_async(bad, [&](loopgain::Response response) {
    ++inline_calls;
    refused = std::move(response);
  });
  CHECK(inline_calls == 1);
  CHECK(refused.status == 401);
  CHECK(refused.body == rx.handle(bad).body);

  loopgain::Request health;
  health.method = "GET";
  health.path = "/health";
  loopgain::Response healthy;
  rx.handle_async(health,
                  [&](loopgain::Response response) { healthy = response; });
  CHECK(healthy.status == 200);
  CHECK(healthy.body == rx.handle(health).body);

  // After close: answered at once with the 503, nothing thrown.
  rx.close();
  loopgain::Response closed;
  rx.handle_async(ingest,
                  [&](loopgain::Response response) { closed = response; });
  CHECK(closed.status == 503);
  CHECK(closed.body == R"({"error":"closed","path":"","message":"the )"
                       R"(receiver is shutting down"})");

  if (g_failures == 0) std::printf("cpp_wrapper_test: all checks passed\n");
  return g_failures == 0 ? 0 : 1;
}
