// JSON bodies of the reads and of the receiver's own answers, in the shapes
// the original loopgain receiver served (the dashboard depends on them).
#pragma once

#include "error.hpp"
#include "store.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lgr {

std::string render_stats(std::string_view customer_id,
                         std::int64_t window_days, std::int64_t since,
                         const Stats& stats);

// `workload` is the filter that was applied; when set, rows carry no
// workload_id of their own (they all share it).
std::string render_profiles(std::string_view customer_id,
                            std::optional<std::string_view> workload,
                            const std::vector<ProfileRow>& rows);

std::string render_events(std::string_view customer_id,
                          const std::vector<EventRow>& rows);

std::string render_customers(const std::vector<CustomerInfo>& customers);

// {"status":"ok"} plus "redacted"/"ignored" lists when they are not empty.
// At most 32 pointers of at most 256 bytes are listed; when the ignored list
// is cut, "ignored_total" gives the full count.
std::string render_ingest_accepted(const std::vector<std::string>& redacted,
                                   const std::vector<std::string>& ignored);

// {"error": code, "path": pointer, "message": text}
std::string render_error(const Error& error);

}  // namespace lgr
