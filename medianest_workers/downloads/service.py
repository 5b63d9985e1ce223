"""One run of a playlist download: the plain function the `downloads.playlist` job calls.

`start_new` creates the youtube_downloads row of a new download (after the hourly limit);
`run` downloads its playlist:

1. the row is loaded and its URL checked again (downloads/safety.py); it goes `downloading`;
2. free disk and quota are checked (DOWNLOAD_MIN_FREE_BYTES, DOWNLOAD_USER_QUOTA_BYTES);
3. yt-dlp reads the playlist (flat: titles and ids, no media yet); the folder
   `<user>/<title> [<key>]` is made and locked (one run per folder, a PostgreSQL advisory
   lock held on a connection of its own for the run);
4. each entry is processed on its own, with the archive (downloads/archive.py) as yt-dlp's
   `download_archive`: an entry already there costs nothing, a new one is downloaded and
   recorded. Before each: cancel, the time limit, the disk and the quota are looked at;
   during: progress into the ledger (throttled), cancel within a chunk. An entry's error is
   classified (downloads/ytdlp.py) and recorded; only a fatal one (disk full) stops the run;
   a bot check stops it too (every next entry would meet it), with the cookies hint;
5. the row ends `completed` (with `file_paths`: every file the folder holds), `failed` or
   `cancelled`; partial files of an unfinished entry are removed.

Entries that failed for a retryable reason (or a bot check) make the run raise
RetryableError while the job has attempts left: the next attempt fetches only those (the
archive has the rest). Its last attempt records them as failed entries instead.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from billiard.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Connection, text
from yt_dlp.utils import make_archive_id

from medianest_workers.db.locks import AdvisoryLock
from medianest_workers.downloads import files, records
from medianest_workers.downloads.archive import PlaylistArchive, folder_files
from medianest_workers.downloads.safety import (
    NetworkPolicy,
    PathEscapeError,
    check_playlist_url,
    network_policy,
)
from medianest_workers.downloads.ytdlp import (
    DownloadOptions,
    ErrorClass,
    GuardedYoutubeDL,
    YtdlpLogger,
    build_options,
    classify,
)
from medianest_workers.platform.errors import JobCancelledError, PermanentError, RetryableError
from medianest_workers.settings import Settings, get_settings

log = logging.getLogger(__name__)

Connect = Callable[[], Connection]


class Control(Protocol):
    """What a run needs of its job (JobContext has it; tests may pass their own)."""

    job_id: str
    attempt: int
    max_attempts: int

    def report_progress(self, progress: dict[str, Any], *, min_interval: float = 0.0) -> bool: ...

    @property
    def cancel_requested(self) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class Limits:
    """The settings a run obeys (DOWNLOAD_* and YTDLP_COOKIES_FILE)."""

    root: Path
    allowed_hosts: tuple[str, ...]
    policy: NetworkPolicy
    hourly_limit: int
    quota_bytes: int
    quota_policy: str
    min_free_bytes: int
    max_file_bytes: int
    max_entries: int
    sleep_seconds: float
    max_sleep_seconds: float
    sleep_requests_seconds: float
    progress_interval: float
    time_limit_seconds: float
    socket_timeout: float
    cookies_file: Path | None
    free_bytes: files.FreeBytes = files.disk_free

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Limits:
        s = settings or get_settings()
        return cls(
            root=s.download_root,
            allowed_hosts=tuple(s.download_allowed_hosts),
            policy=network_policy(s),
            hourly_limit=s.download_user_hourly_limit,
            quota_bytes=s.download_user_quota_bytes,
            quota_policy=s.download_quota_policy,
            min_free_bytes=s.download_min_free_bytes,
            max_file_bytes=s.download_max_file_bytes,
            max_entries=s.download_max_playlist_entries,
            sleep_seconds=s.download_sleep_seconds,
            max_sleep_seconds=s.download_max_sleep_seconds,
            sleep_requests_seconds=s.download_sleep_requests_seconds,
            progress_interval=s.download_progress_interval_seconds,
            time_limit_seconds=s.download_time_limit_seconds,
            socket_timeout=s.download_socket_timeout_seconds,
            cookies_file=s.ytdlp_cookies_file,
        )


@dataclass
class RunReport:
    """What a run did; `status` is the row's (completed, failed, cancelled)."""

    download_id: str
    user_id: str
    status: str = "downloading"
    playlist_title: str | None = None
    downloaded: int = 0
    already: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0
    total_size: int = 0
    run: int = 0
    error: str | None = None
    #: The playlist folder (what the Plex step scans), once known.
    folder: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "download_id": self.download_id,
            "status": self.status,
            "playlist_title": self.playlist_title,
            "downloaded": self.downloaded,
            "already_downloaded": self.already,
            "failed": self.failed,
            "files": self.files,
            "total_size": self.total_size,
            "errors": self.errors[:20],
            **({"folder": self.folder} if self.folder else {}),
            **({"error": self.error} if self.error else {}),
        }


