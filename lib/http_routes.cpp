#include "http_routes.hpp"

#include "read_json.hpp"

#include <loopgain/receiver.h>

#include <algorithm>
#include <charconv>

namespace lgr {

namespace {

constexpr std::string_view kIngestPath = "/v1/aggregate";

enum class Route { ingest, stats, profiles, events, health, unknown };

// TODO(#routes): later versions of the original service added
// /v1/event/:id, /v1/calibration and the alert routes; they answer 404 here.
Route route_of(std::string_view path) {
  if (path == kIngestPath) return Route::ingest;
  if (path == "/v1/stats") return Route::stats;
  if (path == "/v1/profiles") return Route::profiles;
  if (path == "/v1/events") return Route::events;
  if (path == "/health") return Route::health;
  return Route::unknown;
}

void add_security_headers(HttpResponse& r) {
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
}

HttpResponse json_response(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  add_security_headers(r);
  return r;
}

}  // namespace

HttpResponse error_http_response(const Error& error) {
  HttpResponse r = json_response(error.http_status(), render_error(error));
  switch (error.code) {
    case ErrorCode::unauthorized:
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      break;
    case ErrorCode::busy:
    case ErrorCode::closed:
      r.headers.emplace_back("Retry-After", "1");
      break;
    default:
      break;
  }
  return r;
}

namespace {

HttpResponse method_not_allowed(std::string_view allow) {
  HttpResponse r = error_http_response(make_error(
      ErrorCode::method_not_allowed, "",
      "this route accepts " + std::string(allow)));
  r.headers.emplace_back("Allow", std::string(allow));
  return r;
}

// Read routes (and /health) may be called from allowed browser origins.
void add_cors_headers(const Receiver& receiver, const HttpRequest& request,
                      HttpResponse& r) {
  if (!request.origin || !receiver.cors_origin_allowed(*request.origin)) {
    return;
  }
  r.headers.emplace_back("Access-Control-Allow-Origin",
                         std::string(*request.origin));
  r.headers.emplace_back("Vary", "Origin");
}

HttpResponse preflight(const Receiver& receiver, const HttpRequest& request,
                       Route route) {
  // The ingest route is server-to-server only; a preflight is always a
  // browser asking.
  if (route == Route::ingest) {
    return error_http_response(make_error(
        ErrorCode::browser_requests_not_allowed, "",
        "the ingest route does not accept browser requests"));
  }
  HttpResponse r = json_response(204, "");
  if (route == Route::health) {
    r.headers.emplace_back("Access-Control-Allow-Origin", "*");
  } else {
    add_cors_headers(receiver, request, r);
  }
  r.headers.emplace_back("Access-Control-Allow-Methods", "GET, OPTIONS");
  r.headers.emplace_back("Access-Control-Allow-Headers",
                         "Authorization, Content-Type");
  r.headers.emplace_back("Access-Control-Max-Age", "86400");
  return r;
}

HttpResponse health(const Receiver& receiver) {
  (void)receiver;
  HttpResponse r = json_response(
      200,
      R"({"status":"ok","service":"loopgain-receiver","version":")"
      LGR_VERSION_STRING R"(","api":"v1","payload_schema_versions":[1,2,3,4]})");
  // Liveness is public, as it was in the original service.
  r.headers.emplace_back("Access-Control-Allow-Origin", "*");
  return r;
}

bool is_json_media_type(std::string_view content_type) {
  // "application/json", optionally with parameters such as charset.
  std::string_view type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  return ascii_iequals(type, "application/json");
}

// Where a request goes: answered already, or an ingest for a customer
// whose payload has yet to be validated and stored (synchronously or not).
struct Routed {
  std::optional<HttpResponse> answer;
  IngestCredential ingest_for;  // when the answer is left to the ingest
};

Routed answered(HttpResponse response) {
  return Routed{std::move(response), {}};
}

