// Command-line flags of loopgain-receiver-server.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lgr_server {

// The default request-body cap: the library's own default, so that the
// server refuses exactly what the library would.
inline constexpr std::size_t kDefaultMaxBodyBytes = 262144;

struct ServerConfig {
  std::string db_path = "./var/telemetry.db";
  // A literal address or a host name; IPv6 literals without brackets.
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 8787;
  unsigned threads = 0;        // Worker threads; 0 until parsed.
  std::string privacy_policy;  // Empty: the library's default.
  std::size_t max_body_bytes = kDefaultMaxBodyBytes;
  std::vector<std::string> cors_origins;
  bool quiet = false;
  std::int64_t fixed_time = 0;  // 0: the system clock.
};

enum class ParseOutcome { kRun, kHelp, kUsageError };

struct ParseResult {
  ParseOutcome outcome = ParseOutcome::kUsageError;
  ServerConfig config;
  std::string error;  // One line, for kUsageError.
};

// Parses argv (Boost.Program_options): "--flag VALUE" or "--flag=VALUE";
// a single-valued flag given twice is a usage error.
ParseResult ParseArguments(int argc, char** argv);

// The --help text.
std::string UsageText();

}  // namespace lgr_server