class _Stop(Exception):
    """The run ends early as `failed` (fatal error, disk, quota)."""


# --- intake ------------------------------------------------------------------------------------


def start_new(connect: Connect, *, download_id: str, user_id: str, url: str, limits: Limits) -> str:
    """Create the row of a new download (idempotent per `download_id`), within the hourly limit.

    The limit counts the user's youtube_downloads rows of the last hour, the backend's
    as well as ours; a resumed run finds its row and is not counted twice.
    """
    with connect() as connection:
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"),
            {"key": int(AdvisoryLock.DOWNLOAD_USER) ^ zlib.crc32(user_id.encode())},
        )
        if records.load(connection, download_id) is not None:
            return download_id
        recent = records.recent_count(connection, user_id, seconds=3600)
        if recent >= limits.hourly_limit:
            raise PermanentError(
                f"user {user_id} started {recent} downloads in the last hour; the limit is"
                f" {limits.hourly_limit} (DOWNLOAD_USER_HOURLY_LIMIT)"
            )
        records.create(connection, download_id=download_id, user_id=user_id, url=url)
        connection.commit()
    return download_id


# --- the run -----------------------------------------------------------------------------------


def run(
    connect: Connect,
    download_id: str,
    *,
    quality: str,
    fmt: str,
    control: Control,
    limits: Limits,
) -> RunReport:
    """Download the row's playlist; see the module docstring. Returns the finished report
    (completed, failed or cancelled, all recorded); raises RetryableError to be run again."""
    with connect() as connection:
        row = records.load(connection, download_id)
    if row is None:
        raise PermanentError(f"no youtube_downloads row {download_id!r}")
    report = RunReport(download_id=row.id, user_id=row.user_id, run=row.run + 1)
    report.playlist_title = row.playlist_title
    base = {"jobId": control.job_id, "quality": quality, "format": fmt}
    if row.status == "cancelled":
        report.status = "cancelled"
        report.error = "the download was cancelled before it started"
        return report
    try:
        url = check_playlist_url(
            row.playlist_url, allowed_hosts=limits.allowed_hosts, policy=limits.policy
        )
    except ValueError as exc:
        return _finish_failed(connect, report, base, f"playlist_url {exc}")
    with connect() as connection:
        records.mark_downloading(connection, row.id)
        connection.commit()
    runner = _Run(
        connect, report, url=url, quality=quality, fmt=fmt, control=control, limits=limits
    )
    try:
        return _download(runner, base)
    except (RetryableError, SoftTimeLimitExceeded):
        raise  # the row stays `downloading`: the job runs again
    except Exception as exc:
        # Anything unforeseen: the row must not stay `downloading` (the backend's "active").
        with contextlib.suppress(Exception):
            _finish_failed(connect, report, base, f"{type(exc).__name__}: {exc}"[:500])
        raise


