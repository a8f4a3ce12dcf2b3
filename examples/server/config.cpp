#include "config.hpp"

#include <boost/program_options.hpp>

#include <algorithm>
#include <cstdlib>
#include <charconv>
#include <optional>
#include <string_view>
#include <thread>

namespace lgr_server {
namespace {

// The library accepts 1 byte .. 16 MiB.
constexpr std::size_t kMaxBodyCeiling = 16u * 1024 * 1024;
constexpr unsigned kMaxThreads = 256;

template <class Int>
std::optional<Int> ParseInteger(std::string_view text) {
  Int value{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

// "HOST:PORT" or "[IPV6]:PORT". Returns an error message, "" on success.
std::string ParseListen(std::string_view text, ServerConfig& config) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() ||
        text[close + 1] != ':') {
      return "--listen: expected [IPV6]:PORT, got '" + std::string(text) + "'";
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return "--listen: expected HOST:PORT, got '" + std::string(text) + "'";
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return "--listen: write IPv6 addresses in brackets, e.g. [::1]:8787";
    }
  }
  const auto number = ParseInteger<unsigned>(port);
  if (host.empty() || !number || *number > 65535) {
    return "--listen: expected HOST:PORT with a port 0..65535, got '" +
           std::string(text) + "'";
  }
  config.listen_host = std::string(host);
  config.listen_port = static_cast<std::uint16_t>(*number);
  return "";
}

// Applies one flag that takes a value. Returns an error message or "".
std::string ApplyValue(std::string_view flag, std::string_view value,
                       ServerConfig& config) {
  if (flag == "--db") {
    if (value.empty()) return "--db: the path is empty";
    config.db_path = std::string(value);
  } else if (flag == "--listen") {
    return ParseListen(value, config);
  } else if (flag == "--threads") {
    const auto n = ParseInteger<unsigned>(value);
    if (!n || *n < 1 || *n > kMaxThreads) {
      return "--threads: expected 1.." + std::to_string(kMaxThreads);
    }
    config.threads = *n;
  } else if (flag == "--privacy-policy") {
    if (value != "summary_only" && value != "trajectories" &&
        value != "strict") {
      return "--privacy-policy: expected summary_only, trajectories or "
             "strict";
    }
    config.privacy_policy = std::string(value);
  } else if (flag == "--max-body") {
    const auto n = ParseInteger<std::size_t>(value);
    if (!n || *n < 1 || *n > kMaxBodyCeiling) {
      return "--max-body: expected 1.." + std::to_string(kMaxBodyCeiling) +
             " bytes";
    }
    config.max_body_bytes = *n;
  } else if (flag == "--cors-origin") {
    // The library checks the form (lgr_options_add_cors_origin).
    config.cors_origins.emplace_back(value);
  } else if (flag == "--now") {
    const auto n = ParseInteger<std::int64_t>(value);
    // 0 would mean "the system clock" to the library: refuse it rather
    // than silently not fixing the time.
    if (!n || *n < 1) return "--now: expected UNIX seconds (an integer >= 1)";
    config.fixed_time = *n;
  } else {
    return "unknown option " + std::string(flag);
  }
  return "";
}

}  // namespace

ParseResult ParseArguments(int argc, char** argv) {
  namespace po = boost::program_options;
  ParseResult result;
  ServerConfig& config = result.config;

  // Values are taken as text and checked by ApplyValue, which says what a
  // valid one looks like; the library only splits the command line.
  po::options_description flags;
  flags.add_options()
      ("help,h", "")
      ("quiet", "")
      ("db", po::value<std::string>())
      ("listen", po::value<std::string>())
      ("threads", po::value<std::string>())
      ("privacy-policy", po::value<std::string>())
      ("max-body", po::value<std::string>())
      ("cors-origin", po::value<std::vector<std::string>>()->composing())
      ("now", po::value<std::string>());
  po::variables_map vm;
  try {
    // No positional arguments: an empty description makes any a usage
    // error instead of being silently dropped.
    const po::positional_options_description none;
    po::store(po::command_line_parser(argc, argv)
                  .options(flags)
                  .positional(none)
                  .run(),
              vm);
  } catch (const po::error& e) {
    result.error = e.what();
    return result;
  }
  if (vm.count("help")) {
    result.outcome = ParseOutcome::kHelp;
    return result;
  }
  config.quiet = vm.count("quiet") > 0;
  // Like the admin CLI, so that both find the same database.
  if (const char* env = std::getenv("LOOPGAIN_RECEIVER_DB"); env && *env) {
    config.db_path = env;
  }

  for (const char* name : {"db", "listen", "threads", "privacy-policy",
                           "max-body", "now"}) {
    if (!vm.count(name)) continue;
    result.error = ApplyValue(std::string("--") + name,
                              vm[name].as<std::string>(), config);
    if (!result.error.empty()) return result;
  }
  if (vm.count("cors-origin")) {
    for (const auto& origin : vm["cors-origin"].as<std::vector<std::string>>()) {
      result.error = ApplyValue("--cors-origin", origin, config);
      if (!result.error.empty()) return result;
    }
  }

  if (config.threads == 0) {
    const unsigned hardware = std::thread::hardware_concurrency();
    config.threads = hardware == 0 ? 1 : std::min(hardware, kMaxThreads);
  }
  result.outcome = ParseOutcome::kRun;
  return result;
}

std::string UsageText() {
  return R"(Usage: loopgain-receiver-server [OPTIONS]

An HTTP/1.1 server for the loopgain-receiver library: it receives the
loopgain client's telemetry on POST /v1/aggregate and serves the dashboard's
reads (/v1/stats, /v1/profiles, /v1/events, /health).

Options:
  --db PATH                SQLite database, created and migrated on start
                           (default: $LOOPGAIN_RECEIVER_DB, else
                           ./var/telemetry.db; its directory must exist)
  --listen HOST:PORT       address to listen on (default 127.0.0.1:8787);
                           IPv6 as [::1]:8787; port 0 picks a free port,
                           reported in the "listening" log line
  --threads N              worker threads for the read routes; ingests
                           need none (default: hardware threads)
  --privacy-policy NAME    summary_only (default), trajectories or strict
  --max-body BYTES         largest request body, 1..16777216
                           (default 262144); larger bodies get 413
  --cors-origin ORIGIN     a browser origin, http(s)://HOST[:PORT], allowed
                           to call the read routes; exact match (repeatable)
  --quiet                  no access log (diagnostics are still logged)
  --now UNIX_SECONDS       testing and replays only: a fixed "now" for time
                           windows and the future-timestamp check
  -h, --help               this text

Logs are JSON lines on stderr. SIGINT or SIGTERM stops the server after
in-flight requests are answered. Exit status: 0 after a clean stop,
1 when the database or the listening socket cannot be opened, 2 for bad
usage.
)";
}

}  // namespace lgr_server
