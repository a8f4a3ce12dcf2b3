// Test fixture for the receiver-level suites: a Receiver over a database in
// a fresh temporary directory, with the clock fixed, plus helpers that make
// payloads and requests so that each check reads as one line.
#pragma once

#include "http_routes.hpp"
#include "receiver.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace lgr::test {

// 2026-12-01T00:00:00Z.
inline constexpr std::int64_t kNow = 1796083200;

inline std::string iso_hour(std::int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:00:00Z", &tm);
  return buf;
}

struct PayloadSpec {
  std::int64_t timestamp = kNow - 3600;
  std::string outcome = "converged";
  std::optional<std::string> workload = "wl-a";
  int iterations = 3;
  std::optional<int> savings = 2;
  bool rollback = false;
  std::string gain_margin = "0.9756097560975611";
  std::string profile_max = "1.025";
};

// A valid schema v3 payload.
inline std::string payload(const PayloadSpec& s = {}) {
  auto opt_str = [](const std::optional<std::string>& v) {
    return v ? "\"" + *v + "\"" : std::string("null");
  };
  return std::string(R"({"schema_version": 3, "library": "loopgain", )") +
         R"("library_version": "0.1.9", "workload_id": )" +
         opt_str(s.workload) + R"(, "timestamp_hour": ")" +
         iso_hour(s.timestamp) + R"(", "loop": {"outcome": ")" + s.outcome +
         R"(", "iterations_used": )" + std::to_string(s.iterations) +
         R"(, "gain_margin": )" + s.gain_margin +
         R"(, "savings_vs_fixed_cap": )" +
         (s.savings ? std::to_string(*s.savings) : "null") +
         R"(, "convergence_profile_summary": {"min": 0.0, "max": )" +
         s.profile_max + R"(, "median": null, "samples": 2}, )" +
         R"("rollback_triggered": )" + (s.rollback ? "true" : "false") +
         R"(}, "thresholds": {"fast_converge": 0.3, "converging": 0.85, )" +
         R"("stalling": 0.95, "oscillating_upper": 1.05}, )" +
         R"("smoothing_window": 3})";
}

class ReceiverFixture {
 public:
  explicit ReceiverFixture(ReceiverOptions options = {}) {
    char tmpl[] = "/tmp/lgr-receiver-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    options.db_path = dir_ + "/telemetry.db";
    options.fixed_time = kNow;
    auto opened = Receiver::open(std::move(options));
    REQUIRE_MESSAGE(opened.has_value(),
                    (opened ? "" : opened.error().message));
    receiver_ = std::move(*opened);
  }

  ~ReceiverFixture() {
    receiver_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  Receiver& receiver() { return *receiver_; }

  // A new customer; returns its Authorization header value.
  std::string new_customer(std::string* customer_id = nullptr) {
    auto issued = receiver_->create_customer("test", std::nullopt);
    REQUIRE(issued.has_value());
    if (customer_id) *customer_id = issued->customer_id;
    return "Bearer " + issued->token;
  }

  void ingest(const std::string& auth, const std::string& body) {
    auto r = receiver_->ingest(auth, body);
    REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
  }

  HttpResponse get(const std::string& path, const std::string& query,
                   const std::string& auth) {
    HttpRequest req;
    req.method = "GET";
    req.path = path;
    req.query = query;
    req.authorization = auth;
    return handle_http(*receiver_, req);
  }

 private:
  std::string dir_;
  std::unique_ptr<Receiver> receiver_;
};

}  // namespace lgr::test
