"""A schedule module for beat tests: one fast entry (BEAT_SCHEDULE_MODULE points here)."""

from __future__ import annotations

import datetime as dt

from medianest_workers.platform.schedules import Schedule

SCHEDULES: list[Schedule] = [
    # A no-op every two seconds, so a test sees several slots in a few seconds.
    Schedule(
        name="tests.tick",
        kind="platform.noop",
        every=dt.timedelta(seconds=2),
        expires=dt.timedelta(seconds=1.5),
        description="a no-op every two seconds",
    ),
]
