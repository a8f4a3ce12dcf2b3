#include "http_server.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http.hpp>

#include "json_log.hpp"

namespace lgr_server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

// Every asynchronous step reports its error as a value: a closed or reset
// connection is an ordinary event here, not an exception. The tuples are
// unpacked with std::get, and co_await stays out of conditional
// expressions: GCC 12 miscompiles both inside coroutines.
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

constexpr std::size_t kHeaderLimit = 16 * 1024;
// A request, once its first byte arrived, must be complete within this.
constexpr auto kRequestTimeout = std::chrono::seconds(15);
constexpr auto kIdleTimeout = std::chrono::seconds(30);
constexpr auto kWriteTimeout = std::chrono::seconds(15);
// After an error response the rest of the request is read and dropped for a
// moment, so that closing does not reset the connection before the client
// has read the response.
constexpr auto kLingerTimeout = std::chrono::seconds(2);
constexpr std::size_t kLingerBytes = 16 * 1024 * 1024;
// Longer than kRequestTimeout, so that a slow in-flight request still ends
// by its own deadline before shutdown cuts it off.
constexpr auto kDrainTimeout = std::chrono::seconds(20);
// TODO(#server-limits): the cap is global, not per client: one client can
// hold every slot (each for at most the timeouts below). A deployment that
// faces untrusted networks needs a proxy with per-client limits in front.
constexpr std::size_t kMaxConnections = 1000;
constexpr std::size_t kReadChunk = 8192;
constexpr std::size_t kMaxLoggedPath = 512;
constexpr std::size_t kMaxLoggedParams = 20;
constexpr std::size_t kMaxLoggedParamName = 64;

using Request = http::request<http::string_body>;

// A response to send: the library's, or one of the server's own errors.
struct Reply {
  unsigned status = 500;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string customer_id;
};

// The server's own errors (framing, limits, timeouts) look like the
// library's: {"error", "path", "message"} and the same security headers.
Reply ServerError(unsigned status, std::string_view code,
                  std::string_view message) {
  Reply reply;
  reply.status = status;
  reply.body = "{\"error\":";
  AppendJsonString(reply.body, code);
  reply.body += ",\"path\":\"\",\"message\":";
  AppendJsonString(reply.body, message);
  reply.body += '}';
  reply.headers = {{"X-Content-Type-Options", "nosniff"},
                   {"Cache-Control", "no-store"},
                   {"Referrer-Policy", "no-referrer"}};
  return reply;
}

Reply BadRequest(std::string_view message) {
  return ServerError(400, "bad_request", message);
}

std::optional<std::string> HeaderValue(const Request& req, http::field f) {
  const auto it = req.find(f);
  if (it == req.end()) return std::nullopt;
  return std::string(it->value());
}

const char* CStr(const std::optional<std::string>& value) {
  return value ? value->c_str() : nullptr;
}

// Headers the library may not set: the server frames the message itself.
bool IsFramingHeader(std::string_view name) {
  return beast::iequals(name, "Content-Type") ||
         beast::iequals(name, "Content-Length") ||
         beast::iequals(name, "Transfer-Encoding") ||
         beast::iequals(name, "Connection");
}

// The request as the library takes it: lgr_http_request points into the
// strings held here, so this neither moves nor copies.
class LibraryRequest {
 public:
  LibraryRequest(const Request& req, bool has_body)
      : method_(req.method_string()),
        authorization_(HeaderValue(req, http::field::authorization)),
        origin_(HeaderValue(req, http::field::origin)),
        content_type_(HeaderValue(req, http::field::content_type)),
        content_length_(HeaderValue(req, http::field::content_length)),
        preflight_method_(
            HeaderValue(req, http::field::access_control_request_method)) {
    const std::string_view target = req.target();
    const auto question = target.find('?');
    path_ = std::string(target.substr(0, question));
    if (question != std::string_view::npos) {
      query_.emplace(target.substr(question + 1));
    }
    lgr_http_request_init(&c_);
    c_.method = method_.c_str();
    c_.path = path_.c_str();
    c_.query = CStr(query_);
    c_.authorization = CStr(authorization_);
    c_.origin = CStr(origin_);
    c_.content_type = CStr(content_type_);
    c_.content_length = CStr(content_length_);
    c_.access_control_request_method = CStr(preflight_method_);
    if (has_body) {
      c_.body = req.body().data();
      c_.body_len = req.body().size();
    }
  }
  LibraryRequest(const LibraryRequest&) = delete;
  LibraryRequest& operator=(const LibraryRequest&) = delete;

