"""The beat scheduler: celery-redbeat's (one active beat, guarded by a Redis lock) with every
due entry enqueued through the ledger, keyed by its slot, instead of sent straight to a queue,
and the rescuer run in the scheduler's own loop every RESCUE_INTERVAL_SECONDS.

The rescuer runs here, not as a job, so that it is on time whatever the queues hold (a job on
the `maintenance` queue would wait behind that queue's backlog), and only the beat holding
the lock runs it. Run it as `celery -A medianest_workers.platform.celery_app:app beat -S
medianest_workers.platform.beat:LedgerScheduler` (what `medianest-workers beat` does); its
settings are in celery_app.configure_beat.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redbeat import RedBeatScheduler

from medianest_workers.platform.rescuer import rescue_round
from medianest_workers.platform.schedule_runs import enqueue_slot
from medianest_workers.platform.schedules import load_schedules
from medianest_workers.settings import get_settings

log = logging.getLogger(__name__)

#: Who the ledger records as having run the rescuer's rounds.
RESCUER_OWNER = "beat"


class LedgerScheduler(RedBeatScheduler):
    """RedBeat, but a due entry becomes a ledger job keyed by (schedule, slot)."""

    _next_rescue: float = 0.0

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

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Renew the lock and send what is due (RedBeat), then rescue when it is time."""
        remaining = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now >= self._next_rescue:
            self._next_rescue = now + get_settings().rescue_interval_seconds
            self._rescue()
        return min(remaining, max(0.0, self._next_rescue - time.monotonic()))

    def _rescue(self) -> None:
        try:
            rescue_round(recorded_by=RESCUER_OWNER)
        except Exception:  # the database or broker is away: the next round tries again
            log.warning("beat: rescuer round failed", exc_info=True)
