"""Helpers shared by the Python test drivers (tests/e2e, tests/reliability).

Assertions that raise TestFailure with what was expected, and a registry of
the child processes a driver starts, so that a failing test never leaves a
server behind.
"""
import subprocess

PROCESSES = []


class TestFailure(Exception):
    pass


def expect(condition, what):
    if not condition:
        raise TestFailure(what)


def expect_eq(actual, expected, what):
    if actual != expected:
        raise TestFailure(f"{what}: expected {expected!r}, got {actual!r}")


def track(proc):
    """Registers a child process for kill_all() and returns it."""
    PROCESSES.append(proc)
    return proc


def kill_all():
    for proc in PROCESSES:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
