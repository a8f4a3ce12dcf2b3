#include "json_tree.hpp"

#include <boost/json/basic_parser_impl.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <vector>

namespace lgr::json {

double Value::as_double() const noexcept {
  switch (kind) {
    case Kind::int64:
      return static_cast<double>(int64);
    case Kind::uint64:
      return static_cast<double>(uint64);
    case Kind::number:
      break;
    default:
      return 0;
  }
  double d = 0;
  const auto [end, err] = std::from_chars(chars, chars + size, d);
  (void)end;
  // Overflow was refused by the parser, so a range error is an underflow.
  if (err == std::errc::result_out_of_range) {
    return size > 0 && chars[0] == '-' ? -0.0 : 0.0;
  }
  return d;
}

const Value* Value::find(std::string_view key) const noexcept {
  if (kind != Kind::object) return nullptr;
  for (const Member& m : object()) {
    if (m.key == key) return &m.value;
  }
  return nullptr;
}

void append_pointer_token(std::string& pointer, std::string_view token) {
  pointer += '/';
  for (const char c : token) {
    if (c == '~')
      pointer += "~0";
    else if (c == '/')
      pointer += "~1";
    else
      pointer += c;
  }
}

namespace {

namespace bj = boost::json;

// Why a handler call failed (the parser only carries an error_code).
enum class Failure { none, number_range, duplicate_key };

// A stack of members in the arena. (std::pmr::vector's emplace_back, not
// inlined, took a fifth of the time of parsing a 10 KB payload.) Outgrown
// blocks stay in the arena until it is released.
class MemberStack {
 public:
  MemberStack(std::pmr::memory_resource& arena, std::size_t capacity)
      : arena_(arena), capacity_(capacity) {
    data_ = allocate(capacity_);
  }

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  Member* data() { return data_; }
  const Member& front() const { return data_[0]; }
  void shrink_to(std::size_t n) { size_ = n; }

  void push(const Member& m) {
    if (size_ == capacity_) grow();
    new (data_ + size_) Member(m);
    ++size_;
  }

 private:
  Member* allocate(std::size_t n) {
    return static_cast<Member*>(
        arena_.allocate(n * sizeof(Member), alignof(Member)));
  }

  void grow() {
    Member* bigger = allocate(capacity_ * 2);
    std::uninitialized_copy(data_, data_ + size_, bigger);
    data_ = bigger;
    capacity_ *= 2;
  }

  std::pmr::memory_resource& arena_;
  Member* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_;
};

// The basic_parser handler. Values wait on `stack_` (with the key they
// belong to) until their container closes; then they move, as one block,
// into the arena. Keys, strings and numbers split into parts (escapes do
// that) are joined in `pending_` first.
class TreeBuilder {
 public:
  static constexpr std::size_t max_object_size =
      std::numeric_limits<std::uint32_t>::max();
  static constexpr std::size_t max_array_size = max_object_size;
  static constexpr std::size_t max_key_size = max_object_size;
  static constexpr std::size_t max_string_size = max_object_size;

  explicit TreeBuilder(std::pmr::memory_resource& arena)
      : arena_(arena), stack_(arena, 64), frames_(&arena), pending_(&arena) {
    frames_.reserve(8);
  }

  Failure failure() const { return failure_; }
  const std::string& duplicate_pointer() const { return duplicate_; }
  // The document, in the arena (the handler dies with the parser).
  const Value* root() const { return root_; }

  bool on_document_begin(bj::error_code&) { return true; }
  bool on_document_end(bj::error_code&) {
    if (stack_.size() == 1) {
      void* place = arena_.allocate(sizeof(Value), alignof(Value));
      root_ = new (place) Value(stack_.front().value);
    }
    return true;
  }

  bool on_object_begin(bj::error_code&) { return open(true); }
  bool on_array_begin(bj::error_code&) { return open(false); }
  bool on_object_end(std::size_t, bj::error_code& ec) {
    return close(true, ec);
  }
  bool on_array_end(std::size_t, bj::error_code& ec) {
    return close(false, ec);
  }