  const lgr_http_request* get() const { return &c_; }

 private:
  std::string method_;
  std::string path_;
  std::optional<std::string> query_;
  std::optional<std::string> authorization_;
  std::optional<std::string> origin_;
  std::optional<std::string> content_type_;
  std::optional<std::string> content_length_;
  std::optional<std::string> preflight_method_;
  lgr_http_request c_;
};

using ResponsePtr =
    std::unique_ptr<lgr_http_response, decltype(&lgr_http_response_free)>;

Reply NoResponse(lgr_status status) {
  return ServerError(500, "internal_error",
                     std::string("the receiver could not handle the "
                                 "request: ") +
                         lgr_status_name(status));
}

// The library's answer as a Reply to write.
Reply ToReply(ResponsePtr response) {
  const lgr_http_response* out = response.get();
  Reply reply;
  const int code = lgr_http_response_status(out);
  reply.status = code >= 100 && code <= 599 ? static_cast<unsigned>(code) : 500;
  reply.content_type = lgr_http_response_content_type(out);
  std::size_t body_len = 0;
  const char* body = lgr_http_response_body(out, &body_len);
  if (body != nullptr) reply.body.assign(body, body_len);
  const std::size_t count = lgr_http_response_header_count(out);
  for (std::size_t i = 0; i < count; ++i) {
    const char* name = nullptr;
    const char* value = nullptr;
    if (lgr_http_response_header(out, i, &name, &value) == LGR_OK &&
        !IsFramingHeader(name)) {
      reply.headers.emplace_back(name, value);
    }
  }
  reply.customer_id = lgr_http_response_customer_id(out);
  return reply;
}

// Runs on a worker thread: a read queries the database.
Reply CallLibrary(lgr_receiver* receiver, const Request& req, bool has_body) {
  const LibraryRequest in(req, has_body);
  lgr_http_response* out = nullptr;
  const lgr_status status = lgr_handle_request(receiver, in.get(), &out);
  if (out == nullptr) return NoResponse(status);
  return ToReply(ResponsePtr(out, &lgr_http_response_free));
}

// An ingest between lgr_handle_request_async() and its callback. The
// work guard keeps the event loop running until the answer is back, also
// while the server drains at shutdown.
struct PendingIngest {
  asio::any_completion_handler<void(Reply)> resume;
  asio::executor_work_guard<asio::io_context::executor_type> work;
};

// Hands `reply` to the coroutine waiting in Session::Ingest, on the event
// loop (its only thread) whatever thread this runs on.
void Resume(std::unique_ptr<PendingIngest> pending, Reply reply) {
  const auto executor = pending->work.get_executor();
  asio::post(executor, [pending = std::move(pending),
                        reply = std::move(reply)]() mutable {
    std::move(pending->resume)(std::move(reply));
  });
}

// lgr_http_response_fn: mostly on the library's writer thread, after the
// commit. It only converts and posts, so the next commit is not held up.
void OnIngestAnswered(void* user_data, lgr_http_response* response) {
  std::unique_ptr<PendingIngest> pending(
      static_cast<PendingIngest*>(user_data));
  ResponsePtr owned(response, &lgr_http_response_free);
  try {
    Reply reply =
        owned ? ToReply(std::move(owned)) : NoResponse(LGR_ERR_NO_MEMORY);
    Resume(std::move(pending), std::move(reply));
  } catch (...) {
    // Out of memory on the writer thread. Without the handler, Asio
    // destroys the session's coroutine unfinished: its connection drops,
    // but it stays registered in server.sessions, which shutdown would then
    // touch. Stop here instead; every 202 sent was committed first.
    std::fputs("loopgain-receiver-server: out of memory while answering an "
               "ingest; exiting\n",
               stderr);
    std::abort();
  }
}

