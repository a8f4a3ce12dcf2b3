// Concurrency (issue #7): 32 threads ingest for several customers through
// lgr_handle_request() while 8 threads read /v1/stats and /v1/events.
//
//   concurrency_test FIXTURE [--seconds S]
//
// Checks, for every response:
// - an ingest is 202, or 503 with Retry-After (then retried); never 500;
// - a customer's stats event_count lies between the events acknowledged
//   before the read began and those acknowledged or in flight after it
//   ended, never decreases for one reader, and its totals are exactly
//   5 x event_count (every event is the same payload: no partial batch);
// - /v1/events holds only that customer's workload markers.
// At the end each customer's event_count equals its acknowledged total, and
// so do the rows in the database once it is closed.
#include "reliability_util.hpp"

#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <thread>

namespace {

constexpr int kCustomers = 4;
constexpr int kWriters = 32;
constexpr int kReaders = 8;
constexpr int kMaxPerWriter = 400;
// The payload's loop.iterations_used and loop.savings_vs_fixed_cap.
constexpr long long kIterationsPerEvent = 5;
constexpr long long kSavingsPerEvent = 5;

struct Shared {
  lgr_receiver* receiver = nullptr;
  std::string fixture;
  rel::Customer customers[kCustomers];
  std::atomic<long long> acked[kCustomers] = {};
  std::atomic<long long> in_flight[kCustomers] = {};
  std::atomic<long long> retries{0};
  std::atomic<long long> reads{0};
  std::atomic<bool> stop{false};
};

std::string marker_prefix(int customer) {
  return "cc" + std::to_string(customer) + "-";
}

void writer(Shared& s, int index, std::chrono::steady_clock::time_point end) {
  const int c = index % kCustomers;
  for (int n = 0; n < kMaxPerWriter && !s.stop; ++n) {
    if (std::chrono::steady_clock::now() > end) break;
    const std::string body = rel::payload_with_workload(
        s.fixture,
        marker_prefix(c) + std::to_string(index) + "-" + std::to_string(n));
    for (;;) {
      ++s.in_flight[c];
      const rel::Reply r =
          rel::request(s.receiver, "POST", "/v1/aggregate", nullptr,
                       s.customers[c].authorization, body);
      if (r.http == 202) ++s.acked[c];
      --s.in_flight[c];
      if (r.http == 202) break;
      if (r.http == 503 && !r.retry_after.empty()) {
        ++s.retries;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      REL_CHECK_MSG(false, "ingest answered " + std::to_string(r.http) +
                               " (Retry-After '" + r.retry_after +
                               "'): " + r.body);
      s.stop = true;
      return;
    }
  }
}

void check_stats(Shared& s, int c, long long& last_seen) {
  const long long floor = s.acked[c].load();
  const rel::Reply r = rel::request(s.receiver, "GET", "/v1/stats", nullptr,
                                    s.customers[c].authorization);
  // In flight first: an event that leaves it has already been counted in
  // acked, so the sum never misses a committed event.
  const long long in_flight = s.in_flight[c].load();
  const long long ceiling = s.acked[c].load() + in_flight;
  if (!REL_CHECK_MSG(r.http == 200, "stats answered " + std::to_string(r.http) +
                                        ": " + r.body)) {
    s.stop = true;
    return;
  }
  const long long count = rel::json_int(r.body, "event_count");
  REL_CHECK_MSG(count >= floor && count <= ceiling,
                "event_count " + std::to_string(count) + " outside [" +
                    std::to_string(floor) + ", " + std::to_string(ceiling) +
                    "]");
  REL_CHECK_MSG(count >= last_seen, "event_count went back from " +
                                        std::to_string(last_seen) + " to " +
                                        std::to_string(count));
  REL_CHECK_EQ(rel::json_int(r.body, "total_iterations"),
               count * kIterationsPerEvent);
  REL_CHECK_EQ(rel::json_int(r.body, "total_savings"),
               count * kSavingsPerEvent);
  for (const auto& w : rel::workload_ids(r.body)) {
    REL_CHECK_MSG(w.rfind(marker_prefix(c), 0) == 0,
                  "stats of customer " + std::to_string(c) + " list " + w);
  }
  last_seen = count;
}

void check_events(Shared& s, int c) {
  const rel::Reply r = rel::request(s.receiver, "GET", "/v1/events", nullptr,
                                    s.customers[c].authorization);
  if (!REL_CHECK_MSG(
          r.http == 200,
          "events answered " + std::to_string(r.http) + ": " + r.body)) {
    s.stop = true;
    return;
  }
  for (const auto& w : rel::workload_ids(r.body)) {
    if (w.rfind(marker_prefix(c), 0) != 0) {
      REL_CHECK_MSG(false,
                    "events of customer " + std::to_string(c) + " hold " + w);
      break;
    }
  }
}

void reader(Shared& s, int index) {
  std::mt19937 rng(static_cast<unsigned>(index));
  long long last_seen[kCustomers] = {};
  while (!s.stop) {
    const int c = static_cast<int>(rng() % kCustomers);
    if (rng() % 2 == 0) {
      check_stats(s, c, last_seen[c]);
    } else {
      check_events(s, c);
    }
    ++s.reads;
  }
}

}  // namespace

int main(int argc, char** argv) {
  rel::TimedRun run(argc, argv, "concurrency", 8);
  if (run.usage_error) return 2;
  if (!run.ok) return rel::finish("concurrency");
  const double seconds = run.seconds;
  const std::string& db = run.db;
  Shared s;
  s.fixture = run.fixture;
  s.receiver = run.receiver.get();
  for (int c = 0; c < kCustomers; ++c) {
    s.customers[c] = rel::create_customer(s.receiver, "cc" + std::to_string(c));
    REL_CHECK(!s.customers[c].id.empty());
  }

  const auto started = std::chrono::steady_clock::now();
  const auto end = started + std::chrono::milliseconds(
                                 static_cast<long long>(seconds * 1000));
  std::vector<std::thread> readers;
  std::vector<std::thread> writers;
  for (int i = 0; i < kReaders; ++i)
    readers.emplace_back(reader, std::ref(s), i);
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back(writer, std::ref(s), i, end);
  }
  for (auto& t : writers) t.join();
  s.stop = true;
  for (auto& t : readers) t.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
          .count();

