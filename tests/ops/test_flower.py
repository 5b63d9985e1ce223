"""Flower as an operator sees it: a real worker and a real Flower on loopback.

`medianest-workers worker` (the real job catalog, all four queues) and `medianest-workers
flower` (basic auth, as `up` and compose start it) run as processes; jobs of every family
(system, requests, downloads, health, maintenance) are enqueued, and Flower's HTTP API must
show the worker online, every task under its job kind with the state the ledger has, task
arguments without payloads (the message carries the job id only), and all four queues with
their lengths. `ops/flower-screenshot` opens the dashboard
in headless Chromium (skipped where Chromium is absent).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from medianest_workers.platform.enqueue import enqueue
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import load_job_modules
from tests.helpers import wait_for
from tests.ops.conftest import FLOWER_PASSWORD, FLOWER_USER, ROOT, Flower, start_cli, stop

#: One job per family with job kinds, and the state each must end in (no Overseerr is
#: configured: requests.sync fails at once with NotConfiguredError; downloads.plex_sync of a
#: youtube_downloads row that does not exist fails at once with DownloadRowError: both
#: permanent errors).
JOBS: list[tuple[str, dict[str, Any], str, str]] = [
    ("platform.noop", {}, "succeeded", "SUCCESS"),
    ("requests.sync", {"full": False}, "failed", "FAILURE"),
    ("downloads.plex_sync", {"download_id": "no-such-download"}, "failed", "FAILURE"),
    ("health.check_all", {}, "succeeded", "SUCCESS"),
    ("maintenance.cleanup", {"targets": ["rate_limits"]}, "succeeded", "SUCCESS"),
]
PAYLOAD_SECRET = "the-payload-is-not-in-the-message"


@pytest.fixture
def worker(tmp_path: Path, redis_client: Any, redis_prefix: str) -> Iterator[Callable[[], None]]:
    processes = []

    def start() -> None:
        processes.append(
            start_cli(
                [
                    "worker",
                    "--queues",
                    ",".join(queue.value for queue in Queue),
                    "--concurrency",
                    "2",
                ],
                tmp_path / "worker.log",
                HEALTH_PLATFORM_CHECKS="false",  # no backend keys written outside our prefix
                OVERSEERR_URL="",
                OVERSEERR_API_KEY="",
            )
        )

    try:
        yield start
    finally:
        for process in processes:
            stop(process)
        keys = list(redis_client.scan_iter(match=f"{redis_prefix}*"))
        if keys:
            redis_client.delete(*keys)


def _ledger_state(engine: Engine, job_id: str) -> str:
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT state FROM mnw_jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one()


def test_flower_refuses_without_the_password(start_flower: Callable[..., Flower]) -> None:
    flower = start_flower()
    assert httpx.get(f"{flower.url}/api/workers", timeout=10).status_code == 401
    wrong = httpx.get(f"{flower.url}/api/workers", auth=(FLOWER_USER, "wrong"), timeout=10)
    assert wrong.status_code == 401
    assert flower.get("/api/workers").status_code == 200


def test_flower_shows_the_worker_every_familys_tasks_and_the_queues(
    session_factory: object,
    engine: Engine,
    start_flower: Callable[..., Flower],
    worker: Callable[[], None],
) -> None:
    load_job_modules()
    flower = start_flower(FLOWER_PURGE_OFFLINE_WORKERS_SECONDS="300")
    # Before any worker runs: the four queues, with what waits in them.
    waiting = [enqueue("platform.noop", {}), enqueue("platform.noop", {})]
    lengths = {
        queue["name"]: queue["messages"]
        for queue in flower.get("/api/queues/length").json()["active_queues"]
    }
    assert lengths == {"media": 0, "downloads": 0, "health": 0, "maintenance": 2}

    worker()
    jobs = [
        (enqueue(kind, payload), state, task_state) for kind, payload, state, task_state in JOBS
    ]
    for handle, state, _ in jobs:
        wait_for(
            lambda handle=handle: _ledger_state(engine, handle.job_id) in ("succeeded", "failed"),
            timeout=90,
            what=f"{handle.job_id} to end",
        )
        assert _ledger_state(engine, handle.job_id) == state

    online = wait_for(
        lambda: {
            name: alive
            for name, alive in flower.get("/api/workers", status="true").json().items()
            if alive
        },
        timeout=30,
        what="Flower to see the worker online",
    )
    (node,) = online
    assert node.startswith("mnw-media-downloads-health-maintenance@")

    def tasks_seen() -> dict[str, Any] | None:
        tasks = flower.get("/api/tasks").json()
        wanted = [handle.job_id for handle, _, _ in jobs] + [h.job_id for h in waiting]
        ready = all(
            tasks.get(job_id, {}).get("state") in ("SUCCESS", "FAILURE") for job_id in wanted
        )
        return tasks if ready else None

    tasks = wait_for(tasks_seen, timeout=30, what="Flower to list every task with its end state")
    for (kind, _payload, _state, task_state), (handle, _, _) in zip(JOBS, jobs, strict=True):
        task = tasks[handle.job_id]  # the task id is the job id
        assert task["name"] == kind
        assert task["state"] == task_state, (kind, task)
        assert task["worker"] == node
        # Ids only: the message holds no arguments, the payload stays in the ledger.
        assert task["args"] in ("()", "[]"), task["args"]
        assert task["kwargs"] == "{}", task["kwargs"]
    assert "NotConfiguredError" in (tasks[jobs[1][0].job_id].get("exception") or "")
    assert "DownloadRowError" in (tasks[jobs[2][0].job_id].get("exception") or "")
    for handle in waiting:
        assert tasks[handle.job_id]["name"] == "platform.noop"

    types = flower.get("/api/task/types").json()["task-types"]
    assert {kind for kind, *_ in JOBS} <= set(types)
    lengths = {
        queue["name"]: queue["messages"]
        for queue in flower.get("/api/queues/length").json()["active_queues"]
    }
    assert lengths == {"media": 0, "downloads": 0, "health": 0, "maintenance": 0}


def test_a_payload_never_reaches_flower(
    session_factory: object,
    engine: Engine,
    start_flower: Callable[..., Flower],
    worker: Callable[[], None],
) -> None:
    load_job_modules()
    flower = start_flower()
    worker()
    handle = enqueue(
        "maintenance.rotate_key",
        {"old_key_file": f"/nonexistent/{PAYLOAD_SECRET}", "new_key_file": "/nonexistent/new"},
    )
    wait_for(
        lambda: _ledger_state(engine, handle.job_id) in ("failed", "succeeded"),
        timeout=90,
        what="the rotation job to end",
    )
    task = wait_for(
        lambda: (
            flower.get(f"/api/task/info/{handle.job_id}").json()
            if flower.get(f"/api/task/info/{handle.job_id}").status_code == 200
            else None
        ),
        timeout=30,
        what="Flower to know the task",
    )
    assert task["name"] == "maintenance.rotate_key"
    assert PAYLOAD_SECRET not in str(task.get("args")) + str(task.get("kwargs"))


def test_flower_screenshot_of_the_dashboard(
    session_factory: object,
    start_flower: Callable[..., Flower],
    worker: Callable[[], None],
    tmp_path: Path,
) -> None:
    """The tasks page once every family's job ended (the PNG is left in tmp_path)."""
    chromium = next(
        (
            path
            for name in ("chromium", "chromium-browser", "google-chrome")
            if (path := shutil.which(name))
        ),
        None,
    )
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package chromium): no screenshot")
    load_job_modules()
    flower = start_flower()
    worker()
    handles = [enqueue(kind, payload) for kind, payload, _state, _task_state in JOBS]

    def all_ended() -> bool:
        tasks = flower.get("/api/tasks").json()
        return all(
            tasks.get(handle.job_id, {}).get("state") in ("SUCCESS", "FAILURE")
            for handle in handles
        )

    wait_for(all_ended, timeout=90, what="Flower to show every task ended")
    output = tmp_path / "flower.png"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "ops" / "flower-screenshot"),
            flower.url,
            str(output),
            "--page",
            "tasks",
        ],
        env={
            "PATH": "/usr/bin:/bin",
            "FLOWER_USER": FLOWER_USER,
            "FLOWER_PASSWORD": FLOWER_PASSWORD,
            "CHROMIUM": chromium,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    png = output.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
