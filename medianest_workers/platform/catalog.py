"""Where job kinds come from: the list of job modules (light: Celery's configuration reads it)."""

from __future__ import annotations

import importlib

from medianest_workers.settings import get_settings


def job_module_names() -> list[str]:
    """The `JOB_MODULES` of the catalog module that JOB_CATALOG names (job_modules.py)."""
    catalog = importlib.import_module(get_settings().job_catalog)
    return list(catalog.JOB_MODULES)