// Only the names of query parameters are logged, never their values.
std::vector<std::string> QueryParamNames(std::string_view query) {
  std::vector<std::string> names;
  while (!query.empty() && names.size() < kMaxLoggedParams) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const std::string_view name = pair.substr(0, pair.find('='));
    if (!name.empty()) {
      names.emplace_back(name.substr(0, kMaxLoggedParamName));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return names;
}

class Session;

// Everything the sessions share. Used from the event-loop thread only,
// except `receiver` (thread-safe) and `pool`.
struct ServerState {
  ServerState(lgr_receiver* receiver_in, const ServerConfig& config_in)
      : receiver(receiver_in),
        config(config_in),
        pool(config_in.threads),
        acceptor(io),
        signals(io, SIGINT, SIGTERM),
        drain_timer(io) {}

  lgr_receiver* receiver;
  const ServerConfig& config;
  asio::io_context io;
  asio::thread_pool pool;
  tcp::acceptor acceptor;
  asio::signal_set signals;
  asio::steady_timer drain_timer;
  std::unordered_set<Session*> sessions;
  bool stopping = false;
  bool finished = false;
};

void FinishIfDrained(ServerState& server);

// One connection. Requests are read, answered and logged strictly one after
// the other, so pipelined requests get their responses in order.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ServerState& server, tcp::socket socket)
      : server_(server), socket_(std::move(socket)), deadline_(server.io) {
    server_.sessions.insert(this);
  }

  asio::awaitable<void> Run();

  // Shutdown: an idle connection closes now, a busy one after its response.
  void Stop() {
    error_code ignored;
    if (idle_) socket_.cancel(ignored);
  }

  void ForceClose() {
    error_code ignored;
    socket_.close(ignored);
  }

  // The last step of a session, on every path.
  void Finish() {
    DisarmDeadline();
    ForceClose();
    server_.sessions.erase(this);
    FinishIfDrained(server_);
  }

 private:
  enum class Outcome { kRequest, kReject, kGone };
  struct ReadResult {
    Outcome outcome = Outcome::kGone;
    Reply reply;  // For kReject.
  };

  asio::awaitable<bool> WaitForBytes();
  asio::awaitable<ReadResult> ReadRequest();
  ReadResult Classify(const error_code& ec) const;
  std::optional<Reply> CheckFraming() const;
  asio::awaitable<std::optional<Reply>> AnswerExpectation();
  asio::awaitable<Reply> Dispatch();
  asio::awaitable<Reply> Ingest(const LibraryRequest& in);
  asio::awaitable<bool> WriteReply(Reply& reply, bool keep_alive);
  asio::awaitable<void> Close(bool linger);
  void LogAccess(const Reply& reply, std::size_t bytes,
                 Clock::time_point started) const;
  void DropLeadingBlankLines();
  void ArmDeadline(Clock::duration timeout);
  void DisarmDeadline();

  ServerState& server_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  // A timer rather than beast::tcp_stream's expiry: that one closes the
  // socket, and a timed-out request still deserves a 408.
  asio::steady_timer deadline_;
  std::uint64_t deadline_generation_ = 0;
  bool timed_out_ = false;
  bool idle_ = false;
};

asio::awaitable<void> Session::Run() {
  for (;;) {
    DropLeadingBlankLines();
    if (buffer_.size() == 0) {
      const bool arrived = co_await WaitForBytes();
      if (!arrived) co_return;
    }
    const auto started = Clock::now();

    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(server_.config.max_body_bytes);

    ReadResult read = co_await ReadRequest();
    if (read.outcome == Outcome::kGone) co_return;
    const bool rejected = read.outcome == Outcome::kReject;
    Reply reply;
    if (rejected) {
      reply = std::move(read.reply);
    } else {
      reply = co_await Dispatch();
    }

    const bool keep_alive =
        !rejected && parser_->get().keep_alive() && !server_.stopping;
    const std::size_t bytes = reply.body.size();
    const bool written = co_await WriteReply(reply, keep_alive);
    LogAccess(reply, bytes, started);
    if (!written) co_return;
    if (!keep_alive) {
      co_await Close(rejected || buffer_.size() > 0);
      co_return;
    }
  }
}

