#!/usr/bin/env python3
"""HTTP benchmark of loopgain-receiver-server (issue #7, targets 2-4).

Builds nothing: give it a build directory (RelWithDebInfo) that holds the
server and the shared library. It

  1. makes a template database with 1 + 1,000 customers (C API via ctypes);
  2. runs wrk (16 connections, the real client's v4 payload) against POST
     /v1/aggregate on an empty database, with one customer's token and with
     1,000 customers' tokens interleaved; server RSS is sampled meanwhile;
  3. runs the same against null_http_server (202 and nothing else) for the
     ratio: the ceiling of this machine, HTTP stack and wrk;
  4. prefills one customer to each row count of --rows (C API, server
     stopped), and at each measures the median latency of /v1/stats,
     /v1/events and /v1/profiles (wrk, one connection); at the largest it
     repeats the ingest runs, for the slowdown against the empty database.

    bench/http_bench.py --build build/release-bench            # ~3 minutes
    bench/http_bench.py --build DIR --rows 10000,100000,1000000  # the issue's

Prints a Markdown table (what bench/README.md holds). wrk comes from the
Debian package `wrk`; as root the script installs it when missing. Python 3
standard library only; every process started here is stopped on the way out.
"""

import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

# 2026-12-01T00:00:00Z: the fixture's hour (2026-11-30T14:00Z) is in range.
NOW = 1796083200
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
FIXTURE = os.path.join(SOURCE, "tests", "fixtures", "client-payloads",
                       "v4-0.6.4-converged.json")
POST_LUA = os.path.join(HERE, "http_bench_post.lua")
PROCESSES = []


def log(text):
    print(f"# {text}", file=sys.stderr, flush=True)


# ---- The library, for customers and prefill --------------------------------

class Library:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        L = self.lib
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        L.lgr_options_create.restype = vp
        L.lgr_options_free.argtypes = [vp]
        L.lgr_options_set_db_path.argtypes = [vp, cp, vp]
        L.lgr_options_set_fixed_time.argtypes = [vp, ctypes.c_int64, vp]
        L.lgr_receiver_open.argtypes = [vp, ctypes.POINTER(vp), vp]
        L.lgr_receiver_close.argtypes = [vp, vp]
        L.lgr_receiver_free.argtypes = [vp]
        L.lgr_customer_create.argtypes = [
            vp, cp, cp, ctypes.POINTER(vp), ctypes.POINTER(vp), vp]
        L.lgr_string_free.argtypes = [vp]
        L.lgr_ingest.argtypes = [vp, cp, cp, ctypes.c_size_t, vp, vp]

    def open(self, db):
        L = self.lib
        options = L.lgr_options_create()
        L.lgr_options_set_db_path(options, db.encode(), None)
        L.lgr_options_set_fixed_time(options, NOW, None)
        receiver = ctypes.c_void_p()
        status = L.lgr_receiver_open(options, ctypes.byref(receiver), None)
        L.lgr_options_free(options)
        if status != 0:
            raise RuntimeError(f"lgr_receiver_open({db}) failed: {status}")
        return receiver

    def close(self, receiver):
        status = self.lib.lgr_receiver_close(receiver, None)
        self.lib.lgr_receiver_free(receiver)
        if status != 0:
            raise RuntimeError(f"lgr_receiver_close failed: {status}")

    def take(self, pointer):
        text = ctypes.cast(pointer, ctypes.c_char_p).value.decode()
        self.lib.lgr_string_free(pointer)
        return text

    def create_customer(self, receiver, name):
        cid, token = ctypes.c_void_p(), ctypes.c_void_p()
        status = self.lib.lgr_customer_create(
            receiver, name.encode(), None, ctypes.byref(cid),
            ctypes.byref(token), None)
        if status != 0:
            raise RuntimeError(f"lgr_customer_create failed: {status}")
        return self.take(cid), self.take(token)


def make_template(lib, db, customers):
    receiver = lib.open(db)
    single = lib.create_customer(receiver, "bench-single")
    multi = [lib.create_customer(receiver, f"bench-{i}")
             for i in range(customers)]
    lib.close(receiver)
    return single, multi


