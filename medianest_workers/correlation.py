"""Correlation ids: from the API request (or X-Correlation-Id) to task headers to log lines.

The current id lives in a context variable; `CorrelationIdFilter` puts it on every log record
as `correlation_id`, so a format string can print it.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

#: What an incoming id may look like (anything else is replaced by a fresh one).
_VALID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

#: The task header carrying it (Celery already uses `correlation_id` for the task id).
HEADER = "mnw_correlation_id"


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def sanitize(value: str | None) -> str:
    """An incoming id if it is safe to log and store, else a fresh one."""
    if value and _VALID.fullmatch(value):
        return value
    return new_correlation_id()


def current() -> str | None:
    return _current.get()


def bind(correlation_id: str) -> contextvars.Token[str | None]:
    """Make `correlation_id` current until `unbind(token)`."""
    return _current.set(correlation_id)


def unbind(token: contextvars.Token[str | None]) -> None:
    _current.reset(token)


@contextmanager
def bound(correlation_id: str) -> Iterator[str]:
    """Make `correlation_id` the current one inside the block."""
    token = _current.set(correlation_id)
    try:
        yield correlation_id
    finally:
        _current.reset(token)


class CorrelationIdFilter(logging.Filter):
    """Adds `record.correlation_id` ("-" outside a job or request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _current.get() or "-"
        return True
