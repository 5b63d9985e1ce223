"""The baseline: a plain Celery app with the platform's reliability settings and no ledger."""

from __future__ import annotations

from celery import Celery

from medianest_workers.platform.celery_app import configure
from medianest_workers.settings import get_settings

app = Celery("bench_raw")
configure(app, get_settings())
app.conf.update(imports=[], beat_schedule={}, task_routes=None)


@app.task(name="bench.raw_noop", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def raw_noop() -> None:
    """Nothing: the cost of Celery itself."""
