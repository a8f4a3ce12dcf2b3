#include "read_json.hpp"

#include "json_writer.hpp"

namespace lgr {

std::string render_stats(std::string_view customer_id,
                         std::int64_t window_days, std::int64_t since,
                         const Stats& stats) {
  JsonWriter w;
  w.begin_object();
  w.member("customer_id", customer_id);
  w.member("window_days", window_days);
  w.member("since", since);

  w.key("outcomes");
  w.begin_array();
  for (const auto& o : stats.outcomes) {
    w.begin_object();
    w.member("outcome", o.outcome);
    w.member("count", o.count);
    w.end_object();
  }
  w.end_array();

  w.key("totals");
  w.begin_object();
  w.member("event_count", stats.totals.event_count);
  w.member("total_iterations", stats.totals.total_iterations);
  w.member("total_savings", stats.totals.total_savings);
  w.member("rollbacks", stats.totals.rollbacks);
  w.end_object();

  w.key("workloads");
  w.begin_array();
  for (const auto& wl : stats.workloads) {
    w.begin_object();
    w.member("workload_id", wl.workload_id);
    w.member("count", wl.count);
    w.end_object();
  }
  w.end_array();

  w.end_object();
  return w.take();
}

std::string render_profiles(std::string_view customer_id,
                            std::optional<std::string_view> workload,
                            const std::vector<ProfileRow>& rows) {
  JsonWriter w;
  w.begin_object();
  w.member("customer_id", customer_id);
  w.member("workload_id", workload);
  w.key("events");
  w.begin_array();
  for (const auto& r : rows) {
    w.begin_object();
    w.member("timestamp_hour", r.timestamp_hour);
    if (!workload) w.member("workload_id", r.workload_id);
    w.member("profile_min", r.profile_min);
    w.member("profile_max", r.profile_max);
    w.member("profile_median", r.profile_median);
    w.member("profile_samples", r.profile_samples);
    w.member("outcome", r.outcome);
    w.member("iterations_used", r.iterations_used);
    w.member("gain_margin", r.gain_margin);
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.take();
}

std::string render_events(std::string_view customer_id,
                          const std::vector<EventRow>& rows) {
  JsonWriter w;
  w.begin_object();
  w.member("customer_id", customer_id);
  w.key("events");
  w.begin_array();
  for (const auto& r : rows) {
    w.begin_object();
    w.member("timestamp_hour", r.timestamp_hour);
    w.member("workload_id", r.workload_id);
    w.member("outcome", r.outcome);
    w.member("iterations_used", r.iterations_used);
    w.member("gain_margin", r.gain_margin);
    w.member("profile_max", r.profile_max);
    w.member("savings_vs_fixed_cap", r.savings_vs_fixed_cap);
    w.member("library_version", r.library_version);
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.take();
}

std::string render_customers(const std::vector<CustomerInfo>& customers) {
  JsonWriter w;
  w.begin_array();
  for (const auto& c : customers) {
    w.begin_object();
    w.member("customer_id", c.customer_id);
    w.member("name", c.name);
    w.member("email", c.email);
    w.member("created_at", c.created_at);
    w.member("last_seen_at", c.last_seen_at);
    w.member("active_tokens", c.active_tokens);
    w.member("event_count", c.event_count);
    w.end_object();
  }
  w.end_array();
  return w.take();
}

namespace {

// The pointers echo the client's own key names. Bounded, so that a body
// full of unknown keys cannot make the answer as large as the request.
constexpr std::size_t kMaxListedPointers = 32;
constexpr std::size_t kMaxListedPointerBytes = 256;

// Writes `name`: [pointers...] with the bounds above; returns how many
// were left out.
std::size_t write_pointer_list(JsonWriter& w, std::string_view name,
                               const std::vector<std::string>& pointers) {
  w.key(name);
  w.begin_array();
  std::size_t listed = 0;
  for (const auto& pointer : pointers) {
    if (listed == kMaxListedPointers) break;
    if (pointer.size() > kMaxListedPointerBytes) continue;
    w.value(pointer);
    ++listed;
  }
  w.end_array();
  return pointers.size() - listed;
}

}  // namespace

std::string render_ingest_accepted(const std::vector<std::string>& redacted,
                                   const std::vector<std::string>& ignored) {
  JsonWriter w;
  w.begin_object();
  w.member("status", "ok");
  if (!redacted.empty()) write_pointer_list(w, "redacted", redacted);
  if (!ignored.empty() &&
      write_pointer_list(w, "ignored", ignored) > 0) {
    // Some were not listed: say how many there were in all.
    w.member("ignored_total", static_cast<std::int64_t>(ignored.size()));
  }
  w.end_object();
  return w.take();
}

std::string render_error(const Error& error) {
  JsonWriter w;
  w.begin_object();
  w.member("error", error_code_name(error.code));
  w.member("path", error.pointer);
  w.member("message", error.message);
  w.end_object();
  return w.take();
}

}  // namespace lgr
