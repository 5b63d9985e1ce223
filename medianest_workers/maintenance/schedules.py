"""The maintenance family's recurring jobs (gathered by beat_schedule.py)."""

from __future__ import annotations

import datetime as dt

from celery.schedules import crontab

from medianest_workers.platform.schedules import Schedule

SCHEDULES: list[Schedule] = [
    Schedule(
        name="maintenance.backup.nightly",
        kind="maintenance.backup",
        description="pg_dump the database into BACKUP_DIR, verify it, prune old generations",
        cron=crontab(minute=30, hour=3, day_of_week="1-6"),
        expires=dt.timedelta(hours=6),
    ),
    Schedule(
        name="maintenance.backup.weekly_restore_check",
        kind="maintenance.backup",
        description="Sunday's backup, also restored into a scratch database, row counts compared",
        cron=crontab(minute=30, hour=3, day_of_week="0"),
        expires=dt.timedelta(hours=6),
        payload={"restore_check": True},
    ),
]
