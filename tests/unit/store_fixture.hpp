// Test support for the SQLite store suites: a fixture that owns a temporary
// directory and a store on a file in it, event builders, and helpers that
// return strings or numbers so that each check is one line.
#pragma once

#include "sqlite_schema.hpp"
#include "sqlite_store.hpp"
#include "store.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace lgr::test {

// 2025-06-15T13:00:00Z, on an hour boundary.
inline constexpr std::int64_t kNow = 1749992400;
inline constexpr std::int64_t kHour = 3600;
inline constexpr std::int64_t kDay = 86400;
inline constexpr std::int64_t kThirtyDaysAgo = kNow - 30 * kDay;

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "lgr-store-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// "ok", or the error's wire code.
template <class R>
std::string code_of(const R& result) {
  if (result) return "ok";
  return std::string(error_code_name(result.error().code));
}

template <class R>
std::string message_of(const R& result) {
  if (result) return "";
  return result.error().message;
}

// The value of a result that must have succeeded (the test stops if not).
template <class T>
T& must(Result<T>& result) {
  REQUIRE_MESSAGE(result.has_value(), message_of(result));
  return *result;
}
template <class T>
const T& must(const Result<T>& result) {
  REQUIRE_MESSAGE(result.has_value(), message_of(result));
  return *result;
}
template <class T>
T must(Result<T>&& result) {
  REQUIRE_MESSAGE(result.has_value(), message_of(result));
  return std::move(*result);
}

// Queries with the defaults the receiver uses, over the last 30 days.
inline StatsQuery stats_query(std::string customer,
                              std::int64_t since = kThirtyDaysAgo,
                              int workload_limit = 50) {
  return StatsQuery{std::move(customer), since, workload_limit};
}

inline ProfilesQuery profiles_query(
    std::string customer, std::optional<std::string> workload = std::nullopt,
    std::int64_t since = kThirtyDaysAgo, int limit = 1000) {
  return ProfilesQuery{std::move(customer), std::move(workload), since, limit};
}

inline EventsQuery events_query(std::string customer,
                                std::int64_t since = kThirtyDaysAgo,
                                bool rollbacks_only = false, int limit = 500) {
  return EventsQuery{std::move(customer), since, rollbacks_only, limit};
}

inline LoopEvent make_event(std::int64_t hour,
                            std::string outcome = "converged",
                            std::optional<std::string> workload = "wl-a",
                            std::int64_t iterations = 5) {
  LoopEvent e;
  e.schema_version = 4;
  e.library = "loopgain";
  e.library_version = "0.6.4";
  e.workload_id = std::move(workload);
  e.timestamp_hour = hour;
  e.outcome = std::move(outcome);
  e.iterations_used = iterations;
  e.gain_margin = 0.25;
  e.savings_vs_fixed_cap = 3;
  e.profile = {0.1, 0.9, 0.5, 4};
  e.thresholds = {0.05, 0.2, 0.5, 1.5};
  e.smoothing_window = 3;
  return e;
}

// One-line texts of read results, for CHECKs that compare whole answers.
inline std::string outcomes_text(const Stats& s) {
  std::string out;
  for (const auto& o : s.outcomes) {
    out += (out.empty() ? "" : ",") + o.outcome + "=" + std::to_string(o.count);
  }
  return out;
}

inline std::string workloads_text(const Stats& s) {
  std::string out;
  for (const auto& w : s.workloads) {
    out += (out.empty() ? "" : ",") + w.workload_id.value_or("null") + "=" +
           std::to_string(w.count);
  }
  return out;
}

inline std::string totals_text(const Stats& s) {
  return std::to_string(s.totals.event_count) + "/" +
         std::to_string(s.totals.total_iterations) + "/" +
         std::to_string(s.totals.total_savings) + "/" +
         std::to_string(s.totals.rollbacks);
}

// "hour:iterations" per row, hours relative to kNow.
template <class Rows>
std::string rows_text(const Rows& rows) {
  std::string out;
  for (const auto& r : rows) {
    out += (out.empty() ? "" : ",") +
           std::to_string((r.timestamp_hour - kNow) / kHour) + ":" +
           std::to_string(r.iterations_used);
  }
  return out;
}

// Raw access to the database file, for checks the Store API does not offer.
inline std::string query_text(const std::filesystem::path& db_path,
                              const std::string& sql) {
  SQLite::Database db(db_path.string(), SQLite::OPEN_READONLY);
  SQLite::Statement query(db, sql);
  std::string out;
  while (query.executeStep()) {
    if (!out.empty()) out += ";";
    for (int i = 0; i < query.getColumnCount(); ++i) {
      if (i > 0) out += "|";
      const SQLite::Column column = query.getColumn(i);
      out += column.isNull() ? std::string("NULL") : column.getString();
    }
  }
  return out;
}

inline std::int64_t query_int(const std::filesystem::path& db_path,
                              const std::string& sql) {
  SQLite::Database db(db_path.string(), SQLite::OPEN_READONLY);
  SQLite::Statement query(db, sql);
  query.executeStep();
  return query.getColumn(0).getInt64();
}

