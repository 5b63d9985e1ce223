"""Fixtures of the downloads tests: a loopback feed of real media, a user, the run's limits."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from medianest_workers.downloads import service
from medianest_workers.settings import reset_settings_cache
from tests.downloads.feed_server import Entry, FeedServer, make_media

#: The environment every downloads test (and the workers they start) runs with: the loopback
#: feed is allowed by host and by network, nothing else private is.
DOWNLOAD_ENV = {
    "DOWNLOAD_ALLOWED_HOSTS": "127.0.0.1",
    "DOWNLOAD_ALLOWED_NETWORKS": "127.0.0.1/32",
    "DOWNLOAD_ALLOW_PRIVATE_NETWORKS": "false",
    "DOWNLOAD_SLEEP_SECONDS": "0",
    "DOWNLOAD_MAX_SLEEP_SECONDS": "0",
    "DOWNLOAD_SLEEP_REQUESTS_SECONDS": "0",
    "DOWNLOAD_MIN_FREE_BYTES": "0",
    "DOWNLOAD_PROGRESS_INTERVAL_SECONDS": "0.2",
}


@pytest.fixture(scope="session")
def media(tmp_root: Path) -> bytes:
    folder = tmp_root / "media"
    folder.mkdir(exist_ok=True)
    return make_media(folder, seconds=1.0)


@pytest.fixture
def feed(media: bytes) -> Iterator[FeedServer]:
    server = FeedServer(media)
    try:
        yield server
    finally:
        server.stop()


def entries(count: int, start: int = 0, path: str = "media") -> list[Entry]:
    return [Entry(f"vid{n:03d}", f"Video {n}", path) for n in range(start, start + count)]


@pytest.fixture
def download_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """DOWNLOAD_ROOT in this test's tmp folder and the loopback-friendly settings."""
    root = tmp_path / "downloads"
    for name, value in DOWNLOAD_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DOWNLOAD_ROOT", str(root))
    reset_settings_cache()
    yield root
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
def limits(download_env: Path) -> service.Limits:
    return service.Limits.from_settings()


@pytest.fixture
def user(engine: Engine, session_factory: Any) -> str:
    user_id = f"u{uuid.uuid4().hex[:12]}"
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO users (id, email) VALUES (:id, :email)"),
            {"id": user_id, "email": f"{user_id}@example.test"},
        )
    return user_id


def backend_row(engine: Engine, user_id: str, url: str, *, status: str = "queued") -> str:
    """A youtube_downloads row as the backend inserts it."""
    download_id = f"c{uuid.uuid4().hex[:20]}"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO youtube_downloads (id, user_id, playlist_url, status)"
                " VALUES (:id, :user, :url, :status)"
            ),
            {"id": download_id, "user": user_id, "url": url, "status": status},
        )
    return download_id


def download_row(engine: Engine, download_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        return dict(
            connection.execute(
                text("SELECT * FROM youtube_downloads WHERE id = :id"), {"id": download_id}
            )
            .mappings()
            .one()
        )


def archive_rows(engine: Engine, user_id: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [
            dict(row)
            for row in connection.execute(
                text("SELECT * FROM mnw_download_archive WHERE user_id = :u ORDER BY id"),
                {"u": user_id},
            ).mappings()
        ]


@dataclass
class Control:
    """A job's side of a run without Celery: records progress, cancels on demand."""

    job_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempt: int = 1
    max_attempts: int = 1
    progress: list[dict[str, Any]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    on_progress: Callable[[dict[str, Any]], None] | None = None

    def report_progress(self, progress: dict[str, Any], *, min_interval: float = 0.0) -> bool:
        self.progress.append(progress)
        if self.on_progress is not None:
            self.on_progress(progress)
        return True

    @property
    def cancel_requested(self) -> bool:
        return self.cancel.is_set()


def media_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.suffix in (".mp4", ".mkv", ".webm"))