// Waits for the first byte of the next request, for at most kIdleTimeout.
asio::awaitable<bool> Session::WaitForBytes() {
  if (server_.stopping) co_return false;
  idle_ = true;
  ArmDeadline(kIdleTimeout);
  const auto read =
      co_await socket_.async_read_some(buffer_.prepare(kReadChunk), kNoThrow);
  DisarmDeadline();
  idle_ = false;
  if (std::get<0>(read)) co_return false;
  buffer_.commit(std::get<1>(read));
  co_return true;
}

asio::awaitable<Session::ReadResult> Session::ReadRequest() {
  ArmDeadline(kRequestTimeout);
  const auto header =
      co_await http::async_read_header(socket_, buffer_, *parser_, kNoThrow);
  error_code ec = std::get<0>(header);
  if (!ec) {
    if (auto refusal = CheckFraming()) {
      DisarmDeadline();
      co_return ReadResult{Outcome::kReject, std::move(*refusal)};
    }
    if (auto refusal = co_await AnswerExpectation()) {
      DisarmDeadline();
      co_return ReadResult{Outcome::kReject, std::move(*refusal)};
    }
    if (!parser_->is_done()) {
      const auto body =
          co_await http::async_read(socket_, buffer_, *parser_, kNoThrow);
      ec = std::get<0>(body);
    }
  }
  DisarmDeadline();
  if (!ec) co_return ReadResult{Outcome::kRequest, {}};
  co_return Classify(ec);
}

Session::ReadResult Session::Classify(const error_code& ec) const {
  const auto reject = [](Reply reply) {
    return ReadResult{Outcome::kReject, std::move(reply)};
  };
  if (timed_out_) {
    return reject(ServerError(408, "request_timeout",
                              "the request was not complete within 15 "
                              "seconds"));
  }
  if (ec == http::error::end_of_stream) return {};
  if (ec == http::error::header_limit) {
    return reject(ServerError(431, "headers_too_large",
                              "the request header block exceeds 16384 "
                              "bytes"));
  }
  if (ec == http::error::body_limit) {
    return reject(ServerError(
        413, "payload_too_large",
        "the request body exceeds " +
            std::to_string(server_.config.max_body_bytes) + " bytes"));
  }
  if (ec == http::error::partial_message) {
    return reject(
        BadRequest("the connection ended before the request was complete"));
  }
  if (ec.category() ==
      http::make_error_code(http::error::bad_method).category()) {
    return reject(BadRequest("malformed HTTP request: " + ec.message()));
  }
  return {};  // A network error: nobody is left to answer.
}

// Beast parses the message; what it lets through but a request smuggler
// could exploit is refused here, before any body byte is read.
std::optional<Reply> Session::CheckFraming() const {
  const Request& req = parser_->get();
  const std::size_t codings = req.count(http::field::transfer_encoding);
  if (codings > 0) {
    if (req.count(http::field::content_length) > 0) {
      return BadRequest("both Content-Length and Transfer-Encoding");
    }
    if (codings > 1 || !parser_->chunked() ||
        !beast::iequals(req[http::field::transfer_encoding], "chunked")) {
      return BadRequest("the only transfer coding accepted is chunked");
    }
    if (req.version() < 11) {
      return BadRequest("Transfer-Encoding in an HTTP/1.0 request");
    }
  }
  for (const auto f : {http::field::authorization, http::field::origin,
                       http::field::content_type, http::field::host}) {
    if (req.count(f) > 1) {
      return BadRequest("duplicate " + std::string(http::to_string(f)) +
                        " header");
    }
  }
  // RFC 9112, 3.2: an HTTP/1.1 request without Host is answered with 400.
  if (req.version() >= 11 && req.count(http::field::host) == 0) {
    return BadRequest("an HTTP/1.1 request needs a Host header");
  }
  // The library reads bodies as JSON text; a compressed body would only
  // surface as invalid_json, which hides the cause.
  if (req.count(http::field::content_encoding) > 0 &&
      !beast::iequals(req[http::field::content_encoding], "identity")) {
    return ServerError(415, "unsupported_media_type",
                       "request bodies must not be compressed");
  }
  return std::nullopt;
}

