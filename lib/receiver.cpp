#include "receiver.hpp"

#include "payload_rules.hpp"
#include "read_json.hpp"

#include <chrono>
#include <mutex>
#include <thread>

namespace lgr {

namespace {

Error closed_error() {
  return make_error(ErrorCode::closed, "", "the receiver is closed");
}

// Seconds since the epoch: `fixed` when set (tests and replays), else the
// system clock.
std::int64_t clock_seconds(std::int64_t fixed) {
  if (fixed != 0) return fixed;
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}


std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

bool ascii_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

namespace {

Error no_valid_token() {
  return make_error(ErrorCode::unauthorized, "",
                    "a valid bearer token is required");
}

// A customer the host authenticated: no token for the store to re-check.
IngestCredential host_authenticated(std::string_view customer_id) {
  return IngestCredential{std::string(customer_id), {}, 0, std::nullopt};
}

}  // namespace

Error token_owner_gone() {
  // The token was valid a moment ago and its customer was deleted since:
  // to the caller that is simply a token that no longer works.
  return no_valid_token();
}

std::string_view bearer_token(std::string_view authorization) {
  std::string_view h = trim_spaces(authorization);
  constexpr std::string_view kScheme = "bearer";
  if (h.size() <= kScheme.size() ||
      !ascii_iequals(h.substr(0, kScheme.size()), kScheme) ||
      (h[kScheme.size()] != ' ' && h[kScheme.size()] != '\t')) {
    return {};
  }
  return trim_spaces(h.substr(kScheme.size()));
}

bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int extra;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      extra = 1;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      cp = c & 0x07u;
    } else {
      return false;  // continuation byte first, overlong lead, or > U+10FFFF
    }
    if (end - p <= extra) return false;
    for (int i = 1; i <= extra; ++i) {
      if ((p[i] & 0xC0u) != 0x80u) return false;
      cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    // Overlong three- and four-byte forms, surrogates, beyond Unicode.
    if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    p += extra + 1;
  }
  return true;
}

std::size_t utf8_length(std::string_view s) {
  std::size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0u) != 0x80u) ++n;
  }
  return n;
}

// A call in flight: shares the lifecycle lock so close() waits for it.
// It never waits for the lock itself. close() raises closed_ before it
// takes the lock exclusively, so a failed try-lock with closed_ still low
// was spurious; and a call made while close() drains the store (from an
// append callback on the writer thread) must fail, not wait for close().
class Receiver::Call {
 public:
  explicit Call(const Receiver& r) : lock_(r.lifecycle_, std::defer_lock) {
    for (;;) {
      if (r.closed()) return;
      if (lock_.try_lock()) {
        closed_ = r.closed();
        return;
      }
      std::this_thread::yield();
    }
  }
  bool closed() const { return closed_; }

 private:
  std::shared_lock<std::shared_mutex> lock_;
  bool closed_ = true;
};

Result<std::unique_ptr<Receiver>> Receiver::open(ReceiverOptions options) {
  SqliteStoreOptions store_options;
  store_options.path = options.db_path;
  // The store logs through the same level filter as the receiver.
  if (options.log) {
    store_options.log = [log = options.log, min = options.log_min_level](
                            int level, std::string_view message) {
      if (level >= min) log(level, message);
    };
  }
  // The store stamps tokens and rows with the receiver's clock.
  store_options.now = [fixed = options.fixed_time] {
    return clock_seconds(fixed);
  };

  auto store = open_sqlite_store(std::move(store_options));
  if (!store) return store.error();
  return std::unique_ptr<Receiver>(
      new Receiver(std::move(options), std::move(*store)));
}

Receiver::Receiver(ReceiverOptions options, std::unique_ptr<Store> store)
    : options_(std::move(options)),
      validator_(ValidatorOptions{options_.max_body_bytes, options_.policy}),
      store_(std::move(store)) {}

Receiver::~Receiver() { (void)close(); }

