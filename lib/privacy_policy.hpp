// The privacy policy chosen when a receiver is opened.
#pragma once

#include <optional>
#include <string_view>

namespace lgr {

enum class PrivacyPolicy {
  // Only structural statistics are stored; per_iteration is removed.
  summary_only,
  // The capped numeric per-iteration arrays are stored too (opt-in).
  trajectories,
  // A payload carrying per_iteration is refused.
  strict,
};

std::string_view privacy_policy_name(PrivacyPolicy policy) noexcept;
std::optional<PrivacyPolicy> parse_privacy_policy(std::string_view name);

}  // namespace lgr
