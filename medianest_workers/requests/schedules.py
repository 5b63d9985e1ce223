"""The requests family's recurring jobs (gathered by beat_schedule.py)."""

from __future__ import annotations

import datetime as dt

from celery.schedules import crontab

from medianest_workers.platform.schedules import Schedule

SCHEDULES: list[Schedule] = [
    Schedule(
        name="requests.sync",
        kind="requests.sync",
        description="pull Overseerr requests changed since the last walk into media_requests",
        every=dt.timedelta(minutes=5),
        expires=dt.timedelta(minutes=4),
        payload={"full": False},
    ),
    Schedule(
        name="requests.sync.nightly_full",
        kind="requests.sync",
        description=(
            "walk every Overseerr request once a night (picks up requesters created since,"
            " and anything a missed page left behind)"
        ),
        cron=crontab(minute=15, hour=2),
        expires=dt.timedelta(hours=2),
        payload={"full": True},
    ),
    Schedule(
        name="requests.push",
        kind="requests.push",
        description="submit pending local media_requests without an overseerr_id to Overseerr",
        every=dt.timedelta(minutes=2),
        expires=dt.timedelta(seconds=90),
    ),
]
