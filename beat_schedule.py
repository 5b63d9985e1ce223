"""Every recurring job of medianest-workers: name, schedule, expiry, and what it is for.

Exactly one beat process schedules these (a Redis lock, celery-redbeat), and each slot is
enqueued at most once (idempotency key `beat:<name>:<slot>`), even with two beats running.
`expires` is shorter than the period: a run that could not start in time is dropped, not
piled up behind the next one. See medianest_workers/platform/schedules.py.
"""

from __future__ import annotations

from medianest_workers.downloads import schedules as downloads
from medianest_workers.health import schedules as health
from medianest_workers.maintenance import schedules as maintenance
from medianest_workers.platform.schedules import Schedule
from medianest_workers.requests import schedules as requests
from medianest_workers.system import schedules as system

#: Each family declares its schedules beside its tasks (`<family>/schedules.py`); this is the
#: one list of them all. The rescuer is not here: it runs inside beat itself, every
#: RESCUE_INTERVAL_SECONDS (medianest_workers/platform/beat.py).
SCHEDULES: list[Schedule] = [
    *system.SCHEDULES,
    *requests.SCHEDULES,
    *downloads.SCHEDULES,
    *health.SCHEDULES,
    *maintenance.SCHEDULES,
]
