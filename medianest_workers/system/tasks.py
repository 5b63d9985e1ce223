"""The platform's own job kinds: a no-op for smoke tests and benchmarks, and a manual rescue.

Beat runs the rescuer itself every RESCUE_INTERVAL_SECONDS (platform/beat.py); the
`platform.rescue` kind is there to run a round on demand (`POST /v1/jobs`, `enqueue`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from medianest_workers.platform.context import JobContext
from medianest_workers.platform.jobs import job
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import EmptyPayload, RetryPolicy
from medianest_workers.system import service


class NoopPayload(BaseModel):
    model_config = {"extra": "forbid"}

    sleep: float = Field(default=0.0, ge=0.0, le=30.0, description="seconds to sleep")


@job(
    "platform.noop", queue=Queue.MAINTENANCE, payload=NoopPayload, soft_time_limit=45, time_limit=60
)
def noop(ctx: JobContext, payload: NoopPayload) -> None:
    """Do nothing (optionally sleep): smoke tests and benchmarks."""
    service.idle(ctx, payload.sleep)


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
    return service.rescue_now()
