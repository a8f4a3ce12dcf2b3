#include "payload_validator.hpp"

#include "json_tree.hpp"
#include "payload_rules.hpp"
#include "timestamp.hpp"

#include <charconv>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <memory_resource>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

namespace lgr {
namespace {

using json::Kind;
using json::Member;
using json::Value;

// ---------------------------------------------------------------------------
// JSON Pointers. A Path lives on the stack and links to its parent, so that
// descending costs nothing; the pointer text is built only when an error or
// an ignored key needs it.

struct Path {
  const Path* parent = nullptr;  // null for the document root
  std::string_view key;
  std::size_t index = 0;
  bool is_index = false;

  Path child(std::string_view k) const { return Path{this, k, 0, false}; }
  Path item(std::size_t i) const { return Path{this, {}, i, true}; }

  std::string str() const {
    std::string out;
    append_to(out);
    return out;
  }

  void append_to(std::string& out) const {
    if (parent == nullptr) return;
    parent->append_to(out);
    if (is_index)
      json::append_pointer_token(out, std::to_string(index));
    else
      json::append_pointer_token(out, key);
  }
};

Error fail(ErrorCode code, const Path& at, std::string message) {
  return make_error(code, at.str(), std::move(message));
}

Error bad_type(const Path& at, std::string_view expected) {
  std::string message(at.key.empty() ? "value" : at.key);
  message += " must be ";
  message += expected;
  return fail(ErrorCode::invalid_payload, at, std::move(message));
}

// ---------------------------------------------------------------------------
// Scalars.

enum class IntRead { ok, not_integer, out_of_range };

// An integral JSON number (5 and 5.0 alike) within [min, max].
IntRead read_integer(const Value& v, std::int64_t min, std::int64_t max,
                     std::int64_t& out) {
  switch (v.kind) {
    case Kind::int64:
      out = v.int64;
      break;
    case Kind::uint64:
      return IntRead::out_of_range;
    case Kind::number: {
      const double d = v.as_double();
      if (!std::isfinite(d) || std::trunc(d) != d) return IntRead::not_integer;
      // Compare as doubles first: casting a huge double is undefined.
      if (d < static_cast<double>(min) || d > static_cast<double>(max)) {
        return IntRead::out_of_range;
      }
      out = static_cast<std::int64_t>(d);
      break;
    }
    default:
      return IntRead::not_integer;
  }
  return out < min || out > max ? IntRead::out_of_range : IntRead::ok;
}

std::string range_text(std::int64_t min, std::int64_t max) {
  return "an integer from " + std::to_string(min) + " to " +
         std::to_string(max);
}

// Readers: each checks one value at `at` and writes it to `out`.

auto integer_in(std::int64_t min, std::int64_t max) {
  return
      [min, max](const Value& v, const Path& at, std::int64_t& out) -> Status {
        if (read_integer(v, min, max, out) != IntRead::ok) {
          return bad_type(at, range_text(min, max));
        }
        return {};
      };
}

auto finite_at_least(std::optional<double> min) {
  return [min](const Value& v, const Path& at, double& out) -> Status {
    // The parser refuses non-finite numbers; isfinite is belt and braces.
    const bool ok = v.is_number() && std::isfinite(v.as_double()) &&
                    (!min || v.as_double() >= *min);
    if (!ok) return bad_type(at, min ? "a number >= 0" : "a finite number");
    out = v.as_double();
    return {};
  };
}

Status read_bool(const Value& v, const Path& at, bool& out) {
  if (v.kind != Kind::boolean) return bad_type(at, "true or false");
  out = v.boolean;
  return {};
}

auto label_of(std::size_t max_chars) {
  return
      [max_chars](const Value& v, const Path& at, std::string& out) -> Status {
        if (v.kind != Kind::string) return bad_type(at, "a string");
        switch (check_label(v.string(), max_chars)) {
          case LabelProblem::none:
            out.assign(v.string());
            return {};
          case LabelProblem::empty:
            return bad_type(at, "a non-empty string");
          case LabelProblem::too_long:
            return bad_type(at, "at most " + std::to_string(max_chars) +
                                    " characters long");
          case LabelProblem::not_printable:
            return bad_type(at, "printable text on one line");
          case LabelProblem::invalid_utf8:
            break;
        }
        return bad_type(at, "valid UTF-8");
      };
}

Status read_outcome(const Value& v, const Path& at, std::string& out) {
  if (v.kind != Kind::string) return bad_type(at, "a string");
  if (!is_known_outcome(v.string()) && !is_well_formed_outcome(v.string())) {
    return bad_type(at, "1 to 64 characters of a-z, 0-9 and _");
  }
  out.assign(v.string());
  return {};
}

Status read_package_token(const Value& v, const Path& at, std::string& out) {
  if (v.kind != Kind::string) return bad_type(at, "a string");
  if (!is_well_formed_package_token(v.string())) {
    return bad_type(at, "1 to 64 characters of A-Z, a-z, 0-9 and . _ + ! -");
  }
  out.assign(v.string());
  return {};
}

template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};

enum class Need { required, optional };

// Reads obj[key] into `out` with `read`. A missing key is an error when
// required; null is accepted exactly when `out` is a std::optional.
template <class T, class Read>
Status field(const Value& obj, const Path& at, std::string_view key, Need need,
             T& out, Read read) {
  const Path here = at.child(key);
  const Value* v = obj.find(key);
  if (v == nullptr) {
    if (need == Need::optional) return {};
    return fail(ErrorCode::invalid_payload, here,
                "missing required field " + std::string(key));
  }
  if constexpr (IsOptional<T>::value) {
    if (v->is_null()) {
      out.reset();
      return {};
    }
    typename T::value_type value{};
    if (auto s = read(*v, here, value); !s) return s;
    out = std::move(value);
    return {};
  } else {
    return read(*v, here, out);
  }
}

// A required object member; null (no error) when it is absent and
// optional, or present and null.
Result<const Value*> object_field(const Value& obj, const Path& at,
                                  std::string_view key, Need need) {
  const Value* v = obj.find(key);
  if (v == nullptr) {
    if (need == Need::optional) return nullptr;
    return fail(ErrorCode::invalid_payload, at.child(key),
                "missing required field " + std::string(key));
  }
  if (v->is_null() && need == Need::optional) return nullptr;
  if (v->kind != Kind::object) return bad_type(at.child(key), "an object");
  return v;
}

void append_number(std::string& out, double d) {
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof buf, d);
  out.append(buf, res.ptr);
}

