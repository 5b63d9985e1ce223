"""The beat scheduler: celery-redbeat's (one active beat, guarded by a Redis lock) with every
due entry enqueued through the ledger, keyed by its slot, instead of sent straight to a queue.

Run it as `celery -A medianest_workers.platform.celery_app:app beat -S
medianest_workers.platform.beat:LedgerScheduler` (what `medianest-workers beat` does).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from redbeat import RedBeatScheduler

from medianest_workers.platform.schedules import enqueue_slot, load_schedules
from medianest_workers.settings import Settings

log = logging.getLogger(__name__)


def configure_beat(app: Celery, settings: Settings) -> None:
    """Settings for celery-redbeat: its keys live under our Redis prefix."""
    from medianest_workers.platform.schedules import celery_beat_schedule  # noqa: PLC0415

    redis_options = {"socket_timeout": 5, "socket_connect_timeout": 5, "retry_period": 60}
    app.conf.update(
        beat_schedule=celery_beat_schedule(),
        beat_max_loop_interval=settings.beat_max_interval_seconds,
        beat_scheduler="medianest_workers.platform.beat:LedgerScheduler",
        redbeat_redis_url=settings.require_redis_url(),
        redbeat_redis_options=redis_options,
        redbeat_key_prefix=f"{settings.redis_key_prefix}redbeat",
        redbeat_lock_key=f"{settings.redis_key_prefix}redbeat:lock",
        redbeat_lock_timeout=settings.beat_lock_timeout_seconds,
    )


class LedgerScheduler(RedBeatScheduler):
    """RedBeat, but a due entry becomes a ledger job keyed by (schedule, slot)."""

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **_: Any) -> Any:
        schedule = load_schedules().get(entry.name)
        if schedule is None:
            log.warning("beat: %s is not in beat_schedule.py; not run", entry.name)
            return None
        due = self.app.now()
        if advance:
            entry = self.reserve(entry)
        job = enqueue_slot(schedule, due)
        log.info(
            "beat: %s slot %s -> job %s (%s)",
            schedule.name,
            schedule.slot(due).isoformat(),
            job.job_id,
            "new" if job.created else "already enqueued",
        )
        return None
