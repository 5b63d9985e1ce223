"""The Plex step's errors, each steering the `downloads.plex_sync` job's retries.

Plex down, answering 5xx, or still indexing the new files is a RetryableError: the job comes
back with backoff (PLEX_SYNC_* settings) and the download row stays `completed`. What no retry
fixes (a refused token, no such library, a row without files) is a PermanentError. Every
message names the problem, the service_config row or the library, never the token: messages
are built by us (plexapi's own exceptions are not chained, since they may quote a URL or a
body).
"""

from __future__ import annotations

from medianest_workers.platform.errors import PermanentError, RetryableError


class PlexUnavailableError(RetryableError):
    """Plex could not be reached (refused, timed out) or answered 5xx."""

    code = "unavailable"


class PlexNotIndexedError(RetryableError):
    """The scan ran but some files were not in the library within PLEX_SCAN_WAIT_SECONDS."""

    code = "not_indexed"

    def __init__(self, message: str, *, missing: int, expected: int) -> None:
        super().__init__(message)
        self.missing = missing
        self.expected = expected


class PlexBusyError(RetryableError):
    """Another sync of the same collection holds its lock: this one comes back later."""

    code = "busy"


class PlexAuthError(PermanentError):
    """Plex refused the token (401/403): fix service_config `plex` or the user's plex_token."""

    code = "auth_failed"


class PlexNotConfiguredError(PermanentError):
    """No usable token: the `plex` row has no api_key and the owner no plex_token."""

    code = "not_configured"


class PlexLibraryError(PermanentError):
    """The library PLEX_YOUTUBE_LIBRARY is missing (or not a video library) on the server."""

    code = "library_missing"


class PlexProtocolError(PermanentError):
    """Plex answered something no retry will change (400, 404 on a fixed path, bad XML)."""

    code = "protocol"


class DownloadRowError(PermanentError):
    """The youtube_downloads row is missing or cannot be synced (no files, files elsewhere)."""

    code = "bad_row"
