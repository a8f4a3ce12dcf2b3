// ISO 8601 parsing of timestamp_hour (lib/timestamp.hpp).
#include "timestamp.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>

namespace {

// 2026-11-30T14:00:00Z, the hour of every recorded fixture. (1764511200,
// which is sometimes quoted for it, is the same hour of 2025.)
constexpr std::int64_t kFixtureHour = 1796047200;

struct Accepted {
  const char* text;
  std::int64_t instant;  // unix seconds, fraction truncated
};

struct Rejected {
  const char* text;
  const char* why;  // what the case is about
};

}  // namespace

TEST_CASE("timestamp: every accepted form names the right instant") {
  const Accepted cases[] = {
      {"2026-11-30T14:00:00Z", kFixtureHour},
      {"2026-11-30T14:00:00+00:00", kFixtureHour},
      {"2026-11-30T14:00:00-00:00", kFixtureHour},
      {"2026-11-30T14:00:00+0000", kFixtureHour},
      {"2026-11-30T14:00:00", kFixtureHour},
      {"2026-11-30T15:30:00+01:30", kFixtureHour},
      {"2026-11-30T09:00:00-0500", kFixtureHour},
      {"2026-12-01T03:45:00+13:45", kFixtureHour},
      {"2026-11-30T14:00:00.5Z", kFixtureHour},
      {"2026-11-30T14:00:00.123456789+00:00", kFixtureHour},
      {"2026-11-30T14:59:59.999999Z", kFixtureHour + 3599},
      {"2026-11-30T23:30:00-05:00", kFixtureHour + 9 * 3600 + 1800 + 5 * 3600},
      {"1970-01-01T00:00:00Z", 0},
      {"1970-01-01T00:00:00+01:00", -3600},
      {"2000-02-29T00:00:00Z", 951782400},
      {"2024-02-29T12:00:00Z", 1709208000},
      {"2026-12-31T23:59:59Z", 1798761599},
      {"9999-12-31T23:59:59Z", 253402300799},
      {"0000-01-01T00:00:00Z", -62167219200},
  };
  for (const Accepted& c : cases) {
    CAPTURE(c.text);
    const std::optional<std::int64_t> got = lgr::parse_iso8601(c.text);
    REQUIRE(got.has_value());
    CHECK(*got == c.instant);
  }
}

TEST_CASE("timestamp: every malformed or impossible form is refused") {
  const Rejected cases[] = {
      {"", "empty"},
      {"2026-02-30T00:00:00Z", "February 30"},
      {"2025-02-29T00:00:00Z", "not a leap year"},
      {"1900-02-29T00:00:00Z", "century that is not a leap year"},
      {"2026-04-31T00:00:00Z", "April 31"},
      {"2026-13-01T00:00:00Z", "month 13"},
      {"2026-00-10T00:00:00Z", "month 0"},
      {"2026-11-00T00:00:00Z", "day 0"},
      {"2026-11-30T23:59:60Z", "leap second"},
      {"2026-11-30T24:00:00Z", "hour 24"},
      {"2026-11-30T14:60:00Z", "minute 60"},
      {"2026-11-30 14:00:00Z", "space instead of T"},
      {"2026-11-30t14:00:00Z", "lower-case t"},
      {"2026-11-30T14:00:00z", "lower-case z"},
      {"2026-11-30T14:00Z", "no seconds"},
      {"2026-11-30", "date only"},
      {"20261130T140000Z", "basic format"},
      {"2026-11-30T14:00:00+24:00", "offset hour 24"},
      {"2026-11-30T14:00:00+05:60", "offset minute 60"},
      {"2026-11-30T14:00:00+5:00", "one-digit offset hour"},
      {"2026-11-30T14:00:00+05", "offset without minutes"},
      {"2026-11-30T14:00:00+05:0", "one-digit offset minute"},
      {"2026-11-30T14:00:00.Z", "empty fraction"},
      {"2026-11-30T14:00:00.1234567890Z", "ten fraction digits"},
      {"2026-11-30T14:00:00,5Z", "decimal comma"},
      {"2026-11-30T14:00:00Zjunk", "text after the zone"},
      {"2026-11-30T14:00:00Z ", "trailing space"},
      {" 2026-11-30T14:00:00Z", "leading space"},
      {"+2026-11-30T14:00:00Z", "expanded year"},
      {"26-11-30T14:00:00Z", "two-digit year"},
      {"2026-1-30T14:00:00Z", "one-digit month"},
      {"2026-11-30T14:00:00UTC", "zone name"},
      {"\xEF\xBC\x92"
       "026-11-30T14:00:00Z",
       "full-width digit"},
  };
  for (const Rejected& c : cases) {
    CAPTURE(c.text);
    CAPTURE(c.why);
    std::string_view why;
    CHECK_FALSE(lgr::parse_iso8601(c.text, &why).has_value());
    CHECK_FALSE(why.empty());
  }
}

TEST_CASE("timestamp: no offset means UTC whatever TZ says") {
  const char* saved = std::getenv("TZ");
  const std::string old = saved != nullptr ? saved : "";

  for (const char* zone : {"America/New_York", "Asia/Kolkata", "UTC-14"}) {
    CAPTURE(zone);
    setenv("TZ", zone, 1);
    tzset();
    CHECK(lgr::parse_iso8601("2026-11-30T14:00:00") == kFixtureHour);
  }

  if (saved != nullptr)
    setenv("TZ", old.c_str(), 1);
  else
    unsetenv("TZ");
  tzset();
}

TEST_CASE("timestamp: floor_to_hour floors, before 1970 too") {
  CHECK(lgr::floor_to_hour(kFixtureHour) == kFixtureHour);
  CHECK(lgr::floor_to_hour(kFixtureHour + 3599) == kFixtureHour);
  CHECK(lgr::floor_to_hour(kFixtureHour + 3600) == kFixtureHour + 3600);
  CHECK(lgr::floor_to_hour(0) == 0);
  CHECK(lgr::floor_to_hour(-1) == -3600);
  CHECK(lgr::floor_to_hour(-3600) == -3600);
  CHECK(lgr::floor_to_hour(-3601) == -7200);
}
