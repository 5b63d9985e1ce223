"""The downloads family's recurring jobs (gathered by beat_schedule.py)."""

from __future__ import annotations

from medianest_workers.platform.schedules import Schedule

SCHEDULES: list[Schedule] = []
