"""The platform's own job kinds (`platform.*`), laid out as every family is.

A family is a folder of its own: `client.py` (its peer, when it has one), `service.py` (plain
functions the tests call without Celery), `tasks.py` (thin `@job` wrappers: load, guard, call
the service, record), `schedules.py` (its recurring jobs, gathered by `beat_schedule.py`) and
its settings as a section of `medianest_workers/settings.py`. See docs/architecture.md.
"""
