"""Beat's healthcheck (`medianest-workers beat-alive`, docker-compose.yml) against a real beat.

A running beat touches BEAT_LIVENESS_FILE after every tick: the check passes; a beat not
started, stalled (SIGSTOP: its loop frozen) or waiting for another beat's lock fails it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from medianest_workers.platform.presence import touch
from medianest_workers.runtime.cli import main
from medianest_workers.settings import reset_settings_cache
from tests.conftest import delete_keys
from tests.helpers import wait_for
from tests.ops.conftest import ROOT, start_cli, stop

BEAT_ENV = {
    "JOB_CATALOG": "tests.platform.sample_catalog",
    "BEAT_SCHEDULE_MODULE": "tests.platform.sample_schedule",
    "BEAT_MAX_INTERVAL_SECONDS": "0.5",
    "BEAT_LOCK_TIMEOUT_SECONDS": "3",
}


def beat_alive(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`medianest-workers beat-alive ARGV` as a container's healthcheck runs it."""
    return subprocess.run(
        [sys.executable, "-m", "medianest_workers.runtime.cli", "beat-alive", *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **BEAT_ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass(frozen=True)
class Beat:
    """A running `medianest-workers beat` of the test and the liveness file it touches."""

    alive: Path
    process: subprocess.Popen[bytes]


@pytest.fixture
def start_beat(
    tmp_path: Path, session_factory: object, redis_server_url: str, redis_prefix: str
) -> Iterator[Callable[..., Beat]]:
    """`start_beat(name, **env)`: a real beat touching `tmp_path/name`; each is stopped after
    the test (resumed first, if the test stopped it with SIGSTOP), then the messages it
    published and its schedule state are deleted (the run's Redis keys) with its jobs."""
    beats: list[Beat] = []

    def start(name: str, **env: str) -> Beat:
        alive = tmp_path / name
        process = start_cli(
            ["beat"],
            tmp_path / f"{name}.log",
            **{**BEAT_ENV, "BEAT_LIVENESS_FILE": str(alive), **env},
        )
        beats.append(Beat(alive=alive, process=process))
        return beats[-1]

    try:
        yield start
    finally:
        for beat in beats:
            if beat.process.poll() is None:
                os.killpg(beat.process.pid, signal.SIGCONT)
            stop(beat.process)
        delete_keys(redis_server_url, redis_prefix)


def _touched_again(alive: Path) -> Callable[[], bool]:
    first = alive.stat().st_mtime
    return lambda: alive.stat().st_mtime > first


def test_beat_alive_passes_while_beat_ticks_and_fails_when_it_stalls(
    tmp_path: Path, start_beat: Callable[..., Beat]
) -> None:
    alive = tmp_path / "beat.alive"
    missing = beat_alive("--file", str(alive))
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"beat-alive: {alive} does not exist (beat not started, or waiting for the lock?)"
    )

    beat = start_beat("beat.alive", BEAT_LOCK_TIMEOUT_SECONDS="8")
    wait_for(alive.exists, timeout=60, what="beat's liveness file")
    wait_for(_touched_again(alive), timeout=10, what="a second tick")
    assert beat_alive("--file", str(alive)).returncode == 0  # the compose healthcheck
    assert beat_alive(BEAT_LIVENESS_FILE=str(alive)).returncode == 0  # the defaults

    os.killpg(beat.process.pid, signal.SIGSTOP)  # a stalled loop: no tick, no touch
    check = ("--file", str(alive), "--max-age", "1")

    def failed() -> subprocess.CompletedProcess[str] | None:
        result = beat_alive(*check)
        return result if result.returncode == 1 else None

    stale = wait_for(failed, 15, "a stale check")
    assert stale.stderr.startswith(f"beat-alive: {alive} is ")
    assert stale.stderr.strip().endswith("s old (more than 1s)")

    os.killpg(beat.process.pid, signal.SIGCONT)  # within its lock: it ticks on
    wait_for(lambda: beat_alive(*check).returncode == 0, 30, "beat to tick again")
    assert beat.process.poll() is None


def test_a_beat_stalled_past_its_lock_fails_the_check_and_exits_when_resumed(
    tmp_path: Path, start_beat: Callable[..., Beat]
) -> None:
    """BEAT_LOCK_TIMEOUT_SECONDS (3 here) is the check's default age: past it another beat may
    hold the lock; this one exits when it resumes (compose's restart policy starts it again)."""
    beat = start_beat("beat.alive")
    wait_for(beat.alive.exists, timeout=60, what="beat's liveness file")
    os.killpg(beat.process.pid, signal.SIGSTOP)
    env = {"BEAT_LIVENESS_FILE": str(beat.alive)}
    wait_for(lambda: beat_alive(**env).returncode == 1, 15, "the check to fail")
    assert "s old (more than 3s)" in beat_alive(**env).stderr
    os.killpg(beat.process.pid, signal.SIGCONT)
    assert beat.process.wait(timeout=30) != 0
    assert "LockNotOwnedError" in (tmp_path / "beat.alive.log").read_text(errors="replace")
    assert beat_alive(**env).returncode == 1


def test_a_beat_waiting_for_the_lock_is_not_alive(
    tmp_path: Path, start_beat: Callable[..., Beat]
) -> None:
    active = start_beat("active.alive").alive
    wait_for(active.exists, timeout=60, what="the first beat's liveness file")
    standby = tmp_path / "standby.alive"
    touch(standby)  # left by an earlier run: a starting beat removes it
    start_beat("standby.alive")
    wait_for(lambda: not standby.exists(), timeout=60, what="the stale file removed")
    wait_for(_touched_again(active), timeout=10, what="the first beat ticking on")
    assert not standby.exists()  # no tick while another beat holds the lock
    assert beat_alive("--file", str(standby)).returncode == 1
    assert beat_alive("--file", str(active)).returncode == 0


def test_beat_alive_reads_its_age_against_the_lock_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "beat.alive"
    monkeypatch.setenv("BEAT_LOCK_TIMEOUT_SECONDS", "25")
    monkeypatch.delenv("BEAT_LIVENESS_FILE", raising=False)
    reset_settings_cache()
    try:
        assert main(["beat-alive"]) == 2  # no file named: a configuration error
        assert "BEAT_LIVENESS_FILE: not set (or give --file)" in capsys.readouterr().err
        touch(path)
        old = time.time() - 24
        os.utime(path, (old, old))
        assert main(["beat-alive", "--file", str(path)]) == 0  # younger than the lock
        old = time.time() - 26
        os.utime(path, (old, old))
        assert main(["beat-alive", "--file", str(path)]) == 1
        assert "s old (more than 25s)" in capsys.readouterr().err
        assert main(["beat-alive", "--file", str(path), "--max-age", "60"]) == 0
    finally:
        monkeypatch.undo()
        reset_settings_cache()
