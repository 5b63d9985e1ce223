"""Logging for every role: one line per record, with the correlation id of the job or request.

Celery's own logging setup is replaced (its `setup_logging` signal), so workers and beat print
the same format as the API, and every worker log line carries `correlation_id`.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Any

from celery import signals

from medianest_workers.platform import correlation
from medianest_workers.platform.correlation import CorrelationIdFilter

FORMAT = "%(asctime)s %(levelname)s [%(processName)s] %(name)s cid=%(correlation_id)s %(message)s"


def configure_logging(level: int | str = logging.INFO) -> None:
    """Send records to stderr in FORMAT; idempotent."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "_mnw", False):
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(CorrelationIdFilter())
    handler._mnw = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


@signals.setup_logging.connect
def _celery_logging(loglevel: Any = logging.INFO, **_: Any) -> None:
    configure_logging(loglevel or logging.INFO)


_bound: dict[str, contextvars.Token[str | None]] = {}


@signals.task_prerun.connect
def _bind_correlation_id(task_id: str = "", task: Any = None, **_: Any) -> None:
    """The task header's correlation id marks every log line of the run (Celery's too)."""
    header = getattr(getattr(task, "request", None), correlation.HEADER, None)
    _bound[task_id] = correlation.bind(correlation.sanitize(header))


@signals.task_postrun.connect
def _unbind_correlation_id(task_id: str = "", **_: Any) -> None:
    token = _bound.pop(task_id, None)
    if token is not None:
        correlation.unbind(token)
