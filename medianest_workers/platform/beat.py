"""The beat scheduler: celery-redbeat's (one active beat, guarded by a Redis lock) with every
due entry enqueued through the ledger, keyed by its slot, instead of sent straight to a queue.

Run it as `celery -A medianest_workers.platform.celery_app:app beat -S
medianest_workers.platform.beat:LedgerScheduler` (what `medianest-workers beat` does); its
settings are in celery_app.configure_beat.
"""

from __future__ import annotations

import logging
from typing import Any

from redbeat import RedBeatScheduler

from medianest_workers.platform.schedule_runs import enqueue_slot
from medianest_workers.platform.schedules import load_schedules

log = logging.getLogger(__name__)


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
