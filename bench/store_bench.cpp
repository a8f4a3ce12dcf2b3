// Store benchmark: append throughput through the C API (lgr_ingest) and
// through lgr::Store against a bare prepared-statement loop over the same
// schema, and read latency at growing row counts. Prints figures; asserts
// nothing.
//
//   store_bench [--appends-only | --reads-only] [--no-gather] [--rounds N]
//               [directory]     (default: a new directory under /tmp)
//
// Throughput: every run starts from a fresh database with 1,000 customers
// (or 1) and commits with synchronous=FULL, like the store. The C API run
// sends each event as a JSON payload with its customer's bearer token, so
// it pays for authentication and validation too; its payloads carry the
// same fields as the store run's events and are formatted before the clock
// starts. The bare loop commits batches of as many events as there are
// appending threads (a blocked appender contributes one event per commit,
// so that is the best case batch), inserting the rows and upserting the
// rollups of each batch; the "rows only" bare rate leaves the rollups out.
//
// Latency: one customer's events spread over 30 days with 20 workloads;
// the database is filled with the bare loop (synchronous=OFF, big batches),
// then read through the store.
#include "loopgain/receiver.h"
#include "sqlite_schema.hpp"
#include "sqlite_store.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kNow = 1749992400;
constexpr std::int64_t kHour = 3600;
constexpr const char* kOutcomes[] = {"converged", "converged", "diverged",
                                     "oscillating", "max_iterations"};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Event i of a run; one in 21 has no workload, the rest spread over
// `workloads` ids.
lgr::LoopEvent make_event(std::int64_t i, int workloads = 20) {
  lgr::LoopEvent e;
  e.schema_version = 4;
  e.library = "loopgain";
  e.library_version = "0.6.4";
  // Outcome and workload vary independently of the hour.
  const std::uint64_t mix = static_cast<std::uint64_t>(i) * 0x9E3779B97F4A7C15u;
  if (i % 21 != 0) {
    e.workload_id = "workload-" + std::to_string((mix >> 20) % workloads);
  }
  e.timestamp_hour = kNow - (i % 720) * kHour;
  e.outcome = kOutcomes[(mix >> 40) % 5];
  e.iterations_used = 1 + i % 17;
  e.gain_margin = 0.3;
  if (i % 3 != 0) e.savings_vs_fixed_cap = i % 9;
  e.rollback_triggered = i % 13 == 0;
  e.profile = {0.2, 0.9, 0.55, 6};
  e.best_index = i % 5;
  e.thresholds = {0.05, 0.2, 0.5, 1.5};
  e.smoothing_window = 3;
  e.framework = "langgraph";
  return e;
}

// Event i's customer: scattered, so that neither the store's batches nor
// the bare loop's happen to hold neighbouring customers (whose index
// entries would share pages).
std::size_t customer_of(std::int64_t i, std::size_t customers) {
  return static_cast<std::size_t>(
      (static_cast<std::uint64_t>(i) * 2654435761u) % customers);
}

// make_event(i) as the JSON a v4 client sends.
std::string payload_of(std::int64_t i) {
  const lgr::LoopEvent e = make_event(i);
  const std::time_t hour = static_cast<std::time_t>(e.timestamp_hour);
  std::tm utc{};
  gmtime_r(&hour, &utc);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S+00:00", &utc);
  const std::string workload =
      e.workload_id ? "\"" + *e.workload_id + "\"" : "null";
  const std::string savings = e.savings_vs_fixed_cap
                                  ? std::to_string(*e.savings_vs_fixed_cap)
                                  : "null";
  char body[1024];
  std::snprintf(
      body, sizeof body,
      "{\"schema_version\": 4, \"library\": \"loopgain\","
      " \"library_version\": \"0.6.4\", \"workload_id\": %s,"
      " \"timestamp_hour\": \"%s\", \"framework\": \"langgraph\","
      " \"loop_type\": null, \"team\": null,"
      " \"actual_dollars_spent\": null, \"actual_dollars_saved\": null,"
      " \"loop\": {\"outcome\": \"%s\", \"iterations_used\": %lld,"
      " \"savings_vs_fixed_cap\": %s, \"convergence_profile_summary\":"
      " {\"min\": 0.2, \"max\": 0.9, \"median\": 0.55, \"samples\": 6},"
      " \"rollback_triggered\": %s, \"best_index\": %lld,"
      " \"gain_margin\": 0.3},"
      " \"thresholds\": {\"fast_converge\": 0.05, \"converging\": 0.2,"
      " \"stalling\": 0.5, \"oscillating_upper\": 1.5},"
      " \"smoothing_window\": 3}",
      workload.c_str(), when, e.outcome.c_str(),
      static_cast<long long>(e.iterations_used), savings.c_str(),
      e.rollback_triggered ? "true" : "false",
      static_cast<long long>(e.best_index.value_or(0)));
  return body;
}

