#include "timestamp.hpp"

#include <chrono>
#include <cstddef>

namespace lgr {
namespace {

// A cursor over the text; every read checks the bounds itself.
class Cursor {
 public:
  explicit Cursor(std::string_view text) : text_(text) {}

  bool at_end() const { return pos_ == text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }

  bool literal(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }

  // Exactly `n` ASCII digits as a number.
  bool digits(std::size_t n, int& out) {
    if (text_.size() - pos_ < n) return false;
    int value = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const char c = text_[pos_ + i];
      if (c < '0' || c > '9') return false;
      value = value * 10 + (c - '0');
    }
    pos_ += n;
    out = value;
    return true;
  }

  // One or more digits; returns how many.
  std::size_t skip_digits() {
    const std::size_t start = pos_;
    while (peek() >= '0' && peek() <= '9') ++pos_;
    return pos_ - start;
  }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
};

bool fail(std::string_view* why, std::string_view reason) {
  if (why != nullptr) *why = reason;
  return false;
}

// Reads the optional zone designator; `offset` is seconds east of UTC.
bool read_offset(Cursor& in, std::int64_t& offset, std::string_view* why) {
  offset = 0;
  if (in.at_end() || in.literal('Z')) return true;

  const char sign = in.peek();
  if (!in.literal('+') && !in.literal('-')) {
    return fail(why, "expected Z, +hh:mm or -hh:mm after the time");
  }
  int hh = 0;
  int mm = 0;
  if (!in.digits(2, hh)) return fail(why, "malformed UTC offset");
  in.literal(':');  // +hh:mm and +hhmm are both ISO 8601
  if (!in.digits(2, mm)) return fail(why, "malformed UTC offset");
  if (hh > 23 || mm > 59) return fail(why, "UTC offset out of range");

  offset = (hh * 3600 + mm * 60) * (sign == '-' ? -1 : 1);
  return true;
}

}  // namespace

std::optional<std::int64_t> parse_iso8601(std::string_view text,
                                          std::string_view* why) noexcept {
  Cursor in(text);
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  const bool shape =
      in.digits(4, year) && in.literal('-') && in.digits(2, month) &&
      in.literal('-') && in.digits(2, day) && in.literal('T') &&
      in.digits(2, hour) && in.literal(':') && in.digits(2, minute) &&
      in.literal(':') && in.digits(2, second);
  if (!shape) {
    fail(why, "expected YYYY-MM-DDTHH:MM:SS");
    return std::nullopt;
  }

  if (in.literal('.')) {
    const std::size_t n = in.skip_digits();
    if (n == 0 || n > 9) {
      fail(why, "fractional seconds need 1 to 9 digits");
      return std::nullopt;
    }
  }

  std::int64_t offset = 0;
  if (!read_offset(in, offset, why)) return std::nullopt;
  if (!in.at_end()) {
    fail(why, "unexpected text after the timestamp");
    return std::nullopt;
  }

  namespace chr = std::chrono;
  const chr::year_month_day date{chr::year{year},
                                 chr::month{static_cast<unsigned>(month)},
                                 chr::day{static_cast<unsigned>(day)}};
  if (!date.ok()) {
    fail(why, "no such calendar date");
    return std::nullopt;
  }
  if (hour > 23 || minute > 59 || second > 59) {
    fail(why, "no such time of day");
    return std::nullopt;
  }

  const std::int64_t days = chr::sys_days(date).time_since_epoch().count();
  const std::int64_t local = days * 86400 + hour * 3600 + minute * 60 + second;
  return local - offset;
}

std::int64_t floor_to_hour(std::int64_t unix_seconds) noexcept {
  std::int64_t rem = unix_seconds % 3600;
  if (rem < 0) rem += 3600;
  return unix_seconds - rem;
}

}  // namespace lgr
