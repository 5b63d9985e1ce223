"""The maintenance family's job kinds: thin wrappers over its service modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from medianest_workers.db.session import get_sessionmaker
from medianest_workers.maintenance import key_rotation, query_stats
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.errors import PermanentError, RetryableError
from medianest_workers.platform.jobs import job
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import EmptyPayload, RetryPolicy


@job(
    "maintenance.query_stats",
    queue=Queue.MAINTENANCE,
    payload=EmptyPayload,
    soft_time_limit=120,
    time_limit=180,
    retry=RetryPolicy(max_attempts=3),
)
def snapshot_query_stats(ctx: JobContext, payload: EmptyPayload) -> dict[str, Any]:
    """Snapshot pg_stat_statements' top statements into mnw_query_stats (if available)."""
    return query_stats.take_snapshot(get_sessionmaker()).as_json()


class RotateKeyPayload(BaseModel):
    """Where the worker reads the keys: file paths only, never a key."""

    model_config = {"extra": "forbid"}

    old_key_file: str = Field(
        min_length=2, max_length=4096, description="absolute path, on the worker, of the old key"
    )
    new_key_file: str = Field(
        min_length=2, max_length=4096, description="absolute path, on the worker, of the new key"
    )
    batch_size: int | None = Field(default=None, ge=1, le=10_000, description="ROTATION_BATCH_SIZE")
    from_start: bool = Field(default=False, description="ignore the checkpoints, check every row")

    @field_validator("old_key_file", "new_key_file")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be the absolute path of a key file on the worker, not a key")
        return value


@job(
    "maintenance.rotate_key",
    queue=Queue.MAINTENANCE,
    payload=RotateKeyPayload,
    soft_time_limit=3300,
    time_limit=3600,
    retry=RetryPolicy(max_attempts=5),
)
def rotate_key(ctx: JobContext, payload: RotateKeyPayload) -> dict[str, Any]:
    """Re-encrypt plex_token / api_key from the old key file's key to the new one's; resumable."""

    def progress(step: key_rotation.Progress) -> None:
        ctx.report_progress(step.as_json())
        ctx.check_cancelled()

    try:
        outcome = key_rotation.rotate_key(
            get_sessionmaker(),
            old_key_file=Path(payload.old_key_file),
            new_key_file=Path(payload.new_key_file),
            batch_size=payload.batch_size,
            from_start=payload.from_start,
            on_progress=progress,
        )
    except key_rotation.KeyRotationError as exc:
        raise PermanentError(str(exc)) from None
    columns = outcome.report.columns.values()
    if any(column.failed_ids for column in columns):
        raise PermanentError(outcome.closing_line())
    if not outcome.complete:  # values changed meanwhile: another attempt picks them up
        raise RetryableError(outcome.closing_line())
    return outcome.as_json()
