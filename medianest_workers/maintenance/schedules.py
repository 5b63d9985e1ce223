"""The maintenance family's recurring jobs (gathered by beat_schedule.py).

One cleanup per target, each on a period that fits how fast its rows go stale; a nightly
verified backup, restore-checked on Sundays; a daily snapshot of the query statistics.
"""

from __future__ import annotations

import datetime as dt

from celery.schedules import crontab

from medianest_workers.platform.schedules import Schedule

CLEANUP = "maintenance.cleanup"


def _cleanup(target: str, every: dt.timedelta, what: str) -> Schedule:
    return Schedule(
        name=f"{CLEANUP}.{target}",
        kind=CLEANUP,
        payload={"targets": [target]},
        every=every,
        expires=every * 0.8,
        description=f"delete {what}",
    )


SCHEDULES: list[Schedule] = [
    _cleanup("session_tokens", dt.timedelta(minutes=15), "expired session tokens"),
    _cleanup("sessions", dt.timedelta(minutes=15), "expired NextAuth sessions"),
    _cleanup("verification_tokens", dt.timedelta(hours=1), "expired verification tokens"),
    _cleanup(
        "rate_limits", dt.timedelta(minutes=5), "rate-limit windows older than the longest one"
    ),
    _cleanup("error_logs", dt.timedelta(hours=1), "error logs past ERROR_LOG_RETENTION_DAYS"),
    _cleanup("jobs", dt.timedelta(hours=1), "finished jobs past JOB_RETENTION_DAYS"),
    _cleanup(
        "health_checks", dt.timedelta(hours=1), "health check history past HEALTH_HISTORY_DAYS"
    ),
    _cleanup(
        "notifications",
        dt.timedelta(hours=1),
        "notification delivery records past HEALTH_HISTORY_DAYS",
    ),
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
    Schedule(
        name="maintenance.query_stats.daily",
        kind="maintenance.query_stats",
        description=(
            "Snapshot pg_stat_statements' top QUERY_STATS_TOP statements by total execution"
            " time into mnw_query_stats (succeeds with available=false where the extension"
            " is not enabled); read them with `medianest-workers db top`"
        ),
        cron=crontab(minute=30, hour=4),
        expires=dt.timedelta(hours=6),
    ),
]
