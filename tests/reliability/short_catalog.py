"""A job catalog whose every bound fits a visibility timeout of 60 s (JOB_CATALOG): only the
scenarios' kinds (tests/reliability/jobs.py; the platform's own retry for up to 300 s)."""

from __future__ import annotations

JOB_MODULES = ("tests.reliability.jobs",)
