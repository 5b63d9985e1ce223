"""Engines and sessions, one engine per process.

The engine is created lazily in the process that uses it and forgotten in a forked child
(`os.register_at_fork`), whose first use creates its own: a connection is never shared across
a fork. `dispose_engine_after_fork()` is also what Celery's `worker_process_init` calls.

A pooled connection is pinged when it is checked out after more than `PING_IDLE_SECONDS` in
the pool (a dead one is replaced before anyone uses it); one handed back within that time
skips the round trip. Should the server go away in that second, the next statement on it
fails with `connection_invalidated` set, and SQLAlchemy recycles every older connection of
the pool: `execute_autocommit()` (the ledger's hot path) then runs its statement once more.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg2
from psycopg2.extras import NamedTupleCursor
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from medianest_workers.settings import Settings, get_settings

_lock = threading.Lock()
_engine: Engine | None = None
_engine_pid: int | None = None
_sessionmaker: sessionmaker[Session] | None = None

#: A connection back in the pool for longer than this is pinged before it is handed out.
PING_IDLE_SECONDS = 1.0
_CHECKED_IN_AT = "mnw_checked_in_at"


def sqlalchemy_url(url: str) -> str:
    """A DATABASE_URL as SQLAlchemy wants it (psycopg2 driver, `postgresql://` scheme)."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg2://{rest}" if sep else url
    return url


def build_engine(settings: Settings, *, application_name: str = "medianest-workers") -> Engine:
    """A new engine for DATABASE_URL: UTC sessions, statement and lock timeouts, a ping for
    connections that sat in the pool (see the module docstring)."""
    options = (
        f"-c timezone=UTC -c statement_timeout={settings.db_statement_timeout_ms}"
        f" -c lock_timeout={settings.db_lock_timeout_ms}"
    )
    engine = create_engine(
        sqlalchemy_url(settings.require_database_url()),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        connect_args={
            "options": options,
            "application_name": application_name,
            "connect_timeout": 10,
        },
    )
    event.listen(engine.pool, "checkin", _stamp_checkin)
    event.listen(engine.pool, "checkout", _ping_if_idle)
    return engine


def _stamp_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_CHECKED_IN_AT] = time.monotonic()


def _ping_if_idle(
    dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    """Ping a connection that sat in the pool; a dead one makes the pool open a fresh one."""
    checked_in = record.info.pop(_CHECKED_IN_AT, None)
    if checked_in is None or time.monotonic() - checked_in <= PING_IDLE_SECONDS:
        return  # new, or handed back a moment ago
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        dbapi_connection.rollback()  # psycopg2 opened a transaction for the SELECT: end it
    except Exception as error:
        raise exc.DisconnectionError(
            f"pooled connection is gone ({type(error).__name__})"
        ) from error


def get_engine() -> Engine:
    """This process's engine, created on first use."""
    global _engine, _engine_pid, _sessionmaker  # noqa: PLW0603
    with _lock:
        if _engine is None or _engine_pid != os.getpid():
            _engine = build_engine(get_settings())
            _engine_pid = os.getpid()
            _sessionmaker = sessionmaker(_engine, expire_on_commit=False)
        return _engine


def execute_autocommit(sql: str, params: Mapping[str, Any]) -> list[Any]:
    """Run one statement that returns rows, in autocommit (one round trip: no BEGIN, no
    COMMIT), and return its rows as named tuples.

    The ledger's hot path (claim, finish): psycopg2 straight on a pooled connection, as
    SQLAlchemy Core's execution costs about as much again as the statement itself. `sql`
    is psycopg2's (`%(name)s` parameters); it may be several statements, which PostgreSQL
    then runs as one implicit transaction. Run once more on a fresh connection if the first
    one turned out to be dead (the server restarted since it was last used).
    """
    engine = get_engine()
    for attempt in (1, 2):
        try:
            pooled = engine.raw_connection()
        except psycopg2.Error as error:  # cannot connect: SQLAlchemy's error, as elsewhere
            raise exc.DBAPIError.instance(sql, params, error, psycopg2.Error) from error
        try:
            dbapi_connection = pooled.dbapi_connection
            if dbapi_connection is None:
                raise exc.InvalidRequestError("the pool handed out a closed connection")
            dbapi_connection.autocommit = True
            try:
                with dbapi_connection.cursor(cursor_factory=NamedTupleCursor) as cursor:
                    cursor.execute(sql, params)
                    return list(cursor.fetchall())
            finally:
                if not dbapi_connection.closed:
                    dbapi_connection.autocommit = False
        except psycopg2.Error as error:
            if engine.dialect.is_disconnect(error, dbapi_connection, None):
                pooled.invalidate(error)
                if attempt == 1:
                    continue
            raise exc.DBAPIError.instance(sql, params, error, psycopg2.Error) from error
        finally:
            pooled.close()
    raise AssertionError("unreachable")


def get_sessionmaker() -> sessionmaker[Session]:
    get_engine()
    if _sessionmaker is None:  # only if another thread reset the engine meanwhile
        raise RuntimeError("the database engine was reset while in use")
    return _sessionmaker


@contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engine_after_fork() -> None:
    """In a forked child: drop the parent's pool without closing the parent's sockets."""
    global _engine, _engine_pid, _sessionmaker  # noqa: PLW0603
    if _engine is not None and _engine_pid != os.getpid():
        _engine.dispose(close=False)
        _engine = None
        _engine_pid = None
        _sessionmaker = None


def reset_engine() -> None:
    """Close this process's engine (tests, and after the settings change)."""
    global _engine, _engine_pid, _sessionmaker  # noqa: PLW0603
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
        _engine_pid = None
        _sessionmaker = None


def _after_fork_in_child() -> None:
    global _lock  # noqa: PLW0603
    _lock = threading.Lock()  # a lock held by another thread at fork time would never be freed
    dispose_engine_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
