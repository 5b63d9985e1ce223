"""What a worker does around its jobs: refuse bounds that cannot hold, a fresh engine per child
whose database waits a soft time limit can interrupt.

At start it refuses job kinds whose time limits outlast the visibility timeout, and pools
that could open more database connections than the server allows (connection_budget.py).

Connected by importing `platform.jobs` (every job module does), so only processes that run
jobs carry them; Celery imports the job modules before it sends `worker_init`.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from medianest_workers.db.session import build_engine, dispose_engine_after_fork
from medianest_workers.platform import db_waits, finisher
from medianest_workers.platform.connection_budget import check_budget
from medianest_workers.platform.errors import TimeBoundsError
from medianest_workers.platform.registry import all_specs, check_time_bounds
from medianest_workers.settings import get_settings

log = logging.getLogger(__name__)


@signals.worker_init.connect
def _check_bounds(**_: Any) -> None:
    """Every hard time limit and retry delay must end within the visibility timeout."""
    problems = check_time_bounds(get_settings().visibility_timeout_seconds, all_specs())
    if problems:
        error = TimeBoundsError("; ".join(problems))
        log.critical("the worker refuses to start: %s", error)
        # Celery logs and swallows a receiver's Exception (the worker would start anyway);
        # SystemExit is not an Exception: it ends the worker, with the reason on stderr.
        raise SystemExit(f"the worker refuses to start: {error}") from error


def check_connection_budget(*, processes: int) -> None:
    """A worker of `processes` processes must fit the database's connections.

    Called by `medianest-workers worker` before the worker starts (an exception raised in a
    Celery signal handler is only logged): ConnectionBudgetError, one line, otherwise.
    """
    settings = get_settings()
    engine = build_engine(settings, application_name="medianest-workers-budget-check")
    try:
        with engine.connect() as connection:
            check_budget(connection, settings, processes=processes)
    finally:
        engine.dispose()


@signals.worker_process_init.connect
def _fresh_engine_in_child(**_: Any) -> None:
    """Never share a pool across a fork (session.py also does this through register_at_fork);
    database waits that a soft time limit interrupts (db_waits.py); successes written off the
    jobs' path (finisher.py)."""
    dispose_engine_after_fork()
    db_waits.install()
    finisher.enable()


@signals.worker_process_shutdown.connect
def _record_pending_ends(**_: Any) -> None:
    """A child that exits writes the successes it handed to its finisher thread first."""
    finisher.drain()
