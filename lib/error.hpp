// Error values shared by every module of the core.
//
// Errors cross module boundaries as values (lgr::Error inside a
// boost::system::result), never as exceptions. Each error carries the
// machine-readable code the HTTP API answers with, the place it is about
// (a JSON Pointer into the payload, or a query parameter name) and a
// one-line message. The HTTP status is derived from the code so that every
// host answers the same.
#pragma once

#include <boost/system/result.hpp>

#include <string>
#include <string_view>

namespace lgr {

enum class ErrorCode {
  // Payload validation (400/413/422).
  invalid_json,
  invalid_payload,
  unsupported_schema_version,
  invalid_timestamp_hour,
  payload_too_large,
  privacy_violation,
  // Requests.
  unauthorized,
  invalid_query,
  not_found,
  invalid_argument,
  bad_request,
  method_not_allowed,
  browser_requests_not_allowed,
  unsupported_media_type,
  // Storage and lifetime.
  customer_not_found,
  storage_error,
  busy,
  schema_too_new,
  closed,
  internal_error,
};

struct Error {
  ErrorCode code = ErrorCode::internal_error;
  std::string pointer;  // JSON Pointer, query parameter name, or "".
  std::string message;  // One line, for humans.

  // The HTTP status every host answers this error with.
  int http_status() const noexcept;
};

// The wire name of a code ("invalid_payload"), as used in {"error": ...}.
std::string_view error_code_name(ErrorCode code) noexcept;

inline Error make_error(ErrorCode code, std::string pointer,
                        std::string message) {
  return Error{code, std::move(pointer), std::move(message)};
}

template <class T>
using Result = boost::system::result<T, Error>;

// Result<void> with the error type above.
using Status = boost::system::result<void, Error>;

}  // namespace lgr
