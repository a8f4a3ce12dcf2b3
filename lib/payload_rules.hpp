// The parts of the payload contract that judge names and text: which key
// names are content-bearing, what an opaque label may hold, and what a
// well-formed outcome looks like. Used by the payload validator; kept apart
// so that the rules are one small table each and can be tested alone.
//
// Thread safety: every function is pure.
#pragma once

#include <cstddef>
#include <string_view>

namespace lgr {

// Whether an unknown key's name says that its value carries content
// (prompts, model output, messages, error text...). The name is split into
// words at '_', '-', '.', digits, any other non-letter and at camelCase
// boundaries ("userPrompt" -> user|prompt, "LLMResponse" -> llm|response),
// and each word is compared, ignoring ASCII case, with the table
// kContentWords in payload_rules.cpp. Known payload keys are never passed
// here: "error_history" is a known key, not a content-bearing one.
bool is_content_bearing_key(std::string_view key) noexcept;

enum class LabelProblem {
  none,
  empty,
  too_long,       // more than max_chars Unicode characters
  not_printable,  // a control, line/paragraph separator or bidi control
  invalid_utf8,
};

// Checks an opaque label (workload_id, framework, loop_type, team, library,
// library_version): 1 to `max_chars` Unicode characters (code points), none
// of them a C0/C1 control (tab and newline included), DEL, U+2028, U+2029,
// U+FEFF or a bidirectional formatting control (U+200E, U+200F,
// U+202A-U+202E, U+2066-U+2069), which could forge lines or reorder text
// in a log or dashboard.
LabelProblem check_label(std::string_view text, std::size_t max_chars) noexcept;

// Outcomes the loopgain client sends today.
bool is_known_outcome(std::string_view outcome) noexcept;

// A well-formed outcome: 1 to 64 characters from [a-z0-9_], starting with a
// letter. Unknown but well-formed values are accepted and stored as sent
// (newer clients may add outcomes; the reads count them like any other).
// The narrow alphabet keeps outcome an identifier rather than a text field.
bool is_well_formed_outcome(std::string_view outcome) noexcept;

// A package name or version as Python packaging writes them (`library`,
// `library_version`): 1 to 64 characters of A-Z, a-z, 0-9 and . _ + ! -
// ("loopgain", "0.6.4", "1.0rc1", "1!2.0+local.3"). Unlike the opaque
// labels these fields have a known shape, so free text (spaces, sentences)
// is refused rather than stored.
bool is_well_formed_package_token(std::string_view text) noexcept;

}  // namespace lgr
