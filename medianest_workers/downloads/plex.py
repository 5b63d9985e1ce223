"""The Plex step of a download: scan exactly the playlist's folder, keep a collection of it.

`sync_download(download_id)` reads the `youtube_downloads` row, finds the playlist folder
from its `file_paths` (every file of a download is in `<DOWNLOAD_ROOT>/<user id>/<playlist
title> [<playlist id>]/`), asks Plex for a partial scan of that folder only
(`section.update(path=...)`) in the library PLEX_YOUTUBE_LIBRARY, waits (at most
PLEX_SCAN_WAIT_SECONDS) until the row's files are items of the library, then creates the
collection named after the playlist, or adds to it the items it does not hold yet, and stores
the collection's ratingKey in `plex_collection_id`. Running it again adds only new items.

The row's status is never touched: Plex being down is this job's problem (it retries with
backoff), not the download's. Files still unindexed when the wait ends: the others are put
in the collection, then the attempt raises PlexNotIndexedError and the job comes back later.
Plex's URL is the `service_config` row `plex`; the token its api_key, else the owner's
`users.plex_token`, decrypted here and handed to the client only.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Connection, select, text, update

from medianest_workers.db.locks import AdvisoryLock
from medianest_workers.db.models.medianest import User, YoutubeDownload
from medianest_workers.db.session import get_engine
from medianest_workers.downloads.plex_client import PlexClient, normalize_path
from medianest_workers.downloads.plex_errors import (
    DownloadRowError,
    PlexBusyError,
    PlexNotConfiguredError,
    PlexNotIndexedError,
)
from medianest_workers.platform.services import ServiceEndpoint, load_service
from medianest_workers.security import crypto
from medianest_workers.settings import get_settings

log = logging.getLogger(__name__)

SERVICE_NAME = "plex"
#: Files of a download that become Plex items (thumbnails, .info.json, .nfo do not).
MEDIA_SUFFIXES = frozenset({".mp4", ".mkv", ".webm", ".m4v", ".mov", ".avi", ".ts", ".flv"})
#: Rows in these states are still being written: their own finish will ask for a sync.
ACTIVE_STATUSES = frozenset({"queued", "downloading"})
_LOCK_MASK = 0xFFFFFFFF
#: The scan's looks start PLEX_SCAN_POLL_SECONDS apart, the interval doubling up to this.
MAX_POLL_INTERVAL_SECONDS = 15.0

ClientFactory = Callable[[str, SecretStr, float], PlexClient]
Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, kw_only=True)
class PlexSyncOptions:
    download_root: PurePosixPath
    library: str = "YouTube"
    #: DOWNLOAD_ROOT as Plex sees it; None: the same.
    plex_download_root: PurePosixPath | None = None
    scan_wait_seconds: float = 120.0
    poll_seconds: float = 2.0
    timeout: float = 10.0

    @classmethod
    def from_settings(cls) -> PlexSyncOptions:
        settings = get_settings()
        return cls(
            library=settings.plex_youtube_library,
            download_root=PurePosixPath(settings.download_root),
            plex_download_root=(
                None
                if settings.plex_download_root is None
                else PurePosixPath(settings.plex_download_root)
            ),
            scan_wait_seconds=settings.plex_scan_wait_seconds,
            poll_seconds=settings.plex_scan_poll_seconds,
            timeout=settings.http_timeout_seconds,
        )

    def as_plex_sees_it(self, relative: PurePosixPath) -> str:
        """A path relative to DOWNLOAD_ROOT as the Plex server names it (PLEX_DOWNLOAD_ROOT)."""
        return str((self.plex_download_root or self.download_root) / relative)


@dataclass(frozen=True, kw_only=True)
class DownloadFolder:
    """What one youtube_downloads row asks Plex for: its folder, files and collection."""

    download_id: str
    user_id: str
    playlist_url: str
    title: str
    #: The folder and its media files, relative to DOWNLOAD_ROOT (`<user id>/<playlist>`).
    folder: PurePosixPath
    files: tuple[PurePosixPath, ...]
    collection_id: str | None


@dataclass
class PlexSyncReport:
    download_id: str
    skipped: str | None = None
    library: str | None = None
    scanned: str | None = None
    collection_id: str | None = None
    collection: str | None = None
    created: bool = False
    expected: int = 0
    found: int = 0
    added: int = 0
    already: int = 0
    polls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"download_id": self.download_id}
        if self.skipped:
            data["skipped"] = self.skipped
            return data
        data.update(
            library=self.library,
            scanned=self.scanned,
            collection_id=self.collection_id,
            collection=self.collection,
            created=self.created,
            expected=self.expected,
            found=self.found,
            added=self.added,
            already=self.already,
            polls=self.polls,
        )
        return data


# -- the row -----------------------------------------------------------------------------------


def load_folder(
    connection: Connection, download_id: str, root: PurePosixPath
) -> DownloadFolder | str:
    """The row's folder and media files, or why there is nothing to sync (a skip reason).

    A missing row, files outside the owner's folder or in several folders are errors.
    """
    row = connection.execute(
        select(
            YoutubeDownload.id,
            YoutubeDownload.user_id,
            YoutubeDownload.playlist_url,
            YoutubeDownload.playlist_title,
            YoutubeDownload.status,
            YoutubeDownload.file_paths,
            YoutubeDownload.plex_collection_id,
        ).where(YoutubeDownload.id == download_id)
    ).one_or_none()
    if row is None:
        raise DownloadRowError(f"youtube_downloads row {download_id!r} does not exist")
    if row.status in ACTIVE_STATUSES:
        return "download_active"
    files = _media_files(row.file_paths, root)
    if not files:
        return "no_files"
    folders = {path.parent for path in files}
    if len(folders) != 1:
        raise DownloadRowError(
            f"youtube_downloads row {download_id!r}: its files are in {len(folders)} folders,"
            " not one playlist folder"
        )
    folder = folders.pop()
    relative = _inside_user_folder(folder, root, row.user_id)
    if relative is None:
        raise DownloadRowError(
            f"youtube_downloads row {download_id!r}: its files are not in a playlist folder"
            f" of {root / row.user_id}"
        )
    title = (row.playlist_title or "").strip() or _title_from_folder(folder.name)
    return DownloadFolder(
        download_id=row.id,
        user_id=row.user_id,
        playlist_url=row.playlist_url,
        title=title,
        folder=relative,
        files=tuple(sorted(relative / path.name for path in files)),
        collection_id=row.plex_collection_id,
    )


def _inside_user_folder(
    folder: PurePosixPath, root: PurePosixPath, user_id: str
) -> PurePosixPath | None:
    """`folder` relative to DOWNLOAD_ROOT when it is a folder inside the user's, else None.

    The download records real paths: DOWNLOAD_ROOT as configured and its real path both count.
    """
    for base in dict.fromkeys((root, PurePosixPath(os.path.realpath(root)))):
        user_root = base / user_id
        if folder != user_root and folder.is_relative_to(user_root):
            return folder.relative_to(base)
    return None


def _media_files(file_paths: Any, root: PurePosixPath) -> set[PurePosixPath]:
    """The media files of the backend's `file_paths` JSON (`{"files": [{"path": ...}]}`)."""
    if not isinstance(file_paths, dict) or not isinstance(file_paths.get("files"), list):
        return set()
    found: set[PurePosixPath] = set()
    for entry in file_paths["files"]:
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path:
            continue
        pure = PurePosixPath(path)
        if not pure.is_absolute():
            pure = root / pure
        pure = PurePosixPath(posixpath.normpath(str(pure)))
        if pure.suffix.lower() in MEDIA_SUFFIXES:
            found.add(pure)
    return found


