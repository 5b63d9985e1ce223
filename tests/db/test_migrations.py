"""Migrations against real PostgreSQL: the schema contract, adoption of a Prisma-built database,
invalid concurrent index builds, the migration lock, one head and no drift."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import IntegrityError

from medianest_workers.db import migrate
from medianest_workers.db.locks import AdvisoryLock
from medianest_workers.db.session import sqlalchemy_url
from tests.db.schema_snapshot import differences, load_contract, snapshot, without_indexes

PRISMA_DIR = Path(__file__).parent / "prisma"
PRISMA_MIGRATIONS = sorted(p for p in PRISMA_DIR.glob("*.sql") if "performance" not in p.name)
PRISMA_PERF = PRISMA_DIR / "20250905190300_performance_optimization_indexes.sql"
CONTRACT_TABLES = set(load_contract())


@contextmanager
def connect(url: str, *, autocommit: bool = False) -> Iterator[Connection]:
    engine = create_engine(sqlalchemy_url(url))
    if autocommit:
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            yield connection
            if not autocommit:
                connection.commit()
    finally:
        engine.dispose()


def run_sql_file(url: str, path: Path, *, per_statement: bool = False) -> None:
    sql = path.read_text(encoding="utf-8")
    lines = [line for line in sql.splitlines() if not line.startswith("--")]
    statements = [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
    with connect(url, autocommit=per_statement) as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)


def build_prisma_database(url: str, migrations: list[Path]) -> None:
    """What the backend's `prisma migrate deploy` leaves: its tables plus _prisma_migrations."""
    with connect(url) as connection:
        connection.exec_driver_sql(
            """
            CREATE TABLE "_prisma_migrations" (
                "id" VARCHAR(36) PRIMARY KEY NOT NULL,
                "checksum" VARCHAR(64) NOT NULL,
                "finished_at" TIMESTAMPTZ,
                "migration_name" VARCHAR(255) NOT NULL,
                "logs" TEXT,
                "rolled_back_at" TIMESTAMPTZ,
                "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
                "applied_steps_count" INTEGER NOT NULL DEFAULT 0
            )
            """
        )
    for path in migrations:
        run_sql_file(url, path)
        with connect(url) as connection:
            connection.execute(
                text(
                    "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name,"
                    " applied_steps_count) VALUES (gen_random_uuid(), md5(:name), now(), :name, 1)"
                ),
                {"name": path.stem},
            )


def seed_backend_rows(url: str) -> dict[str, int]:
    with connect(url) as connection:
        connection.exec_driver_sql(
            "INSERT INTO users (id, email, role, plex_token) VALUES"
            " ('u1', 'a@example.com', 'admin', 'aa:bb:cc:dd'),"
            " ('u2', 'b@example.com', 'user', NULL)"
        )
        connection.exec_driver_sql(
            "INSERT INTO media_requests (id, user_id, title, media_type, tmdb_id, status)"
            " VALUES ('m1', 'u1', 'Dune', 'movie', '438631', 'available')"
        )
        connection.exec_driver_sql(
            "INSERT INTO service_config (service_name, service_url, api_key)"
            " VALUES ('plex', 'http://plex:32400', NULL)"
        )
    return row_counts(url)


def row_counts(url: str) -> dict[str, int]:
    """Rows per table, for the tables that exist."""
    with connect(url) as connection:
        present = set(
            connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
        )
        return {
            table: connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
            for table in sorted(present & (CONTRACT_TABLES | {"_prisma_migrations"}))
        }


def schema_of(url: str) -> dict:
    with connect(url) as connection:
        return snapshot(connection, CONTRACT_TABLES)


def expected_after_upgrade() -> dict:
    perf = load_contract("medianest-schema-with-perf-indexes.json")
    return without_indexes(perf, migrate.SKIPPED_PERF_INDEXES)


def test_fresh_upgrade_matches_the_contract_exactly(database_url: str) -> None:
    actual = schema_of(database_url)
    assert differences(actual, expected_after_upgrade()) == []
    base = load_contract()
    for table, parts in base.items():
        for kind in ("columns", "constraints", "indexes"):
            for name, definition in parts[kind].items():
                assert actual[table][kind][name] == definition, (table, kind, name)


def test_prisma_fixture_reproduces_the_contract(scratch_database: str) -> None:
    """Guards the adoption tests: the fixture is the backend's schema, column for column."""
    build_prisma_database(scratch_database, PRISMA_MIGRATIONS)
    assert differences(schema_of(scratch_database), load_contract()) == []


