"""A Celery app whose broker and result backend are both slotgate, at the URL in
SLOTGATE_URL (redis://127.0.0.1:PORT/0). Run by `celery -A celery_app worker` with
PYTHONPATH=tests/py, and imported by celery_check.py.

Remote control is off (and the worker runs without mingle and gossip): kombu binds the
queues these use, which expire, with a Lua script over two keys of different slots
(`_kombu.binding.<exchange>` and `_kombu.binding_deadlines`), which Redis Cluster
cannot run and slotgate cannot split (see README, job queues)."""
import os

from celery import Celery

URL = os.environ["SLOTGATE_URL"]

app = Celery("slotgate_check", broker=URL, backend=URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    result_expires=600,
    worker_enable_remote_control=False,
)


@app.task
def add(x, y):
    return {"x": x, "y": y, "sum": x + y}
