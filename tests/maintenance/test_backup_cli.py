"""`medianest-workers backup now|list|verify|restore` (runtime/backup_cli.py) on real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from medianest_workers.maintenance import pg_tools
from medianest_workers.runtime.cli import build_parser
from medianest_workers.settings import reset_settings_cache
from tests.maintenance.conftest import files_in

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def backup_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session_factory) -> Iterator[Path]:
    folder = tmp_path / "cli-backups"
    monkeypatch.setenv("BACKUP_DIR", str(folder))
    reset_settings_cache()
    yield folder
    monkeypatch.undo()
    reset_settings_cache()


def run(*argv: str) -> int:
    args = build_parser().parse_args(["backup", *argv])
    return args.handler(args)


def now(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert run("now", *argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_backup_now_then_list(backup_dir: Path, medianest_rows, capsys) -> None:
    made = now(capsys)
    assert made["state"] == "succeeded" and made["deleted"] == []
    assert files_in(backup_dir) == [Path(made["path"]).name]
    assert made["row_counts"]["users"] == medianest_rows["users"]

    assert run("list") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["STARTED", "(UTC)", "STATE"]
    assert "succeeded" in table[1] and Path(made["path"]).name in table[1]

    assert run("list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)["backups"]
    assert [entry["id"] for entry in listed] == [made["id"]]


def test_backup_now_with_a_restore_check(backup_dir: Path, medianest_rows, capsys) -> None:
    made = now(capsys, "--restore-check")
    assert made["restore_check_ok"] is True
    assert made["restore_counts"] == made["row_counts"]


def test_an_empty_list(backup_dir: Path, capsys) -> None:
    assert run("list") == 0
    assert capsys.readouterr().out == "no backups\n"


def test_verify_by_name_and_a_bad_file(backup_dir: Path, capsys) -> None:
    made = now(capsys)
    assert run("verify", Path(made["path"]).name) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["ok"] is True and verified["recorded"] is True
    assert verified["sha256"] == made["sha256"]

    bad = backup_dir / "bad.dump"
    bad.write_bytes(b"not a dump at all")
    assert run("verify", str(bad)) == 1
    err = capsys.readouterr().err
    assert err.startswith("medianest-workers: verify failed: BackupVerifyError:")
    assert err.count("\n") == 1

    assert run("verify", "missing.dump") == 1
    assert "no backup file 'missing.dump'" in capsys.readouterr().err


def test_restore_into_a_new_database(backup_dir: Path, medianest_rows, capsys, database_url):
    made = now(capsys)
    target = f"mnw_cli_restore_{os.getpid()}"
    try:
        assert run("restore", made["path"], "--into", target) == 0
        restored = json.loads(capsys.readouterr().out)
        assert restored["created"] is True
        assert restored["row_counts"] == made["row_counts"]
        # Now it holds tables: a second restore into it is refused.
        assert run("restore", made["path"], "--into", target) == 1
        assert "is not empty" in capsys.readouterr().err
    finally:
        from medianest_workers.db import admin  # noqa: PLC0415

        admin.drop_database(database_url, target)


def test_restore_over_the_live_database_is_refused_without_the_flag(
    backup_dir: Path, medianest_rows, capsys, database_url: str
) -> None:
    """Through the real entry point: exit 1 and one line; with --over-live it restores."""
    made = now(capsys)
    live = pg_tools.database_name(database_url)
    env = {**os.environ, "BACKUP_DIR": str(backup_dir), "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "medianest_workers.runtime.cli", "backup", "restore"]
    refused = subprocess.run(
        [*command, made["path"], "--into", live],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"medianest-workers: refusing to restore over the live database {live!r}"
        " (DATABASE_URL's own): pass --over-live to replace its contents, or restore --into"
        " another name"
    ]
    assert refused.stdout == ""

    replaced = subprocess.run(
        [*command, made["path"], "--into", live, "--over-live"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads(replaced.stdout)["row_counts"] == made["row_counts"]


def test_bad_arguments_exit_2(backup_dir: Path, capsys) -> None:
    for argv in (["restore", "x.dump"], ["verify"], ["list", "--limit", "0"], ["nope"]):
        with pytest.raises(SystemExit) as caught:
            run(*argv)
        assert caught.value.code == 2
    capsys.readouterr()


def test_backup_now_refuses_with_one_line_when_pg_dump_is_missing(
    backup_dir: Path, capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PG_DUMP_PATH", str(tmp_path / "absent" / "pg_dump"))
    reset_settings_cache()
    assert run("now") == 1
    err = capsys.readouterr().err
    assert err.startswith("medianest-workers: backup failed: PgToolNotFoundError: PG_DUMP_PATH:")
    assert err.count("\n") == 1
    assert files_in(backup_dir) == []
