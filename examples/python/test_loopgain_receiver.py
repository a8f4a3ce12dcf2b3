"""Tests of the Python bindings and the serve.py host (unittest, stdlib only).

Environment:
    LOOPGAIN_RECEIVER_LIB  the shared library under test
    LGR_FIXTURES_DIR       the recorded client payloads (default: the
                           repository's tests/fixtures/client-payloads)
"""

from __future__ import annotations

import collections
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import loopgain_receiver as lgr  # noqa: E402
import serve  # noqa: E402

FIXTURES_DIR = os.environ.get("LGR_FIXTURES_DIR") or os.path.join(
    HERE, "..", "..", "tests", "fixtures", "client-payloads")
# 2026-12-01T00:00:00Z: every fixture (2026-11-30T14:00Z) is in every window.
NOW = 1796083200


def load_fixtures() -> List[Tuple[str, bytes]]:
    names = sorted(n for n in os.listdir(FIXTURES_DIR)
                   if n.endswith(".json") and n != "manifest.json")
    out = []
    for name in names:
        with open(os.path.join(FIXTURES_DIR, name), "rb") as f:
            out.append((name, f.read()))
    return out


FIXTURES = load_fixtures()


def expected_stats(copies: int = 1) -> dict:
    """The numbers /v1/stats must report, computed from the fixtures."""
    outcomes: Dict[str, int] = collections.Counter()
    workloads: Dict[Optional[str], int] = collections.Counter()
    totals = {"event_count": 0, "total_iterations": 0, "total_savings": 0,
              "rollbacks": 0}
    for _, body in FIXTURES:
        p = json.loads(body)
        loop = p["loop"]
        outcomes[loop["outcome"]] += copies
        workloads[p.get("workload_id")] += copies
        totals["event_count"] += copies
        totals["total_iterations"] += loop["iterations_used"] * copies
        totals["total_savings"] += (loop.get("savings_vs_fixed_cap") or 0) \
            * copies
        totals["rollbacks"] += int(bool(loop["rollback_triggered"])) * copies
    return {"outcomes": dict(outcomes), "workloads": dict(workloads),
            "totals": totals}


class ReceiverCase(unittest.TestCase):
    """Owns a temporary directory and a receiver on a database inside it."""

    policy: Optional[str] = None

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="lgr-py-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.db = os.path.join(self.dir, "telemetry.db")
        self.receiver = self.open()
        self.addCleanup(self.receiver.close)
        self.customer = self.receiver.create_customer("Acme",
                                                      "ops@acme.test")
        self.auth = "Bearer " + self.customer.token

    def open(self, **kwargs) -> lgr.Receiver:
        kwargs.setdefault("fixed_time", NOW)
        if self.policy:
            kwargs.setdefault("privacy_policy", self.policy)
        return lgr.Receiver(self.db, **kwargs)

    def assertRaisesCode(self, code: str, status: int, pointer: str,
                         http_status: int, fn, *args, **kwargs
                         ) -> lgr.ReceiverError:
        with self.assertRaises(lgr.ReceiverError) as ctx:
            fn(*args, **kwargs)
        err = ctx.exception
        self.assertEqual((err.code, err.status, err.pointer, err.http_status),
                         (code, status, pointer, http_status), str(err))
        self.assertTrue(err.message)
        return err

    def ingest_all(self, auth: Optional[str] = None) -> None:
        for name, body in FIXTURES:
            with self.subTest(fixture=name):
                self.receiver.ingest(auth or self.auth, body)

    def assertStatsMatch(self, stats: dict, copies: int = 1) -> None:
        want = expected_stats(copies)
        self.assertEqual(stats["customer_id"], self.customer.customer_id)
        self.assertEqual(stats["window_days"], 30)
        self.assertEqual(stats["totals"], want["totals"])
        self.assertEqual({o["outcome"]: o["count"] for o in stats["outcomes"]},
                         want["outcomes"])
        self.assertEqual({w["workload_id"]: w["count"]
                          for w in stats["workloads"]}, want["workloads"])