  bool on_key_part(bj::string_view s, std::size_t, bj::error_code&) {
    pending_.append(s.data(), s.size());
    return true;
  }
  bool on_key(bj::string_view s, std::size_t, bj::error_code&) {
    key_ = finish_chars(s);
    return true;
  }
  bool on_string_part(bj::string_view s, std::size_t, bj::error_code&) {
    pending_.append(s.data(), s.size());
    return true;
  }
  bool on_string(bj::string_view s, std::size_t, bj::error_code&) {
    const std::string_view text = finish_chars(s);
    Value v;
    v.kind = Kind::string;
    v.size = static_cast<std::uint32_t>(text.size());
    v.chars = text.data();
    return push(v);
  }

  bool on_number_part(bj::string_view s, bj::error_code&) {
    pending_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t i, bj::string_view, bj::error_code&) {
    pending_.clear();
    Value v;
    v.kind = Kind::int64;
    v.int64 = i;
    return push(v);
  }
  bool on_uint64(std::uint64_t u, bj::string_view, bj::error_code&) {
    pending_.clear();
    Value v;
    v.kind = Kind::uint64;
    v.uint64 = u;
    return push(v);
  }
  bool on_double(double d, bj::string_view s, bj::error_code& ec);

  bool on_bool(bool b, bj::error_code&) {
    Value v;
    v.kind = Kind::boolean;
    v.boolean = b;
    return push(v);
  }
  bool on_null(bj::error_code&) { return push(Value{}); }

  // Comments are refused by the parse options; these are never called.
  bool on_comment_part(bj::string_view, bj::error_code&) { return true; }
  bool on_comment(bj::string_view, bj::error_code&) { return true; }

 private:
  struct Frame {
    std::size_t first;     // index in stack_ of the first entry
    std::string_view key;  // the container's key in its parent object
    std::size_t index;     // the container's index in its parent array
    bool is_object;
  };

  bool push(const Value& v) {
    stack_.push(Member{key_, v});
    return true;
  }

  bool open(bool is_object) {
    std::size_t index = 0;
    if (!frames_.empty()) index = stack_.size() - frames_.back().first;
    frames_.push_back(Frame{stack_.size(), key_, index, is_object});
    key_ = {};
    return true;
  }

  bool close(bool is_object, bj::error_code& ec);
  bool find_duplicate(std::size_t first);
  std::string_view finish_chars(bj::string_view last);

