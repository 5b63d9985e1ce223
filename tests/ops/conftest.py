"""Fixtures of the operations tests: real `medianest-workers` processes on loopback.

Each process is started by the fixture that yields it and stopped (its whole process group)
when the test ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
FLOWER_USER = "operator"
FLOWER_PASSWORD = "test-flower-password"


@dataclass
class Flower:
    url: str
    auth: tuple[str, str]
    log_path: Path

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, auth=self.auth, timeout=15)


def start_cli(argv: list[str], log_path: Path, **env: str) -> subprocess.Popen[bytes]:
    """`medianest-workers ARGV` in its own process group, output to `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "medianest_workers.runtime.cli", *argv],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def answers(url: str, process: subprocess.Popen[bytes], log_path: Path | None = None) -> bool:
    if process.poll() is not None:
        log = log_path.read_text(errors="replace")[-3000:] if log_path else ""
        raise AssertionError(f"{process.args} exited with {process.returncode}\n{log}")
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def start_flower(tmp_path: Path) -> Iterator[Callable[..., Flower]]:
    """Start `medianest-workers flower` (basic auth, as compose and `up` run it)."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> Flower:
        port = free_port()
        log_path = tmp_path / f"flower{len(processes)}.log"
        process = start_cli(
            ["flower", "--address", "127.0.0.1", "--port", str(port)],
            log_path,
            FLOWER_USER=FLOWER_USER,
            FLOWER_PASSWORD=FLOWER_PASSWORD,
            **env,
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{url}/healthcheck", process, log_path), 60, "Flower")
        return Flower(url=url, auth=(FLOWER_USER, FLOWER_PASSWORD), log_path=log_path)

    try:
        yield start
    finally:
        for process in processes:
            stop(process)
