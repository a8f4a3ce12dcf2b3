// loopgain-receiver-server: the example HTTP host of the loopgain-receiver
// library. See examples/server/README.md for every flag and route.
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "config.hpp"
#include "http_server.hpp"
#include "json_log.hpp"
#include "loopgain/receiver.h"

namespace {

using lgr_server::LogLine;
using lgr_server::ServerConfig;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

using ErrorPtr = std::unique_ptr<lgr_error, decltype(&lgr_error_free)>;
using OptionsPtr = std::unique_ptr<lgr_options, decltype(&lgr_options_free)>;

const char* LevelName(lgr_log_level level) {
  switch (level) {
    case LGR_LOG_DEBUG:
      return "debug";
    case LGR_LOG_INFO:
      return "info";
    case LGR_LOG_WARN:
      return "warn";
    case LGR_LOG_ERROR:
      return "error";
  }
  return "info";
}

// The library's diagnostics, as JSON lines like the server's own.
void LogFromLibrary(void* /*user_data*/, lgr_log_level level,
                    const char* message) {
  try {
    LogLine(LevelName(level), "library").Str("message", message).Write();
  } catch (...) {
    // Out of memory while logging: drop the line; never throw into C.
  }
}

int UsageError(std::string_view reason) {
  std::fprintf(stderr, "loopgain-receiver-server: %.*s (see --help)\n",
               static_cast<int>(reason.size()), reason.data());
  return kExitUsage;
}

std::string Describe(const lgr_error* error) {
  return error == nullptr ? "out of memory" : lgr_error_message(error);
}

// Turns the flags into library options. A refusal here is the user's
// input, so it is a usage error.
bool BuildOptions(const ServerConfig& config, lgr_options* options,
                  std::string& reason) {
  lgr_error* raw = nullptr;
  const auto check = [&](lgr_status status, std::string_view flag) {
    ErrorPtr error(raw, &lgr_error_free);
    raw = nullptr;
    if (status == LGR_OK) return true;
    reason = std::string(flag) + ": " + Describe(error.get());
    return false;
  };

  if (!check(lgr_options_set_db_path(options, config.db_path.c_str(), &raw),
             "--db")) {
    return false;
  }
  if (!config.privacy_policy.empty() &&
      !check(lgr_options_set_privacy_policy_name(
                 options, config.privacy_policy.c_str(), &raw),
             "--privacy-policy")) {
    return false;
  }
  if (!check(
          lgr_options_set_max_body_bytes(options, config.max_body_bytes, &raw),
          "--max-body")) {
    return false;
  }
  for (const std::string& origin : config.cors_origins) {
    if (!check(lgr_options_add_cors_origin(options, origin.c_str(), &raw),
               "--cors-origin")) {
      return false;
    }
  }
  if (config.fixed_time != 0 &&
      !check(lgr_options_set_fixed_time(options, config.fixed_time, &raw),
             "--now")) {
    return false;
  }
  return check(lgr_options_set_logger(options, LGR_LOG_INFO, &LogFromLibrary,
                                      nullptr, &raw),
               "logger");
}

int Serve(const ServerConfig& config) {
  OptionsPtr options(lgr_options_create(), &lgr_options_free);
  if (!options) {
    LogLine("error", "startup_failed").Str("error", "out of memory").Write();
    return kExitFailure;
  }
  std::string reason;
  if (!BuildOptions(config, options.get(), reason)) return UsageError(reason);

  lgr_receiver* receiver = nullptr;
  lgr_error* raw = nullptr;
  const lgr_status opened = lgr_receiver_open(options.get(), &receiver, &raw);
  ErrorPtr open_error(raw, &lgr_error_free);
  if (opened != LGR_OK) {
    LogLine("error", "open_failed")
        .Str("db", config.db_path)
        .Str("status", lgr_status_name(opened))
        .Str("error", Describe(open_error.get()))
        .Write();
    return kExitFailure;
  }
  if (config.fixed_time != 0) {
    LogLine("warn", "fixed_time")
        .Int("now", config.fixed_time)
        .Str("note", "--now is for tests and replays only")
        .Write();
  }

  int status = lgr_server::RunHttpServer(receiver, config);

  // Commits every acknowledged event before the process exits.
  raw = nullptr;
  const lgr_status closed = lgr_receiver_close(receiver, &raw);
  ErrorPtr close_error(raw, &lgr_error_free);
  if (closed != LGR_OK) {
    LogLine("error", "close_failed")
        .Str("status", lgr_status_name(closed))
        .Str("error", Describe(close_error.get()))
        .Write();
    status = kExitFailure;
  }
  lgr_receiver_free(receiver);
  if (status == 0) LogLine("info", "stopped").Write();
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const auto parsed = lgr_server::ParseArguments(argc, argv);
    switch (parsed.outcome) {
      case lgr_server::ParseOutcome::kHelp:
        std::fputs(lgr_server::UsageText().c_str(), stdout);
        return 0;
      case lgr_server::ParseOutcome::kUsageError:
        return UsageError(parsed.error);
      case lgr_server::ParseOutcome::kRun:
        break;
    }
    return Serve(parsed.config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loopgain-receiver-server: fatal: %s\n", e.what());
    return kExitFailure;
  }
}
