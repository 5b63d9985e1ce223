"""The maintenance family's job kinds: thin wrappers over its service modules."""

from __future__ import annotations

from typing import Any

import psycopg2
from pydantic import BaseModel, Field

from medianest_workers.maintenance import backups
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.jobs import job
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import DEFAULT_RETRYABLE, RetryPolicy


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
