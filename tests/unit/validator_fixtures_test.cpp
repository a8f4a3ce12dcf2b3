// Every payload recorded from a real client release is accepted, with the
// right typed values, under each privacy policy; plus the accepted edge
// cases of the contract (ignored and redacted lists, number forms, labels).
#include "payload_validator.hpp"

#include <doctest/doctest.h>
#include <boost/json.hpp>

#include <charconv>
#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using lgr::PayloadValidator;
using lgr::PrivacyPolicy;
using lgr::ValidatedPayload;

// 2026-12-01T00:00:00Z: a fixed "now", ten hours after the fixtures' hour.
constexpr std::int64_t kNow = 1796083200;
// 2026-11-30T14:00:00Z, the timestamp_hour of every fixture.
constexpr std::int64_t kFixtureHour = 1796047200;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string fixture(const std::string& name) {
  return read_file(std::string(LGR_FIXTURES_DIR) + "/" + name);
}

// Replaces the one occurrence of `from` in `text`.
std::string edit(std::string text, std::string_view from, std::string_view to) {
  const auto at = text.find(from);
  if (at == std::string::npos || text.find(from, at + 1) != std::string::npos)
    throw std::logic_error("edit: not exactly one " + std::string(from));
  return text.replace(at, from.size(), to);
}

lgr::Result<ValidatedPayload> validate(
    std::string_view body, PrivacyPolicy policy = PrivacyPolicy::summary_only) {
  lgr::ValidatorOptions options;
  options.policy = policy;
  return PayloadValidator(options).validate(body, kNow);
}

// "code at pointer: message" of a failed result, "ok" otherwise: one line
// that doctest prints when a check fails.
std::string outcome_of(const lgr::Result<ValidatedPayload>& r) {
  if (r) return "ok";
  return std::string(lgr::error_code_name(r.error().code)) + " at '" +
         r.error().pointer + "': " + r.error().message;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : " ") + s;
  return out;
}

// The numbers of a JSON array in `text` that follows `"key": `, each read
// with from_chars (exact), nulls as nullopt.
std::vector<std::optional<double>> numbers_after(const std::string& text,
                                                 const std::string& key) {
  std::vector<std::optional<double>> out;
  auto pos = text.find("\"" + key + "\":");
  if (pos == std::string::npos) return out;
  pos = text.find('[', pos);
  const auto end = text.find(']', pos);
  std::string body = text.substr(pos + 1, end - pos - 1);
  std::istringstream in(body);
  std::string token;
  while (std::getline(in, token, ',')) {
    const auto first = token.find_first_not_of(' ');
    if (first == std::string::npos) continue;
    token = token.substr(first);
    if (token == "null") {
      out.emplace_back();
      continue;
    }
    double d = 0;
    std::from_chars(token.data(), token.data() + token.size(), d);
    out.emplace_back(d);
  }
  return out;
}

struct ManifestEntry {
  std::string file;
  int schema_version;
  std::string library_version;
  std::string outcome;
  std::string workload_id;
  bool has_per_iteration;
};

std::vector<ManifestEntry> manifest() {
  const auto doc = boost::json::parse(fixture("manifest.json"));
  std::vector<ManifestEntry> out;
  for (const auto& item : doc.as_array()) {
    const auto& o = item.as_object();
    out.push_back(
        ManifestEntry{std::string(o.at("file").as_string()),
                      static_cast<int>(o.at("schema_version").as_int64()),
                      std::string(o.at("library_version").as_string()),
                      std::string(o.at("outcome").as_string()),
                      std::string(o.at("workload_id").as_string()),
                      o.at("has_per_iteration").as_bool()});
  }
  return out;
}

}  // namespace

