"""The rescuer: a job is never lost, whatever Redis or a worker does.

- `queued` rows whose message went out longer ago than RESCUE_QUEUED_AFTER_SECONDS (or whose
  publish failed) are published again: the publish was lost, or Redis restarted empty.
- `running` rows whose worker is lost go back to `queued` and are published again, or end
  `dead` when their attempts are used up. Lost: the heartbeat is older than
  HEARTBEAT_STALE_SECONDS, or the worker is a process of this host that no longer exists.

Rows are locked with `FOR UPDATE SKIP LOCKED` and stamped before the transaction commits (every
write is the ledger's), so two rescuers never publish the same row twice; publishing happens
after the commit. Beat runs a round every RESCUE_INTERVAL_SECONDS in its own process
(`platform/beat.py`), so no queue's backlog can hold it up; `rescue_round` records a round in
the ledger only when it changed something.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from medianest_workers.db.session import get_engine
from medianest_workers.platform import ledger
from medianest_workers.platform.enqueue import publish
from medianest_workers.platform.queues import Queue
from medianest_workers.settings import get_settings

log = logging.getLogger(__name__)

#: The kind under which rounds are recorded (and a round can be run on demand).
RESCUE_KIND = "platform.rescue"


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

    @property
    def changed(self) -> bool:
        return any(self.as_dict().values())


def rescue(
    *,
    queued_after: float,
    stale_after: float,
    batch_size: int,
    recorded_by: str | None = None,
) -> RescueReport:
    """One pass of the rescuer; see the module docstring.

    With `recorded_by`, a pass that changed something is recorded as a finished ledger row
    (kind `platform.rescue`) in the transaction of its changes.
    """
    report = RescueReport()
    round_id = str(uuid.uuid4())
    with get_engine().begin() as connection:
        running = ledger.lock_lost_running(connection, stale_after=stale_after, limit=batch_size)
        used_up = [row.id for row in running if row.attempts >= row.max_attempts]
        lost = [row for row in running if row.attempts < row.max_attempts]
        dead = ledger.mark_dead_jobs(connection, used_up)
        report.dead = [job.job_id for job in dead]
        ledger.requeue_lost(connection, lost)
        candidates = ledger.lock_unpublished(
            connection, queued_after=queued_after, limit=batch_size
        )
        report.expired = [row.id for row in candidates if row.expired]
        ledger.expire(connection, report.expired)
        queued = [row for row in candidates if not row.expired]
        ledger.stamp_published(connection, [row.id for row in queued])
        report.requeued_running = [row.id for row in lost]
        report.republished_queued = [row.id for row in queued]
        recorded = recorded_by is not None and report.changed
        if recorded:
            ledger.record_run(
                connection,
                job_id=round_id,
                kind=RESCUE_KIND,
                queue=Queue.MAINTENANCE.value,
                result=report.as_dict(),
                correlation_id=uuid.uuid4().hex,
                enqueued_by=str(recorded_by),
                schedule_name=RESCUE_KIND,
            )
    ledger.announce_dead(dead)  # after the commit; never raises
    messages = [(row.id, row.kind, row.queue, row.correlation_id) for row in (*lost, *queued)]
    failed = publish(messages)
    if failed:
        ledger.mark_unpublished(failed)
    report.publish_failed = sorted(failed)
    if recorded and failed:
        ledger.add_to_result(round_id, {"publish_failed": len(failed)})
    if report.changed:
        log.info("rescuer: %s", report.as_dict())
    return report


def rescue_round(*, recorded_by: str | None = None) -> RescueReport:
    """One pass with the configured bounds; with `recorded_by`, recorded in the ledger when it
    changed something (a manual run is recorded as the job that ran it)."""
    settings = get_settings()
    return rescue(
        queued_after=settings.rescue_queued_after_seconds,
        stale_after=settings.heartbeat_stale_seconds,
        batch_size=settings.rescue_batch_size,
        recorded_by=recorded_by,
    )
