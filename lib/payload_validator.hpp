// Payload validator and privacy-contract enforcer.
//
// Owns everything between the bytes a client POSTs and the typed LoopEvent
// the store keeps: strict, bounded JSON parsing; type and range checks for
// schema v1-v4; timestamp normalisation; and the privacy contract (content-
// bearing fields refused, unknown keys dropped, per_iteration handled by the
// policy). Nothing here touches storage.
//
// Thread safety: a PayloadValidator is immutable after construction;
// validate() may be called from any number of threads at once.
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