TEST_CASE("fixtures: all 54 recorded payloads are accepted") {
  const auto entries = manifest();
  REQUIRE(entries.size() == 54);

  for (const ManifestEntry& m : entries) {
    CAPTURE(m.file);
    const std::string body = fixture(m.file);
    for (auto policy :
         {PrivacyPolicy::summary_only, PrivacyPolicy::trajectories}) {
      CAPTURE(lgr::privacy_policy_name(policy));
      const auto r = validate(body, policy);
      REQUIRE_MESSAGE(r.has_value(), outcome_of(r));
      const lgr::LoopEvent& ev = r->event;
      CHECK(ev.schema_version == m.schema_version);
      CHECK(ev.library == "loopgain");
      CHECK(ev.library_version == m.library_version);
      CHECK(ev.outcome == m.outcome);
      CHECK(ev.workload_id == m.workload_id);
      CHECK(ev.timestamp_hour == kFixtureHour);
      CHECK(ev.smoothing_window == 3);
      CHECK(ev.thresholds.fast_converge == 0.3);
      CHECK(ev.thresholds.converging == 0.85);
      CHECK(ev.thresholds.stalling == 0.95);
      CHECK(ev.thresholds.oscillating_upper == 1.05);
      CHECK(r->ignored.empty());

      const bool v3_plus = m.schema_version >= 3;
      CHECK(ev.framework.has_value() == v3_plus);
      CHECK(ev.gain_margin.has_value() ==
            (m.schema_version <= 3 && ev.iterations_used > 0));
      const bool kept = policy == PrivacyPolicy::trajectories;
      CHECK(ev.per_iteration_json.has_value() == (m.has_per_iteration && kept));
      CHECK(r->redacted.size() == (m.has_per_iteration && !kept ? 1u : 0u));
    }

    // strict refuses exactly the payloads that carry per_iteration.
    const auto strict = validate(body, PrivacyPolicy::strict);
    CHECK(static_cast<bool>(strict) == !m.has_per_iteration);
    if (!strict) {
      CHECK(strict.error().code == lgr::ErrorCode::privacy_violation);
      CHECK(strict.error().pointer == "/per_iteration");
    }
  }
}

namespace {

// The typed values of one fixture, as the Python client computed them.
struct Expected {
  const char* file;
  std::int64_t iterations_used;
  std::optional<double> gain_margin;
  std::optional<std::int64_t> savings;
  bool rollback;
  std::optional<double> min, max, median;
  std::int64_t samples;
  std::optional<std::int64_t> best_index;
};

constexpr auto kNull = std::nullopt;

const Expected kSpotChecks[] = {
    {"v1-0.1.0-diverged.json", 2, 0.5, 8, true, 2.0, 2.0, 2.0, 1, kNull},
    {"v1-0.1.0-not_started.json", 0, kNull, kNull, false, kNull, kNull, kNull,
     0, kNull},
    {"v1-0.1.0-max_iterations.json", 4, 1.1111111111111112, 0, false,
     0.8847222222222222, 0.9, 0.8944444444444445, 3, kNull},
    {"v2-0.1.4-oscillating.json", 3, 0.9756097560975611, 7, true, 0.0, 1.025,
     0.5125, 2, kNull},
    {"v2-0.1.4-not_started.json", 0, kNull, kNull, false, kNull, kNull, kNull,
     0, kNull},
    {"v3-0.1.6-in_progress.json", 5, 2.0, 5, false, 0.175, 0.5, 0.4, 4, kNull},
    {"v3-0.1.9-converged.json", 5, 2.0, 5, false, 0.35, 0.5, 0.45, 3, kNull},
    {"v4-0.5.0-converged.json", 5, kNull, 5, false, 0.35, 0.5, 0.45, 3, 4},
    {"v4-0.5.0-stalled.json", 6, kNull, 4, false, 0.5, 1.4375, 0.96875, 5, 1},
    {"v4-0.6.4-not_started.json", 0, kNull, kNull, false, kNull, kNull, kNull,
     0, -1},
    {"v4-0.6.4-in_progress-2.json", 300, kNull, 0, false, 0.9900990099009901,
     0.9974874052194566, 0.9959838045929041, 299, 299},
    {"v4-0.6.4-diverged.json", 2, kNull, 8, true, 2.0, 2.0, 2.0, 1, 0},
};

}  // namespace

TEST_CASE("fixtures: typed values per schema version") {
  for (const Expected& e : kSpotChecks) {
    CAPTURE(e.file);
    const auto r = validate(fixture(e.file));
    REQUIRE_MESSAGE(r.has_value(), outcome_of(r));
    const lgr::LoopEvent& ev = r->event;
    CHECK(ev.iterations_used == e.iterations_used);
    CHECK(ev.gain_margin == e.gain_margin);
    CHECK(ev.savings_vs_fixed_cap == e.savings);
    CHECK(ev.rollback_triggered == e.rollback);
    CHECK(ev.profile.min == e.min);
    CHECK(ev.profile.max == e.max);
    CHECK(ev.profile.median == e.median);
    CHECK(ev.profile.samples == e.samples);
    CHECK(ev.best_index == e.best_index);
  }
}