class LibraryTest(unittest.TestCase):
    def test_version_matches_header(self) -> None:
        self.assertEqual(lgr.library_version(), "0.2.0")
        self.assertEqual(lgr.load_library().lgr_version_number(), 200)

    def test_every_header_function_is_declared(self) -> None:
        header = os.path.join(HERE, "..", "..", "include", "loopgain",
                              "receiver.h")
        with open(header) as f:
            text = f.read()
        import re
        declared = set(re.findall(r"\b(lgr_[a-z_0-9]+)\(", text))
        declared -= {"lgr_log_fn"}
        self.assertEqual(declared - set(lgr._SIGNATURES), set())

    def test_bad_library_path_raises_oserror(self) -> None:
        with self.assertRaises(OSError):
            lgr.load_library(os.path.join(HERE, "no-such-library.so"))


class RoundTripTest(ReceiverCase):
    def test_ingest_all_fixtures_and_read_stats(self) -> None:
        with_trajectory = 0
        for name, body in FIXTURES:
            result = self.receiver.ingest(self.auth, body)
            self.assertEqual(result.customer_id, self.customer.customer_id)
            if b'"per_iteration"' in body:
                with_trajectory += 1
                self.assertEqual(result.redacted, ["/per_iteration"], name)
            else:
                self.assertEqual(result.redacted, [], name)
            for pointer in result.ignored:
                self.assertTrue(pointer.startswith("/"), pointer)
        self.assertEqual(with_trajectory, 36)
        self.assertStatsMatch(self.receiver.stats(self.customer.customer_id))

    def test_events_and_profiles(self) -> None:
        self.ingest_all()
        cid = self.customer.customer_id
        events = self.receiver.events(cid)
        self.assertEqual(events["customer_id"], cid)
        self.assertEqual(len(events["events"]), len(FIXTURES))
        rollbacks = self.receiver.events(cid, rollbacks_only=True)
        self.assertEqual(len(rollbacks["events"]),
                         expected_stats()["totals"]["rollbacks"])
        every = self.receiver.profiles(cid)
        self.assertIsNone(every["workload_id"])
        converged = [e for e in every["events"]
                     if e["workload_id"] == "wl-converged"]
        self.assertTrue(converged)
        one = self.receiver.profiles(cid, "wl-converged", 48)
        self.assertEqual(one["workload_id"], "wl-converged")
        self.assertEqual(len(one["events"]), len(converged))

    def test_authenticate_and_customers(self) -> None:
        cid = self.customer.customer_id
        self.assertRegex(cid, r"^cust_[0-9a-f]{16}$")
        self.assertRegex(self.customer.token, r"^lgk_[A-Za-z0-9_-]{32}$")
        self.assertEqual(self.receiver.authenticate(self.auth), cid)
        self.assertEqual(
            self.receiver.authenticate("bearer " + self.customer.token), cid)
        self.ingest_all()
        [row] = self.receiver.list_customers()
        self.assertEqual(row["customer_id"], cid)
        self.assertEqual(row["name"], "Acme")
        self.assertEqual(row["email"], "ops@acme.test")
        self.assertEqual(row["active_tokens"], 1)
        self.assertEqual(row["event_count"], len(FIXTURES))

    def test_rotate_revoke_delete(self) -> None:
        cid = self.customer.customer_id
        new_token = self.receiver.rotate_token(cid, 0)
        self.assertNotEqual(new_token, self.customer.token)
        self.assertEqual(self.receiver.authenticate("Bearer " + new_token),
                         cid)
        self.assertRaisesCode("unauthorized", lgr.LGR_ERR_UNAUTHORIZED, "",
                              401, self.receiver.authenticate, self.auth)
        self.receiver.revoke_customer(cid)
        self.assertRaisesCode("unauthorized", lgr.LGR_ERR_UNAUTHORIZED, "",
                              401, self.receiver.ingest,
                              "Bearer " + new_token, FIXTURES[0][1])
        self.receiver.delete_customer(cid)
        self.assertEqual(self.receiver.list_customers(), [])
        for call in (self.receiver.delete_customer,
                     self.receiver.rotate_token,
                     self.receiver.revoke_customer):
            with self.subTest(call=call.__name__):
                self.assertRaisesCode("customer_not_found",
                                      lgr.LGR_ERR_NOT_FOUND, "", 404, call,
                                      cid)

    def test_events_survive_reopen(self) -> None:
        self.ingest_all()
        self.receiver.close()
        with self.open() as again:
            self.assertStatsMatch(again.stats(self.customer.customer_id))

    def test_customers_do_not_see_each_other(self) -> None:
        other = self.receiver.create_customer("Other")
        self.receiver.ingest(self.auth, FIXTURES[0][1])
        stats = self.receiver.stats(other.customer_id)
        self.assertEqual(stats["totals"]["event_count"], 0)
        self.assertEqual(self.receiver.events(other.customer_id)["events"],
                         [])


