"""The beat scheduler: celery-redbeat's (one active beat, guarded by a Redis lock) with every
due entry enqueued through the ledger, keyed by its slot, instead of sent straight to a queue,
and the rescuer run in the scheduler's own loop every RESCUE_INTERVAL_SECONDS.

The rescuer runs here, not as a job, so that it is on time whatever the queues hold (a job on
the `maintenance` queue would wait behind that queue's backlog), and only the beat holding
the lock runs it. Run it as `celery -A medianest_workers.platform.celery_app:app beat -S
medianest_workers.platform.beat:LedgerScheduler` (what `medianest-workers beat` does); its
settings are in celery_app.configure_beat.

After every tick that returned (the lock renewed, what was due sent), the scheduler touches
BEAT_LIVENESS_FILE when set: `medianest-workers beat-alive` (a container's healthcheck) reads
its age. A starting beat removes the file first; one stalled in a tick, or still waiting
for another beat's lock, touches nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redbeat import RedBeatScheduler

from medianest_workers.platform.presence import touch
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._forget_liveness()

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
        self._prove_alive()
        return min(remaining, max(0.0, self._next_rescue - time.monotonic()))

    def _forget_liveness(self) -> None:
        """Remove a liveness file left by an earlier run: alive only once this one ticks."""
        path = get_settings().beat_liveness_file
        if path is not None:
            path.unlink(missing_ok=True)

    def _prove_alive(self) -> None:
        """Touch BEAT_LIVENESS_FILE (when set): this tick went through."""
        path = get_settings().beat_liveness_file
        if path is None:
            return
        try:
            touch(path)
        except OSError as exc:
            log.warning("beat: cannot touch %s: %s", path, exc.strerror)

    def _rescue(self) -> None:
        try:
            rescue_round(recorded_by=RESCUER_OWNER)
        except Exception:  # the database or broker is away: the next round tries again
            log.warning("beat: rescuer round failed", exc_info=True)
