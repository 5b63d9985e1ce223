"""Real yt-dlp against the loopback feed: fresh, re-run, grown, one broken entry."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from medianest_workers.db.session import get_engine
from medianest_workers.downloads import service
from medianest_workers.downloads.files import playlist_key
from tests.downloads.conftest import (
    Control,
    archive_rows,
    backend_row,
    download_row,
    entries,
    media_files,
)
from tests.downloads.feed_server import FeedServer


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
    feed.entries = entries(3)
    download_id = backend_row(engine, user, feed.feed_url)
    control = Control()
    report = _run(download_id, limits, control)
    assert report.status == "completed", report
    assert (report.downloaded, report.failed, report.already) == (3, 0, 0)
    folder = limits.root / user / f"Loopback Playlist [{_key(feed)}]"
    names = sorted(path.name for path in media_files(folder))
    assert names == [f"Video {n} [vid{n:03d}].mp4" for n in range(3)]
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
    assert isinstance(shape["duration"], int | float)
    assert len(archive_rows(engine, user)) == 3
    assert control.progress[-1]["downloaded"] == 3


def _key(feed: FeedServer) -> str:
    return playlist_key(feed.feed_url)
