"""db/session.py against a real PostgreSQL: the ping of idle pooled connections, and
`execute_autocommit` (the ledger's one-round-trip path) on live, idle and dead connections."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from medianest_workers.db import session


@pytest.fixture
def fresh_engine(session_factory) -> Iterator[None]:
    """This process's engine, new for the test and closed after it."""
    session.reset_engine()
    try:
        yield
    finally:
        session.reset_engine()


def backend_pid() -> int:
    return session.execute_autocommit("SELECT pg_backend_pid() AS pid", {})[0].pid


def test_autocommit_returns_rows_and_commits(engine, fresh_engine) -> None:
    rows = session.execute_autocommit(
        "CREATE TABLE test_autocommit AS SELECT %(n)s::int AS n; SELECT n FROM test_autocommit",
        {"n": 7},
    )
    assert [row.n for row in rows] == [7]
    with engine.begin() as connection:  # committed: another connection sees it
        assert connection.execute(text("SELECT n FROM test_autocommit")).scalar_one() == 7
        connection.execute(text("DROP TABLE test_autocommit"))
    with session.get_engine().connect() as connection:  # the connection is usable as before
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
        assert connection.get_isolation_level() != "AUTOCOMMIT"


def test_a_connection_idle_past_the_ping_is_pinged_and_usable(
    engine, fresh_engine, monkeypatch
) -> None:
    """The ping's SELECT must not leave the connection inside a transaction (it did once:
    `execute_autocommit` then failed with "set_session cannot be used inside a transaction")."""
    monkeypatch.setattr(session, "PING_IDLE_SECONDS", 0.0)
    first = backend_pid()
    for _ in range(3):
        assert backend_pid() == first  # pinged, kept, and usable in autocommit
    with session.get_engine().connect() as connection:
        assert connection.execute(text("SELECT 2")).scalar_one() == 2


def test_a_dead_connection_is_replaced_once(engine, fresh_engine, monkeypatch) -> None:
    monkeypatch.setattr(session, "PING_IDLE_SECONDS", 3600.0)  # no ping: the statement finds it
    dead = backend_pid()
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dead})
    assert backend_pid() != dead


def test_a_dead_connection_found_by_the_ping_is_replaced(engine, fresh_engine, monkeypatch):
    monkeypatch.setattr(session, "PING_IDLE_SECONDS", 0.0)
    dead = backend_pid()
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dead})
    with session.get_engine().connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != dead


def test_a_statement_error_is_sqlalchemys(engine, fresh_engine) -> None:
    with pytest.raises(DBAPIError, match="division by zero"):
        session.execute_autocommit("SELECT 1 / 0 AS n", {})
    assert backend_pid() > 0  # the connection went back to the pool usable
