"""Engines and sessions, one engine per process.

The engine is created lazily in the process that uses it and forgotten in a forked child
(`os.register_at_fork`), whose first use creates its own: a connection is never shared across
a fork. `dispose_engine_after_fork()` is also what Celery's `worker_process_init` calls.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from medianest_workers.settings import Settings, get_settings

_lock = threading.Lock()
_engine: Engine | None = None
_engine_pid: int | None = None
_sessionmaker: sessionmaker[Session] | None = None


def sqlalchemy_url(url: str) -> str:
    """A DATABASE_URL as SQLAlchemy wants it (psycopg2 driver, `postgresql://` scheme)."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg2://{rest}" if sep else url
    return url


def build_engine(settings: Settings, *, application_name: str = "medianest-workers") -> Engine:
    """A new engine for DATABASE_URL: UTC sessions, statement and lock timeouts, pre-ping."""
    options = (
        f"-c timezone=UTC -c statement_timeout={settings.db_statement_timeout_ms}"
        f" -c lock_timeout={settings.db_lock_timeout_ms}"
    )
    return create_engine(
        sqlalchemy_url(settings.require_database_url()),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=True,
        connect_args={
            "options": options,
            "application_name": application_name,
            "connect_timeout": 10,
        },
    )


def get_engine() -> Engine:
    """This process's engine, created on first use."""
    global _engine, _engine_pid, _sessionmaker  # noqa: PLW0603
    with _lock:
        if _engine is None or _engine_pid != os.getpid():
            _engine = build_engine(get_settings())
            _engine_pid = os.getpid()
            _sessionmaker = sessionmaker(_engine, expire_on_commit=False)
        return _engine


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
