// The reads as JSON, through the Receiver: exact bodies for seeded data,
// window edges measured from the fixed clock, and tenant isolation. The
// store's own suite covers limits and query plans; this one covers what the
// dashboard receives.
#include "receiver_fixture.hpp"

#include <doctest/doctest.h>

namespace lgr::test {

namespace {

std::string body_or_error(const Result<std::string>& r) {
  return r ? *r : "error: " + r.error().message;
}

}  // namespace

TEST_CASE("stats of an empty customer are zeros and empty lists") {
  ReceiverFixture f;
  std::string id;
  f.new_customer(&id);
  CHECK(body_or_error(f.receiver().stats_json(id)) ==
        R"({"customer_id":")" + id +
            R"(","window_days":30,"since":1793491200,"outcomes":[],)"
            R"("totals":{"event_count":0,"total_iterations":0,)"
            R"("total_savings":0,"rollbacks":0},"workloads":[]})");
}

TEST_CASE("stats count the 30-day window, its first hour included") {
  ReceiverFixture f;
  std::string id;
  auto auth = f.new_customer(&id);
  const std::int64_t since = kNow - 30 * 86400;
  f.ingest(auth, payload({.timestamp = since, .outcome = "converged",
                          .iterations = 4, .savings = 6}));
  f.ingest(auth, payload({.timestamp = since - 3600, .outcome = "diverged"}));
  f.ingest(auth, payload({.timestamp = kNow - 3600, .outcome = "stalled",
                          .workload = std::nullopt, .iterations = 7,
                          .savings = std::nullopt, .rollback = true}));
  CHECK(body_or_error(f.receiver().stats_json(id)) ==
        R"({"customer_id":")" + id +
            R"(","window_days":30,"since":1793491200,"outcomes":[)"
            R"({"outcome":"converged","count":1},)"
            R"({"outcome":"stalled","count":1}],)"
            R"("totals":{"event_count":2,"total_iterations":11,)"
            R"("total_savings":6,"rollbacks":1},"workloads":[)"
            R"({"workload_id":null,"count":1},)"
            R"({"workload_id":"wl-a","count":1}]})");
}

TEST_CASE("events keep numbers exact and nulls null") {
  ReceiverFixture f;
  std::string id;
  auto auth = f.new_customer(&id);
  f.ingest(auth, payload({.savings = std::nullopt, .gain_margin = "null"}));
  CHECK(body_or_error(f.receiver().events_json(id, false)) ==
        R"({"customer_id":")" + id +
            R"(","events":[{"timestamp_hour":1796079600,)"
            R"("workload_id":"wl-a","outcome":"converged",)"
            R"("iterations_used":3,"gain_margin":null,"profile_max":1.025,)"
            R"("savings_vs_fixed_cap":null,"library_version":"0.1.9"}]})");
}

TEST_CASE("events: newest first, rollbacks filter") {
  ReceiverFixture f;
  std::string id;
  auto auth = f.new_customer(&id);
  f.ingest(auth, payload({.timestamp = kNow - 7200, .outcome = "old"}));
  f.ingest(auth, payload({.timestamp = kNow - 3600, .outcome = "new",
                          .rollback = true}));
  auto all = body_or_error(f.receiver().events_json(id, false));
  CHECK(all.find(R"("outcome":"new")") < all.find(R"("outcome":"old")"));
  auto rollbacks = body_or_error(f.receiver().events_json(id, true));
  CHECK(rollbacks.find(R"("outcome":"new")") != std::string::npos);
  CHECK(rollbacks.find(R"("outcome":"old")") == std::string::npos);
}

TEST_CASE("profiles: rows carry workload_id only when not filtered") {
  ReceiverFixture f;
  std::string id;
  auto auth = f.new_customer(&id);
  f.ingest(auth, payload({.workload = "wl-a"}));
  f.ingest(auth, payload({.workload = "wl-b", .gain_margin = "2.0"}));
  CHECK(body_or_error(f.receiver().profiles_json(id, "wl-b", 0)) ==
        R"({"customer_id":")" + id +
            R"(","workload_id":"wl-b","events":[{"timestamp_hour":)"
            R"(1796079600,"profile_min":0,"profile_max":1.025,)"
            R"("profile_median":null,"profile_samples":2,)"
            R"("outcome":"converged","iterations_used":3,)"
            R"("gain_margin":2}]})");
  auto all = body_or_error(f.receiver().profiles_json(id, std::nullopt, 0));
  CHECK(all.find(R"("workload_id":null,"events":[)") != std::string::npos);
  CHECK(all.find(R"({"timestamp_hour":1796079600,"workload_id":"wl-a",)") !=
        std::string::npos);
}

TEST_CASE("profiles: since_hours edges") {
  ReceiverFixture f;
  std::string id;
  auto auth = f.new_customer(&id);
  f.ingest(auth, payload({.timestamp = kNow - 2 * 3600}));
  auto count = [&](int hours) {
    auto body = body_or_error(f.receiver().profiles_json(id, {}, hours));
    std::size_t n = 0;
    for (auto p = body.find("timestamp_hour"); p != std::string::npos;
         p = body.find("timestamp_hour", p + 1)) {
      ++n;
    }
    return n;
  };
  CHECK(count(2) == 1);
  CHECK(count(1) == 0);
  auto bad = f.receiver().profiles_json(id, {}, 8761);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == ErrorCode::invalid_query);
  CHECK(bad.error().pointer == "since_hours");
}

TEST_CASE("two customers never see each other's rows") {
  ReceiverFixture f;
  std::string a, b;
  auto auth_a = f.new_customer(&a);
  auto auth_b = f.new_customer(&b);
  f.ingest(auth_a, payload({.outcome = "only_a"}));
  f.ingest(auth_b, payload({.outcome = "only_b"}));
  for (const auto& [id, mine, theirs] :
       {std::tuple{a, "only_a", "only_b"}, std::tuple{b, "only_b", "only_a"}}) {
    for (const auto& body :
         {body_or_error(f.receiver().stats_json(id)),
          body_or_error(f.receiver().events_json(id, false)),
          body_or_error(f.receiver().profiles_json(id, {}, 0))}) {
      CHECK(body.find(mine) != std::string::npos);
      CHECK(body.find(theirs) == std::string::npos);
    }
  }
}

}  // namespace lgr::test
