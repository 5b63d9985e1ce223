"""The maintenance family's recurring jobs (gathered by beat_schedule.py)."""

from __future__ import annotations

import datetime as dt

from medianest_workers.platform.schedules import Schedule

SCHEDULES: list[Schedule] = [
    Schedule(
        name="maintenance.query_stats.daily",
        kind="maintenance.query_stats",
        description=(
            "Snapshot pg_stat_statements' top QUERY_STATS_TOP statements by total execution"
            " time into mnw_query_stats (succeeds with available=false where the extension"
            " is not enabled); read them with `medianest-workers db top`"
        ),
        every=dt.timedelta(days=1),
        expires=dt.timedelta(hours=6),
    ),
]