// ---- The bare loop ------------------------------------------------------

class BareWriter {
 public:
  BareWriter(const fs::path& path, bool durable)
      : db_(path.string(), SQLite::OPEN_READWRITE),
        insert_(db_, lgr::sqlite::sql::kInsertEvent),
        outcome_(db_, lgr::sqlite::sql::kUpsertHourlyOutcome),
        daily_outcome_(db_, lgr::sqlite::sql::kUpsertDailyOutcome),
        workload_(db_, lgr::sqlite::sql::kUpsertHourlyWorkload),
        daily_(db_, lgr::sqlite::sql::kUpsertDailyWorkload) {
    db_.exec("PRAGMA journal_mode = WAL");
    db_.exec(durable ? "PRAGMA synchronous = FULL"
                     : "PRAGMA synchronous = OFF");
    db_.exec("PRAGMA foreign_keys = ON");
  }

  void checkpoint() { db_.exec("PRAGMA wal_checkpoint(TRUNCATE)"); }

  void write_batch(const std::vector<std::string>& customers,
                   std::int64_t first, std::int64_t count, bool rollups,
                   int workload_count = 20) {
    db_.exec("BEGIN IMMEDIATE");
    std::map<std::tuple<std::string, std::int64_t, std::string>,
             std::array<std::int64_t, 4>>
        outcomes, daily_outcomes;
    std::map<std::tuple<std::string, std::int64_t, int, std::string>,
             std::int64_t>
        workloads, daily;
    for (std::int64_t i = first; i < first + count; ++i) {
      const std::string& customer = customers[customer_of(i, customers.size())];
      const lgr::LoopEvent e = make_event(i, workload_count);
      lgr::bind_event(insert_, customer, e, kNow);
      insert_.exec();
      insert_.reset();
      if (!rollups) continue;
      const std::int64_t day = lgr::sqlite::day_of(e.timestamp_hour);
      for (auto* o : {&outcomes[{customer, e.timestamp_hour, e.outcome}],
                      &daily_outcomes[{customer, day, e.outcome}]}) {
        (*o)[0] += 1;
        (*o)[1] += e.iterations_used;
        (*o)[2] += e.savings_vs_fixed_cap.value_or(0);
        (*o)[3] += e.rollback_triggered ? 1 : 0;
      }
      workloads[{customer, e.timestamp_hour, e.workload_id ? 0 : 1,
                 e.workload_id.value_or("")}] += 1;
      daily[{customer, lgr::sqlite::day_of(e.timestamp_hour),
             e.workload_id ? 0 : 1, e.workload_id.value_or("")}] += 1;
    }
    for (auto [sums, statement] :
         {std::pair{&outcomes, &outcome_},
          std::pair{&daily_outcomes, &daily_outcome_}}) {
      for (const auto& [k, v] : *sums) {
        statement->bind(1, std::get<0>(k));
        statement->bind(2, std::get<1>(k));
        statement->bind(3, std::get<2>(k));
        for (int j = 0; j < 4; ++j) statement->bind(4 + j, v[j]);
        statement->exec();
        statement->reset();
      }
    }
    for (auto [sums, statement] :
         {std::pair{&workloads, &workload_}, std::pair{&daily, &daily_}}) {
      for (const auto& [k, n] : *sums) {
        statement->bind(1, std::get<0>(k));
        statement->bind(2, std::get<1>(k));
        statement->bind(3, std::get<2>(k));
        statement->bind(4, std::get<3>(k));
        statement->bind(5, n);
        statement->exec();
        statement->reset();
      }
    }
    db_.exec("COMMIT");
  }

 private:
  SQLite::Database db_;
  SQLite::Statement insert_;
  SQLite::Statement outcome_;
  SQLite::Statement daily_outcome_;
  SQLite::Statement workload_;
  SQLite::Statement daily_;
};

// ---- Set-up ---------------------------------------------------------------