def _title_from_folder(name: str) -> str:
    """`My list [PLxyz]` -> `My list` (the folder's name without the playlist id)."""
    if name.endswith("]") and " [" in name:
        return name.rsplit(" [", 1)[0].strip() or name
    return name


def other_collection_id(connection: Connection, folder: DownloadFolder) -> str | None:
    """The collection an earlier download of the same playlist by the same user stored."""
    return connection.scalar(
        select(YoutubeDownload.plex_collection_id)
        .where(
            YoutubeDownload.user_id == folder.user_id,
            YoutubeDownload.playlist_url == folder.playlist_url,
            YoutubeDownload.plex_collection_id.is_not(None),
            YoutubeDownload.id != folder.download_id,
        )
        .order_by(YoutubeDownload.created_at.desc())
        .limit(1)
    )


def store_collection_id(connection: Connection, download_id: str, collection_id: str) -> None:
    connection.execute(
        update(YoutubeDownload)
        .where(
            YoutubeDownload.id == download_id,
            YoutubeDownload.plex_collection_id.is_distinct_from(collection_id),
        )
        .values(plex_collection_id=collection_id)
    )


# -- the token ---------------------------------------------------------------------------------


def plex_token(connection: Connection, endpoint: ServiceEndpoint, user_id: str) -> SecretStr:
    """The `plex` row's api_key, else the owner's users.plex_token (decrypted)."""
    if endpoint.api_key is not None and endpoint.api_key.get_secret_value():
        return endpoint.api_key
    stored = connection.scalar(select(User.plex_token).where(User.id == user_id))
    if not stored:
        raise PlexNotConfiguredError(
            "no Plex token: service_config 'plex' has no api_key and user"
            f" {user_id!r} has no plex_token"
        )
    try:
        token = crypto.decrypt(stored)
    except crypto.CryptoError as exc:
        raise PlexNotConfiguredError(
            f"users.plex_token of user {user_id!r} cannot be decrypted ({type(exc).__name__})"
        ) from None
    return SecretStr(token)


