"""A real worker proves it is alive (liveness file, Redis record) and checks its budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from medianest_workers.platform.presence import presence_key_pattern
from tests.helpers import wait_for
from tests.ops.conftest import start_cli, stop

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = ["worker", "--queues", "health,maintenance", "--concurrency", "1"]


def _worker(tmp_path: Path, **env: str) -> subprocess.Popen[bytes]:
    return start_cli(WORKER, tmp_path / "worker.log", **env)


def test_worker_touches_its_liveness_file_and_registers_its_queues(
    tmp_path: Path, redis_server_url: str, redis_prefix: str
) -> None:
    alive = tmp_path / "alive"
    process = _worker(
        tmp_path, WORKER_LIVENESS_FILE=str(alive), WORKER_LIVENESS_INTERVAL_SECONDS="0.5"
    )
    client = redis.Redis.from_url(redis_server_url)
    try:
        wait_for(alive.exists, timeout=60, what="the liveness file")
        first = alive.stat().st_mtime
        wait_for(lambda: alive.stat().st_mtime > first, timeout=10, what="a second touch")
        keys = wait_for(
            lambda: list(client.scan_iter(match=presence_key_pattern(redis_prefix))),
            timeout=10,
            what="the presence record",
        )
        record = json.loads(client.get(keys[0]))
        assert record["queues"] == ["health", "maintenance"]
        assert record["processes"] == 1
        command = [sys.executable, "-m", "medianest_workers.runtime.cli", "worker-alive"]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "WORKER_LIVENESS_FILE": str(alive)}
        assert subprocess.run(command, env=env, cwd=REPO_ROOT, check=False).returncode == 0
    finally:
        stop(process)
        client.close()
    assert not list(client.scan_iter(match=presence_key_pattern(redis_prefix)))


def test_worker_refuses_to_start_beyond_the_connection_budget(tmp_path: Path) -> None:
    process = _worker(tmp_path, DB_RESERVED_CONNECTIONS="100000")
    try:
        process.wait(timeout=60)
    finally:
        stop(process)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert process.returncode == 2
    assert "medianest-workers: WORKER_CONCURRENCY: 1 process(es)" in log
    assert "DB_RESERVED_CONNECTIONS 100000" in log


def test_queues_counts_the_consumers_of_several_workers(
    tmp_path: Path, redis_server_url: str, redis_prefix: str, session_factory: object
) -> None:
    """ops/multi-host.md: workers of several hosts show up per queue in `queues` (presence)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "WORKER_LIVENESS_INTERVAL_SECONDS": "0.5"}
    workers = [
        start_cli(
            ["worker", "--queues", queues, "--concurrency", "1"],
            tmp_path / f"w{number}.log",
            WORKER_LIVENESS_INTERVAL_SECONDS="0.5",
        )
        for number, queues in enumerate(("media,health", "health,maintenance"))
    ]
    command = [sys.executable, "-m", "medianest_workers.runtime.cli", "queues", "--json"]

    def consumers() -> dict[str, int] | None:
        out = subprocess.run(
            command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
        counts = {row["queue"]: row["consumers"] for row in json.loads(out.stdout)}
        return counts if counts["health"] == 2 else None

    try:
        counts = wait_for(consumers, timeout=90, what="both workers' presence records")
        assert counts == {"media": 1, "downloads": 0, "health": 2, "maintenance": 1}
    finally:
        for process in workers:
            stop(process)
