// The ingest log (schema version 2): where a batch's events go, how and
// when the writer folds them into loop_events and the rollups, and that
// every read gives the same answer before, during and after a fold.
#include "store_fixture.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace lgr;
using namespace lgr::test;

namespace {

// Nothing is folded before the store closes, and everything is logged.
SqliteTuning log_only() {
  SqliteTuning tuning;
  tuning.direct_rows = 0;
  tuning.fold_threshold = 1000000;
  tuning.max_log_rows = 1000000;
  tuning.idle_fold_delay_ms = 1000000000;
  return tuning;
}

// A deterministic mix: hours over two days, four outcomes, unnamed
// workloads, missing and negative savings, rollbacks.
std::vector<LoopEvent> mixed_events(int count, unsigned seed) {
  static const std::vector<std::string> outcomes = {
      "converged", "diverged", "oscillating", "max_iterations"};
  std::mt19937 random(seed);
  std::vector<LoopEvent> events;
  for (int i = 0; i < count; ++i) {
    const int pick = static_cast<int>(random() % 1000);
    std::optional<std::string> workload;
    if (pick % 5 != 0) workload = "wl-" + std::to_string(pick % 7);
    LoopEvent e =
        make_event(kNow - (pick % 40) * kHour, outcomes[pick % outcomes.size()],
                   workload, pick % 50);
    if (pick % 4 == 0) e.savings_vs_fixed_cap.reset();
    if (pick % 3 == 0) e.savings_vs_fixed_cap = -(pick % 11);
    e.rollback_triggered = pick % 6 == 0;
    events.push_back(std::move(e));
  }
  return events;
}

// Every read of `customer`, as one text.
std::string every_read(Store& store, const std::string& customer) {
  std::string out;
  for (const std::int64_t since : {kNow - 13 * kHour, kThirtyDaysAgo}) {
    const Stats stats = must(store.stats(stats_query(customer, since, 5)));
    out += outcomes_text(stats) + " | " + totals_text(stats) + " | " +
           workloads_text(stats) + "\n";
    out += rows_text(must(store.events(events_query(customer, since)))) + "\n";
    out += rows_text(must(store.events(events_query(customer, since, true)))) +
           "\n";
    out +=
        rows_text(must(store.events(events_query(customer, since, false, 7)))) +
        "\n";
    out += rows_text(must(store.profiles(profiles_query(customer)))) + "\n";
    out += rows_text(must(store.profiles(
               profiles_query(customer, std::string("wl-3"), since)))) +
           "\n";
  }
  return out;
}

// Waits (at most 10 s) until `done()`; false if it never was.
template <class Done>
bool eventually(Done done) {
  for (int i = 0; i < 1000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// An event as another process would log it: only SQL.
void log_from_outside(const std::filesystem::path& db,
                      const std::string& customer, std::int64_t hour,
                      std::int64_t iterations) {
  execute(db,
          "INSERT INTO ingest_log (customer_id, schema_version, library,"
          " library_version, timestamp_hour, outcome, iterations_used,"
          " rollback_triggered, profile_samples, threshold_fast_converge,"
          " threshold_converging, threshold_stalling,"
          " threshold_oscillating_upper, smoothing_window, received_at)"
          " VALUES ('" +
              customer + "', 4, 'loopgain', '0.6.4', " + std::to_string(hour) +
              ", 'converged', " + std::to_string(iterations) +
              ", 0, 4, 0.05, 0.2, 0.5, 1.5, 3, " + std::to_string(kNow) + ")");
}

std::int64_t query_int_on(SQLite::Database& db, const std::string& sql) {
  SQLite::Statement query(db, sql);
  query.executeStep();
  return query.getColumn(0).getInt64();
}

Stats stats_of_customer(Store& store, const std::string& customer) {
  return must(store.stats(stats_query(customer)));
}

std::int64_t unfolded_rows(StoreFixture& f) {
  return f.count(
      "SELECT COUNT(*) FROM ingest_log l WHERE l.id > COALESCE((SELECT"
      " folded_through FROM fold_marks m WHERE m.customer_id ="
      " l.customer_id), 0)");
}

}  // namespace

TEST_SUITE("ingest log") {
  TEST_CASE_FIXTURE(StoreFixture,
                    "reads are the same before and after the fold") {
    REQUIRE(open(log_only()) == "ok");
    const std::vector<std::string> customers = {
        new_customer("A"), new_customer("B"), new_customer("C")};
    for (std::size_t i = 0; i < customers.size(); ++i) {
      REQUIRE(append_all(customers[i], mixed_events(150, 7 + i), 4) == 150);
    }
    CHECK(count("SELECT COUNT(*) FROM ingest_log") == 450);
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 0);
    CHECK(count("SELECT COUNT(*) FROM hourly_outcomes") == 0);
    CHECK(count("SELECT COUNT(*) FROM fold_marks") == 0);
    std::vector<std::string> before;
    for (const auto& customer : customers) {
      before.push_back(every_read(*store, customer));
    }

    REQUIRE(fold_by_reopening(log_only()) == "ok");
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 450);
    CHECK(count("SELECT COUNT(*) FROM fold_marks") == 3);
    CHECK(rollup_differences(db_path()) == "");
    for (std::size_t i = 0; i < customers.size(); ++i) {
      CAPTURE(i);
      CHECK(every_read(*store, customers[i]) == before[i]);
    }
    const auto listed = must(store->list_customers());
    REQUIRE(listed.size() == 3);
    CHECK(listed[0].event_count == 150);
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "within an hour, events not folded yet come first") {
    REQUIRE(open(log_only()) == "ok");
    const std::string customer = new_customer();
    CHECK(store->append(customer, make_event(kNow, "converged", "wl-a", 1)));
    CHECK(store->append(customer, make_event(kNow, "converged", "wl-a", 2)));
    CHECK(store->append(customer,
                        make_event(kNow - kHour, "converged", "wl-a", 3)));
    REQUIRE(fold_by_reopening(log_only()) == "ok");
    CHECK(store->append(customer, make_event(kNow, "converged", "wl-a", 4)));
    CHECK(store->append(customer,
                        make_event(kNow - kHour, "converged", "wl-a", 5)));
    CHECK(store->append(customer,
                        make_event(kNow - 2 * kHour, "converged", "wl-a", 6)));
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 3);
    CHECK(count("SELECT COUNT(*) FROM ingest_log") == 3);

