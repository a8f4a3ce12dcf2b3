// libFuzzer target: PayloadValidator::validate over arbitrary bodies.
//
// Beyond "no crash, no sanitizer report", each input checks properties that
// hold for every body (a failed check traps, so libFuzzer keeps the input):
//   - every policy answers, and an error has a known HTTP status, a pointer
//     that is "" or starts with '/', and a one-line message;
//   - a body Boost.JSON itself cannot parse is never accepted;
//   - the policies agree: summary_only accepts exactly what trajectories
//     accepts, and strict accepts a subset of it;
//   - an accepted event is within the contract's ranges, and its stored
//     trajectories are a JSON object.
#include "payload_validator.hpp"

#include <boost/json/parse.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace {

constexpr std::int64_t kNow = 1796083200;  // 2026-12-01T00:00:00Z

void require(bool ok) {
  if (!ok) __builtin_trap();
}

void check_error(const lgr::Error& e) {
  const int status = e.http_status();
  require(status == 400 || status == 413 || status == 422);
  require(e.pointer.empty() || e.pointer.front() == '/');
  require(!e.message.empty() && e.message.find('\n') == std::string::npos);
}

void check_event(const lgr::ValidatedPayload& p) {
  const lgr::LoopEvent& ev = p.event;
  require(ev.schema_version >= 1 && ev.schema_version <= 4);
  require(ev.timestamp_hour >= 0 && ev.timestamp_hour % 3600 == 0);
  require(ev.timestamp_hour <= kNow + lgr::kMaxFutureSeconds);
  require(ev.iterations_used >= 0 && ev.iterations_used <= lgr::kMaxCount);
  require(ev.profile.samples >= 0 && ev.profile.samples <= lgr::kMaxCount);
  require(ev.smoothing_window >= 1);
  require(!ev.best_index || *ev.best_index >= -1);
  require(!ev.outcome.empty() && ev.outcome.size() <= 64);
  require(!ev.library.empty());
  for (const auto& d : {ev.actual_dollars_spent, ev.actual_dollars_saved}) {
    require(!d || (std::isfinite(*d) && *d >= 0));
  }
  if (ev.per_iteration_json) {
    boost::json::error_code ec;
    const auto v = boost::json::parse(*ev.per_iteration_json, ec);
    require(!ec && v.is_object());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);

  lgr::ValidatorOptions options;
  options.policy = lgr::PrivacyPolicy::summary_only;
  const auto summary = lgr::PayloadValidator(options).validate(body, kNow);
  options.policy = lgr::PrivacyPolicy::trajectories;
  const auto kept = lgr::PayloadValidator(options).validate(body, kNow);
  options.policy = lgr::PrivacyPolicy::strict;
  const auto strict = lgr::PayloadValidator(options).validate(body, kNow);

  for (const auto* r : {&summary, &kept, &strict}) {
    if (r->has_value())
      check_event(**r);
    else
      check_error(r->error());
  }
  require(summary.has_value() == kept.has_value());
  require(!strict.has_value() || summary.has_value());

  // What Boost.JSON refuses (ignoring a byte order mark) we refuse too.
  if (summary.has_value()) {
    std::string_view json = body;
    if (json.substr(0, 3) == "\xEF\xBB\xBF") json.remove_prefix(3);
    boost::json::error_code ec;
    boost::json::parse_options po;
    po.max_depth = lgr::kMaxDepth;
    boost::json::parse(json, ec, {}, po);
    require(!ec);
  }
  return 0;
}
