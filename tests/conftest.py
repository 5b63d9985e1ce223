"""The test harness: real PostgreSQL and Redis, a database and a key prefix of this run's own.

DATABASE_URL / REDIS_URL from the environment name the *servers* to use; without them this
run starts an embedded PostgreSQL and an embedded Valkey and stops them at the end. Either way
the run creates its own database (migrated to head once), points DATABASE_URL at it for every
process it starts, and keeps its Redis keys under a per-run prefix; at the end it drops that
database and deletes only its own keys.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from medianest_workers.db import admin, migrate
from medianest_workers.db.base import metadata
from medianest_workers.db.session import reset_engine, sqlalchemy_url
from medianest_workers.runtime.embedded import EmbeddedPostgres, EmbeddedValkey
from medianest_workers.settings import reset_settings_cache

RUN_ID = uuid.uuid4().hex[:10]

# Variables that would leak the developer's configuration into the tests.
for _name in ("ENCRYPTION_KEY", "ENCRYPTION_KEY_FILE", "API_KEYS"):
    os.environ.pop(_name, None)


@dataclass(frozen=True)
class PostgresServer:
    """Where to create databases: a URL of the server's maintenance database."""

    admin_url: str

    def create_database(self, name: str) -> str:
        return admin.create_database(self.admin_url, name)

    def drop_database(self, name: str) -> None:
        admin.drop_database(self.admin_url, name)


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"mnw-test-{RUN_ID}-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def postgres_server(tmp_root: Path) -> Iterator[PostgresServer]:
    given = os.environ.get("DATABASE_URL")
    if given:
        yield PostgresServer(admin_url=given)
        return
    server = EmbeddedPostgres(tmp_root / "pgdata", keep=False)
    url = server.start()
    try:
        yield PostgresServer(admin_url=url)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server_url(tmp_root: Path) -> Iterator[str]:
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    server = EmbeddedValkey(tmp_root / "valkey", persist=False)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_prefix() -> str:
    """Every Redis key this run writes starts with this."""
    return f"mnw-test-{RUN_ID}:"


@pytest.fixture(scope="session")
def database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """This run's own database, migrated to head."""
    name = f"mnw_test_{RUN_ID}"
    url = postgres_server.create_database(name)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        reset_engine()
        postgres_server.drop_database(name)


@pytest.fixture(scope="session", autouse=True)
def platform_environment(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> Iterator[None]:
    """Point every process this run starts at its own database and Redis prefix."""
    saved = {
        name: os.environ.get(name) for name in ("DATABASE_URL", "REDIS_URL", "REDIS_KEY_PREFIX")
    }
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = redis_server_url
    os.environ["REDIS_KEY_PREFIX"] = redis_prefix
    reset_settings_cache()
    reset_engine()
    try:
        yield
    finally:
        delete_keys(redis_server_url, redis_prefix)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_settings_cache()
        reset_engine()


def delete_keys(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    test_engine = create_engine(sqlalchemy_url(database_url), pool_size=2)
    try:
        yield test_engine
    finally:
        test_engine.dispose()


def truncate_all(engine: Engine) -> None:
    """Empty every table of ours and of the backend (the schema stays)."""
    tables = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def session_factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A sessionmaker on this run's database; every table is emptied after the test."""
    try:
        yield sessionmaker(engine, expire_on_commit=False)
    finally:
        truncate_all(engine)


@pytest.fixture
def db_session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    session = session_factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


@pytest.fixture
def redis_client(redis_server_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def scratch_database(postgres_server: PostgresServer) -> Iterator[str]:
    """An empty database of its own (for migration tests), dropped afterwards."""
    name = f"mnw_scratch_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)