TEST_CASE("fixtures: labels and dollars by version") {
  const auto v1 = validate(fixture("v1-0.1.0-diverged.json"));
  REQUIRE(v1.has_value());
  CHECK_FALSE(v1->event.framework);
  CHECK_FALSE(v1->event.loop_type);
  CHECK_FALSE(v1->event.team);

  const auto v3 = validate(fixture("v3-0.1.6-diverged.json"));
  REQUIRE(v3.has_value());
  CHECK(v3->event.framework == "langgraph");
  CHECK(v3->event.loop_type == "verify_revise");
  CHECK(v3->event.team == "prod");
  CHECK(joined(v3->redacted) == "/per_iteration");

  const auto v4 = validate(fixture("v4-0.6.4-converged.json"));
  REQUIRE(v4.has_value());
  CHECK_FALSE(v4->event.actual_dollars_spent);
  CHECK_FALSE(v4->event.actual_dollars_saved);
}

TEST_CASE("fixtures: trajectories keep per_iteration as canonical JSON") {
  const auto v3 =
      validate(fixture("v3-0.1.6-diverged.json"), PrivacyPolicy::trajectories);
  REQUIRE(v3.has_value());
  CHECK(v3->redacted.empty());
  CHECK(v3->event.per_iteration_json ==
        R"({"error_history":[1,2],"convergence_profile":[2],)"
        R"("truncated":false,"cap":256})");

  const auto v4 = validate(fixture("v4-0.6.4-not_started.json"),
                           PrivacyPolicy::trajectories);
  REQUIRE(v4.has_value());
  CHECK(v4->event.per_iteration_json ==
        R"({"error_history":[],"convergence_profile":[],)"
        R"("truncated":false,"cap":256})");

  const auto cut = validate(fixture("v4-0.6.4-in_progress-2.json"),
                            PrivacyPolicy::trajectories);
  REQUIRE(cut.has_value());
  const std::string& json = *cut->event.per_iteration_json;
  CHECK(json.find(R"("truncated":true,"cap":256})") != std::string::npos);
  CHECK(numbers_after(json, "error_history").size() == 256);
}

TEST_CASE("fixtures: stored trajectories hold exactly the numbers sent") {
  for (const ManifestEntry& m : manifest()) {
    if (!m.has_per_iteration) continue;
    CAPTURE(m.file);
    const std::string body = fixture(m.file);
    const auto r = validate(body, PrivacyPolicy::trajectories);
    REQUIRE(r.has_value());
    const std::string& json = *r->event.per_iteration_json;
    CHECK(boost::json::parse(json).is_object());
    for (const char* key : {"error_history", "convergence_profile"}) {
      CAPTURE(key);
      CHECK(numbers_after(json, key) == numbers_after(body, key));
    }
  }
}

