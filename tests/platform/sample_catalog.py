"""The job catalog of the tests: every real job module and the test-only kinds (JOB_CATALOG)."""

from __future__ import annotations

from medianest_workers.job_modules import JOB_MODULES as REAL_JOB_MODULES

JOB_MODULES = (*REAL_JOB_MODULES, "tests.platform.sample_jobs")
