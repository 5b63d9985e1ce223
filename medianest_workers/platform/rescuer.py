"""The rescuer: a job is never lost, whatever Redis or a worker does (DESIGN.md §2).

- `queued` rows whose message went out longer ago than RESCUE_QUEUED_AFTER_SECONDS (or whose
  publish failed) are published again: the publish was lost, or Redis restarted empty.
- `running` rows whose heartbeat is older than HEARTBEAT_STALE_SECONDS lost their worker: they
  go back to `queued` and are published again, or end `dead` when their attempts are used up.

Rows are claimed with `FOR UPDATE SKIP LOCKED` and stamped before the transaction commits, so
two rescuers never publish the same row twice; publishing happens after the commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import text

from medianest_workers.db.session import get_engine
from medianest_workers.platform import ledger
from medianest_workers.platform.enqueue import publish
from medianest_workers.platform.error_log import record_dead_job
from medianest_workers.platform.ledger import NOW_UTC

log = logging.getLogger(__name__)

_STALE_RUNNING = text(
    f"""
    SELECT id, kind, queue, attempts, max_attempts, correlation_id, user_id FROM mnw_jobs
    WHERE state = 'running' AND heartbeat_at < {NOW_UTC} - make_interval(secs => :stale)
    ORDER BY heartbeat_at LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)
_STALE_QUEUED = text(
    f"""
    SELECT id, kind, queue, correlation_id,
        COALESCE(expires_at <= {NOW_UTC}, false) AS expired
    FROM mnw_jobs
    WHERE state = 'queued'
      AND (published_at IS NULL OR published_at < {NOW_UTC} - make_interval(secs => :after))
    ORDER BY published_at NULLS FIRST LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)
_REQUEUE = text(
    f"""
    UPDATE mnw_jobs SET state = 'queued', worker = NULL, heartbeat_at = NULL,
        published_at = {NOW_UTC}, error_class = 'WorkerLost',
        error_message = 'the worker stopped sending heartbeats; the job was queued again'
    WHERE id = ANY(:ids)
    """
)
_MARK_PUBLISHED = text(f"UPDATE mnw_jobs SET published_at = {NOW_UTC} WHERE id = ANY(:ids)")


@dataclass
class RescueReport:
    republished_queued: list[str] = field(default_factory=list)
    requeued_running: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    publish_failed: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "expired": len(self.expired),
            "republished_queued": len(self.republished_queued),
            "requeued_running": len(self.requeued_running),
            "dead": len(self.dead),
            "publish_failed": len(self.publish_failed),
        }


def rescue(*, queued_after: float, stale_after: float, batch_size: int) -> RescueReport:
    """One pass of the rescuer; see the module docstring."""
    report = RescueReport()
    with get_engine().begin() as connection:
        running = connection.execute(
            _STALE_RUNNING, {"stale": stale_after, "limit": batch_size}
        ).all()
        dead = [row for row in running if row.attempts >= row.max_attempts]
        lost = [row for row in running if row.attempts < row.max_attempts]
        ledger.mark_dead(connection, [row.id for row in dead])
        if lost:
            connection.execute(_REQUEUE, {"ids": [row.id for row in lost]})
        candidates = connection.execute(
            _STALE_QUEUED, {"after": queued_after, "limit": batch_size}
        ).all()
        expired = [row.id for row in candidates if row.expired]
        ledger.expire(connection, expired)
        queued = [row for row in candidates if not row.expired]
        if queued:
            connection.execute(_MARK_PUBLISHED, {"ids": [row.id for row in queued]})
    messages = [(row.id, row.kind, row.queue, row.correlation_id) for row in (*lost, *queued)]
    failed = publish(messages)
    if failed:
        ledger.mark_unpublished(failed)
    report.requeued_running = [row.id for row in lost]
    report.republished_queued = [row.id for row in queued]
    report.dead = [row.id for row in dead]
    report.expired = expired
    report.publish_failed = sorted(failed)
    for row in dead:
        record_dead_job(
            job_id=row.id,
            kind=row.kind,
            correlation_id=row.correlation_id,
            user_id=row.user_id,
            attempts=row.attempts,
        )
    if messages or dead or expired:
        log.info("rescuer: %s", report.as_dict())
    return report
