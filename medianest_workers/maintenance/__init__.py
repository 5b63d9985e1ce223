"""The maintenance family: batched cleanup and retention, verified backups, query statistics,
key rotation for operators (jobs `maintenance.*` on the `maintenance` queue).

Laid out as every family (docs/architecture.md): service modules of plain functions
(`cleanup.py`, `backups.py`, `query_stats.py`, `key_rotation.py`), thin `@job` wrappers in
`tasks.py`, recurring jobs in `schedules.py`, settings in the maintenance section of
`medianest_workers/settings.py`.
"""
