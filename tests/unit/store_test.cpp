// The SQLite store: schema and migrations, group commit, the three reads,
// the rollups behind stats() and the query plans.
#include "store_fixture.hpp"
#include "tokens.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <set>
#include <thread>

using namespace lgr;
using namespace lgr::test;

namespace {

// The seed service's first schema (two tables, one token per customer),
// written out by hand for the migration tests.
constexpr const char* kSeedSchema = R"sql(
  CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE,
    name TEXT, contact_email TEXT, created_at INTEGER NOT NULL,
    last_seen_at INTEGER);
  CREATE INDEX idx_customers_token_hash ON customers (token_hash);
  CREATE TABLE loop_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id TEXT NOT NULL,
    workload_id TEXT, timestamp_hour INTEGER NOT NULL,
    library_version TEXT NOT NULL, outcome TEXT NOT NULL,
    iterations_used INTEGER NOT NULL, gain_margin REAL,
    savings_vs_fixed_cap INTEGER, rollback_triggered INTEGER NOT NULL,
    profile_min REAL, profile_max REAL, profile_median REAL,
    profile_samples INTEGER, threshold_fast_converge REAL NOT NULL,
    threshold_converging REAL NOT NULL, threshold_stalling REAL NOT NULL,
    threshold_oscillating_upper REAL NOT NULL,
    smoothing_window INTEGER NOT NULL,
    received_at INTEGER NOT NULL DEFAULT (unixepoch()),
    FOREIGN KEY (customer_id) REFERENCES customers(customer_id));
  CREATE INDEX idx_loop_events_customer_time
    ON loop_events (customer_id, timestamp_hour DESC);
  CREATE INDEX idx_loop_events_customer_workload_time
    ON loop_events (customer_id, workload_id, timestamp_hour DESC);
  CREATE INDEX idx_loop_events_rollbacks
    ON loop_events (customer_id, rollback_triggered, timestamp_hour DESC);
)sql";

std::string seed_event(const std::string& customer, const std::string& hour,
                       const std::string& workload, const std::string& outcome,
                       int iterations, const std::string& savings,
                       int rollback) {
  return "INSERT INTO loop_events (customer_id, workload_id, timestamp_hour,"
         " library_version, outcome, iterations_used, gain_margin,"
         " savings_vs_fixed_cap, rollback_triggered, profile_min, profile_max,"
         " profile_median, profile_samples, threshold_fast_converge,"
         " threshold_converging, threshold_stalling,"
         " threshold_oscillating_upper, smoothing_window) VALUES ('" +
         customer + "', " + workload + ", " + hour + ", '0.1.0', '" + outcome +
         "', " + std::to_string(iterations) + ", 0.5, " + savings + ", " +
         std::to_string(rollback) +
         ", 0.1, 0.8, 0.4, 6, 0.05, 0.2, 0.5, 1.5, 1);";
}

// The same texts as above, recounted with SQL from every stored event,
// folded or not.
std::string recount(const std::filesystem::path& db, const std::string& sql) {
  std::string rows = query_text(db, sql);
  std::replace(rows.begin(), rows.end(), ';', ',');
  return rows;
}

std::string window(const std::string& customer, std::int64_t since) {
  return " FROM stored_events WHERE customer_id = '" + customer +
         "' AND timestamp_hour >= " + std::to_string(since);
}

std::string recount_outcomes(const std::filesystem::path& db,
                             const std::string& customer, std::int64_t since) {
  return recount(db, "SELECT outcome || '=' || COUNT(*)" +
                         window(customer, since) +
                         " GROUP BY outcome ORDER BY COUNT(*) DESC, outcome");
}

std::string recount_totals(const std::filesystem::path& db,
                           const std::string& customer, std::int64_t since) {
  return recount(db,
                 "SELECT COUNT(*) || '/' || COALESCE(SUM(iterations_used), 0)"
                 " || '/' || COALESCE(SUM(savings_vs_fixed_cap), 0) || '/' ||"
                 " COALESCE(SUM(rollback_triggered), 0)" +
                     window(customer, since));
}

std::string recount_workloads(const std::filesystem::path& db,
                              const std::string& customer, std::int64_t since,
                              int limit) {
  return recount(db, "SELECT COALESCE(workload_id, 'null') || '=' || COUNT(*)" +
                         window(customer, since) +
                         " GROUP BY workload_id ORDER BY COUNT(*) DESC,"
                         " workload_id IS NULL DESC, workload_id LIMIT " +
                         std::to_string(limit));
}

Stats stats_of(Store& store, const std::string& customer,
               std::int64_t since = kThirtyDaysAgo, int limit = 50) {
  auto stats = store.stats(stats_query(customer, since, limit));
  REQUIRE(stats);
  return *stats;
}

}  // namespace

