"""The download archive in PostgreSQL (mnw_download_archive), as the set yt-dlp asks for.

yt-dlp's `download_archive` may be any object with `in` and `add`: before it fetches an
entry it asks `archive_id in archive`, and after the entry's file is complete and moved into
place it calls `archive.add(archive_id)`. `PlaylistArchive` answers `in` from the rows of one
user's playlist folder (read once at the start of a run) and makes `add` an insert of the
entry's row (file, size, duration, from the post-processor hook that ran just before), which
commits at once: a worker killed one entry later keeps everything before it. The insert is
`ON CONFLICT DO NOTHING`, so a resumed run never makes a second row.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert

from medianest_workers.db.models.downloads import DownloadArchiveEntry
from medianest_workers.downloads.safety import contained

Connect = Callable[[], Connection]


@dataclass(frozen=True)
class ArchivedFile:
    """A file the archive says is in the folder (what `file_paths` lists)."""

    path: str
    size: int
    duration: float | None
    video_id: str
    title: str | None


class PlaylistArchive:
    """The archive of one user's playlist folder; see the module docstring."""

    def __init__(
        self,
        connect: Connect,
        *,
        user_id: str,
        playlist_key: str,
        download_id: str,
        folder: Path,
    ) -> None:
        self._connect = connect
        self.user_id = user_id
        self.playlist_key = playlist_key
        self.download_id = download_id
        self.folder = folder
        self._ids: set[str] = set()
        #: What the last finished post-processing said about each entry, by archive id.
        self._pending: dict[str, dict[str, Any]] = {}
        #: Archive ids added by this run, in order.
        self.added: list[str] = []
        #: How many `in` questions found the entry already there.
        self.hits = 0
        with connect() as connection:
            rows = connection.execute(
                select(DownloadArchiveEntry.archive_id).where(
                    DownloadArchiveEntry.user_id == user_id,
                    DownloadArchiveEntry.playlist_key == playlist_key,
                )
            ).scalars()
            self._ids.update(rows)

    def __contains__(self, archive_id: object) -> bool:
        found = archive_id in self._ids
        if found:
            self.hits += 1
        return found

    def __len__(self) -> int:
        return len(self._ids)

    def __bool__(self) -> bool:
        # yt-dlp skips the lookup for an empty archive; we count hits, so always look.
        return True

    def note_finished(self, archive_id: str, info: dict[str, Any]) -> None:
        """Remember an entry's final file (the post-processor hook, just before `add`)."""
        self._pending[archive_id] = info

    def add(self, archive_id: str) -> None:
        info = self._pending.pop(archive_id, None)
        if info is None:
            raise RuntimeError(f"archive entry {archive_id!r} finished without a file")
        path = contained(info["filepath"], self.folder)
        row = {
            "user_id": self.user_id,
            "playlist_key": self.playlist_key,
            "archive_id": archive_id,
            "download_id": self.download_id,
            "video_id": str(info.get("id") or archive_id.split(" ", 1)[-1]),
            "title": info.get("title"),
            "file_path": str(path),
            "size_bytes": os.path.getsize(path),
            "duration_seconds": _number(info.get("duration")),
        }
        with self._connect() as connection:
            connection.execute(
                insert(DownloadArchiveEntry)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["user_id", "playlist_key", "archive_id"])
            )
            connection.commit()
        self._ids.add(archive_id)
        self.added.append(archive_id)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def folder_files(connection: Connection, *, user_id: str, playlist_key: str) -> list[ArchivedFile]:
    """The files of one playlist folder that the archive holds (not removed), oldest first."""
    table = DownloadArchiveEntry.__table__
    rows = connection.execute(
        select(table)
        .where(
            DownloadArchiveEntry.user_id == user_id,
            DownloadArchiveEntry.playlist_key == playlist_key,
            DownloadArchiveEntry.removed_at.is_(None),
        )
        .order_by(DownloadArchiveEntry.downloaded_at, DownloadArchiveEntry.id)
    )
    return [
        ArchivedFile(
            path=row.file_path,
            size=row.size_bytes,
            duration=row.duration_seconds,
            video_id=row.video_id,
            title=row.title,
        )
        for row in rows
    ]


def user_usage(connection: Connection, user_id: str) -> int:
    """Bytes of the user's files the archive holds (not removed)."""
    total = connection.execute(
        select(func.coalesce(func.sum(DownloadArchiveEntry.size_bytes), 0)).where(
            DownloadArchiveEntry.user_id == user_id, DownloadArchiveEntry.removed_at.is_(None)
        )
    ).scalar_one()
    return int(total)


def oldest_files(connection: Connection, user_id: str, limit: int = 100) -> list[tuple[int, str]]:
    """(row id, path) of the user's oldest files still present, oldest first."""
    rows = connection.execute(
        select(DownloadArchiveEntry.id, DownloadArchiveEntry.file_path)
        .where(DownloadArchiveEntry.user_id == user_id, DownloadArchiveEntry.removed_at.is_(None))
        .order_by(DownloadArchiveEntry.downloaded_at, DownloadArchiveEntry.id)
        .limit(limit)
    ).all()
    return [(row.id, row.file_path) for row in rows]


def mark_removed(connection: Connection, row_id: int, when: dt.datetime) -> None:
    connection.execute(
        update(DownloadArchiveEntry)
        .where(DownloadArchiveEntry.id == row_id)
        .values(removed_at=when)
    )
