"""The download folders on disk: names, the free-space check, the quota, partial files.

DOWNLOAD_ROOT/<user id>/<playlist title> [<playlist key>]/<title> [<video id>].<ext>, each
video with its `.jpg` thumbnail beside it (what Plex reads as the poster). The playlist key
is yt-dlp's playlist id when it is short and plain, else a hash of it (a feed's id is its
URL). Every path is checked, real path against real path, to lie in the user's folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import Connection

from medianest_workers.downloads import archive
from medianest_workers.downloads.safety import PathEscapeError, contained
from medianest_workers.timeutil import utcnow

_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: What an unfinished entry leaves behind (yt-dlp's partial and fragment files).
_PARTIAL_SUFFIXES = (".part", ".ytdl", ".temp")
_SIDECAR_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".nfo", ".info.json")

FreeBytes = Callable[[Path], int]


def disk_free(path: Path) -> int:
    """Free bytes on the filesystem holding `path`."""
    return shutil.disk_usage(path).free


def user_folder(root: Path, user_id: str) -> Path:
    """DOWNLOAD_ROOT/<user id> (created), refused for an id that is not a plain name."""
    if not _USER_ID.fullmatch(user_id):
        raise PathEscapeError(f"user id {user_id!r} is not a plain folder name")
    root.mkdir(parents=True, exist_ok=True)
    folder = root / user_id
    folder.mkdir(exist_ok=True)
    contained(folder, root)
    return folder


def playlist_key(playlist_id: str) -> str:
    """The `[...]` part of a playlist folder's name."""
    if _PLAIN_ID.fullmatch(playlist_id):
        return playlist_id
    return "h" + hashlib.sha256(playlist_id.encode()).hexdigest()[:16]


def safe_name(title: str | None, *, limit: int = 150) -> str:
    """A filesystem-safe, non-hidden name from a title (yt-dlp's sanitizer, then ours)."""
    from yt_dlp.utils import sanitize_filename  # noqa: PLC0415  (heavy import, worker only)

    name = sanitize_filename(title or "", restricted=False, is_id=False)
    name = name.replace("/", "_").replace("\\", "_").replace("\x00", "")
    name = name.lstrip(". ").rstrip(". ")
    encoded = name.encode()[:limit]
    name = encoded.decode(errors="ignore").rstrip(". ")
    return name or "Playlist"


def playlist_folder(user_root: Path, title: str | None, playlist_id: str) -> Path:
    """`<user folder>/<safe title> [<key>]`, created, and proved to be inside the user's."""
    folder = user_root / f"{safe_name(title)} [{playlist_key(playlist_id)}]"
    contained(folder, user_root)
    folder.mkdir(exist_ok=True)
    contained(folder, user_root)
    if folder.resolve() == user_root.resolve():
        raise PathEscapeError("the playlist folder would be the user's folder itself")
    return folder


def remove_new_files(folder: Path, before: Iterable[Path]) -> list[str]:
    """Remove what appeared in `folder` since `before`, and every partial file; names removed."""
    known = set(before)
    removed = []
    for path in folder.iterdir():
        if not path.is_file():
            continue
        if path not in known or path.name.endswith(_PARTIAL_SUFFIXES):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def remove_with_sidecars(path: Path) -> None:
    """Remove a media file and its thumbnail / metadata files (same stem)."""
    path.unlink(missing_ok=True)
    for suffix in _SIDECAR_SUFFIXES:
        path.with_name(path.stem + suffix).unlink(missing_ok=True)


class QuotaExceededError(Exception):
    """The user's folder is at its quota and the policy is `refuse` (or nothing is left)."""


def enforce_quota(
    connection: Connection,
    *,
    user_id: str,
    user_root: Path,
    quota_bytes: int,
    policy: str,
    keep: Iterable[str] = (),
) -> list[str]:
    """Bring the user's usage below the quota: remove the oldest files or refuse.

    The usage is what the archive holds (files we downloaded and did not remove). With
    `remove_oldest`, files are removed oldest first (their rows keep `removed_at`, so a
    re-run does not fetch them again), never one of `keep` (the entry being finished).
    Returns the paths removed; raises QuotaExceededError when the usage stays at the quota.
    """
    usage = archive.user_usage(connection, user_id)
    if usage < quota_bytes:
        return []
    if policy == "refuse":
        raise QuotaExceededError(
            f"the user's downloads use {usage} bytes of their {quota_bytes}"
            " (DOWNLOAD_USER_QUOTA_BYTES; DOWNLOAD_QUOTA_POLICY=refuse)"
        )
    kept = set(keep)
    removed: list[str] = []
    now = utcnow()
    while usage >= quota_bytes:
        candidates = [
            (row_id, path)
            for row_id, path in archive.oldest_files(connection, user_id)
            if path not in kept
        ]
        if not candidates:
            raise QuotaExceededError(
                f"the user's downloads use {usage} bytes of their {quota_bytes} and"
                " nothing older is left to remove (DOWNLOAD_USER_QUOTA_BYTES)"
            )
        for row_id, path in candidates:
            _remove_archived(connection, row_id, Path(path), user_root, now)
            removed.append(path)
            usage = archive.user_usage(connection, user_id)
            if usage < quota_bytes:
                break
    return removed


def _remove_archived(
    connection: Connection, row_id: int, path: Path, user_root: Path, when: dt.datetime
) -> None:
    try:
        real = contained(path, user_root)
    except PathEscapeError:
        real = None  # never delete outside the user's folder; the row is retired anyway
    if real is not None:
        remove_with_sidecars(real)
    archive.mark_removed(connection, row_id, when)


def file_entry(path: str, size: int) -> dict[str, object]:
    """One element of file_paths.files, the backend's shape."""
    return {"path": path, "size": size, "filename": os.path.basename(path)}