lgr::SqliteTuning g_tuning;  // --no-gather changes it

lgr::SqliteStoreOptions store_options(const fs::path& path) {
  lgr::SqliteStoreOptions o;
  o.path = path.string();
  o.now = [] { return kNow; };
  return o;
}

// Deletes the database at `path` with its WAL and shared-memory files.
void remove_database(const fs::path& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) {
    fs::remove(path.string() + suffix);
  }
}

// A fresh database at `path` with `count` customers; returns their ids.
std::vector<std::string> fresh_database(const fs::path& path, int count) {
  remove_database(path);
  auto store = lgr::open_sqlite_store(store_options(path));
  if (!store) {
    std::fprintf(stderr, "open failed: %s\n", store.error().message.c_str());
    std::exit(1);
  }
  (void)(*store)->close();

  std::vector<std::string> ids;
  SQLite::Database db(path.string(), SQLite::OPEN_READWRITE);
  db.exec("BEGIN");
  SQLite::Statement insert(db,
                           "INSERT INTO customers (customer_id, name,"
                           " created_at) VALUES (?1, 'bench', ?2)");
  for (int i = 0; i < count; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "cust_%016x", i + 1);
    ids.emplace_back(id);
    insert.bind(1, ids.back());
    insert.bind(2, kNow);
    insert.exec();
    insert.reset();
  }
  db.exec("COMMIT");
  return ids;
}

// ---- Measurements -----------------------------------------------------------

// Runs events 0 .. total-1 through `append(i)` (true when it succeeded)
// from `threads` threads, event i on thread i % threads, then `finish()`;
// returns events per second over both and reports failures. finish()
// closes the store, which folds whatever its ingest log still holds into
// loop_events and the rollups and checkpoints the WAL: the rate is that of
// events in their final place, as the bare loop's are.
template <class Append, class Finish>
double appends_per_second(int threads, std::int64_t total, Append append,
                          Finish finish) {
  std::atomic<std::int64_t> failures{0};
  std::vector<std::thread> workers;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (std::int64_t i = t; i < total; i += threads) {
        if (!append(i)) ++failures;
      }
    });
  }
  for (auto& worker : workers) worker.join();
  finish();
  const double elapsed = seconds_since(start);
  if (failures.load() != 0) {
    std::fprintf(stderr, "%lld appends failed!\n",
                 static_cast<long long>(failures.load()));
  }
  return static_cast<double>(total) / elapsed;
}

double store_rate(const fs::path& path, int customers, int threads,
                  std::int64_t total) {
  const std::vector<std::string> ids = fresh_database(path, customers);
  auto opened = lgr::open_sqlite_store(store_options(path), g_tuning);
  if (!opened) std::exit(1);
  lgr::Store& store = **opened;
  return appends_per_second(
      threads, total,
      [&](std::int64_t i) {
        return static_cast<bool>(
            store.append(ids[customer_of(i, ids.size())], make_event(i)));
      },
      [&] { (void)store.close(); });
}

// The same appends through lgr_ingest(): token lookup, validation, privacy
// enforcement, then the store. Customers are made through the C API too.
double capi_rate(const fs::path& path, int customers, int threads,
                 std::int64_t total) {
  remove_database(path);
  lgr_options* options = lgr_options_create();
  lgr_receiver* receiver = nullptr;
  if (options == nullptr ||
      lgr_options_set_db_path(options, path.c_str(), nullptr) != LGR_OK ||
      lgr_options_set_fixed_time(options, kNow, nullptr) != LGR_OK ||
      lgr_receiver_open(options, &receiver, nullptr) != LGR_OK) {
    std::fprintf(stderr, "lgr_receiver_open failed\n");
    std::exit(1);
  }
  lgr_options_free(options);

  std::vector<std::string> auth;
  for (int c = 0; c < customers; ++c) {
    char* id = nullptr;
    char* token = nullptr;
    if (lgr_customer_create(receiver, "bench", nullptr, &id, &token,
                            nullptr) != LGR_OK) {
      std::fprintf(stderr, "lgr_customer_create failed\n");
      std::exit(1);
    }
    auth.push_back(std::string("Bearer ") + token);
    lgr_string_free(id);
    lgr_string_free(token);
  }
  std::vector<std::string> bodies;
  bodies.reserve(static_cast<std::size_t>(total));
  for (std::int64_t i = 0; i < total; ++i) bodies.push_back(payload_of(i));

  const double rate = appends_per_second(
      threads, total,
      [&](std::int64_t i) {
        const auto& body = bodies[static_cast<std::size_t>(i)];
        lgr_error* error = nullptr;
        const lgr_status status =
            lgr_ingest(receiver, auth[customer_of(i, auth.size())].c_str(),
                       body.data(), body.size(), nullptr, &error);
        if (status != LGR_OK) {
          std::fprintf(stderr, "lgr_ingest: %s\n", lgr_error_message(error));
        }
        lgr_error_free(error);
        return status == LGR_OK;
      },
      [&] { (void)lgr_receiver_close(receiver, nullptr); });
  lgr_receiver_free(receiver);
  return rate;
}

