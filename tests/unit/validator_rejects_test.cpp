// Bad payloads, one table: each case asserts the exact error code and the
// exact JSON Pointer. Bodies are recorded fixtures with one edit, so that
// each case differs from a valid payload in exactly the way it names.
#include "payload_rules.hpp"
#include "payload_validator.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using lgr::ErrorCode;
using lgr::PrivacyPolicy;

constexpr std::int64_t kNow = 1796083200;  // 2026-12-01T00:00:00Z

constexpr ErrorCode kJson = ErrorCode::invalid_json;
constexpr ErrorCode kPayload = ErrorCode::invalid_payload;
constexpr ErrorCode kVersion = ErrorCode::unsupported_schema_version;
constexpr ErrorCode kTime = ErrorCode::invalid_timestamp_hour;
constexpr ErrorCode kTooLarge = ErrorCode::payload_too_large;
constexpr ErrorCode kPrivacy = ErrorCode::privacy_violation;

std::string fixture(const std::string& name) {
  std::ifstream in(std::string(LGR_FIXTURES_DIR) + "/" + name,
                   std::ios::binary);
  if (!in) throw std::runtime_error("cannot read fixture " + name);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Replaces the one occurrence of `from` in `text`.
std::string edit(std::string text, std::string_view from, std::string_view to) {
  const auto at = text.find(from);
  if (at == std::string::npos || text.find(from, at + 1) != std::string::npos)
    throw std::logic_error("edit: not exactly one " + std::string(from));
  return text.replace(at, from.size(), to);
}

std::string drop(const std::string& text, std::string_view what) {
  return edit(text, what, "");
}

// The text from `from` up to, not including, `until`.
std::string slice(const std::string& text, std::string_view from,
                  std::string_view until) {
  const auto begin = text.find(from);
  const auto end = text.find(until, begin);
  if (begin == std::string::npos || end == std::string::npos)
    throw std::logic_error("slice: missing " + std::string(from));
  return text.substr(begin, end - begin);
}

std::string repeat(std::string_view unit, int n, std::string_view sep = "") {
  std::string out;
  for (int i = 0; i < n; ++i) {
    if (i > 0) out += sep;
    out += unit;
  }
  return out;
}

struct Case {
  std::string name;
  std::string body;
  ErrorCode code;
  std::string pointer;
  PrivacyPolicy policy = PrivacyPolicy::summary_only;
};

std::vector<Case> reject_cases() {
  const std::string v4 = fixture("v4-0.6.4-converged.json");
  const std::string v3 = fixture("v3-0.1.9-converged.json");
  const std::string v2 = fixture("v2-0.1.4-diverged.json");
  const std::string v1 = fixture("v1-0.1.0-diverged.json");
  const std::string team = "\"team\": \"prod\"";
  const std::string wl = "\"workload_id\": \"wl-converged\"";
  const std::string iters = "\"iterations_used\": 5";
  const std::string outcome = "\"outcome\": \"converged\"";
  const std::string history = "\"error_history\": [1.0, 0.5, 0.2, 0.05, 0.0]";
  const std::string profile = "\"convergence_profile\": [0.5, 0.45, 0.35]";
  const std::string ts = "\"timestamp_hour\": \"2026-11-30T14:00:00+00:00\"";
  const auto with_team = [&](std::string_view extra) {
    return edit(v4, team, team + ", " + std::string(extra));
  };
  const auto with_loop = [&](std::string_view extra) {
    return edit(v4, "\"best_index\": 4",
                "\"best_index\": 4, " + std::string(extra));
  };
  const auto wl_is = [&](std::string_view value) {
    return edit(v4, wl, "\"workload_id\": " + std::string(value));
  };
  const auto iters_is = [&](std::string_view value) {
    return edit(v4, iters, "\"iterations_used\": " + std::string(value));
  };
  const auto ts_is = [&](std::string_view value) {
    return edit(v4, ts, "\"timestamp_hour\": \"" + std::string(value) + "\"");
  };
  std::string many_keys;  // "k0": 0, ..., "k29": 0
  for (int i = 0; i < 30; ++i) {
    many_keys += (i > 0 ? ", \"k" : "\"k") + std::to_string(i) + "\": 0";
  }
  const std::string cps = "/loop/convergence_profile_summary";
  const std::string pi = "/per_iteration";

  std::vector<Case> c = {
      // Size and JSON syntax: invalid_json has no pointer.
      {"empty body", "", kJson, ""},
      {"only whitespace", " \n", kJson, ""},
      {"truncated in the middle", v4.substr(0, 200), kJson, ""},
      {"truncated before the last brace", v4.substr(0, v4.size() - 1), kJson,
       ""},
      {"NaN", edit(v3, "\"gain_margin\": 2.0", "\"gain_margin\": NaN"), kJson,
       ""},
      {"Infinity",
       edit(v3, "\"gain_margin\": 2.0", "\"gain_margin\": Infinity"), kJson,
       ""},
      {"-Infinity", edit(v4, "\"stalling\": 0.95", "\"stalling\": -Infinity"),
       kJson, ""},
      {"1e400", iters_is("1e400"), kJson, ""},
      {"just above the largest double",
       edit(v4, "\"stalling\": 0.95", "\"stalling\": 1.8e308"), kJson, ""},
      {"-1e400 under an unknown key", with_team("\"x\": -1e400"), kJson, ""},
      {"trailing comma in an object",
       edit(v4, "\"cap\": 256}", "\"cap\": 256,}"), kJson, ""},
      {"trailing comma in an array", edit(v4, "0.05, 0.0]", "0.05, 0.0,]"),
       kJson, ""},
      {"comment", "/* hi */" + v4, kJson, ""},
      {"single quotes", edit(v4, team, "'team': 'prod'"), kJson, ""},
      {"two documents", v4 + v4, kJson, ""},
      {"trailing garbage", v4 + " x", kJson, ""},
      {"leading zero", iters_is("05"), kJson, ""},
      {"hex number", iters_is("0x5"), kJson, ""},
      {"plus sign", iters_is("+5"), kJson, ""},
      {"invalid UTF-8 byte", wl_is("\"wl-\xFF\""), kJson, ""},
      {"overlong UTF-8", wl_is("\"wl-\xC0\xAF\""), kJson, ""},
      {"UTF-8 encoded surrogate", wl_is("\"wl-\xED\xA0\x80\""), kJson, ""},
      {"truncated UTF-8 sequence", wl_is("\"wl-\xE2\x82\""), kJson, ""},
      {"lone surrogate escape", wl_is("\"wl-\\ud800\""), kJson, ""},
      {"raw control character", wl_is("\"wl-\x01\""), kJson, ""},
      {"nesting deeper than 8", with_team("\"x\": [[[[[[[[1]]]]]]]]"), kJson,
       ""},
      {"two byte order marks", "\xEF\xBB\xBF\xEF\xBB\xBF" + v4, kJson, ""},
      {"body over 256 KiB", v4 + std::string(256 * 1024, ' '), kTooLarge, ""},

      // Duplicate keys: invalid_payload at the second occurrence.
      {"duplicate top-level key",
       edit(v4, "\"library\": \"loopgain\"",
            "\"library\": \"loopgain\", \"library\": \"x\""),
       kPayload, "/library"},
      {"duplicate nested key", edit(v4, outcome, outcome + ", " + outcome),
       kPayload, "/loop/outcome"},
      {"duplicate key spelled with an escape",
       edit(v4, team, team + ", \"t\\u0065am\": \"x\""), kPayload, "/team"},
      {"duplicate key in an array under an unknown key",
       with_team("\"x\": [0, {\"k\": 1, \"k\": 2}]"), kPayload, "/x/1/k"},
      {"duplicate key in a large object (sorted search)",
       with_team("\"x\": {" + many_keys + ", \"k7\": 1, \"k3\": 1}"), kPayload,
       "/x/k7"},

      // The root and schema_version.
      {"root is an array", "[]", kPayload, ""},
      {"root is a string", "\"loopgain\"", kPayload, ""},
      {"schema_version missing", drop(v4, "\"schema_version\": 4, "), kPayload,
       "/schema_version"},
      {"schema_version a string",
       edit(v4, "\"schema_version\": 4", "\"schema_version\": \"4\""), kPayload,
       "/schema_version"},
      {"schema_version null",
       edit(v4, "\"schema_version\": 4", "\"schema_version\": null"), kPayload,
       "/schema_version"},
      {"schema_version 4.5",
       edit(v4, "\"schema_version\": 4", "\"schema_version\": 4.5"), kPayload,
       "/schema_version"},
      {"schema_version 5",
       edit(v4, "\"schema_version\": 4", "\"schema_version\": 5"), kVersion,
       "/schema_version"},
      {"schema_version 0",
       edit(v4, "\"schema_version\": 4", "\"schema_version\": 0"), kVersion,
       "/schema_version"},
      {"schema_version -1",
       edit(v4, "\"schema_version\": 4", "\"schema_version\": -1"), kVersion,
       "/schema_version"},

      // Missing required fields, at their own pointer.
      {"library missing", drop(v4, "\"library\": \"loopgain\", "), kPayload,
       "/library"},
      {"library_version missing", drop(v4, "\"library_version\": \"0.6.4\", "),
       kPayload, "/library_version"},
      {"timestamp_hour missing", drop(v4, ts + ", "), kPayload,
       "/timestamp_hour"},
      {"loop missing", drop(v4, slice(v4, "\"loop\": {", "\"thresholds\"")),
       kPayload, "/loop"},
      {"thresholds missing",
       drop(v4, slice(v4, "\"thresholds\": {", "\"smoothing_window\"")),
       kPayload, "/thresholds"},
      {"smoothing_window missing", drop(v4, "\"smoothing_window\": 3, "),
       kPayload, "/smoothing_window"},
      {"outcome missing", drop(v4, outcome + ", "), kPayload, "/loop/outcome"},
      {"iterations_used missing", drop(v4, iters + ", "), kPayload,
       "/loop/iterations_used"},
      {"savings_vs_fixed_cap missing",
       drop(v4, "\"savings_vs_fixed_cap\": 5, "), kPayload,
       "/loop/savings_vs_fixed_cap"},
      {"rollback_triggered missing",
       drop(v4, "\"rollback_triggered\": false, "), kPayload,
       "/loop/rollback_triggered"},
      {"convergence_profile_summary missing",
       drop(v4, slice(v4, "\"convergence_profile_summary\"",
                      "\"rollback_triggered\"")),
       kPayload, cps},
      {"summary min missing", drop(v4, "\"min\": 0.35, "), kPayload,
       cps + "/min"},
      {"summary samples missing", drop(v4, ", \"samples\": 3"), kPayload,
       cps + "/samples"},
      {"threshold stalling missing", drop(v4, "\"stalling\": 0.95, "), kPayload,
       "/thresholds/stalling"},
      {"error_history missing", drop(v4, history + ", "), kPayload,
       pi + "/error_history"},
      {"truncated missing", drop(v4, "\"truncated\": false, "), kPayload,
       pi + "/truncated"},
      {"cap missing", drop(v4, ", \"cap\": 256"), kPayload, pi + "/cap"},
      {"v3 gain_margin missing", drop(v3, "\"gain_margin\": 2.0, "), kPayload,
       "/loop/gain_margin"},

      // Wrong types and ranges of labels.
      {"library a number", edit(v4, "\"loopgain\"", "5"), kPayload, "/library"},
      {"library empty", edit(v4, "\"loopgain\"", "\"\""), kPayload, "/library"},
      {"library_version null", edit(v4, "\"0.6.4\"", "null"), kPayload,
       "/library_version"},
      {"library_version of 65 characters",
       edit(v4, "\"0.6.4\"", "\"" + std::string(65, '1') + "\""), kPayload,
       "/library_version"},
      // library and library_version have a package's shape: no free text.
      {"library with a sentence",
       edit(v4, "\"loopgain\"", "\"my api key is sk-123\""), kPayload,
       "/library"},
      {"library of 65 characters",
       edit(v4, "\"loopgain\"", "\"" + std::string(65, 'l') + "\""),
       kPayload, "/library"},
      {"library_version with a space", edit(v4, "\"0.6.4\"", "\"0.6 4\""),
       kPayload, "/library_version"},
      {"library_version with a slash", edit(v4, "\"0.6.4\"", "\"0.6/4\""),
       kPayload, "/library_version"},
      {"workload_id a number", wl_is("7"), kPayload, "/workload_id"},
      {"workload_id of 201 characters",
       wl_is("\"" + repeat("\xC3\xA9", 201) + "\""), kPayload, "/workload_id"},
      {"workload_id with a newline", wl_is("\"wl\\nx\""), kPayload,
       "/workload_id"},
      {"workload_id with a tab", wl_is("\"wl\\tx\""), kPayload, "/workload_id"},
      {"workload_id with U+2028", wl_is("\"wl\\u2028x\""), kPayload,
       "/workload_id"},
      {"workload_id with U+2029 as UTF-8", wl_is("\"wl\xE2\x80\xA9x\""),
       kPayload, "/workload_id"},
      {"workload_id with NUL", wl_is("\"wl\\u0000\""), kPayload,
       "/workload_id"},
      {"workload_id with a C1 control", wl_is("\"wl\\u0085\""), kPayload,
       "/workload_id"},
      {"team with a bidi override", edit(v4, "\"prod\"", "\"pr\\u202eod\""),
       kPayload, "/team"},
      {"team empty", edit(v4, "\"prod\"", "\"\""), kPayload, "/team"},
      {"framework a number", edit(v4, "\"langgraph\"", "3"), kPayload,
       "/framework"},
      {"loop_type an object", edit(v4, "\"verify_revise\"", "{}"), kPayload,
       "/loop_type"},

      // Wrong types and ranges of numbers, booleans, objects.
      {"timestamp_hour a number",
       edit(v4, ts, "\"timestamp_hour\": 1796047200"), kPayload,
       "/timestamp_hour"},
      {"loop a string",
       edit(v4, slice(v4, "\"loop\": {", ", \"thresholds\""),
            "\"loop\": \"converged\""),
       kPayload, "/loop"},
      {"loop an array",
       edit(v4, slice(v4, "\"loop\": {", ", \"thresholds\""), "\"loop\": []"),
       kPayload, "/loop"},
      {"thresholds null",
       edit(v4, slice(v4, "\"thresholds\": {", ", \"smoothing_window\""),
            "\"thresholds\": null"),
       kPayload, "/thresholds"},
      {"smoothing_window 0",
       edit(v4, "\"smoothing_window\": 3", "\"smoothing_window\": 0"), kPayload,
       "/smoothing_window"},
      {"smoothing_window a string",
       edit(v4, "\"smoothing_window\": 3", "\"smoothing_window\": \"3\""),
       kPayload, "/smoothing_window"},
      {"outcome a number", edit(v4, outcome, "\"outcome\": 1"), kPayload,
       "/loop/outcome"},
      {"outcome empty", edit(v4, outcome, "\"outcome\": \"\""), kPayload,
       "/loop/outcome"},
      {"outcome capitalised", edit(v4, outcome, "\"outcome\": \"Converged\""),
       kPayload, "/loop/outcome"},
      {"outcome with a space", edit(v4, outcome, "\"outcome\": \"gave up\""),
       kPayload, "/loop/outcome"},
      {"outcome of 65 characters",
       edit(v4, outcome, "\"outcome\": \"" + std::string(65, 'a') + "\""),
       kPayload, "/loop/outcome"},
      {"iterations_used a string", iters_is("\"5\""), kPayload,
       "/loop/iterations_used"},
      {"iterations_used 3.5", iters_is("3.5"), kPayload,
       "/loop/iterations_used"},
      {"iterations_used -1", iters_is("-1"), kPayload, "/loop/iterations_used"},
      {"iterations_used 2^31", iters_is("2147483648"), kPayload,
       "/loop/iterations_used"},
      {"iterations_used 1e10", iters_is("1e10"), kPayload,
       "/loop/iterations_used"},
      {"iterations_used above int64", iters_is("18446744073709551615"),
       kPayload, "/loop/iterations_used"},
      {"iterations_used true", iters_is("true"), kPayload,
       "/loop/iterations_used"},
      {"iterations_used null", iters_is("null"), kPayload,
       "/loop/iterations_used"},
      {"rollback_triggered 1",
       edit(v4, "\"rollback_triggered\": false", "\"rollback_triggered\": 1"),
       kPayload, "/loop/rollback_triggered"},
      {"gain_margin a string (v3)",
       edit(v3, "\"gain_margin\": 2.0", "\"gain_margin\": \"2.0\""), kPayload,
       "/loop/gain_margin"},
      {"gain_margin a string (v4, dropped but checked)",
       with_loop("\"gain_margin\": \"2.0\""), kPayload, "/loop/gain_margin"},
      {"savings_vs_fixed_cap -1",
       edit(v4, "\"savings_vs_fixed_cap\": 5", "\"savings_vs_fixed_cap\": -1"),
       kPayload, "/loop/savings_vs_fixed_cap"},
      {"savings_vs_fixed_cap 2.5",
       edit(v4, "\"savings_vs_fixed_cap\": 5", "\"savings_vs_fixed_cap\": 2.5"),
       kPayload, "/loop/savings_vs_fixed_cap"},
      {"samples null", edit(v4, "\"samples\": 3", "\"samples\": null"),
       kPayload, cps + "/samples"},
      {"samples negative", edit(v4, "\"samples\": 3", "\"samples\": -3"),
       kPayload, cps + "/samples"},
      {"summary min a string", edit(v4, "\"min\": 0.35", "\"min\": \"0.35\""),
       kPayload, cps + "/min"},
      {"summary median true", edit(v4, "\"median\": 0.45", "\"median\": true"),
       kPayload, cps + "/median"},
      {"best_index -2", edit(v4, "\"best_index\": 4", "\"best_index\": -2"),
       kPayload, "/loop/best_index"},
      {"best_index 1.5", edit(v4, "\"best_index\": 4", "\"best_index\": 1.5"),
       kPayload, "/loop/best_index"},
      {"actual_dollars_spent negative",
       edit(v4, "\"actual_dollars_spent\": null",
            "\"actual_dollars_spent\": -1.0"),
       kPayload, "/actual_dollars_spent"},
      {"actual_dollars_saved a string",
       edit(v4, "\"actual_dollars_saved\": null",
            "\"actual_dollars_saved\": \"1\""),
       kPayload, "/actual_dollars_saved"},
      {"threshold null",
       edit(v4, "\"fast_converge\": 0.3", "\"fast_converge\": null"), kPayload,
       "/thresholds/fast_converge"},
      {"ETA a string in v2",
       edit(v2, "\"first_eta_prediction\": null",
            "\"first_eta_prediction\": \"soon\""),
       kPayload, "/loop/first_eta_prediction"},
      {"v1 framework a number (dropped but checked)",
       edit(v1, "\"smoothing_window\": 3",
            "\"smoothing_window\": 3, \"framework\": 3"),
       kPayload, "/framework"},

      // per_iteration.
      {"per_iteration a string",
       edit(v4, slice(v4, "\"per_iteration\"", "}}") + "}",
            "\"per_iteration\": \"x\""),
       kPayload, pi},
      {"per_iteration an array",
       edit(v4, slice(v4, "\"per_iteration\"", "}}") + "}",
            "\"per_iteration\": []"),
       kPayload, pi},
      {"error_history a string", edit(v4, history, "\"error_history\": \"x\""),
       kPayload, pi + "/error_history"},
      {"a string in error_history",
       edit(v4, history, "\"error_history\": [1.0, \"a\"]"), kPayload,
       pi + "/error_history/1"},
      {"a boolean in convergence_profile",
       edit(v4, profile, "\"convergence_profile\": [0.5, true]"), kPayload,
       pi + "/convergence_profile/1"},
      {"a nested array in convergence_profile",
       edit(v4, profile, "\"convergence_profile\": [[0.5]]"), kPayload,
       pi + "/convergence_profile/0"},
      {"1025 entries",
       edit(v4, history,
            "\"error_history\": [" + repeat("0.5", 1025, ", ") + "]"),
       kPayload, pi + "/error_history"},
      {"truncated a string",
       edit(v4, "\"truncated\": false", "\"truncated\": \"no\""), kPayload,
       pi + "/truncated"},
      {"cap -1", edit(v4, "\"cap\": 256", "\"cap\": -1"), kPayload,
       pi + "/cap"},
      {"cap 1.5", edit(v4, "\"cap\": 256", "\"cap\": 1.5"), kPayload,
       pi + "/cap"},
      {"v1 per_iteration malformed (dropped but checked)",
       edit(v1, "\"smoothing_window\": 3",
            "\"smoothing_window\": 3, \"per_iteration\": {\"error_history\": "
            "[], \"convergence_profile\": 1, \"truncated\": false, "
            "\"cap\": 1}"),
       kPayload, pi + "/convergence_profile"},

      // timestamp_hour.
      {"February 30", ts_is("2026-02-30T00:00:00Z"), kTime, "/timestamp_hour"},
      {"second 60", ts_is("2026-11-30T14:00:60Z"), kTime, "/timestamp_hour"},
      {"hour 24", ts_is("2026-11-30T24:00:00Z"), kTime, "/timestamp_hour"},
      {"space separator", ts_is("2026-11-30 14:00:00Z"), kTime,
       "/timestamp_hour"},
      {"offset out of range", ts_is("2026-11-30T14:00:00+25:00"), kTime,
       "/timestamp_hour"},
      {"empty timestamp", ts_is(""), kTime, "/timestamp_hour"},
      {"not a timestamp", ts_is("yesterday"), kTime, "/timestamp_hour"},
      {"just over 24 h ahead", ts_is("2026-12-02T00:00:01Z"), kTime,
       "/timestamp_hour"},
      {"next year", ts_is("2027-11-30T14:00:00Z"), kTime, "/timestamp_hour"},
      {"before 1970", ts_is("1969-12-31T23:00:00Z"), kTime, "/timestamp_hour"},

      // Privacy: content-bearing names, wherever they are.
      {"system_prompt", with_team("\"system_prompt\": 1"), kPrivacy,
       "/system_prompt"},
      {"userPrompt", with_team("\"userPrompt\": null"), kPrivacy,
       "/userPrompt"},
      {"completion_text", with_team("\"completion_text\": 0"), kPrivacy,
       "/completion_text"},
      {"best_output", with_team("\"best_output\": []"), kPrivacy,
       "/best_output"},
      {"llm_response", with_team("\"llm_response\": {}"), kPrivacy,
       "/llm_response"},
      {"LLMResponse", with_team("\"LLMResponse\": 1"), kPrivacy,
       "/LLMResponse"},
      {"error_message", with_team("\"error_message\": null"), kPrivacy,
       "/error_message"},
      {"error", with_team("\"error\": 1"), kPrivacy, "/error"},
      {"traceback", with_team("\"traceback\": null"), kPrivacy, "/traceback"},
      {"exception", with_team("\"exception\": 0"), kPrivacy, "/exception"},
      {"content", with_team("\"content\": 1"), kPrivacy, "/content"},
      {"input", with_team("\"input\": 2"), kPrivacy, "/input"},
      {"messages", with_team("\"messages\": []"), kPrivacy, "/messages"},
      {"PROMPT in capitals", with_team("\"PROMPT\": 1"), kPrivacy, "/PROMPT"},
      {"prompt with a digit", with_team("\"prompt2\": 1"), kPrivacy,
       "/prompt2"},
      {"prompt inside loop", with_loop("\"prompt\": null"), kPrivacy,
       "/loop/prompt"},
      {"output inside the summary",
       edit(v4, "\"samples\": 3", "\"samples\": 3, \"output\": 0"), kPrivacy,
       cps + "/output"},
      {"input inside thresholds",
       edit(v4, "\"oscillating_upper\": 1.05",
            "\"oscillating_upper\": 1.05, \"input\": 0"),
       kPrivacy, "/thresholds/input"},
      {"messages inside per_iteration",
       edit(v4, "\"cap\": 256", "\"cap\": 256, \"messages\": []"), kPrivacy,
       pi + "/messages"},
      {"systemPrompt two levels under an unknown key",
       with_team("\"x\": {\"inner\": {\"systemPrompt\": 0}}"), kPrivacy,
       "/x/inner/systemPrompt"},
      {"completion in an array under an unknown key",
       with_team("\"x\": [0, {\"completion\": 1}]"), kPrivacy,
       "/x/1/completion"},
      {"prompt in v1's dropped per_iteration",
       edit(v1, "\"smoothing_window\": 3",
            "\"smoothing_window\": 3, \"per_iteration\": {\"prompt\": 1}"),
       kPrivacy, pi + "/prompt"},

      // Privacy: any string under an unknown key.
      {"string under an unknown key", with_team("\"note\": \"hello\""),
       kPrivacy, "/note"},
      {"string deep under an unknown key",
       with_team("\"x\": {\"a\": [1, \"secret\"]}"), kPrivacy, "/x/a/1"},
      {"string under an unknown key in loop", with_loop("\"model\": \"gpt\""),
       kPrivacy, "/loop/model"},
      {"pointer escapes in the key", with_team("\"a/b~c\": \"x\""), kPrivacy,
       "/a~1b~0c"},
      {"empty key", with_team("\"\": \"x\""), kPrivacy, "/"},
      {"v4 ETA is unknown: a string there is content",
       with_loop("\"first_eta_prediction\": \"soon\""), kPrivacy,
       "/loop/first_eta_prediction"},
      {"privacy is reported before type errors",
       edit(iters_is("\"x\""), team, team + ", \"prompt\": 1"), kPrivacy,
       "/prompt"},

      // Privacy: the strict policy.
      {"strict refuses per_iteration", v4, kPrivacy, pi, PrivacyPolicy::strict},
      {"strict refuses v1 per_iteration too",
       edit(v1, "\"smoothing_window\": 3",
            "\"smoothing_window\": 3, \"per_iteration\": {}"),
       kPrivacy, pi, PrivacyPolicy::strict},
      {"strict refuses a malformed per_iteration",
       edit(v4, slice(v4, "\"per_iteration\"", "}}") + "}",
            "\"per_iteration\": 0"),
       kPrivacy, pi, PrivacyPolicy::strict},
  };
  return c;
}

std::string describe(const lgr::Error& e) {
  return std::string(lgr::error_code_name(e.code)) + " at '" + e.pointer +
         "': " + e.message;
}

}  // namespace

