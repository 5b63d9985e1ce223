"""The job catalog of the reliability scenarios (JOB_CATALOG): every real job module, the
platform tests' sample kinds and the scenarios' own kinds (tests/reliability/jobs.py)."""

from __future__ import annotations

from tests.platform.sample_catalog import JOB_MODULES as SAMPLE_JOB_MODULES

JOB_MODULES = (*SAMPLE_JOB_MODULES, "tests.reliability.jobs")
