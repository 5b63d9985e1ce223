"""The maintenance family's job kinds: thin wrappers over its service modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import psycopg2
from pydantic import AfterValidator, BaseModel, Field, field_validator
from pydantic_core import PydanticCustomError

from medianest_workers.db.session import get_sessionmaker
from medianest_workers.maintenance import backups, key_rotation, query_stats
from medianest_workers.maintenance import cleanup as cleanup_service
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.errors import PermanentError, RetryableError
from medianest_workers.platform.jobs import job
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import DEFAULT_RETRYABLE, EmptyPayload, RetryPolicy

#: A running cleanup writes its progress to the ledger at most this often.
PROGRESS_INTERVAL_SECONDS = 1.0


def _known_target(name: str) -> str:
    if name not in cleanup_service.TARGETS_BY_NAME:
        raise PydanticCustomError(
            "unknown_cleanup_target",
            "unknown cleanup target '{name}'; known: {known}",
            {"name": name, "known": ", ".join(cleanup_service.TARGET_NAMES)},
        )
    return name


class CleanupPayload(BaseModel):
    """Which targets to clean (maintenance/cleanup.py's TARGETS); all of them by default."""

    model_config = {"extra": "forbid"}

    targets: list[
        Annotated[
            str,
            AfterValidator(_known_target),  # refuses an unknown name, listing the known ones
            Field(json_schema_extra={"enum": list(cleanup_service.TARGET_NAMES)}),
        ]
    ] = Field(default_factory=lambda: list(cleanup_service.TARGET_NAMES), min_length=1)

    @field_validator("targets")
    @classmethod
    def _once_each(cls, targets: list[str]) -> list[str]:
        return list(dict.fromkeys(targets))


class _Progress:
    """The batch hook of a cleanup job: stop if cancelled, report progress now and then."""

    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx
        self._done: dict[str, int] = {}

    def __call__(self, report: cleanup_service.TargetReport) -> None:
        self._done[report.name] = report.deleted
        self._ctx.report_progress(
            {"target": report.name, "batch_rows": report.batch_rows, "deleted": self._done},
            min_interval=0.0 if report.complete else PROGRESS_INTERVAL_SECONDS,
        )
        self._ctx.check_cancelled()


@job(
    "maintenance.cleanup",
    queue=Queue.MAINTENANCE,
    payload=CleanupPayload,
    soft_time_limit=300,
    time_limit=330,
    retry=RetryPolicy(max_attempts=3, backoff_base_seconds=10, backoff_max_seconds=120),
)
def cleanup(ctx: JobContext, payload: CleanupPayload) -> dict[str, Any]:
    """Delete rows past their time: expired sessions and tokens, old rate limits, logs, jobs."""
    reports = cleanup_service.run_cleanup(payload.targets, on_batch=_Progress(ctx))
    return cleanup_service.summary(reports)


class BackupPayload(BaseModel):
    model_config = {"extra": "forbid"}

    restore_check: bool = Field(
        default=False,
        description="also restore the backup into a scratch database and compare row counts",
    )


#: pg_dump, the full read of the archive and a restore are each bounded by a setting of at
#: most 1800 s (settings.py); the limits leave room for all three, below the visibility timeout.
@job(
    "maintenance.backup",
    queue=Queue.MAINTENANCE,
    payload=BackupPayload,
    soft_time_limit=5700,
    time_limit=6000,
    retry=RetryPolicy(
        max_attempts=2,
        backoff_base_seconds=60.0,
        backoff_max_seconds=300.0,
        retry_on=(*DEFAULT_RETRYABLE, psycopg2.OperationalError),  # the database went away
    ),
)
def backup(ctx: JobContext, payload: BackupPayload) -> dict[str, Any]:
    """Back up the database (pg_dump -Fc, verified), optionally restore-check it, prune old ones."""
    return backups.run_backup_job(
        backups.BackupConfig.from_settings(),
        job_id=ctx.job_id,
        restore_check=payload.restore_check,
        check=ctx.check_cancelled,
    )


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
        min_length=2,
        max_length=4096,
        description="absolute path, on the worker, of the old key",
        json_schema_extra={"pattern": "^/"},  # checked by _absolute, with its message
    )
    new_key_file: str = Field(
        min_length=2,
        max_length=4096,
        description="absolute path, on the worker, of the new key",
        json_schema_extra={"pattern": "^/"},  # checked by _absolute, with its message
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
