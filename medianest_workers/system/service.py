"""What the platform's own jobs do, as plain functions."""

from __future__ import annotations

from medianest_workers.platform.context import JobContext
from medianest_workers.platform.rescuer import rescue_round


def idle(ctx: JobContext, seconds: float) -> None:
    """Do nothing for `seconds` (smoke tests, benchmarks); a cancel ends the wait at once."""
    if seconds:
        ctx.sleep(seconds)


def rescue_now() -> dict[str, int]:
    """One round of the rescuer with the configured bounds; its counts."""
    return rescue_round().as_dict()
