// The HTTP route table, independent of any network stack.
//
// A host hands over the parts of a request that matter; the answer it gets
// back (status, headers, JSON body) is what it writes, byte for byte. Every
// host — the Beast server, the Python and Go hosts, a gateway — therefore
// answers the same routes with the same statuses and bodies.
#pragma once

#include "receiver.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lgr {

struct HttpRequest {
  std::string_view method;
  std::string_view path;
  std::string_view query;  // raw, without '?'
  std::optional<std::string_view> authorization;
  std::optional<std::string_view> origin;
  std::optional<std::string_view> content_type;
  std::optional<std::string_view> content_length;
  std::optional<std::string_view> access_control_request_method;
  std::string_view body;
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string customer_id;  // for access logs; "" when not authenticated
};

inline constexpr std::string_view kJsonContentType = "application/json";

HttpResponse handle_http(Receiver& receiver, const HttpRequest& request);

// Receives handle_http_async()'s answer. Must not throw.
using HttpDone = std::function<void(HttpResponse)>;

// The same answer as handle_http(), handed to `done` exactly once: on the
// calling thread before this returns, except for an ingest whose payload
// was accepted, which is answered from the store's writer thread once its
// event is committed (Receiver::ingest_for_async). `request` is read before
// this returns.
void handle_http_async(Receiver& receiver, const HttpRequest& request,
                       HttpDone done);

// The answer for a request that reached a closed receiver.
HttpResponse closed_response();

// The answer for `error`: its HTTP status, the JSON error body, security
// headers, and WWW-Authenticate or Retry-After where they apply.
HttpResponse error_http_response(const Error& error);

// An origin as browsers send it in the Origin header:
// "http://HOST[:PORT]" or "https://HOST[:PORT]", nothing after, port
// 1..65535. CORS origins are matched exactly, so anything else (a trailing
// slash, a path, "*") could never match and is refused when configured.
bool is_browser_origin(std::string_view origin);

// One decoded query parameter.
struct QueryParam {
  std::string name;
  std::string value;
};

// Splits and percent-decodes a raw query string ('+' is a space). A
// malformed escape or non-UTF-8 text is invalid_query naming the parameter.
Result<std::vector<QueryParam>> parse_query(std::string_view raw);

}  // namespace lgr