def _download(runner: _Run, base: dict[str, Any]) -> RunReport:
    """Run the download and record how it ended (or raise RetryableError: run it again)."""
    connect, report, control = runner.connect, runner.report, runner.control
    error: str | None = None
    try:
        runner.download()
    except JobCancelledError:
        report.status = "cancelled"
        report.error = "cancelled"
        _finish(connect, report, {**base, "error": "cancelled"}, runner.playlist_key)
        return report
    except (_Stop, PermanentError) as exc:
        error = str(exc)
    except RetryableError as exc:
        if control.attempt < control.max_attempts:
            raise
        error = str(exc)
    if error is None:
        error = _entries_verdict(report, control)
    if error is not None:
        return _finish_failed(connect, report, base, error, runner.playlist_key)
    report.status = "completed"
    _finish(connect, report, base, runner.playlist_key)
    return report


def _entries_verdict(report: RunReport, control: Control) -> str | None:
    """After all entries: again later (entries failed for now), failed (none), or fine."""
    retry_worthy = [
        e for e in report.errors if e["class"] in (ErrorClass.RETRYABLE, ErrorClass.BOT_CHECK)
    ]
    if retry_worthy and control.attempt < control.max_attempts:
        raise RetryableError(
            f"{len(retry_worthy)} entries failed for now ({retry_worthy[0]['error']});"
            " the next attempt fetches only those"
        )
    report.failed = len(report.errors)
    if report.downloaded == 0 and report.already == 0 and report.errors:
        return f"no entry could be downloaded: {report.errors[0]['error']}"
    return None


def _finish_failed(
    connect: Connect,
    report: RunReport,
    base: dict[str, Any],
    error: str,
    playlist_key: str | None = None,
) -> RunReport:
    report.status = "failed"
    report.error = error
    report.failed = max(report.failed, len(report.errors))
    _finish(connect, report, {**base, "error": error}, playlist_key)
    return report


def _finish(
    connect: Connect, report: RunReport, shape: dict[str, Any], playlist_key: str | None
) -> None:
    """Write the row's end, with every file the playlist folder holds (the backend's shape)."""
    with connect() as connection:
        held = (
            folder_files(connection, user_id=report.user_id, playlist_key=playlist_key)
            if playlist_key
            else []
        )
        report.files = len(held)
        report.total_size = sum(item.size for item in held)
        file_paths = {
            **shape,
            "files": [files.file_entry(item.path, item.size) for item in held],
            "totalSize": report.total_size,
            "duration": sum(item.duration or 0 for item in held),
            "downloaded": report.downloaded,
            "failed": report.failed,
            "errors": report.errors[:50],
            "run": report.run,
            **({"folder": report.folder} if report.folder else {}),
        }
        records.finish(connection, report.download_id, status=report.status, file_paths=file_paths)
        connection.commit()