TEST_CASE("rejects: each bad payload has its exact code and pointer") {
  const std::vector<Case> cases = reject_cases();
  CHECK(cases.size() >= 60);
  MESSAGE(cases.size() << " reject cases");

  for (const Case& c : cases) {
    CAPTURE(c.name);
    lgr::ValidatorOptions options;
    options.policy = c.policy;
    const auto r = lgr::PayloadValidator(options).validate(c.body, kNow);
    REQUIRE_MESSAGE(!r.has_value(), "accepted");
    CHECK_MESSAGE(
        lgr::error_code_name(r.error().code) == lgr::error_code_name(c.code),
        describe(r.error()));
    CHECK_MESSAGE(r.error().pointer == c.pointer, describe(r.error()));

    // One line for humans; invalid_json names the byte offset.
    CHECK_FALSE(r.error().message.empty());
    CHECK(r.error().message.find('\n') == std::string::npos);
    if (c.code == ErrorCode::invalid_json) {
      CHECK(r.error().message.find("at byte ") != std::string::npos);
    }
  }
}

TEST_CASE("rejects: invalid_json names the byte where parsing stopped") {
  const auto validate = [](std::string_view body) {
    return lgr::PayloadValidator().validate(body, kNow);
  };
  CHECK(validate("{\"a\": NaN}").error().message ==
        "invalid JSON at byte 6: syntax error");
  // The byte order mark counts: offsets are into the body as sent.
  CHECK(validate("\xEF\xBB\xBF{\"a\": NaN}").error().message ==
        "invalid JSON at byte 9: syntax error");
  CHECK(validate("{\"a\": 1")
            .error()
            .message.rfind("invalid JSON at byte 7", 0) == 0);
}

