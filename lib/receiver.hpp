// The receiver: one object that composes the validator, the store and the
// clock, and offers what the C API and the route table need — ingest,
// authentication, the three reads as JSON, and customer administration.
//
// Thread safety: every method may be called concurrently. close() waits for
// calls in flight, then closes the store; calls after it fail with
// ErrorCode::closed.
#pragma once

#include "error.hpp"
#include "payload_validator.hpp"
#include "privacy_policy.hpp"
#include "store.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace lgr {

struct ReceiverOptions {
  std::string db_path = "./var/telemetry.db";
  PrivacyPolicy policy = PrivacyPolicy::summary_only;
  std::size_t max_body_bytes = 256 * 1024;
  std::vector<std::string> cors_origins;  // exact-match allow list
  LogFunction log;                        // may be empty
  int log_min_level = 1;                  // lgr_log_level
  std::int64_t fixed_time = 0;            // 0: the system clock
};

struct IngestOutcome {
  std::string customer_id;
  std::vector<std::string> redacted;
  std::vector<std::string> ignored;
};

// Reads are answered for windows measured back from "now".
inline constexpr std::int64_t kStatsWindowDays = 30;
inline constexpr int kMaxSinceHours = 8760;
inline constexpr int kProfilesLimit = 1000;
inline constexpr int kEventsLimit = 500;
inline constexpr int kWorkloadsLimit = 50;
inline constexpr std::size_t kMaxWorkloadIdChars = 200;

class Receiver {
 public:
  static Result<std::unique_ptr<Receiver>> open(ReceiverOptions options);

  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;
  ~Receiver();

  // Seconds since the epoch: the fixed time if one was set.
  std::int64_t now() const;

  // `authorization` is a raw Authorization header value.
  Result<std::string> authenticate(std::string_view authorization);
  // authenticate() for an ingest, possibly answered from the store's token
  // cache: the store checks the token again when it commits the event
  // (Store::authenticate_ingest). Reads use authenticate().
  Result<IngestCredential> authenticate_ingest(std::string_view authorization);
  Result<IngestOutcome> ingest(std::string_view authorization,
                               std::string_view body);
  // Validates and stores for a customer the host has already
  // authenticated.
  Result<IngestOutcome> ingest_for(std::string_view customer_id,
                                   std::string_view body);
  // The same for a credential from authenticate_ingest(): unauthorized,
  // with nothing stored, if the token stopped working before the commit.
  Result<IngestOutcome> ingest_for(const IngestCredential& who,
                                   std::string_view body);

  // Must not throw.
  using IngestDone = std::function<void(Result<IngestOutcome>)>;
  // ingest_for() without holding the caller while the event waits for its
  // commit. `done` is called exactly once: on the calling thread, before
  // this returns, when the payload or the store refuses it at once; else
  // from the store's writer thread after the commit (see
  // Store::append_async). `body` is read before this returns.
  void ingest_for_async(std::string_view customer_id, std::string_view body,
                        IngestDone done);
  void ingest_for_async(const IngestCredential& who, std::string_view body,
                        IngestDone done);

  Result<std::string> stats_json(std::string_view customer_id);
  // since_hours 0 means the default 30-day window.
  Result<std::string> profiles_json(std::string_view customer_id,
                                    std::optional<std::string_view> workload,
                                    int since_hours);
  Result<std::string> events_json(std::string_view customer_id,
                                  bool rollbacks_only);

  Result<IssuedToken> create_customer(std::string_view name,
                                      std::optional<std::string_view> email);
  Result<std::string> rotate_token(std::string_view customer_id,
                                   std::int64_t grace_seconds);
  Status revoke_customer(std::string_view customer_id);
  Status delete_customer(std::string_view customer_id);
  Result<std::string> customers_json();

  Status close();
  bool closed() const { return closed_.load(); }

  const ReceiverOptions& options() const { return options_; }
  bool cors_origin_allowed(std::string_view origin) const;
  void log(int level, std::string_view message) const;

 private:
  Receiver(ReceiverOptions options, std::unique_ptr<Store> store);

  // Holds the shared side of the lifecycle lock for one call, or reports
  // that the receiver is closed.
  class Call;

  ReceiverOptions options_;
  PayloadValidator validator_;
  std::unique_ptr<Store> store_;
  mutable std::shared_mutex lifecycle_;
  std::atomic<bool> closed_{false};
  bool store_closed_ = false;  // guarded by lifecycle_
};

// The error for a request whose token authenticated a customer that was
// deleted before the request finished: unauthorized, like any token that
// no longer works.
Error token_owner_gone();

// Extracts the token from "Bearer <token>" (scheme case-insensitive, spaces
// around the token ignored). Anything else yields "", which authenticates
// as nobody through the same code path as an unknown token.
std::string_view bearer_token(std::string_view authorization);

// ASCII case-insensitive equality (HTTP schemes and media types).
bool ascii_iequals(std::string_view a, std::string_view b);

// True if `s` is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view s);

// Code points in `s`, which must be valid UTF-8.
std::size_t utf8_length(std::string_view s);

}  // namespace lgr