  std::pmr::memory_resource& arena_;
  MemberStack stack_;
  std::pmr::vector<Frame> frames_;
  std::pmr::string pending_;
  std::string_view key_;
  const Value* root_ = nullptr;
  Failure failure_ = Failure::none;
  std::string duplicate_;
};

std::string_view TreeBuilder::finish_chars(bj::string_view last) {
  std::string_view text(last.data(), last.size());
  if (!pending_.empty()) {
    pending_.append(last.data(), last.size());
    text = pending_;
  }
  if (text.empty()) return {};

  auto* copy = static_cast<char*>(arena_.allocate(text.size(), 1));
  std::memcpy(copy, text.data(), text.size());
  pending_.clear();
  return {copy, text.size()};
}

bool TreeBuilder::on_double(double d, bj::string_view s, bj::error_code& ec) {
  const std::string_view text = finish_chars(s);

  // Boost has checked the grammar, and its value is within an ulp or so:
  // only near the ends of the range does from_chars need to decide whether
  // the literal fits a double (reading 1e400 as infinity would be wrong).
  if (!(std::fabs(d) < 1e300)) {
    double exact = 0;
    const auto [end, err] =
        std::from_chars(text.data(), text.data() + text.size(), exact);
    (void)end;
    if (err != std::errc()) {
      failure_ = Failure::number_range;
      ec = bj::error::exponent_overflow;
      return false;
    }
  }

  Value v;
  v.kind = Kind::number;
  v.size = static_cast<std::uint32_t>(text.size());
  v.chars = text.data();
  return push(v);
}

bool TreeBuilder::close(bool is_object, bj::error_code& ec) {
  const Frame frame = frames_.back();
  const std::size_t n = stack_.size() - frame.first;
  if (is_object && n > 1 && find_duplicate(frame.first)) {
    failure_ = Failure::duplicate_key;
    ec = bj::error::syntax;
    return false;
  }

  Value v;
  v.kind = is_object ? Kind::object : Kind::array;
  v.size = static_cast<std::uint32_t>(n);
  const Member* from = stack_.data() + frame.first;
  if (is_object && n > 0) {
    auto* members = static_cast<Member*>(
        arena_.allocate(n * sizeof(Member), alignof(Member)));
    std::uninitialized_copy(from, from + n, members);
    v.members = members;
  } else if (n > 0) {
    auto* items =
        static_cast<Value*>(arena_.allocate(n * sizeof(Value), alignof(Value)));
    for (std::size_t i = 0; i < n; ++i) items[i] = from[i].value;
    v.items = items;
  } else {
    v.items = nullptr;
  }

  stack_.shrink_to(frame.first);
  frames_.pop_back();
  key_ = frame.key;
  return push(v);
}

// Sets duplicate_ to the pointer of the first key (in document order) that
// repeats an earlier key of the object starting at stack_[first].
bool TreeBuilder::find_duplicate(std::size_t first) {
  const std::size_t n = stack_.size() - first;
  const Member* m = stack_.data() + first;
  std::size_t found = n;

  // Payload objects have about ten keys: pairwise is fastest there. Big
  // objects (which only a hostile client sends) are sorted instead, to
  // stay O(n log n).
  if (n <= 16) {
    for (std::size_t j = 1; j < n && found == n; ++j) {
      for (std::size_t i = 0; i < j; ++i) {
        if (m[i].key == m[j].key) {
          found = j;
          break;
        }
      }
    }
  } else {
    std::pmr::vector<std::size_t> order(n, &arena_);
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
    std::stable_sort(
        order.begin(), order.end(),
        [m](std::size_t a, std::size_t b) { return m[a].key < m[b].key; });
    for (std::size_t i = 1; i < n; ++i) {
      if (m[order[i]].key == m[order[i - 1]].key) {
        found = std::min(found, order[i]);
      }
    }
  }
  if (found == n) return false;

  // The pointer: each open container's place in its parent, then the key.
  for (std::size_t f = 1; f < frames_.size(); ++f) {
    if (frames_[f - 1].is_object) {
      append_pointer_token(duplicate_, frames_[f].key);
    } else {
      append_pointer_token(duplicate_, std::to_string(frames_[f].index));
    }
  }
  append_pointer_token(duplicate_, m[found].key);
  return true;
}

Error invalid_json(std::size_t offset, std::string_view what) {
  std::string message = "invalid JSON at byte " + std::to_string(offset);
  message += ": ";
  message += what;
  return make_error(ErrorCode::invalid_json, "", std::move(message));
}

}  // namespace

Result<const Value*> parse_json_tree(std::string_view text,
                                     std::pmr::memory_resource& arena,
                                     const ParseOptions& options) {
  std::size_t skipped = 0;
  if (text.substr(0, 3) == "\xEF\xBB\xBF") skipped = 3;
  const std::string_view body = text.substr(skipped);
  if (body.size() > TreeBuilder::max_string_size) {
    return invalid_json(0, "document too large");
  }

  bj::parse_options po;
  po.max_depth = options.max_depth;
  bj::basic_parser<TreeBuilder> parser(po, arena);
  bj::error_code ec;
  const std::size_t used =
      parser.write_some(false, body.data(), body.size(), ec);
  const std::size_t offset = skipped + used;

  const TreeBuilder& tree = parser.handler();
  switch (tree.failure()) {
    case Failure::duplicate_key:
      return make_error(ErrorCode::invalid_payload, tree.duplicate_pointer(),
                        "duplicate key in a JSON object");
    case Failure::number_range:
      return invalid_json(offset, "number out of range");
    default:
      break;
  }
  if (ec) return invalid_json(offset, ec.message());
  if (used != body.size() || tree.root() == nullptr) {
    return invalid_json(offset, "unexpected data after the JSON value");
  }
  return tree.root();
}

}  // namespace lgr::json
