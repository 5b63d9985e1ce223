"""The platform's own job kinds: a no-op for smoke tests and benchmarks, and the rescuer."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from medianest_workers.platform.context import JobContext
from medianest_workers.platform.jobs import job
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import EmptyPayload, RetryPolicy
from medianest_workers.platform.rescuer import rescue
from medianest_workers.settings import get_settings


class NoopPayload(BaseModel):
    model_config = {"extra": "forbid"}

    sleep: float = Field(default=0.0, ge=0.0, le=30.0, description="seconds to sleep")


@job(
    "platform.noop", queue=Queue.MAINTENANCE, payload=NoopPayload, soft_time_limit=45, time_limit=60
)
def noop(ctx: JobContext, payload: NoopPayload) -> None:
    """Do nothing (optionally sleep): smoke tests and benchmarks."""
    if payload.sleep:
        time.sleep(payload.sleep)


@job(
    "platform.rescue",
    queue=Queue.MAINTENANCE,
    payload=EmptyPayload,
    soft_time_limit=50,
    time_limit=60,
    retry=RetryPolicy(max_attempts=1),
)
def rescue_jobs(ctx: JobContext, payload: EmptyPayload) -> dict[str, Any]:
    """Publish jobs whose message was lost and re-queue jobs whose worker died."""
    settings = get_settings()
    report = rescue(
        queued_after=settings.rescue_queued_after_seconds,
        stale_after=settings.heartbeat_stale_seconds,
        batch_size=settings.rescue_batch_size,
    )
    return report.as_dict()