# -- the sync ----------------------------------------------------------------------------------


def sync_download(
    download_id: str,
    *,
    options: PlexSyncOptions | None = None,
    connect: Callable[[], Connection] | None = None,
    client_factory: ClientFactory | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Progress | None = None,
) -> PlexSyncReport:
    """Scan the download's folder in Plex and put its items in the playlist's collection."""
    options = options or PlexSyncOptions.from_settings()
    connect = connect or get_engine().connect
    report = PlexSyncReport(download_id=download_id)
    with connect() as connection:
        loaded = load_folder(connection, download_id, options.download_root)
        if isinstance(loaded, str):
            report.skipped = loaded
            return report
        endpoint = load_service(SERVICE_NAME)
        if endpoint is None:
            log.warning(
                "download %s: no enabled service_config 'plex'; Plex step skipped", download_id
            )
            report.skipped = "plex_not_configured"
            return report
        token = plex_token(connection, endpoint, loaded.user_id)
        known_id = loaded.collection_id or other_collection_id(connection, loaded)
        connection.rollback()
        if not _try_lock(connection, loaded.title):
            raise PlexBusyError(f"another Plex sync of the collection {loaded.title!r} is running")
        try:
            factory = client_factory or _default_client
            with factory(endpoint.url, token, options.timeout) as client:
                _sync(
                    client,
                    connection,
                    folder=loaded,
                    known_id=known_id,
                    options=options,
                    report=report,
                    sleep=sleep,
                    on_progress=on_progress,
                )
        finally:
            _unlock(connection, loaded.title)
    return report


def _default_client(url: str, token: SecretStr, timeout: float) -> PlexClient:
    return PlexClient(url, token, timeout=timeout)


