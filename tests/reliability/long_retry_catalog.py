"""A job catalog holding one kind whose retry delay outlasts a 60 s visibility timeout: a
worker must refuse to start with it (JOB_CATALOG tests.reliability.long_retry_catalog)."""

from __future__ import annotations

from medianest_workers.platform.context import JobContext
from medianest_workers.platform.jobs import job
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import RetryPolicy

JOB_MODULES = ("tests.reliability.jobs", "tests.reliability.long_retry_catalog")


@job(
    "reliability.late_retry",
    queue=Queue.MEDIA,
    retry=RetryPolicy(max_attempts=3, backoff_base_seconds=30, backoff_max_seconds=120),
)
def late_retry(ctx: JobContext, payload: object) -> None:
    """Never runs: its worker refuses to start."""