double bare_rate(const fs::path& path, int customers, std::int64_t batch,
                 std::int64_t total, bool rollups) {
  const std::vector<std::string> ids = fresh_database(path, customers);
  BareWriter writer(path, true);
  const auto start = Clock::now();
  for (std::int64_t i = 0; i < total; i += batch) {
    writer.write_batch(ids, i, std::min(batch, total - i), rollups);
  }
  writer.checkpoint();  // as closing the store does
  return static_cast<double>(total) / seconds_since(start);
}

struct Latency {
  double median_us = 0;
  double p99_us = 0;
};

template <class F>
Latency time_calls(int calls, F&& call) {
  std::vector<double> samples;
  for (int i = 0; i < calls; ++i) {
    const auto start = Clock::now();
    call();
    samples.push_back(seconds_since(start) * 1e6);
  }
  std::sort(samples.begin(), samples.end());
  return {samples[samples.size() / 2],
          samples[std::min(samples.size() - 1, samples.size() * 99 / 100)]};
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// The spread of per-round ratios, in percent: "min-max".
std::string ratio_range(const std::vector<double>& ratios) {
  const auto [low, high] = std::minmax_element(ratios.begin(), ratios.end());
  char text[32];
  std::snprintf(text, sizeof text, "%.0f-%.0f%%", 100.0 * *low, 100.0 * *high);
  return text;
}

// Fills one customer's database up to each of `sizes` rows and times the
// reads through the store.
void read_latencies(const fs::path& path, int workloads,
                    const std::vector<std::int64_t>& sizes) {
  const std::vector<std::string> ids = fresh_database(path, 1);
  const std::int64_t since = kNow - 30 * 86400;
  std::int64_t filled = 0;
  for (const std::int64_t rows : sizes) {
    {
      BareWriter writer(path, false);
      for (; filled < rows; filled += 10000) {
        writer.write_batch(ids, filled, 10000, true, workloads);
      }
    }
    auto opened = lgr::open_sqlite_store(store_options(path));
    if (!opened) std::exit(1);
    lgr::Store& store = **opened;
    const lgr::StatsQuery stats{ids[0], since, 50};
    const lgr::EventsQuery events{ids[0], since, false, 500};
    const lgr::ProfilesQuery profiles{ids[0], std::nullopt, since, 1000};
    for (int i = 0; i < 20; ++i) (void)store.stats(stats);  // warm up
    const auto s = time_calls(500, [&] { (void)store.stats(stats); });
    const auto e = time_calls(100, [&] { (void)store.events(events); });
    const auto p = time_calls(100, [&] { (void)store.profiles(profiles); });
    const auto check = store.stats(stats);
    if (!check || check->totals.event_count != rows) {
      std::fprintf(stderr, "stats returned the wrong count\n");
    }
    (void)store.close();
    char label[64];
    std::snprintf(label, sizeof label, "%lld rows, %d workloads",
                  static_cast<long long>(rows), workloads);
    std::printf("%-24s %12.0f %12.0f %14.0f %16.0f\n", label, s.median_us,
                s.p99_us, e.median_us, p.median_us);
  }
}

// Rates are medians over `rounds`. The ratios are the medians of each
// round's own ratio: the four runs of a round follow each other within a
// few seconds, while this machine's disk drifts by tens of percent over
// minutes (bench/README.md), so a ratio of medians taken from different
// rounds would mix disk speeds.
void append_table(const fs::path& path, int rounds) {
  char title[32];
  std::snprintf(title, sizeof title, "append (%d rounds)", rounds);
  std::printf("%-28s %7s %11s %6s %9s %11s %11s %6s %9s %11s\n", title,
              "events", "C API ev/s", "ratio", "range", "store ev/s",
              "bare ev/s", "ratio", "range", "rows-only ev/s");
  struct Run {
    int customers;
    int threads;
    std::int64_t events;
  };
  // About a second per run: shorter runs of a single thread moved by up to
  // a third from one to the next with this machine's disk.
  for (const Run run : {Run{1000, 1, 3000}, Run{1000, 8, 12000},
                        Run{1, 1, 3000}, Run{1, 8, 16000},
                        Run{1000, 64, 32000}}) {
    // Interleaved, so that disk noise hits all four alike.
    std::vector<double> capi, store, bare, rows_only, capi_ratio, store_ratio;
    for (int round = 0; round < rounds; ++round) {
      capi.push_back(capi_rate(path, run.customers, run.threads, run.events));
      store.push_back(store_rate(path, run.customers, run.threads, run.events));
      bare.push_back(
          bare_rate(path, run.customers, run.threads, run.events, true));
      rows_only.push_back(
          bare_rate(path, run.customers, run.threads, run.events, false));
      capi_ratio.push_back(capi.back() / bare.back());
      store_ratio.push_back(store.back() / bare.back());
    }
    char label[64];
    std::snprintf(label, sizeof label, "%d thread%s, %d customer%s",
                  run.threads, run.threads == 1 ? "" : "s", run.customers,
                  run.customers == 1 ? "" : "s");
    std::printf(
        "%-28s %7lld %11.0f %5.0f%% %9s %11.0f %11.0f %5.0f%% %9s %11.0f\n",
        label, static_cast<long long>(run.events), median(capi),
        100.0 * median(capi_ratio), ratio_range(capi_ratio).c_str(),
        median(store), median(bare), 100.0 * median(store_ratio),
        ratio_range(store_ratio).c_str(), median(rows_only));
  }
}

}  // namespace

