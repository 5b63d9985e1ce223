"""Limits: quota (oldest removed first, or refuse), disk full before and during, the hourly
limit, the maximum file size, the time limit; and the download.finished announcement."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from medianest_workers.db.session import get_engine
from medianest_workers.downloads import service, tasks
from medianest_workers.platform import events
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.errors import PermanentError, RetryableError
from tests.downloads.conftest import (
    Control,
    archive_rows,
    backend_row,
    download_row,
    entries,
    media_files,
)
from tests.downloads.feed_server import FeedServer


def _run(download_id: str, limits: service.Limits, control: Control | None = None):
    return service.run(
        get_engine().connect,
        download_id,
        quality="1080p",
        fmt="mp4",
        control=control or Control(),
        limits=limits,
    )


def _size(engine: Engine, user: str) -> int:
    return archive_rows(engine, user)[0]["size_bytes"]


def test_over_the_quota_the_oldest_files_are_removed_first(
    engine: Engine, user: str, feed: FeedServer, media: bytes, limits: service.Limits
) -> None:
    feed.entries = entries(2)
    first = backend_row(engine, user, feed.feed_url)
    assert _run(first, limits).downloaded == 2
    size = _size(engine, user)
    tight = dataclasses.replace(limits, quota_bytes=int(size * 2.5))
    other = FeedServer(media, title="Second Playlist")
    try:
        other.entries = entries(2, start=10)
        second = backend_row(engine, user, other.feed_url)
        report = _run(second, tight)
    finally:
        other.stop()
    assert (report.status, report.downloaded) == ("completed", 2)
    rows = {row["video_id"]: row for row in archive_rows(engine, user)}
    # Before the second playlist's second entry, and after its last: the two oldest go.
    assert rows["vid000"]["removed_at"] is not None
    assert rows["vid001"]["removed_at"] is not None
    assert rows["vid010"]["removed_at"] is None and rows["vid011"]["removed_at"] is None
    left = sorted(path.name for path in media_files(limits.root / user))
    assert left == ["Video 10 [vid010].mp4", "Video 11 [vid011].mp4"]
    # A re-run of the first playlist does not fetch the removed files again.
    assert _run(first, tight).downloaded == 0


def test_with_the_refuse_policy_a_download_stops_at_the_quota(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    feed.entries = entries(1)
    download_id = backend_row(engine, user, feed.feed_url)
    assert _run(download_id, limits).downloaded == 1
    size = _size(engine, user)
    feed.entries = entries(4)
    refusing = dataclasses.replace(limits, quota_bytes=int(size * 2.5), quota_policy="refuse")
    report = _run(download_id, refusing)
    assert report.status == "failed"
    assert "quota" in report.error and "DOWNLOAD_USER_QUOTA_BYTES" in report.error
    assert report.downloaded == 2  # to 3 files (over 2.5), then the next entry is refused
    row = download_row(engine, download_id)
    assert row["status"] == "failed"
    assert "quota" in row["file_paths"]["error"]
    assert len(row["file_paths"]["files"]) == 3
    # Already at the quota: refused before anything is fetched.
    again = _run(download_id, refusing)
    assert (again.status, again.downloaded) == ("failed", 0)


def test_disk_full_before_the_start_fails_the_download(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    feed.entries = entries(2)
    download_id = backend_row(engine, user, feed.feed_url)
    full = dataclasses.replace(limits, min_free_bytes=2**62)
    report = _run(download_id, full)
    assert report.status == "failed"
    assert "disk full" in report.error and "DOWNLOAD_MIN_FREE_BYTES" in report.error
    assert feed.requests == []  # nothing was asked of the site
    assert download_row(engine, download_id)["status"] == "failed"


def test_disk_full_during_the_download_stops_it_and_keeps_whole_files_only(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    feed.entries = entries(3)
    download_id = backend_row(engine, user, feed.feed_url)
    answers = iter([10**12, 10**12, 10**12, 0])  # start, entry 1, entry 2, entry 3

    def free_bytes(_path: Path) -> int:
        return next(answers, 0)

    filling = dataclasses.replace(limits, min_free_bytes=10**9, free_bytes=free_bytes)
    report = _run(download_id, filling)
    assert report.status == "failed"
    assert "disk full" in report.error
    assert report.downloaded == 2
    folder = next(path for path in (limits.root / user).iterdir() if path.is_dir())
    assert sorted(path.name for path in folder.iterdir()) == [
        "Video 0 [vid000].mp4",
        "Video 1 [vid001].mp4",
    ]
    assert len(download_row(engine, download_id)["file_paths"]["files"]) == 2


def test_the_hourly_limit_counts_the_users_recent_downloads(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    for _ in range(4):
        backend_row(engine, user, feed.feed_url, status="completed")
    connect = get_engine().connect
    fifth = service.start_new(
        connect, download_id="job-5", user_id=user, url=feed.feed_url, limits=limits
    )
    assert download_row(engine, fifth)["status"] == "downloading"
    # The same job again (a resumed run) is not a new download.
    assert (
        service.start_new(
            connect, download_id="job-5", user_id=user, url=feed.feed_url, limits=limits
        )
        == "job-5"
    )
    with pytest.raises(PermanentError, match="DOWNLOAD_USER_HOURLY_LIMIT"):
        service.start_new(
            connect, download_id="job-6", user_id=user, url=feed.feed_url, limits=limits
        )
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE youtube_downloads SET created_at = created_at - interval '2 hours'"
                " WHERE user_id = :u AND id <> 'job-5'"
            ),
            {"u": user},
        )
    assert (
        service.start_new(
            connect, download_id="job-6", user_id=user, url=feed.feed_url, limits=limits
        )
        == "job-6"
    )


def test_files_over_the_maximum_size_are_not_downloaded(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    feed.entries = entries(2)
    download_id = backend_row(engine, user, feed.feed_url)
    report = _run(download_id, dataclasses.replace(limits, max_file_bytes=1000))
    assert report.status == "failed"
    assert report.downloaded == 0 and report.failed == 2
    assert "DOWNLOAD_MAX_FILE_BYTES" in report.errors[0]["error"]
    assert media_files(limits.root / user) == []


def test_the_time_limit_hands_the_rest_to_the_next_attempt(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    feed.entries = entries(2)
    download_id = backend_row(engine, user, feed.feed_url)
    short = dataclasses.replace(limits, time_limit_seconds=1e-6)
    with pytest.raises(RetryableError, match="DOWNLOAD_TIME_LIMIT_SECONDS"):
        _run(download_id, short, Control(attempt=1, max_attempts=3))
    assert download_row(engine, download_id)["status"] == "downloading"
    last = _run(download_id, short, Control(attempt=3, max_attempts=3))
    assert last.status == "failed" and "time limit" in last.error


def test_the_job_announces_download_finished_after_the_commit(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    feed.entries = entries(2)
    download_id = backend_row(engine, user, feed.feed_url)
    heard: list[tuple[events.Event, str]] = []

    def listener(event: events.Event) -> None:  # what the row says when the event arrives
        heard.append((event, download_row(engine, download_id)["status"]))

    events.subscribe("download.finished", listener)
    try:
        context = JobContext(
            job_id="job-announce",
            kind="downloads.playlist",
            attempt=1,
            max_attempts=1,
            correlation_id="c",
            user_id=None,
            enqueued_by="test",
        )
        result = tasks.download_playlist(context, tasks.PlaylistPayload(download_id=download_id))
        tasks.download_playlist(context, tasks.PlaylistPayload(download_id=download_id))
    finally:
        events.unsubscribe("download.finished", listener)
    assert result["downloaded"] == 2
    [(event, status), (second, _)] = heard
    assert status == "completed"
    assert event.subject == f"download:{download_id}"
    assert event.dedup_key == f"download.finished:{download_id}:1"
    assert second.dedup_key == f"download.finished:{download_id}:2"
    assert dict(event.fields) == {
        "download_id": download_id,
        "playlist_title": "Loopback Playlist",
        "status": "completed",
        "downloaded": 2,
        "failed": 0,
        "user_id": user,
    }
    assert second.fields["downloaded"] == 0


def test_a_completed_download_chains_the_plex_step(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    feed.entries = entries(1)
    download_id = backend_row(engine, user, feed.feed_url)
    context = JobContext(
        job_id="job-chain",
        kind="downloads.playlist",
        attempt=1,
        max_attempts=1,
        correlation_id="c",
        user_id=None,
        enqueued_by="test",
    )
    tasks.download_playlist(context, tasks.PlaylistPayload(download_id=download_id))
    with engine.connect() as connection:
        chained = connection.execute(
            text("SELECT payload, idempotency_key FROM mnw_jobs WHERE kind = 'downloads.plex_sync'")
        ).all()
    assert [(row.payload, row.idempotency_key) for row in chained] == [
        ({"download_id": download_id}, f"downloads.plex_sync:download.finished:{download_id}:1")
    ]
