"""The downloads family's recurring jobs (gathered by beat_schedule.py)."""

from __future__ import annotations

import datetime as dt

from medianest_workers.platform.schedules import Schedule

SCHEDULES: list[Schedule] = [
    Schedule(
        name="downloads.pickup",
        kind="downloads.pickup",
        description=(
            "give each youtube_downloads row the backend queued (and no job of ours holds)"
            " a downloads.playlist job, once"
        ),
        every=dt.timedelta(minutes=1),
        expires=dt.timedelta(seconds=50),
    ),
]
