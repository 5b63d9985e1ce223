"""`downloads.plex_sync` as a job: chained from `download.finished`, retried on a real worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

import medianest_workers.downloads.tasks  # noqa: F401  (subscribes the listener)
from medianest_workers.platform import events
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.platform.errors import PayloadInvalidError
from tests.downloads_plex.conftest import USER_ID, Backend
from tests.downloads_plex.fake_plex import TOKEN, FakePlex
from tests.helpers import wait_for
from tests.platform.conftest import job_row, wait_terminal

KIND = "downloads.plex_sync"


def finished(download_id: str, occurrence: str, **fields: object) -> events.Event:
    return events.Event(
        name="download.finished",
        subject=f"download:{download_id}",
        summary="Download finished",
        dedup_key=f"download.finished:{download_id}:{occurrence}",
        fields={
            "download_id": download_id,
            "status": "completed",
            "downloaded": 3,
            "failed": 0,
            "playlist_title": "Lo-fi Beats",
            "user_id": USER_ID,
            **fields,
        },
    )


def sync_jobs(engine: Engine) -> list[dict]:
    with engine.connect() as connection:
        return [
            dict(row)
            for row in connection.execute(
                text("SELECT * FROM mnw_jobs WHERE kind = :kind ORDER BY enqueued_at"),
                {"kind": KIND},
            ).mappings()
        ]


def test_a_finished_download_enqueues_one_plex_sync(
    engine: Engine, backend: Backend, plex_env: Path
) -> None:
    backend.user()
    download_id = backend.download([])
    event = finished(download_id, "run-1")
    assert events.emit(event) >= 1
    assert events.emit(event) >= 1  # the same occurrence announced again: still one job
    jobs = sync_jobs(engine)
    assert len(jobs) == 1
    job = jobs[0]
    assert job["payload"] == {"download_id": download_id}
    assert job["queue"] == "media" and job["state"] == "queued"
    assert job["idempotency_key"] == f"{KIND}:{event.dedup_key}"
    assert job["user_id"] == USER_ID and job["enqueued_by"] == "events"

    events.emit(finished(download_id, "run-2"))  # a later download of it: a sync of its own
    assert len(sync_jobs(engine)) == 2


@pytest.mark.parametrize(
    ("status", "downloaded", "wanted"),
    [
        ("completed", 0, True),  # nothing new, but an earlier sync may have given up
        ("failed", 2, True),  # a fatal stop after two entries: those two go to Plex
        ("failed", 0, False),
        ("cancelled", 1, False),  # the user stopped it
    ],
)
def test_which_finished_downloads_sync(
    engine: Engine, backend: Backend, status: str, downloaded: int, wanted: bool
) -> None:
    backend.user()
    download_id = backend.download([])
    events.emit(finished(download_id, "x", status=status, downloaded=downloaded))
    assert len(sync_jobs(engine)) == (1 if wanted else 0)


def test_the_payload_is_the_row_id_only(session_factory: object, plex_env: Path) -> None:
    with pytest.raises(PayloadInvalidError, match="download_id"):
        enqueue(KIND, {})
    with pytest.raises(PayloadInvalidError, match="Extra inputs"):
        enqueue(KIND, {"download_id": "a", "token": TOKEN})
    with pytest.raises(PayloadInvalidError, match="download_id"):
        enqueue(KIND, {"download_id": "../etc"})
    row_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert enqueue(KIND, {"download_id": row_id}).row["payload"] == {"download_id": row_id}


def test_plex_down_then_up_the_job_retries_then_succeeds(
    engine: Engine,
    backend: Backend,
    fake: FakePlex,
    start_worker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLEX_SYNC_BACKOFF_BASE_SECONDS", "0.5")
    monkeypatch.setenv("PLEX_SYNC_BACKOFF_MAX_SECONDS", "1")
    monkeypatch.setenv("PLEX_SYNC_MAX_ATTEMPTS", "30")
    backend.user()
    backend.plex_service(fake.url)
    files = backend.files(backend.folder(), ["One", "Two", "Three"])
    download_id = backend.download(files)
    fake.go_down()
    worker = start_worker(queues="media")
    events.emit(finished(download_id, "run-1"))
    job_id = sync_jobs(engine)[0]["id"]

    def retried() -> dict | None:
        row = job_row(engine, job_id)
        return row if row["attempts"] >= 2 and row["state"] == "queued" else None

    waiting = wait_for(retried, timeout=60, what="the sync to fail twice and wait to retry")
    assert waiting["error_class"] == "PlexUnavailableError"
    assert "cannot be reached" in waiting["error_message"]
    assert backend.row(download_id)["status"] == "completed"  # the download is not touched

    fake.come_up()
    row = wait_terminal(engine, job_id, timeout=60)
    assert row["state"] == "succeeded", row
    assert row["attempts"] >= 3
    assert row["result"]["created"] is True and row["result"]["added"] == 3
    stored = backend.row(download_id)
    assert stored["plex_collection_id"] == row["result"]["collection_id"]
    assert stored["status"] == "completed"
    assert len(fake.collections[int(stored["plex_collection_id"])].items) == 3
    assert "retrying in" in worker.log()
    assert TOKEN not in worker.log() and TOKEN not in str(row)
