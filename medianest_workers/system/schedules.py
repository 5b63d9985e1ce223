"""The platform's own recurring jobs (gathered by beat_schedule.py).

None: the rescuer is not a job but part of beat itself, so that it runs on time whatever the
queues hold (platform/beat.py, every RESCUE_INTERVAL_SECONDS).
"""

from __future__ import annotations

from medianest_workers.platform.schedules import Schedule

SCHEDULES: list[Schedule] = []
