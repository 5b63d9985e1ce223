"""Count the rows a piece of code writes to `media_requests`, two ways that do not lie.

- `XactWrites`: on every transaction of an engine, `pg_stat_xact_user_tables` (inserted,
  updated, deleted tuples of `media_requests`) is read on the same connection when it begins
  and just before its COMMIT; the differences are added up. (The view also holds the counts of
  the backend's earlier transactions that are not flushed yet, and no flush happens inside a
  transaction: hence the difference.) Exact and synchronous (no wait for the stats flush).
- `table_writes`: `pg_stat_user_tables` (n_tup_ins, n_tup_upd, n_tup_del) of the table, read
  once every other backend of the database has exited (a backend flushes its counts when it
  exits, before it leaves pg_stat_activity), so a delta of two readings is complete.

Used by the tests (tests/requests) and by bench/requests_sync.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event, text

TABLE = "media_requests"
_XACT_SQL = (
    "SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0),"
    " coalesce(sum(n_tup_del), 0) FROM pg_stat_xact_user_tables WHERE relname = %s"
)


@dataclass
class Writes:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.deleted


class XactWrites:
    """`with XactWrites(engine) as writes:` ... `writes.total` rows committed meanwhile."""

    def __init__(self, engine: Engine, table: str = TABLE) -> None:
        self.engine = engine
        self.table = table
        self.writes = Writes()
        self.commits = 0
        self._at_begin: dict[int, tuple[int, int, int]] = {}

    def _read(self, connection: Any) -> tuple[int, int, int]:
        cursor = connection.connection.cursor()
        try:
            cursor.execute(_XACT_SQL, (self.table,))
            inserted, updated, deleted = cursor.fetchone()
        finally:
            cursor.close()
        return int(inserted), int(updated), int(deleted)

    def _begin(self, connection: Any) -> None:
        self._at_begin[id(connection.connection.dbapi_connection)] = self._read(connection)

    def _before_commit(self, connection: Any) -> None:
        start = self._at_begin.pop(id(connection.connection.dbapi_connection), (0, 0, 0))
        inserted, updated, deleted = self._read(connection)
        self.commits += 1
        self.writes.inserted += inserted - start[0]
        self.writes.updated += updated - start[1]
        self.writes.deleted += deleted - start[2]

    def _rollback(self, connection: Any) -> None:
        self._at_begin.pop(id(connection.connection.dbapi_connection), None)

    def __enter__(self) -> Writes:
        event.listen(self.engine, "begin", self._begin)
        event.listen(self.engine, "commit", self._before_commit)
        event.listen(self.engine, "rollback", self._rollback)
        return self.writes

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "commit", self._before_commit)
        event.remove(self.engine, "rollback", self._rollback)


def table_writes(engine: Engine, table: str = TABLE, timeout: float = 30.0) -> Writes:
    """The table's cumulative counts once no other backend of this database is connected.

    `engine`'s pool is disposed first; a caller's other engines must be disposed by it.
    """
    engine.dispose()
    deadline = time.monotonic() + timeout
    with engine.connect() as connection:
        while True:
            others = connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
            )
            connection.rollback()
            if not others:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{others} other backends still connected")
            time.sleep(0.05)
        connection.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = connection.execute(
            text(
                "SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
                " WHERE relname = :table"
            ),
            {"table": table},
        ).one()
    engine.dispose()
    return Writes(int(row[0]), int(row[1]), int(row[2]))