class ErrorTest(ReceiverCase):
    def test_invalid_json(self) -> None:
        self.assertRaisesCode("invalid_json", lgr.LGR_ERR_INVALID_PAYLOAD,
                              "", 400, self.receiver.ingest, self.auth,
                              b'{"schema_version": 4,')

    def test_unsupported_schema_version(self) -> None:
        body = json.loads(FIXTURES[0][1])
        body["schema_version"] = 9
        self.assertRaisesCode("unsupported_schema_version",
                              lgr.LGR_ERR_INVALID_PAYLOAD, "/schema_version",
                              422, self.receiver.ingest, self.auth,
                              json.dumps(body))

    def test_invalid_field_has_pointer(self) -> None:
        body = json.loads(FIXTURES[-1][1])
        body["loop"]["iterations_used"] = "five"
        self.assertRaisesCode("invalid_payload", lgr.LGR_ERR_INVALID_PAYLOAD,
                              "/loop/iterations_used", 400,
                              self.receiver.ingest, self.auth,
                              json.dumps(body))

    def test_content_field_is_a_privacy_violation(self) -> None:
        body = json.loads(FIXTURES[-1][1])
        body["prompt"] = "tell me a secret"
        self.assertRaisesCode("privacy_violation",
                              lgr.LGR_ERR_INVALID_PAYLOAD, "/prompt", 422,
                              self.receiver.ingest, self.auth,
                              json.dumps(body))

    def test_bad_tokens(self) -> None:
        for auth in (None, "", "Bearer", "Bearer lgk_" + "A" * 32,
                     "Basic " + self.customer.token, self.customer.token):
            with self.subTest(auth=auth):
                self.assertRaisesCode("unauthorized",
                                      lgr.LGR_ERR_UNAUTHORIZED, "", 401,
                                      self.receiver.ingest, auth,
                                      FIXTURES[0][1])

    def test_body_over_cap(self) -> None:
        with self.open(max_body_bytes=1024) as small:
            token = small.create_customer("Small").token
            body = json.loads(FIXTURES[-1][1])
            body["team"] = "x" * 2000
            self.assertRaisesCode("payload_too_large",
                                  lgr.LGR_ERR_INVALID_PAYLOAD, "", 413,
                                  small.ingest, "Bearer " + token,
                                  json.dumps(body))

    def test_invalid_query(self) -> None:
        self.assertRaisesCode("invalid_query", lgr.LGR_ERR_INVALID_QUERY,
                              "since_hours", 400, self.receiver.profiles,
                              self.customer.customer_id, None, 9000)

    def test_invalid_arguments(self) -> None:
        self.assertRaisesCode("invalid_argument",
                              lgr.LGR_ERR_INVALID_ARGUMENT, "name", 400,
                              self.receiver.create_customer, "")
        self.assertRaisesCode("invalid_argument",
                              lgr.LGR_ERR_INVALID_ARGUMENT, "", 400,
                              self.receiver.create_customer, "bad\udcff")
        # NUL cannot cross as C text: refused, not truncated.
        self.assertRaisesCode("invalid_argument",
                              lgr.LGR_ERR_INVALID_ARGUMENT, "", 400,
                              self.receiver.create_customer, "nul\0inside")

    def test_integers_are_checked_not_wrapped(self) -> None:
        # ctypes would turn 2**64 + 1 into 1; the module refuses instead.
        customer = self.receiver.create_customer("ints")
        for call, args in (
                (self.receiver.rotate_token, (customer.customer_id, 2**64)),
                (self.receiver.rotate_token, (customer.customer_id, -1)),
                (self.receiver.profiles, (customer.customer_id, None,
                                          2**32 + 1))):
            with self.subTest(args=args):
                self.assertRaisesCode("invalid_argument",
                                      lgr.LGR_ERR_INVALID_ARGUMENT, "", 400,
                                      call, *args)
        for bad in ("5", 5.9, True):
            with self.subTest(since_hours=bad):
                with self.assertRaises(TypeError):
                    self.receiver.profiles(customer.customer_id, None, bad)
        with self.assertRaises(TypeError):
            self.receiver.ingest("Bearer " + customer.token, 5)

    def test_invalid_options(self) -> None:
        for kwargs in ({"privacy_policy": "everything"},
                       {"max_body_bytes": 0},
                       {"max_body_bytes": 2**64 + 5},
                       {"fixed_time": 2**64 + 5},
                       {"cors_origins": ["*"]},
                       {"cors_origins": ["https://a.example/"]},
                       {"max_body_bytes": 17 * 1024 * 1024}):
            with self.subTest(**kwargs):
                with self.assertRaises(lgr.ReceiverError) as ctx:
                    self.open(**kwargs)
                self.assertEqual(ctx.exception.status,
                                 lgr.LGR_ERR_INVALID_ARGUMENT)

    def test_missing_directory_is_a_storage_error(self) -> None:
        with self.assertRaises(lgr.ReceiverError) as ctx:
            lgr.Receiver(os.path.join(self.dir, "absent", "x.db"))
        self.assertEqual(ctx.exception.status, lgr.LGR_ERR_STORAGE)
        self.assertEqual(ctx.exception.code, "storage_error")

    def test_strict_policy_refuses_trajectories(self) -> None:
        body = next(b for _, b in FIXTURES if b'"per_iteration"' in b)
        with self.open(privacy_policy="strict") as strict:
            token = strict.create_customer("Strict").token
            with self.assertRaises(lgr.ReceiverError) as ctx:
                strict.ingest("Bearer " + token, body)
        self.assertEqual(ctx.exception.code, "privacy_violation")
        self.assertEqual(ctx.exception.pointer, "/per_iteration")

    def test_use_after_close_raises_closed(self) -> None:
        self.receiver.close()
        self.receiver.close()  # idempotent
        cid = self.customer.customer_id
        calls = [
            lambda: self.receiver.ingest(self.auth, FIXTURES[0][1]),
            lambda: self.receiver.stats(cid),
            lambda: self.receiver.profiles(cid),
            lambda: self.receiver.events(cid),
            lambda: self.receiver.authenticate(self.auth),
            lambda: self.receiver.create_customer("Late"),
            lambda: self.receiver.rotate_token(cid),
            lambda: self.receiver.revoke_customer(cid),
            lambda: self.receiver.delete_customer(cid),
            self.receiver.list_customers,
        ]
        for i, call in enumerate(calls):
            with self.subTest(call=i):
                with self.assertRaises(lgr.ReceiverError) as ctx:
                    call()
                self.assertEqual(ctx.exception.code, "closed")
                self.assertEqual(ctx.exception.status, lgr.LGR_ERR_CLOSED)
                self.assertEqual(ctx.exception.http_status, 503)
        status, headers, body = self.receiver.handle_request("GET",
                                                             "/health")
        self.assertEqual(status, 503)
        self.assertEqual(json.loads(body)["error"], "closed")


