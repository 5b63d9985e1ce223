"""Alembic environment: one deploy migrates at a time, with bounded lock and statement waits.

The database URL is `config.attributes["database_url"]` when given (tests, `migrate`), else
DATABASE_URL from the settings. A session-level advisory lock serialises concurrent deploys;
it survives the autocommit blocks that `CREATE INDEX CONCURRENTLY` needs.
"""

from __future__ import annotations

import time

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

from medianest_workers.db import models  # noqa: F401  (registers every table on the metadata)
from medianest_workers.db.base import metadata
from medianest_workers.db.locks import AdvisoryLock
from medianest_workers.db.migrate import include_object
from medianest_workers.db.session import sqlalchemy_url
from medianest_workers.settings import get_settings

MIGRATION_LOCK_KEY = int(AdvisoryLock.MIGRATE)
LOCK_POLL_SECONDS = 0.5

config = context.config


class MigrationLockTimeoutError(RuntimeError):
    """Another deploy held the migration lock for longer than we wait."""


def _database_url() -> str:
    url = config.attributes.get("database_url") or get_settings().require_database_url()
    return sqlalchemy_url(url)


def _acquire_migration_lock(connection: Connection, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while True:
        got = connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
        ).scalar_one()
        connection.commit()
        if got:
            return
        if time.monotonic() >= deadline:
            raise MigrationLockTimeoutError(
                f"another migration held the lock for more than {wait_seconds:.0f} s"
            )
        time.sleep(LOCK_POLL_SECONDS)


def _run(connection: Connection) -> None:
    settings = get_settings()
    _acquire_migration_lock(connection, settings.migration_lock_wait_seconds)
    try:
        connection.execute(text(f"SET lock_timeout = {int(settings.migration_lock_timeout_ms)}"))
        connection.execute(
            text(f"SET statement_timeout = {int(settings.migration_statement_timeout_ms)}")
        )
        connection.execute(text("SET timezone = 'UTC'"))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=metadata,
            include_object=include_object,
            compare_type=True,
            compare_server_default=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


def run_migrations_online() -> None:
    engine = create_engine(
        _database_url(),
        poolclass=pool.NullPool,
        connect_args={"application_name": "medianest-workers-migrate"},
    )
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: they cannot take the lock")
run_migrations_online()
