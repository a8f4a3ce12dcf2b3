#include "privacy_policy.hpp"

namespace lgr {

std::string_view privacy_policy_name(PrivacyPolicy policy) noexcept {
  switch (policy) {
    case PrivacyPolicy::summary_only: return "summary_only";
    case PrivacyPolicy::trajectories: return "trajectories";
    case PrivacyPolicy::strict: return "strict";
  }
  return "summary_only";
}

std::optional<PrivacyPolicy> parse_privacy_policy(std::string_view name) {
  if (name == "summary_only") return PrivacyPolicy::summary_only;
  if (name == "trajectories") return PrivacyPolicy::trajectories;
  if (name == "strict") return PrivacyPolicy::strict;
  return std::nullopt;
}

}  // namespace lgr
