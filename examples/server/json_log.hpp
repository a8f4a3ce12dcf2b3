// Structured log lines for the example server: one JSON object per line on
// stderr, safe to call from any thread (the library's logger callback runs
// on its own threads too).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace lgr_server {

// Appends `value` to `out` as a JSON string literal: quotes, backslashes and
// control characters escaped, bytes that are not UTF-8 replaced by U+FFFD.
void AppendJsonString(std::string& out, std::string_view value);

// Builds one log line field by field. The constructor writes "time"
// (RFC 3339, UTC, milliseconds), "level" and "event"; every string is
// escaped, and bytes that are not UTF-8 become U+FFFD, so the line is
// always valid JSON whatever a client sent.
class LogLine {
 public:
  LogLine(std::string_view level, std::string_view event);

  LogLine& Str(std::string_view key, std::string_view value);
  LogLine& Int(std::string_view key, std::int64_t value);
  LogLine& Bool(std::string_view key, bool value);
  // A JSON array of strings, given as the elements of a container.
  template <class Range>
  LogLine& StrList(std::string_view key, const Range& values) {
    OpenField(key);
    text_ += '[';
    bool first = true;
    for (const auto& value : values) {
      if (!first) text_ += ',';
      first = false;
      AppendJsonString(text_, value);
    }
    text_ += ']';
    return *this;
  }

  // Writes the line (with its newline) to stderr in one call, under a
  // process-wide mutex so that lines from different threads never mix.
  void Write();

 private:
  void OpenField(std::string_view key);

  std::string text_;
};

// The current wall-clock time as "2026-12-01T00:00:00.123Z".
std::string Rfc3339Now();

}  // namespace lgr_server
