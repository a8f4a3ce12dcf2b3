#!/usr/bin/env python3
"""An HTTP host for loopgain-receiver on the Python standard library.

Every request goes to lgr_handle_request(), so the routes and answers are
the library's, as in the C++ example server (loopgain-receiver-server),
whose flags, framing rules and JSON log lines this host follows. The host
only frames HTTP: it reads the body with a cap (a declared Content-Length
over the cap is answered 413 without reading the body), writes the answer
and logs one JSON line per request on stderr.

    python3 serve.py --db ./var/telemetry.db --listen 127.0.0.1:8787

SIGINT or SIGTERM stops the server; the receiver then commits every
acknowledged event. Exit status: 0 after a clean stop, 1 when the library,
the database or the listening socket cannot be opened, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import (Any, Callable, List, Optional, Sequence, TextIO,
                    Tuple)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from loopgain_receiver import (LOG_DEBUG, LOG_ERROR, LOG_INFO,  # noqa: E402
                               LOG_WARN, HttpResponse, Receiver,
                               ReceiverError)

DEFAULT_LISTEN = "127.0.0.1:8787"
DEFAULT_MAX_BODY = 256 * 1024
MAX_BODY_CEILING = 16 * 1024 * 1024
REQUEST_TIMEOUT = 15  # seconds to receive a whole request
IDLE_TIMEOUT = 30  # seconds a keep-alive connection may wait for a request
LINGER_TIMEOUT = 2  # after a refusal, seconds spent draining the client
LINGER_BYTES = 16 * 1024 * 1024

_LEVEL_NAMES = {LOG_DEBUG: "debug", LOG_INFO: "info", LOG_WARN: "warn",
                LOG_ERROR: "error"}
_SECURITY_HEADERS = [("X-Content-Type-Options", "nosniff"),
                     ("Cache-Control", "no-store"),
                     ("Referrer-Policy", "no-referrer")]
# The host frames the message itself; the library may not set these.
_FRAMING_HEADERS = {"content-type", "content-length", "transfer-encoding",
                    "connection"}
# Codes for the refusals http.server makes before a request is parsed.
_HTTP_SERVER_CODES = {400: "bad_request", 414: "uri_too_long",
                      431: "headers_too_large", 501: "not_implemented",
                      505: "http_version_not_supported"}
_log_lock = threading.Lock()
# Where log lines go; None: sys.stderr at the time of writing. Tests set it.
log_stream: Optional[TextIO] = None


def log_line(level: str, event: str, **fields: Any) -> None:
    """Writes one JSON log line to stderr: time, level, event, fields."""
    now = time.time()
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
              + ".%03dZ" % (int(now * 1000) % 1000),
              "level": level, "event": event}
    record.update(fields)
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    stream = log_stream or sys.stderr
    with _log_lock:
        stream.write(line + "\n")
        stream.flush()


def server_error(status: int, code: str, message: str) -> HttpResponse:
    """The host's own errors (framing, limits, timeouts) in the library's
    shape: {"error", "path", "message"} and the same security headers."""
    body = json.dumps({"error": code, "path": "", "message": message},
                      separators=(",", ":")).encode()
    return HttpResponse(status, [("Content-Type", "application/json")]
                        + _SECURITY_HEADERS, body)


class _Refusal(Exception):
    """The request is answered by the host, and the connection closed."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


def _bad_request(message: str) -> _Refusal:
    return _Refusal(server_error(400, "bad_request", message))


