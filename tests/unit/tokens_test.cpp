// Customer ids, tokens and their hashes; issuing, authenticating, rotating,
// revoking and deleting through the store.
#include "tokens.hpp"
#include "store_fixture.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <set>
#include <thread>

using namespace lgr;
using namespace lgr::test;

namespace {

bool is_lower_hex(std::string_view text) {
  return text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

bool is_base64url(std::string_view text) {
  return text.find_first_not_of(
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
             "0123456789-_") == std::string_view::npos;
}

// Who `token` authenticates as: the customer id, "none", or the error code.
std::string who(Store& store, std::string_view token) {
  auto result = store.authenticate(token);
  if (!result) return code_of(result);
  return result->value_or("none");
}

// What an ingest with `token` gets, through the ingest path's token check
// and append: the customer the event was stored for, "none" when the token
// authenticates nobody, or the error code of the append.
std::string ingest_as(Store& store, std::string_view token) {
  auto who = store.authenticate_ingest(token);
  if (!who) return code_of(who);
  if (!*who) return "none";
  const Status stored = store.append_for(**who, make_event(kNow));
  if (!stored) return code_of(stored);
  return (*who)->customer_id;
}

std::int64_t events_of(const std::filesystem::path& db,
                       const std::string& customer_id) {
  return query_int(db,
                   "SELECT COUNT(*) FROM stored_events WHERE customer_id"
                   " = '" +
                       customer_id + "'");
}

}  // namespace

TEST_SUITE("tokens") {
  TEST_CASE("customer ids are cust_ and 16 lowercase hex digits") {
    std::set<std::string> seen;
    for (int i = 0; i < 1000; ++i) {
      const std::string id = must(tokens::new_customer_id());
      REQUIRE(id.size() == tokens::kCustomerIdLength);
      REQUIRE(id.substr(0, 5) == "cust_");
      REQUIRE(is_lower_hex(id.substr(5)));
      seen.insert(id);
    }
    CHECK(seen.size() == 1000);
  }

  TEST_CASE("tokens are lgk_ and 32 base64url characters") {
    std::set<std::string> seen;
    for (int i = 0; i < 1000; ++i) {
      const std::string token = must(tokens::new_token());
      REQUIRE(token.size() == 36);
      REQUIRE(token.substr(0, 4) == "lgk_");
      REQUIRE(is_base64url(token.substr(4)));
      REQUIRE(tokens::has_token_shape(token));
      seen.insert(token);
    }
    CHECK(seen.size() == 1000);
  }

  TEST_CASE("token shape check") {
    CHECK(tokens::has_token_shape("lgk_" + std::string(32, 'A')));
    CHECK(tokens::has_token_shape("lgk_" + std::string(31, 'A') + "-"));
    CHECK_FALSE(tokens::has_token_shape(""));
    CHECK_FALSE(tokens::has_token_shape("lgk_" + std::string(31, 'A')));
    CHECK_FALSE(tokens::has_token_shape("lgk_" + std::string(33, 'A')));
    CHECK_FALSE(tokens::has_token_shape("lgx_" + std::string(32, 'A')));
    CHECK_FALSE(tokens::has_token_shape("lgk_" + std::string(31, 'A') + "="));
    CHECK_FALSE(tokens::has_token_shape("lgk_" + std::string(31, 'A') + "+"));
  }

  TEST_CASE("token hashes are SHA-256 in lowercase hex") {
    CHECK(must(tokens::hash_token("")) ==
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(must(tokens::hash_token("abc")) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(must(tokens::hash_token(std::string_view("a\0b", 3))).size() == 64);
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "an issued token authenticates its customer") {
    REQUIRE(open() == "ok");
    auto issued = store->create_customer("Acme", std::string_view("a@b.test"));
    REQUIRE(issued);
    CHECK(issued->customer_id.size() == 21);
    CHECK(tokens::has_token_shape(issued->token));
    CHECK(who(*store, issued->token) == issued->customer_id);
    CHECK(who(*store, issued->token + "x") == "none");
    CHECK(who(*store, "") == "none");
    CHECK(who(*store, "Bearer " + issued->token) == "none");
    CHECK(who(*store, std::string(100000, 'z')) == "none");

    // Only the hash is stored; the plain token is nowhere in the file.
    CHECK(query_text(db_path(), "SELECT token_hash FROM tokens") ==
          must(tokens::hash_token(issued->token)));
    CHECK(store->close());
    CHECK(file_bytes(db_path()).find(issued->token.substr(4)) ==
          std::string::npos);
  }

  TEST_CASE_FIXTURE(StoreFixture, "list_customers reports each customer") {
    REQUIRE(open() == "ok");
    auto first = store->create_customer("First", std::string_view("f@x.test"));
    clock = kNow + 10;
    auto second = store->create_customer("Second", std::nullopt);
    REQUIRE(first);
    REQUIRE(second);
    CHECK(store->append(second->customer_id, make_event(kNow)));
    CHECK(store->append(second->customer_id, make_event(kNow - kHour)));
    CHECK(store->rotate_token(second->customer_id, 60));

    const auto list = must(store->list_customers());
    REQUIRE(list.size() == 2);
    CHECK(list[0].customer_id == first->customer_id);
    CHECK(list[0].name == "First");
    CHECK(list[0].email == std::optional<std::string>("f@x.test"));
    CHECK(list[0].created_at == kNow);
    CHECK(list[0].last_seen_at == std::nullopt);
    CHECK(list[0].active_tokens == 1);
    CHECK(list[0].event_count == 0);
    CHECK(list[1].name == "Second");
    CHECK(list[1].email == std::nullopt);
    CHECK(list[1].created_at == kNow + 10);
    CHECK(list[1].active_tokens == 2);
    CHECK(list[1].event_count == 2);
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "rotation without grace stops the old token") {
    REQUIRE(open() == "ok");
    auto issued = store->create_customer("Acme", std::nullopt);
    REQUIRE(issued);
    auto rotated = store->rotate_token(issued->customer_id, 0);
    REQUIRE(rotated);
    CHECK(*rotated != issued->token);
    CHECK(who(*store, issued->token) == "none");
    CHECK(who(*store, *rotated) == issued->customer_id);
    CHECK(must(store->list_customers()).at(0).active_tokens == 1);
  }

  TEST_CASE_FIXTURE(StoreFixture, "rotation with grace overlaps the tokens") {
    REQUIRE(open() == "ok");
    auto issued = store->create_customer("Acme", std::nullopt);
    REQUIRE(issued);
    auto rotated = store->rotate_token(issued->customer_id, 3600);
    REQUIRE(rotated);
    CHECK(who(*store, issued->token) == issued->customer_id);
    CHECK(who(*store, *rotated) == issued->customer_id);
    clock = kNow + 3599;
    CHECK(who(*store, issued->token) == issued->customer_id);
    clock = kNow + 3600;
    CHECK(who(*store, issued->token) == "none");
    CHECK(who(*store, *rotated) == issued->customer_id);
  }

  TEST_CASE_FIXTURE(StoreFixture, "a later rotation never extends an expiry") {
    REQUIRE(open() == "ok");
    auto issued = store->create_customer("Acme", std::nullopt);
    REQUIRE(issued);
    auto second = store->rotate_token(issued->customer_id, 60);
    REQUIRE(second);
    auto third = store->rotate_token(issued->customer_id, 600);
    REQUIRE(third);
    clock = kNow + 60;
    CHECK(who(*store, issued->token) == "none");
    CHECK(who(*store, *second) == issued->customer_id);
    clock = kNow + 600;
    CHECK(who(*store, *second) == "none");
    CHECK(who(*store, *third) == issued->customer_id);
  }

  TEST_CASE_FIXTURE(StoreFixture, "revoking stops every token, keeps events") {
    REQUIRE(open() == "ok");
    auto issued = store->create_customer("Acme", std::nullopt);
    REQUIRE(issued);
    auto rotated = store->rotate_token(issued->customer_id, 3600);
    REQUIRE(rotated);
    CHECK(store->append(issued->customer_id, make_event(kNow)));
    CHECK(store->revoke_customer(issued->customer_id));
    CHECK(who(*store, issued->token) == "none");
    CHECK(who(*store, *rotated) == "none");
    CHECK(must(store->list_customers()).at(0).active_tokens == 0);
    CHECK(must(store->list_customers()).at(0).event_count == 1);

    // A fresh rotation gives the customer a working token again.
    auto fresh = store->rotate_token(issued->customer_id, 0);
    REQUIRE(fresh);
    CHECK(who(*store, *fresh) == issued->customer_id);
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "deleting removes the customer and its data") {
    REQUIRE(open() == "ok");
    auto issued = store->create_customer("Acme", std::nullopt);
    const std::string other = new_customer("Other");
    REQUIRE(issued);
    // Each has one event folded and one still in the ingest log.
    CHECK(store->append(issued->customer_id, make_event(kNow)));
    CHECK(store->append(other, make_event(kNow)));
    REQUIRE(fold_by_reopening() == "ok");
    CHECK(store->append(issued->customer_id, make_event(kNow)));
    CHECK(store->append(other, make_event(kNow)));
    CHECK(store->delete_customer(issued->customer_id));

    CHECK(who(*store, issued->token) == "none");
    CHECK(must(store->list_customers()).size() == 1);
    CHECK(must(store->list_customers()).front().event_count == 2);
    CHECK(count("SELECT COUNT(*) FROM tokens") == 1);
    CHECK(count("SELECT COUNT(*) FROM stored_events") == 2);
    CHECK(count("SELECT COUNT(*) FROM loop_events") == 1);
    CHECK(count("SELECT COUNT(*) FROM ingest_log") == 1);
    CHECK(count("SELECT COUNT(*) FROM fold_marks") == 1);
    CHECK(count("SELECT COUNT(*) FROM hourly_outcomes") == 1);
    CHECK(count("SELECT COUNT(*) FROM daily_outcomes") == 1);
    CHECK(count("SELECT COUNT(*) FROM hourly_workloads") == 1);
    CHECK(count("SELECT COUNT(*) FROM daily_workloads") == 1);
    CHECK(code_of(store->delete_customer(issued->customer_id)) ==
          "customer_not_found");
    CHECK(code_of(store->append(issued->customer_id, make_event(kNow))) ==
          "customer_not_found");
  }

  TEST_CASE_FIXTURE(StoreFixture, "an unknown customer is customer_not_found") {
    REQUIRE(open() == "ok");
    const std::string nobody = "cust_0123456789abcdef";
    CHECK(code_of(store->rotate_token(nobody, 0)) == "customer_not_found");
    CHECK(code_of(store->revoke_customer(nobody)) == "customer_not_found");
    CHECK(code_of(store->delete_customer(nobody)) == "customer_not_found");
    CHECK(count("SELECT COUNT(*) FROM tokens") == 0);
  }

  TEST_CASE_FIXTURE(StoreFixture, "bad arguments are invalid_argument") {
    REQUIRE(open() == "ok");
    const std::string customer = new_customer();
    CHECK(code_of(store->create_customer("", std::nullopt)) ==
          "invalid_argument");
    CHECK(code_of(store->rotate_token(customer, -1)) == "invalid_argument");
    CHECK(store->rotate_token(customer, INT64_MAX));
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "last_seen_at is written at most once a minute") {
    REQUIRE(open() == "ok");
    auto issued = store->create_customer("Acme", std::nullopt);
    REQUIRE(issued);
    const auto last_seen = [&] {
      // Any acknowledged write is ordered after the pending touch.
      REQUIRE(store->append(issued->customer_id, make_event(kNow)));
      return must(store->list_customers()).at(0).last_seen_at.value_or(-1);
    };

    CHECK(last_seen() == -1);
    CHECK(who(*store, issued->token) == issued->customer_id);
    CHECK(last_seen() == kNow);
    clock = kNow + 59;
    CHECK(who(*store, issued->token) == issued->customer_id);
    CHECK(last_seen() == kNow);
    clock = kNow + 60;
    CHECK(who(*store, issued->token) == issued->customer_id);
    CHECK(last_seen() == kNow + 60);

    // close() flushes a pending touch.
    clock = kNow + 200;
    CHECK(who(*store, issued->token) == issued->customer_id);
    CHECK(reopen() == "ok");
    CHECK(must(store->list_customers()).at(0).last_seen_at ==
          std::optional<std::int64_t>(kNow + 200));
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "a last_seen_at update with no write to join is written "
                    "on its own") {
    REQUIRE(open() == "ok");
    auto issued = store->create_customer("Acme", std::nullopt);
    REQUIRE(issued);
    CHECK(who(*store, issued->token) == issued->customer_id);

    // Only reads follow. The writer waits a second for a write to carry the
    // update, then commits it alone; the bound is generous for a loaded
    // machine, not a performance check.
    std::int64_t seen = -1;
    const auto give_up =
        std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (seen != kNow && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      seen = must(store->list_customers()).at(0).last_seen_at.value_or(-1);
    }
    CHECK(seen == kNow);
  }

  // authenticate_ingest() may answer from the store's token cache; these
  // check that no answer from it lets a revoked token store an event.
  TEST_CASE_FIXTURE(StoreFixture,
                    "an ingest credential is refused at the commit once its "
                    "token was revoked here") {
    REQUIRE(open() == "ok");
    auto issued = store->create_customer("Acme", std::nullopt);
    REQUIRE(issued);
    const std::string& id = issued->customer_id;
    const auto who = must(store->authenticate_ingest(issued->token));
    REQUIRE(who.has_value());
    CHECK(who->customer_id == id);
    CHECK(who->token_hash == must(tokens::hash_token(issued->token)));
    CHECK(store->append_for(*who, make_event(kNow)));
    CHECK(ingest_as(*store, issued->token) == id);

    // Checked before the revocation, committed after it.
    CHECK(store->revoke_customer(id));
    const Status late = store->append_for(*who, make_event(kNow));
    CHECK(code_of(late) == "unauthorized");
    CHECK(message_of(late) ==
          "append: the bearer token stopped working before the event was "
          "committed");
    std::promise<Status> stored;
    REQUIRE(store->append_for_async(
        *who, make_event(kNow),
        [&stored](Status status) { stored.set_value(std::move(status)); }));
    CHECK(code_of(stored.get_future().get()) == "unauthorized");
    CHECK(ingest_as(*store, issued->token) == "none");
    CHECK(events_of(db_path(), id) == 2);
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "a token revoked by another connection stops ingest at "
                    "once") {
    REQUIRE(open() == "ok");
    auto revoked = store->create_customer("Revoked", std::nullopt);
    auto kept = store->create_customer("Kept", std::nullopt);
    REQUIRE(revoked);
    REQUIRE(kept);
    CHECK(ingest_as(*store, revoked->token) == revoked->customer_id);
    CHECK(ingest_as(*store, revoked->token) == revoked->customer_id);
    CHECK(ingest_as(*store, kept->token) == kept->customer_id);

    // As the admin CLI in another process would.
    execute(db_path(), "UPDATE tokens SET revoked_at = " +
                           std::to_string(kNow) + " WHERE customer_id = '" +
                           revoked->customer_id + "'");
    // The cached token passes the first check; the commit refuses it.
    CHECK(ingest_as(*store, revoked->token) == "unauthorized");
    CHECK(ingest_as(*store, revoked->token) == "none");
    CHECK(ingest_as(*store, kept->token) == kept->customer_id);
    CHECK(events_of(db_path(), revoked->customer_id) == 2);
    CHECK(events_of(db_path(), kept->customer_id) == 2);
  }

  TEST_CASE_FIXTURE(StoreFixture,
                    "a cached token still stops at the end of its grace") {
    REQUIRE(open() == "ok");
    auto issued = store->create_customer("Acme", std::nullopt);
    REQUIRE(issued);
    auto rotated = store->rotate_token(issued->customer_id, 60);
    REQUIRE(rotated);
    CHECK(ingest_as(*store, issued->token) == issued->customer_id);
    clock = kNow + 59;
    CHECK(ingest_as(*store, issued->token) == issued->customer_id);
    const auto who = must(store->authenticate_ingest(issued->token));
    REQUIRE(who.has_value());
    CHECK(who->expires_at == std::optional<std::int64_t>(kNow + 60));
    clock = kNow + 60;
    // Checked before the end of the grace, committed at it.
    CHECK(code_of(store->append_for(*who, make_event(kNow))) ==
          "unauthorized");
    CHECK(ingest_as(*store, issued->token) == "none");
    CHECK(ingest_as(*store, *rotated) == issued->customer_id);
    CHECK(events_of(db_path(), issued->customer_id) == 3);
  }

}  // TEST_SUITE
