"""Fixtures for the maintenance family: the platform's (real workers, fast heartbeats) and rows."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, text

from tests.platform.conftest import (  # noqa: F401  (fixtures used by these tests)
    _empty_queues,
    _fast_heartbeats,
    start_worker,
)

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
