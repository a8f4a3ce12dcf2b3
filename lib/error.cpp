#include "error.hpp"

namespace lgr {

int Error::http_status() const noexcept {
  switch (code) {
    case ErrorCode::invalid_json:
    case ErrorCode::invalid_payload:
    case ErrorCode::invalid_timestamp_hour:
    case ErrorCode::invalid_query:
    case ErrorCode::invalid_argument:
    case ErrorCode::bad_request:
      return 400;
    case ErrorCode::unauthorized:
      return 401;
    case ErrorCode::browser_requests_not_allowed:
      return 403;
    case ErrorCode::method_not_allowed:
      return 405;
    case ErrorCode::unsupported_media_type:
      return 415;
    case ErrorCode::not_found:
    case ErrorCode::customer_not_found:
      return 404;
    case ErrorCode::payload_too_large:
      return 413;
    // The request was well-formed JSON the receiver understood, but its
    // content is refused: a schema it does not speak, or data the privacy
    // contract forbids it to hold.
    case ErrorCode::unsupported_schema_version:
    case ErrorCode::privacy_violation:
      return 422;
    case ErrorCode::busy:
    case ErrorCode::closed:
      return 503;
    case ErrorCode::storage_error:
    case ErrorCode::schema_too_new:
    case ErrorCode::internal_error:
      return 500;
  }
  return 500;
}

std::string_view error_code_name(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::invalid_json: return "invalid_json";
    case ErrorCode::invalid_payload: return "invalid_payload";
    case ErrorCode::unsupported_schema_version:
      return "unsupported_schema_version";
    case ErrorCode::invalid_timestamp_hour: return "invalid_timestamp_hour";
    case ErrorCode::payload_too_large: return "payload_too_large";
    case ErrorCode::privacy_violation: return "privacy_violation";
    case ErrorCode::unauthorized: return "unauthorized";
    case ErrorCode::invalid_query: return "invalid_query";
    case ErrorCode::not_found: return "not_found";
    case ErrorCode::invalid_argument: return "invalid_argument";
    case ErrorCode::bad_request: return "bad_request";
    case ErrorCode::method_not_allowed: return "method_not_allowed";
    case ErrorCode::browser_requests_not_allowed:
      return "browser_requests_not_allowed";
    case ErrorCode::unsupported_media_type: return "unsupported_media_type";
    case ErrorCode::customer_not_found: return "customer_not_found";
    case ErrorCode::storage_error: return "storage_error";
    case ErrorCode::busy: return "busy";
    case ErrorCode::schema_too_new: return "schema_too_new";
    case ErrorCode::closed: return "closed";
    case ErrorCode::internal_error: return "internal_error";
  }
  return "internal_error";
}

}  // namespace lgr
