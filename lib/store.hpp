// The storage interface: customers, tokens, loop events and the reads.
//
// Everything that touches a database goes through lgr::Store, so that a
// second backend (PostgreSQL, for several hosts sharing one store) can be
// added beside the SQLite one without touching the validator, the routes or
// the C API. No SQL appears outside the backend's own files.
//
// TODO(#store-backends): only SQLite exists (open_sqlite_store below);
// several machines sharing one store need the PostgreSQL backend this
// interface is shaped for. Idempotency keys, per-customer limits and
// retention belong here too and are not done yet.
//
// Contract for every backend:
// - Thread safety: one Store is used concurrently from many threads.
// - append() returns only after the event is durably committed, and
//   append_async() calls back only then; a failed append leaves nothing of
//   the event behind.
// - Every read is scoped to one customer id and never returns another's rows.
// - close() is idempotent; after it every call fails with ErrorCode::closed.
#pragma once

#include "error.hpp"
#include "loop_event.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lgr {

// ---- Customers and tokens -------------------------------------------------

struct IssuedToken {
  std::string customer_id;  // "cust_" + 16 lowercase hex
  std::string token;        // "lgk_" + 32 base64url; shown exactly once
};

struct CustomerInfo {
  std::string customer_id;
  std::string name;
  std::optional<std::string> email;
  std::int64_t created_at = 0;
  std::optional<std::int64_t> last_seen_at;
  std::int64_t active_tokens = 0;
  std::int64_t event_count = 0;
};

// What Store::authenticate_ingest() found: the customer, and what the
// backend needs to check the token again when the event is committed.
struct IngestCredential {
  std::string customer_id;
  // The token's hash as the backend stores it; empty when the host
  // authenticated the customer itself, which leaves nothing to re-check.
  std::string token_hash;
  // The backend's own mark of the state that vouched for the token (for
  // SQLite, the generation of its token cache); 0 where it keeps none.
  std::uint64_t checked_generation = 0;
  // When the token stops working if nothing else changes (the end of a
  // rotation's grace), in seconds since the epoch; nullopt: no end set.
  std::optional<std::int64_t> expires_at;
};

// ---- Reads ------------------------------------------------------------------

struct OutcomeCount {
  std::string outcome;
  std::int64_t count = 0;
};

struct WorkloadCount {
  std::optional<std::string> workload_id;  // null workloads count together
  std::int64_t count = 0;
};

struct StatsTotals {
  std::int64_t event_count = 0;
  std::int64_t total_iterations = 0;
  std::int64_t total_savings = 0;
  std::int64_t rollbacks = 0;
};

struct Stats {
  std::vector<OutcomeCount> outcomes;    // ordered by count desc, outcome asc
  StatsTotals totals;
  std::vector<WorkloadCount> workloads;  // top `workload_limit` by count desc
};

struct StatsQuery {
  std::string customer_id;
  std::int64_t since = 0;  // inclusive lower bound on timestamp_hour
  int workload_limit = 50;
};

struct ProfileRow {
  std::int64_t timestamp_hour = 0;
  std::optional<std::string> workload_id;
  std::optional<double> profile_min;
  std::optional<double> profile_max;
  std::optional<double> profile_median;
  std::int64_t profile_samples = 0;
  std::string outcome;
  std::int64_t iterations_used = 0;
  std::optional<double> gain_margin;
};

struct ProfilesQuery {
  std::string customer_id;
  std::optional<std::string> workload_id;  // nullopt: every workload
  std::int64_t since = 0;
  int limit = 1000;
};

struct EventRow {
  std::int64_t timestamp_hour = 0;
  std::optional<std::string> workload_id;
  std::string outcome;
  std::int64_t iterations_used = 0;
  std::optional<double> gain_margin;
  std::optional<double> profile_max;
  std::optional<std::int64_t> savings_vs_fixed_cap;
  std::string library_version;
};

struct EventsQuery {
  std::string customer_id;
  std::int64_t since = 0;
  bool rollbacks_only = false;
  int limit = 500;
};

// ---- The interface ----------------------------------------------------------