class ConcurrencyTest(ReceiverCase):
    THREADS = 8

    def test_concurrent_ingest_from_threads(self) -> None:
        errors: List[BaseException] = []
        start = threading.Barrier(self.THREADS)

        def worker() -> None:
            try:
                start.wait()
                for _, body in FIXTURES:
                    self.receiver.ingest(self.auth, body)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker)
                   for _ in range(self.THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertStatsMatch(self.receiver.stats(self.customer.customer_id),
                              copies=self.THREADS)


class HandleRequestTest(ReceiverCase):
    def test_routes(self) -> None:
        r = self.receiver
        status, headers, body = r.handle_request("GET", "/health")
        self.assertEqual(status, 200)
        self.assertEqual(headers[0], ("Content-Type", "application/json"))
        auth = {"authorization": self.auth,
                "Content-Type": "application/json"}
        for _, payload in FIXTURES:
            status, _, body = r.handle_request(
                "POST", "/v1/aggregate", None,
                dict(auth, **{"Content-Length": str(len(payload))}), payload)
            self.assertEqual(status, 202, body)
        status, _, body = r.handle_request("GET", "/v1/stats", None, auth)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body),
                         r.stats(self.customer.customer_id))
        status, _, body = r.handle_request("GET", "/v1/events",
                                           "rollbacks_only=true", auth)
        self.assertEqual(status, 200, body)
        self.assertEqual(len(json.loads(body)["events"]),
                         expected_stats()["totals"]["rollbacks"])
        self.assertEqual(r.handle_request("GET", "/v1/stats")[0], 401)
        self.assertEqual(r.handle_request("GET", "/nope", None, auth)[0],
                         404)
        self.assertEqual(r.handle_request("DELETE", "/v1/stats", None,
                                          auth)[0], 405)
        status, _, body = r.handle_request("GET", "/v1/profiles",
                                           "since_hours=0", auth)
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["error"], "invalid_query")