std::int64_t Receiver::now() const {
  return clock_seconds(options_.fixed_time);
}

void Receiver::log(int level, std::string_view message) const {
  // The level is checked before anything is formatted by callers that
  // build messages; here it guards the callback itself.
  if (options_.log && level >= options_.log_min_level) {
    options_.log(level, message);
  }
}

bool Receiver::cors_origin_allowed(std::string_view origin) const {
  for (const auto& allowed : options_.cors_origins) {
    if (allowed == origin) return true;
  }
  return false;
}

Result<std::string> Receiver::authenticate(std::string_view authorization) {
  Call call(*this);
  if (call.closed()) return closed_error();
  // An absent or malformed header still goes through hash-and-lookup with
  // an empty token, so timing does not tell the cases apart.
  auto customer = store_->authenticate(bearer_token(authorization));
  if (!customer) return customer.error();
  if (!*customer) return no_valid_token();
  return std::move(**customer);
}

Result<IngestCredential> Receiver::authenticate_ingest(
    std::string_view authorization) {
  Call call(*this);
  if (call.closed()) return closed_error();
  // Every header is hashed, as in authenticate(); a token the store has
  // cached skips the lookup, which only tells the token's own holder that
  // it was used lately.
  auto who = store_->authenticate_ingest(bearer_token(authorization));
  if (!who) return who.error();
  if (!*who) return no_valid_token();
  return std::move(**who);
}

Result<IngestOutcome> Receiver::ingest(std::string_view authorization,
                                       std::string_view body) {
  auto who = authenticate_ingest(authorization);
  if (!who) return who.error();
  auto outcome = ingest_for(*who, body);
  if (!outcome && outcome.error().code == ErrorCode::customer_not_found) {
    return token_owner_gone();
  }
  return outcome;
}

Result<IngestOutcome> Receiver::ingest_for(std::string_view customer_id,
                                           std::string_view body) {
  return ingest_for(host_authenticated(customer_id), body);
}

Result<IngestOutcome> Receiver::ingest_for(const IngestCredential& who,
                                           std::string_view body) {
  Call call(*this);
  if (call.closed()) return closed_error();
  auto validated = validator_.validate(body, now());
  if (!validated) return validated.error();

  auto stored = store_->append_for(who, validated->event);
  if (!stored) return stored.error();
  return IngestOutcome{who.customer_id,
                       std::move(validated->redacted),
                       std::move(validated->ignored)};
}

void Receiver::ingest_for_async(std::string_view customer_id,
                                std::string_view body, IngestDone done) {
  ingest_for_async(host_authenticated(customer_id), body, std::move(done));
}

void Receiver::ingest_for_async(const IngestCredential& who,
                                std::string_view body, IngestDone done) {
  Error refusal;
  // Holds `done` from the moment the payload is valid; the store takes it
  // only if it accepts the event.
  Store::AppendDone on_stored;
  {
    Call call(*this);
    if (call.closed()) {
      refusal = closed_error();
    } else if (auto validated = validator_.validate(body, now()); !validated) {
      refusal = validated.error();
    } else {
      IngestOutcome accepted{who.customer_id,
                             std::move(validated->redacted),
                             std::move(validated->ignored)};
      on_stored = [accepted = std::move(accepted),
                   done = std::move(done)](Status stored) mutable {
        if (stored) {
          done(std::move(accepted));
          return;
        }
        // On the writer thread nothing may throw past here: without
        // memory for a copy of the message, the code alone still answers.
        Error error;
        try {
          error = stored.error();
        } catch (...) {
          error.code = ErrorCode::internal_error;
        }
        done(std::move(error));
      };
      Status queued = store_->append_for_async(
          who, std::move(validated->event), std::move(on_stored));
      if (queued) return;
      refusal = queued.error();
    }
  }
  // Outside the call, so that `done` may call in again or close().
  if (on_stored) {
    on_stored(refusal);
  } else {
    done(std::move(refusal));
  }
}