class Store {
 public:
  virtual ~Store() = default;

  // Customers and tokens.
  virtual Result<IssuedToken> create_customer(
      std::string_view name, std::optional<std::string_view> email) = 0;
  // New token; the customer's other tokens expire after grace_seconds.
  virtual Result<std::string> rotate_token(std::string_view customer_id,
                                           std::int64_t grace_seconds) = 0;
  virtual Status revoke_customer(std::string_view customer_id) = 0;
  virtual Status delete_customer(std::string_view customer_id) = 0;
  virtual Result<std::vector<CustomerInfo>> list_customers() = 0;
  // The customer owning `token` (a plain bearer token, possibly empty or
  // malformed), or nullopt. Always hashes and looks up, whatever the input.
  virtual Result<std::optional<std::string>> authenticate(
      std::string_view token) = 0;

  // authenticate() for an ingest. A backend may answer it from a cache of
  // tokens, because append_for() checks the token again, inside the
  // transaction that commits the event, whenever tokens may have changed
  // since this check (another process may have revoked one), and refuses
  // it past expires_at: no event is committed on a token revoked or expired
  // before that commit. Revocation times come from the revoking process's
  // clock. Reads keep using authenticate(). This default looks the token up
  // every time and leaves nothing to re-check.
  virtual Result<std::optional<IngestCredential>> authenticate_ingest(
      std::string_view token) {
    auto customer = authenticate(token);
    if (!customer) return customer.error();
    if (!*customer) return std::optional<IngestCredential>();
    return std::optional<IngestCredential>(
        IngestCredential{std::move(**customer), {}, 0, std::nullopt});
  }

  // Events. Blocks until the event is committed.
  virtual Status append(std::string_view customer_id,
                        const LoopEvent& event) = 0;

  // Completion of append_async(): the append's status. Must not throw.
  using AppendDone = std::function<void(Status)>;

  // The same append without holding the caller: an error return means the
  // event was refused at once (closed, busy, out of memory); `done` is then
  // left with the caller, never called and not moved from. Otherwise the
  // store has taken `done` and calls it exactly once, once the event is
  // committed or its batch failed, from the thread the backend commits on
  // (possibly before append_async() returns), never from inside this call:
  // the caller may hold locks here that `done` takes. close() returns only
  // after every accepted append's `done` has returned.
  virtual Status append_async(std::string_view customer_id, LoopEvent event,
                              AppendDone&& done) = 0;

  // append() and append_async() for a credential from
  // authenticate_ingest(): fail with ErrorCode::unauthorized, storing
  // nothing, when the token no longer authorizes the customer at the
  // commit. These defaults suit a backend without a token cache.
  virtual Status append_for(const IngestCredential& who,
                            const LoopEvent& event) {
    return append(who.customer_id, event);
  }
  virtual Status append_for_async(const IngestCredential& who, LoopEvent event,
                                  AppendDone&& done) {
    return append_async(who.customer_id, std::move(event), std::move(done));
  }

  // True on the thread that commits queued appends and runs their
  // AppendDone callbacks: a call that waits for that thread must not be
  // made there.
  virtual bool on_commit_thread() const { return false; }

  // Reads.
  virtual Result<Stats> stats(const StatsQuery& query) = 0;
  virtual Result<std::vector<ProfileRow>> profiles(
      const ProfilesQuery& query) = 0;
  virtual Result<std::vector<EventRow>> events(const EventsQuery& query) = 0;

  // Flushes queued work and closes. Idempotent.
  virtual Status close() = 0;
};

// Log sink used by the store and the receiver: level as lgr_log_level.
using LogFunction = std::function<void(int level, std::string_view message)>;

struct SqliteStoreOptions {
  std::string path = "./var/telemetry.db";
  // Seconds since the epoch; the receiver passes its (possibly fixed) clock.
  std::function<std::int64_t()> now;
  LogFunction log;  // may be empty
};

// Opens (creating and migrating if needed) a SQLite-backed store.
Result<std::unique_ptr<Store>> open_sqlite_store(SqliteStoreOptions options);

}  // namespace lgr
