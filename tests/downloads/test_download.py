"""Real yt-dlp against the loopback feed: fresh, re-run, grown, one broken entry."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest
from sqlalchemy import Engine

from medianest_workers.db.session import get_engine
from medianest_workers.downloads import service
from medianest_workers.downloads.files import playlist_key
from medianest_workers.platform.errors import RetryableError
from tests.downloads.conftest import (
    Control,
    archive_rows,
    backend_row,
    download_row,
    entries,
    media_files,
)
from tests.downloads.feed_server import Entry, FeedServer, make_thumbnail


def _run(download_id: str, limits: service.Limits, control: Control | None = None, **kw):
    return service.run(
        get_engine().connect,
        download_id,
        quality=kw.pop("quality", "1080p"),
        fmt=kw.pop("fmt", "mp4"),
        control=control or Control(),
        limits=limits,
    )


def test_a_fresh_playlist_lands_in_the_users_folder(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    feed.entries = entries(20)
    download_id = backend_row(engine, user, feed.feed_url)
    control = Control()
    report = _run(download_id, limits, control)
    assert report.status == "completed", report
    assert (report.downloaded, report.failed, report.already) == (20, 0, 0)
    folder = limits.root / user / f"Loopback Playlist [{_key(feed)}]"
    names = sorted(path.name for path in media_files(folder))
    assert names == sorted(f"Video {n} [vid{n:03d}].mp4" for n in range(20))
    row = download_row(engine, download_id)
    assert row["status"] == "completed"
    assert row["playlist_title"] == "Loopback Playlist"
    assert row["completed_at"] is not None
    shape = row["file_paths"]
    assert shape["jobId"] == control.job_id
    assert (shape["quality"], shape["format"]) == ("1080p", "mp4")
    assert sorted(item["filename"] for item in shape["files"]) == names
    for item in shape["files"]:
        assert Path(item["path"]).stat().st_size == item["size"]
        assert Path(item["path"]).parent == folder.resolve()
    assert shape["totalSize"] == sum(item["size"] for item in shape["files"])
    assert shape["folder"] == str(folder.resolve())
    assert isinstance(shape["duration"], int | float)
    assert len(archive_rows(engine, user)) == 20
    assert control.progress[-1]["downloaded"] == 20
    entries_seen = {p["entry"] for p in control.progress if "bytes" in p}
    assert entries_seen == set(range(1, 21))
    assert all(p["entries"] == 20 for p in control.progress)


def _key(feed: FeedServer) -> str:
    return playlist_key(feed.feed_url)


def test_a_rerun_downloads_nothing_and_a_grown_playlist_only_the_new_entries(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    feed.entries = entries(3)
    download_id = backend_row(engine, user, feed.feed_url)
    assert _run(download_id, limits).downloaded == 3
    folder = limits.root / user / f"Loopback Playlist [{_key(feed)}]"
    stamps = {path.name: path.stat().st_mtime_ns for path in media_files(folder)}
    feed.requests.clear()

    again = _run(download_id, limits)
    assert (again.status, again.downloaded, again.already, again.failed) == ("completed", 0, 3, 0)
    assert {path.name: path.stat().st_mtime_ns for path in media_files(folder)} == stamps
    # Each entry costs the extractor's one look at its URL, no download of its body.
    assert len(feed.media_requests()) == 3
    assert len(archive_rows(engine, user)) == 3
    assert len(download_row(engine, download_id)["file_paths"]["files"]) == 3

    feed.entries = entries(5)
    grown = _run(download_id, limits)
    assert (grown.downloaded, grown.already) == (2, 3)
    assert len(media_files(folder)) == 5
    assert len(archive_rows(engine, user)) == 5
    row = download_row(engine, download_id)
    assert len(row["file_paths"]["files"]) == 5
    assert row["file_paths"]["run"] == 3


def test_one_broken_entry_among_good_ones_is_recorded_not_fatal(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    feed.entries = [*entries(2), Entry("gone01", "Removed video", "broken"), *entries(1, 2)]
    download_id = backend_row(engine, user, feed.feed_url)
    report = _run(download_id, limits)
    assert report.status == "completed"
    assert (report.downloaded, report.failed) == (3, 1)
    row = download_row(engine, download_id)
    [error] = row["file_paths"]["errors"]
    assert error["entry"] == 3
    assert error["class"] == "permanent"
    assert "404" in error["error"]
    assert len(row["file_paths"]["files"]) == 3
    assert row["file_paths"]["failed"] == 1


def test_retryable_entry_errors_make_the_job_try_again_for_those_only(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    feed.entries = [*entries(2), Entry("flaky1", "Flaky", "error500")]
    download_id = backend_row(engine, user, feed.feed_url)
    with pytest.raises(RetryableError, match="1 entries failed for now"):
        _run(download_id, limits, Control(attempt=1, max_attempts=2))
    assert download_row(engine, download_id)["status"] == "downloading"
    assert len(archive_rows(engine, user)) == 2
    # The last attempt records what is still failing instead of trying again.
    last = _run(download_id, limits, Control(attempt=2, max_attempts=2))
    assert (last.status, last.downloaded, last.already, last.failed) == ("completed", 0, 2, 1)
    assert last.errors[0]["class"] == "retryable"


def test_quality_and_format_reach_the_files(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    feed.entries = entries(1)
    download_id = backend_row(engine, user, feed.feed_url)
    report = _run(download_id, limits, quality="720p", fmt="mkv")
    assert report.status == "completed", report
    shape = download_row(engine, download_id)["file_paths"]
    assert (shape["quality"], shape["format"]) == ("720p", "mkv")
    assert [item["filename"] for item in shape["files"]] == ["Video 0 [vid000].mkv"]


def test_thumbnails_land_beside_the_files_as_jpeg_and_metadata_is_embedded(
    engine: Engine, user: str, media: bytes, tmp_path: Path, limits: service.Limits
) -> None:
    server = FeedServer(media, thumbnail=make_thumbnail(tmp_path))
    try:
        server.entries = [Entry("thumb1", "With a poster", thumbnail=True)]
        download_id = backend_row(engine, user, server.feed_url)
        report = _run(download_id, limits)
    finally:
        server.stop()
    assert report.status == "completed", report
    folder = Path(report.folder or "")
    assert sorted(path.name for path in folder.iterdir()) == [
        "With a poster [thumb1].jpg",
        "With a poster [thumb1].mp4",
    ]
    assert (folder / "With a poster [thumb1].jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    probe = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-hide_banner",
            "-i",
            str(folder / "With a poster [thumb1].mp4"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "title           : With a poster" in probe.stderr
