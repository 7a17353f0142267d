"""The Celery peer of bench/jobs/run.sh: one no-op task; Redis is the broker (db 0) and the
result backend (db 1, so that its key count is the number of finished tasks)."""
import os

from celery import Celery

REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")

app = Celery("celery_app", broker=f"{REDIS}/0", backend=f"{REDIS}/1")
app.conf.update(
    task_ignore_result=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="celery_app.noop")
def noop():
    return None