class ReceiverHandler(BaseHTTPRequestHandler):
    """Forwards every request, whatever its method, to the receiver."""

    protocol_version = "HTTP/1.1"
    server_version = "loopgain-receiver-python"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    server: "ReceiverHTTPServer"
    # Set by handle_expect_100 for the current request: answer it without
    # reading its body.
    _body_unwanted = False

    def __getattr__(self, name: str) -> Callable[[], None]:
        # BaseHTTPRequestHandler dispatches to do_<METHOD>; every method
        # goes to the library, which answers 405 where it should.
        if name.startswith("do_"):
            return self._forward
        raise AttributeError(name)

    def handle_expect_100(self) -> bool:
        # Only invite a body the host is going to read: not one whose
        # framing is refused, nor that of a POST whose bearer token the
        # library refuses, which it answers the same with or without the
        # body (401, or 403, 404 or 405 where those come first).
        try:
            self._check_framing()
        except _Refusal:
            return True  # _forward answers without reading the body
        if self.command == "POST" and not self._token_accepted():
            self._body_unwanted = True
            return True
        return super().handle_expect_100()

    def _token_accepted(self) -> bool:
        try:
            self.server.receiver.authenticate(self.headers.get("Authorization"))
        except ReceiverError as exc:
            return exc.code != "unauthorized"
        return True

    def send_error(self, code: int, message: Optional[str] = None,
                   explain: Optional[str] = None) -> None:
        # http.server's own refusals (malformed request line, too many or
        # too long headers), in the same JSON shape as every other answer.
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # unparsed: answer anyway
            self.request_version = "HTTP/1.0"
        resp = server_error(code, _HTTP_SERVER_CODES.get(code, "bad_request"),
                            message or explain or "malformed request")
        self._send(resp)
        self._log(getattr(self, "path", "") or "", resp, time.monotonic())

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass  # _forward logs one line per request

    def log_message(self, format: str, *args: Any) -> None:
        # http.server's own refusals (malformed request line, headers).
        log_line("warn", "http", detail=format % args)

    # -- one request -------------------------------------------------------

    def _forward(self) -> None:
        started = time.monotonic()
        target = self.path
        path, question, query = target.partition("?")
        body_unwanted, self._body_unwanted = self._body_unwanted, False
        try:
            self.connection.settimeout(REQUEST_TIMEOUT)
            body = None if body_unwanted else self._read_body()
            self.connection.settimeout(self.timeout)
        except _Refusal as refusal:
            self.close_connection = True
            self._send(refusal.response)
            self._log(target, refusal.response, started)
            self._linger()
            return
        try:
            resp = self.server.receiver.handle_request(
                self.command, path, query if question else None,
                self.headers, body)
        except ReceiverError as exc:
            resp = server_error(500, "internal_error",
                                "the receiver could not handle the request: "
                                + exc.message)
        if body_unwanted:
            # The body may still come (a client stops waiting for 100
            # Continue after a while): close, draining, as for a refusal.
            self.close_connection = True
        self._send(resp)
        self._log(target, resp, started)
        if body_unwanted:
            self._linger()

    def _check_framing(self) -> Optional[int]:
        """Refuses what a request smuggler could exploit, before any body
        byte is read. Returns the declared Content-Length, if any."""
        h = self.headers
        codings = h.get_all("Transfer-Encoding") or []
        lengths = h.get_all("Content-Length") or []
        if codings:
            if lengths:
                raise _bad_request("both Content-Length and Transfer-Encoding")
            if len(codings) > 1 or codings[0].strip().lower() != "chunked":
                raise _bad_request(
                    "the only transfer coding accepted is chunked")
            if self.request_version == "HTTP/1.0":
                raise _bad_request("Transfer-Encoding in an HTTP/1.0 request")
        for name in ("Authorization", "Origin", "Content-Type", "Host"):
            if len(h.get_all(name) or []) > 1:
                raise _bad_request(f"duplicate {name} header")
        if not lengths:
            return None
        if len(lengths) > 1 or not lengths[0].strip().isdigit():
            raise _bad_request("invalid Content-Length")
        declared = int(lengths[0])
        if declared > self.server.max_body_bytes:
            raise self._too_large()
        return declared

    def _too_large(self) -> _Refusal:
        return _Refusal(server_error(
            413, "payload_too_large",
            f"the request body exceeds {self.server.max_body_bytes} bytes"))

    def _read_body(self) -> Optional[bytes]:
        """The request body (None when the request has none), never
        reading more than the cap."""
        declared = self._check_framing()
        try:
            if self.headers.get("Transfer-Encoding"):
                return self._read_chunked()
            if declared is None:
                return None
            data = self.rfile.read(declared)
        except (socket.timeout, TimeoutError):
            raise _Refusal(server_error(
                408, "request_timeout",
                f"the request was not complete within {REQUEST_TIMEOUT} "
                "seconds")) from None
        if len(data) != declared:
            raise _bad_request(
                "the connection ended before the request was complete")
        return data

    def _read_chunked(self) -> bytes:
        cap = self.server.max_body_bytes
        parts: List[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise _bad_request("malformed chunk size line")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _bad_request("malformed chunk size line") from None
            if size == 0:
                break
            total += size
            if total > cap:
                raise self._too_large()
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(3) not in (
                    b"\r\n", b"\n"):
                raise _bad_request(
                    "the connection ended before the request was complete")
            parts.append(chunk)
        for _ in range(100):  # trailer fields are read and ignored
            line = self.rfile.readline(8192)
            if line in (b"\r\n", b"\n", b""):
                break
        else:
            raise _bad_request("too many trailer fields")
        return b"".join(parts)

    def _linger(self) -> None:
        """Closing with unread request bytes would reset the connection and
        could destroy the answer before the client reads it: stop sending,
        then drain what the client still sends, within bounds."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_TIMEOUT
            drained = 0
            while drained < LINGER_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.connection.settimeout(left)
                data = self.connection.recv(65536)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass

    def _send(self, resp: HttpResponse) -> None:
        self.send_response(resp.status)
        sent_type = False
        for name, value in resp.headers:
            if name.lower() in _FRAMING_HEADERS:
                if name.lower() != "content-type" or sent_type:
                    continue
                sent_type = True
            self.send_header(name, value)
        if resp.status >= 200 and resp.status not in (204, 304):
            self.send_header("Content-Length", str(len(resp.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and resp.status not in (204, 304):
            self.wfile.write(resp.body)

    def _log(self, target: str, resp: HttpResponse, started: float) -> None:
        if self.server.quiet:
            return
        path, question, query = target.partition("?")
        fields: dict = {"method": self.command, "path": path[:512]}
        if question:
            names = [p.split("=", 1)[0][:64] for p in query.split("&") if p]
            fields["query_params"] = [n for n in names if n][:20]
        fields.update(status=resp.status, bytes=len(resp.body),
                      duration_us=int((time.monotonic() - started) * 1e6))
        customer = getattr(resp, "customer_id", "")
        if customer:
            fields["customer_id"] = customer
        log_line("info", "request", **fields)


class ReceiverHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that carries the receiver and the body cap.

    TODO(#6): one thread per connection with no upper bound (the C++ server
    has a fixed worker pool); put a reverse proxy with a connection limit in
    front of this host, or use the C++ server, under heavy load.
    """

    daemon_threads = True

    def __init__(self, address: Tuple[str, int], receiver: Receiver,
                 max_body_bytes: int = DEFAULT_MAX_BODY,
                 quiet: bool = False) -> None:
        self.receiver = receiver
        self.max_body_bytes = max_body_bytes
        self.quiet = quiet
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, ReceiverHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall
        # on machines without DNS; the name is not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def handle_error(self, request: Any, client_address: Any) -> None:
        log_line("error", "connection_failed",
                 detail=repr(sys.exc_info()[1]))


def make_server(receiver: Receiver, host: str = "127.0.0.1", port: int = 0,
                max_body_bytes: int = DEFAULT_MAX_BODY,
                quiet: bool = False) -> ReceiverHTTPServer:
    """Binds a server for `receiver`; run it with serve_forever()."""
    return ReceiverHTTPServer((host, port), receiver, max_body_bytes, quiet)


def parse_listen(value: str) -> Tuple[str, int]:
    """"127.0.0.1:8787" or "[::1]:8787" -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535 or not host:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT, got {value!r}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise argparse.ArgumentTypeError(
            "write IPv6 addresses in brackets, e.g. [::1]:8787")
    return host.strip("[]"), int(port)


def parse_max_body(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_BODY_CEILING:
        raise argparse.ArgumentTypeError(
            f"expected 1..{MAX_BODY_CEILING}, got {value!r}")
    return int(value)


def parse_now(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(
            "expected UNIX seconds (an integer >= 0)")
    return int(value)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="An HTTP host for loopgain-receiver (Python standard "
                    "library). Logs are JSON lines on stderr.")
    p.add_argument("--db", default="./var/telemetry.db",
                   help="SQLite database, created and migrated on start "
                        "(default %(default)s; its directory must exist)")
    p.add_argument("--listen", type=parse_listen,
                   default=parse_listen(DEFAULT_LISTEN),
                   help=f"HOST:PORT to listen on (default {DEFAULT_LISTEN});"
                        " IPv6 as [::1]:8787; port 0 picks a free port, "
                        "reported in the \"listening\" log line")
    p.add_argument("--lib", default=None,
                   help="path of libloopgain_receiver.so (default "
                        "$LOOPGAIN_RECEIVER_LIB, then the loader's search)")
    p.add_argument("--privacy-policy", default="summary_only",
                   choices=["summary_only", "trajectories", "strict"])
    p.add_argument("--max-body", type=parse_max_body, default=DEFAULT_MAX_BODY,
                   metavar="BYTES",
                   help="largest request body, 1..16777216 (default "
                        "%(default)s); larger bodies get 413")
    p.add_argument("--cors-origin", action="append", default=[],
                   metavar="ORIGIN",
                   help="a browser origin allowed to call the read routes, "
                        "exact match (repeatable)")
    p.add_argument("--quiet", action="store_true",
                   help="no access log (diagnostics are still logged)")
    p.add_argument("--now", type=parse_now, default=None,
                   metavar="UNIX_SECONDS",
                   help="testing and replays only: a fixed \"now\" for time "
                        "windows and the future-timestamp check")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        receiver = Receiver(
            args.db, privacy_policy=args.privacy_policy,
            max_body_bytes=args.max_body, cors_origins=args.cors_origin,
            fixed_time=args.now, lib=args.lib, log_level=LOG_INFO,
            logger=lambda level, message: log_line(
                _LEVEL_NAMES.get(level, "info"), "library", message=message))
    except (ReceiverError, OSError) as exc:
        log_line("error", "open_failed", db=args.db, message=str(exc))
        return 1

    try:
        server = make_server(receiver, *args.listen,
                             max_body_bytes=args.max_body, quiet=args.quiet)
    except OSError as exc:
        log_line("error", "listen_failed", message=str(exc))
        receiver.close()
        return 1

    def stop(signum: int, _frame: Any) -> None:
        log_line("info", "stopping", signal=signal.Signals(signum).name)
        # shutdown() waits for serve_forever(), which runs on this (the
        # main) thread: call it from another one.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    log_line("info", "listening", address=host, port=port, db=args.db,
             max_body_bytes=args.max_body, version=receiver.version)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    try:
        receiver.close()  # commits every acknowledged event
    except ReceiverError as exc:
        log_line("error", "close_failed", code=exc.code, message=exc.message)
        return 1
    log_line("info", "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