  long long total = 0;
  for (int c = 0; c < kCustomers; ++c) {
    const rel::Reply r = rel::request(s.receiver, "GET", "/v1/stats", nullptr,
                                      s.customers[c].authorization);
    REL_CHECK_EQ(rel::json_int(r.body, "event_count"), s.acked[c].load());
    total += s.acked[c];
  }
  REL_CHECK_EQ(lgr_receiver_close(s.receiver, nullptr), LGR_OK);
  run.receiver.reset();

  REL_CHECK_EQ(rel::count_rows(db, "SELECT COUNT(*) FROM stored_events"),
               total);
  REL_CHECK_EQ(rel::sql_scalar(db, "PRAGMA integrity_check"),
               std::string("ok"));
  for (int c = 0; c < kCustomers; ++c) {
    const std::string sql =
        "SELECT COUNT(*) FROM stored_events WHERE customer_id = '" +
        s.customers[c].id + "' AND workload_id NOT LIKE '" + marker_prefix(c) +
        "%'";
    REL_CHECK_EQ(rel::count_rows(db, sql.c_str()), 0LL);
  }
  std::printf(
      "concurrency: %lld events acknowledged in %.1f s (%.0f/s), "
      "%lld reads, %lld retried 503s\n",
      total, elapsed, static_cast<double>(total) / elapsed, s.reads.load(),
      s.retries.load());
  return rel::finish("concurrency");
}