// curl sends "Expect: 100-continue" for larger bodies and waits for it.
// A POST whose bearer token the library refuses gets its final answer
// instead, and its body is never asked for (RFC 9110, 10.1.1): the
// library answers such a request the same with or without the body (401,
// or 403, 404 or 405 where those come first). Returns that answer, or
// nullopt once 100 Continue went out or none was asked for.
asio::awaitable<std::optional<Reply>> Session::AnswerExpectation() {
  const Request& req = parser_->get();
  if (parser_->is_done() || req.version() < 11 ||
      !beast::iequals(req[http::field::expect], "100-continue")) {
    co_return std::nullopt;
  }
  if (req.method() == http::verb::post) {
    const auto authorization = HeaderValue(req, http::field::authorization);
    char* customer = nullptr;
    const lgr_status status =
        lgr_authenticate(server_.receiver, CStr(authorization), &customer,
                         nullptr);
    lgr_string_free(customer);
    if (status == LGR_ERR_UNAUTHORIZED) {
      co_return CallLibrary(server_.receiver, req, false);
    }
  }
  http::response<http::empty_body> go_on{http::status::continue_, 11};
  // A failed write shows up again as a failed body read.
  co_await http::async_write(socket_, go_on, kNoThrow);
  co_return std::nullopt;
}

// A POST (only /v1/aggregate accepts one) goes to the library from this
// thread and comes back when its event is committed; validation costs a
// few microseconds, and no thread waits for the commit. Everything else
// may read the database for milliseconds, so it runs on a worker thread
// while this loop serves other connections.
asio::awaitable<Reply> Session::Dispatch() {
  const Request& req = parser_->get();
  const bool has_body =
      parser_->chunked() || req.count(http::field::content_length) > 0;
  if (req.method() == http::verb::post) {
    const LibraryRequest in(req, has_body);
    co_return co_await Ingest(in);
  }
  lgr_receiver* receiver = server_.receiver;
  auto result = co_await asio::co_spawn(
      server_.pool,
      [receiver, &req, has_body]() -> asio::awaitable<Reply> {
        co_return CallLibrary(receiver, req, has_body);
      },
      kNoThrow);
  if (std::get<0>(result)) {
    co_return ServerError(500, "internal_error",
                          "the server failed while handling the request");
  }
  co_return std::move(std::get<1>(result));
}

asio::awaitable<Reply> Session::Ingest(const LibraryRequest& in) {
  lgr_receiver* receiver = server_.receiver;
  asio::io_context& io = server_.io;
  // The initiation captures only pointers and references: GCC 12 destroys
  // a temporary with a non-trivial destructor inside a co_await expression
  // twice (a captured executor crashed the server that way).
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable),
                                          void(Reply)>(
      [receiver, &io, &in](auto handler) {
        auto pending = std::make_unique<PendingIngest>(
            PendingIngest{std::move(handler), asio::make_work_guard(io)});
        const lgr_status status = lgr_handle_request_async(
            receiver, in.get(), &OnIngestAnswered, pending.get());
        if (status == LGR_OK || status == LGR_ERR_CLOSED) {
          pending.release();  // OnIngestAnswered has it, or will
          return;
        }
        Resume(std::move(pending), NoResponse(status));
      },
      asio::use_awaitable);
}

asio::awaitable<bool> Session::WriteReply(Reply& reply, bool keep_alive) {
  const Request& req = parser_->get();
  // 1xx, 204 and 304 carry neither a body nor Content-Length (RFC 9110).
  const bool bodiless =
      reply.status < 200 || reply.status == 204 || reply.status == 304;
  http::response<http::string_body> res;
  res.version(req.version() == 10 ? 10 : 11);
  res.result(reply.status);
  if (!bodiless) res.set(http::field::content_type, reply.content_type);
  for (const auto& header : reply.headers) {
    res.insert(header.first, header.second);
  }
  res.keep_alive(keep_alive);
  if (bodiless) {
    reply.body.clear();
  } else if (req.method() == http::verb::head) {
    res.content_length(reply.body.size());
  } else {
    res.body() = std::move(reply.body);
    res.prepare_payload();
  }

  ArmDeadline(kWriteTimeout);
  const auto written = co_await http::async_write(socket_, res, kNoThrow);
  DisarmDeadline();
  co_return !std::get<0>(written);
}