TEST_SUITE("store") {
  TEST_CASE_FIXTURE(StoreFixture, "a new database gets the current schema") {
    REQUIRE(open() == "ok");
    CHECK(count("PRAGMA user_version") == sqlite::kSchemaVersion);
    CHECK(query_text(db_path(), "PRAGMA journal_mode") == "wal");
    CHECK(query_text(db_path(),
                     "SELECT group_concat(name, ',') FROM (SELECT name FROM"
                     " sqlite_schema WHERE type = 'table' ORDER BY name)") ==
          "customers,daily_outcomes,daily_workloads,fold_marks,"
          "hourly_outcomes,hourly_workloads,ingest_log,loop_events,"
          "sqlite_sequence,tokens");
    CHECK(query_text(db_path(),
                     "SELECT group_concat(name, ',') FROM (SELECT name FROM"
                     " sqlite_schema WHERE type = 'view' ORDER BY name)") ==
          "stored_events");
    CHECK(store->close());
    CHECK(reopen() == "ok");
    CHECK(count("PRAGMA user_version") == sqlite::kSchemaVersion);
  }

  TEST_CASE_FIXTURE(StoreFixture, "the seed's two-table schema is migrated") {
    const std::string token_a = "lgk_seedtokenaaaaaaaaaaaaaaaaaaaaaaaa";
    const std::string hash_a = *tokens::hash_token(token_a);
    const std::string hash_b = *tokens::hash_token("lgk_other");
    const std::string hour = std::to_string(kNow - 2 * kHour);
    const std::string older = std::to_string(kNow - 5 * kHour);
    execute(db_path(),
            std::string(kSeedSchema) +
                "INSERT INTO customers VALUES ('cust_00000000000000aa', '" +
                hash_a +
                "', 'Acme', 'ops@acme.test', 1700000000, 1700000100);" +
                "INSERT INTO customers VALUES ('cust_00000000000000bb', '" +
                hash_b + "', NULL, NULL, 1700000200, NULL);" +
                seed_event("cust_00000000000000aa", hour, "'wl-a'", "converged",
                           4, "2", 0) +
                seed_event("cust_00000000000000aa", hour, "NULL", "diverged", 9,
                           "NULL", 1) +
                seed_event("cust_00000000000000aa", older, "'wl-a'",
                           "converged", 6, "5", 0) +
                seed_event("cust_00000000000000bb", hour, "'wl-b'", "converged",
                           3, "1", 0));

    REQUIRE(open() == "ok");
    CHECK(count("PRAGMA user_version") == sqlite::kSchemaVersion);
    CHECK(count("SELECT COUNT(*) FROM pragma_table_info('customers')"
                " WHERE name = 'token_hash'") == 0);
    CHECK(query_text(db_path(),
                     "SELECT customer_id, revoked_at FROM tokens"
                     " ORDER BY customer_id") ==
          "cust_00000000000000aa|NULL;cust_00000000000000bb|NULL");
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 4);
    CHECK(query_text(db_path(),
                     "SELECT DISTINCT library, schema_version"
                     " FROM stored_events") == "loopgain|1");
    CHECK(rollup_differences(db_path()) == "");

    const auto customers = store->list_customers();
    REQUIRE(customers);
    REQUIRE(customers->size() == 2);
    CHECK((*customers)[0].name == "Acme");
    CHECK((*customers)[0].email == std::optional<std::string>("ops@acme.test"));
    CHECK((*customers)[0].last_seen_at ==
          std::optional<std::int64_t>(1700000100));
    CHECK((*customers)[0].active_tokens == 1);
    CHECK((*customers)[0].event_count == 3);
    CHECK((*customers)[1].name == "");
    CHECK((*customers)[1].event_count == 1);
    // After the listing: authenticate() updates last_seen_at in the
    // background.
    const auto who = store->authenticate(token_a);
    CHECK(must(who) == std::optional<std::string>("cust_00000000000000aa"));

    const Stats stats = stats_of(*store, "cust_00000000000000aa");
    CHECK(outcomes_text(stats) == "converged=2,diverged=1");
    CHECK(totals_text(stats) == "3/19/7/1");
    CHECK(workloads_text(stats) == "wl-a=2,null=1");
    const auto events =
        store->events(events_query("cust_00000000000000aa", kThirtyDaysAgo));
    CHECK(rows_text(must(events)) == "-2:9,-2:4,-5:6");

    // The migrated store takes new events and keeps its rollups exact.
    CHECK(store->append("cust_00000000000000bb", make_event(kNow)));
    CHECK(rollup_differences(db_path()) == "");
    CHECK(reopen() == "ok");
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 5);
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "a newer schema is refused and not modified") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    CHECK(store->append(customer, make_event(kNow)));
    CHECK(store->close());
    execute(db_path(), "PRAGMA user_version = " +
                           std::to_string(sqlite::kSchemaVersion + 1));
    const std::string before = file_bytes(db_path());

    CHECK(open() == "schema_too_new");
    CHECK(file_bytes(db_path()) == before);
    CHECK(count("PRAGMA user_version") == sqlite::kSchemaVersion + 1);
  }

  TEST_CASE_FIXTURE(StoreFixture, "unknown tables at version 0 are refused") {
    execute(db_path(),
            "CREATE TABLE notes (body TEXT);"
            "INSERT INTO notes VALUES ('keep me');");
    const std::string before = file_bytes(db_path());

    CHECK(open() == "storage_error");
    CHECK(file_bytes(db_path()) == before);
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "a lone append commits on its caller's thread; concurrent "
                    "ones share commits") {
    // The store reads the clock once per commit (received_at), on the
    // thread that commits; recorded here.
    std::mutex mutex;
    std::vector<std::thread::id> committers;
    SqliteStoreOptions o = options();
    o.now = [&] {
      std::lock_guard lock(mutex);
      committers.push_back(std::this_thread::get_id());
      return clock.load();
    };
    auto opened = open_sqlite_store(std::move(o), SqliteTuning{});
    REQUIRE(opened);
    store = std::move(*opened);
    const std::string customer = new_customer();

    const auto taken = [&] {
      std::lock_guard lock(mutex);
      return std::exchange(committers, {});
    };
    (void)taken();  // create_customer's own reads of the clock
    CHECK(store->append(customer, make_event(kNow)));
    CHECK(taken() == std::vector<std::thread::id>{std::this_thread::get_id()});

    constexpr int kEvents = 800;
    const std::vector<LoopEvent> events(kEvents, make_event(kNow));
    CHECK(append_all(customer, events, 8) == kEvents);
    const std::size_t commits = taken().size();
    CHECK(commits >= 1);
    CHECK(commits < static_cast<std::size_t>(kEvents));
    CHECK(count("SELECT COUNT(*) FROM stored_events") == kEvents + 1);
    CHECK(rollup_differences(db_path()) == "");
  }

  TEST_CASE_FIXTURE(StoreFixture, "appends from 8 threads are stored once") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    constexpr int kThreads = 8;
    constexpr int kPerThread = 150;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          const LoopEvent e = make_event(kNow - (i % 48) * kHour, "converged",
                                         "wl-a", t * kPerThread + i);
          if (!store->append(customer, e)) ++failures;
        }
      });
    }
    for (auto& thread : threads) thread.join();

    CHECK(failures.load() == 0);
    CHECK(count("SELECT COUNT(*) FROM stored_events") == kThreads * kPerThread);
    CHECK(count("SELECT COUNT(DISTINCT iterations_used) FROM stored_events") ==
          kThreads * kPerThread);
    CHECK(count("SELECT MAX(iterations_used) FROM stored_events") ==
          kThreads * kPerThread - 1);
    CHECK(rollup_differences(db_path()) == "");
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "a row that fails alone fails only its append") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    std::atomic<int> good_ok{0};
    std::atomic<int> bad_not_found{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 50; ++i) {
          if (t % 2 == 0) {
            if (store->append(customer, make_event(kNow))) ++good_ok;
          } else {
            const auto r =
                store->append("cust_ffffffffffffffff", make_event(kNow));
            if (code_of(r) == "customer_not_found") ++bad_not_found;
          }
        }
      });
    }
    for (auto& thread : threads) thread.join();

    CHECK(good_ok.load() == 200);
    CHECK(bad_not_found.load() == 200);
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 200);
    CHECK(rollup_differences(db_path()) == "");
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "append_async: one callback each, after the commit") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    constexpr int kAppends = 60;  // every third for an unknown customer
    std::mutex mutex;
    std::condition_variable all_done;
    std::vector<std::string> outcome(kAppends);
    std::vector<int> calls(kAppends, 0);
    int finished = 0;
    for (int i = 0; i < kAppends; ++i) {
      const std::string who =
          i % 3 == 2 ? "cust_ffffffffffffffff" : customer;
      const Status queued = store->append_async(
          who, make_event(kNow, "converged", "wl-a", i),
          [&, i](Status status) {
            std::lock_guard lock(mutex);
            outcome[i] = status ? "ok" : code_of(status);
            ++calls[i];
            if (++finished == kAppends) all_done.notify_one();
          });
      REQUIRE(queued);
    }
    {
      std::unique_lock lock(mutex);
      REQUIRE(all_done.wait_for(lock, std::chrono::seconds(30),
                                [&] { return finished == kAppends; }));
    }
    for (int i = 0; i < kAppends; ++i) {
      CHECK(calls[i] == 1);
      CHECK(outcome[i] == (i % 3 == 2 ? "customer_not_found" : "ok"));
    }
    // Acknowledged means committed: visible to a new connection now.
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 40);
    CHECK(count("SELECT COUNT(*) FROM stored_events WHERE iterations_used % 3 "
                "= 2") == 0);
    CHECK(rollup_differences(db_path()) == "");
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "append_async: close calls back every queued append") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    std::atomic<int> ok{0};
    std::atomic<int> calls{0};
    int queued = 0;
    for (int i = 0; i < 200; ++i) {
      if (store->append_async(customer, make_event(kNow, "converged", "wl-a",
                                                   i),
                              [&](Status status) {
                                if (status) ++ok;
                                ++calls;
                              })) {
        ++queued;
      }
    }
    CHECK(queued == 200);
    CHECK(store->close());
    CHECK(calls.load() == 200);  // before close() returned
    CHECK(ok.load() == 200);

    bool called = false;
    const Status refused = store->append_async(
        customer, make_event(kNow), [&](Status) { called = true; });
    CHECK(code_of(refused) == "closed");
    CHECK_FALSE(called);
    CHECK(reopen() == "ok");
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 200);
  }

  // The writer is held inside the first append's callback, so the queue
  // fills deterministically behind it.
  TEST_CASE_FIXTURE(StoreFixture,
                    "append_async: busy and close refusals keep everything") {
    SqliteTuning tuning;
    tuning.max_queued = 2;
    REQUIRE(open(tuning) == "ok");
    const std::string customer = new_customer();

    std::mutex mutex;
    std::condition_variable changed;
    bool holding = false;
    bool release = false;
    Status close_inside;
    std::atomic<int> ok{0};
    Store::AppendDone hold = [&](Status status) {
      if (status) ++ok;
      close_inside = store->close();  // on the writer: refused
      std::unique_lock lock(mutex);
      holding = true;
      changed.notify_all();
      changed.wait(lock, [&] { return release; });
    };
    REQUIRE(store->append_async(customer, make_event(kNow), std::move(hold)));
    {
      std::unique_lock lock(mutex);
      REQUIRE(changed.wait_for(lock, std::chrono::seconds(30),
                               [&] { return holding; }));
    }
    for (int i = 0; i < 2; ++i) {
      Store::AppendDone count = [&](Status status) {
        if (status) ++ok;
      };
      REQUIRE(store->append_async(customer, make_event(kNow),
                                  std::move(count)));
    }
    bool called = false;
    Store::AppendDone refused = [&](Status) { called = true; };
    const Status busy =
        store->append_async(customer, make_event(kNow), std::move(refused));
    CHECK(code_of(busy) == "busy");
    CHECK(message_of(busy) == "append: too many events waiting to be written");
    // Not taken: the caller can still answer through it.
    REQUIRE(static_cast<bool>(refused));
    CHECK_FALSE(called);
    refused(busy);
    CHECK(called);

    {
      std::lock_guard lock(mutex);
      release = true;
    }
    changed.notify_all();
    CHECK(code_of(close_inside) == "internal_error");
    CHECK(message_of(close_inside) ==
          "close: called from an append callback, on the thread it would "
          "wait for");
    // The two queued behind the held one drain once it returns.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (ok.load() < 3 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(ok.load() == 3);
    // The refused close changed nothing: the store still appends and reads.
    CHECK(store->append(customer, make_event(kNow)));
    CHECK(store->close());
    CHECK(reopen() == "ok");
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 4);
  }

  // glibc hands a finished thread's id to the next thread it starts; the
  // store must not mistake such a thread for its writer once closed.
  TEST_CASE_FIXTURE(StoreFixture, "close stays idempotent on any thread") {
    REQUIRE(open() == "ok");
    CHECK(store->close());
    for (int i = 0; i < 3; ++i) {
      Status again;
      bool writer = true;
      std::thread([&] {
        writer = store->on_commit_thread();
        again = store->close();
      }).join();
      CHECK_FALSE(writer);
      CHECK(again);
    }
  }

  TEST_CASE_FIXTURE(StoreFixture, "stats: the window is inclusive at since") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    CHECK(store->append(customer, make_event(kThirtyDaysAgo, "converged")));
    CHECK(
        store->append(customer, make_event(kThirtyDaysAgo - kHour, "stalled")));

    const Stats stats = stats_of(*store, customer);
    CHECK(outcomes_text(stats) == "converged=1");
    CHECK(totals_text(stats) == "1/5/3/0");
    CHECK(workloads_text(stats) == "wl-a=1");
    CHECK(
        stats_of(*store, customer, kThirtyDaysAgo - kHour).totals.event_count ==
        2);
    CHECK(
        stats_of(*store, customer, kThirtyDaysAgo + kHour).totals.event_count ==
        0);
  }

  TEST_CASE_FIXTURE(StoreFixture, "stats: ordering, totals and null savings") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    std::vector<LoopEvent> events;
    for (int i = 0; i < 3; ++i)
      events.push_back(make_event(kNow, "oscillating"));
    for (int i = 0; i < 3; ++i) events.push_back(make_event(kNow, "diverged"));
    events.push_back(make_event(kNow - kHour, "converged"));
    events.back().savings_vs_fixed_cap.reset();
    events.back().rollback_triggered = true;
    events.back().iterations_used = 11;
    REQUIRE(append_all(customer, events) == 7);

    const Stats stats = stats_of(*store, customer);
    CHECK(outcomes_text(stats) == "diverged=3,oscillating=3,converged=1");
    CHECK(totals_text(stats) == "7/41/18/1");
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "stats: workloads top N, null as its own group") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    std::vector<LoopEvent> events;
    auto add = [&](std::optional<std::string> workload, int n, int hours_ago) {
      for (int i = 0; i < n; ++i) {
        events.push_back(
            make_event(kNow - hours_ago * kHour, "converged", workload));
      }
    };
    add("wl-c", 3, 1);
    add("wl-c", 1, 20);
    add(std::nullopt, 2, 2);
    add(std::nullopt, 2, 30);
    add("wl-b", 4, 3);
    add("wl-a", 4, 4);
    add("wl-d", 1, 5);
    REQUIRE(append_all(customer, events) == 17);

    CHECK(workloads_text(stats_of(*store, customer)) ==
          "null=4,wl-a=4,wl-b=4,wl-c=4,wl-d=1");
    CHECK(workloads_text(stats_of(*store, customer, kThirtyDaysAgo, 2)) ==
          "null=4,wl-a=4");
    CHECK(workloads_text(stats_of(*store, customer, kThirtyDaysAgo, 0)) == "");
    CHECK(workloads_text(stats_of(*store, customer, kNow - 3 * kHour)) ==
          "wl-b=4,wl-c=3,null=2");
  }

  TEST_CASE_FIXTURE(StoreFixture, "profiles: newest first, filters and limit") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    // Sequential appends: ids grow in this order, so ties show id DESC.
    CHECK(store->append(customer,
                        make_event(kNow - 2 * kHour, "converged", "wl-a", 1)));
    CHECK(store->append(customer, make_event(kNow, "converged", "wl-b", 2)));
    CHECK(store->append(customer,
                        make_event(kNow - 2 * kHour, "converged", "wl-b", 3)));
    CHECK(store->append(customer,
                        make_event(kNow - kHour, "diverged", "wl-a", 4)));
    CHECK(store->append(
        customer, make_event(kThirtyDaysAgo - kHour, "converged", "wl-a", 5)));

    ProfilesQuery q{customer, std::nullopt, kThirtyDaysAgo, 1000};
    CHECK(rows_text(must(store->profiles(q))) == "0:2,-1:4,-2:3,-2:1");
    q.limit = 2;
    CHECK(rows_text(must(store->profiles(q))) == "0:2,-1:4");
    q.limit = 1000;
    q.workload_id = "wl-a";
    CHECK(rows_text(must(store->profiles(q))) == "-1:4,-2:1");
    q.since = kThirtyDaysAgo - kHour;
    CHECK(rows_text(must(store->profiles(q))) == "-1:4,-2:1,-721:5");
    q.workload_id = "wl-none";
    CHECK(rows_text(must(store->profiles(q))) == "");

    const auto row =
        must(store->profiles(profiles_query(customer, "wl-b", kNow, 10))).at(0);
    CHECK(row.workload_id == std::optional<std::string>("wl-b"));
    CHECK(row.profile_min == std::optional<double>(0.1));
    CHECK(row.profile_max == std::optional<double>(0.9));
    CHECK(row.profile_median == std::optional<double>(0.5));
    CHECK(row.profile_samples == 4);
    CHECK(row.outcome == "converged");
    CHECK(row.gain_margin == std::optional<double>(0.25));
  }

  TEST_CASE_FIXTURE(StoreFixture, "events: limits 50, 500 and 1000") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    std::vector<LoopEvent> events;
    for (int i = 0; i < 1200; ++i) {
      events.push_back(
          make_event(kNow - (i % 600) * kHour, "converged", "wl-a", i));
      events.back().rollback_triggered = i % 3 == 0;
    }
    REQUIRE(append_all(customer, events) == 1200);

    for (int limit : {50, 500, 1000}) {
      CAPTURE(limit);
      const auto rows = store->events(
          events_query(customer, kNow - 700 * kHour, false, limit));
      CHECK(must(rows).size() == static_cast<std::size_t>(limit));
      const auto profiles = store->profiles(
          profiles_query(customer, std::nullopt, kNow - 700 * kHour, limit));
      CHECK(must(profiles).size() == static_cast<std::size_t>(limit));
    }
    const auto all =
        store->events(events_query(customer, kNow - 700 * kHour, false, 5000));
    CHECK(must(all).size() == 1200);
    CHECK(std::is_sorted(must(all).begin(), must(all).end(),
                         [](const EventRow& a, const EventRow& b) {
                           return a.timestamp_hour > b.timestamp_hour;
                         }));
    const auto rollbacks =
        store->events(events_query(customer, kNow - 700 * kHour, true, 5000));
    CHECK(must(rollbacks).size() == 400);
    CHECK(std::all_of(
        must(rollbacks).begin(), must(rollbacks).end(),
        [](const EventRow& r) { return r.iterations_used % 3 == 0; }));
    CHECK(
        must(store->events(events_query(customer, kNow - 700 * kHour, true, 0)))
            .empty());
  }

  TEST_CASE_FIXTURE(StoreFixture, "events: fields and the rollbacks filter") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    LoopEvent plain = make_event(kNow - kHour, "converged", std::nullopt, 7);
    plain.gain_margin.reset();
    plain.savings_vs_fixed_cap.reset();
    plain.profile.max.reset();
    LoopEvent rollback = make_event(kNow - 3 * kHour, "diverged", "wl-r", 8);
    rollback.rollback_triggered = true;
    rollback.library_version = "0.7.0";
    CHECK(store->append(customer, plain));
    CHECK(store->append(customer, rollback));

    const auto all =
        store->events(events_query(customer, kThirtyDaysAgo, false, 500));
    CHECK(rows_text(must(all)) == "-1:7,-3:8");
    const EventRow& first = must(all).at(0);
    CHECK(first.workload_id == std::nullopt);
    CHECK(first.gain_margin == std::nullopt);
    CHECK(first.profile_max == std::nullopt);
    CHECK(first.savings_vs_fixed_cap == std::nullopt);
    CHECK(first.library_version == "0.6.4");
    const auto only =
        store->events(events_query(customer, kThirtyDaysAgo, true, 500));
    CHECK(rows_text(must(only)) == "-3:8");
    CHECK(must(only).at(0).library_version == "0.7.0");
    CHECK(must(only).at(0).savings_vs_fixed_cap ==
          std::optional<std::int64_t>(3));
  }

  TEST_CASE_FIXTURE(StoreFixture, "customers never see each other's rows") {
    REQUIRE(open() == "ok");
    const std::string a = new_customer("A");
    const std::string b = new_customer("B");
    CHECK(store->append(a, make_event(kNow, "converged", "wl-a", 1)));
    CHECK(store->append(b, make_event(kNow, "diverged", "wl-b", 2)));
    CHECK(store->append(b, make_event(kNow, "diverged", "wl-a", 3)));

    CHECK(outcomes_text(stats_of(*store, a)) == "converged=1");
    CHECK(workloads_text(stats_of(*store, a)) == "wl-a=1");
    CHECK(outcomes_text(stats_of(*store, b)) == "diverged=2");
    CHECK(rows_text(must(store->events(events_query(a, kThirtyDaysAgo)))) ==
          "0:1");
    CHECK(rows_text(must(store->profiles(
              profiles_query(a, "wl-a", kThirtyDaysAgo)))) == "0:1");
    CHECK(rows_text(must(store->profiles(
              profiles_query(b, "wl-a", kThirtyDaysAgo)))) == "0:3");
  }

  TEST_CASE_FIXTURE(StoreFixture, "a customer without events reads as empty") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    const Stats stats = stats_of(*store, customer);
    CHECK(outcomes_text(stats) == "");
    CHECK(totals_text(stats) == "0/0/0/0");
    CHECK(workloads_text(stats) == "");
    CHECK(must(store->profiles(profiles_query(customer))).empty());
    CHECK(must(store->events(events_query(customer))).empty());
  }

  TEST_CASE_FIXTURE(StoreFixture, "rollups always equal a recount") {
    REQUIRE(open() == "ok");
    const std::vector<std::string> customers = {
        new_customer("A"), new_customer("B"), new_customer("C")};
    const std::vector<std::string> outcomes = {"converged", "diverged",
                                               "oscillating", "max_iterations"};
    std::mt19937 random(20250615);
    for (int round = 0; round < 3; ++round) {
      for (const auto& customer : customers) {
        std::vector<LoopEvent> events;
        for (int i = 0; i < 120; ++i) {
          const int pick = static_cast<int>(random() % 1000);
          std::optional<std::string> workload;
          if (pick % 5 != 0) workload = "wl-" + std::to_string(pick % 7);
          LoopEvent e =
              make_event(kNow - (pick % 40) * kHour,
                         outcomes[pick % outcomes.size()], workload, pick % 50);
          if (pick % 4 == 0) e.savings_vs_fixed_cap.reset();
          if (pick % 3 == 0) e.savings_vs_fixed_cap = -(pick % 11);
          e.rollback_triggered = pick % 6 == 0;
          events.push_back(std::move(e));
        }
        REQUIRE(append_all(customer, events, 1 + round * 4) == 120);
      }
      CAPTURE(round);
      CHECK(rollup_differences(db_path()) == "");
    }
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 3 * 3 * 120);

    // stats() answers exactly what a recount of the raw rows gives, for
    // windows that start on, and between, day boundaries.
    const std::string& a = customers[0];
    for (const std::int64_t since :
         {kNow - 10 * kHour, kNow - 13 * kHour, kNow - 3 * kDay - 5 * kHour,
          kNow - 7 * kDay, kThirtyDaysAgo}) {
      CAPTURE(since);
      const Stats stats = stats_of(*store, a, since, 4);
      CHECK(outcomes_text(stats) == recount_outcomes(db_path(), a, since));
      CHECK(totals_text(stats) == recount_totals(db_path(), a, since));
      CHECK(workloads_text(stats) == recount_workloads(db_path(), a, since, 4));
    }

    // Folded, the same reads give the same answers.
    const Stats before = stats_of(*store, a, kNow - 13 * kHour, 4);
    REQUIRE(fold_by_reopening() == "ok");
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 3 * 3 * 120);
    CHECK(rollup_differences(db_path()) == "");
    const Stats after = stats_of(*store, a, kNow - 13 * kHour, 4);
    CHECK(outcomes_text(after) == outcomes_text(before));
    CHECK(totals_text(after) == totals_text(before));
    CHECK(workloads_text(after) == workloads_text(before));

    CHECK(store->delete_customer(customers[1]));
    CHECK(rollup_differences(db_path()) == "");
    const std::string gone = "'" + customers[1] + "'";
    CHECK(count("SELECT COUNT(*) FROM stored_events WHERE customer_id = " +
                gone) == 0);
    CHECK(count("SELECT COUNT(*) FROM fold_marks WHERE customer_id = " +
                gone) == 0);
    CHECK(count("SELECT COUNT(*) FROM hourly_outcomes WHERE customer_id = " +
                gone) == 0);
    CHECK(count("SELECT COUNT(*) FROM daily_outcomes WHERE customer_id = " +
                gone) == 0);
    CHECK(count("SELECT COUNT(*) FROM hourly_workloads WHERE customer_id = " +
                gone) == 0);
    CHECK(count("SELECT COUNT(*) FROM daily_workloads WHERE customer_id = " +
                gone) == 0);
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 2 * 3 * 120);
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "each read uses its index without a full scan") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    CHECK(store->append(customer, make_event(kNow)));
    const auto plan = [this](const char* sql) {
      return query_plan(db_path(), sql);
    };
    const std::string by_time(sqlite::index::kEventsByTime);
    const std::string by_workload(sqlite::index::kEventsByWorkload);
    const std::string rollbacks(sqlite::index::kRollbacksByTime);
    const std::string log_by_customer(sqlite::index::kLogByCustomer);
    // A customer's unfolded rows: one range of the log's index past its mark
    // (a primary-key lookup), sorted by a small temporary B-tree.
    const std::string unfolded =
        "SEARCH ingest_log USING INDEX " + log_by_customer +
        " (customer_id=? AND rowid>?); SCALAR SUBQUERY 1; "
        "SEARCH fold_marks USING PRIMARY KEY (customer_id=?)";
    const std::string sorted = "; USE TEMP B-TREE FOR ORDER BY";

    CHECK(plan(sqlite::sql::kProfiles) ==
          "SEARCH loop_events USING INDEX " + by_time +
              " (customer_id=? AND timestamp_hour>?)");
    CHECK(plan(sqlite::sql::kEvents) ==
          "SEARCH loop_events USING INDEX " + by_time +
              " (customer_id=? AND timestamp_hour>?)");
    CHECK(plan(sqlite::sql::kProfilesForWorkload) ==
          "SEARCH loop_events USING INDEX " + by_workload +
              " (customer_id=? AND workload_id=? AND timestamp_hour>?)");
    CHECK(plan(sqlite::sql::kRollbackEvents) ==
          "SEARCH loop_events USING INDEX " + rollbacks +
              " (customer_id=? AND timestamp_hour>?)");
    CHECK(plan(sqlite::sql::kUnfoldedProfiles) == unfolded + sorted);
    CHECK(plan(sqlite::sql::kUnfoldedProfilesForWorkload) == unfolded + sorted);
    CHECK(plan(sqlite::sql::kUnfoldedEvents) == unfolded + sorted);
    CHECK(plan(sqlite::sql::kUnfoldedRollbackEvents) == unfolded + sorted);
    // Stats read rollup ranges and the unfolded rows (the store sums them):
    // no temporary B-tree.
    const std::string unfolded_in_stats =
        "SEARCH ingest_log USING INDEX " + log_by_customer +
        " (customer_id=? AND rowid>?); SCALAR SUBQUERY 3; "
        "SEARCH fold_marks USING PRIMARY KEY (customer_id=?)";
    CHECK(plan(sqlite::sql::kStatsOutcomes) ==
          "COMPOUND QUERY; LEFT-MOST SUBQUERY; "
          "SEARCH hourly_outcomes USING PRIMARY KEY "
          "(customer_id=? AND hour>? AND hour<?); UNION ALL; "
          "SEARCH daily_outcomes USING PRIMARY KEY (customer_id=? AND day>?); "
          "UNION ALL; " +
              unfolded_in_stats);
    CHECK(plan(sqlite::sql::kStatsWorkloads) ==
          "COMPOUND QUERY; LEFT-MOST SUBQUERY; "
          "SEARCH hourly_workloads USING PRIMARY KEY "
          "(customer_id=? AND hour>? AND hour<?); UNION ALL; "
          "SEARCH daily_workloads USING PRIMARY KEY (customer_id=? AND day>?); "
          "UNION ALL; " +
              unfolded_in_stats);
    // The fold's reads of one customer's log rows, and the head check.
    CHECK(plan(sqlite::sql::kNewestLogRow) ==
          "SEARCH ingest_log USING COVERING INDEX " + log_by_customer +
              " (customer_id=?)");
    CHECK(plan(sqlite::sql::kNthUnfoldedLogRow) ==
          "SEARCH ingest_log USING COVERING INDEX " + log_by_customer +
              " (customer_id=? AND rowid>?)");
    CHECK(plan(sqlite::sql::kUnfoldedInRange) ==
          "SEARCH l USING INTEGER PRIMARY KEY (rowid>? AND rowid<?); "
          "CORRELATED SCALAR SUBQUERY 1; SEARCH m USING PRIMARY KEY "
          "(customer_id=?); USE TEMP B-TREE FOR DISTINCT");
    CHECK(plan(sqlite::sql::kTrimLog) ==
          "SEARCH ingest_log USING INTEGER PRIMARY KEY (rowid<?); "
          "CORRELATED SCALAR SUBQUERY 1; SEARCH m USING PRIMARY KEY "
          "(customer_id=?)");
    CHECK(plan(sqlite::sql::kAuthenticate) ==
          "SEARCH tokens USING PRIMARY KEY (token_hash=?)");
    CHECK(plan(sqlite::sql::kCustomerExists) ==
          "SEARCH customers USING COVERING INDEX sqlite_autoindex_customers_1 "
          "(customer_id=?)");
  }

  TEST_CASE_FIXTURE(StoreFixture, "an in-memory store works end to end") {
    SqliteStoreOptions o = options();
    o.path = ":memory:";
    auto opened = open_sqlite_store(o);
    REQUIRE(opened);
    Store& memory = **opened;
    auto issued = memory.create_customer("Mem", std::nullopt);
    REQUIRE(issued);
    CHECK(memory.append(issued->customer_id, make_event(kNow)));
    CHECK(must(memory.authenticate(issued->token)) ==
          std::optional<std::string>(issued->customer_id));
    CHECK(totals_text(stats_of(memory, issued->customer_id)) == "1/5/3/0");
    CHECK(rows_text(must(memory.events(events_query(issued->customer_id)))) ==
          "0:5");
    CHECK(memory.close());
  }

}  // TEST_SUITE