    CHECK(rows_text(must(store->events(events_query(customer)))) ==
          "0:4,0:2,0:1,-1:5,-1:3,-2:6");
    CHECK(rows_text(must(store->events(events_query(
              customer, kThirtyDaysAgo, false, 3)))) == "0:4,0:2,0:1");
    CHECK(rows_text(must(store->profiles(profiles_query(customer)))) ==
          "0:4,0:2,0:1,-1:5,-1:3,-2:6");
    CHECK(totals_text(stats_of_customer(*store, customer)) == "6/21/18/0");
  }

  TEST_CASE_FIXTURE(StoreFixture, "direct_rows decides where a batch goes") {
    SqliteTuning direct = log_only();
    direct.direct_rows = 1;
    REQUIRE(open(direct) == "ok");
    const std::string customer = new_customer();
    CHECK(store->append(customer, make_event(kNow)));
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 1);
    CHECK(count("SELECT COUNT(*) FROM ingest_log") == 0);
    CHECK(count("SELECT COUNT(*) FROM hourly_outcomes") == 1);
    CHECK(rollup_differences(db_path()) == "");

    REQUIRE(reopen(log_only()) == "ok");
    CHECK(store->append(customer, make_event(kNow)));
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 1);
    CHECK(count("SELECT COUNT(*) FROM ingest_log") == 1);
    CHECK(totals_text(stats_of_customer(*store, customer)) == "2/10/6/0");
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "a customer with logged events is logged until folded") {
    SqliteTuning direct = log_only();
    direct.direct_rows = 1;
    REQUIRE(open(direct) == "ok");
    const std::string customer = new_customer();
    // Another process logged an event: the store's next one for the same
    // customer must not overtake it in loop_events, so it is logged too,
    // and the writer folds both at once.
    log_from_outside(db_path(), customer, kNow, 1);
    CHECK(store->append(customer, make_event(kNow, "converged", "wl-a", 2)));
    CHECK(eventually([&] { return unfolded_rows(*this) == 0; }));
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 2);
    // Nothing waits in the log any more: this one goes straight in.
    CHECK(store->append(customer, make_event(kNow, "converged", "wl-a", 3)));
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 3);
    CHECK(rows_text(must(store->events(events_query(customer)))) ==
          "0:3,0:2,0:1");
    CHECK(rollup_differences(db_path()) == "");
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "the writer folds past fold_threshold and trims the log") {
    SqliteTuning tuning = log_only();
    tuning.fold_threshold = 10;
    tuning.fold_step_rows = 4;
    tuning.trim_rows = 8;
    tuning.max_log_rows = 16;
    REQUIRE(open(tuning) == "ok");
    const std::string a = new_customer("A");
    const std::string b = new_customer("B");
    for (int i = 0; i < 3; ++i) CHECK(store->append(b, make_event(kNow)));
    const std::vector<LoopEvent> events = mixed_events(100, 11);
    for (const LoopEvent& e : events) CHECK(store->append(a, e));

    // A's events past the threshold, and B's at the log's head, get folded;
    // what is left in the log is under the thresholds.
    CHECK(eventually([&] {
      return count("SELECT COUNT(*) FROM ingest_log") <= 16 &&
             unfolded_rows(*this) < 10;
    }));
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 103);
    CHECK(count("SELECT COUNT(*) FROM loop_events WHERE customer_id = '" + b +
                "'") == 3);
    CHECK(rollup_differences(db_path()) == "");
    const std::string reads = every_read(*store, a);
    REQUIRE(fold_by_reopening(log_only()) == "ok");
    CHECK(every_read(*store, a) == reads);
  }

  TEST_CASE_FIXTURE(StoreFixture, "an idle writer folds the whole log") {
    SqliteTuning tuning = log_only();
    tuning.idle_fold_delay_ms = 20;
    tuning.fold_step_rows = 16;
    tuning.trim_rows = 32;
    REQUIRE(open(tuning) == "ok");
    const std::string customer = new_customer();
    REQUIRE(append_all(customer, mixed_events(200, 3), 4) == 200);
    CHECK(eventually(
        [&] { return count("SELECT COUNT(*) FROM ingest_log") == 0; }));
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 200);
    CHECK(rollup_differences(db_path()) == "");
  }

  TEST_CASE_FIXTURE(StoreFixture, "an idle writer empties the WAL file") {
    SqliteTuning tuning;
    tuning.idle_fold_delay_ms = 20;
    REQUIRE(open(tuning) == "ok");
    const std::string customer = new_customer();
    REQUIRE(append_all(customer, mixed_events(50, 9), 4) == 50);
    const auto wal = db_path().string() + "-wal";
    CHECK(eventually([&] { return std::filesystem::file_size(wal) == 0; }));
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 50);
    CHECK(count("SELECT COUNT(*) FROM ingest_log") == 0);
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "a reader holding an old snapshot delays the idle "
                    "truncation, without a spin") {
    SqliteTuning tuning;
    tuning.idle_fold_delay_ms = 20;
    REQUIRE(open(tuning) == "ok");
    const std::string customer = new_customer();
    CHECK(store->append(customer, make_event(kNow)));
    // A read transaction of another connection, on the WAL's snapshot.
    SQLite::Database reader(db_path().string(), SQLite::OPEN_READONLY);
    reader.exec("BEGIN");
    CHECK(query_int_on(reader, "SELECT COUNT(*) FROM stored_events") == 1);
    CHECK(store->append(customer, make_event(kNow)));
    CHECK(eventually([&] {
      std::lock_guard lock(log_mutex);
      for (const auto& line : log_lines) {
        if (line.find("idle WAL truncation postponed") != std::string::npos) {
          return true;
        }
      }
      return false;
    }));
    const auto cpu_before = std::clock();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const double idle_cpu_seconds =
        static_cast<double>(std::clock() - cpu_before) / CLOCKS_PER_SEC;
    CHECK(idle_cpu_seconds < 0.1);
    CHECK(store->append(customer, make_event(kNow)));  // not held up

    reader.exec("COMMIT");
    const auto wal = db_path().string() + "-wal";
    CHECK(eventually([&] { return std::filesystem::file_size(wal) == 0; }));
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 3);
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "logged events survive a crash and are folded later") {
    REQUIRE(open(log_only()) == "ok");
    const std::string customer = new_customer();
    REQUIRE(append_all(customer, mixed_events(120, 5), 4) == 120);
    const std::string reads = every_read(*store, customer);

    // The files of a process that died now: the WAL holds the log.
    const auto crashed = dir.path() / "crashed";
    std::filesystem::create_directory(crashed);
    for (const char* suffix : {"", "-wal"}) {
      std::filesystem::copy_file(db_path().string() + suffix,
                                 (crashed / "telemetry.db").string() + suffix);
    }
    REQUIRE(store->close());
    store.reset();
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::filesystem::remove(db_path().string() + suffix);
    }
    for (const char* suffix : {"", "-wal"}) {
      std::filesystem::copy_file((crashed / "telemetry.db").string() + suffix,
                                 db_path().string() + suffix);
    }

    REQUIRE(open(log_only()) == "ok");
    CHECK(count("SELECT COUNT(*) FROM ingest_log") == 120);
    CHECK(every_read(*store, customer) == reads);
    REQUIRE(fold_by_reopening(log_only()) == "ok");
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 120);
    CHECK(every_read(*store, customer) == reads);
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "events another process logged are read and folded") {
    REQUIRE(open(log_only()) == "ok");
    const std::string customer = new_customer();
    CHECK(store->append(customer, make_event(kNow, "converged", "wl-a", 2)));
    log_from_outside(db_path(), customer, kNow - kHour, 7);
    CHECK(totals_text(stats_of_customer(*store, customer)) == "2/9/3/0");
    CHECK(rows_text(must(store->events(events_query(customer)))) == "0:2,-1:7");
    REQUIRE(fold_by_reopening(log_only()) == "ok");
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 2);
    CHECK(totals_text(stats_of_customer(*store, customer)) == "2/9/3/0");
    CHECK(rollup_differences(db_path()) == "");
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "a fold that fails undoes that customer only") {
    SqliteTuning tuning = log_only();
    tuning.fold_threshold = 1;
    REQUIRE(open(tuning) == "ok");
    const std::string refused = new_customer("Refused");
    const std::string other = new_customer("Other");
    execute(db_path(),
            "CREATE TRIGGER refuse_folds BEFORE INSERT ON loop_events"
            " WHEN NEW.customer_id = '" +
                refused +
                "'"
                " BEGIN SELECT RAISE(ABORT, 'the test refuses folds'); END");
    for (int i = 1; i <= 5; ++i) {
      CHECK(store->append(refused, make_event(kNow, "converged", "wl-a", i)));
      CHECK(store->append(other, make_event(kNow, "converged", "wl-a", i)));
    }
    const auto logged = [&](const std::string& text) {
      std::lock_guard lock(log_mutex);
      for (const auto& line : log_lines) {
        if (line.find(text) != std::string::npos) return true;
      }
      return false;
    };
    CHECK(eventually([&] {
      return logged("folding the events of " + refused +
                    " failed, retried later: the test refuses folds");
    }));
    CHECK(eventually([&] {
      return count("SELECT COUNT(*) FROM loop_events WHERE customer_id = '" +
                   other + "'") == 5;
    }));
    CHECK(count("SELECT COUNT(*) FROM loop_events WHERE customer_id = '" +
                refused + "'") == 0);
    CHECK(count("SELECT COUNT(*) FROM hourly_outcomes WHERE customer_id = '" +
                refused + "'") == 0);
    CHECK(count("SELECT COUNT(*) FROM fold_marks WHERE customer_id = '" +
                refused + "'") == 0);
    CHECK(count("SELECT COUNT(*) FROM ingest_log WHERE customer_id = '" +
                refused + "'") == 5);
    CHECK(totals_text(stats_of_customer(*store, refused)) == "5/15/15/0");
    CHECK(totals_text(stats_of_customer(*store, other)) == "5/15/15/0");
    CHECK(rollup_differences(db_path()) == "");
    // Appends go on while its folds fail.
    CHECK(store->append(refused, make_event(kNow, "converged", "wl-a", 6)));

    execute(db_path(), "DROP TRIGGER refuse_folds");
    REQUIRE(fold_by_reopening(log_only()) == "ok");
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 11);
    CHECK(totals_text(stats_of_customer(*store, refused)) == "6/21/18/0");
    CHECK(rollup_differences(db_path()) == "");
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "a customer whose fold fails does not stop the trimming") {
    SqliteTuning tuning = log_only();
    tuning.max_log_rows = 40;
    tuning.trim_rows = 10;
    tuning.fold_step_rows = 16;
    REQUIRE(open(tuning) == "ok");
    const std::string refused = new_customer("Refused");
    std::vector<std::string> others;
    for (int i = 0; i < 20; ++i) others.push_back(new_customer("Other"));
    execute(db_path(),
            "CREATE TRIGGER refuse_folds BEFORE INSERT ON loop_events"
            " WHEN NEW.customer_id = '" +
                refused +
                "'"
                " BEGIN SELECT RAISE(ABORT, 'the test refuses folds'); END");
    // The refused customer's event heads the log.
    CHECK(store->append(refused, make_event(kNow)));
    for (int round = 0; round < 11; ++round) {
      for (const auto& other : others) {
        CHECK(store->append(other, make_event(kNow)));
      }
    }
    const auto unfolded_of_others = [&] {
      return count(
          "SELECT COUNT(*) FROM ingest_log l WHERE l.customer_id <> '" +
          refused +
          "' AND l.id > COALESCE((SELECT folded_through FROM fold_marks m"
          " WHERE m.customer_id = l.customer_id), 0)");
    };
    // The others are folded and the log trimmed past the held row, down to
    // about max_log_rows.
    CHECK(eventually(
        [&] { return count("SELECT COUNT(*) FROM ingest_log") <= 51; }));
    CHECK(unfolded_of_others() < 40);
    CHECK(count("SELECT COUNT(*) FROM ingest_log WHERE customer_id = '" +
                refused + "'") == 1);
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 221);

    execute(db_path(), "DROP TRIGGER refuse_folds");
    REQUIRE(fold_by_reopening(log_only()) == "ok");
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 221);
    CHECK(rollup_differences(db_path()) == "");
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "a reader holding an old snapshot does not hold up "
                    "appends or close()") {
    // The busy timeout a checkpoint would wait out for the reader, were it
    // to wait: a stall would show as an append or a close() this long.
    SqliteTuning tuning;
    tuning.busy_timeout_ms = 3000;
    tuning.wal_checkpoint_pages = 20;
    tuning.fold_step_rows = 8;
    tuning.trim_rows = 16;
    tuning.direct_rows = 0;
    REQUIRE(open(tuning) == "ok");
    const std::string customer = new_customer();
    CHECK(store->append(customer, make_event(kNow)));
    SQLite::Database reader(db_path().string(), SQLite::OPEN_READONLY);
    reader.exec("BEGIN");
    CHECK(query_int_on(reader, "SELECT COUNT(*) FROM stored_events") == 1);

    using Clock = std::chrono::steady_clock;
    Clock::duration slowest{};
    for (const LoopEvent& e : mixed_events(300, 17)) {
      const auto started = Clock::now();
      CHECK(store->append(customer, e));
      slowest = std::max(slowest, Clock::now() - started);
    }
    CHECK(slowest < std::chrono::milliseconds(2000));
    // close() folds about 38 steps; it may wait for the reader once, in
    // its final truncation of the WAL, not once a step.
    const auto closing = Clock::now();
    CHECK(store->close());
    CHECK(Clock::now() - closing < std::chrono::milliseconds(6500));
    reader.exec("COMMIT");
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 301);
  }

  TEST_CASE_FIXTURE(StoreFixture, "fold tunings of zero are refused") {
    for (std::size_t SqliteTuning::*field :
         {&SqliteTuning::fold_threshold, &SqliteTuning::fold_step_rows,
          &SqliteTuning::trim_rows}) {
      SqliteTuning tuning;
      tuning.*field = 0;
      auto opened = open_sqlite_store(options(), tuning);
      CHECK(code_of(opened) == "invalid_argument");
    }
    SqliteTuning pages;
    pages.wal_checkpoint_pages = 0;
    auto opened = open_sqlite_store(options(), pages);
    CHECK(code_of(opened) == "invalid_argument");
    CHECK(opened.error().pointer == "wal_checkpoint_pages");
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "a store left idle past a checkpoint truncates its WAL") {
    // The load stops right after the WAL passed its checkpoint size: the
    // writer must checkpoint once, fold, truncate and then sleep, not keep
    // asking the backfiller for more checkpoints.
    SqliteTuning tuning;
    tuning.wal_checkpoint_pages = 20;
    tuning.idle_fold_delay_ms = 20;
    REQUIRE(open(tuning) == "ok");
    const std::string customer = new_customer();
    REQUIRE(append_all(customer, mixed_events(300, 13), 4) == 300);
    const auto wal = db_path().string() + "-wal";
    CHECK(eventually([&] { return std::filesystem::file_size(wal) == 0; }));
    const auto cpu_before = std::clock();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const double idle_cpu_seconds =
        static_cast<double>(std::clock() - cpu_before) / CLOCKS_PER_SEC;
    CHECK(idle_cpu_seconds < 0.1);
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 300);
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "reads while the writer folds see whole batches") {
    SqliteTuning tuning;
    tuning.direct_rows = 3;
    tuning.fold_threshold = 5;
    tuning.fold_step_rows = 3;
    tuning.trim_rows = 7;
    tuning.max_log_rows = 20;
    tuning.idle_fold_delay_ms = 5;
    REQUIRE(open(tuning) == "ok");
    const std::string customer = new_customer();
    constexpr int kThreads = 8;
    constexpr int kPerThread = 60;
    // Appends begun and acknowledged: a read may see an event from the
    // moment its batch commits, before its append has returned.
    std::atomic<std::int64_t> begun{0};
    std::atomic<std::int64_t> acknowledged{0};
    std::atomic<bool> stop{false};
    std::atomic<int> too_few{0};
    std::atomic<int> too_many{0};
    std::atomic<int> failed{0};
    std::atomic<int> reads{0};

    // Each read counts at least what was acknowledged before it started
    // and at most what had begun once it ended.
    std::thread reader([&] {
      while (!stop.load()) {
        const std::int64_t low = acknowledged.load();
        const auto stats = store->stats(stats_query(customer));
        const auto events = store->events(events_query(customer));
        const std::int64_t high = begun.load();
        if (!stats || !events) {
          ++failed;
          continue;
        }
        for (const std::int64_t seen :
             {stats->totals.event_count,
              static_cast<std::int64_t>(events->size())}) {
          if (seen < low) ++too_few;
          if (seen > high) ++too_many;
        }
        ++reads;
      }
    });
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t) {
      writers.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          ++begun;
          if (store->append(customer, make_event(kNow, "converged", "wl-a",
                                                 t * 1000 + i))) {
            ++acknowledged;
          }
        }
      });
    }
    for (auto& writer : writers) writer.join();
    CHECK(eventually([&] { return reads.load() > 20; }));
    stop = true;
    reader.join();
    CHECK(acknowledged.load() == kThreads * kPerThread);
    CHECK(too_few.load() == 0);
    CHECK(too_many.load() == 0);
    CHECK(failed.load() == 0);
    CHECK(totals_text(stats_of_customer(*store, customer)).substr(0, 4) ==
          "480/");
    CHECK(eventually(
        [&] { return count("SELECT COUNT(*) FROM ingest_log") == 0; }));
    CHECK(rollup_differences(db_path()) == "");
  }
}  // TEST_SUITE