asio::awaitable<void> Session::Close(bool linger) {
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  if (linger) {
    ArmDeadline(kLingerTimeout);
    std::vector<char> sink(kReadChunk);
    std::size_t dropped = 0;
    while (dropped < kLingerBytes) {
      const auto read =
          co_await socket_.async_read_some(asio::buffer(sink), kNoThrow);
      if (std::get<0>(read)) break;
      dropped += std::get<1>(read);
    }
    DisarmDeadline();
  }
  socket_.close(ignored);
}

void Session::LogAccess(const Reply& reply, std::size_t bytes,
                        Clock::time_point started) const {
  if (server_.config.quiet) return;
  const Request& req = parser_->get();
  const std::string_view target = req.target();
  const auto question = target.find('?');
  const auto path = target.substr(0, std::min(question, kMaxLoggedPath));
  const auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
      Clock::now() - started);

  LogLine line("info", "request");
  line.Str("method", req.method_string()).Str("path", path);
  if (question != std::string_view::npos) {
    line.StrList("query_params", QueryParamNames(target.substr(question + 1)));
  }
  line.Int("status", reply.status)
      .Int("bytes", static_cast<std::int64_t>(bytes))
      .Int("duration_us", elapsed.count());
  if (!reply.customer_id.empty()) line.Str("customer_id", reply.customer_id);
  line.Write();
}

// A client may send an empty line between requests (RFC 9112, 2.2).
void Session::DropLeadingBlankLines() {
  const auto data = buffer_.data();
  const auto* bytes = static_cast<const char*>(data.data());
  std::size_t n = 0;
  while (n < data.size() && (bytes[n] == '\r' || bytes[n] == '\n')) ++n;
  buffer_.consume(n);
}

// On expiry the pending operation is cancelled, not the connection closed.
// The generation number makes a stale expiry, queued before the deadline
// was moved or disarmed, do nothing.
void Session::ArmDeadline(Clock::duration timeout) {
  timed_out_ = false;
  const std::uint64_t generation = ++deadline_generation_;
  deadline_.expires_after(timeout);
  deadline_.async_wait(
      [self = shared_from_this(), generation](const error_code& ec) {
        if (ec || generation != self->deadline_generation_) return;
        self->timed_out_ = true;
        error_code ignored;
        self->socket_.cancel(ignored);
      });
}

void Session::DisarmDeadline() {
  ++deadline_generation_;
  deadline_.cancel();
}

asio::awaitable<void> RunSession(std::shared_ptr<Session> session) {
  try {
    co_await session->Run();
  } catch (const std::exception& e) {
    LogLine("error", "connection_failed").Str("error", e.what()).Write();
  }
  session->Finish();
}

void ForceCloseAll(ServerState& server) {
  for (Session* session : server.sessions) session->ForceClose();
}

void FinishIfDrained(ServerState& server) {
  if (!server.stopping || !server.sessions.empty() || server.finished) return;
  server.finished = true;
  server.drain_timer.cancel();
  error_code ignored;
  server.signals.cancel(ignored);
}

void BeginShutdown(ServerState& server, int signal_number) {
  server.stopping = true;
  LogLine("info", "shutdown")
      .Int("signal", signal_number)
      .Int("open_connections",
           static_cast<std::int64_t>(server.sessions.size()))
      .Write();
  error_code ignored;
  server.acceptor.close(ignored);
  for (Session* session : server.sessions) session->Stop();

  server.drain_timer.expires_after(kDrainTimeout);
  server.drain_timer.async_wait([&server](const error_code& ec) {
    if (ec) return;
    LogLine("warn", "drain_timeout")
        .Int("open_connections",
             static_cast<std::int64_t>(server.sessions.size()))
        .Write();
    ForceCloseAll(server);
  });
  FinishIfDrained(server);
}

