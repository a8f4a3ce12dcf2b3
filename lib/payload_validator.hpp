// Payload validator and privacy-contract enforcer.
//
// Owns everything between the bytes a client POSTs and the typed LoopEvent
// the store keeps: strict, bounded JSON parsing; type and range checks for
// schema v1-v4; timestamp normalisation; and the privacy contract (content-
// bearing fields refused, unknown keys dropped, per_iteration handled by the
// policy). Nothing here touches storage.
//
// The contract, in the order validate() checks it; the first failure is the
// result (code, JSON Pointer, one-line message):
//
//  1. Size: a body over max_body_bytes is payload_too_large (pointer ""),
//     before any parsing.
//  2. JSON (json_tree.hpp): strict RFC 8259, UTF-8, depth <= kMaxDepth, a
//     leading byte order mark skipped, no NaN/Infinity, numbers must fit a
//     finite double. Failures are invalid_json, pointer "", the message
//     naming the byte offset. A duplicate key is invalid_payload at the
//     pointer of its second occurrence: the text is JSON, but ambiguous.
//  3. The root must be an object (invalid_payload at ""), and
//     schema_version an integer (invalid_payload) from 1 to 4
//     (unsupported_schema_version), both at /schema_version.
//  4. Privacy, over the whole document before any type check, so that a
//     client leaking content always learns that first (privacy_violation):
//     an unknown key whose name is content-bearing (payload_rules.hpp),
//     anywhere under it included; any string under an unknown key; and,
//     with PrivacyPolicy::strict, a non-null per_iteration.
//  5. Types and ranges, field by field in schema order (invalid_payload;
//     a malformed or future timestamp_hour is invalid_timestamp_hour):
//     a missing required field is reported at its own pointer.
//
// Required: everything the issue lists except workload_id, best_index and
// the v3 fields; gain_margin is required (and nullable) in v1-v3. Known
// fields are type-checked, not privacy-scanned: a wrong-typed known field
// is invalid_payload whatever it contains.
//
// Field rules. Integers may be written 5 or 5.0 but must be integral; counts
// (iterations_used, samples, savings_vs_fixed_cap, per_iteration.cap) are
// 0..2^31-1, smoothing_window 1..2^31-1 and best_index -1..2^31-1 or null,
// so that sums over stored rows cannot overflow. Other numbers are finite;
// dollars are >= 0 or null. Labels (library, workload_id, framework,
// loop_type, team: <= 200 characters; library_version: <= 64) are checked
// by check_label(). outcome is stored as sent: one of the known values
// (is_known_outcome) or any other well-formed value (is_well_formed_outcome)
// that a newer client may send, counted like the others. timestamp_hour is
// ISO 8601 (timestamp.hpp), floored to the hour; the instant may not be
// before 1970 nor more than 24 h after `now`.
//
// Versions. The v2/v3 ETA block (loop.first_eta_prediction,
// loop.first_eta_at_iteration: number or null) is checked and not stored;
// in v1 and v4 those keys are unknown. gain_margin (v1-v3) is checked and
// dropped in v4; best_index (v3, v4) and the v3 fields framework,
// loop_type, team, actual_dollars_spent, actual_dollars_saved and
// per_iteration are checked and dropped in v1 and v2. Dropped fields and
// unknown keys are listed in `ignored`, the outermost dropped key only.
// TODO(#3): an unknown key's own name is echoed in `ignored`; only names
// with content-bearing words are refused, so a client could still put a
// short text in a key name (it is never stored).
//
// per_iteration: null, or an object with error_history and
// convergence_profile (arrays of <= 1024 finite numbers or nulls),
// truncated (boolean) and cap (count). summary_only drops it and lists
// "/per_iteration" in `redacted`; trajectories stores it as compact JSON
// re-written from the parsed values (keys in the order above, nulls kept,
// numbers in the shortest form that reads back the same double); strict
// refuses it (step 4).
//
// Thread safety: a PayloadValidator is immutable after construction;
// validate() may be called from any number of threads at once. Each thread
// keeps one reusable parse arena (64 KiB) for the life of the thread.
#pragma once

#include "error.hpp"
#include "loop_event.hpp"
#include "privacy_policy.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lgr {

// Bounds of the payload contract.
inline constexpr std::size_t kMaxDepth = 8;             // nesting levels
inline constexpr std::size_t kMaxLabelChars = 200;      // workload_id, ...
// library and library_version: package tokens of at most 64 characters
// (is_well_formed_package_token in payload_rules.hpp).
inline constexpr std::size_t kMaxSeriesEntries = 1024;  // per_iteration
inline constexpr std::int64_t kMaxCount = 2147483647;   // 2^31 - 1
inline constexpr std::int64_t kMaxFutureSeconds = 24 * 3600;

struct ValidatorOptions {
  std::size_t max_body_bytes = 256 * 1024;
  PrivacyPolicy policy = PrivacyPolicy::summary_only;
};

struct ValidatedPayload {
  LoopEvent event;
  // JSON Pointers of parts removed by the privacy policy ("/per_iteration").
  std::vector<std::string> redacted;
  // JSON Pointers of unknown, non-content keys that were dropped.
  std::vector<std::string> ignored;
};

class PayloadValidator {
 public:
  explicit PayloadValidator(ValidatorOptions options = {});

  // Validates `body` as of `now_unix` (seconds; used to refuse timestamps
  // more than 24 h in the future). Never throws.
  Result<ValidatedPayload> validate(std::string_view body,
                                    std::int64_t now_unix) const noexcept;

  const ValidatorOptions& options() const noexcept { return options_; }

 private:
  ValidatorOptions options_;
};

}  // namespace lgr
