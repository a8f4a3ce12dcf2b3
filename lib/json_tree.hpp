// A strict, bounded JSON reader that lays out a read-only tree in an arena.
//
// Strictness (RFC 8259 and then some): no comments, no trailing commas, no
// NaN or Infinity, valid UTF-8 only (unpaired surrogate escapes refused),
// one value and only whitespace after it, nesting at most `max_depth`
// levels, no duplicate key in an object, and every number representable as
// a finite double (1e400 is refused; 1e-400 reads as 0). A leading UTF-8
// byte order mark is skipped.
//
// Why not boost::json::value: Boost.JSON 1.81 keeps the last of duplicate
// keys without telling, reads 1e400 as infinity and rounds some decimals
// one unit in the last place away from the nearest double. So its SAX
// parser (basic_parser: syntax, UTF-8, depth) drives a handler of ours that
// detects duplicates, keeps each non-integer's text to read it with
// std::from_chars (correctly rounded) when it is needed, and builds the
// tree with no allocation per node: all
// memory, tree and strings, comes from the caller's memory resource, which
// is typically a std::pmr::monotonic_buffer_resource over a stack buffer.
//
// Thread safety: parse_json_tree() is reentrant; a tree is immutable and
// lives as long as the arena it was built in.
#pragma once

#include "error.hpp"

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <span>
#include <string_view>

namespace lgr::json {

enum class Kind : std::uint8_t {
  null,
  boolean,
  int64,   // an integer literal that fits int64_t
  uint64,  // an integer literal above INT64_MAX that fits uint64_t
  number,  // any other number (fraction, exponent, or too large); its
           // literal text is kept and read by as_double() on demand
  string,
  array,
  object,
};

struct Member;

struct Value {
  Kind kind = Kind::null;
  std::uint32_t size = 0;  // bytes of a string or number literal, entries
                           // of a container
  union {
    bool boolean;
    std::int64_t int64;
    std::uint64_t uint64 = 0;
    const char* chars;  // string, number
    const Value* items;
    const Member* members;
  };

  bool is_null() const noexcept { return kind == Kind::null; }
  bool is_number() const noexcept {
    return kind == Kind::int64 || kind == Kind::uint64 || kind == Kind::number;
  }
  // Any number as a double: the nearest double to what was written
  // (std::from_chars), 0 for a literal too small to be a subnormal, 0 for
  // a value that is not a number. Integers above 2^53 round.
  double as_double() const noexcept;

  std::string_view string() const noexcept { return {chars, size}; }
  std::span<const Value> array() const noexcept { return {items, size}; }
  std::span<const Member> object() const noexcept;

  // The first member named `key`, or null (objects only).
  const Value* find(std::string_view key) const noexcept;
};

struct Member {
  std::string_view key;
  Value value;
};

inline std::span<const Member> Value::object() const noexcept {
  return {members, size};
}

struct ParseOptions {
  std::size_t max_depth = 8;
};

// Parses `text` into a tree allocated from `arena`. Errors:
//   invalid_json     pointer "", message naming the byte offset (counted
//                    from the start of `text`, byte order mark included);
//   invalid_payload  a duplicate key, at the pointer of its second
//                    occurrence (the document is JSON, but ambiguous).
// May throw std::bad_alloc when `arena` does.
Result<const Value*> parse_json_tree(std::string_view text,
                                     std::pmr::memory_resource& arena,
                                     const ParseOptions& options = {});

// Appends "/" and `token` escaped as RFC 6901 requires ("~" -> "~0",
// "/" -> "~1").
void append_pointer_token(std::string& pointer, std::string_view token);

}  // namespace lgr::json
