"""Every recurring job of medianest-workers: name, schedule, expiry, and what it is for.

Exactly one beat process schedules these (a Redis lock, celery-redbeat), and each slot is
enqueued at most once (idempotency key `beat:<name>:<slot>`), even with two beats running.
`expires` is shorter than the period: a run that could not start in time is dropped, not
piled up behind the next one. See medianest_workers/platform/schedules.py.
"""

from __future__ import annotations

import datetime as dt

from medianest_workers.platform.schedules import Schedule

SCHEDULES: list[Schedule] = [
    # Publish jobs whose message was lost (or wiped with Redis) and re-queue jobs whose
    # worker died mid-run; short so that nothing waits long for a lost message.
    Schedule(
        name="platform.rescue",
        kind="platform.rescue",
        every=dt.timedelta(seconds=30),
        expires=dt.timedelta(seconds=25),
        description="re-publish lost jobs, re-queue jobs whose worker died",
    ),
]