# ---------------------------------------------------------------------------
# HTTP through serve.py
# ---------------------------------------------------------------------------

def http_call(port: int, method: str, path: str, body: Optional[bytes] = None,
              headers: Optional[dict] = None
              ) -> Tuple[int, Dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, \
            resp.read()
    finally:
        conn.close()


class ServeThreadTest(ReceiverCase):
    """serve.py's server in a thread, sharing the test's receiver."""

    CAP = 64 * 1024

    def setUp(self) -> None:
        super().setUp()
        self.logs = io.StringIO()
        serve.log_stream = self.logs
        self.addCleanup(setattr, serve, "log_stream", None)
        self.server = serve.make_server(self.receiver, "127.0.0.1", 0,
                                        max_body_bytes=self.CAP)
        thread = threading.Thread(target=self.server.serve_forever,
                                  kwargs={"poll_interval": 0.05})
        thread.start()

        def stop() -> None:
            self.server.shutdown()
            self.server.server_close()
            thread.join()
        self.addCleanup(stop)
        self.port = self.server.server_address[1]

    def post(self, body: bytes, auth: Optional[str] = None
             ) -> Tuple[int, Dict[str, str], bytes]:
        return http_call(self.port, "POST", "/v1/aggregate", body,
                         {"Authorization": auth or self.auth,
                          "Content-Type": "application/json"})

    def test_http_round_trip(self) -> None:
        for name, body in FIXTURES:
            status, headers, answer = self.post(body)
            self.assertEqual(status, 202, (name, answer))
            self.assertEqual(headers["content-type"], "application/json")
        status, headers, answer = http_call(
            self.port, "GET", "/v1/stats", headers={"Authorization":
                                                    self.auth})
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-length"], str(len(answer)))
        stats = json.loads(answer)
        self.assertStatsMatch(stats)
        self.assertEqual(stats, self.receiver.stats(
            self.customer.customer_id))
        status, _, answer = http_call(
            self.port, "GET", "/v1/profiles?workload_id=wl-stalled",
            headers={"Authorization": self.auth})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(answer)["workload_id"], "wl-stalled")

        # The access line is written after the answer: wait for it.
        deadline = time.monotonic() + 5
        while ('"/v1/profiles"' not in self.logs.getvalue()
               and time.monotonic() < deadline):
            time.sleep(0.01)
        lines = [json.loads(line) for line in
                 self.logs.getvalue().splitlines()]
        last = lines[-1]
        self.assertEqual((last["event"], last["method"], last["path"],
                          last["query_params"], last["status"],
                          last["customer_id"]),
                         ("request", "GET", "/v1/profiles", ["workload_id"],
                          200, self.customer.customer_id))
        self.assertNotIn("lgk_", self.logs.getvalue())
        self.assertNotIn("wl-stalled", self.logs.getvalue())

    def test_http_errors_are_the_library_answers(self) -> None:
        status, _, body = self.post(b"{nope")
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["error"], "invalid_json")
        status, _, body = self.post(FIXTURES[0][1], "Bearer lgk_wrong")
        self.assertEqual(status, 401)
        self.assertEqual(json.loads(body)["error"], "unauthorized")
        status, _, body = http_call(self.port, "GET", "/v1/nothing")
        self.assertEqual(status, 404)
        self.assertEqual(set(json.loads(body)), {"error", "path", "message"})
        status, _, body = http_call(self.port, "PATCH", "/v1/aggregate")
        self.assertEqual(status, 405)
        status, _, _ = http_call(self.port, "GET", "/health")
        self.assertEqual(status, 200)

    def raw(self, head: str, body: bytes = b"", method: str = "POST"
            ) -> Tuple[int, Dict[str, str], bytes]:
        """Sends a hand-written request; returns the first response."""
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=10) as sock:
            sock.sendall(head.replace("\n", "\r\n").encode() + body)
            resp = http.client.HTTPResponse(sock, method=method)
            resp.begin()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in
                                 resp.getheaders()}, data

    def test_declared_length_over_cap_is_refused_unread(self) -> None:
        # The body never arrives: the answer must not wait for it.
        status, headers, body = self.raw(
            "POST /v1/aggregate HTTP/1.1\nHost: t\nAuthorization: "
            f"{self.auth}\nContent-Type: application/json\n"
            "Content-Length: 1000000000\n\n", b"{")
        self.assertEqual(status, 413)
        self.assertEqual(json.loads(body)["error"], "payload_too_large")
        self.assertEqual(headers["connection"], "close")
        self.assertEqual(headers["x-content-type-options"], "nosniff")
        # A client that sends the whole oversized body still gets the
        # answer (the host drains instead of resetting the connection).
        status, _, body = self.raw(
            "POST /v1/aggregate HTTP/1.1\nHost: t\nAuthorization: "
            f"{self.auth}\nContent-Length: {4 * self.CAP}\n\n",
            b" " * (4 * self.CAP))
        self.assertEqual(status, 413, body)

    def test_expect_continue_over_cap(self) -> None:
        status, _, body = self.raw(
            "POST /v1/aggregate HTTP/1.1\nHost: t\nAuthorization: "
            f"{self.auth}\nExpect: 100-continue\n"
            f"Content-Length: {self.CAP + 1}\n\n")
        self.assertEqual(status, 413, body)

    def test_expect_continue_with_refused_token(self) -> None:
        # The answer comes without 100 Continue and without the body (which
        # is never sent here; waiting for it would time the test out).
        status, headers, body = self.raw(
            "POST /v1/aggregate HTTP/1.1\nHost: t\nAuthorization: Bearer "
            "lgk_" + "A" * 32 + "\nExpect: 100-continue\n"
            "Content-Type: application/json\nContent-Length: 100\n\n")
        self.assertEqual(status, 401, body)
        self.assertEqual(json.loads(body)["error"], "unauthorized")
        self.assertEqual(headers["connection"], "close")

    def test_framing_refusals(self) -> None:
        cases = [
            ("both lengths", "POST /v1/aggregate HTTP/1.1\nHost: t\n"
             "Content-Length: 2\nTransfer-Encoding: chunked\n\n"),
            ("other coding", "POST /v1/aggregate HTTP/1.1\nHost: t\n"
             "Transfer-Encoding: gzip\n\n"),
            ("duplicate auth", "GET /v1/stats HTTP/1.1\nHost: t\n"
             f"Authorization: {self.auth}\nAuthorization: {self.auth}\n\n"),
            ("bad length", "POST /v1/aggregate HTTP/1.1\nHost: t\n"
             "Content-Length: 12abc\n\n"),
        ]
        for name, head in cases:
            with self.subTest(name):
                status, _, body = self.raw(head)
                self.assertEqual(status, 400, body)
                self.assertEqual(json.loads(body)["error"], "bad_request")

    def test_malformed_requests_get_json(self) -> None:
        status, headers, body = self.raw("GARBAGE\n\n")
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["error"], "bad_request")
        many = "".join(f"X-{i}: y\n" for i in range(150))
        status, _, body = self.raw(f"GET /health HTTP/1.1\nHost: t\n{many}\n",
                                   method="GET")
        self.assertEqual(status, 431)
        self.assertEqual(json.loads(body)["error"], "headers_too_large")

    def test_preflight_and_head(self) -> None:
        status, headers, body = http_call(
            self.port, "OPTIONS", "/health",
            headers={"Origin": "https://dash.example",
                     "Access-Control-Request-Method": "GET"})
        self.assertEqual((status, body), (204, b""))
        self.assertEqual(headers["access-control-allow-origin"], "*")
        self.assertNotIn("content-length", headers)
        # HEAD is answered as GET by the route table; the host sends the
        # headers, GET's Content-Length among them, without the body.
        status, headers, _ = http_call(self.port, "PUT", "/health")
        self.assertEqual(status, 405)
        self.assertEqual(headers["allow"], "GET, HEAD, OPTIONS")
        status, _, full = http_call(self.port, "GET", "/health")
        self.assertEqual(status, 200)
        status, headers, body = http_call(self.port, "HEAD", "/health")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(headers["content-length"], str(len(full)))

    def test_chunked_body(self) -> None:
        body = FIXTURES[-1][1]
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", "/v1/aggregate",
                         body=iter([body[:100], body[100:]]),
                         headers={"Authorization": self.auth,
                                  "Content-Type": "application/json"},
                         encode_chunked=True)
            resp = conn.getresponse()
            self.assertEqual(resp.status, 202, resp.read())
        finally:
            conn.close()
        big = iter([b" " * 40000, b" " * 40000, body])
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", "/v1/aggregate", body=big,
                         headers={"Authorization": self.auth},
                         encode_chunked=True)
            self.assertEqual(conn.getresponse().status, 413)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before the whole body is sent
        finally:
            conn.close()

    def test_keep_alive_serves_several_requests(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for _ in range(3):
                conn.request("GET", "/health")
                resp = conn.getresponse()
                resp.read()
                self.assertEqual(resp.status, 200)
        finally:
            conn.close()


class ServeProcessTest(unittest.TestCase):
    """serve.py as a program: flags, startup line, clean SIGTERM stop."""

    def test_serve_subprocess(self) -> None:
        tmp = tempfile.mkdtemp(prefix="lgr-py-serve-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        db = os.path.join(tmp, "t.db")
        with lgr.Receiver(db, fixed_time=NOW) as r:
            customer = r.create_customer("Proc")
        auth = {"Authorization": "Bearer " + customer.token}

        proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "serve.py"), "--db", db,
             "--listen", "127.0.0.1:0", "--now", str(NOW),
             "--privacy-policy", "trajectories"],
            stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        port = None
        lines = []
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            record = json.loads(line)
            if record["event"] == "listening":
                port = record["port"]
        self.assertIsNotNone(port, "".join(lines))
        drain = threading.Thread(target=lambda: lines.extend(proc.stderr))
        drain.start()

        for _, body in FIXTURES:
            status, _, answer = http_call(port, "POST", "/v1/aggregate", body,
                                          auth)
            self.assertEqual(status, 202, answer)
        status, _, answer = http_call(port, "GET", "/v1/stats", None, auth)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(answer)["totals"],
                         expected_stats()["totals"])

        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0, "".join(lines))
        drain.join()
        proc.stderr.close()
        self.assertIn('"event":"stopped"', "".join(lines))
        with lgr.Receiver(db, fixed_time=NOW) as r:
            self.assertEqual(r.stats(customer.customer_id)["totals"],
                             expected_stats()["totals"])


class EmbedExampleTest(unittest.TestCase):
    """The README's Python embedding example runs as shown."""

    def test_embed_example(self) -> None:
        tmp = tempfile.mkdtemp(prefix="lgr-py-embed-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        # The example runs on the system clock: stamp the payload with the
        # current hour so that it is inside the stats window.
        payload = json.loads(FIXTURES[-1][1])
        payload["timestamp_hour"] = time.strftime(
            "%Y-%m-%dT%H:00:00+00:00", time.gmtime())
        path = os.path.join(tmp, "payload.json")
        with open(path, "w") as f:
            json.dump(payload, f)
        out = subprocess.run(
            [sys.executable, os.path.join(HERE, "embed_example.py"), path],
            cwd=tmp, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        totals = json.loads(out.stdout.strip().splitlines()[-1])
        self.assertEqual(totals["event_count"], 1)
        self.assertEqual(totals["total_iterations"],
                         payload["loop"]["iterations_used"])


if __name__ == "__main__":
    unittest.main()
