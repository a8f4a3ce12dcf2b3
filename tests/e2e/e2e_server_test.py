#!/usr/bin/env python3
"""End-to-end test of loopgain-receiver-server over real sockets.

Starts the server on a free loopback port with a temporary database, issues
tokens with the admin CLI, posts every recorded client payload and checks the
aggregate reads against numbers computed here from the fixture files, then
drives the error paths (auth, limits, framing, timeouts) and a shutdown
during a burst of writes.

    e2e_server_test.py --server BIN --admin BIN --fixtures DIR

Python 3 standard library only. Bounded: every wait has a timeout, and every
process started here is killed on the way out, whatever happened.
"""

import argparse
import collections
import datetime
import glob
import http.client
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir))
from harness import (TestFailure, expect, expect_eq,  # noqa: E402
                     kill_all, track)

# The fixtures are stamped 2026-11-30T14:00:00+00:00; "now" is the next
# midnight, so that they are neither in the future nor out of the 30-day
# window. (1764547200 is 2025-12-01, a year too early.)
NOW = int(datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
          .timestamp())
MAX_BODY = 262144  # The server's default cap.
USER_AGENT = "loopgain/0.6.4"
STARTUP_TIMEOUT = 15.0
HTTP_TIMEOUT = 20.0

def step(name):
    print(f"ok - {name}", flush=True)


# --------------------------------------------------------------------------
# Fixtures and the numbers they must add up to
# --------------------------------------------------------------------------

def load_fixtures(directory):
    paths = sorted(p for p in glob.glob(os.path.join(directory, "*.json"))
                   if os.path.basename(p) != "manifest.json")
    expect(len(paths) > 0, f"no fixtures in {directory}")
    fixtures = []
    for path in paths:
        with open(path, "rb") as f:
            body = f.read()
        fixtures.append((os.path.basename(path), body, json.loads(body)))
    return fixtures


def expected_stats(payloads):
    outcomes = collections.Counter()
    workloads = collections.Counter()
    iterations = savings = rollbacks = 0
    for p in payloads:
        loop = p["loop"]
        outcomes[loop["outcome"]] += 1
        if p.get("workload_id") is not None:
            workloads[p["workload_id"]] += 1
        iterations += loop["iterations_used"]
        savings += loop.get("savings_vs_fixed_cap") or 0
        rollbacks += 1 if loop.get("rollback_triggered") else 0
    return {
        "event_count": len(payloads),
        "total_iterations": iterations,
        "total_savings": savings,
        "rollbacks": rollbacks,
        "outcomes": dict(outcomes),
        "workloads": dict(workloads),
    }


def check_stats(stats, payloads, customer_id, label):
    want = expected_stats(payloads)
    expect_eq(stats.get("customer_id"), customer_id, f"{label} customer_id")
    totals = stats["totals"]
    for key in ("event_count", "total_iterations", "total_savings",
                "rollbacks"):
        expect_eq(totals[key], want[key], f"{label} totals.{key}")
    outcomes = {o["outcome"]: o["count"] for o in stats["outcomes"]}
    expect_eq(outcomes, want["outcomes"], f"{label} outcomes")
    workloads = {w["workload_id"]: w["count"] for w in stats["workloads"]
                 if w["workload_id"] is not None}
    expect_eq(workloads, want["workloads"], f"{label} workloads")


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------