// A second signal cuts the drain short.
void WaitForSignal(ServerState& server) {
  server.signals.async_wait([&server](const error_code& ec, int number) {
    if (ec || server.finished) return;
    if (!server.stopping) {
      BeginShutdown(server, number);
    } else {
      LogLine("warn", "forced_shutdown").Int("signal", number).Write();
      ForceCloseAll(server);
    }
    if (!server.finished) WaitForSignal(server);
  });
}

asio::awaitable<void> AcceptLoop(ServerState& server) {
  asio::steady_timer backoff(server.io);
  while (!server.stopping) {
    auto accepted = co_await server.acceptor.async_accept(kNoThrow);
    if (server.stopping) break;
    const error_code ec = std::get<0>(accepted);
    tcp::socket& socket = std::get<1>(accepted);
    if (ec) {
      // Typically out of file descriptors: wait instead of spinning.
      LogLine("warn", "accept_failed").Str("error", ec.message()).Write();
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(kNoThrow);
      continue;
    }
    if (server.sessions.size() >= kMaxConnections) {
      LogLine("warn", "connection_refused")
          .Str("reason", "too many open connections")
          .Write();
      continue;  // The socket closes as it goes out of scope.
    }
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto session = std::make_shared<Session>(server, std::move(socket));
    asio::co_spawn(server.io, RunSession(std::move(session)), asio::detached);
  }
}

std::optional<tcp::endpoint> ResolveListen(asio::io_context& io,
                                           const ServerConfig& config,
                                           error_code& ec) {
  const auto address = asio::ip::make_address(config.listen_host, ec);
  if (!ec) return tcp::endpoint(address, config.listen_port);
  tcp::resolver resolver(io);
  const auto results = resolver.resolve(config.listen_host,
                                        std::to_string(config.listen_port), ec);
  if (ec || results.empty()) return std::nullopt;
  return results.begin()->endpoint();
}

bool OpenAcceptor(ServerState& server) {
  const ServerConfig& config = server.config;
  const auto fail = [&config](std::string_view step, const error_code& ec) {
    LogLine("error", "listen_failed")
        .Str("listen",
             config.listen_host + ":" + std::to_string(config.listen_port))
        .Str("step", step)
        .Str("error", ec.message())
        .Write();
    return false;
  };

  error_code ec;
  const auto endpoint = ResolveListen(server.io, config, ec);
  if (!endpoint) return fail("resolve", ec);
  tcp::acceptor& acceptor = server.acceptor;
  if (acceptor.open(endpoint->protocol(), ec)) return fail("open", ec);
  if (acceptor.set_option(tcp::acceptor::reuse_address(true), ec)) {
    return fail("setsockopt", ec);
  }
  if (acceptor.bind(*endpoint, ec)) return fail("bind", ec);
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec)) {
    return fail("listen", ec);
  }

  const auto bound = acceptor.local_endpoint(ec);
  if (ec) return fail("getsockname", ec);
  LogLine("info", "listening")
      .Str("address", bound.address().to_string())
      .Int("port", bound.port())
      .Int("threads", config.threads)
      .Str("db", config.db_path)
      .Int("max_body_bytes", static_cast<std::int64_t>(config.max_body_bytes))
      .Write();
  return true;
}

}  // namespace

int RunHttpServer(lgr_receiver* receiver, const ServerConfig& config) {
  ServerState server(receiver, config);
  if (!OpenAcceptor(server)) return 1;

  WaitForSignal(server);
  asio::co_spawn(server.io, AcceptLoop(server), asio::detached);
  int status = 0;
  try {
    server.io.run();
  } catch (const std::exception& e) {
    LogLine("error", "event_loop_failed").Str("error", e.what()).Write();
    status = 1;
    // Ingests still queued in the library would call back into this event
    // loop after it is gone: closing the receiver here runs every callback
    // while the loop still exists (the caller's close then finds it closed).
    lgr_receiver_close(server.receiver, nullptr);
  }
  server.pool.join();
  return status;
}

}  // namespace lgr_server
