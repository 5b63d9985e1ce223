"""The maintenance family's job kinds: thin wrappers over its service modules."""

from __future__ import annotations

from typing import Any

from medianest_workers.db.session import get_sessionmaker
from medianest_workers.maintenance import query_stats
from medianest_workers.platform.context import JobContext
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
