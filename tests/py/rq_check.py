"""RQ from PyPI against slotgate, unmodified: enqueue 200 jobs, then (once the test has
started a normal `rq worker`) wait until every one finished and check its result.

Usage: python rq_check.py PORT enqueue|wait. Prints one line per step; exits non-zero on
the first failure with what was expected and what came back, and prints
`all checks passed` at the end.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.job import Job, JobStatus  # noqa: E402

import jobqueue_tasks  # noqa: E402

JOBS = 200
WAIT_SECONDS = 120


def fail(what):
    print(f"FAIL {what}")
    sys.exit(1)


def ids():
    return [f"square-{i}" for i in range(JOBS)]


def enqueue(r):
    q = Queue("default", connection=r)
    for i, job_id in enumerate(ids()):
        job = q.enqueue(jobqueue_tasks.square, i, job_id=job_id, result_ttl=600)
        if job.get_status() != JobStatus.QUEUED:
            fail(f"job {job_id} is {job.get_status()} after enqueue, want queued")
    if q.count != JOBS:
        fail(f"queue holds {q.count} jobs, want {JOBS}")
    print(f"ok enqueued {JOBS} jobs")


def wait(r):
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        jobs = Job.fetch_many(ids(), connection=r)
        missing = [job_id for job_id, job in zip(ids(), jobs) if job is None]
        if missing:
            fail(f"{len(missing)} jobs are gone, e.g. {missing[:3]}")
        statuses = [job.get_status() for job in jobs]
        failed = [job for job in jobs if job.get_status() == JobStatus.FAILED]
        if failed:
            fail(f"{len(failed)} jobs failed, e.g. {failed[0].id}: {failed[0].latest_result()}")
        done = statuses.count(JobStatus.FINISHED)
        if done == JOBS:
            break
        if time.monotonic() > deadline:
            fail(f"after {WAIT_SECONDS} s only {done} of {JOBS} jobs finished: {sorted(set(statuses))}")
        time.sleep(0.2)
    pids = set()
    for i, job in enumerate(jobs):
        result = job.return_value()
        if result is None or result.get("n") != i or result.get("square") != i * i:
            fail(f"job {job.id} returned {result!r}, want n={i} square={i * i}")
        pids.add(result["pid"])
    print(f"ok {JOBS} jobs finished with the right results (worker processes: {len(pids)})")
    print("all checks passed")


def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    r = Redis(host="127.0.0.1", port=port)
    {"enqueue": enqueue, "wait": wait}[mode](r)


if __name__ == "__main__":
    main()
