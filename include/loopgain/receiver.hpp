// loopgain-receiver for C++ hosts: a header-only RAII layer over the C API.
//
// Everything here is inline code compiled into the host, calling only the
// C ABI of receiver.h, so a host built with another compiler or standard
// library still links the same shared object. Failures throw
// loopgain::Error (the C functions themselves never throw).
//
// Thread safety: as for the C API — one Receiver may be used from many
// threads at once.
#ifndef LOOPGAIN_RECEIVER_HPP
#define LOOPGAIN_RECEIVER_HPP

#include "loopgain/receiver.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loopgain {

// A failed call: the C status plus the details of its lgr_error.
class Error : public std::runtime_error {
 public:
  Error(lgr_status status, const lgr_error* e)
      : std::runtime_error(e ? lgr_error_message(e) : lgr_status_name(status)),
        status_(status),
        code_(e ? lgr_error_code_name(e) : lgr_status_name(status)),
        pointer_(e ? lgr_error_pointer(e) : ""),
        http_status_(e ? lgr_error_http_status(e) : 500) {}

  lgr_status status() const noexcept { return status_; }
  const std::string& code() const noexcept { return code_; }
  const std::string& pointer() const noexcept { return pointer_; }
  int http_status() const noexcept { return http_status_; }

 private:
  lgr_status status_;
  std::string code_;
  std::string pointer_;
  int http_status_;
};

namespace detail {

struct Free {
  void operator()(lgr_error* p) const noexcept { lgr_error_free(p); }
  void operator()(char* p) const noexcept { lgr_string_free(p); }
  void operator()(lgr_options* p) const noexcept { lgr_options_free(p); }
  void operator()(lgr_receiver* p) const noexcept { lgr_receiver_free(p); }
  void operator()(lgr_http_response* p) const noexcept {
    lgr_http_response_free(p);
  }
};

// Throws loopgain::Error unless `status` is LGR_OK; always frees `error`.
inline void check(lgr_status status, lgr_error* error) {
  std::unique_ptr<lgr_error, Free> owned(error);
  if (status != LGR_OK) throw Error(status, error);
}

// Takes ownership of a library string and returns it as std::string.
inline std::string take(char* s, std::size_t len) {
  std::unique_ptr<char, Free> owned(s);
  return s ? std::string(s, len) : std::string();
}

}  // namespace detail

struct Options {
  std::string db_path = "./var/telemetry.db";
  lgr_privacy_policy privacy_policy = LGR_PRIVACY_SUMMARY_ONLY;
  std::size_t max_body_bytes = 256 * 1024;
  std::vector<std::string> cors_origins;
  std::int64_t fixed_time = 0;  // tests and replays only
};

// What lgr_handle_request() answered.
struct Response {
  int status = 0;
  std::string body;  // always JSON (Content-Type: application/json)
  std::vector<std::pair<std::string, std::string>> headers;
  std::string customer_id;  // for access logs; empty if none
};

// The parts of an HTTP request the receiver looks at. Empty optionals are
// absent headers.
struct Request {
  std::string_view method;
  std::string_view path;
  std::string_view query;
  std::optional<std::string> authorization;
  std::optional<std::string> origin;
  std::optional<std::string> content_type;
  std::optional<std::string> content_length;
  std::string_view body;
};

class Receiver {
 public:
  explicit Receiver(const Options& options = {}) {
    std::unique_ptr<lgr_options, detail::Free> o(lgr_options_create());
    if (!o) throw Error(LGR_ERR_NO_MEMORY, nullptr);
    lgr_error* e = nullptr;
    detail::check(lgr_options_set_db_path(o.get(), options.db_path.c_str(),
                                          &e), e);
    detail::check(lgr_options_set_privacy_policy(
                      o.get(), options.privacy_policy, &e), e);
    detail::check(lgr_options_set_max_body_bytes(
                      o.get(), options.max_body_bytes, &e), e);
    for (const auto& origin : options.cors_origins) {
      detail::check(lgr_options_add_cors_origin(o.get(), origin.c_str(), &e),
                    e);
    }
    detail::check(lgr_options_set_fixed_time(o.get(), options.fixed_time, &e),
                  e);
    lgr_receiver* r = nullptr;
    detail::check(lgr_receiver_open(o.get(), &r, &e), e);
    handle_.reset(r);
  }

  // Runs one request through the route table. Never throws for HTTP
  // errors: those are responses. Throws only if no response was made.
  Response handle(const Request& request) {
    lgr_http_request req;
    lgr_http_request_init(&req);
    const std::string method(request.method), path(request.path),
        query(request.query);
    req.method = method.c_str();
    req.path = path.c_str();
    req.query = query.c_str();
    auto c_str = [](const std::optional<std::string>& s) {
      return s ? s->c_str() : nullptr;
    };
    req.authorization = c_str(request.authorization);
    req.origin = c_str(request.origin);
    req.content_type = c_str(request.content_type);
    req.content_length = c_str(request.content_length);
    req.body = request.body.data();
    req.body_len = request.body.size();

    lgr_http_response* raw = nullptr;
    lgr_status status = lgr_handle_request(handle_.get(), &req, &raw);
    std::unique_ptr<lgr_http_response, detail::Free> res(raw);
    if (!res) throw Error(status, nullptr);

    Response out;
    out.status = lgr_http_response_status(res.get());
    std::size_t len = 0;
    const char* body = lgr_http_response_body(res.get(), &len);
    out.body.assign(body, len);
    for (std::size_t i = 0; i < lgr_http_response_header_count(res.get());
         ++i) {
      const char* name = nullptr;
      const char* value = nullptr;
      lgr_http_response_header(res.get(), i, &name, &value);
      out.headers.emplace_back(name, value);
    }
    out.customer_id = lgr_http_response_customer_id(res.get());
    return out;
  }

  // A new customer and its first token: {customer_id, token}.
  std::pair<std::string, std::string> create_customer(
      const std::string& name) {
    char* id = nullptr;
    char* token = nullptr;
    lgr_error* e = nullptr;
    detail::check(lgr_customer_create(handle_.get(), name.c_str(), nullptr,
                                      &id, &token, &e), e);
    std::string id_s = detail::take(id, std::char_traits<char>::length(id));
    return {std::move(id_s),
            detail::take(token, std::char_traits<char>::length(token))};
  }

  std::string stats_json(const std::string& customer_id) {
    char* json = nullptr;
    std::size_t len = 0;
    lgr_error* e = nullptr;
    detail::check(lgr_stats_json(handle_.get(), customer_id.c_str(), &json,
                                 &len, &e), e);
    return detail::take(json, len);
  }

  // Commits everything acknowledged and closes the database.
  void close() {
    lgr_error* e = nullptr;
    detail::check(lgr_receiver_close(handle_.get(), &e), e);
  }

  // The C handle, for functions this layer does not wrap.
  lgr_receiver* native_handle() const noexcept { return handle_.get(); }

 private:
  std::unique_ptr<lgr_receiver, detail::Free> handle_;
};

}  // namespace loopgain

#endif  // LOOPGAIN_RECEIVER_HPP
