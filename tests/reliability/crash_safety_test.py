#!/usr/bin/env python3
"""Crash safety (issue #7): SIGKILL during a concurrent ingest burst.

Two halves, each run over several kill/restart rounds on one database:

  capi    crash_ingest (a C host of the library) ingests from many threads
          and prints one line per acknowledged event; it is killed mid-burst
          and restarted.
  server  loopgain-receiver-server takes concurrent POST /v1/aggregate from
          16 keep-alive connections; it is killed mid-burst and restarted.

After the rounds, every event acknowledged before a kill (LGR_OK, or 202)
must be stored exactly once (stored_events), for the right customer; no event is
stored twice; the hourly rollups agree with the rows; the library reopens
the file and its stats agree; PRAGMA integrity_check is "ok".

    crash_safety_test.py --crash-ingest BIN --fixture FILE
                         [--server BIN --admin BIN] [--rounds N]
                         [--only capi|server] [--seed N]

The server half is skipped, with a message, only when --server names no
existing file. Python 3 standard library only. Bounded: a watchdog ends the
run after 150 s, and every process started here is killed on the way out.
"""

import argparse
import http.client
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir))
from harness import (TestFailure, expect, kill_all,  # noqa: E402
                     track)

# 2026-12-01T00:00:00Z: the fixture's hour (2026-11-30T14:00Z) is in range.
NOW = 1796083200
WATCHDOG_SECONDS = 150
STARTUP_TIMEOUT = 15.0
def step(text):
    print(f"-- {text}", flush=True)


def start(argv, **kwargs):
    return track(subprocess.Popen(argv, **kwargs))


def with_workload(fixture, workload):
    record = json.loads(fixture)
    record["workload_id"] = workload
    return json.dumps(record)


# ---- Checking a database ---------------------------------------------------

def check_database(db, acked, customers):
    """acked: {workload marker: customer id} of every acknowledged event."""
    conn = sqlite3.connect(db)
    try:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        expect(integrity == ["ok"], f"integrity_check: {integrity[:5]}")

        stored = {}
        for workload, customer, n in conn.execute(
                "SELECT workload_id, customer_id, COUNT(*) FROM stored_events"
                " GROUP BY workload_id, customer_id"):
            expect(n == 1, f"{workload} stored {n} times")
            expect(workload not in stored,
                   f"{workload} stored for two customers")
            stored[workload] = customer

        missing = [w for w in acked if w not in stored]
        expect(not missing, f"{len(missing)} acknowledged events lost, "
                            f"e.g. {missing[:5]}")
        wrong = [w for w, c in acked.items() if stored[w] != c]
        expect(not wrong, f"{len(wrong)} events under the wrong customer")

        # The rollups are written in the same transaction as the rows.
        rows = dict(conn.execute(
            "SELECT customer_id, COUNT(*) FROM stored_events"
            " GROUP BY customer_id"))
        rollups = dict(conn.execute(
            "SELECT customer_id, SUM(events) FROM hourly_outcomes"
            " GROUP BY customer_id"))
        expect(rows == rollups, f"rollups {rollups} != rows {rows}")
        for customer in customers:
            rows.setdefault(customer, 0)
        return rows, len(stored)
    finally:
        conn.close()


def stats_count(stats_json):
    return json.loads(stats_json)["totals"]["event_count"]


# ---- The C API half --------------------------------------------------------

def read_lines(stream, sink):
    for raw in stream:
        sink.append(raw.decode("utf-8", "replace").rstrip("\n"))


