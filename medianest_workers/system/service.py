"""What the platform's own jobs do, as plain functions."""

from __future__ import annotations

from typing import Any

from medianest_workers.platform.context import JobContext
from medianest_workers.platform.rescuer import rescue
from medianest_workers.settings import get_settings


def idle(ctx: JobContext, seconds: float) -> None:
    """Do nothing for `seconds` (smoke tests, benchmarks); a cancel ends the wait at once."""
    if seconds:
        ctx.sleep(seconds)


def rescue_now() -> dict[str, int]:
    """One round of the rescuer with the configured bounds; its counts."""
    settings = get_settings()
    report = rescue(
        queued_after=settings.rescue_queued_after_seconds,
        stale_after=settings.heartbeat_stale_seconds,
        batch_size=settings.rescue_batch_size,
    )
    counts: dict[str, Any] = report.as_dict()
    return counts
