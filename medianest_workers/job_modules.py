"""Every module that declares job kinds: the one list the platform loads.

The platform knows no family: it imports the modules named here (by the module that the
JOB_CATALOG setting names, this one by default) in every process that runs or enqueues jobs.
A new family adds its `tasks` module to this list and its schedules to `beat_schedule.py`.
"""

from __future__ import annotations

JOB_MODULES: tuple[str, ...] = (
    "medianest_workers.system.tasks",
    "medianest_workers.requests.tasks",
    "medianest_workers.downloads.tasks",
    "medianest_workers.health.tasks",
    "medianest_workers.maintenance.tasks",
)
