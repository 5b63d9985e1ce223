"""Celery's side of logging: our format instead of Celery's (its `setup_logging` signal), and
the task header's correlation id bound for the whole run of a task, so every worker log line
(Celery's own too) carries it."""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from celery import signals

from medianest_workers import correlation
from medianest_workers.logs import configure_logging


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