class Server:
    """The server under test; its stderr is collected line by line."""

    def __init__(self, binary, db, now=NOW):
        self.lines = []
        self.lock = threading.Lock()
        self.port_ready = threading.Event()
        self.port = None
        fixed = ["--now", str(now)] if now is not None else []
        self.proc = subprocess.Popen(
            [binary, "--db", db, "--listen", "127.0.0.1:0", "--threads", "4",
             *fixed],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        track(self.proc)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.port_ready.wait(STARTUP_TIMEOUT) or self.port is None:
            raise TestFailure("the server did not report its port:\n" +
                              self.log_tail())

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.lock:
                self.lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "listening":
                self.port = record["port"]
                self.port_ready.set()
        self.port_ready.set()

    def log(self):
        with self.lock:
            return list(self.lines)

    def log_tail(self, n=40):
        return "\n".join(self.log()[-n:])

    def records(self):
        out = []
        for line in self.log():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise TestFailure(f"a log line is not JSON: {line!r}")
        return out

    def stop(self, timeout=30.0):
        """SIGTERM, then the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.reader.join(5)


def admin(binary, db, *args):
    result = subprocess.run([binary, "--db", db, *args],
                            capture_output=True, timeout=30, text=True)
    if result.returncode != 0:
        raise TestFailure(f"admin {' '.join(args)} failed "
                          f"({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def issue_token(binary, db, name):
    out = admin(binary, db, "issue-token", "--name", name, "--json")
    record = json.loads(out)
    expect(re.fullmatch(r"cust_[0-9a-f]{16}", record["customer_id"]),
           f"customer id {record['customer_id']!r}")
    expect(re.fullmatch(r"lgk_[A-Za-z0-9_-]{32}", record["token"]),
           "token format")
    return record["customer_id"], record["token"]


# --------------------------------------------------------------------------
# HTTP helpers
# --------------------------------------------------------------------------

def ingest_headers(token=None, extra=None):
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.update(extra or {})
    return headers


def http_request(port, method, path, body=None, headers=None, conn=None):
    """One request; returns (status, headers, parsed JSON body or None)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port,
                                          timeout=HTTP_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        parsed = json.loads(raw) if raw else None
        return response.status, dict(response.getheaders()), parsed
    finally:
        if own:
            conn.close()


def post(port, body, token, extra=None, conn=None):
    return http_request(port, "POST", "/v1/aggregate", body,
                        ingest_headers(token, extra), conn)


def get(port, path, token):
    status, _, body = http_request(
        port, "GET", path, headers={"Authorization": f"Bearer {token}"})
    expect_eq(status, 200, f"GET {path}")
    return body


def expect_error(result, status, code, what):
    got_status, headers, body = result
    expect_eq(got_status, status, f"{what}: status")
    expect(isinstance(body, dict), f"{what}: the body is not a JSON object")
    expect_eq(body.get("error"), code, f"{what}: error code")
    expect_eq(headers.get("X-Content-Type-Options"), "nosniff",
              f"{what}: X-Content-Type-Options")


class RawConnection:
    """A bare socket, for what http.client will not send."""

    def __init__(self, port, timeout=HTTP_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def send_tolerant(self, data):
        """Sends what the server takes; it may answer and stop reading."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def read_response(self):
        """(status, headers, body bytes) or None at end of stream."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                expect(self.buffer == b"",
                       f"truncated response: {self.buffer[:200]!r}")
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            expect(self._fill(), "the response body was cut short")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def read_to_end(self):
        try:
            while self._fill():
                pass
        except ConnectionResetError:
            pass
        return self.buffer

    def close(self):
        self.sock.close()


def error_code_of(body):
    return json.loads(body).get("error")


def chunked(data, size):
    out = b""
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def raw_post_head(token, extra_lines=()):
    lines = ["POST /v1/aggregate HTTP/1.1", "Host: 127.0.0.1",
             "Content-Type: application/json", f"User-Agent: {USER_AGENT}",
             f"Authorization: Bearer {token}", *extra_lines]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------

def test_ingest_and_reads(port, fixtures, a, b):
    (a_id, a_token), (b_id, b_token) = a, b
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:  # One keep-alive connection for all of A's payloads.
        for name, body, _ in fixtures:
            status, _, reply = post(port, body, a_token, conn=conn)
            expect_eq(status, 202, f"POST {name}: status {reply}")
    finally:
        conn.close()
    step(f"{len(fixtures)} fixtures accepted with 202 on one connection")

    b_payloads = fixtures[:3]
    for name, body, _ in b_payloads:
        expect_eq(post(port, body, b_token)[0], 202, f"B POST {name}")

    check_stats(get(port, "/v1/stats", a_token),
                [p for _, _, p in fixtures], a_id, "A stats")
    check_stats(get(port, "/v1/stats", b_token),
                [p for _, _, p in b_payloads], b_id, "B stats")
    step("/v1/stats totals, outcomes and workloads match the fixtures")

    events = get(port, "/v1/events", a_token)
    expect_eq(events["customer_id"], a_id, "A events customer_id")
    expect_eq(len(events["events"]), len(fixtures), "A event rows")
    b_events = get(port, "/v1/events", b_token)
    expect_eq(len(b_events["events"]), len(b_payloads), "B event rows")
    rollbacks = sum(1 for _, _, p in fixtures
                    if p["loop"]["rollback_triggered"])
    only = get(port, "/v1/events?rollbacks_only=true", a_token)
    expect_eq(len(only["events"]), rollbacks, "A rollback rows")
    step("/v1/events rows per customer and rollbacks_only")

    profiles = get(port, "/v1/profiles", a_token)
    expect_eq(profiles["customer_id"], a_id, "A profiles customer_id")
    expect_eq(len(profiles["events"]), len(fixtures), "A profile rows")
    workload = fixtures[0][2]["workload_id"]
    per = get(port, f"/v1/profiles?workload_id={workload}&since_hours=48",
              a_token)
    want = sum(1 for _, _, p in fixtures if p["workload_id"] == workload)
    expect_eq(len(per["events"]), want, f"profiles of {workload}")
    b_profiles = get(port, "/v1/profiles", b_token)
    expect_eq(len(b_profiles["events"]), len(b_payloads), "B profile rows")
    step("/v1/profiles per customer and per workload; tenants isolated")


def test_concurrent_posts(port, fixtures, customers):
    results = []
    lock = threading.Lock()

    def worker(i):
        _, token = customers[i % len(customers)]
        body = fixtures[i % len(fixtures)][1]
        try:
            status = post(port, body, token)[0]
        except Exception as e:  # Recorded, reported below.
            status = repr(e)
        with lock:
            results.append(status)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    expect_eq(collections.Counter(results), {202: 100},
              "100 concurrent POSTs")
    for customer_id, token in customers:
        stats = get(port, "/v1/stats", token)
        expect_eq(stats["totals"]["event_count"], 100 // len(customers),
                  f"events of {customer_id}")
    step("100 concurrent POSTs over 4 customers: all 202, all stored")


def test_auth_errors(port, body):
    expect_error(post(port, body, None), 401, "unauthorized", "no token")
    unknown = "lgk_" + secrets.token_urlsafe(24)[:32]
    expect_error(post(port, body, unknown), 401, "unauthorized",
                 "unknown token")
    step("401 without a token and with an unknown token")


def test_revoked_token(args, db, payload, revokable):
    """On a server with the real clock: the admin CLI stamps the revocation
    with the real time, which a --now in the past would not yet see."""
    server = Server(args.server, db, now=None)
    try:
        current = dict(payload)
        current["timestamp_hour"] = (
            datetime.datetime.now(datetime.timezone.utc)
            .replace(minute=0, second=0, microsecond=0).isoformat())
        body = json.dumps(current).encode()
        customer_id, token = revokable
        status, _, reply = post(server.port, body, token)
        expect_eq(status, 202, f"before revoke: {reply}")
        admin(args.admin, db, "revoke", "--customer", customer_id)
        expect_error(post(server.port, body, token), 401, "unauthorized",
                     "revoked token")
        expect_error(
            http_request(server.port, "GET", "/v1/stats",
                         headers={"Authorization": f"Bearer {token}"}),
            401, "unauthorized", "revoked token on a read")
    finally:
        expect_eq(server.stop(), 0, "exit status of the real-clock server")
    step("401 for a token revoked with the admin CLI while serving")


def test_request_errors(port, body, token):
    expect_error(post(port, b'{"schema_version": 4, "loop": ', token), 400,
                 "invalid_json", "truncated JSON")
    expect_error(post(port, body, token,
                      {"Origin": "https://evil.example"}),
                 403, "browser_requests_not_allowed", "Origin on ingest")
    expect_error(http_request(port, "GET", "/v1/nope"), 404, "not_found",
                 "unknown route")
    expect_error(http_request(port, "GET", "/v1/aggregate",
                              headers={"Authorization": f"Bearer {token}"}),
                 405, "method_not_allowed", "GET on the ingest route")
    status, health_headers, health = http_request(port, "GET", "/health")
    expect_eq((status, health.get("status")), (200, "ok"), "/health")
    step("400 invalid_json, 403 Origin on ingest, 404, 405, /health")

    # HEAD: GET's status and length, no body (http.client reads none).
    status, headers, none = http_request(port, "HEAD", "/health")
    expect_eq((status, none), (200, None), "HEAD /health")
    expect_eq(headers.get("Content-Length"),
              health_headers.get("Content-Length"),
              "HEAD /health: GET's Content-Length")
    status, headers, _ = http_request(port, "DELETE", "/health")
    expect_eq((status, headers.get("Allow")), (405, "GET, HEAD, OPTIONS"),
              "DELETE /health")
    step("HEAD /health: 200 with GET's Content-Length and no body")

    big = b"{" + b" " * (1024 * 1024 - 2) + b"}"
    expect_error(post(port, big, token), 413, "payload_too_large",
                 "a 1 MiB body")
    step("413 payload_too_large for a 1 MiB body")


def test_framing(port, body, token):
    # Content-Length and Transfer-Encoding together, with a second request
    # hidden behind the first: one 400, then the connection closes.
    conn = RawConnection(port)
    conn.send(raw_post_head(token, ["Content-Length: 5",
                                    "Transfer-Encoding: chunked"]) +
              b"0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, reply = conn.read_response()
    expect_eq((status, error_code_of(reply)), (400, "bad_request"),
              "Content-Length with Transfer-Encoding")
    rest = conn.read_to_end()
    expect(b"HTTP/1.1" not in rest, "the smuggled request was answered")
    conn.close()

    # The same with the headers the other way round.
    conn = RawConnection(port)
    conn.send(raw_post_head(token, ["Transfer-Encoding: chunked",
                                    "Content-Length: 5"]) + b"0\r\n\r\n")
    status, _, reply = conn.read_response()
    expect_eq((status, error_code_of(reply)), (400, "bad_request"),
              "Transfer-Encoding with Content-Length")
    conn.close()
    step("Content-Length + Transfer-Encoding: 400 bad_request, no smuggling")

    conn = RawConnection(port)
    conn.send(b"GET /health HTTP/1.1\r\nUser-Agent: x\r\n\r\n")
    status, _, reply = conn.read_response()
    expect_eq((status, error_code_of(reply)), (400, "bad_request"),
              "HTTP/1.1 without Host")
    conn.close()

    conn = RawConnection(port)
    conn.send(raw_post_head(token, [f"Content-Length: {len(body)}",
                                    "Content-Encoding: gzip"]) + body)
    status, _, reply = conn.read_response()
    expect_eq((status, error_code_of(reply)), (415, "unsupported_media_type"),
              "Content-Encoding: gzip")
    conn.close()
    step("no Host: 400; a compressed body: 415")

    conn = RawConnection(port)
    conn.send(raw_post_head(token, ["Transfer-Encoding: chunked"]) +
              chunked(body, 100))
    status, _, reply = conn.read_response()
    expect_eq(status, 202, f"chunked body: {reply!r}")
    conn.close()

    conn = RawConnection(port)
    conn.send_tolerant(raw_post_head(token, ["Transfer-Encoding: chunked"]) +
                       chunked(b"x" * (MAX_BODY + 50000), 16384))
    status, _, reply = conn.read_response()
    expect_eq((status, error_code_of(reply)), (413, "payload_too_large"),
              "chunked body over the cap")
    conn.close()
    step("chunked body 202; chunked body over the cap 413")

    conn = RawConnection(port)
    conn.send_tolerant(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Filler: " +
                       b"a" * (17 * 1024) + b"\r\n\r\n")
    status, _, reply = conn.read_response()
    expect_eq(status, 431, "a 17 KiB header block")
    expect(error_code_of(reply) is not None, "431 without a JSON error")
    conn.close()
    step("header block over 16 KiB: 431")

    # A body shorter than announced, then end of input: 400, not a hang.
    conn = RawConnection(port)
    conn.send(raw_post_head(token, ["Content-Length: 1000"]) + body[:100])
    conn.shutdown_write()
    status, _, reply = conn.read_response()
    expect_eq((status, error_code_of(reply)), (400, "bad_request"),
              "a body shorter than its Content-Length")
    conn.close()
    step("Content-Length larger than the body sent, then EOF: 400")

    # Pipelining: three requests in one write, three answers in order.
    conn = RawConnection(port)
    conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" +
              raw_post_head(token, [f"Content-Length: {len(body)}"]) + body +
              b"GET /v1/missing HTTP/1.1\r\nHost: x\r\n\r\n")
    statuses = [conn.read_response()[0] for _ in range(3)]
    expect_eq(statuses, [200, 202, 404], "pipelined responses in order")
    conn.close()
    step("pipelined requests answered in order on one connection")

    conn = RawConnection(port)
    conn.send(raw_post_head(token, [f"Content-Length: {len(body)}",
                                    "Expect: 100-continue"]))
    status = conn.read_response()[0]
    expect_eq(status, 100, "Expect: 100-continue")
    conn.send(body)
    expect_eq(conn.read_response()[0], 202, "body after 100 Continue")
    conn.close()
    step("Expect: 100-continue")

    # A refused token gets its final answer instead of 100 Continue; the
    # body is never sent, and the server closes the connection.
    conn = RawConnection(port)
    conn.send(raw_post_head("lgk_" + "A" * 32,
                            [f"Content-Length: {len(body)}",
                             "Expect: 100-continue"]))
    status, _, reply = conn.read_response()
    expect_eq(status, 401, "Expect: 100-continue with an unknown token")
    expect_eq(error_code_of(reply), "unauthorized",
              "Expect: 100-continue with an unknown token")
    expect_eq(conn.read_response(), None,
              "the connection closes after the refusal")
    conn.close()
    step("Expect: 100-continue with an unknown token: 401, body not read")


def start_stalled_request(port, token, body):
    """A request that never completes; the server must time it out."""
    result = {}

    def run():
        started = time.monotonic()
        try:
            conn = RawConnection(port, timeout=40)
            conn.send(raw_post_head(token, ["Content-Length: 1000"]) +
                      body[:100])
            response = conn.read_response()
            result["status"] = response[0] if response else "closed"
            conn.close()
        except Exception as e:  # Reported by the caller.
            result["status"] = repr(e)
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_log(server, tokens, a_id):
    records = server.records()
    text = "\n".join(server.log())
    for token in tokens:
        expect(token not in text, "a bearer token appears in the log")
    requests = [r for r in records if r.get("event") == "request"]
    expect(len(requests) > 100, "too few access-log lines")
    for r in requests:
        for key in ("time", "method", "path", "status", "bytes",
                    "duration_us"):
            expect(key in r, f"access-log line without {key}: {r}")
        expect("?" not in r["path"], f"query in a logged path: {r}")
    expect(any(r.get("customer_id") == a_id for r in requests),
           "no access-log line names the customer")
    profile_lines = [r for r in requests if r["path"] == "/v1/profiles" and
                     "query_params" in r]
    expect(profile_lines and profile_lines[0]["query_params"] ==
           ["workload_id", "since_hours"], "query parameter names")
    step("access log: JSON lines, no token, no query values")


def test_shutdown_burst(args, db, fixtures, server, customer):
    customer_id, token = customer
    accepted = []
    unexpected = []
    attempted = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def writer(i):
        n = 0
        while not stop.is_set():
            body = fixtures[(i + n) % len(fixtures)][1]
            n += 1
            with lock:
                attempted[0] += 1
            try:
                status = post(server.port, body, token)[0]
            except OSError:
                continue  # Refused or cut off once the server stops.
            with lock:
                if status == 202:
                    accepted.append(1)
                elif status != 503:  # 503: the receiver is closing.
                    unexpected.append(status)

    threads = [threading.Thread(target=writer, args=(i,), daemon=True)
               for i in range(12)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    rc = server.stop()
    stop.set()
    for t in threads:
        t.join(30)
    expect_eq(rc, 0, "exit status after SIGTERM")
    expect_eq(unexpected, [], "statuses other than 202/503 during shutdown")
    events = [r.get("event") for r in server.records()]
    expect("shutdown" in events and "stopped" in events,
           "shutdown and stopped log lines")
    expect(len(accepted) > 0, "no request was accepted before SIGTERM")

    again = Server(args.server, db)
    try:
        stats = get(again.port, "/v1/stats", token)
        stored = stats["totals"]["event_count"]
        expect(stored >= len(accepted),
               f"{len(accepted)} acknowledged but only {stored} stored")
        expect(stored <= attempted[0], "more events stored than sent")
    finally:
        expect_eq(again.stop(), 0, "exit status of the second server")
    step(f"SIGTERM during a burst: exit 0, all {len(accepted)} acknowledged "
         f"events stored ({stored} in the database)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--admin", required=True)
    parser.add_argument("--fixtures", required=True)
    args = parser.parse_args()

    started = time.monotonic()
    fixtures = load_fixtures(args.fixtures)
    body = fixtures[-1][1]
    server = None
    with tempfile.TemporaryDirectory(prefix="lgr-e2e-") as tmp:
        db = os.path.join(tmp, "telemetry.db")
        try:
            admin(args.admin, db, "init")
            a = issue_token(args.admin, db, "Customer A")
            b = issue_token(args.admin, db, "Customer B")
            revokable = issue_token(args.admin, db, "Revoked Customer")
            burst = [issue_token(args.admin, db, f"Burst {i}")
                     for i in range(4)]
            errors = issue_token(args.admin, db, "Error Paths")
            final = issue_token(args.admin, db, "Shutdown")
            step("database and tokens from the admin CLI")

            server = Server(args.server, db)
            step(f"server listening on port {server.port}")
            stalled, stalled_result = start_stalled_request(
                server.port, errors[1], body)

            test_ingest_and_reads(server.port, fixtures, a, b)
            test_concurrent_posts(server.port, fixtures, burst)
            test_auth_errors(server.port, body)
            test_request_errors(server.port, body, errors[1])
            test_framing(server.port, body, errors[1])

            stalled.join(30)
            expect_eq(stalled_result.get("status"), 408,
                      "an incomplete request left hanging")
            expect(stalled_result["seconds"] < 25, "the timeout took too long")
            step(f"incomplete request timed out with 408 after "
                 f"{stalled_result['seconds']:.1f} s")

            test_log(server, [a[1], b[1], errors[1]], a[0])
            test_shutdown_burst(args, db, fixtures, server, final)
            test_revoked_token(args, db, fixtures[-1][2], revokable)
        except Exception as e:
            kill_all()
            if not isinstance(e, TestFailure):
                traceback.print_exc()
            print(f"FAIL: {e}", flush=True)
            if server is not None:
                print("--- server log (tail) ---\n" + server.log_tail(),
                      flush=True)
            return 1
        finally:
            kill_all()
    print(f"PASS in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