def _sync(
    client: PlexClient,
    connection: Connection,
    *,
    folder: DownloadFolder,
    known_id: str | None,
    options: PlexSyncOptions,
    report: PlexSyncReport,
    sleep: Callable[[float], None],
    on_progress: Progress | None,
) -> None:
    section = client.section(options.library)
    plex_folder = options.as_plex_sees_it(folder.folder)
    expected = {normalize_path(options.as_plex_sees_it(path)) for path in folder.files}
    report.library = section.title
    report.scanned = plex_folder
    report.expected = len(expected)
    collection = client.collection_by_key(section, known_id) if known_id else None
    if collection is None:
        collection = client.collection_by_title(section, folder.title)
    present = client.collection_items(collection) if collection is not None else {}
    collected = expected & present.keys()  # files of earlier runs: no need to wait for them
    report.already = len(collected)
    client.scan(section, plex_folder)
    found = _wait_for_items(
        client,
        section,
        expected - collected,
        options=options,
        report=report,
        sleep=sleep,
        on_progress=on_progress,
    )
    missing = expected - collected - found.keys()
    report.found = len(expected) - len(missing)
    present_keys = {int(item.ratingKey) for item in present.values()}
    new = [item for item in _unique_items(found) if int(item.ratingKey) not in present_keys]
    if collection is None and new:
        collection = client.create_collection(section, folder.title, new)
        report.created = True
    elif collection is not None and new:
        client.add_to_collection(collection, new)
    report.added = len(new)
    if collection is not None:
        _record(connection, folder, collection, report)
    if missing:
        raise PlexNotIndexedError(
            f"{len(missing)} of {len(expected)} files of {plex_folder!r} are not in the Plex"
            f" library {section.title!r} after {options.scan_wait_seconds:g} s"
            + (" (the others are in the collection)" if collection is not None else ""),
            missing=len(missing),
            expected=len(expected),
        )


def _wait_for_items(
    client: PlexClient,
    section: Any,
    wanted: set[str],
    *,
    options: PlexSyncOptions,
    report: PlexSyncReport,
    sleep: Callable[[float], None],
    on_progress: Progress | None,
) -> dict[str, Any]:
    """The items of `wanted` once all are indexed, or those that are when the wait ends."""
    if not wanted:
        return {}
    deadline = time.monotonic() + options.scan_wait_seconds
    interval = options.poll_seconds
    while True:
        found = client.items_for(section, wanted)
        report.polls += 1
        if on_progress is not None:
            on_progress({"phase": "waiting_for_plex", "found": len(found), "expected": len(wanted)})
        if len(found) >= len(wanted) or time.monotonic() >= deadline:
            return found
        sleep(min(interval, max(0.0, deadline - time.monotonic())))
        # A file that is not there yet makes each look read the library: look less often.
        interval = min(interval * 2, max(options.poll_seconds, MAX_POLL_INTERVAL_SECONDS))


def _unique_items(found: dict[str, Any]) -> list[Any]:
    """The items of the row's files, by file path, each once (one item may have two files)."""
    items: dict[int, Any] = {}
    for path in sorted(found):
        items.setdefault(int(found[path].ratingKey), found[path])
    return list(items.values())


def _record(
    connection: Connection, folder: DownloadFolder, collection: Any, report: PlexSyncReport
) -> None:
    report.collection_id = str(collection.ratingKey)
    report.collection = collection.title
    with connection.begin():
        store_collection_id(connection, folder.download_id, report.collection_id)
    log.info(
        "download %s: Plex collection %s %r %s, %d added",
        folder.download_id,
        report.collection_id,
        report.collection,
        "created" if report.created else "kept",
        report.added,
    )


def _lock_key(title: str) -> int:
    return int(AdvisoryLock.PLEX_COLLECTION) ^ (
        zlib.crc32(title.casefold().encode("utf-8")) & _LOCK_MASK
    )


def _try_lock(connection: Connection, title: str) -> bool:
    with connection.begin():
        got = connection.scalar(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": _lock_key(title)}
        )
    return bool(got)


def _unlock(connection: Connection, title: str) -> None:
    try:
        with connection.begin():
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _lock_key(title)})
    except Exception:
        # A pooled connection must not keep the lock: closing it for good releases it.
        log.warning("could not release the Plex sync lock; dropping the connection", exc_info=True)
        connection.invalidate()
