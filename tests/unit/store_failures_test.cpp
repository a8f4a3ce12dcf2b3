// The store's failure paths: unknown customers, a closed store, read-only,
// corrupt, full and locked databases. Each asserts the error code, and that
// nothing acknowledged is lost.
#include "store_fixture.hpp"

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

using namespace lgr;
using namespace lgr::test;

namespace {

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

LoopEvent bulky_event(std::int64_t iterations) {
  LoopEvent e = make_event(kNow, "converged", "wl-a", iterations);
  e.per_iteration_json = "{\"error_history\":[" + std::string(3000, '1') + "]}";
  return e;
}

}  // namespace

TEST_SUITE("store failures") {
  TEST_CASE_FIXTURE(StoreFixture, "reads for an unknown customer fail") {
    REQUIRE(open() == "ok");
    const std::string nobody = "cust_0123456789abcdef";
    CHECK(code_of(store->append(nobody, make_event(kNow))) ==
          "customer_not_found");
    CHECK(code_of(store->stats(stats_query(nobody))) == "customer_not_found");
    CHECK(code_of(store->profiles(profiles_query(nobody))) ==
          "customer_not_found");
    CHECK(code_of(store->events(events_query(nobody))) == "customer_not_found");
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 0);
  }

  TEST_CASE_FIXTURE(StoreFixture, "negative limits are invalid_argument") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    CHECK(code_of(store->stats(stats_query(customer, 0, -1))) ==
          "invalid_argument");
    CHECK(code_of(store->profiles(profiles_query(customer, std::nullopt, 0,
                                                 -1))) == "invalid_argument");
    CHECK(code_of(store->events(events_query(customer, 0, false, -1))) ==
          "invalid_argument");
  }

  TEST_CASE_FIXTURE(StoreFixture, "every call on a closed store is closed") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    CHECK(store->close());
    CHECK(store->close());
    CHECK(code_of(store->create_customer("X", std::nullopt)) == "closed");
    CHECK(code_of(store->rotate_token(customer, 0)) == "closed");
    CHECK(code_of(store->revoke_customer(customer)) == "closed");
    CHECK(code_of(store->delete_customer(customer)) == "closed");
    CHECK(code_of(store->list_customers()) == "closed");
    CHECK(code_of(store->authenticate("lgk_x")) == "closed");
    CHECK(code_of(store->append(customer, make_event(kNow))) == "closed");
    CHECK(code_of(store->stats(stats_query(customer))) == "closed");
    CHECK(code_of(store->profiles(profiles_query(customer))) == "closed");
    CHECK(code_of(store->events(events_query(customer))) == "closed");
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "close during appends loses nothing acknowledged") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    std::atomic<int> acknowledged{0};
    std::atomic<int> refused{0};
    std::atomic<int> other{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&] {
        for (;;) {
          const auto r = store->append(customer, make_event(kNow));
          if (r) {
            ++acknowledged;
          } else {
            (code_of(r) == "closed" ? refused : other)++;
            return;
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(store->close());
    for (auto& thread : threads) thread.join();

    CHECK(acknowledged.load() > 0);
    CHECK(refused.load() == 8);
    CHECK(other.load() == 0);
    CHECK(reopen() == "ok");
    CHECK(count("SELECT COUNT(*) FROM stored_events") == acknowledged.load());
    CHECK(rollup_differences(db_path()) == "");
  }

  // Tests run as root, which chmod cannot stop from writing; the read_only
  // tuning opens the file with SQLITE_OPEN_READONLY, which is what SQLite
  // does by itself for a file the process may not write. Where the suite runs
  // unprivileged, the chmod path is checked as well.
  TEST_CASE_FIXTURE(StoreFixture, "a read-only database is refused at open") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    CHECK(store->close());

    SqliteTuning read_only;
    read_only.read_only = true;
    auto opened = open_sqlite_store(options(), read_only);
    CHECK(code_of(opened) == "storage_error");
    CHECK(contains(message_of(opened), "read-only"));

    if (geteuid() != 0) {
      REQUIRE(chmod(db_path().c_str(), 0444) == 0);
      CHECK(open() == "storage_error");
      REQUIRE(chmod(db_path().c_str(), 0644) == 0);
    }
    CHECK(open() == "ok");
    CHECK(must(store->list_customers()).size() == 1);
  }

  TEST_CASE_FIXTURE(StoreFixture, "a file that is not a database is refused") {
    write_file(db_path(), std::string(8192, 'x'));
    auto opened = open_sqlite_store(options());
    CHECK(code_of(opened) == "storage_error");
    CHECK(contains(message_of(opened),
                   "not a loopgain-receiver database or corrupt"));
    CHECK(file_bytes(db_path()) == std::string(8192, 'x'));

    std::string header("SQLite format 3\0", 16);
    write_file(db_path(), header + std::string(4080, '\x7f'));
    opened = open_sqlite_store(options());
    CHECK(code_of(opened) == "storage_error");
    CHECK(contains(message_of(opened),
                   "not a loopgain-receiver database or corrupt"));
  }

  TEST_CASE_FIXTURE(StoreFixture, "corrupt pages surface as storage_error") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    CHECK(append_all(customer, std::vector<LoopEvent>(50, make_event(kNow))) ==
          50);
    CHECK(store->close());

    // Keep the pages of the schema (page 1 and what it overflows into),
    // overwrite every other page.
    const std::string schema_pages =
        query_text(db_path(),
                   "SELECT group_concat(pageno, ',') FROM dbstat"
                   " WHERE name = 'sqlite_schema'");
    std::vector<bool> keep;
    for (std::size_t at = 0; at < schema_pages.size();) {
      const std::size_t comma =
          std::min(schema_pages.find(',', at), schema_pages.size());
      const std::size_t page = std::stoul(schema_pages.substr(at, comma - at));
      if (keep.size() < page) keep.resize(page, false);
      keep[page - 1] = true;
      at = comma + 1;
    }
    std::string bytes = file_bytes(db_path());
    REQUIRE(bytes.size() > 8192);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      const std::size_t page = i / 4096;
      if (page >= keep.size() || !keep[page]) bytes[i] = '\x5a';
    }
    write_file(db_path(), bytes);

    // The schema is intact, so the store opens; every read or write that
    // meets a damaged page fails cleanly.
    REQUIRE(open() == "ok");
    CHECK(code_of(store->stats(stats_query(customer))) == "storage_error");
    CHECK(code_of(store->events(events_query(customer))) == "storage_error");
    CHECK(code_of(store->append(customer, make_event(kNow))) ==
          "storage_error");
    CHECK(message_of(store->events(events_query(customer))) ==
          "events: not a loopgain-receiver database or corrupt");
    CHECK(store->close());
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "a full disk fails the append, keeps the rest") {
    SqliteTuning tiny;
    tiny.max_page_count = 48;
    REQUIRE(open(tiny) == "ok");
    const std::string customer = new_customer();

    int acknowledged = 0;
    Status last;
    for (int i = 0; i < 1000 && last; ++i) {
      last = store->append(customer, bulky_event(i));
      if (last) ++acknowledged;
    }
    CHECK(code_of(last) == "storage_error");
    CHECK(message_of(last) == "append: disk full");
    CHECK(acknowledged > 0);
    CHECK(count("SELECT COUNT(*) FROM stored_events") == acknowledged);
    CHECK(rollup_differences(db_path()) == "");
    // The store keeps serving reads and refuses further writes cleanly.
    CHECK(must(store->stats(stats_query(customer))).totals.event_count ==
          acknowledged);
    CHECK(code_of(store->append(customer, bulky_event(-1))) == "storage_error");
    CHECK(store->close());

    REQUIRE(open() == "ok");
    CHECK(count("SELECT COUNT(*) FROM stored_events") == acknowledged);
    CHECK(count("SELECT MAX(iterations_used) FROM stored_events") ==
          acknowledged - 1);
    CHECK(store->append(customer, bulky_event(acknowledged)));
  }

  TEST_CASE_FIXTURE(StoreFixture, "a failed batch leaves nothing behind") {
    SqliteTuning tiny;
    tiny.max_page_count = 64;
    REQUIRE(open(tiny) == "ok");
    const std::string customer = new_customer();
    std::vector<LoopEvent> events;
    for (int i = 0; i < 400; ++i) events.push_back(bulky_event(i));

    const std::size_t acknowledged = append_all(customer, events, 8);
    CHECK(acknowledged > 0);
    CHECK(acknowledged < events.size());
    CHECK(count("SELECT COUNT(*) FROM stored_events") ==
          static_cast<std::int64_t>(acknowledged));
    CHECK(rollup_differences(db_path()) == "");
    CHECK(reopen() == "ok");
    CHECK(count("SELECT COUNT(*) FROM stored_events") ==
          static_cast<std::int64_t>(acknowledged));
  }

  TEST_CASE_FIXTURE(StoreFixture, "a lock held by another process is busy") {
    SqliteTuning quick;
    quick.busy_timeout_ms = 100;
    REQUIRE(open(quick) == "ok");
    const std::string customer = new_customer();
    CHECK(store->append(customer, make_event(kNow)));

    SQLite::Database other(db_path().string(), SQLite::OPEN_READWRITE);
    other.exec("BEGIN IMMEDIATE");
    const auto blocked = store->append(customer, make_event(kNow));
    CHECK(code_of(blocked) == "busy");
    CHECK(message_of(blocked) == "append: the database is locked; retry later");
    CHECK(code_of(store->create_customer("B", std::nullopt)) == "busy");
    // WAL readers are not blocked by the writer lock.
    CHECK(must(store->stats(stats_query(customer))).totals.event_count == 1);
    other.exec("ROLLBACK");

    CHECK(store->append(customer, make_event(kNow)));
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 2);
  }

  TEST_CASE_FIXTURE(StoreFixture, "the log receives diagnostics") {
    REQUIRE(open() == "ok");
    (void)new_customer();
    CHECK(store->close());
    std::lock_guard lock(log_mutex);
    CHECK(!log_lines.empty());
    CHECK(contains(log_lines.front(), "schema migrated from version 0 to 2"));
  }

}  // TEST_SUITE