constexpr const char* kUsage =
    "usage: store_bench [--appends-only | --reads-only] [--no-gather] "
    "[--rounds N] [DIRECTORY]\n"
    "  --rounds N  interleaved rounds per append row, 1..99 (default 5)\n";

int main(int argc, char** argv) {
  fs::path dir;
  bool appends = true;
  bool reads = true;
  int rounds = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--rounds") {
      const char* value = i + 1 < argc ? argv[++i] : "";
      char* end = nullptr;
      const long parsed = std::strtol(value, &end, 10);
      if (*value == '\0' || *end != '\0' || parsed < 1 || parsed > 99) {
        std::fprintf(stderr, "store_bench: --rounds takes 1..99, not '%s'\n%s",
                     value, kUsage);
        return 2;
      }
      rounds = static_cast<int>(parsed);
    } else if (arg == "--appends-only") {
      reads = false;
    } else if (arg == "--reads-only") {
      appends = false;
    } else if (arg == "--no-gather") {
      g_tuning.max_gather_window_us = 0;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg.empty() || arg[0] == '-' || !dir.empty()) {
      std::fprintf(stderr, "store_bench: unexpected argument '%s'\n%s",
                   arg.c_str(), kUsage);
      return 2;
    } else {
      dir = arg;
    }
  }
  if (!appends && !reads) {
    std::fprintf(stderr, "store_bench: --appends-only and --reads-only "
                         "exclude each other\n%s", kUsage);
    return 2;
  }
  const bool keep = !dir.empty();
  if (keep) {
    std::error_code error;
    fs::create_directories(dir, error);
    if (error) {
      std::fprintf(stderr, "store_bench: cannot create %s: %s\n",
                   dir.c_str(), error.message().c_str());
      return 1;
    }
  } else {
    std::string pattern =
        (fs::temp_directory_path() / "lgr-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) return 1;
    dir = pattern;
  }
  const fs::path path = dir / "bench.db";
  std::printf("store_bench in %s (SQLite %s)\n\n", dir.c_str(),
              sqlite3_libversion());

  if (appends) append_table(path, rounds);
  if (reads) {
    std::printf("\n%-24s %12s %12s %14s %16s\n", "reads (one customer)",
                "stats p50 us", "stats p99 us", "events500 p50",
                "profiles1000 p50");
    read_latencies(path, 20, {10000, 100000, 1000000});
    read_latencies(path, 200, {1000000});
  }

  if (!keep) fs::remove_all(dir);
  return 0;
}