// ---------------------------------------------------------------------------
// The payload's objects and what each of their keys is.

enum class Where { root, loop, summary, thresholds, per_iteration };

enum class Role {
  unknown,  // not a payload key here: privacy-scanned, dropped, listed
  kept,     // checked and stored
  dropped,  // checked, not stored, listed (another version's field)
  silent,   // checked, not stored, not listed (the v2/v3 ETA block)
};

Role role_of(Where where, std::string_view key, int version) {
  const auto any = [&](std::initializer_list<std::string_view> keys) {
    for (const std::string_view k : keys) {
      if (k == key) return true;
    }
    return false;
  };
  switch (where) {
    case Where::root:
      if (any({"schema_version", "library", "library_version", "workload_id",
               "timestamp_hour", "loop", "thresholds", "smoothing_window"})) {
        return Role::kept;
      }
      if (any({"framework", "loop_type", "team", "actual_dollars_spent",
               "actual_dollars_saved", "per_iteration"})) {
        return version >= 3 ? Role::kept : Role::dropped;
      }
      return Role::unknown;
    case Where::loop:
      if (any({"outcome", "iterations_used", "savings_vs_fixed_cap",
               "rollback_triggered", "convergence_profile_summary"})) {
        return Role::kept;
      }
      if (key == "gain_margin") {
        return version <= 3 ? Role::kept : Role::dropped;
      }
      if (key == "best_index") {
        return version >= 3 ? Role::kept : Role::dropped;
      }
      if (any({"first_eta_prediction", "first_eta_at_iteration"})) {
        return version == 2 || version == 3 ? Role::silent : Role::unknown;
      }
      return Role::unknown;
    case Where::summary:
      return any({"min", "max", "median", "samples"}) ? Role::kept
                                                      : Role::unknown;
    case Where::thresholds:
      return any({"fast_converge", "converging", "stalling",
                  "oscillating_upper"})
                 ? Role::kept
                 : Role::unknown;
    case Where::per_iteration:
      return any({"error_history", "convergence_profile", "truncated", "cap"})
                 ? Role::kept
                 : Role::unknown;
  }
  return Role::unknown;
}