TEST_CASE("accepted: unknown and out-of-version fields are listed as ignored") {
  const std::string v4 = fixture("v4-0.6.4-converged.json");
  const std::string v2 = fixture("v2-0.1.4-diverged.json");
  const std::string v1 = fixture("v1-0.1.0-diverged.json");
  const std::string v4_null =
      v4.substr(0, v4.find("\"per_iteration\"")) + "\"per_iteration\": null}";

  struct Case {
    const char* name;
    std::string body;
    PrivacyPolicy policy;
    const char* ignored;  // space-separated pointers
    const char* redacted;
  };
  const Case cases[] = {
      {"numeric unknown key",
       edit(v4, "\"team\": \"prod\"", "\"team\": \"prod\", \"latency_ms\": 3"),
       PrivacyPolicy::summary_only, "/latency_ms", "/per_iteration"},
      {"nested unknown numbers",
       edit(v4, "\"best_index\": 4",
            "\"best_index\": 4, \"extra\": {\"a\": [1, null, true]}"),
       PrivacyPolicy::summary_only, "/loop/extra", "/per_iteration"},
      {"error_count is not content",
       edit(v4, "\"team\": \"prod\"",
            "\"error_count\": 2, \"team\": "
            "\"prod\""),
       PrivacyPolicy::summary_only, "/error_count", "/per_iteration"},
      {"v4 gain_margin",
       edit(v4, "\"best_index\": 4", "\"best_index\": 4, \"gain_margin\": 0.5"),
       PrivacyPolicy::summary_only, "/loop/gain_margin", "/per_iteration"},
      {"v4 ETA keys",
       edit(v4, "\"best_index\": 4",
            "\"best_index\": 4, \"first_eta_prediction\": "
            "null, \"first_eta_at_iteration\": 3"),
       PrivacyPolicy::summary_only,
       "/loop/first_eta_prediction /loop/first_eta_at_iteration",
       "/per_iteration"},
      {"v2 ETA keys are neither stored nor listed", v2,
       PrivacyPolicy::summary_only, "", ""},
      {"v2 with v3 fields",
       edit(v2, "\"smoothing_window\": 3",
            "\"smoothing_window\": 3, \"framework\": \"crewai\", "
            "\"per_iteration\": {\"error_history\": [1.0], "
            "\"convergence_profile\": [], \"truncated\": false, "
            "\"cap\": 256, \"x\": 1}"),
       PrivacyPolicy::trajectories, "/framework /per_iteration", ""},
      {"v1 best_index",
       edit(v1, "\"rollback_triggered\": true",
            "\"rollback_triggered\": true, \"best_index\": 1"),
       PrivacyPolicy::summary_only, "/loop/best_index", ""},
      {"unknown key in kept per_iteration",
       edit(v4, "\"cap\": 256", "\"cap\": 256, \"window\": 8"),
       PrivacyPolicy::trajectories, "/per_iteration/window", ""},
      {"unknown key in redacted per_iteration",
       edit(v4, "\"cap\": 256", "\"cap\": 256, \"window\": 8"),
       PrivacyPolicy::summary_only, "", "/per_iteration"},
      {"escaped key",
       edit(v4, "\"team\": \"prod\"", "\"team\": \"prod\", \"a/b~c\": 1"),
       PrivacyPolicy::summary_only, "/a~1b~0c", "/per_iteration"},
      {"per_iteration null under strict", v4_null, PrivacyPolicy::strict, "",
       ""},
      {"per_iteration null under summary_only", v4_null,
       PrivacyPolicy::summary_only, "", ""},
      {"per_iteration null under trajectories", v4_null,
       PrivacyPolicy::trajectories, "", ""},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const auto r = validate(c.body, c.policy);
    REQUIRE_MESSAGE(r.has_value(), outcome_of(r));
    CHECK(joined(r->ignored) == c.ignored);
    CHECK(joined(r->redacted) == c.redacted);
  }

  const auto v2_with_v3 = validate(cases[6].body, PrivacyPolicy::trajectories);
  REQUIRE(v2_with_v3.has_value());
  CHECK_FALSE(v2_with_v3->event.framework);
  CHECK_FALSE(v2_with_v3->event.per_iteration_json);
  const auto v4_gain = validate(cases[3].body);
  REQUIRE(v4_gain.has_value());
  CHECK_FALSE(v4_gain->event.gain_margin);
  const auto v1_best = validate(cases[7].body);
  REQUIRE(v1_best.has_value());
  CHECK_FALSE(v1_best->event.best_index);
}