def capi_round(binary, db, fixture, prefix, acked, customers):
    proc = start([binary, "ingest", db, fixture, "12", "3", prefix],
                 stdout=subprocess.PIPE)
    lines = []
    reader = threading.Thread(target=read_lines, args=(proc.stdout, lines),
                              daemon=True)
    reader.start()

    # Kill after a random number of acknowledgements, mid-burst.
    target = random.randint(150, 600)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(1 for line in lines[:] if line.startswith("ack ")) >= target:
            break
        time.sleep(0.005)
    expect(proc.poll() is None,
           f"crash_ingest exited early with {proc.returncode}: {lines[-3:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(10)
    expect(not reader.is_alive(), "the pipe did not close after the kill")

    acks = 0
    for line in lines:
        fields = line.split()
        if fields[0] == "customer":
            customers.add(fields[2])
        elif fields[0] == "ack":
            expect(fields[1] not in acked, f"{fields[1]} acknowledged twice")
            acked[fields[1]] = fields[2]
            acks += 1
        elif fields[0] == "nack":
            raise TestFailure(f"an ingest was refused: {line}")
    expect(acks >= target, f"only {acks} acknowledgements before the kill")
    return acks


def run_capi(args, tmp):
    db = os.path.join(tmp, "capi.db")
    acked, customers = {}, set()
    for round_no in range(args.rounds):
        acks = capi_round(args.crash_ingest, db, args.fixture,
                          f"c{round_no}", acked, customers)
        step(f"capi round {round_no}: killed after {acks} acknowledged")

    # The restart: the library reopens the file; its stats see every row.
    out = subprocess.run([args.crash_ingest, "verify", db, *sorted(customers)],
                         capture_output=True, timeout=30)
    expect(out.returncode == 0, f"verify failed: {out.stderr!r}")
    api_counts = {}
    for line in out.stdout.decode().splitlines():
        _, customer, stats = line.split(" ", 2)
        api_counts[customer] = stats_count(stats)

    rows, stored = check_database(db, acked, customers)
    expect(api_counts == rows, f"stats {api_counts} != rows {rows}")
    step(f"capi: {len(acked)} acknowledged, {stored} stored "
         f"(in flight at a kill: {stored - len(acked)}), integrity ok")


# ---- The server half -------------------------------------------------------

class Server:
    def __init__(self, binary, db):
        self.proc = start(
            [binary, "--db", db, "--listen", "127.0.0.1:0", "--now", str(NOW),
             "--quiet", "--threads", "16"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.port = None
        self.log = []
        ready = threading.Event()

        def pump():
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.log.append(line)
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == "listening":
                    self.port = record["port"]
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        ready.wait(STARTUP_TIMEOUT)
        expect(self.port is not None,
               f"the server did not start: {self.log[-5:]}")


def admin_token(binary, db, name):
    out = subprocess.run([binary, "--db", db, "issue-token", "--name", name,
                          "--json"], capture_output=True, timeout=30)
    expect(out.returncode == 0, f"issue-token: {out.stderr!r}")
    record = json.loads(out.stdout)
    return record["customer_id"], record["token"]


def poster(port, fixture, prefix, tokens, acked, lock, stop, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = 0
    try:
        while not stop.is_set():
            customer, token = tokens[n % len(tokens)]
            workload = f"{prefix}-{n}"
            n += 1
            body = with_workload(fixture, workload)
            conn.request("POST", "/v1/aggregate", body=body, headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status == 202:
                with lock:
                    acked[workload] = customer
            elif response.status != 503:
                errors.append(f"{workload}: HTTP {response.status}")
                return
    except (OSError, http.client.HTTPException):
        pass  # the kill
    finally:
        conn.close()


def server_round(args, db, prefix, tokens, acked):
    server = Server(args.server, db)
    lock, stop, errors = threading.Lock(), threading.Event(), []
    round_acked = {}
    threads = [threading.Thread(
        target=poster, args=(server.port, args.fixture_text, f"{prefix}-{i}",
                             tokens, round_acked, lock, stop, errors),
        daemon=True) for i in range(16)]
    for t in threads:
        t.start()

    target = random.randint(200, 800)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(round_acked) < target:
        expect(server.proc.poll() is None, f"server died: {server.log[-5:]}")
        time.sleep(0.005)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    stop.set()
    for t in threads:
        t.join(15)
    expect(not errors, f"unexpected responses: {errors[:5]}")
    expect(len(round_acked) >= target,
           f"only {len(round_acked)} 202s before the kill")
    acked.update(round_acked)
    return len(round_acked)


def http_stats_count(port, token):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/v1/stats",
                     headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        body = response.read()
        expect(response.status == 200, f"/v1/stats: {response.status}")
        return stats_count(body)
    finally:
        conn.close()


def run_server(args, tmp):
    db = os.path.join(tmp, "server.db")
    tokens = [admin_token(args.admin, db, f"crash-{i}") for i in range(3)]
    acked = {}
    for round_no in range(args.rounds):
        acks = server_round(args, db, f"s{round_no}", tokens, acked)
        step(f"server round {round_no}: killed after {acks} 202s")

    # The restart: the server reopens the file and answers from it.
    server = Server(args.server, db)
    api_counts = {c: http_stats_count(server.port, t) for c, t in tokens}
    server.proc.send_signal(signal.SIGTERM)
    expect(server.proc.wait(30) == 0, f"clean stop: {server.log[-5:]}")
    wal = db + "-wal"
    expect(not os.path.exists(wal) or os.path.getsize(wal) == 0,
           "the WAL was not checkpointed at a clean stop")

    rows, stored = check_database(db, acked, {c for c, _ in tokens})
    expect(api_counts == rows, f"/v1/stats {api_counts} != rows {rows}")
    step(f"server: {len(acked)} acknowledged, {stored} stored "
         f"(in flight at a kill: {stored - len(acked)}), integrity ok")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--crash-ingest", required=True)
    parser.add_argument("--fixture", required=True)
    parser.add_argument("--server")
    parser.add_argument("--admin")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["capi", "server"])
    parser.add_argument("--seed", type=int,
                        help="for the kill points (default: from the clock)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else time.time_ns() % 2**32
    random.seed(seed)
    step(f"seed {seed} (rerun with --seed {seed})")
    with open(args.fixture, encoding="utf-8") as f:
        args.fixture_text = f.read()

    signal.signal(signal.SIGALRM, lambda *_: (kill_all(), os._exit(3)))
    signal.alarm(WATCHDOG_SECONDS)
    try:
        with tempfile.TemporaryDirectory(prefix="lgr-crash-") as tmp:
            if args.only in (None, "capi"):
                run_capi(args, tmp)
            if args.only in (None, "server"):
                if args.server and os.path.isfile(args.server):
                    run_server(args, tmp)
                else:
                    print("SKIPPED the server half: no server binary at "
                          f"{args.server!r}", flush=True)
    except TestFailure as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        return 1
    except Exception:  # pylint: disable=broad-except
        traceback.print_exc()
        return 1
    finally:
        kill_all()
    print("crash_safety: ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