def test_adopts_a_prisma_database_keeping_every_row(scratch_database: str) -> None:
    build_prisma_database(scratch_database, PRISMA_MIGRATIONS)
    run_sql_file(scratch_database, PRISMA_PERF, per_statement=True)
    before = seed_backend_rows(scratch_database)
    with connect(scratch_database) as connection:
        plex_token = connection.execute(text("SELECT plex_token FROM users WHERE id = 'u1'"))
        assert plex_token.scalar_one() == "aa:bb:cc:dd"

    migrate.upgrade(scratch_database)

    assert row_counts(scratch_database) == before
    actual = schema_of(scratch_database)
    extras = {"idx_users_email", "idx_users_plex_id", "idx_session_tokens_expires_at"}
    assert differences(without_indexes(actual, extras), expected_after_upgrade()) == []
    with connect(scratch_database) as connection:
        row = connection.execute(text("SELECT email, role, plex_token FROM users WHERE id = 'u1'"))
        assert tuple(row.one()) == ("a@example.com", "admin", "aa:bb:cc:dd")
    migrate.check(scratch_database)


def test_adopts_an_older_prisma_database_adding_what_is_missing(scratch_database: str) -> None:
    build_prisma_database(
        scratch_database, PRISMA_MIGRATIONS[:1]
    )  # before error_logs, password_hash
    before = seed_backend_rows(scratch_database)
    migrate.upgrade(scratch_database)
    assert row_counts(scratch_database) == {**before, "error_logs": 0}
    assert differences(schema_of(scratch_database), expected_after_upgrade()) == []


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    before = schema_of(database_url)
    migrate.upgrade(database_url)
    assert schema_of(database_url) == before


def test_invalid_concurrent_index_is_rebuilt(scratch_database: str) -> None:
    migrate.upgrade(scratch_database, "0001_medianest_baseline")
    with connect(scratch_database) as connection:
        connection.exec_driver_sql(
            "INSERT INTO users (id, email, status, created_at) VALUES"
            " ('a', 'a@x', 'active', '2025-01-01'), ('b', 'b@x', 'active', '2025-01-01')"
        )
    # A failed concurrent build leaves an INVALID index under the name we are about to use.
    with connect(scratch_database, autocommit=True) as connection, pytest.raises(IntegrityError):
        connection.exec_driver_sql(
            "CREATE UNIQUE INDEX CONCURRENTLY idx_users_status_created_at"
            " ON users (status, created_at)"
        )
    with connect(scratch_database) as connection:
        valid = connection.execute(
            text(
                "SELECT indisvalid FROM pg_index WHERE indexrelid ="
                " 'idx_users_status_created_at'::regclass"
            )
        ).scalar_one()
    assert valid is False

    migrate.upgrade(scratch_database)

    with connect(scratch_database) as connection:
        row = connection.execute(
            text(
                "SELECT indisvalid, indisunique FROM pg_index WHERE indexrelid ="
                " 'idx_users_status_created_at'::regclass"
            )
        ).one()
    assert tuple(row) == (True, False)


def start_migrate(database_url: str) -> subprocess.Popen[bytes]:
    """`medianest-workers migrate` in its own process, as a deploy runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "medianest_workers.runtime.cli", "migrate"],
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_two_concurrent_deploys_both_succeed(scratch_database: str) -> None:
    deploys = [start_migrate(scratch_database) for _ in range(2)]
    for deploy in deploys:
        output, _ = deploy.communicate(timeout=120)
        assert deploy.returncode == 0, output.decode()
    assert differences(schema_of(scratch_database), expected_after_upgrade()) == []


def test_a_deploy_waits_for_the_migration_lock(scratch_database: str) -> None:
    """While a deploy migrates, another session sees its advisory lock held."""
    with connect(scratch_database) as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": int(AdvisoryLock.MIGRATE)})
        holder.commit()
        waiter = start_migrate(scratch_database)
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=3)  # the second deploy waits for the lock
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": int(AdvisoryLock.MIGRATE)})
        holder.commit()
        output, _ = waiter.communicate(timeout=120)
        assert waiter.returncode == 0, output.decode()
    assert differences(schema_of(scratch_database), expected_after_upgrade()) == []


def test_single_head() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert len(script.get_heads()) == 1


def test_no_drift_between_models_and_migrations(database_url: str) -> None:
    migrate.check(database_url)
