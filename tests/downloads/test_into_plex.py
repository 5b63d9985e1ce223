"""Issue 8 end to end on real workers: a backend row of a 20-entry loopback playlist is picked
up, downloaded by real yt-dlp into the user's folder, its `download.finished` enqueues the
Plex step, which scans exactly that folder in a loopback Plex and makes a collection of the 20
items; the playlist grows by two and a re-run adds exactly those two."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text

from medianest_workers.platform.enqueue import enqueue
from medianest_workers.security import crypto
from tests.downloads.conftest import DOWNLOAD_ENV, backend_row, download_row, entries, media_files
from tests.downloads.feed_server import FeedServer
from tests.downloads_plex.fake_plex import TOKEN, FakePlex
from tests.helpers import wait_for
from tests.platform.conftest import _empty_queues, _fast_heartbeats, start_worker, wait_terminal

__all__ = ["_empty_queues", "_fast_heartbeats", "start_worker"]

ENCRYPTION_KEY = "e" * 40
PLEX_ENV = {"PLEX_SCAN_POLL_SECONDS": "0.1", "PLEX_SCAN_WAIT_SECONDS": "20"}


def _plex_row(engine: Engine, url: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO service_config (service_name, service_url, api_key, enabled,"
                " updated_at) VALUES ('plex', :url, :key, true, now())"
            ),
            {"url": url, "key": crypto.encrypt_optional(TOKEN)},
        )


def _plex_jobs(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.scalars(
                text(
                    "SELECT id FROM mnw_jobs WHERE kind = 'downloads.plex_sync'"
                    " ORDER BY enqueued_at"
                )
            )
        )


def _collection_files(plex: FakePlex, key: str) -> list[str]:
    return sorted(Path(plex.items[item].file).name for item in plex.collections[int(key)].items)


def test_a_playlist_lands_in_the_folder_and_in_a_plex_collection(
    engine: Engine,
    user: str,
    feed: FeedServer,
    download_env: Path,
    start_worker,
    monkeypatch,
) -> None:
    monkeypatch.setenv("ENCRYPTION_KEY", ENCRYPTION_KEY)
    from medianest_workers.settings import reset_settings_cache  # noqa: PLC0415

    reset_settings_cache()
    root = download_env
    root.mkdir(parents=True, exist_ok=True)
    plex = FakePlex()
    try:
        plex.add_section("YouTube", locations=[str(root.resolve())])
        _plex_row(engine, plex.url)
        env = {
            **DOWNLOAD_ENV,
            **PLEX_ENV,
            "DOWNLOAD_ROOT": str(root),
            "ENCRYPTION_KEY": ENCRYPTION_KEY,
        }
        start_worker(queues="downloads,media", concurrency=2, **env)

        feed.entries = entries(20)
        download_id = backend_row(engine, user, feed.feed_url)  # the backend's queued row
        pickup = enqueue("downloads.pickup", {})
        assert wait_terminal(engine, pickup.job_id, timeout=60)["state"] == "succeeded"
        wait_for(
            lambda: download_row(engine, download_id)["status"] == "completed",
            timeout=180,
            what="the download to complete",
        )
        row = download_row(engine, download_id)
        names = sorted(f"Video {n} [vid{n:03d}].mp4" for n in range(20))
        assert sorted(item["filename"] for item in row["file_paths"]["files"]) == names
        [folder] = {Path(item["path"]).parent for item in row["file_paths"]["files"]}
        assert sorted(path.name for path in media_files(folder)) == names

        [first_sync] = wait_for(lambda: _plex_jobs(engine), timeout=60, what="the Plex step")
        assert wait_terminal(engine, first_sync, timeout=120)["state"] == "succeeded"
        row = download_row(engine, download_id)
        key = row["plex_collection_id"]
        assert key is not None
        assert plex.collections[int(key)].title == row["playlist_title"]
        assert _collection_files(plex, key) == names
        assert plex.refreshes() == [str(folder)]  # a partial scan of exactly that folder

        # The playlist grows by two; the backend queues the row again.
        feed.entries = entries(22)
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE youtube_downloads SET status = 'queued' WHERE id = :id"),
                {"id": download_id},
            )
        pickup = enqueue("downloads.pickup", {})
        assert wait_terminal(engine, pickup.job_id, timeout=60)["state"] == "succeeded"
        second_sync = wait_for(
            lambda: (jobs := _plex_jobs(engine))[1:] and jobs[1],
            timeout=180,
            what="the second Plex step",
        )
        assert wait_terminal(engine, second_sync, timeout=120)["state"] == "succeeded"
        grown = sorted(f"Video {n} [vid{n:03d}].mp4" for n in range(22))
        assert _collection_files(plex, key) == grown  # the same collection, 2 more items
        assert download_row(engine, download_id)["plex_collection_id"] == key
        assert len(media_files(folder)) == 22
    finally:
        plex.stop()
        reset_settings_cache()