inline void execute(const std::filesystem::path& db_path,
                    const std::string& sql) {
  SQLite::Database db(db_path.string(),
                      SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  db.exec(sql);
}

// The EXPLAIN QUERY PLAN details of `sql`, joined with "; ".
inline std::string query_plan(const std::filesystem::path& db_path,
                              const std::string& sql) {
  SQLite::Database db(db_path.string(), SQLite::OPEN_READONLY);
  SQLite::Statement query(db, "EXPLAIN QUERY PLAN " + sql);
  std::string out;
  while (query.executeStep()) {
    if (!out.empty()) out += "; ";
    out += query.getColumn(3).getString();
  }
  return out;
}

// Rows on which the rollups and a recount from loop_events disagree, in
// either direction; "" when they are equal. The rollups hold exactly the
// folded events: those still in the ingest log are added by the reads.
inline std::string rollup_differences(const std::filesystem::path& db_path) {
  const std::string recount_outcomes =
      "SELECT customer_id, timestamp_hour, outcome, COUNT(*),"
      " SUM(iterations_used), SUM(COALESCE(savings_vs_fixed_cap, 0)),"
      " SUM(rollback_triggered) FROM loop_events"
      " GROUP BY customer_id, timestamp_hour, outcome";
  const std::string rollup_outcomes =
      "SELECT customer_id, hour, outcome, events, iterations, savings,"
      " rollbacks FROM hourly_outcomes";
  const std::string recount_workloads =
      "SELECT customer_id, timestamp_hour, workload_id IS NULL,"
      " COALESCE(workload_id, ''), COUNT(*) FROM loop_events"
      " GROUP BY 1, 2, 3, 4";
  const std::string rollup_workloads =
      "SELECT customer_id, hour, workload_null, workload_id, events"
      " FROM hourly_workloads";
  const std::string recount_daily_outcomes =
      "SELECT customer_id, timestamp_hour - ((timestamp_hour % 86400) +"
      " 86400) % 86400, outcome, COUNT(*), SUM(iterations_used),"
      " SUM(COALESCE(savings_vs_fixed_cap, 0)), SUM(rollback_triggered)"
      " FROM loop_events GROUP BY 1, 2, 3";
  const std::string rollup_daily_outcomes =
      "SELECT customer_id, day, outcome, events, iterations, savings,"
      " rollbacks FROM daily_outcomes";
  const std::string recount_daily =
      "SELECT customer_id, timestamp_hour - ((timestamp_hour % 86400) +"
      " 86400) % 86400, workload_id IS NULL, COALESCE(workload_id, ''),"
      " COUNT(*) FROM loop_events GROUP BY 1, 2, 3, 4";
  const std::string rollup_daily =
      "SELECT customer_id, day, workload_null, workload_id, events"
      " FROM daily_workloads";
  std::string out;
  for (const auto& [a, b] :
       {std::pair{recount_outcomes, rollup_outcomes},
        std::pair{rollup_outcomes, recount_outcomes},
        std::pair{recount_workloads, rollup_workloads},
        std::pair{rollup_workloads, recount_workloads},
        std::pair{recount_daily, rollup_daily},
        std::pair{rollup_daily, recount_daily},
        std::pair{recount_daily_outcomes, rollup_daily_outcomes},
        std::pair{rollup_daily_outcomes, recount_daily_outcomes}}) {
    out += query_text(db_path, a + " EXCEPT " + b);
  }
  return out;
}

inline std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Owns a temporary directory, a fixed clock and (after open()) a store on
// telemetry.db inside it.
struct StoreFixture {
  TempDir dir;
  std::atomic<std::int64_t> clock{kNow};
  std::mutex log_mutex;
  std::vector<std::string> log_lines;
  std::unique_ptr<Store> store;

  std::filesystem::path db_path() const { return dir.path() / "telemetry.db"; }

  SqliteStoreOptions options() {
    SqliteStoreOptions o;
    o.path = db_path().string();
    o.now = [this] { return clock.load(); };
    o.log = [this](int, std::string_view message) {
      std::lock_guard lock(log_mutex);
      log_lines.emplace_back(message);
    };
    return o;
  }

  // Opens the store into `store`; returns "ok" or the error code.
  std::string open(const SqliteTuning& tuning = {}) {
    store.reset();
    auto opened = open_sqlite_store(options(), tuning);
    if (!opened) return code_of(opened);
    store = std::move(*opened);
    return "ok";
  }

  std::string reopen(const SqliteTuning& tuning = {}) {
    if (store) (void)store->close();
    return open(tuning);
  }

  // Closing folds the whole ingest log into loop_events and the rollups;
  // reopening gives the test its store back. "ok" or the error code.
  std::string fold_by_reopening(const SqliteTuning& tuning = {}) {
    REQUIRE(store->close());
    REQUIRE(count("SELECT COUNT(*) FROM ingest_log") == 0);
    return open(tuning);
  }

  std::string new_customer(const std::string& name = "Acme") {
    auto issued = store->create_customer(name, std::nullopt);
    return issued ? issued->customer_id : std::string();
  }

  // Appends `events` from `threads` threads (so that they group-commit);
  // returns how many were acknowledged.
  std::size_t append_all(const std::string& customer_id,
                         const std::vector<LoopEvent>& events,
                         int threads = 8) {
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> acknowledged{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&] {
        for (std::size_t i = next++; i < events.size(); i = next++) {
          if (store->append(customer_id, events[i])) ++acknowledged;
        }
      });
    }
    for (auto& worker : workers) worker.join();
    return acknowledged.load();
  }

  std::int64_t count(const std::string& sql) {
    return query_int(db_path(), sql);
  }
};

}  // namespace lgr::test

// doctest prints a failed CHECK(result) as "ok" or "code: message" (boost's
// own operator<< would need one for lgr::Error).
namespace doctest {
template <class T>
struct StringMaker<boost::system::result<T, lgr::Error>> {
  static String convert(const boost::system::result<T, lgr::Error>& r) {
    if (r) return "ok";
    return (std::string(lgr::error_code_name(r.error().code)) + ": " +
            r.error().message)
        .c_str();
  }
};
}  // namespace doctest
