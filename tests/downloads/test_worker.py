"""The download job on a real Celery worker: progress through the API, cancel mid-file, a
worker killed mid-download, the pickup of the backend's rows, download.finished."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from medianest_workers.api.app import create_app
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.settings import reset_settings_cache
from tests.downloads.conftest import (
    DOWNLOAD_ENV,
    archive_rows,
    backend_row,
    download_row,
    entries,
    media_files,
)
from tests.downloads.feed_server import Entry, FeedServer
from tests.helpers import wait_for

# The platform's worker fixtures are shared, not copied (the autouse ones apply here too).
from tests.platform.conftest import (
    _empty_queues,
    _fast_heartbeats,
    job_row,
    start_worker,
    wait_terminal,
)

__all__ = ["_empty_queues", "_fast_heartbeats", "start_worker"]

API_KEY = "downloads-worker-key-0123456789"


@pytest.fixture
def client(
    download_env: Path, monkeypatch: pytest.MonkeyPatch, session_factory
) -> Iterator[TestClient]:
    monkeypatch.setenv("API_KEYS", API_KEY)
    reset_settings_cache()
    with TestClient(create_app(), headers={"X-API-Key": API_KEY}) as test_client:
        yield test_client


def _worker(start_worker, root: Path):
    return start_worker(queues="downloads", concurrency=1, DOWNLOAD_ROOT=str(root), **DOWNLOAD_ENV)


def _post(client: TestClient, user: str, url: str) -> str:
    response = client.post(
        "/v1/jobs",
        json={"kind": "downloads.playlist", "payload": {"user_id": user, "url": url}},
    )
    assert response.status_code in (200, 201, 202), response.text
    return response.json()["id"]


def _folder_of(root: Path, user: str) -> Path:
    return wait_for(lambda: next((p for p in (root / user).glob("*") if p.is_dir()), None))


def test_progress_shows_in_the_api_and_cancel_stops_mid_file(
    client: TestClient,
    engine: Engine,
    user: str,
    feed: FeedServer,
    download_env: Path,
    start_worker,
) -> None:
    feed.drip_bytes, feed.drip_interval = 512, 0.3  # ~12 s for the file
    feed.entries = [Entry("slow01", "Slow video", "slow"), *entries(1)]
    worker = _worker(start_worker, download_env)
    job_id = _post(client, user, feed.feed_url)

    def dripping() -> dict | None:
        progress = client.get(f"/v1/jobs/{job_id}").json().get("progress") or {}
        return progress if (progress.get("bytes") or 0) > 2048 else None

    progress = wait_for(dripping, timeout=60, what="progress of the slow entry")
    assert (progress["entry"], progress["entries"]) == (1, 2)
    assert progress["title"] == "Slow video"
    assert progress["total_bytes"] == len(feed.media)
    assert progress["bytes"] < len(feed.media)
    folder = _folder_of(download_env, user)
    assert any(path.name.endswith(".part") for path in folder.iterdir())

    asked = time.monotonic()
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202, response.text  # running: it stops at its next check
    row = wait_terminal(engine, job_id, timeout=30)
    took = time.monotonic() - asked
    assert row["state"] == "cancelled", worker.log()
    assert took < 5, took  # a heartbeat and a chunk, not the 12 s the file takes
    download = download_row(engine, job_id)
    assert download["status"] == "cancelled"
    assert download["file_paths"]["error"] == "cancelled"
    assert download["completed_at"] is None
    assert list(folder.iterdir()) == []  # the partial file is gone
    assert archive_rows(engine, user) == []


def test_a_worker_killed_mid_download_resumes_without_duplicates(
    engine: Engine,
    user: str,
    feed: FeedServer,
    download_env: Path,
    start_worker,
) -> None:
    feed.drip_bytes, feed.drip_interval = 1024, 0.15  # ~3 s for the slow entry
    feed.entries = [*entries(2), Entry("slow02", "Slow video", "slow"), *entries(1, 2)]
    worker = _worker(start_worker, download_env)
    job = enqueue("downloads.playlist", {"user_id": user, "url": feed.feed_url})

    def slow_entry_running() -> str | None:
        row = job_row(engine, job.job_id)
        progress = row["progress"] or {}
        if progress.get("entry") == 3 and (progress.get("bytes") or 0) > 0:
            return row["worker"]
        return None

    held_by = wait_for(slow_entry_running, timeout=60, what="the slow entry downloading")
    os.kill(int(held_by.rpartition(":")[2]), signal.SIGKILL)
    row = wait_terminal(engine, job.job_id, timeout=90)
    assert row["state"] == "succeeded", worker.log()
    assert row["attempts"] == 2
    assert row["result"]["downloaded"] == 2  # the slow one again, and the last
    assert row["result"]["already_downloaded"] == 2
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, status FROM youtube_downloads WHERE user_id = :u"), {"u": user}
        ).all()
    assert [tuple(r) for r in rows] == [(job.job_id, "completed")]
    archived = archive_rows(engine, user)
    assert sorted(r["video_id"] for r in archived) == ["slow02", "vid000", "vid001", "vid002"]
    folder = _folder_of(download_env, user)
    assert len(media_files(folder)) == 4
    assert not [p for p in folder.iterdir() if p.name.endswith((".part", ".ytdl"))]
    files = download_row(engine, job.job_id)["file_paths"]["files"]
    assert sorted(item["filename"] for item in files) == sorted(p.name for p in media_files(folder))


def test_pickup_enqueues_each_backend_row_once(
    engine: Engine,
    user: str,
    feed: FeedServer,
    download_env: Path,
    start_worker,
) -> None:
    feed.entries = entries(2)
    first = backend_row(engine, user, feed.feed_url)
    second = backend_row(engine, user, feed.feed_url, status="completed")  # not for pickup
    job = enqueue("downloads.pickup", {})
    again = enqueue("downloads.pickup", {})
    _worker(start_worker, download_env)
    assert wait_terminal(engine, job.job_id)["result"] == {"enqueued": 1, "existing": 0}
    assert wait_terminal(engine, again.job_id)["result"] == {"enqueued": 0, "existing": 0}
    with engine.connect() as connection:
        jobs = connection.execute(
            text(
                "SELECT id FROM mnw_jobs WHERE kind = 'downloads.playlist'"
                " AND payload ->> 'download_id' = :d"
            ),
            {"d": first},
        ).all()
    assert len(jobs) == 1
    wait_for(lambda: download_row(engine, first)["status"] == "completed", timeout=60)
    assert download_row(engine, first)["file_paths"]["jobId"] == jobs[0].id
    assert download_row(engine, second)["file_paths"] is None
    # A pickup after the end enqueues nothing (the row is no longer queued).
    third = enqueue("downloads.pickup", {})
    assert wait_terminal(engine, third.job_id)["result"] == {"enqueued": 0, "existing": 0}
    # The backend queues the row again: it gets a new job (its second run), once.
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE youtube_downloads SET status = 'queued' WHERE id = :id"), {"id": first}
        )
    fourth = enqueue("downloads.pickup", {})
    done = wait_terminal(engine, fourth.job_id)
    assert done["result"] == {"enqueued": 1, "existing": 0}, done
    wait_for(lambda: download_row(engine, first)["status"] == "completed", timeout=60)
    assert download_row(engine, first)["file_paths"]["run"] == 2
    with engine.connect() as connection:
        keys = connection.execute(
            text(
                "SELECT idempotency_key FROM mnw_jobs WHERE kind = 'downloads.playlist'"
                " ORDER BY enqueued_at"
            )
        ).scalars()
        assert list(keys) == [f"downloads.playlist:{first}:0", f"downloads.playlist:{first}:1"]


def test_pickup_fails_rows_left_downloading_by_a_dead_job(
    engine: Engine, user: str, feed: FeedServer, download_env: Path, start_worker
) -> None:
    download_id = backend_row(engine, user, feed.feed_url, status="downloading")
    job = enqueue("downloads.playlist", {"download_id": download_id, "quality": "720p"})
    with engine.begin() as connection:  # what a worker killed at every attempt leaves
        connection.execute(
            text("UPDATE mnw_jobs SET state = 'dead', finished_at = now() WHERE id = :id"),
            {"id": job.job_id},
        )
    pickup = enqueue("downloads.pickup", {})
    _worker(start_worker, download_env)
    assert wait_terminal(engine, pickup.job_id)["result"] == {
        "enqueued": 0,
        "existing": 0,
        "abandoned": 1,
    }
    row = download_row(engine, download_id)
    assert row["status"] == "failed"
    assert row["file_paths"] == {
        "jobId": job.job_id,
        "error": "the download job ended dead without finishing",
        "quality": "720p",
        "format": "mp4",
    }