def prefill(lib, db, token, fixture, count, threads=64):
    """Ingests `count` events for one customer, 50 workloads, through
    lgr_ingest() from many threads (ctypes releases the GIL)."""
    record = json.loads(fixture)
    bodies = []
    for i in range(50):
        record["workload_id"] = f"wl-{i}"
        bodies.append(json.dumps(record).encode())
    auth = f"Bearer {token}".encode()
    receiver = lib.open(db)
    lock, failures = threading.Lock(), []
    remaining = [count]

    def work():
        n = 0
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                take = min(64, remaining[0])
                remaining[0] -= take
            for _ in range(take):
                body = bodies[n % 50]
                n += 1
                status = lib.lib.lgr_ingest(receiver, auth, body, len(body),
                                            None, None)
                if status != 0:
                    failures.append(status)
                    return

    started = time.monotonic()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    lib.close(receiver)
    if failures:
        raise RuntimeError(f"prefill: lgr_ingest failed with {failures[:3]}")
    return count / max(time.monotonic() - started, 1e-9)


# ---- Processes --------------------------------------------------------------

def stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_all():
    for proc in PROCESSES:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def cpu_seconds(pid):
    """User + system CPU time of `pid` so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    """loopgain-receiver-server on a free loopback port."""

    def __init__(self, binary, db, threads):
        self.proc = subprocess.Popen(
            [binary, "--db", db, "--listen", "127.0.0.1:0", "--now", str(NOW),
             "--quiet", "--threads", str(threads)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        PROCESSES.append(self.proc)
        self.port = None
        self.lines = []
        ready = threading.Event()

        def pump():
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.lines.append(line)
                if '"listening"' in line:
                    self.port = json.loads(line)["port"]
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        ready.wait(20)
        if self.port is None:
            stop(self.proc)
            raise RuntimeError("the server did not start: "
                               + "\n".join(self.lines[-5:]))


class NullServer:
    def __init__(self, binary, threads):
        self.proc = subprocess.Popen([binary, "--threads", str(threads)],
                                     stdout=subprocess.PIPE)
        PROCESSES.append(self.proc)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening "):
            stop(self.proc)
            raise RuntimeError(f"null_http_server did not start: {line!r}")
        self.port = int(line.split()[1])


def null_server_binary(build, tmp):
    built = os.path.join(build, "bench", "null_http_server")
    if os.path.isfile(built):
        return built
    # Not registered in bench/CMakeLists.txt yet: one file, compiled here.
    out = os.path.join(tmp, "null_http_server")
    cxx = os.environ.get("CXX", "c++")
    subprocess.run([cxx, "-std=c++20", "-O2", "-pthread",
                    os.path.join(HERE, "null_http_server.cpp"), "-o", out],
                   check=True)
    return out


# ---- wrk --------------------------------------------------------------------

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_latency(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * UNITS_MS[m.group(2)] if m else None


def run_wrk(url, seconds, connections, threads, script=None, headers=(),
            env=None, sample_pid=None):
    argv = ["wrk", "-t", str(threads), "-c", str(connections),
            "-d", f"{seconds}s", "--timeout", "5s", "--latency"]
    for h in headers:
        argv += ["-H", h]
    if script:
        argv += ["-s", script]
    argv.append(url)

    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.25):
            peak[0] = max(peak[0], rss_kib(sample_pid))

    sampler = None
    cpu_before = cpu_seconds(sample_pid) if sample_pid else 0.0
    if sample_pid:
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    out = subprocess.run(argv, capture_output=True, text=True,
                         env={**os.environ, **(env or {})},
                         timeout=seconds + 60)
    done.set()
    cpu_used = cpu_seconds(sample_pid) - cpu_before if sample_pid else 0.0
    if sampler:
        sampler.join()
    text = out.stdout
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr or text}")

    result = {"rps": 0.0, "requests": 0, "non_2xx": 0, "socket_errors": "",
              "p50_ms": None, "p99_ms": None, "peak_rss_kib": peak[0]}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", text):
        result["rps"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in", text):
        result["requests"] = int(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        result["non_2xx"] = int(m.group(1))
    if m := re.search(r"Socket errors: (.*)", text):
        result["socket_errors"] = m.group(1).strip()
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        if m := re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M):
            result[key] = parse_latency(m.group(1))
    result["cpu_us_per_request"] = (
        cpu_used * 1e6 / result["requests"] if result["requests"] else 0.0)
    return result


def ensure_wrk():
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    log("installing wrk")
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True,
                   stdout=subprocess.DEVNULL)


# ---- The runs ----------------------------------------------------------------

def ingest_runs(args, server, files, label, rows, which=("single", "multi")):
    url = f"http://127.0.0.1:{server.port}/v1/aggregate"
    names = {"single": "1 customer", "multi": f"{args.customers:,} customers"}
    out = []
    for key in which:
        who, tokens = names[key], files[key]
        r = run_wrk(url, args.seconds, args.connections, args.wrk_threads,
                    script=POST_LUA,
                    env={"LGR_BENCH_BODY": FIXTURE,
                         "LGR_BENCH_TOKENS": tokens},
                    sample_pid=server.proc.pid)
        r.update(scenario=f"ingest, {who}", db=label, rows=rows)
        log(f"{r['scenario']} on {label}: {r['rps']:.0f} req/s, "
            f"p99 {r['p99_ms']} ms, non-2xx {r['non_2xx']}, "
            f"peak RSS {r['peak_rss_kib'] / 1024:.1f} MiB, "
            f"{r['cpu_us_per_request']:.0f} us CPU per request")
        # A refused request costs the server almost nothing, so a run with
        # refusals measures them, not ingest (this hid a missing Host
        # header once).
        if r["non_2xx"]:
            raise RuntimeError(f"{r['scenario']} on {label}: "
                               f"{r['non_2xx']} non-2xx responses")
        out.append(r)
    return out


def read_runs(args, server, token, rows):
    result = {"rows": rows}
    for path in ("/v1/stats", "/v1/events", "/v1/profiles"):
        r = run_wrk(f"http://127.0.0.1:{server.port}{path}", args.read_seconds,
                    1, 1, headers=[f"Authorization: Bearer {token}"])
        if r["non_2xx"]:
            raise RuntimeError(f"{path}: {r['non_2xx']} non-2xx responses")
        result[path] = r["p50_ms"]
        log(f"{path} at {rows} rows: median {fmt_ms(r['p50_ms'])} ms")
    return result


def fmt_ms(v):
    return "n/a" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}")


def report(args, ingest, null_run, reads, machine):
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {machine}; "
             f"wrk -t{args.wrk_threads} -c{args.connections} "
             f"-d{args.seconds}s, server --threads {args.server_threads}; "
             f"load average before the run {args.load_before}.",
             "",
             "| ingest (POST /v1/aggregate, v4 payload) | database | req/s |"
             " p99 ms | vs null server | non-2xx | server peak RSS |"
             " server CPU per request |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in ingest:
        lines.append(
            f"| {r['scenario']} | {r['db']} | {r['rps']:,.0f} | "
            f"{fmt_ms(r['p99_ms'])} | {r['rps'] / null_run['rps']:.1%} | "
            f"{r['non_2xx']} | {r['peak_rss_kib'] / 1024:.1f} MiB | "
            f"{r['cpu_us_per_request']:.0f} us |")
    lines.append(f"| null_http_server (202, nothing else) | - | "
                 f"{null_run['rps']:,.0f} | {fmt_ms(null_run['p99_ms'])} | "
                 f"100% | {null_run['non_2xx']} | - | "
                 f"{null_run['cpu_us_per_request']:.0f} us |")
    lines += ["", "| rows of the customer | /v1/stats median ms |"
                  " /v1/events median ms | /v1/profiles median ms |",
              "|---:|---:|---:|---:|"]
    for r in reads:
        lines.append(f"| {r['rows']:,} | {fmt_ms(r['/v1/stats'])} | "
                     f"{fmt_ms(r['/v1/events'])} | "
                     f"{fmt_ms(r['/v1/profiles'])} |")
    if len(reads) > 1:
        first, last = reads[0], reads[-1]
        growth = ", ".join(
            f"{p} x{last[p] / first[p]:.2f}" for p in
            ("/v1/stats", "/v1/events", "/v1/profiles") if first[p])
        lines += ["", f"Read growth from {first['rows']:,} to "
                      f"{last['rows']:,} rows: {growth}."]
    empty = {r["scenario"]: r["rps"] for r in ingest if r["db"] == "empty"}
    lines.append("")  # ends the read table for Markdown
    for r in ingest:
        if r["db"] != "empty" and empty.get(r["scenario"]):
            lines.append(f"{r['scenario'].capitalize()} at {r['rows']:,} rows: "
                         f"{r['rps'] / empty[r['scenario']] - 1:+.1%} "
                         "against the empty database.")
    return "\n".join(lines)


def machine_line():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = subprocess.run(["free", "-h"], capture_output=True,
                         text=True).stdout.split("\n")[1].split()[1]
    return f"{os.cpu_count()} vCPU ({cpu}), {mem} RAM"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", required=True, help="a RelWithDebInfo build dir")
    p.add_argument("--rows", default="10000,100000",
                   help="row counts for the reads (and the last one for the "
                        "ingest slowdown); the issue's: 10000,100000,1000000")
    p.add_argument("--seconds", type=int, default=10, help="per ingest run")
    p.add_argument("--read-seconds", type=int, default=3, help="per read run")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--server-threads", type=int, default=16,
                   help="the server's --threads, the workers of the read "
                        "routes (ingests use none)")
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = p.parse_args()
    rows = sorted(int(x) for x in args.rows.split(","))
    args.load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())

    build = os.path.abspath(args.build)
    server_bin = os.path.join(build, "examples", "server",
                              "loopgain-receiver-server")
    lib_path = os.path.join(build, "capi", "libloopgain_receiver.so")
    for path in (server_bin, lib_path):
        if not os.path.isfile(path):
            sys.exit(f"missing {path}: build the server and the library "
                     "first")
    ensure_wrk()
    lib = Library(lib_path)
    with open(FIXTURE, encoding="utf-8") as f:
        fixture = f.read()

    tmp = tempfile.mkdtemp(prefix="lgr-http-bench-")
    try:
        template = os.path.join(tmp, "template.db")
        single, multi = make_template(lib, template, args.customers)
        files = {"single": os.path.join(tmp, "single.tokens"),
                 "multi": os.path.join(tmp, "multi.tokens")}
        with open(files["single"], "w", encoding="ascii") as f:
            f.write(single[1] + "\n")
        with open(files["multi"], "w", encoding="ascii") as f:
            f.write("".join(t + "\n" for _, t in multi))

        def fresh(name):
            db = os.path.join(tmp, name)
            shutil.copyfile(template, db)
            return db

        ingest = []
        for who in ("single", "multi"):
            server = Server(server_bin, fresh(f"empty-{who}.db"),
                            args.server_threads)
            ingest += ingest_runs(args, server, files, "empty", 0, (who,))
            stop(server.proc)

        null = NullServer(null_server_binary(build, tmp), args.wrk_threads)
        null_run = run_wrk(f"http://127.0.0.1:{null.port}/v1/aggregate",
                           args.seconds, args.connections, args.wrk_threads,
                           script=POST_LUA,
                           env={"LGR_BENCH_BODY": FIXTURE,
                                "LGR_BENCH_TOKENS": files["single"]},
                           sample_pid=null.proc.pid)
        stop(null.proc, signal.SIGKILL)
        log(f"null server: {null_run['rps']:.0f} req/s, "
            f"p99 {null_run['p99_ms']} ms")

        db = fresh("scale.db")
        reads, have = [], 0
        for n in rows:
            rate = prefill(lib, db, single[1], fixture, n - have)
            log(f"prefilled to {n} rows ({rate:.0f} events/s through "
                "lgr_ingest)")
            # The prefill leaves hundreds of MiB of dirty pages (its last
            # checkpoint); their writeback would compete with the measured
            # runs' fdatasync and make the large database look slow.
            os.sync()
            have = n
            server = Server(server_bin, db, args.server_threads)
            reads.append(read_runs(args, server, single[1], n))
            if n == rows[-1]:
                ingest += ingest_runs(args, server, files,
                                      f"{n:,} rows", n)
            stop(server.proc)

        print(report(args, ingest, null_run, reads, machine_line()))
        print(f"\nLoad average after the run: "
              + " ".join(f"{x:.2f}" for x in os.getloadavg()) + ".")
    finally:
        stop_all()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
