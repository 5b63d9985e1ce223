"""`medianest-workers enqueue` and `jobs list|show|cancel` (jobs_cli.py) on a real ledger."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import Engine

from medianest_workers.runtime.jobs_cli import add_job_commands
from tests.helpers import free_port
from tests.platform.conftest import REPO_ROOT, job_row


def run(*argv: str) -> int:
    """Parse `argv` as the main parser would (with the job commands added) and run it."""
    parser = argparse.ArgumentParser(prog="medianest-workers")
    commands = parser.add_subparsers(dest="command", required=True)
    add_job_commands(commands)
    args = parser.parse_args(argv)
    return args.handler(args)


def enqueued(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert run("enqueue", *argv) == 0
    return json.loads(capsys.readouterr().out)


def test_enqueue_prints_the_job_and_writes_the_row(engine: Engine, session_factory, capsys):
    job = enqueued(capsys, "platform.noop", '{"sleep": 0.25}')
    assert job["kind"] == "platform.noop"
    assert job["queue"] == "maintenance"
    assert job["state"] == "queued"
    assert job["created"] is True and job["published"] is True
    row = job_row(engine, job["id"])
    assert row["payload"] == {"sleep": 0.25}
    assert row["enqueued_by"] == "cli"


def test_enqueue_without_a_payload_sends_an_empty_one(engine, session_factory, capsys) -> None:
    job = enqueued(capsys, "platform.noop")
    assert job_row(engine, job["id"])["payload"] == {"sleep": 0.0}


def test_enqueue_with_an_idempotency_key_returns_the_same_job(session_factory, capsys) -> None:
    first = enqueued(capsys, "platform.noop", "{}", "--idempotency-key", "cli-1")
    again = enqueued(capsys, "platform.noop", "{}", "--idempotency-key", "cli-1")
    assert again["id"] == first["id"]
    assert again["created"] is False and again["published"] is None
    assert run("enqueue", "platform.noop", '{"sleep": 1}', "--idempotency-key", "cli-1") == 1
    assert "idempotency key" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("no.such_kind", "{}"), "unknown job kind 'no.such_kind'"),
        (("platform.noop", '{"sleep": "long"}'), "payload.sleep"),
        (("platform.noop", '{"other": 1}'), "payload.other"),
    ],
)
def test_enqueue_refusals_print_one_line_and_exit_1(
    engine, session_factory, capsys, argv, message
) -> None:
    assert run("enqueue", *argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("medianest-workers: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("enqueue", "platform.noop", "{not json"), "not valid JSON"),
        (("enqueue", "platform.noop", "[1]"), "must be a JSON object"),
        (("enqueue", "platform.noop", "{}", "--idempotency-key", " "), "must not be empty"),
        (("jobs", "list", "--limit", "0"), "between 1 and 500"),
        (("jobs", "list", "--limit", "many"), "not a whole number"),
        (("jobs", "list", "--state", "bogus"), "invalid choice"),
        (("jobs",), "required"),
        (("jobs", "show"), "required"),
    ],
)
def test_malformed_arguments_are_usage_errors(capsys, argv, message) -> None:
    with pytest.raises(SystemExit) as exited:
        run(*argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_jobs_list_prints_a_table_or_json_and_filters(session_factory, capsys) -> None:
    noop = enqueued(capsys, "platform.noop")
    effect = enqueued(capsys, "tests.effect")
    assert run("jobs", "list") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["ID", "KIND", "STATE"]
    assert table[1].startswith(effect["id"])  # newest first
    assert table[2].startswith(noop["id"])
    assert "0/3" in table[2]

    assert run("jobs", "list", "--json", "--kind", "tests.effect") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [job["id"] for job in listed["jobs"]] == [effect["id"]]
    assert listed["next_cursor"] is None

    assert run("jobs", "list", "--state", "succeeded") == 0
    assert capsys.readouterr().out == "no jobs\n"


def test_jobs_list_pages_with_the_cursor(session_factory, capsys) -> None:
    ids = [enqueued(capsys, "platform.noop")["id"] for _ in range(3)]
    assert run("jobs", "list", "--limit", "2") == 0
    out = capsys.readouterr().out
    cursor = out.splitlines()[-1].removeprefix("more: --cursor ")
    assert run("jobs", "list", "--limit", "2", "--json", "--cursor", cursor) == 0
    rest = json.loads(capsys.readouterr().out)
    assert [job["id"] for job in rest["jobs"]] == [ids[0]]
    assert run("jobs", "list", "--cursor", "garbage") == 1
    assert "cursor" in capsys.readouterr().err


def test_jobs_show_prints_the_job_or_refuses_an_unknown_id(session_factory, capsys) -> None:
    job = enqueued(capsys, "platform.noop", '{"sleep": 0}')
    assert run("jobs", "show", job["id"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == job["id"]
    assert shown["state"] == "queued"
    assert shown["payload"] == {"sleep": 0.0}
    assert shown["enqueued_at"].endswith("Z")  # UTC, written as the API writes it
    assert shown["error"] is None and "error_class" not in shown  # the API's shape
    missing = str(uuid.uuid4())
    assert run("jobs", "show", missing) == 1
    assert missing in capsys.readouterr().err


def test_jobs_cancel_a_queued_job_then_refuses_a_second_time(engine, session_factory, capsys):
    job = enqueued(capsys, "platform.noop")
    assert run("jobs", "cancel", job["id"]) == 0
    cancelled = json.loads(capsys.readouterr().out)
    assert cancelled == {
        "id": job["id"],
        "state": "cancelled",
        "cancel_requested": True,
        "outcome": "cancelled",
    }
    assert job_row(engine, job["id"])["state"] == "cancelled"
    assert run("jobs", "cancel", job["id"]) == 1
    assert "already cancelled" in capsys.readouterr().err
    assert run("jobs", "cancel", str(uuid.uuid4())) == 1
    assert "no job with id" in capsys.readouterr().err


def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path) -> None:
    """`jobs list` against a port where no PostgreSQL listens: exit 1, one clear line."""
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
        "DATA_DIR": str(tmp_path),
        "PYTHONPATH": str(REPO_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "medianest_workers.runtime.cli", "jobs", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("medianest-workers: cannot reach the database: ")
    assert "Traceback" not in done.stderr
