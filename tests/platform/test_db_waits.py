"""Database waits a soft time limit interrupts (platform/db_waits.py, installed in workers)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import psycopg2.extensions
import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DataError

from medianest_workers.db.session import sqlalchemy_url
from medianest_workers.platform import db_waits


@pytest.fixture
def interruptible(database_url: str) -> Iterator[Engine]:
    """An engine of one connection in a process whose waits are interruptible (undone after)."""
    db_waits.install()
    engine = create_engine(sqlalchemy_url(database_url), pool_size=1, max_overflow=0)
    previous = signal.signal(signal.SIGALRM, _soft_limit)
    try:
        yield engine
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        engine.dispose()
        psycopg2.extensions.set_wait_callback(None)
        event.remove(Engine, "handle_error", db_waits._discard_interrupted)


def _soft_limit(*_: object) -> None:
    raise SoftTimeLimitExceeded()  # what billiard's SIGUSR1 handler raises in a pool child


def test_a_soft_limit_interrupts_a_statement_the_server_does_not_answer(
    interruptible: Engine,
) -> None:
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    started = time.monotonic()
    with pytest.raises(SoftTimeLimitExceeded), interruptible.begin() as connection:
        connection.execute(text("SELECT pg_sleep(20)"))
    assert time.monotonic() - started < 5  # not the 20 s of the statement
    # The interrupted connection was discarded, not rolled back on: the pool's next one works.
    with interruptible.begin() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1


def test_the_servers_own_errors_are_untouched(interruptible: Engine) -> None:
    with pytest.raises(DataError), interruptible.begin() as connection:
        connection.execute(text("SELECT 1 / 0"))
    with interruptible.connect() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with interruptible.connect() as connection:  # the same connection, kept by the pool
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() == backend
