#include "payload_rules.hpp"

#include <array>
#include <cstdint>

namespace lgr {
namespace {

enum class Match {
  any_word,   // the word anywhere in the key: "best_output", "userPrompt"
  only_word,  // the key is this one word: "error", but not "error_count"
};

struct ContentWord {
  std::string_view word;  // lower case
  Match match;
};

// Words that make an unknown key content-bearing (privacy_violation
// whatever its value). The contract names prompt, completion, messages,
// output, response, error/error_message/traceback/exception text, content
// and input; singular and plural forms are listed, plus "text",
// "stacktrace" and "stderr".
// "error" alone counts only as the whole key: "error_message" is caught by
// "message", while numeric fields such as "error_count" stay harmless.
// Every string under an unknown key is refused anyway, so this table is
// for keys whose values are not strings (null, numbers, containers).
// TODO(#3): word matching refuses harmless numeric keys too
// ("input_tokens", "prompt_count"); acceptable while no client sends them.
constexpr std::array<ContentWord, 23> kContentWords{{
    {"prompt", Match::any_word},     {"prompts", Match::any_word},
    {"completion", Match::any_word}, {"completions", Match::any_word},
    {"message", Match::any_word},    {"messages", Match::any_word},
    {"output", Match::any_word},     {"outputs", Match::any_word},
    {"response", Match::any_word},   {"responses", Match::any_word},
    {"content", Match::any_word},    {"contents", Match::any_word},
    {"input", Match::any_word},      {"inputs", Match::any_word},
    {"text", Match::any_word},       {"traceback", Match::any_word},
    {"tracebacks", Match::any_word}, {"stacktrace", Match::any_word},
    {"exception", Match::any_word},  {"exceptions", Match::any_word},
    {"error", Match::only_word},     {"errors", Match::only_word},
    {"stderr", Match::any_word},
}};

bool is_upper(char c) {
  return c >= 'A' && c <= 'Z';
}
bool is_lower(char c) {
  return c >= 'a' && c <= 'z';
}
bool is_letter(char c) {
  return is_upper(c) || is_lower(c);
}

bool equals_ignoring_case(std::string_view word, std::string_view lower) {
  if (word.size() != lower.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    char c = word[i];
    if (is_upper(c)) c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

// Whether a new word starts at key[i] (a letter).
bool starts_word(std::string_view key, std::size_t i) {
  if (i == 0 || !is_letter(key[i - 1])) return true;
  if (!is_upper(key[i])) return false;
  if (is_lower(key[i - 1])) return true;  // userPrompt
  // LLMResponse: the last capital of a run begins the next word.
  return i + 1 < key.size() && is_lower(key[i + 1]);
}

bool is_forbidden_code_point(std::uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0xFEFF || cp == 0x200E || cp == 0x200F ||
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

// Decodes one UTF-8 sequence at text[i]; returns its length, 0 if invalid.
std::size_t decode_utf8(std::string_view text, std::size_t i,
                        std::uint32_t& cp) {
  const auto byte = [&](std::size_t k) {
    return static_cast<std::uint8_t>(text[k]);
  };
  const std::uint8_t b0 = byte(i);
  std::size_t len = 0;
  std::uint32_t min = 0;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (text.size() - i < len) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  const bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
  if (cp < min || cp > 0x10FFFF || surrogate) return 0;
  return len;
}

}  // namespace

bool is_content_bearing_key(std::string_view key) noexcept {
  std::size_t words = 0;
  bool only_word_hit = false;
  std::size_t i = 0;
  while (i < key.size()) {
    if (!is_letter(key[i])) {
      ++i;
      continue;
    }
    std::size_t end = i + 1;
    while (end < key.size() && is_letter(key[end]) && !starts_word(key, end))
      ++end;
    const std::string_view word = key.substr(i, end - i);
    ++words;
    for (const ContentWord& cw : kContentWords) {
      if (!equals_ignoring_case(word, cw.word)) continue;
      if (cw.match == Match::any_word) return true;
      only_word_hit = true;
    }
    i = end;
  }
  return only_word_hit && words == 1;
}

LabelProblem check_label(std::string_view text,
                         std::size_t max_chars) noexcept {
  if (text.empty()) return LabelProblem::empty;
  std::size_t chars = 0;
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t cp = 0;
    const std::size_t len = decode_utf8(text, i, cp);
    if (len == 0) return LabelProblem::invalid_utf8;
    if (is_forbidden_code_point(cp)) return LabelProblem::not_printable;
    if (++chars > max_chars) return LabelProblem::too_long;
    i += len;
  }
  return LabelProblem::none;
}

bool is_known_outcome(std::string_view outcome) noexcept {
  constexpr std::array<std::string_view, 7> kKnown{
      "converged", "oscillating", "diverged",   "max_iterations",
      "stalled",   "in_progress", "not_started"};
  for (const std::string_view known : kKnown) {
    if (outcome == known) return true;
  }
  return false;
}

bool is_well_formed_outcome(std::string_view outcome) noexcept {
  if (outcome.empty() || outcome.size() > 64 || !is_lower(outcome[0])) {
    return false;
  }
  for (const char c : outcome) {
    if (!is_lower(c) && !(c >= '0' && c <= '9') && c != '_') return false;
  }
  return true;
}

bool is_well_formed_package_token(std::string_view text) noexcept {
  if (text.empty() || text.size() > 64) return false;
  for (const char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                    c == '+' || c == '!' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace lgr
