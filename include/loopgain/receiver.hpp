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
#include <functional>
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
    const CRequest req(request);
    lgr_http_response* raw = nullptr;
    lgr_status status = lgr_handle_request(handle_.get(), req.get(), &raw);
    std::unique_ptr<lgr_http_response, detail::Free> res(raw);
    if (!res) throw Error(status, nullptr);
    return to_response(res.get());
  }

  // Receives handle_async()'s answer. It must not throw: an exception it
  // throws is dropped, since it may run on the library's writer thread.
  using ResponseHandler = std::function<void(Response)>;

  // handle() for hosts with an event loop (lgr_handle_request_async()): an
  // accepted ingest is answered on the library's writer thread once its
  // event is committed, everything else on this thread before this
  // returns. The header of the C API says what `done` may do on the writer
  // thread; hand the response to your own loop. A response the library
  // had no memory for arrives as status 500 with an empty body. Throws
  // (and never calls `done`) only if the request was refused outright.
  void handle_async(const Request& request, ResponseHandler done) {
    const CRequest req(request);
    auto pending = std::make_unique<ResponseHandler>(std::move(done));
    const lgr_status status = lgr_handle_request_async(
        handle_.get(), req.get(), &answer_async, pending.get());
    if (status != LGR_OK && status != LGR_ERR_CLOSED) {
      throw Error(status, nullptr);
    }
    pending.release();  // answer_async() owns it now, or already freed it
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
  // A Request as the C API takes it; points into the strings it holds.
  class CRequest {
   public:
    explicit CRequest(const Request& request)
        : method_(request.method),
          path_(request.path),
          query_(request.query) {
      lgr_http_request_init(&c_);
      c_.method = method_.c_str();
      c_.path = path_.c_str();
      c_.query = query_.c_str();
      auto c_str = [](const std::optional<std::string>& s) {
        return s ? s->c_str() : nullptr;
      };
      c_.authorization = c_str(request.authorization);
      c_.origin = c_str(request.origin);
      c_.content_type = c_str(request.content_type);
      c_.content_length = c_str(request.content_length);
      c_.body = request.body.data();
      c_.body_len = request.body.size();
    }
    CRequest(const CRequest&) = delete;
    CRequest& operator=(const CRequest&) = delete;
    const lgr_http_request* get() const noexcept { return &c_; }

   private:
    std::string method_, path_, query_;
    lgr_http_request c_;
  };

  static Response to_response(const lgr_http_response* res) {
    Response out;
    out.status = lgr_http_response_status(res);
    std::size_t len = 0;
    const char* body = lgr_http_response_body(res, &len);
    out.body.assign(body, len);
    for (std::size_t i = 0; i < lgr_http_response_header_count(res); ++i) {
      const char* name = nullptr;
      const char* value = nullptr;
      lgr_http_response_header(res, i, &name, &value);
      out.headers.emplace_back(name, value);
    }
    out.customer_id = lgr_http_response_customer_id(res);
    return out;
  }

  // lgr_http_response_fn for handle_async(); nothing may leave it.
  static void answer_async(void* user_data, lgr_http_response* raw) noexcept {
    std::unique_ptr<ResponseHandler> done(
        static_cast<ResponseHandler*>(user_data));
    std::unique_ptr<lgr_http_response, detail::Free> res(raw);
    try {
      Response out;
      if (res) {
        out = to_response(res.get());
      } else {
        out.status = 500;
      }
      (*done)(std::move(out));
    } catch (...) {
      // Documented: an exception from `done` (or no memory for the copy)
      // is dropped here rather than crossing the C library's thread.
    }
  }

  std::unique_ptr<lgr_receiver, detail::Free> handle_;
};

}  // namespace loopgain

#endif  // LOOPGAIN_RECEIVER_HPP