Result<std::string> Receiver::stats_json(std::string_view customer_id) {
  Call call(*this);
  if (call.closed()) return closed_error();
  const std::int64_t since = now() - kStatsWindowDays * 86400;
  auto stats = store_->stats(
      StatsQuery{std::string(customer_id), since, kWorkloadsLimit});
  if (!stats) return stats.error();
  return render_stats(customer_id, kStatsWindowDays, since, *stats);
}

Result<std::string> Receiver::profiles_json(
    std::string_view customer_id, std::optional<std::string_view> workload,
    int since_hours) {
  Call call(*this);
  if (call.closed()) return closed_error();
  if (since_hours < 0 || since_hours > kMaxSinceHours) {
    return make_error(ErrorCode::invalid_query, "since_hours",
                      "must be a whole number of hours from 1 to 8760");
  }
  // The payload's rules for labels: a value no payload could carry can
  // match nothing, and is refused rather than answered with an empty list.
  if (workload &&
      check_label(*workload, kMaxWorkloadIdChars) != LabelProblem::none) {
    return make_error(ErrorCode::invalid_query, "workload_id",
                      "must be 1 to 200 printable characters on one line");
  }
  const std::int64_t window =
      since_hours == 0 ? kStatsWindowDays * 86400
                       : static_cast<std::int64_t>(since_hours) * 3600;
  ProfilesQuery query;
  query.customer_id = std::string(customer_id);
  if (workload) query.workload_id = std::string(*workload);
  query.since = now() - window;
  query.limit = kProfilesLimit;
  auto rows = store_->profiles(query);
  if (!rows) return rows.error();
  return render_profiles(customer_id, workload, *rows);
}

Result<std::string> Receiver::events_json(std::string_view customer_id,
                                          bool rollbacks_only) {
  Call call(*this);
  if (call.closed()) return closed_error();
  EventsQuery query;
  query.customer_id = std::string(customer_id);
  query.since = now() - kStatsWindowDays * 86400;
  query.rollbacks_only = rollbacks_only;
  query.limit = kEventsLimit;
  auto rows = store_->events(query);
  if (!rows) return rows.error();
  return render_events(customer_id, *rows);
}

Result<IssuedToken> Receiver::create_customer(
    std::string_view name, std::optional<std::string_view> email) {
  Call call(*this);
  if (call.closed()) return closed_error();
  return store_->create_customer(name, email);
}

Result<std::string> Receiver::rotate_token(std::string_view customer_id,
                                           std::int64_t grace_seconds) {
  Call call(*this);
  if (call.closed()) return closed_error();
  return store_->rotate_token(customer_id, grace_seconds);
}

Status Receiver::revoke_customer(std::string_view customer_id) {
  Call call(*this);
  if (call.closed()) return closed_error();
  return store_->revoke_customer(customer_id);
}

Status Receiver::delete_customer(std::string_view customer_id) {
  Call call(*this);
  if (call.closed()) return closed_error();
  return store_->delete_customer(customer_id);
}

Result<std::string> Receiver::customers_json() {
  Call call(*this);
  if (call.closed()) return closed_error();
  auto customers = store_->list_customers();
  if (!customers) return customers.error();
  return render_customers(*customers);
}

Status Receiver::close() {
  // From an append callback: close() would wait for the very thread it
  // runs on. Refused before anything changes, so the receiver stays open.
  if (store_->on_commit_thread()) {
    return make_error(ErrorCode::internal_error, "",
                      "close: called from a completion callback on the "
                      "store's writer thread");
  }
  // Raise the flag first so that new calls fail fast instead of queueing
  // behind the exclusive lock, which then waits for the calls in flight.
  closed_.store(true);
  std::unique_lock lock(lifecycle_);
  if (store_closed_) return {};
  store_closed_ = true;
  return store_->close();
}

}  // namespace lgr
