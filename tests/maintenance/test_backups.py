"""Backups against real PostgreSQL: dump, verify, restore, and every way a dump goes wrong."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import Engine, text

from medianest_workers.db.locks import AdvisoryLock
from medianest_workers.maintenance import backup_records, backups, pg_tools
from medianest_workers.maintenance.backup_archive import SCRATCH_PREFIX
from medianest_workers.maintenance.backup_errors import (
    BackupStorageFullError,
    BackupVerifyError,
    DumpFailedError,
    PgToolNotFoundError,
    PgToolVersionError,
    RestoreCheckMismatchError,
    RestoreRefusedError,
    ToolTimeoutError,
)
from medianest_workers.maintenance.pg_tools import PgTools
from medianest_workers.platform.errors import JobCancelledError, PermanentError
from tests.conftest import PostgresServer
from tests.helpers import alive
from tests.maintenance.conftest import FakeTool, files_in, live_counts

NAME = re.compile(r"^.+-(\d{8}T\d{6})Z-[0-9a-f]{8}\.dump$")


def rows(engine: Engine) -> list[dict]:
    with engine.connect() as connection:
        result = connection.execute(text("SELECT * FROM mnw_backups ORDER BY started_at"))
        return [dict(row) for row in result.mappings()]


def scratch_names(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(
            connection.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                {"p": SCRATCH_PREFIX + "%"},
            ).scalars()
        )


# --- a good backup -------------------------------------------------------------------------


def test_a_backup_restores_into_a_scratch_database_with_equal_row_counts(
    backup_config, medianest_rows, engine, scratch_database, real_tools: PgTools
) -> None:
    before = live_counts(engine)
    assert before["users"] == medianest_rows["users"] and before["media_requests"] == 40

    view = backups.make_backup(backup_config)

    path = Path(view.path)
    assert files_in(backup_config.backup_dir) == [path.name]  # no partial file left
    started = dt.datetime.strptime(NAME.match(path.name).group(1), "%Y%m%dT%H%M%S")
    assert abs(started - view.started_at) < dt.timedelta(seconds=1)
    assert view.state == "succeeded" and view.verified_at is not None
    assert view.size_bytes == path.stat().st_size
    assert view.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert view.server_version.split()[0].split(".")[0] == str(real_tools.major)
    assert view.row_counts == before
    assert path.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format

    target = pg_tools.database_name(scratch_database)
    restored = backups.restore(backup_config, path, into=target)
    assert restored["created"] is False
    assert restored["row_counts"] == before


def test_a_restore_check_compares_counts_and_drops_its_scratch_database(
    backup_config, medianest_rows, engine
) -> None:
    existing = scratch_names(engine)
    view = backups.make_backup(backup_config, restore_check=True)
    assert view.restore_check_ok is True
    assert view.restore_counts == view.row_counts == live_counts(engine)
    assert view.restore_checked_at is not None
    assert scratch_names(engine) == existing


def test_a_restore_check_that_finds_other_counts_fails(
    backup_config, medianest_rows, engine
) -> None:
    view = backups.make_backup(backup_config)
    with engine.begin() as connection:  # pretend the dump's snapshot held one more user
        connection.execute(
            text(
                "UPDATE mnw_backups SET row_counts = jsonb_set(row_counts, '{users}', '26')"
                " WHERE id = :id"
            ),
            {"id": view.id},
        )
    with pytest.raises(RestoreCheckMismatchError, match="users: 26 dumped, 25 restored"):
        backups.check_restore(backup_config, view.id)
    (row,) = rows(engine)
    assert row["restore_check_ok"] is False and row["restore_counts"]["users"] == 25


def test_the_dump_holds_its_snapshot_not_its_own_running_row(backup_config, engine) -> None:
    first = backups.make_backup(backup_config)
    second = backups.make_backup(backup_config)
    target = f"{SCRATCH_PREFIX}own_{os.getpid()}"
    try:
        backups.restore(backup_config, Path(second.path), into=target)
        url = pg_tools.libpq_target(backup_config.database_url, dbname=target)
        connection = psycopg2.connect(url[0], password=url[1].get("PGPASSWORD"))
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT id, state FROM mnw_backups")
                assert cursor.fetchall() == [(first.id, "succeeded")]
        finally:
            connection.close()
    finally:
        from medianest_workers.db import admin  # noqa: PLC0415

        admin.drop_database(backup_config.database_url, target)


def test_the_file_name_carries_the_utc_time_of_the_clock(backup_config) -> None:
    moment = dt.datetime(2026, 3, 1, 2, 3, 4)
    view = backups.make_backup(backup_config, clock=lambda: moment)
    assert "-20260301T020304Z-" in Path(view.path).name
    assert view.started_at == moment


# --- pg_dump: found, missing, of the wrong version -----------------------------------------


def test_the_pg_dump_found_is_of_the_servers_major_version(server_major: int) -> None:
    tools = pg_tools.find_pg_tools(server_major)
    assert tools.major == server_major
    assert tools.pg_restore.parent == tools.pg_dump.parent


def test_pg_dump_missing_fails_clearly_and_leaves_no_file(
    backup_config, engine, no_system_tools
) -> None:
    with pytest.raises(PgToolNotFoundError, match=r"pg_dump not found.*PG_DUMP_PATH") as caught:
        backups.make_backup(backup_config)
    assert isinstance(caught.value, PermanentError)
    assert files_in(backup_config.backup_dir) == []
    (row,) = rows(engine)
    assert row["state"] == "failed" and row["error_class"] == "PgToolNotFoundError"


def test_pg_dump_path_that_does_not_exist_is_named(backup_config, tmp_path) -> None:
    config = backups.BackupConfig(
        database_url=backup_config.database_url,
        backup_dir=backup_config.backup_dir,
        pg_dump_path=tmp_path / "no" / "pg_dump",
    )
    with pytest.raises(PgToolNotFoundError, match=r"PG_DUMP_PATH: .*no/pg_dump"):
        backups.make_backup(config)


def test_pg_dump_of_another_major_on_path_fails_clearly(
    backup_config, engine, no_system_tools, fake_pg_dump: FakeTool, real_tools, monkeypatch
) -> None:
    other = real_tools.major + 1
    fake = fake_pg_dump("sys.exit('should not run')", version=f"{other}.2")
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{no_system_tools}")
    with pytest.raises(PgToolVersionError) as caught:
        backups.make_backup(backup_config)
    message = str(caught.value)
    assert f"no pg_dump of PostgreSQL {real_tools.major}" in message
    assert f"{fake} is {other}.2" in message
    assert files_in(backup_config.backup_dir) == []
    (row,) = rows(engine)
    assert row["state"] == "failed" and row["error_class"] == "PgToolVersionError"


def test_a_wrong_pg_dump_first_on_path_is_passed_over(
    fake_pg_dump: FakeTool, real_tools, monkeypatch
) -> None:
    fake = fake_pg_dump("", version=f"{real_tools.major - 1}.0")
    search = f"{fake.parent}{os.pathsep}{real_tools.pg_dump.parent}"
    tools = pg_tools.find_pg_tools(real_tools.major, search_path=search)
    assert tools.pg_dump == real_tools.pg_dump


# --- dumps that fail -----------------------------------------------------------------------


def _with_tool(config: backups.BackupConfig, pg_dump: Path, **changes) -> backups.BackupConfig:
    values = {**config.__dict__, "pg_dump_path": pg_dump, **changes}
    return backups.BackupConfig(**values)


def test_a_dump_failing_midway_leaves_no_file_and_no_succeeded_row(
    backup_config, engine, fake_pg_dump: FakeTool
) -> None:
    fake = fake_pg_dump(
        "open(out, 'wb').write(b'PGDMP' + b'x' * 5000)\n"
        "sys.stderr.write('pg_dump: error: connection to server was lost\\n')\n"
        "sys.exit(1)"
    )
    with pytest.raises(DumpFailedError, match="status 1: pg_dump: error: connection to server"):
        backups.make_backup(_with_tool(backup_config, fake))
    assert files_in(backup_config.backup_dir) == []
    (row,) = rows(engine)
    assert row["state"] == "failed" and row["error_class"] == "DumpFailedError"
    assert row["size_bytes"] is None and row["verified_at"] is None


def test_a_disk_full_dump_is_classified(backup_config, engine, fake_pg_dump: FakeTool) -> None:
    fake = fake_pg_dump(
        "open(out, 'wb').write(b'PGDMP' + b'x' * 5000)\n"
        "sys.stderr.write('pg_dump: error: could not write to output file:"
        " No space left on device\\n')\n"
        "sys.exit(1)"
    )
    with pytest.raises(BackupStorageFullError, match="ENOSPC"):
        backups.make_backup(_with_tool(backup_config, fake))
    assert files_in(backup_config.backup_dir) == []
    assert rows(engine)[0]["error_class"] == "BackupStorageFullError"


def test_a_file_size_limit_efbig_is_classified(
    backup_config, engine, fake_pg_dump: FakeTool
) -> None:
    """The real pg_dump under RLIMIT_FSIZE (SIGXFSZ ignored, so writes fail with EFBIG)."""
    fake = fake_pg_dump(
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "os.execv(REAL, [REAL, *argv])"
    )
    with pytest.raises(BackupStorageFullError, match="EFBIG"):
        backups.make_backup(_with_tool(backup_config, fake))
    assert files_in(backup_config.backup_dir) == []
    assert rows(engine)[0]["state"] == "failed"


def test_a_dump_past_its_timeout_is_killed(
    backup_config, engine, fake_pg_dump: FakeTool, tmp_path
) -> None:
    pid_file = tmp_path / "pid"
    fake = fake_pg_dump(
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "open(out, 'wb').write(b'PGDMP')\n"
        "time.sleep(120)"
    )
    with pytest.raises(ToolTimeoutError, match="pg_dump was still running after 2 s"):
        backups.make_backup(_with_tool(backup_config, fake, dump_timeout=2.0))
    assert not alive(int(pid_file.read_text()))
    assert files_in(backup_config.backup_dir) == []
    assert rows(engine)[0]["error_class"] == "ToolTimeoutError"


def test_a_cancel_during_the_dump_kills_it_and_keeps_nothing(
    backup_config, engine, fake_pg_dump: FakeTool
) -> None:
    fake = fake_pg_dump("open(out, 'wb').write(b'PGDMP')\ntime.sleep(120)")

    def cancelled() -> None:
        raise JobCancelledError("job x was cancelled")

    with pytest.raises(JobCancelledError):
        backups.make_backup(_with_tool(backup_config, fake), check=cancelled)
    assert files_in(backup_config.backup_dir) == []
    assert rows(engine)[0]["error_class"] == "JobCancelledError"


def test_a_dump_that_does_not_verify_is_not_kept(
    backup_config, engine, fake_pg_dump: FakeTool
) -> None:
    """pg_dump says it succeeded but wrote a truncated archive: verification catches it."""
    fake = fake_pg_dump(
        "import subprocess\n"
        "subprocess.run([REAL, *argv], check=True)\n"
        "data = open(out, 'rb').read()\n"
        "open(out, 'wb').write(data[: len(data) * 2 // 3])"
    )
    with pytest.raises(BackupVerifyError):
        backups.make_backup(_with_tool(backup_config, fake))
    assert files_in(backup_config.backup_dir) == []
    assert rows(engine)[0]["state"] == "failed"


# --- verification, leftovers, one at a time -------------------------------------------------


def test_verify_passes_a_good_file_and_fails_a_truncated_one(backup_config, engine) -> None:
    view = backups.make_backup(backup_config)
    result = backups.verify_file(backup_config, Path(view.path))
    assert result["recorded"] is True and result["sha256"] == view.sha256
    truncated = backup_config.backup_dir / "truncated.dump"
    data = Path(view.path).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(BackupVerifyError):
        backups.verify_file(backup_config, truncated)


def test_leftovers_of_a_crashed_backup_are_cleared(backup_config, engine) -> None:
    crashed = backups.make_backup(backup_config)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE mnw_backups SET state = 'running' WHERE id = :id"), {"id": crashed.id}
        )
    database = backup_records.get_backup(crashed.id).database_name
    leftover = backup_config.backup_dir / f".{database}-20260101T000000Z-deadbeef.dump.partial"
    leftover.write_bytes(b"PGDMP half")
    backups.make_backup(backup_config)
    assert not leftover.exists()
    states = {row["id"]: (row["state"], row["error_class"]) for row in rows(engine)}
    assert states[crashed.id] == ("failed", "BackupInterrupted")


def test_a_second_backup_of_the_same_database_at_once_is_refused(
    backup_config, database_url
) -> None:
    holder = pg_tools.connect(database_url)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (int(AdvisoryLock.BACKUP),))
        with pytest.raises(backups.BackupBusyError, match="another backup"):
            backups.make_backup(backup_config)
    finally:
        holder.close()


# --- retention on dated files ----------------------------------------------------------------


def test_retention_deletes_the_generations_not_kept(backup_config, engine) -> None:
    """A year of nightly backups (files and rows, dated) pruned on a fake clock."""
    folder = backup_config.backup_dir
    folder.mkdir(parents=True)
    start = dt.datetime(2025, 12, 1, 3, 30)
    now = dt.datetime(2026, 12, 3, 12, 0)
    with engine.begin() as connection:
        day = start
        while day <= now:
            path = folder / f"db-{day:%Y%m%dT%H%M%S}Z-00000000.dump"
            path.write_bytes(b"PGDMP")
            connection.execute(
                text(
                    "INSERT INTO mnw_backups (id, path, state, database_name, started_at,"
                    " verified_at) VALUES (:id, :path, 'succeeded', 'db', :at, :at)"
                ),
                {"id": f"b{day:%Y%m%d}", "path": str(path), "at": day},
            )
            day += dt.timedelta(days=1)
    deleted = backups.apply_retention(backup_config, now=now)
    kept = sorted(p.name[3:11] for p in folder.iterdir())
    assert kept == [
        "20260731",
        "20260831",
        "20260930",
        "20261031",
        "20261115",
        "20261122",
        "20261127",
        "20261128",
        "20261129",
        "20261130",
        "20261201",
        "20261202",
        "20261203",
    ]
    assert len(deleted) == 368 - len(kept)
    states = {row["id"]: row["state"] for row in rows(engine)}
    assert sum(state == "deleted" for state in states.values()) == len(deleted)
    assert states["b20261203"] == "succeeded" and states["b20261201"] == "succeeded"
    assert states["b20260730"] == "deleted"


def test_run_backup_job_backs_up_then_applies_retention(backup_config, engine) -> None:
    old = backup_config.backup_dir / "old.dump"
    backup_config.backup_dir.mkdir(parents=True)
    old.write_bytes(b"PGDMP")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO mnw_backups (id, path, state, database_name, started_at,"
                " verified_at) VALUES ('old', :path, 'succeeded', 'db', :at, :at)"
            ),
            {"path": str(old), "at": dt.datetime(2020, 1, 1)},
        )
    result = backups.run_backup_job(backup_config, job_id="job-1")
    assert result["deleted"] == [str(old)] and not old.exists()
    assert Path(result["file"]).is_file()
    assert {row["job_id"] for row in rows(engine) if row["state"] == "succeeded"} == {"job-1"}


def test_restore_into_a_database_that_holds_tables_is_refused(
    backup_config, scratch_database, postgres_server: PostgresServer
) -> None:
    view = backups.make_backup(backup_config)
    connection = psycopg2.connect(scratch_database)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE precious (id int)")
    connection.close()
    target = pg_tools.database_name(scratch_database)
    with pytest.raises(RestoreRefusedError, match="is not empty"):
        backups.restore(backup_config, Path(view.path), into=target)


def test_restore_over_the_live_database_needs_over_live(backup_config) -> None:
    view = backups.make_backup(backup_config)
    live = pg_tools.database_name(backup_config.database_url)
    with pytest.raises(RestoreRefusedError, match="--over-live"):
        backups.restore(backup_config, Path(view.path), into=live)