TEST_CASE("accepted: number forms, labels, outcomes, timestamps, BOM") {
  const std::string v4 = fixture("v4-0.6.4-converged.json");
  const std::string v3 = fixture("v3-0.1.9-converged.json");

  SUBCASE("5.0 and 5e0 are the integer 5") {
    for (const char* five : {"5.0", "5e0", "50e-1", "0.5e1"}) {
      CAPTURE(five);
      const auto r =
          validate(edit(v4, "\"iterations_used\": 5",
                        std::string("\"iterations_used\": ") + five));
      REQUIRE_MESSAGE(r.has_value(), outcome_of(r));
      CHECK(r->event.iterations_used == 5);
    }
  }
  SUBCASE("schema_version 4.0 is 4") {
    const auto r =
        validate(edit(v4, "\"schema_version\": 4", "\"schema_version\": 4.0"));
    REQUIRE(r.has_value());
    CHECK(r->event.schema_version == 4);
  }
  SUBCASE("counts at their bounds") {
    const auto r = validate(edit(
        edit(v4, "\"iterations_used\": 5", "\"iterations_used\": 2147483647"),
        "\"samples\": 3", "\"samples\": 0"));
    REQUIRE_MESSAGE(r.has_value(), outcome_of(r));
    CHECK(r->event.iterations_used == 2147483647);
  }
  SUBCASE("dollars") {
    const auto r = validate(edit(v4, "\"actual_dollars_spent\": null",
                                 "\"actual_dollars_spent\": 12.5"));
    REQUIRE(r.has_value());
    CHECK(r->event.actual_dollars_spent == 12.5);
  }
  SUBCASE("the ends of the double range") {
    const auto r = validate(edit(
        edit(v4, "\"stalling\": 0.95", "\"stalling\": 1.7976931348623157e308"),
        "\"converging\": 0.85", "\"converging\": 4.9e-324"));
    REQUIRE_MESSAGE(r.has_value(), outcome_of(r));
    CHECK(r->event.thresholds.stalling == 1.7976931348623157e308);
    CHECK(r->event.thresholds.converging == 4.9e-324);
  }
  SUBCASE("exact decimals survive") {
    const auto r =
        validate(edit(v4, "\"min\": 0.35", "\"min\": 0.9756097560975611"));
    REQUIRE(r.has_value());
    CHECK(r->event.profile.min == 0.9756097560975611);
  }
  SUBCASE("nulls inside trajectories are kept") {
    const auto r = validate(
        edit(v3, "[1.0, 0.5, 0.2, 0.05, 0.0]", "[1.0, null, 1e-400, -0.0]"),
        PrivacyPolicy::trajectories);
    REQUIRE_MESSAGE(r.has_value(), outcome_of(r));
    CHECK(r->event.per_iteration_json->find("[1,null,0,-0]") !=
          std::string::npos);
  }
  SUBCASE("an unknown but well-formed outcome is stored as sent") {
    const auto r = validate(edit(v4, "\"converged\"", "\"budget_exhausted\""));
    REQUIRE(r.has_value());
    CHECK(r->event.outcome == "budget_exhausted");
  }
  SUBCASE("labels: 200 characters of two bytes, escapes, null") {
    std::string e200;
    for (int i = 0; i < 200; ++i) e200 += "\xC3\xA9";
    const auto r =
        validate(edit(edit(v4, "\"wl-converged\"", "\"" + e200 + "\""),
                      "\"prod\"", "\"caf\\u00e9 \\ud83d\\ude00\""));
    REQUIRE_MESSAGE(r.has_value(), outcome_of(r));
    CHECK(r->event.workload_id == e200);
    CHECK(r->event.team == "caf\xC3\xA9 \xF0\x9F\x98\x80");

    const auto none =
        validate(edit(v4, "\"team\": \"prod\"", "\"team\": null"));
    REQUIRE(none.has_value());
    CHECK_FALSE(none->event.team);
  }
  SUBCASE("workload_id may be absent") {
    const auto r =
        validate(edit(v4, "\"workload_id\": \"wl-converged\", ", ""));
    REQUIRE(r.has_value());
    CHECK_FALSE(r->event.workload_id);
  }
  SUBCASE("timestamps: offsets and fractions, floored to the hour") {
    for (const char* ts :
         {"2026-11-30T14:59:59.75Z", "2026-11-30T15:30:00+01:30",
          "2026-11-30T09:12:00-0500", "2026-11-30T14:00:00"}) {
      CAPTURE(ts);
      const auto r = validate(edit(v4, "2026-11-30T14:00:00+00:00", ts));
      REQUIRE_MESSAGE(r.has_value(), outcome_of(r));
      CHECK(r->event.timestamp_hour == kFixtureHour);
    }
    // Exactly 24 h ahead of now is still accepted.
    const auto edge =
        validate(edit(v4, "2026-11-30T14:00:00+00:00", "2026-12-02T00:00:00Z"));
    REQUIRE(edge.has_value());
    CHECK(edge->event.timestamp_hour == kNow + 86400);
  }
  SUBCASE("a leading byte order mark is skipped") {
    const auto r = validate("\xEF\xBB\xBF" + v4);
    REQUIRE_MESSAGE(r.has_value(), outcome_of(r));
    CHECK(r->event.outcome == "converged");
  }
  SUBCASE("whitespace around the document") {
    const auto r = validate(" \r\n\t" + v4 + "\n ");
    CHECK(r.has_value());
  }
  SUBCASE("a body exactly at the size cap") {
    std::string body = v4;
    body.resize(256 * 1024, ' ');
    CHECK(validate(body).has_value());
  }
}