class _Run:
    """The state of one run while yt-dlp works (its hooks call back into it)."""

    def __init__(
        self,
        connect: Connect,
        report: RunReport,
        *,
        url: str,
        quality: str,
        fmt: str,
        control: Control,
        limits: Limits,
    ) -> None:
        self.connect = connect
        self.report = report
        self.url = url
        self.control = control
        self.limits = limits
        self.options = DownloadOptions(
            quality=quality,
            fmt=fmt,
            max_file_bytes=limits.max_file_bytes,
            sleep_seconds=limits.sleep_seconds,
            max_sleep_seconds=limits.max_sleep_seconds,
            sleep_requests_seconds=limits.sleep_requests_seconds,
            cookies_file=limits.cookies_file,
            socket_timeout=limits.socket_timeout,
        )
        self.playlist_key: str | None = None
        self.archive: PlaylistArchive | None = None
        self.started = time.monotonic()
        self.index = 0
        self.count = 0
        self.title: str | None = None

    # hooks (yt-dlp's threads are ours: they run in the job's thread)

    def _on_progress(self, status: dict[str, Any]) -> None:
        if self.control.cancel_requested:
            raise JobCancelledError("cancelled while downloading")
        if status.get("status") != "downloading":
            return
        self.control.report_progress(
            {
                "entry": self.index,
                "entries": self.count,
                "title": (status.get("info_dict") or {}).get("title"),
                "bytes": status.get("downloaded_bytes"),
                "total_bytes": status.get("total_bytes") or status.get("total_bytes_estimate"),
                "speed": status.get("speed"),
                "eta": status.get("eta"),
                "downloaded": self.report.downloaded,
                "failed": len(self.report.errors),
            },
            min_interval=self.limits.progress_interval,
        )

    def _on_postprocessor(self, status: dict[str, Any]) -> None:
        if status.get("postprocessor") != "MoveFiles" or status.get("status") != "finished":
            return
        info = status.get("info_dict") or {}
        key = info.get("extractor_key") or info.get("ie_key")
        if self.archive is not None and key and info.get("id") and info.get("filepath"):
            self.archive.note_finished(make_archive_id(key, info["id"]), info)

    def _check_between_entries(self, user_root: Path) -> None:
        if self.control.cancel_requested:
            raise JobCancelledError("cancelled")
        if time.monotonic() - self.started > self.limits.time_limit_seconds:
            raise RetryableError(
                f"the run reached its time limit of {self.limits.time_limit_seconds:.0f} s"
                " (DOWNLOAD_TIME_LIMIT_SECONDS); the next attempt continues"
            )
        free = self.limits.free_bytes(user_root)
        if free < self.limits.min_free_bytes:
            raise _Stop(
                f"disk full: {free} bytes free, below DOWNLOAD_MIN_FREE_BYTES"
                f" ({self.limits.min_free_bytes})"
            )
        self._enforce_quota(user_root)

    def _enforce_quota(self, user_root: Path, *, final: bool = False) -> None:
        """Below the quota before each entry; after the last, only by removing old files."""
        if final and self.limits.quota_policy == "refuse":
            return
        with self.connect() as connection:
            try:
                removed = files.enforce_quota(
                    connection,
                    user_id=self.report.user_id,
                    user_root=user_root,
                    quota_bytes=self.limits.quota_bytes,
                    policy=self.limits.quota_policy,
                )
            except files.QuotaExceededError as exc:
                raise _Stop(f"quota: {exc}") from None
            connection.commit()
        if removed:
            log.info(
                "download %s: the quota removed %d old files", self.report.download_id, len(removed)
            )

    def download(self) -> None:
        try:
            user_root = files.user_folder(self.limits.root, self.report.user_id)
        except (PathEscapeError, OSError) as exc:
            raise _Stop(str(exc)) from None
        self._check_between_entries(user_root)
        params = build_options(
            self.options,
            logger=YtdlpLogger(self.limits.cookies_file),
            progress_hook=self._on_progress,
            postprocessor_hook=self._on_postprocessor,
        )
        with GuardedYoutubeDL(params, policy=self.limits.policy) as ydl:
            info = self._extract(ydl)
            if info.get("_type") in ("playlist", "multi_video"):
                entries: Any = info.get("entries") or []
            else:
                entries = [info]
            playlist_id = str(info.get("id") or self.url)
            self.title = info.get("title") or playlist_id
            try:
                folder = files.playlist_folder(user_root, self.title, playlist_id)
            except PathEscapeError as exc:
                raise _Stop(str(exc)) from None
            self.playlist_key = files.playlist_key(playlist_id)
            self.report.playlist_title = self.title
            self.report.folder = str(folder.resolve())
            with self.connect() as connection:
                records.set_title(connection, self.report.download_id, self.title)
                connection.commit()
            with _folder_lock(self.connect, folder):
                self.archive = PlaylistArchive(
                    self.connect,
                    user_id=self.report.user_id,
                    playlist_key=self.playlist_key,
                    download_id=self.report.download_id,
                    folder=folder,
                )
                ydl.params["paths"] = {"home": str(folder), "temp": str(folder)}
                ydl.params["download_archive"] = self.archive
                # The playlist was read flat; its entries are resolved one by one now.
                ydl.params["extract_flat"] = False
                ydl.archive = self.archive
                chosen = list(itertools.islice(entries, self.limits.max_entries))
                self.count = len(chosen)
                extra = {
                    "playlist": self.title,
                    "playlist_title": self.title,
                    "playlist_id": playlist_id,
                    "n_entries": self.count,
                    "playlist_count": self.count,
                }
                for self.index, entry in enumerate(chosen, 1):
                    self._check_between_entries(user_root)
                    if not self._entry(ydl, entry, folder, extra):
                        break
                self._enforce_quota(user_root, final=True)
                self.control.report_progress(
                    {
                        "entry": self.count,
                        "entries": self.count,
                        "downloaded": self.report.downloaded,
                        "failed": len(self.report.errors),
                    }
                )

    def _extract(self, ydl: GuardedYoutubeDL) -> dict[str, Any]:
        try:
            info = ydl.extract_info(self.url, download=False, process=False)
        except Exception as exc:  # noqa: BLE001 - classified: retried or recorded
            error_class, message = classify(exc)
            if error_class in (ErrorClass.RETRYABLE, ErrorClass.BOT_CHECK):
                raise RetryableError(f"reading the playlist: {message}") from None
            raise _Stop(f"reading the playlist: {message}") from None
        if not isinstance(info, dict):
            raise _Stop("reading the playlist: yt-dlp returned nothing")
        return info

    def _entry(
        self, ydl: GuardedYoutubeDL, entry: dict[str, Any], folder: Path, extra: dict[str, Any]
    ) -> bool:
        """Process one entry; False to stop the run's loop (a bot check)."""
        if self.archive is None:
            raise RuntimeError("the archive is opened before the entries")
        before = set(folder.iterdir())
        hits, added = self.archive.hits, len(self.archive.added)
        try:
            ydl.process_ie_result(
                dict(entry), download=True, extra_info={**extra, "playlist_index": self.index}
            )
        except (JobCancelledError, SoftTimeLimitExceeded):
            files.remove_new_files(folder, before)
            raise
        except Exception as exc:  # noqa: BLE001 - an entry's error is classified and recorded
            files.remove_new_files(folder, before)
            error_class, message = classify(exc)
            self.report.errors.append(
                {
                    "entry": self.index,
                    "id": entry.get("id"),
                    "title": entry.get("title"),
                    "class": error_class.value,
                    "error": message,
                }
            )
            log.info(
                "download %s entry %d: %s: %s",
                self.report.download_id,
                self.index,
                error_class.value,
                message,
            )
            if error_class == ErrorClass.FATAL:
                raise _Stop(f"entry {self.index}: {message}") from None
            return error_class != ErrorClass.BOT_CHECK
        if len(self.archive.added) > added:
            self.report.downloaded += 1
        elif self.archive.hits > hits:
            self.report.already += 1
        else:
            files.remove_new_files(folder, before)
            self.report.errors.append(
                {
                    "entry": self.index,
                    "id": entry.get("id"),
                    "title": entry.get("title"),
                    "class": ErrorClass.PERMANENT.value,
                    "error": "not downloaded (larger than DOWNLOAD_MAX_FILE_BYTES, or live)",
                }
            )
        return True


@contextlib.contextmanager
def _folder_lock(connect: Connect, folder: Path) -> Iterator[None]:
    """One run per playlist folder: a session advisory lock on a connection of its own."""
    key = int(AdvisoryLock.DOWNLOAD_FOLDER) ^ zlib.crc32(str(folder).encode())
    with connect() as connection:
        got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        connection.commit()
        if not got:
            raise RetryableError(f"another run is downloading into {folder.name!r}")
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()
