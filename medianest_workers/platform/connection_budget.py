"""The check a worker makes at start: its database pools fit what the server allows.

A prefork worker's every process has its own pool (DB_POOL_SIZE + DB_MAX_OVERFLOW), and the
main process one connection more; on a server of `max_connections`, minus the slots it
reserves for superusers (and `reserved_connections`, PostgreSQL 16+), minus
DB_RESERVED_CONNECTIONS left for the backend, the API, beat and operators, that must fit.
Several workers (on several hosts) each check their own share: docs/operations.md says how to
size them together.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from medianest_workers.platform.errors import ConnectionBudgetError
from medianest_workers.settings import Settings


@dataclass(frozen=True)
class Budget:
    needed: int
    max_connections: int
    server_reserved: int
    reserved: int

    @property
    def allowed(self) -> int:
        return self.max_connections - self.server_reserved - self.reserved

    @property
    def fits(self) -> bool:
        return self.needed <= self.allowed


def connections_needed(settings: Settings, *, processes: int) -> int:
    """The most connections a worker of `processes` processes can open."""
    return processes * (settings.db_pool_size + settings.db_max_overflow) + 1


def read_budget(connection: Connection, settings: Settings, *, processes: int) -> Budget:
    """The budget of a worker of `processes` processes on the server behind `connection`."""
    rows = dict(
        connection.execute(
            text(
                "SELECT name, setting FROM pg_settings WHERE name IN"
                " ('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
            )
        ).all()
    )
    return Budget(
        needed=connections_needed(settings, processes=processes),
        max_connections=int(rows["max_connections"]),
        server_reserved=int(rows.get("superuser_reserved_connections", 0))
        + int(rows.get("reserved_connections", 0)),
        reserved=settings.db_reserved_connections,
    )


def check_budget(connection: Connection, settings: Settings, *, processes: int) -> Budget:
    """The budget, or ConnectionBudgetError (one line, naming the settings) when it does not fit."""
    budget = read_budget(connection, settings, processes=processes)
    if not budget.fits:
        raise ConnectionBudgetError(
            f"WORKER_CONCURRENCY: {processes} process(es) x (DB_POOL_SIZE {settings.db_pool_size}"
            f" + DB_MAX_OVERFLOW {settings.db_max_overflow}) + 1 = {budget.needed} connections,"
            f" but the database allows {budget.allowed} (max_connections"
            f" {budget.max_connections} - {budget.server_reserved} reserved by the server"
            f" - DB_RESERVED_CONNECTIONS {budget.reserved}): lower the concurrency or the pool,"
            " or raise max_connections (or put PgBouncer in front, ops/pgbouncer.md)"
        )
    return budget
