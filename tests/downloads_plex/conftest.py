"""Fixtures of the Plex step: a loopback Plex, download folders on disk, backend rows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from medianest_workers.security import crypto
from medianest_workers.settings import reset_settings_cache
from tests.downloads_plex.fake_plex import TOKEN, FakePlex
from tests.platform.conftest import (  # noqa: F401  (fixtures used by these tests)
    _empty_queues,
    start_worker,
)

ENCRYPTION_KEY = "p" * 40
USER_ID = "0b0e6a4e-1111-4c3b-9d55-5a1e0c0ffee1"


@pytest.fixture
def plex_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """ENCRYPTION_KEY, a DOWNLOAD_ROOT of this test's own, a fast scan poll; yields the root."""
    root = tmp_path / "downloads"
    root.mkdir()
    monkeypatch.setenv("ENCRYPTION_KEY", ENCRYPTION_KEY)
    monkeypatch.setenv("DOWNLOAD_ROOT", str(root))
    monkeypatch.setenv("PLEX_SCAN_POLL_SECONDS", "0.1")
    monkeypatch.setenv("PLEX_SCAN_WAIT_SECONDS", "10")
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "3")
    reset_settings_cache()
    yield root
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
def fake(plex_env: Path) -> Iterator[FakePlex]:
    server = FakePlex()
    server.add_section("Movies", locations=["/srv/movies"])
    server.add_section("YouTube", locations=[str(plex_env)])
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Backend:
    """Writes the backend's rows (users, service_config, youtube_downloads) for a test."""

    engine: Engine
    root: Path

    def user(self, user_id: str = USER_ID, *, plex_token: str | None = None) -> str:
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (id, email, plex_id, plex_token, role)"
                    " VALUES (:id, :email, :plex_id, :token, 'user')"
                ),
                {
                    "id": user_id,
                    "email": f"{user_id}@example.org",
                    "plex_id": user_id[:8],
                    "token": crypto.encrypt_optional(plex_token),
                },
            )
        return user_id

    def plex_service(self, url: str, api_key: str | None = TOKEN, *, enabled: bool = True):
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO service_config (service_name, service_url, api_key, enabled,"
                    " updated_at) VALUES ('plex', :url, :key, :enabled, now())"
                ),
                {"url": url, "key": crypto.encrypt_optional(api_key), "enabled": enabled},
            )

    def folder(self, title: str = "Lo-fi Beats", playlist_id: str = "PLlofi42") -> Path:
        folder = self.root / USER_ID / f"{title} [{playlist_id}]"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def files(self, folder: Path, names: list[str]) -> list[Path]:
        made = []
        for name in names:
            path = folder / f"{name} [{uuid.uuid4().hex[:11]}].mp4"
            path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + name.encode())
            path.with_suffix(".jpg").write_bytes(b"\xff\xd8\xff")  # a thumbnail beside it
            made.append(path)
        return made

    def download(
        self,
        files: list[Path],
        *,
        title: str = "Lo-fi Beats",
        status: str = "completed",
        url: str = "https://www.youtube.com/playlist?list=PLlofi42",
        download_id: str | None = None,
    ) -> str:
        download_id = download_id or str(uuid.uuid4())
        listed = [
            {"path": str(path), "size": path.stat().st_size, "filename": path.name}
            for path in files
        ] + [
            {"path": str(path.with_suffix(".jpg")), "size": 3, "filename": path.stem + ".jpg"}
            for path in files
        ]
        file_paths = {
            "jobId": download_id,
            "files": listed,
            "totalSize": sum(entry["size"] for entry in listed),
            "quality": "1080p",
            "format": "mp4",
            "duration": 12.5,
        }
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO youtube_downloads (id, user_id, playlist_url, playlist_title,"
                    " status, file_paths, completed_at)"
                    " VALUES (:id, :user, :url, :title, :status, CAST(:paths AS jsonb),"
                    " timezone('UTC', now()))"
                ),
                {
                    "id": download_id,
                    "user": USER_ID,
                    "url": url,
                    "title": title,
                    "status": status,
                    "paths": json.dumps(file_paths),
                },
            )
        return download_id

    def row(self, download_id: str) -> dict:
        with self.engine.connect() as connection:
            return dict(
                connection.execute(
                    text("SELECT * FROM youtube_downloads WHERE id = :id"), {"id": download_id}
                )
                .mappings()
                .one()
            )


@pytest.fixture
def backend(engine: Engine, session_factory: object, plex_env: Path) -> Backend:
    """Backend rows in this run's database (every table emptied after the test)."""
    return Backend(engine, plex_env)
