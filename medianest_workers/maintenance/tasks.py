"""The maintenance family's job kinds: thin wrappers over its service modules."""

from __future__ import annotations

import time
from typing import Annotated, Any

import psycopg2
from pydantic import AfterValidator, BaseModel, Field, field_validator
from pydantic_core import PydanticCustomError

from medianest_workers.maintenance import backups
from medianest_workers.maintenance import cleanup as cleanup_service
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.jobs import job
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import DEFAULT_RETRYABLE, RetryPolicy

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

    targets: list[Annotated[str, AfterValidator(_known_target)]] = Field(
        default_factory=lambda: list(cleanup_service.TARGET_NAMES), min_length=1
    )

    @field_validator("targets")
    @classmethod
    def _once_each(cls, targets: list[str]) -> list[str]:
        return list(dict.fromkeys(targets))


class _Progress:
    """The batch hook of a cleanup job: stop if cancelled, report progress now and then."""

    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx
        self._done: dict[str, int] = {}
        self._last = 0.0

    def __call__(self, report: cleanup_service.TargetReport) -> None:
        self._done[report.name] = report.deleted
        now = time.monotonic()
        if report.complete or now - self._last >= PROGRESS_INTERVAL_SECONDS:
            self._last = now
            self._ctx.report_progress(
                {"target": report.name, "batch_rows": report.batch_rows, "deleted": self._done}
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
