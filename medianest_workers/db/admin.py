"""Creating and dropping whole databases on a server (`up`, tests, benchmarks).

Light on purpose (psycopg2 only): `up`'s own process uses it.
"""

from __future__ import annotations

import psycopg2
from psycopg2 import sql


def database_url(server_url: str, name: str) -> str:
    """`server_url` with its database replaced by `name` (password kept)."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - keeps `up` free of SQLAlchemy

    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _admin(server_url: str, statement: sql.Composable) -> None:
    connection = psycopg2.connect(server_url.replace("postgresql+psycopg2://", "postgresql://", 1))
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def create_database(server_url: str, name: str, *, exist_ok: bool = False) -> str:
    """Create database `name` on the server of `server_url`; returns its URL."""
    try:
        _admin(server_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg2.errors.DuplicateDatabase:
        if not exist_ok:
            raise
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name`, disconnecting its sessions (PostgreSQL 13+)."""
    _admin(
        server_url,
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
    )