// The schema object a known key opens, if any.
std::optional<Where> object_under(Where where, std::string_view key) {
  if (where == Where::root && key == "loop") return Where::loop;
  if (where == Where::root && key == "thresholds") return Where::thresholds;
  if (where == Where::root && key == "per_iteration") {
    return Where::per_iteration;
  }
  if (where == Where::loop && key == "convergence_profile_summary") {
    return Where::summary;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// The checks of one payload.

class Checker {
 public:
  Checker(const ValidatorOptions& options, std::int64_t now,
          ValidatedPayload& out)
      : options_(options), now_(now), out_(out), ev_(out.event) {}

  Status run(const Value& root);

 private:
  Status read_schema_version(const Value& root, const Path& at);
  Status scan_privacy(const Value& obj, Where where, const Path& at,
                      bool list_ignored);
  Status read_root(const Value& root, const Path& at);
  Status read_loop(const Value& loop, const Path& at);
  Status read_thresholds(const Value& obj, const Path& at);
  Status read_per_iteration(const Value& obj, const Path& at);
  Status read_series(const Value& v, const Path& at, std::string* json);
  Status read_timestamp(const Value& v, const Path& at, std::int64_t& out);

  bool keeps_per_iteration() const {
    return version_ >= 3 && options_.policy == PrivacyPolicy::trajectories;
  }

  const ValidatorOptions& options_;
  std::int64_t now_;
  ValidatedPayload& out_;
  LoopEvent& ev_;
  int version_ = 0;
};

Status Checker::run(const Value& root) {
  const Path at;
  if (root.kind != Kind::object) {
    return fail(ErrorCode::invalid_payload, at,
                "the payload must be a JSON object");
  }
  if (auto s = read_schema_version(root, at); !s) return s;
  if (auto s = scan_privacy(root, Where::root, at, true); !s) return s;
  return read_root(root, at);
}

Status Checker::read_schema_version(const Value& root, const Path& root_at) {
  const Path at = root_at.child("schema_version");
  const Value* v = root.find("schema_version");
  if (v == nullptr) {
    return fail(ErrorCode::invalid_payload, at,
                "missing required field schema_version");
  }
  std::int64_t version = 0;
  switch (read_integer(*v, 1, 4, version)) {
    case IntRead::ok:
      version_ = static_cast<int>(version);
      ev_.schema_version = version_;
      return {};
    case IntRead::out_of_range:
      return fail(ErrorCode::unsupported_schema_version, at,
                  "schema_version must be 1, 2, 3 or 4");
    case IntRead::not_integer:
      break;
  }
  return bad_type(at, "an integer");
}

// Finds content in a value under an unknown key: a content-bearing key
// name or any string, at any depth.
Status scan_unknown(std::string_view key, const Value& v, const Path& at);

Status scan_value(const Value& v, const Path& at) {
  if (v.kind == Kind::string) {
    return fail(ErrorCode::privacy_violation, at,
                "text in an unknown field is refused by the privacy "
                "contract");
  }
  if (v.kind == Kind::array) {
    for (std::size_t i = 0; i < v.size; ++i) {
      if (auto s = scan_value(v.items[i], at.item(i)); !s) return s;
    }
  } else if (v.kind == Kind::object) {
    for (const Member& m : v.object()) {
      if (auto s = scan_unknown(m.key, m.value, at.child(m.key)); !s) {
        return s;
      }
    }
  }
  return {};
}

Status scan_unknown(std::string_view key, const Value& v, const Path& at) {
  if (is_content_bearing_key(key)) {
    return fail(ErrorCode::privacy_violation, at,
                "a field named like content is refused by the privacy "
                "contract");
  }
  return scan_value(v, at);
}

// Step 4 of the contract, and the `ignored` list on the way: visits every
// member of the schema's objects in document order.
Status Checker::scan_privacy(const Value& obj, Where where, const Path& at,
                             bool list_ignored) {
  for (const Member& m : obj.object()) {
    const Path here = at.child(m.key);
    const Role role = role_of(where, m.key, version_);
    if (role == Role::unknown) {
      if (auto s = scan_unknown(m.key, m.value, here); !s) return s;
    }
    if (list_ignored && (role == Role::unknown || role == Role::dropped)) {
      out_.ignored.push_back(here.str());
    }
    if (role == Role::unknown) continue;

    const auto inner = object_under(where, m.key);
    const bool is_per_iteration = inner == Where::per_iteration;
    if (is_per_iteration && !m.value.is_null() &&
        options_.policy == PrivacyPolicy::strict) {
      return fail(ErrorCode::privacy_violation, here,
                  "per_iteration is refused by the strict privacy policy");
    }
    if (!inner || m.value.kind != Kind::object) continue;

    bool list_inner = list_ignored && role == Role::kept;
    if (is_per_iteration) list_inner = list_inner && keeps_per_iteration();
    if (auto s = scan_privacy(m.value, *inner, here, list_inner); !s) {
      return s;
    }
  }
  return {};
}

Status Checker::read_timestamp(const Value& v, const Path& at,
                               std::int64_t& out) {
  if (v.kind != Kind::string) return bad_type(at, "an ISO 8601 string");
  std::string_view why;
  const auto instant = parse_iso8601(v.string(), &why);
  if (!instant) {
    return fail(ErrorCode::invalid_timestamp_hour, at,
                "timestamp_hour: " + std::string(why));
  }
  if (*instant < 0) {
    return fail(ErrorCode::invalid_timestamp_hour, at,
                "timestamp_hour is before 1970");
  }
  // instant is below 2^38, so instant - kMaxFutureSeconds cannot overflow.
  if (now_ < *instant - kMaxFutureSeconds) {
    return fail(ErrorCode::invalid_timestamp_hour, at,
                "timestamp_hour is more than 24 h in the future");
  }
  out = floor_to_hour(*instant);
  return {};
}

Status Checker::read_root(const Value& root, const Path& at) {
  const auto label = label_of(kMaxLabelChars);
  const auto dollars = finite_at_least(0.0);
  const auto timestamp = [this](const Value& v, const Path& p,
                                std::int64_t& out) {
    return read_timestamp(v, p, out);
  };

  if (auto s = field(root, at, "library", Need::required, ev_.library,
                     read_package_token);
      !s) {
    return s;
  }
  if (auto s = field(root, at, "library_version", Need::required,
                     ev_.library_version, read_package_token);
      !s) {
    return s;
  }
  if (auto s = field(root, at, "workload_id", Need::optional, ev_.workload_id,
                     label);
      !s) {
    return s;
  }
  if (auto s = field(root, at, "timestamp_hour", Need::required,
                     ev_.timestamp_hour, timestamp);
      !s) {
    return s;
  }

  auto loop = object_field(root, at, "loop", Need::required);
  if (!loop) return loop.error();
  if (auto s = read_loop(**loop, at.child("loop")); !s) return s;

  auto thresholds = object_field(root, at, "thresholds", Need::required);
  if (!thresholds) return thresholds.error();
  if (auto s = read_thresholds(**thresholds, at.child("thresholds")); !s) {
    return s;
  }

  if (auto s = field(root, at, "smoothing_window", Need::required,
                     ev_.smoothing_window, integer_in(1, kMaxCount));
      !s) {
    return s;
  }

  // v3 fields; older payloads have them checked, then dropped.
  for (auto [key, out] :
       {std::pair{"framework", &ev_.framework},
        std::pair{"loop_type", &ev_.loop_type}, std::pair{"team", &ev_.team}}) {
    if (auto s = field(root, at, key, Need::optional, *out, label); !s) {
      return s;
    }
  }
  for (auto [key, out] :
       {std::pair{"actual_dollars_spent", &ev_.actual_dollars_spent},
        std::pair{"actual_dollars_saved", &ev_.actual_dollars_saved}}) {
    if (auto s = field(root, at, key, Need::optional, *out, dollars); !s) {
      return s;
    }
  }
  auto per_iteration = object_field(root, at, "per_iteration", Need::optional);
  if (!per_iteration) return per_iteration.error();
  if (*per_iteration != nullptr) {
    const Path here = at.child("per_iteration");
    if (auto s = read_per_iteration(**per_iteration, here); !s) return s;
  }

  if (version_ < 3) {
    ev_.framework.reset();
    ev_.loop_type.reset();
    ev_.team.reset();
    ev_.actual_dollars_spent.reset();
    ev_.actual_dollars_saved.reset();
  }
  return {};
}

Status Checker::read_loop(const Value& loop, const Path& at) {
  const auto count = integer_in(0, kMaxCount);
  const auto finite = finite_at_least(std::nullopt);

  if (auto s =
          field(loop, at, "outcome", Need::required, ev_.outcome, read_outcome);
      !s) {
    return s;
  }
  if (auto s = field(loop, at, "iterations_used", Need::required,
                     ev_.iterations_used, count);
      !s) {
    return s;
  }
  // Required in v1-v3; in v4 an unknown-turned-dropped leftover.
  const Need gain_need = version_ <= 3 ? Need::required : Need::optional;
  if (auto s =
          field(loop, at, "gain_margin", gain_need, ev_.gain_margin, finite);
      !s) {
    return s;
  }
  if (auto s = field(loop, at, "savings_vs_fixed_cap", Need::required,
                     ev_.savings_vs_fixed_cap, count);
      !s) {
    return s;
  }
  if (auto s = field(loop, at, "rollback_triggered", Need::required,
                     ev_.rollback_triggered, read_bool);
      !s) {
    return s;
  }

  auto summary =
      object_field(loop, at, "convergence_profile_summary", Need::required);
  if (!summary) return summary.error();
  const Path sum_at = at.child("convergence_profile_summary");
  for (auto [key, out] :
       {std::pair{"min", &ev_.profile.min}, std::pair{"max", &ev_.profile.max},
        std::pair{"median", &ev_.profile.median}}) {
    if (auto s = field(**summary, sum_at, key, Need::required, *out, finite);
        !s) {
      return s;
    }
  }
  if (auto s = field(**summary, sum_at, "samples", Need::required,
                     ev_.profile.samples, count);
      !s) {
    return s;
  }

  if (auto s = field(loop, at, "best_index", Need::optional, ev_.best_index,
                     integer_in(-1, kMaxCount));
      !s) {
    return s;
  }
  if (version_ == 2 || version_ == 3) {
    std::optional<double> eta;
    for (const char* key : {"first_eta_prediction", "first_eta_at_iteration"}) {
      if (auto s = field(loop, at, key, Need::optional, eta, finite); !s) {
        return s;
      }
    }
  }

  if (version_ >= 4) ev_.gain_margin.reset();
  if (version_ < 3) ev_.best_index.reset();
  return {};
}

Status Checker::read_thresholds(const Value& obj, const Path& at) {
  const auto finite = finite_at_least(std::nullopt);
  Thresholds& t = ev_.thresholds;
  for (auto [key, out] :
       {std::pair{"fast_converge", &t.fast_converge},
        std::pair{"converging", &t.converging},
        std::pair{"stalling", &t.stalling},
        std::pair{"oscillating_upper", &t.oscillating_upper}}) {
    if (auto s = field(obj, at, key, Need::required, *out, finite); !s) {
      return s;
    }
  }
  return {};
}

// One per-iteration array, appended to `json` (when not null) as compact
// JSON.
Status Checker::read_series(const Value& v, const Path& at, std::string* json) {
  if (v.kind != Kind::array) {
    return bad_type(at, "an array of numbers or nulls");
  }
  if (v.size > kMaxSeriesEntries) {
    return bad_type(at, "an array of at most " +
                            std::to_string(kMaxSeriesEntries) + " entries");
  }
  if (json != nullptr) *json += '[';
  for (std::size_t i = 0; i < v.size; ++i) {
    const Value& item = v.items[i];
    // Every number the parser lets through is finite: no need to read it
    // unless it is kept.
    if (!item.is_null() && !item.is_number()) {
      return bad_type(at.item(i), "a finite number or null");
    }
    if (json == nullptr) continue;
    if (i > 0) *json += ',';
    if (item.is_null())
      *json += "null";
    else
      append_number(*json, item.as_double());
  }
  if (json != nullptr) *json += ']';
  return {};
}

Status Checker::read_per_iteration(const Value& obj, const Path& at) {
  std::string text;
  std::string* json = keeps_per_iteration() ? &text : nullptr;
  if (json != nullptr) text.reserve(64 + obj.size * 16);

  const char* sep = "{\"";
  for (const char* key : {"error_history", "convergence_profile"}) {
    const Value* v = obj.find(key);
    if (v == nullptr) {
      return fail(ErrorCode::invalid_payload, at.child(key),
                  "missing required field " + std::string(key));
    }
    if (json != nullptr) {
      text += sep;
      text += key;
      text += "\":";
      sep = ",\"";
    }
    if (auto s = read_series(*v, at.child(key), json); !s) return s;
  }

  bool truncated = false;
  std::int64_t cap = 0;
  if (auto s =
          field(obj, at, "truncated", Need::required, truncated, read_bool);
      !s) {
    return s;
  }
  if (auto s =
          field(obj, at, "cap", Need::required, cap, integer_in(0, kMaxCount));
      !s) {
    return s;
  }

  if (version_ < 3) return {};  // listed in ignored by scan_privacy
  if (json == nullptr) {
    out_.redacted.emplace_back("/per_iteration");
    return {};
  }
  text += truncated ? ",\"truncated\":true,\"cap\":"
                    : ",\"truncated\":false,\"cap\":";
  text += std::to_string(cap);
  text += '}';
  ev_.per_iteration_json = std::move(text);
  return {};
}

// ---------------------------------------------------------------------------
// The parse arena: one buffer per thread, reused by every validate() on that
// thread, so that a typical payload is parsed without touching the heap.
// Bigger documents spill to the heap for the one call.

constexpr std::size_t kArenaBytes = 64 * 1024;

class ArenaLease {
 public:
  ArenaLease() {
    thread_local std::unique_ptr<std::byte[]> buffer;
    thread_local bool busy = false;
    if (!busy) {
      if (!buffer) buffer = std::make_unique<std::byte[]>(kArenaBytes);
      busy_ = &busy;
      busy = true;
      arena_.emplace(buffer.get(), kArenaBytes,
                     std::pmr::new_delete_resource());
    } else {
      // Re-entered on one thread (not done today): use the heap.
      arena_.emplace(std::pmr::new_delete_resource());
    }
  }
  ~ArenaLease() {
    arena_.reset();
    if (busy_ != nullptr) *busy_ = false;
  }
  ArenaLease(const ArenaLease&) = delete;
  ArenaLease& operator=(const ArenaLease&) = delete;

  std::pmr::memory_resource& get() { return *arena_; }

 private:
  std::optional<std::pmr::monotonic_buffer_resource> arena_;
  bool* busy_ = nullptr;
};

Result<ValidatedPayload> validate_body(const ValidatorOptions& options,
                                       std::string_view body,
                                       std::int64_t now) {
  if (body.size() > options.max_body_bytes) {
    return make_error(ErrorCode::payload_too_large, "",
                      "the body is larger than " +
                          std::to_string(options.max_body_bytes) + " bytes");
  }

  ArenaLease arena;
  json::ParseOptions parse_options;
  parse_options.max_depth = kMaxDepth;
  auto root = json::parse_json_tree(body, arena.get(), parse_options);
  if (!root) return root.error();

  ValidatedPayload out;
  Checker checker(options, now, out);
  if (auto s = checker.run(**root); !s) return s.error();
  return out;
}

}  // namespace

PayloadValidator::PayloadValidator(ValidatorOptions options)
    : options_(options) {}

Result<ValidatedPayload> PayloadValidator::validate(
    std::string_view body, std::int64_t now_unix) const noexcept {
  // Only allocation can throw below. The messages fit in std::string's
  // small buffer, so building these errors does not allocate.
  try {
    return validate_body(options_, body, now_unix);
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::internal_error, "", "out of memory");
  } catch (...) {
    return make_error(ErrorCode::internal_error, "", "internal error");
  }
}

}  // namespace lgr