TEST_CASE("rejects: the HTTP status follows the code") {
  lgr::ValidatorOptions small;
  small.max_body_bytes = 10;
  const auto big = lgr::PayloadValidator(small).validate("{\"a\": 12345}", 0);
  REQUIRE_FALSE(big.has_value());
  CHECK(big.error().code == ErrorCode::payload_too_large);
  CHECK(big.error().http_status() == 413);

  const auto syntax = lgr::PayloadValidator().validate("{", kNow);
  REQUIRE_FALSE(syntax.has_value());
  CHECK(syntax.error().http_status() == 400);
}

TEST_CASE("rules: which unknown key names are content-bearing") {
  for (const char* key :
       {"prompt",         "system_prompt", "userPrompt",  "completion_text",
        "best_output",    "llm_response",  "LLMResponse", "error_message",
        "traceback",      "exception",     "content",     "input",
        "messages",       "error",         "Errors",      "raw-output",
        "model.response", "tool_inputs",   "stderr_tail", "PROMPT_TOKENS"}) {
    CAPTURE(key);
    CHECK(lgr::is_content_bearing_key(key));
  }
  for (const char* key : {"error_history", "error_count", "last_error_code",
                          "latency_ms", "outputting", "reprompted",
                          "contention", "inputless", "", "_", "Cap", "x1"}) {
    CAPTURE(key);
    CHECK_FALSE(lgr::is_content_bearing_key(key));
  }
}
