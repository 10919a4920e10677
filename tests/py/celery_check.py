"""Celery from PyPI against slotgate, unmodified: with a worker running (started by the
test), send 200 tasks and check every result through the Redis result backend.

Usage: SLOTGATE_URL=redis://127.0.0.1:PORT/0 python celery_check.py. Prints one line per
step; exits non-zero on the first failure, and prints `all checks passed` at the end.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from celery_app import add  # noqa: E402

TASKS = 200


def fail(what):
    print(f"FAIL {what}")
    sys.exit(1)


def main():
    results = [add.delay(i, 1000 * i) for i in range(TASKS)]
    print(f"ok sent {TASKS} tasks")
    for i, result in enumerate(results):
        got = result.get(timeout=60)
        want = {"x": i, "y": 1000 * i, "sum": 1001 * i}
        if got != want:
            fail(f"task {i} returned {got!r}, want {want!r}")
        if result.status != "SUCCESS":
            fail(f"task {i} is {result.status}, want SUCCESS")
    print(f"ok {TASKS} results right")
    print("all checks passed")


if __name__ == "__main__":
    main()
