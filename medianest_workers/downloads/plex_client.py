"""The Plex Media Server, as the Plex step uses it: plexapi with our errors and no leaked token.

A thin layer over plexapi (`PlexServer`, `LibrarySection.update(path=...)`, collections): each
call's failure becomes one of downloads/plex_errors.py's errors, whose message we write
ourselves (plexapi's quote the URL and the body of the answer) and which chains nothing.
The token lives in plexapi's session headers only; it is never logged (plexapi's own log
filter masks it too) and, should an answer echo it, it is cut out of every message.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar
from urllib.parse import urlsplit

import requests
from plexapi.collection import Collection
from plexapi.exceptions import BadRequest, NotFound, Unauthorized
from plexapi.library import LibrarySection
from plexapi.server import PlexServer
from plexapi.video import Video
from pydantic import SecretStr

from medianest_workers.downloads.plex_errors import (
    PlexAuthError,
    PlexLibraryError,
    PlexNotConfiguredError,
    PlexProtocolError,
    PlexUnavailableError,
)

T = TypeVar("T")

#: Library types whose items are one file each and may be put in a collection together.
VIDEO_SECTION_TYPES = ("movie",)
_STATUS = re.compile(r"^\((\d{3})\)")
#: Items per collection call: the keys are listed in the URL, which must stay short.
_BATCH = 100


def normalize_path(path: str) -> str:
    """A path as both sides compare it: normalised, NFC (Plex on macOS reports NFD names)."""
    return unicodedata.normalize("NFC", posixpath.normpath(path))


class PlexClient:
    """One Plex Media Server at `url`, reached with `token`; `timeout` bounds every call."""

    def __init__(self, url: str, token: SecretStr, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        #: How messages name the server: no user info, query or fragment (they may hold secrets).
        self.shown = _shown(self.url)
        self._secret = token.get_secret_value()
        self._session = requests.Session()
        self.server: PlexServer = self._call(
            "connect",
            lambda: PlexServer(self.url, self._secret, session=self._session, timeout=timeout),
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PlexClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the calls ---------------------------------------------------------------------------

    def section(self, title: str) -> LibrarySection:
        """The library named `title` (as Plex compares: case and outer spaces ignored)."""
        sections = self._call("GET /library/sections", self.server.library.sections)
        wanted = title.strip().lower()
        matching = [s for s in sections if (s.title or "").strip().lower() == wanted]
        if not matching:
            names = ", ".join(repr(s.title) for s in sections) or "none"
            raise self._library_error(
                f"Plex has no library {title!r} (PLEX_YOUTUBE_LIBRARY); its libraries: {names}"
            )
        section = matching[0]
        if section.type not in VIDEO_SECTION_TYPES:
            raise self._library_error(
                f"Plex library {title!r} is a {section.type!r} library; the downloads need a"
                " 'Movies' or 'Other Videos' library (one item per file)"
            )
        return section

    def scan(self, section: LibrarySection, path: str) -> None:
        """Ask for a partial scan of exactly `path` (a folder as Plex sees it).

        Plex ignores a path outside the library's folders without a word, so that is refused
        here, naming the folders (the usual cause: PLEX_DOWNLOAD_ROOT not set or wrong).
        """
        locations = [normalize_path(p) for p in self._call("locations", lambda: section.locations)]
        wanted = normalize_path(path)
        if locations and not any(wanted.startswith(p.rstrip("/") + "/") for p in locations):
            raise self._library_error(
                f"{path!r} is not inside a folder of the Plex library {section.title!r}"
                f" ({', '.join(locations)}): set PLEX_DOWNLOAD_ROOT to DOWNLOAD_ROOT as the"
                " Plex server sees it"
            )
        self._call("scan", lambda: section.update(path=path))

    def items_for(
        self, section: LibrarySection, files: set[str], *, page_size: int = 200
    ) -> dict[str, Video]:
        """The section's items of `files` (normalised paths as Plex sees them), by file.

        Walks the library newest first (`sort=addedAt:desc`, a page at a time) and stops as
        soon as every file is found: files that were just scanned cost a page, not the whole
        library; only files Plex does not hold make it read every page.
        """
        wanted = {normalize_path(file) for file in files}
        found: dict[str, Video] = {}
        key = f"/library/sections/{int(section.key)}/all?type=1&sort=addedAt%3Adesc"
        start = 0
        while wanted - found.keys():
            page = self._call(
                "GET /library/sections/.../all",
                lambda s=start: section.fetchItems(
                    key, container_start=s, container_size=page_size, maxresults=page_size
                ),
            )
            for item in page:
                for file in _files(item):
                    path = normalize_path(file)
                    if path in wanted:
                        found.setdefault(path, item)
            if len(page) < page_size:
                break
            start += page_size
        return found

    def collection_by_key(self, section: LibrarySection, rating_key: str) -> Collection | None:
        """The regular collection `rating_key` of `section`, or None (gone, moved, smart)."""
        if not rating_key.isdigit():
            return None
        try:
            item = self._call(
                "GET /library/metadata", lambda: self.server.fetchItem(int(rating_key))
            )
        except PlexProtocolError:
            return None
        if not isinstance(item, Collection) or item.smart:
            return None
        if item.librarySectionID is not None and int(item.librarySectionID) != int(section.key):
            return None
        return item

    def collection_by_title(self, section: LibrarySection, title: str) -> Collection | None:
        """The regular collection of `section` titled `title` (exact first, then any case)."""
        found = self._call("GET collections", lambda: section.collections(title=title))
        regular = [c for c in found if isinstance(c, Collection) and not c.smart]
        for exact in (True, False):
            for collection in regular:
                same = (
                    collection.title == title
                    if exact
                    else (collection.title or "").lower() == title.lower()
                )
                if same:
                    return collection
        return None

    def collection_items(self, collection: Collection) -> dict[str, Video]:
        """The collection's items by normalised file path (an item without a file: by key)."""
        items: dict[str, Video] = {}
        for item in self._call("GET .../children", collection.items):
            paths = [normalize_path(file) for file in _files(item)]
            for path in paths or [f"ratingKey:{item.ratingKey}"]:
                items.setdefault(path, item)
        return items

    def create_collection(
        self, section: LibrarySection, title: str, items: list[Video]
    ) -> Collection:
        first, rest = items[:_BATCH], items[_BATCH:]
        collection = self._call(
            "create collection",
            lambda: self.server.createCollection(title, section, items=first),
        )
        if rest:
            self.add_to_collection(collection, rest)
        return collection

    def add_to_collection(self, collection: Collection, items: list[Video]) -> None:
        for batch in _batches(items, _BATCH):
            self._call("add to collection", lambda b=batch: collection.addItems(b))

    # -- error translation -------------------------------------------------------------------

    def _call(self, what: str, func: Callable[[], T]) -> T:
        try:
            return func()
        except Exception as exc:  # noqa: BLE001  (translated below, never chained)
            error = self._translate(what, exc)
        error.args = tuple(self._scrub(str(arg)) for arg in error.args)
        raise error from None

    def _translate(self, what: str, exc: Exception) -> Exception:
        """Our error for plexapi's / requests' `exc`, its message ours (the class name kept)."""
        where = f"Plex at {self.shown}"
        status = _status_of(exc) if isinstance(exc, BadRequest) else None
        if isinstance(exc, Unauthorized) or status == 403:
            error: Exception = PlexAuthError(
                f"{where} refused the token ({status or 401}) on {what}: check the api_key of"
                " service_config 'plex' or the owner's plex_token"
            )
        elif status is not None and (status >= 500 or status in (408, 429)):
            error = PlexUnavailableError(f"{where} answered {status} on {what}")
        elif isinstance(exc, BadRequest):
            error = PlexProtocolError(f"{where} refused {what} (HTTP {status or '?'})")
        elif isinstance(exc, NotFound):
            error = PlexProtocolError(f"{where} answered 404 on {what}")
        elif isinstance(
            exc,
            (
                requests.exceptions.InvalidURL,
                requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema,
            ),
        ):
            error = PlexNotConfiguredError(
                f"service_config 'plex': service_url {self.shown!r} is not a usable http(s) URL"
            )
        elif isinstance(exc, requests.Timeout):
            error = PlexUnavailableError(f"{where} did not answer {what} in time")
        elif isinstance(exc, requests.ConnectionError):
            error = PlexUnavailableError(f"{where} cannot be reached ({what})")
        elif isinstance(exc, requests.RequestException):
            error = PlexUnavailableError(f"{where}: {what} failed ({type(exc).__name__})")
        elif isinstance(exc, (PlexAuthError, PlexLibraryError)):
            error = exc
        else:  # bad XML (a SyntaxError), an element plexapi cannot read, ...
            error = PlexProtocolError(
                f"{where} gave an answer that cannot be used on {what} ({type(exc).__name__})"
            )
        return error

    def _library_error(self, message: str) -> PlexLibraryError:
        """A PlexLibraryError raised outside `_call`: it quotes Plex's names, so it is scrubbed
        too (a library named with the token must not carry it into the ledger)."""
        return PlexLibraryError(self._scrub(message))

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "[token]") if self._secret else text


def _shown(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    if not parts.scheme or not host:
        return "(not a URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _status_of(exc: BaseException) -> int | None:
    match = _STATUS.match(str(exc))
    return int(match[1]) if match else None


def _files(item: Video) -> Iterable[str]:
    for media in getattr(item, "media", None) or []:
        for part in media.parts or []:
            if part.file:
                yield part.file


def _batches(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
