// A small append-only JSON writer for the read responses.
//
// Why not boost::json::value + serialize(): Boost.JSON 1.81 prints every
// double in exponent form (0.5 becomes "5E-1"). That is valid JSON, but the
// original service answered "0.5", and people read these bodies with curl.
// So structure is written here, strings are escaped by Boost.JSON and
// doubles are formatted by std::to_chars (shortest text that round-trips,
// hence exact). Writing straight into one string also avoids building a DOM
// of up to 1000 rows per read.
//
// The writer does not check nesting; callers write well-formed sequences
// (every function below is covered by the read tests).
#pragma once

#include <boost/json/serialize.hpp>
#include <boost/json/string_view.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lgr {

class JsonWriter {
 public:
  void begin_object() { separate(); out_ += '{'; first_ = true; }
  void end_object() { out_ += '}'; first_ = false; }
  void begin_array() { separate(); out_ += '['; first_ = true; }
  void end_array() { out_ += ']'; first_ = false; }

  // Writes "name": and leaves the writer ready for the value.
  void key(std::string_view name) {
    separate();
    append_string(name);
    out_ += ':';
    first_ = true;  // the value that follows takes no comma
  }

  void value(std::string_view s) { separate(); append_string(s); }
  void value(const char* s) { value(std::string_view(s)); }
  void value(bool b) { separate(); out_ += b ? "true" : "false"; }
  void value(std::int64_t n) { separate(); append_number(n); }
  void value(int n) { value(static_cast<std::int64_t>(n)); }
  void value(double d) {
    separate();
    // Non-finite values cannot be stored (the validator refuses them);
    // should one appear anyway, null is the only valid JSON for it.
    if (!std::isfinite(d)) {
      out_ += "null";
      return;
    }
    append_number(d);
  }
  void null() { separate(); out_ += "null"; }

  template <class T>
  void value(const std::optional<T>& v) {
    if (v) value(*v);
    else null();
  }

  template <class T>
  void member(std::string_view name, const T& v) {
    key(name);
    value(v);
  }

  std::string take() { return std::move(out_); }
  const std::string& str() const { return out_; }

 private:
  void separate() {
    if (!first_) out_ += ',';
    first_ = false;
  }

  void append_string(std::string_view s) {
    out_ += boost::json::serialize(boost::json::string_view(s.data(),
                                                            s.size()));
  }

  template <class N>
  void append_number(N n) {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
    out_.append(buf, ec == std::errc() ? end : buf);
  }

  std::string out_;
  bool first_ = true;
};

}  // namespace lgr
