// The C ABI over the C++ core.
//
// This file is the only place where C and C++ meet. Every entry point
// catches everything, so no exception crosses extern "C"; every object
// handed out is a struct defined here and released by its own lgr_*_free;
// every string handed out is malloc'd, so lgr_string_free() is free() on
// the library's side of the boundary, whatever allocator the host uses.
#include <loopgain/receiver.h>

#include "error.hpp"
#include "http_routes.hpp"
#include "payload_rules.hpp"
#include "receiver.hpp"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct lgr_error {
  lgr_status status = LGR_ERR_INTERNAL;
  std::string code;
  std::string pointer;
  std::string message;
  int http_status = 500;
};

struct lgr_options {
  lgr::ReceiverOptions receiver;
  lgr_log_fn log_fn = nullptr;
  void* log_user = nullptr;
};

struct lgr_receiver {
  std::unique_ptr<lgr::Receiver> impl;
};

struct lgr_ingest_result {
  std::string customer_id;
  std::vector<std::string> redacted;
  std::vector<std::string> ignored;
};

struct lgr_http_response {
  lgr::HttpResponse response;
};

namespace {

// Customer names and emails: bounded like the payload's labels.
constexpr std::size_t kMaxNameChars = 200;

lgr_status status_of(lgr::ErrorCode code) {
  using lgr::ErrorCode;
  switch (code) {
    case ErrorCode::invalid_json:
    case ErrorCode::invalid_payload:
    case ErrorCode::unsupported_schema_version:
    case ErrorCode::invalid_timestamp_hour:
    case ErrorCode::payload_too_large:
    case ErrorCode::privacy_violation:
      return LGR_ERR_INVALID_PAYLOAD;
    case ErrorCode::unauthorized: return LGR_ERR_UNAUTHORIZED;
    case ErrorCode::invalid_query: return LGR_ERR_INVALID_QUERY;
    case ErrorCode::not_found:
    case ErrorCode::customer_not_found:
      return LGR_ERR_NOT_FOUND;
    case ErrorCode::invalid_argument:
    case ErrorCode::bad_request:
    case ErrorCode::method_not_allowed:
    case ErrorCode::browser_requests_not_allowed:
    case ErrorCode::unsupported_media_type:
      return LGR_ERR_INVALID_ARGUMENT;
    case ErrorCode::storage_error: return LGR_ERR_STORAGE;
    case ErrorCode::busy: return LGR_ERR_BUSY;
    case ErrorCode::schema_too_new: return LGR_ERR_SCHEMA_TOO_NEW;
    case ErrorCode::closed: return LGR_ERR_CLOSED;
    case ErrorCode::internal_error: return LGR_ERR_INTERNAL;
  }
  return LGR_ERR_INTERNAL;
}

// Hands `e` to the caller (if it asked for details) and returns its status.
lgr_status fail(const lgr::Error& e, lgr_error** out) {
  const lgr_status status = status_of(e.code);
  if (out) {
    // Allocation failure here must not turn into an exception: the caller
    // still gets the status, only without details.
    auto* err = new (std::nothrow) lgr_error;
    if (err) {
      err->status = status;
      err->code = std::string(lgr::error_code_name(e.code));
      err->pointer = e.pointer;
      err->message = e.message;
      err->http_status = e.http_status();
    }
    *out = err;
  }
  return status;
}

lgr_status fail(lgr::ErrorCode code, std::string message, lgr_error** out) {
  return fail(lgr::make_error(code, "", std::move(message)), out);
}

lgr_status invalid_argument(const char* what, lgr_error** out) {
  return fail(lgr::ErrorCode::invalid_argument, what, out);
}

// Runs `body` with every exception turned into a status. `error` is reset
// first so that success always leaves *error NULL.
template <class F>
lgr_status guarded(lgr_error** error, F&& body) noexcept {
  if (error) *error = nullptr;
  try {
    return body();
  } catch (const std::bad_alloc&) {
    if (error) *error = nullptr;
    return LGR_ERR_NO_MEMORY;
  } catch (const std::exception& e) {
    return fail(lgr::ErrorCode::internal_error, e.what(), error);
  } catch (...) {
    return fail(lgr::ErrorCode::internal_error, "unknown exception", error);
  }
}

// A malloc'd, NUL-terminated copy (lgr_string_free releases it).
char* copy_out(std::string_view s) {
  auto* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

bool text_ok(const char* s) {
  return s != nullptr && lgr::is_valid_utf8(s);
}

// Every function that names a customer takes its id as UTF-8 text.
lgr_status check_customer_id(const char* customer_id, lgr_error** error) {
  if (text_ok(customer_id)) return LGR_OK;
  return invalid_argument("customer_id must be a UTF-8 string", error);
}

// The open receiver behind a handle, or an error status.
lgr_status usable(lgr_receiver* r, lgr_error** error) {
  if (!r || !r->impl) return invalid_argument("receiver is NULL", error);
  if (r->impl->closed()) {
    return fail(lgr::ErrorCode::closed, "the receiver is closed", error);
  }
  return LGR_OK;
}

// ---- lgr_http_request to lgr::HttpRequest ------------------------------------

bool request_usable(const lgr_http_request* request) {
  return request && request->method && request->path &&
         request->version >= 1 &&
         request->version <= LGR_HTTP_REQUEST_VERSION &&
         (request->body || request->body_len == 0);
}

std::optional<std::string_view> optional_text(const char* s) {
  if (!s) return std::nullopt;
  return std::string_view(s);
}

// Borrows the request's text.
lgr::HttpRequest borrow_request(const lgr_http_request& request) {
  lgr::HttpRequest req;
  req.method = request.method;
  req.path = request.path;
  req.query = request.query ? request.query : "";
  req.authorization = optional_text(request.authorization);
  req.origin = optional_text(request.origin);
  req.content_type = optional_text(request.content_type);
  req.content_length = optional_text(request.content_length);
  req.access_control_request_method =
      optional_text(request.access_control_request_method);
  req.body = std::string_view(request.body ? request.body : "",
                              request.body ? request.body_len : 0);
  return req;
}

// Header and target text reaches JSON error messages and the store only as
// valid UTF-8; anything else is a malformed request.
bool request_text_valid(const lgr::HttpRequest& req) {
  bool valid = lgr::is_valid_utf8(req.method) &&
               lgr::is_valid_utf8(req.path) && lgr::is_valid_utf8(req.query);
  for (const auto& h : {req.authorization, req.origin, req.content_type,
                        req.content_length,
                        req.access_control_request_method}) {
    if (h && !lgr::is_valid_utf8(*h)) valid = false;
  }
  return valid;
}

lgr::HttpResponse not_utf8_response() {
  return lgr::error_http_response(lgr::make_error(
      lgr::ErrorCode::bad_request, "", "request text is not UTF-8"));
}

}  // namespace

extern "C" {

// ---- Versions and names ------------------------------------------------------

const char* lgr_version(void) { return LGR_VERSION_STRING; }

int lgr_version_number(void) { return LGR_VERSION_NUMBER; }

const char* lgr_status_name(lgr_status status) {
  switch (status) {
    case LGR_OK: return "LGR_OK";
    case LGR_ERR_INVALID_ARGUMENT: return "LGR_ERR_INVALID_ARGUMENT";
    case LGR_ERR_CLOSED: return "LGR_ERR_CLOSED";
    case LGR_ERR_UNAUTHORIZED: return "LGR_ERR_UNAUTHORIZED";
    case LGR_ERR_INVALID_PAYLOAD: return "LGR_ERR_INVALID_PAYLOAD";
    case LGR_ERR_INVALID_QUERY: return "LGR_ERR_INVALID_QUERY";
    case LGR_ERR_NOT_FOUND: return "LGR_ERR_NOT_FOUND";
    case LGR_ERR_STORAGE: return "LGR_ERR_STORAGE";
    case LGR_ERR_BUSY: return "LGR_ERR_BUSY";
    case LGR_ERR_SCHEMA_TOO_NEW: return "LGR_ERR_SCHEMA_TOO_NEW";
    case LGR_ERR_NO_MEMORY: return "LGR_ERR_NO_MEMORY";
    case LGR_ERR_INTERNAL: return "LGR_ERR_INTERNAL";
  }
  return "LGR_ERR_UNKNOWN";
}

// ---- Errors and strings ------------------------------------------------------

lgr_status lgr_error_status(const lgr_error* e) {
  return e ? e->status : LGR_ERR_INVALID_ARGUMENT;
}
const char* lgr_error_code_name(const lgr_error* e) {
  return e ? e->code.c_str() : "";
}
const char* lgr_error_pointer(const lgr_error* e) {
  return e ? e->pointer.c_str() : "";
}
const char* lgr_error_message(const lgr_error* e) {
  return e ? e->message.c_str() : "";
}
int lgr_error_http_status(const lgr_error* e) {
  return e ? e->http_status : 500;
}
void lgr_error_free(lgr_error* e) { delete e; }

void lgr_string_free(char* s) { std::free(s); }

// ---- Options -----------------------------------------------------------------

lgr_options* lgr_options_create(void) {
  try {
    return new lgr_options;
  } catch (...) {
    return nullptr;
  }
}

void lgr_options_free(lgr_options* o) { delete o; }

lgr_status lgr_options_set_db_path(lgr_options* o, const char* path,
                                   lgr_error** error) {
  return guarded(error, [&] {
    if (!o) return invalid_argument("options is NULL", error);
    if (!text_ok(path) || *path == '\0') {
      return invalid_argument("path must be a non-empty UTF-8 string", error);
    }
    o->receiver.db_path = path;
    return LGR_OK;
  });
}

lgr_status lgr_options_set_privacy_policy(lgr_options* o,
                                          lgr_privacy_policy policy,
                                          lgr_error** error) {
  return guarded(error, [&] {
    if (!o) return invalid_argument("options is NULL", error);
    switch (policy) {
      case LGR_PRIVACY_SUMMARY_ONLY:
        o->receiver.policy = lgr::PrivacyPolicy::summary_only;
        return LGR_OK;
      case LGR_PRIVACY_TRAJECTORIES:
        o->receiver.policy = lgr::PrivacyPolicy::trajectories;
        return LGR_OK;
      case LGR_PRIVACY_STRICT:
        o->receiver.policy = lgr::PrivacyPolicy::strict;
        return LGR_OK;
    }
    return invalid_argument("unknown privacy policy", error);
  });
}

lgr_status lgr_options_set_privacy_policy_name(lgr_options* o,
                                               const char* name,
                                               lgr_error** error) {
  return guarded(error, [&] {
    if (!o) return invalid_argument("options is NULL", error);
    auto policy = name ? lgr::parse_privacy_policy(name) : std::nullopt;
    if (!policy) {
      return invalid_argument(
          "privacy policy must be summary_only, trajectories or strict",
          error);
    }
    o->receiver.policy = *policy;
    return LGR_OK;
  });
}

lgr_status lgr_options_set_max_body_bytes(lgr_options* o, size_t max_bytes,
                                          lgr_error** error) {
  return guarded(error, [&] {
    if (!o) return invalid_argument("options is NULL", error);
    if (max_bytes < 1 || max_bytes > 16u * 1024u * 1024u) {
      return invalid_argument("max body bytes must be 1 .. 16 MiB", error);
    }
    o->receiver.max_body_bytes = max_bytes;
    return LGR_OK;
  });
}

lgr_status lgr_options_add_cors_origin(lgr_options* o, const char* origin,
                                       lgr_error** error) {
  return guarded(error, [&] {
    if (!o) return invalid_argument("options is NULL", error);
    if (!origin || !lgr::is_browser_origin(origin)) {
      return invalid_argument(
          "origin must be http(s)://HOST[:PORT] with nothing after it",
          error);
    }
    o->receiver.cors_origins.emplace_back(origin);
    return LGR_OK;
  });
}

lgr_status lgr_options_set_logger(lgr_options* o, lgr_log_level min_level,
                                  lgr_log_fn fn, void* user_data,
                                  lgr_error** error) {
  return guarded(error, [&] {
    if (!o) return invalid_argument("options is NULL", error);
    if (min_level < LGR_LOG_DEBUG || min_level > LGR_LOG_ERROR) {
      return invalid_argument("unknown log level", error);
    }
    o->log_fn = fn;
    o->log_user = user_data;
    o->receiver.log_min_level = min_level;
    return LGR_OK;
  });
}

lgr_status lgr_options_set_fixed_time(lgr_options* o, int64_t unix_seconds,
                                      lgr_error** error) {
  return guarded(error, [&] {
    if (!o) return invalid_argument("options is NULL", error);
    if (unix_seconds < 0) {
      return invalid_argument("fixed time must be >= 0", error);
    }
    o->receiver.fixed_time = unix_seconds;
    return LGR_OK;
  });
}

// ---- Lifetime ------------------------------------------------------------------

lgr_status lgr_receiver_open(const lgr_options* options, lgr_receiver** out,
                             lgr_error** error) {
  return guarded(error, [&] {
    if (!out) return invalid_argument("out is NULL", error);
    *out = nullptr;

    lgr::ReceiverOptions ro = options ? options->receiver
                                      : lgr::ReceiverOptions{};
    if (options && options->log_fn) {
      lgr_log_fn fn = options->log_fn;
      void* user = options->log_user;
      ro.log = [fn, user](int level, std::string_view message) {
        const std::string line(message);
        fn(user, static_cast<lgr_log_level>(level), line.c_str());
      };
    }
    auto receiver = lgr::Receiver::open(std::move(ro));
    if (!receiver) return fail(receiver.error(), error);
    *out = new lgr_receiver{std::move(*receiver)};
    return LGR_OK;
  });
}

lgr_status lgr_receiver_close(lgr_receiver* r, lgr_error** error) {
  return guarded(error, [&] {
    if (!r || !r->impl) return invalid_argument("receiver is NULL", error);
    auto closed = r->impl->close();
    return closed ? LGR_OK : fail(closed.error(), error);
  });
}

void lgr_receiver_free(lgr_receiver* r) {
  if (!r) return;
  try {
    if (r->impl) (void)r->impl->close();
  } catch (...) {
    // Nothing can be reported from here; the handle is released anyway.
  }
  delete r;
}

// ---- Customers and tokens ------------------------------------------------------

lgr_status lgr_customer_create(lgr_receiver* r, const char* name,
                               const char* email, char** out_customer_id,
                               char** out_token, lgr_error** error) {
  return guarded(error, [&] {
    if (out_customer_id) *out_customer_id = nullptr;
    if (out_token) *out_token = nullptr;
    if (lgr_status s = usable(r, error)) return s;
    if (!out_customer_id || !out_token) {
      return invalid_argument("out_customer_id and out_token are required",
                              error);
    }
    if (!text_ok(name) || (email && !text_ok(email))) {
      return invalid_argument("name and email must be UTF-8 strings", error);
    }
    // Names and emails end up in admin listings and logs: the payload's
    // label rules (printable, one line, bounded) apply to them too.
    for (const auto& [argument, text] :
         {std::pair{"name", name}, std::pair{"email", email}}) {
      if (text && lgr::check_label(text, kMaxNameChars) !=
                      lgr::LabelProblem::none) {
        return fail(lgr::make_error(lgr::ErrorCode::invalid_argument, argument,
                                    std::string(argument) +
                                        " must be 1 to 200 printable "
                                        "characters on one line"),
                    error);
      }
    }
    std::optional<std::string_view> mail;
    if (email) mail = email;
    auto issued = r->impl->create_customer(name, mail);
    if (!issued) return fail(issued.error(), error);
    char* id = copy_out(issued->customer_id);
    char* token = nullptr;
    try {
      token = copy_out(issued->token);
    } catch (...) {
      std::free(id);
      throw;
    }
    *out_customer_id = id;
    *out_token = token;
    return LGR_OK;
  });
}

lgr_status lgr_token_rotate(lgr_receiver* r, const char* customer_id,
                            int64_t grace_seconds, char** out_token,
                            lgr_error** error) {
  return guarded(error, [&] {
    if (out_token) *out_token = nullptr;
    if (lgr_status s = usable(r, error)) return s;
    if (!out_token) return invalid_argument("out_token is NULL", error);
    if (lgr_status s = check_customer_id(customer_id, error)) return s;
    if (grace_seconds < 0) {
      return invalid_argument("grace_seconds must be >= 0", error);
    }
    auto token = r->impl->rotate_token(customer_id, grace_seconds);
    if (!token) return fail(token.error(), error);
    *out_token = copy_out(*token);
    return LGR_OK;
  });
}

lgr_status lgr_customer_revoke(lgr_receiver* r, const char* customer_id,
                               lgr_error** error) {
  return guarded(error, [&] {
    if (lgr_status s = usable(r, error)) return s;
    if (lgr_status s = check_customer_id(customer_id, error)) return s;
    auto done = r->impl->revoke_customer(customer_id);
    return done ? LGR_OK : fail(done.error(), error);
  });
}

lgr_status lgr_customer_delete(lgr_receiver* r, const char* customer_id,
                               lgr_error** error) {
  return guarded(error, [&] {
    if (lgr_status s = usable(r, error)) return s;
    if (lgr_status s = check_customer_id(customer_id, error)) return s;
    auto done = r->impl->delete_customer(customer_id);
    return done ? LGR_OK : fail(done.error(), error);
  });
}

namespace {

// Shared tail of every function that returns a JSON document.
lgr_status json_out(lgr::Result<std::string> json, char** out_json,
                    size_t* out_len, lgr_error** error) {
  if (!json) return fail(json.error(), error);
  *out_json = copy_out(*json);
  if (out_len) *out_len = json->size();
  return LGR_OK;
}

// Resets the JSON out-parameters and checks the common preconditions.
lgr_status json_call_ready(lgr_receiver* r, char** out_json, size_t* out_len,
                           lgr_error** error) {
  if (out_json) *out_json = nullptr;
  if (out_len) *out_len = 0;
  if (lgr_status s = usable(r, error)) return s;
  if (!out_json) return invalid_argument("out_json is NULL", error);
  return LGR_OK;
}

}  // namespace

lgr_status lgr_customers_list_json(lgr_receiver* r, char** out_json,
                                   size_t* out_len, lgr_error** error) {
  return guarded(error, [&] {
    if (lgr_status s = json_call_ready(r, out_json, out_len, error)) return s;
    return json_out(r->impl->customers_json(), out_json, out_len, error);
  });
}

lgr_status lgr_authenticate(lgr_receiver* r, const char* authorization,
                            char** out_customer_id, lgr_error** error) {
  return guarded(error, [&] {
    if (out_customer_id) *out_customer_id = nullptr;
    if (lgr_status s = usable(r, error)) return s;
    if (!out_customer_id) {
      return invalid_argument("out_customer_id is NULL", error);
    }
    if (authorization && !lgr::is_valid_utf8(authorization)) {
      return invalid_argument("authorization must be UTF-8", error);
    }
    auto customer = r->impl->authenticate(authorization ? authorization : "");
    if (!customer) return fail(customer.error(), error);
    *out_customer_id = copy_out(*customer);
    return LGR_OK;
  });
}

// ---- Ingest ----------------------------------------------------------------------

lgr_status lgr_ingest(lgr_receiver* r, const char* authorization,
                      const char* body, size_t body_len,
                      lgr_ingest_result** out_result, lgr_error** error) {
  return guarded(error, [&] {
    if (out_result) *out_result = nullptr;
    if (lgr_status s = usable(r, error)) return s;
    if (!body && body_len != 0) {
      return invalid_argument("body is NULL but body_len is not 0", error);
    }
    if (authorization && !lgr::is_valid_utf8(authorization)) {
      return invalid_argument("authorization must be UTF-8", error);
    }
    auto outcome = r->impl->ingest(
        authorization ? authorization : "",
        std::string_view(body ? body : "", body ? body_len : 0));
    if (!outcome) return fail(outcome.error(), error);
    if (out_result) {
      *out_result = new lgr_ingest_result{std::move(outcome->customer_id),
                                          std::move(outcome->redacted),
                                          std::move(outcome->ignored)};
    }
    return LGR_OK;
  });
}

const char* lgr_ingest_result_customer_id(const lgr_ingest_result* res) {
  return res ? res->customer_id.c_str() : "";
}
size_t lgr_ingest_result_redacted_count(const lgr_ingest_result* res) {
  return res ? res->redacted.size() : 0;
}
const char* lgr_ingest_result_redacted(const lgr_ingest_result* res,
                                       size_t i) {
  return res && i < res->redacted.size() ? res->redacted[i].c_str() : nullptr;
}
size_t lgr_ingest_result_ignored_count(const lgr_ingest_result* res) {
  return res ? res->ignored.size() : 0;
}
const char* lgr_ingest_result_ignored(const lgr_ingest_result* res,
                                      size_t i) {
  return res && i < res->ignored.size() ? res->ignored[i].c_str() : nullptr;
}
void lgr_ingest_result_free(lgr_ingest_result* res) { delete res; }

// ---- Reads -----------------------------------------------------------------------

lgr_status lgr_stats_json(lgr_receiver* r, const char* customer_id,
                          char** out_json, size_t* out_len,
                          lgr_error** error) {
  return guarded(error, [&] {
    if (lgr_status s = json_call_ready(r, out_json, out_len, error)) return s;
    if (lgr_status s = check_customer_id(customer_id, error)) return s;
    return json_out(r->impl->stats_json(customer_id), out_json, out_len,
                    error);
  });
}

lgr_status lgr_profiles_json(lgr_receiver* r, const char* customer_id,
                             const char* workload_id, int since_hours,
                             char** out_json, size_t* out_len,
                             lgr_error** error) {
  return guarded(error, [&] {
    if (lgr_status s = json_call_ready(r, out_json, out_len, error)) return s;
    if (lgr_status s = check_customer_id(customer_id, error)) return s;
    std::optional<std::string_view> workload;
    if (workload_id) workload = workload_id;
    return json_out(r->impl->profiles_json(customer_id, workload, since_hours),
                    out_json, out_len, error);
  });
}

lgr_status lgr_events_json(lgr_receiver* r, const char* customer_id,
                           int rollbacks_only, char** out_json,
                           size_t* out_len, lgr_error** error) {
  return guarded(error, [&] {
    if (lgr_status s = json_call_ready(r, out_json, out_len, error)) return s;
    if (lgr_status s = check_customer_id(customer_id, error)) return s;
    return json_out(r->impl->events_json(customer_id, rollbacks_only != 0),
                    out_json, out_len, error);
  });
}

// ---- HTTP-shaped requests ----------------------------------------------------------

void lgr_http_request_init(lgr_http_request* request) {
  if (!request) return;
  std::memset(request, 0, sizeof *request);
  request->version = LGR_HTTP_REQUEST_VERSION;
}

lgr_status lgr_handle_request(lgr_receiver* r,
                              const lgr_http_request* request,
                              lgr_http_response** out) {
  if (!out) return LGR_ERR_INVALID_ARGUMENT;
  *out = nullptr;
  if (!r || !r->impl || !request_usable(request)) {
    return LGR_ERR_INVALID_ARGUMENT;
  }
  try {
    auto response = std::make_unique<lgr_http_response>();
    const lgr::HttpRequest req = borrow_request(*request);
    lgr_status status = LGR_OK;
    if (r->impl->closed()) {
      response->response = lgr::closed_response();
      status = LGR_ERR_CLOSED;
    } else if (!request_text_valid(req)) {
      response->response = not_utf8_response();
    } else {
      response->response = lgr::handle_http(*r->impl, req);
    }
    *out = response.release();
    return status;
  } catch (const std::bad_alloc&) {
    return LGR_ERR_NO_MEMORY;
  } catch (...) {
    return LGR_ERR_INTERNAL;
  }
}

lgr_status lgr_handle_request_async(lgr_receiver* r,
                                    const lgr_http_request* request,
                                    lgr_http_response_fn on_response,
                                    void* user_data) {
  if (!r || !r->impl || !on_response || !request_usable(request)) {
    return LGR_ERR_INVALID_ARGUMENT;
  }
  // Hands the answer over; without memory for the copy, NULL (the
  // header's promise: NULL only when out of memory). A host callback that
  // throws anyway (a C++ host) must not make this call report a failure
  // after it has answered, nor unwind the writer thread.
  auto deliver = [on_response, user_data](lgr::HttpResponse response) {
    lgr_http_response* out = nullptr;
    try {
      out = new lgr_http_response{std::move(response)};
    } catch (...) {
      out = nullptr;
    }
    try {
      on_response(user_data, out);
    } catch (...) {
      // Dropped: see the header, on_response must not throw.
    }
  };
  try {
    const lgr::HttpRequest req = borrow_request(*request);
    if (r->impl->closed()) {
      deliver(lgr::closed_response());
      return LGR_ERR_CLOSED;
    }
    if (!request_text_valid(req)) {
      deliver(not_utf8_response());
      return LGR_OK;
    }
    // Whatever throws in here throws before `deliver` was called or the
    // event queued: the caller is told, and no callback will follow.
    lgr::handle_http_async(*r->impl, req, deliver);
    return LGR_OK;
  } catch (const std::bad_alloc&) {
    return LGR_ERR_NO_MEMORY;
  } catch (...) {
    return LGR_ERR_INTERNAL;
  }
}

int lgr_http_response_status(const lgr_http_response* res) {
  return res ? res->response.status : 500;
}

const char* lgr_http_response_content_type(const lgr_http_response* res) {
  (void)res;
  return "application/json";
}

const char* lgr_http_response_body(const lgr_http_response* res,
                                   size_t* out_len) {
  if (!res) {
    if (out_len) *out_len = 0;
    return "";
  }
  if (out_len) *out_len = res->response.body.size();
  return res->response.body.c_str();
}

size_t lgr_http_response_header_count(const lgr_http_response* res) {
  return res ? res->response.headers.size() : 0;
}

lgr_status lgr_http_response_header(const lgr_http_response* res,
                                    size_t index, const char** out_name,
                                    const char** out_value) {
  if (out_name) *out_name = nullptr;
  if (out_value) *out_value = nullptr;
  if (!res || !out_name || !out_value ||
      index >= res->response.headers.size()) {
    return LGR_ERR_INVALID_ARGUMENT;
  }
  *out_name = res->response.headers[index].first.c_str();
  *out_value = res->response.headers[index].second.c_str();
  return LGR_OK;
}

const char* lgr_http_response_customer_id(const lgr_http_response* res) {
  return res ? res->response.customer_id.c_str() : "";
}

void lgr_http_response_free(lgr_http_response* res) { delete res; }

}  // extern "C"
