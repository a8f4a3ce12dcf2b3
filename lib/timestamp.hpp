// ISO 8601 timestamps, as the loopgain client writes timestamp_hour.
//
// Accepted form (and nothing else):
//
//   YYYY-MM-DDTHH:MM:SS[.fraction][Z | +hh:mm | -hh:mm | +hhmm | -hhmm]
//
// The date is proleptic Gregorian and must exist (no February 30), hours
// are 00-23, minutes 00-59 and seconds 00-59 (a leap second 60 is refused:
// unix time has no place for it). The fraction has 1 to 9 digits and is
// dropped. An offset's hours are 00-23 and its minutes 00-59. A timestamp
// without an offset is UTC: the machine's time zone is never consulted, and
// nothing here calls timegm, mktime or reads TZ.
//
// Thread safety: every function is pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace lgr {

// Parses `text` and returns the unix time (seconds) of the instant it
// names, the fraction truncated. On failure returns nullopt and, when `why`
// is not null, points it at a static one-line reason.
std::optional<std::int64_t> parse_iso8601(
    std::string_view text, std::string_view* why = nullptr) noexcept;

// The start of the UTC hour holding `unix_seconds`: floors, also before
// 1970. Precondition: unix_seconds >= INT64_MIN + 3600.
std::int64_t floor_to_hour(std::int64_t unix_seconds) noexcept;

}  // namespace lgr