// Everything an ingest request must pass before its body is read as a
// payload: not a browser, an authenticated customer, a body whose length
// and media type are what the headers announce.
Routed admit_ingest(Receiver& receiver, const HttpRequest& request) {
  if (request.origin) {
    return answered(error_http_response(make_error(
        ErrorCode::browser_requests_not_allowed, "",
        "the ingest route does not accept browser requests")));
  }
  auto who = receiver.authenticate_ingest(request.authorization.value_or(""));
  if (!who) return answered(error_http_response(who.error()));

  const std::size_t cap = receiver.options().max_body_bytes;
  if (request.content_length) {
    std::uint64_t announced = 0;
    const auto& cl = *request.content_length;
    auto [end, ec] = std::from_chars(cl.data(), cl.data() + cl.size(),
                                     announced);
    if (ec != std::errc() || end != cl.data() + cl.size()) {
      return answered(error_http_response(make_error(
          ErrorCode::bad_request, "", "Content-Length is not a number")));
    }
    if (announced > cap) {
      return answered(error_http_response(make_error(
          ErrorCode::payload_too_large, "",
          "the body may be at most " + std::to_string(cap) + " bytes")));
    }
    if (announced != request.body.size()) {
      return answered(error_http_response(
          make_error(ErrorCode::bad_request, "",
                     "Content-Length does not match the body received")));
    }
  }
  if (request.content_type && !is_json_media_type(*request.content_type)) {
    return answered(error_http_response(
        make_error(ErrorCode::unsupported_media_type, "",
                   "the body must be application/json")));
  }
  return Routed{std::nullopt, std::move(*who)};
}

// The answer to an admitted ingest, once the receiver has decided.
HttpResponse ingest_response(std::string customer,
                             Result<IngestOutcome> outcome) {
  if (!outcome && outcome.error().code == ErrorCode::customer_not_found) {
    outcome = token_owner_gone();
  }
  HttpResponse r = outcome ? json_response(202, render_ingest_accepted(
                                                    outcome->redacted,
                                                    outcome->ignored))
                           : error_http_response(outcome.error());
  r.customer_id = std::move(customer);
  return r;
}

// The parameters each read understands. Others are ignored, as the
// original service did: later dashboards send filters this version does
// not implement, and refusing them would break those dashboards.
struct ReadParams {
  std::optional<std::string> workload_id;
  int since_hours = 0;
  bool rollbacks_only = false;
};

Error invalid_query(std::string_view name, std::string message) {
  return make_error(ErrorCode::invalid_query, std::string(name),
                    std::move(message));
}

Result<ReadParams> read_params(Route route, std::string_view raw_query) {
  auto params = parse_query(raw_query);
  if (!params) return params.error();

  ReadParams out;
  bool seen_workload = false, seen_since = false, seen_rollbacks = false;
  for (const auto& p : *params) {
    if (route == Route::profiles && p.name == "workload_id") {
      if (seen_workload) return invalid_query(p.name, "given twice");
      seen_workload = true;
      out.workload_id = p.value;  // length and text checked by Receiver
    } else if (route == Route::profiles && p.name == "since_hours") {
      if (seen_since) return invalid_query(p.name, "given twice");
      seen_since = true;
      int hours = 0;
      const char* b = p.value.data();
      const char* e = b + p.value.size();
      auto [end, ec] = std::from_chars(b, e, hours);
      if (p.value.empty() || ec != std::errc() || end != e || hours < 1) {
        return invalid_query(p.name,
                             "must be a whole number of hours from 1 to 8760");
      }
      out.since_hours = hours;
    } else if (route == Route::events && p.name == "rollbacks_only") {
      if (seen_rollbacks) return invalid_query(p.name, "given twice");
      seen_rollbacks = true;
      if (p.value != "true" && p.value != "false") {
        return invalid_query(p.name, "must be true or false");
      }
      out.rollbacks_only = p.value == "true";
    }
  }
  return out;
}

