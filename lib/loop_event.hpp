// The typed loop event: what the receiver keeps of one telemetry payload.
//
// A LoopEvent is produced by the payload validator (which has already
// enforced types, ranges and the privacy contract) and consumed by the
// event store. Field names follow the payload; optional fields are
// std::optional so that null stays null all the way to the JSON reads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace lgr {

// Summary of the loop's convergence profile (the Aβ estimates).
struct ProfileSummary {
  std::optional<double> min;
  std::optional<double> max;
  std::optional<double> median;
  std::int64_t samples = 0;
};

// The client's classification thresholds.
struct Thresholds {
  double fast_converge = 0;
  double converging = 0;
  double stalling = 0;
  double oscillating_upper = 0;
};

struct LoopEvent {
  int schema_version = 0;                   // 1..4
  std::string library;                      // "loopgain"
  std::string library_version;              // "0.6.4"
  std::optional<std::string> workload_id;   // opaque label
  std::int64_t timestamp_hour = 0;          // unix seconds, floored to hour

  // loop
  std::string outcome;                      // "converged", ... (open set)
  std::int64_t iterations_used = 0;
  std::optional<double> gain_margin;        // v1-v3
  std::optional<std::int64_t> savings_vs_fixed_cap;
  bool rollback_triggered = false;
  ProfileSummary profile;
  std::optional<std::int64_t> best_index;   // v3.4+, >= -1

  Thresholds thresholds;
  std::int64_t smoothing_window = 1;

  // v3+: opaque labels and measured dollars.
  std::optional<std::string> framework;
  std::optional<std::string> loop_type;
  std::optional<std::string> team;
  std::optional<double> actual_dollars_spent;
  std::optional<double> actual_dollars_saved;

  // The per-iteration trajectories as compact JSON text
  // ({"error_history":[...],"convergence_profile":[...],"truncated":b,
  // "cap":n}); present only when the privacy policy keeps trajectories.
  std::optional<std::string> per_iteration_json;
};

}  // namespace lgr
