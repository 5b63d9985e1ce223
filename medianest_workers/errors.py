"""The root of every error medianest-workers raises on purpose, and the errors of no layer.

Each layer defines its errors beside its code, under this root: `settings.SettingsError`,
`security.crypto.CryptoError`, `platform.errors.PlatformError` (enqueue, ledger, schedules),
`platform.errors.JobError` (what job functions raise), a family's own under it. The HTTP API
maps them to status codes in one place (`api/errors.py`).
"""

from __future__ import annotations


class MedianestWorkersError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(MedianestWorkersError):
    """The configuration cannot work: a process refuses to start; the message says why."""
