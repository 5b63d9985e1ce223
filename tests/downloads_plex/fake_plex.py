"""A loopback Plex Media Server: the endpoints plexapi calls for a scan and a collection.

A real HTTP server in a thread, answering XML shaped like Plex Media Server's (a
`MediaContainer` with `Directory` / `Video` children, `ratingKey`, `key`, paging by the
`X-Plex-Container-Start` / `X-Plex-Container-Size` headers and `totalSize`). Every call but
`/identity` needs the token (`X-Plex-Token` header or query parameter), else 401 with Plex's
HTML body.

It models a library scan: `GET /library/sections/{id}/refresh?path=X` looks at the media files
under X on the local disk (through `plex_to_local`, when Plex sees the files under another
root) and, after `scan_delay` seconds, indexes the ones it has not indexed yet as movies, one
per file. With `index_files = False` a scan indexes nothing (the bounded-wait case).
`go_down()` closes the listening socket (connection refused, as when Plex is stopped);
`come_up()` listens again on the same port.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from xml.etree import ElementTree as ET

from tests.helpers import free_port

TOKEN = "plex-token-FAKE-0123456789abcdef"
MEDIA_SUFFIXES = {".mp4", ".mkv", ".webm", ".m4v", ".mov", ".avi"}
MOVIE_TYPE = "1"
COLLECTION_TYPE = "18"
UNAUTHORIZED_BODY = (
    "<html><head><title>Unauthorized</title></head><body><h1>401 Unauthorized</h1></body></html>"
)


@dataclass
class Item:
    rating_key: int
    section: int
    title: str
    file: str
    size: int
    added_at: int


@dataclass
class Collection:
    rating_key: int
    section: int
    title: str
    items: list[int] = field(default_factory=list)
    added_at: int = 0
    updated_at: int = 0


@dataclass
class Section:
    key: int
    title: str
    type: str = "movie"
    locations: list[str] = field(default_factory=list)
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    token: str | None


class FakePlex:
    def __init__(self, *, token: str = TOKEN, port: int | None = None) -> None:
        self.token = token
        self.machine_identifier = uuid.uuid4().hex
        self.sections: dict[int, Section] = {}
        self.items: dict[int, Item] = {}
        self.collections: dict[int, Collection] = {}
        self.calls: list[Call] = []
        self.scan_delay = 0.0
        self.index_files = True
        #: A careless server quoting the token it refused in its 401 body.
        self.echo_token = False
        #: Maps a path as Plex sees it to the local path of the same file (identity by default).
        self.plex_to_local: Callable[[str], str] = lambda path: path
        self.lock = threading.RLock()
        self._next_key = 100
        self._timers: list[threading.Timer] = []
        self.port = port or free_port()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.come_up()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def come_up(self) -> None:
        if self._server is not None:
            return
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-plex", daemon=True)
        self._thread.start()

    def go_down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self.go_down()

    # -- state -------------------------------------------------------------------------------

    def add_section(self, title: str, *, type: str = "movie", locations: list[str] | None = None):
        with self.lock:
            key = len(self.sections) + 1
            self.sections[key] = Section(key, title, type, list(locations or []))
            return self.sections[key]

    def new_key(self) -> int:
        with self.lock:
            self._next_key += 1
            return self._next_key

    def refreshes(self) -> list[str]:
        """The `path` of every partial scan asked for, in order."""
        return [
            call.query["path"][0]
            for call in self.calls
            if call.path.endswith("/refresh") and "path" in call.query
        ]

    def scan(self, section: Section, plex_path: str) -> None:
        """Index the media files under `plex_path` (after scan_delay s)."""

        def run() -> None:
            if not self.index_files:
                return
            local = Path(self.plex_to_local(plex_path))
            if not local.is_dir():
                return
            known = {item.file for item in self.items.values()}
            for path in sorted(local.rglob("*")):
                if path.suffix.lower() not in MEDIA_SUFFIXES or not path.is_file():
                    continue
                plex_file = plex_path.rstrip("/") + "/" + str(path.relative_to(local))
                if plex_file in known:
                    continue
                with self.lock:
                    key = self.new_key()
                    self.items[key] = Item(
                        rating_key=key,
                        section=section.key,
                        title=path.stem,
                        file=plex_file,
                        size=path.stat().st_size,
                        added_at=int(time.time()),
                    )

        if self.scan_delay > 0:
            timer = threading.Timer(self.scan_delay, run)
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        else:
            run()


# -- XML ---------------------------------------------------------------------------------------


def _container(**attrs: object) -> ET.Element:
    return ET.Element("MediaContainer", {k: str(v) for k, v in attrs.items()})


def _section_xml(parent: ET.Element, section: Section) -> None:
    now = str(int(time.time()))
    directory = ET.SubElement(
        parent,
        "Directory",
        {
            "allowSync": "1",
            "art": "/:/resources/movie-fanart.jpg",
            "composite": f"/library/sections/{section.key}/composite/{now}",
            "filters": "1",
            "refreshing": "0",
            "thumb": "/:/resources/video.png",
            "key": str(section.key),
            "type": section.type,
            "title": section.title,
            "agent": "tv.plex.agents.none",
            "scanner": "Plex Video Files Scanner",
            "language": "xn",
            "uuid": section.uuid,
            "updatedAt": now,
            "createdAt": now,
            "scannedAt": now,
            "content": "1",
            "directory": "1",
            "contentChangedAt": "1",
            "hidden": "0",
        },
    )
    for index, path in enumerate(section.locations, start=1):
        ET.SubElement(directory, "Location", {"id": str(index), "path": path})


def _video_xml(parent: ET.Element, item: Item, section: Section) -> None:
    suffix = Path(item.file).suffix.lstrip(".") or "mp4"
    video = ET.SubElement(
        parent,
        "Video",
        {
            "ratingKey": str(item.rating_key),
            "key": f"/library/metadata/{item.rating_key}",
            "guid": f"local://{item.rating_key}",
            "type": "movie",
            "title": item.title,
            "titleSort": item.title,
            "librarySectionTitle": section.title,
            "librarySectionID": str(section.key),
            "librarySectionKey": f"/library/sections/{section.key}",
            "summary": "",
            "thumb": f"/library/metadata/{item.rating_key}/thumb/{item.added_at}",
            "duration": "2000",
            "addedAt": str(item.added_at),
            "updatedAt": str(item.added_at),
        },
    )
    media = ET.SubElement(
        video,
        "Media",
        {
            "id": str(item.rating_key + 10_000),
            "duration": "2000",
            "bitrate": "120",
            "container": suffix,
            "videoCodec": "h264",
            "audioCodec": "aac",
            "videoResolution": "sd",
        },
    )
    ET.SubElement(
        media,
        "Part",
        {
            "id": str(item.rating_key + 20_000),
            "key": f"/library/parts/{item.rating_key + 20_000}/{item.added_at}/file.{suffix}",
            "duration": "2000",
            "file": item.file,
            "size": str(item.size),
            "container": suffix,
        },
    )


def _collection_xml(parent: ET.Element, collection: Collection, section: Section) -> None:
    key = collection.rating_key
    ET.SubElement(
        parent,
        "Directory",
        {
            "ratingKey": str(collection.rating_key),
            "key": f"/library/collections/{collection.rating_key}/children",
            "guid": f"collection://{uuid.uuid5(uuid.NAMESPACE_OID, str(collection.rating_key))}",
            "type": "collection",
            "title": collection.title,
            "subtype": "movie",
            "summary": "",
            "index": str(collection.rating_key),
            "content": "",
            "smart": "0",
            "librarySectionTitle": section.title,
            "librarySectionID": str(section.key),
            "librarySectionKey": f"/library/sections/{section.key}",
            "thumb": f"/library/collections/{key}/composite/{collection.updated_at}",
            "addedAt": str(collection.added_at),
            "updatedAt": str(collection.updated_at),
            "childCount": str(len(collection.items)),
        },
    )


_SECTION_PATH = re.compile(r"/library/sections/(\d+)/(refresh|all)")
_COLLECTION_PATH = re.compile(r"/library/collections/(\d+)(/items|/children)?")
_METADATA_PATH = re.compile(r"/library/metadata/(\d+)")
_URI_KEYS = re.compile(r"/library/metadata/([\d,]+)$")


def _handler(fake: FakePlex) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        # -- plumbing ----------------------------------------------------------------------

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _xml(self, element: ET.Element) -> None:
            body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(element)
            self._send(200, body, "text/xml;charset=utf-8")

        def _status(self, status: int, text: str = "") -> None:
            self._send(status, text.encode(), "text/html")

        def _dispatch(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            parts = urlsplit(self.path)
            path = unquote(parts.path).rstrip("/") or "/"
            query = parse_qs(parts.query)
            token = self.headers.get("X-Plex-Token") or (query.get("X-Plex-Token") or [None])[0]
            with fake.lock:
                fake.calls.append(Call(method, path, query, token))
            if path == "/identity":
                self._xml(
                    _container(
                        size=0,
                        claimed=1,
                        machineIdentifier=fake.machine_identifier,
                        version="1.41.0.8994-f2c27da23",
                    )
                )
                return
            if token != fake.token:
                echo = f"<!-- refused {token} -->" if fake.echo_token else ""
                self._status(401, UNAUTHORIZED_BODY + echo)
                return
            with fake.lock:
                self._route(method, path, query)

        def _route(self, method: str, path: str, query: dict[str, list[str]]) -> None:
            if method == "GET" and path == "/":
                self._root()
            elif method == "GET" and path == "/library":
                self._library()
            elif method == "GET" and path == "/library/sections":
                container = _container(size=len(fake.sections), allowSync=0, title1="Plex Library")
                for section in fake.sections.values():
                    _section_xml(container, section)
                self._xml(container)
            elif method == "POST" and path == "/library/collections":
                self._create_collection(query)
            elif match := _SECTION_PATH.fullmatch(path):
                self._section(method, int(match[1]), match[2], query)
            elif match := _COLLECTION_PATH.fullmatch(path):
                self._collection(method, int(match[1]), match[2], query)
            elif (match := _METADATA_PATH.fullmatch(path)) and method == "GET":
                self._metadata(int(match[1]))
            else:
                self._status(404, "<html><body><h1>404 Not Found</h1></body></html>")

        def _section(self, method: str, key: int, action: str, query: dict[str, list[str]]) -> None:
            section = fake.sections.get(key)
            if section is None:
                self._status(404, "<html><body><h1>404 Not Found</h1></body></html>")
            elif action == "refresh" and method == "GET":
                if "path" in query:
                    fake.scan(section, query["path"][0])
                self._send(200, b"", "text/html")
            elif action == "all" and method == "GET":
                self._section_all(section, query)
            else:
                self._status(405)

        def _paged(self, container: ET.Element, elements: list[Callable[[ET.Element], None]]):
            start = int(self.headers.get("X-Plex-Container-Start") or 0)
            size = int(self.headers.get("X-Plex-Container-Size") or len(elements) or 1)
            page = elements[start : start + size]
            container.set("size", str(len(page)))
            container.set("totalSize", str(len(elements)))
            container.set("offset", str(start))
            for build in page:
                build(container)
            self._xml(container)

        # -- endpoints ---------------------------------------------------------------------

        def _root(self) -> None:
            self._xml(
                _container(
                    size=len(fake.sections),
                    allowCameraUpload=0,
                    allowChannelAccess=1,
                    allowMediaDeletion=1,
                    allowSharing=1,
                    allowSync=1,
                    backgroundProcessing=1,
                    certificate=0,
                    companionProxy=1,
                    countryCode="usa",
                    diagnostics="logs,databases,streaminglogs",
                    eventStream=1,
                    friendlyName="fake-plex",
                    hubSearch=1,
                    machineIdentifier=fake.machine_identifier,
                    multiuser=1,
                    myPlex=0,
                    platform="Linux",
                    platformVersion="6.1",
                    transcoderActiveVideoSessions=0,
                    updatedAt=int(time.time()),
                    version="1.41.0.8994-f2c27da23",
                )
            )

        def _library(self) -> None:
            container = _container(
                size=3,
                allowSync=0,
                art="/:/resources/library-art.png",
                content="",
                identifier="com.plexapp.plugins.library",
                mediaTagPrefix="/system/bundle/media/flags/",
                mediaTagVersion="1700000000",
                title1="Plex Library",
                title2="",
            )
            for key, title in (("sections", "Library Sections"), ("recentlyAdded", "Recently")):
                ET.SubElement(container, "Directory", {"key": key, "title": title})
            self._xml(container)

        def _section_all(self, section: Section, query: dict[str, list[str]]) -> None:
            wanted = (query.get("type") or [MOVIE_TYPE])[0]
            title = (query.get("title") or [None])[0]
            container = _container(
                allowSync=1,
                art="/:/resources/movie-fanart.jpg",
                identifier="com.plexapp.plugins.library",
                librarySectionID=section.key,
                librarySectionTitle=section.title,
                librarySectionUUID=section.uuid,
                mediaTagPrefix="/system/bundle/media/flags/",
                title1=section.title,
                title2="All",
                viewGroup="collection" if wanted == COLLECTION_TYPE else "movie",
            )
            builders: list[Callable[[ET.Element], None]] = []
            if wanted == COLLECTION_TYPE:
                for collection in fake.collections.values():
                    if collection.section != section.key:
                        continue
                    if title is not None and title.lower() not in collection.title.lower():
                        continue
                    builders.append(
                        lambda parent, c=collection: _collection_xml(parent, c, section)
                    )
            else:
                items = list(fake.items.values())
                sort = (query.get("sort") or [""])[0]
                if sort == "addedAt:desc":
                    items.sort(key=lambda i: (i.added_at, i.rating_key), reverse=True)
                elif sort:
                    self._status(400, "<html><body><h1>400 Bad Request</h1></body></html>")
                    return
                for item in items:
                    if item.section != section.key:
                        continue
                    if title is not None and title.lower() not in item.title.lower():
                        continue
                    builders.append(lambda parent, i=item: _video_xml(parent, i, section))
            self._paged(container, builders)

        def _keys_of(self, query: dict[str, list[str]]) -> list[int] | None:
            uri = (query.get("uri") or [""])[0]
            prefix = f"server://{fake.machine_identifier}/com.plexapp.plugins.library"
            match = _URI_KEYS.search(uri)
            if not uri.startswith(prefix) or match is None:
                return None
            keys = [int(key) for key in match[1].split(",") if key]
            if any(key not in fake.items for key in keys):
                return None
            return keys

        def _create_collection(self, query: dict[str, list[str]]) -> None:
            section = fake.sections.get(int((query.get("sectionId") or ["0"])[0]))
            keys = self._keys_of(query)
            title = (query.get("title") or [""])[0]
            if section is None or keys is None or not title or query.get("smart") != ["0"]:
                self._status(400, "<html><body><h1>400 Bad Request</h1></body></html>")
                return
            now = int(time.time())
            collection = Collection(fake.new_key(), section.key, title, [], now, now)
            for key in keys:
                if key not in collection.items:
                    collection.items.append(key)
            fake.collections[collection.rating_key] = collection
            container = _container(size=1)
            _collection_xml(container, collection, section)
            self._xml(container)

        def _collection(
            self, method: str, key: int, tail: str | None, query: dict[str, list[str]]
        ) -> None:
            collection = fake.collections.get(key)
            if collection is None:
                self._status(404, "<html><body><h1>404 Not Found</h1></body></html>")
                return
            section = fake.sections[collection.section]
            if tail == "/items" and method == "PUT":
                keys = self._keys_of(query)
                if keys is None:
                    self._status(400, "<html><body><h1>400 Bad Request</h1></body></html>")
                    return
                for item_key in keys:
                    if item_key not in collection.items:
                        collection.items.append(item_key)
                collection.updated_at = int(time.time())
                container = _container(size=1)
                _collection_xml(container, collection, section)
                self._xml(container)
            elif tail == "/children" and method == "GET":
                container = _container(
                    librarySectionID=section.key,
                    librarySectionTitle=section.title,
                    title1=section.title,
                    title2=collection.title,
                    viewGroup="movie",
                )
                self._paged(
                    container,
                    [
                        lambda parent, i=fake.items[item_key]: _video_xml(parent, i, section)
                        for item_key in collection.items
                        if item_key in fake.items
                    ],
                )
            elif tail is None and method == "GET":
                self._metadata(key)
            elif tail is None and method == "DELETE":
                del fake.collections[key]
                self._send(200, b"", "text/html")
            else:
                self._status(405)

        def _metadata(self, key: int) -> None:
            container = _container(size=1, identifier="com.plexapp.plugins.library")
            if key in fake.items:
                item = fake.items[key]
                _video_xml(container, item, fake.sections[item.section])
            elif key in fake.collections:
                collection = fake.collections[key]
                _collection_xml(container, collection, fake.sections[collection.section])
            else:
                self._status(404, "<html><body><h1>404 Not Found</h1></body></html>")
                return
            self._xml(container)

    return Handler
