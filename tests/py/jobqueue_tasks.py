"""The work the job-queue tests give RQ and Celery workers (imported by the workers
through PYTHONPATH=tests/py)."""
import os


def square(n):
    """An RQ job: its result is checked by the producer."""
    return {"n": n, "square": n * n, "pid": os.getpid()}
