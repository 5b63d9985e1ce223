"""The health family's recurring jobs (gathered by beat_schedule.py)."""

from __future__ import annotations

import datetime as dt

from medianest_workers.platform.schedules import Schedule

SCHEDULES: list[Schedule] = [
    Schedule(
        name="health.check_all",
        kind="health.check_all",
        description=(
            "check every enabled service_config row and the platform's PostgreSQL, Redis and"
            " workers; record history, service_status and the backend's service:health keys"
        ),
        every=dt.timedelta(minutes=1),
        expires=dt.timedelta(seconds=50),
    ),
]