HttpResponse read(Receiver& receiver, const HttpRequest& request,
                  Route route) {
  auto customer = receiver.authenticate(request.authorization.value_or(""));
  if (!customer) {
    HttpResponse r = error_http_response(customer.error());
    add_cors_headers(receiver, request, r);
    return r;
  }

  Result<std::string> body = make_error(ErrorCode::internal_error, "", "");
  auto params = read_params(route, request.query);
  if (!params) {
    body = params.error();
  } else if (route == Route::stats) {
    body = receiver.stats_json(*customer);
  } else if (route == Route::profiles) {
    std::optional<std::string_view> workload;
    if (params->workload_id) workload = *params->workload_id;
    body = receiver.profiles_json(*customer, workload, params->since_hours);
  } else {
    body = receiver.events_json(*customer, params->rollbacks_only);
  }

  if (!body && body.error().code == ErrorCode::customer_not_found) {
    body = token_owner_gone();
  }
  HttpResponse r = body ? json_response(200, std::move(*body))
                        : error_http_response(body.error());
  add_cors_headers(receiver, request, r);
  r.customer_id = std::move(*customer);
  return r;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in` into `out`; false on a malformed escape.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += c;
    }
  }
  return true;
}

}  // namespace

Result<std::vector<QueryParam>> parse_query(std::string_view raw) {
  std::vector<QueryParam> params;
  while (!raw.empty()) {
    std::size_t amp = raw.find('&');
    std::string_view pair = raw.substr(0, amp);
    raw = amp == std::string_view::npos ? std::string_view{}
                                        : raw.substr(amp + 1);
    if (pair.empty()) continue;

    std::size_t eq = pair.find('=');
    std::string_view raw_name = pair.substr(0, eq);
    std::string_view raw_value =
        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    QueryParam p;
    if (!percent_decode(raw_name, p.name) || !is_valid_utf8(p.name)) {
      return invalid_query("", "a query parameter name is malformed");
    }
    if (!percent_decode(raw_value, p.value) || !is_valid_utf8(p.value)) {
      return invalid_query(p.name, "the value is not valid percent-encoded "
                                   "UTF-8");
    }
    params.push_back(std::move(p));
  }
  return params;
}

bool is_browser_origin(std::string_view origin) {
  std::string_view rest;
  if (origin.starts_with("https://")) {
    rest = origin.substr(8);
  } else if (origin.starts_with("http://")) {
    rest = origin.substr(7);
  } else {
    return false;
  }
  // An IPv6 literal keeps its colons inside brackets.
  std::size_t host_end = rest.size();
  if (rest.starts_with('[')) {
    host_end = rest.find(']');
    if (host_end == std::string_view::npos) return false;
    ++host_end;
  } else {
    host_end = std::min(rest.find(':'), rest.size());
  }
  const std::string_view host = rest.substr(0, host_end);
  const std::string_view port = rest.substr(host_end);
  if (host.empty() || host == "[]") return false;
  for (const char c : host) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte >= 0x7F || c == '/' || c == '?' || c == '#' ||
        c == '@' || c == '\\') {
      return false;
    }
  }
  if (port.empty()) return true;
  unsigned number = 0;
  const char* first = port.data() + 1;
  const char* last = port.data() + port.size();
  auto [end, ec] = std::from_chars(first, last, number);
  return port[0] == ':' && first != last && ec == std::errc() && end == last &&
         number >= 1 && number <= 65535;
}

HttpResponse closed_response() {
  return error_http_response(
      make_error(ErrorCode::closed, "", "the receiver is shutting down"));
}

namespace {

// The route table. Every answer except a payload to ingest is made here.
Routed route_request(Receiver& receiver, const HttpRequest& request) {
  if (receiver.closed()) return answered(closed_response());

  const Route route = route_of(request.path);
  if (route == Route::unknown) {
    return answered(error_http_response(
        make_error(ErrorCode::not_found, "", "no such route")));
  }
  if (request.method == "OPTIONS") {
    return answered(preflight(receiver, request, route));
  }

  // HEAD is answered as GET, body included: the host sends the headers
  // (Content-Length too) without the body (RFC 9110, 9.3.2). Uptime checks
  // and load balancers probe /health that way.
  const bool get_or_head = request.method == "GET" || request.method == "HEAD";
  constexpr std::string_view kReadMethods = "GET, HEAD, OPTIONS";
  switch (route) {
    case Route::ingest:
      if (request.method != "POST") {
        return answered(method_not_allowed("POST"));
      }
      return admit_ingest(receiver, request);
    case Route::health:
      if (!get_or_head) return answered(method_not_allowed(kReadMethods));
      return answered(health(receiver));
    case Route::stats:
    case Route::profiles:
    case Route::events:
      if (!get_or_head) return answered(method_not_allowed(kReadMethods));
      return answered(read(receiver, request, route));
    case Route::unknown:
      break;
  }
  return answered(error_http_response(
      make_error(ErrorCode::internal_error, "", "unhandled route")));
}

}  // namespace

HttpResponse handle_http(Receiver& receiver, const HttpRequest& request) {
  Routed routed = route_request(receiver, request);
  if (routed.answer) return std::move(*routed.answer);
  auto outcome = receiver.ingest_for(routed.ingest_for, request.body);
  return ingest_response(std::move(routed.ingest_for.customer_id),
                         std::move(outcome));
}

void handle_http_async(Receiver& receiver, const HttpRequest& request,
                       HttpDone done) {
  Routed routed = route_request(receiver, request);
  if (routed.answer) {
    done(std::move(*routed.answer));
    return;
  }
  receiver.ingest_for_async(
      routed.ingest_for, request.body,
      [customer = routed.ingest_for.customer_id,
       done = std::move(done)](Result<IngestOutcome> outcome) mutable {
        // Runs on the writer thread, where nothing may escape: without
        // memory for the answer, a bare 500 still completes the request.
        HttpResponse response;
        try {
          response = ingest_response(std::move(customer), std::move(outcome));
        } catch (...) {
          response.status = 500;
        }
        done(std::move(response));
      });
}

}  // namespace lgr
