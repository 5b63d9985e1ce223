"""A loopback fake Overseerr (`/api/v1`, X-Api-Key) for the tests and the benchmark.

Serves GET /request (sort=modified, newest first, take/skip), GET /request/{id},
GET /movie/{id} and /tv/{id} (title, mediaInfo.requests), GET /user, POST /request (409
like Overseerr when a live request holds the media). `fault` scripts a misbehaviour of
GET /request (`fault_times` limits it to that many calls, then the fake answers normally),
`stale_details` details that do not list requests yet, `post_hold` a POST whose answer waits,
`page_hold` a GET /request for skip `hold_skip` that waits. Bodies follow overseerr-api.yml
and seerr-api.yml (tests check both, the fault pages included).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.loopback import LoopbackServer

KEY = "fake-overseerr-key"


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch))


class FakeOverseerr:
    def __init__(self) -> None:
        self.requests: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.titles: dict[tuple[str, int], str] = {}
        #: Request ids by (media type, tmdb id), for the media details' mediaInfo.requests.
        self.by_media: dict[tuple[str, int], set[int]] = {}
        self.fault: str | None = None
        #: The fault applies to this many more GET /request calls (None: to every call).
        self.fault_times: int | None = None
        #: Retry-After of the `status429` fault.
        self.retry_after = "1"
        #: GET /movie|tv/{id} leaves mediaInfo.requests out this many more times (a stale cache).
        self.stale_details = 0
        self.calls: list[str] = []
        self.post_hold = threading.Event()
        self.post_hold.set()
        self.posted = threading.Event()
        #: GET /request with skip == hold_skip waits for page_hold; page_held tells it arrived.
        self.hold_skip: int | None = None
        self.page_hold = threading.Event()
        self.page_hold.set()
        self.page_held = threading.Event()
        #: Set by stop(): the faults that hang or drip forever end.
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.loopback = LoopbackServer(self.handle)

    @property
    def url(self) -> str:
        return self.loopback.url

    def stop(self) -> None:
        self.stopping.set()
        self.post_hold.set()
        self.page_hold.set()
        self.loopback.stop()

    # -- data ------------------------------------------------------------------------------

    def add_user(self, uid: int, email: str, plex_id: int | None) -> dict[str, Any]:
        user = {
            "id": uid,
            "email": email,
            "plexId": plex_id,
            "createdAt": iso(0),
            "updatedAt": iso(0),
        }
        self.users[uid] = user
        return user

    def add_request(
        self,
        rid: int,
        *,
        user: int,
        tmdb: int,
        media_type: str = "movie",
        status: int = 2,
        media_status: int = 3,
        updated: float | None = None,
        title: str | None = None,
    ) -> dict[str, Any]:
        stamp = iso(updated if updated is not None else time.time() - 3600 + rid)
        item = {
            "id": rid,
            "status": status,
            "type": media_type,
            "is4k": False,
            "createdAt": iso(1_700_000_000 + rid),
            "updatedAt": stamp,
            "requestedBy": self.users[user],
            "modifiedBy": None,
            "media": {
                "id": tmdb,
                "tmdbId": tmdb,
                "tvdbId": None,
                "mediaType": media_type,
                "status": media_status,
                "createdAt": stamp,
                "updatedAt": stamp,
            },
        }
        old = self.requests.get(rid)
        if old is not None:
            self.by_media.get((old["type"], old["media"]["tmdbId"]), set()).discard(rid)
        self.requests[rid] = item
        self.by_media.setdefault((media_type, tmdb), set()).add(rid)
        self.titles[(media_type, tmdb)] = title or f"Title {media_type} {tmdb}"
        return item

    def count(self, call: str) -> int:
        """How many times `call` ("GET /request", "GET /movie/10") was received."""
        return self.calls.count(call)

    def by_modified(self) -> list[dict[str, Any]]:
        return sorted(self.requests.values(), key=lambda r: (r["updatedAt"], r["id"]), reverse=True)

    # -- HTTP ------------------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path.removeprefix("/api/v1")
        self.calls.append(f"{method} {path}")
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if handler.headers.get("X-Api-Key") != KEY:
            return self.send(handler, 401, {"message": "Unauthorized"})
        if method == "GET" and path == "/request":
            return self.list_requests(handler, query)
        if method == "GET" and path.startswith("/request/"):
            item = self.requests.get(int(path.rsplit("/", 1)[1]))
            return self.send(handler, 200, item) if item else self.send(handler, 404, {})
        if method == "GET" and path.startswith(("/movie/", "/tv/")):
            media_type, tmdb = path.strip("/").split("/")
            title = self.titles.get((media_type, int(tmdb)))
            if title is None:
                return self.send(handler, 404, {"message": "not found"})
            candidates = sorted(self.by_media.get((media_type, int(tmdb)), ()))
            requests = [
                r
                for r in (self.requests[rid] for rid in candidates if rid in self.requests)
                if r["media"]["tmdbId"] == int(tmdb) and r["media"]["mediaType"] == media_type
            ]
            key = "title" if media_type == "movie" else "name"
            if self.stale_details > 0:
                self.stale_details -= 1
                requests = []
            info = {"id": int(tmdb), "tmdbId": int(tmdb), "status": 2, "requests": requests}
            return self.send(handler, 200, {"id": int(tmdb), key: title, "mediaInfo": info})
        if method == "GET" and path == "/user":
            users = list(self.users.values())
            take, skip = int(query.get("take", 20)), int(query.get("skip", 0))
            return self.send(handler, 200, self.page(users, take, skip))
        if method == "POST" and path == "/request":
            data = json.loads(body)
            with self.lock:
                if self.duplicate(data["mediaType"], data["mediaId"]):
                    # Overseerr's DuplicateMediaRequestError: one live request per media.
                    message = "Request for this media already exists."
                    return self.send(handler, 409, {"message": message})
                rid = max(self.requests, default=0) + 1
                item = self.add_request(
                    rid,
                    user=data["userId"],
                    tmdb=data["mediaId"],
                    media_type=data["mediaType"],
                    status=1,
                    media_status=2,
                    updated=time.time(),
                )
            self.posted.set()
            self.post_hold.wait(30)
            return self.send(handler, 201, item)
        return self.send(handler, 404, {"message": "no route"})

    def duplicate(self, media_type: str, tmdb: int) -> bool:
        """Whether a request that is not declined (3) holds this media already."""
        return any(
            self.requests[rid]["status"] != 3 and not self.requests[rid]["is4k"]
            for rid in self.by_media.get((media_type, int(tmdb)), ())
        )

    @staticmethod
    def page(items: list[Any], take: int, skip: int) -> dict[str, Any]:
        pages = (len(items) + take - 1) // take
        return {
            "pageInfo": {"page": skip // take + 1, "pages": pages, "results": len(items)},
            "results": items[skip : skip + take],
        }

    def current_fault(self) -> str | None:
        with self.lock:
            if self.fault_times is not None:
                if self.fault_times <= 0:
                    return None
                self.fault_times -= 1
            return self.fault

    def list_requests(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        take, skip = int(query.get("take", 20)), int(query.get("skip", 0))
        if self.hold_skip is not None and skip == self.hold_skip:
            self.page_held.set()
            self.page_hold.wait(30)
        fault = self.current_fault()
        if fault is not None and self.transport_fault(handler, fault):
            return None
        page = self.page(self.by_modified(), take, skip)
        if fault == "repeat":
            page = self.page(self.by_modified(), take, 0)
        if fault == "endless_pages":
            page["pageInfo"]["pages"] = 10**6
            page["pageInfo"]["results"] = 10**8
            page = {**page, "results": self.page(self.by_modified(), take, 0)["results"]}
        if fault == "understated_results":
            # pageInfo counts a third of the requests the pages hold (pages stays right).
            page["pageInfo"]["results"] = len(self.requests) // 3
        if fault == "endless_distinct":
            page = self.distinct_page(take, skip)
        return self.send(handler, 200, page)

    def transport_fault(self, handler: BaseHTTPRequestHandler, fault: str) -> bool:
        """Answer `fault` if it is one that sends no page; whether it was."""
        answers: dict[str, Callable[[], object]] = {
            "malformed_json": lambda: self.raw(
                handler, 200, b'{"pageInfo": {"pages": 1', "application/json"
            ),
            "html": lambda: self.raw(handler, 502, b"<html>Bad gateway</html>", "text/html"),
            "html200": lambda: self.raw(handler, 200, b"<html>login</html>", "text/html"),
            "huge": lambda: self.raw(
                handler, 200, b'{"x": "' + b"a" * 10_000_000 + b'"}', "application/json"
            ),
            "endless": lambda: self.endless(handler),
            "status503": lambda: self.send(handler, 503, {"message": "down"}),
            "status429": lambda: self.send(
                handler, 429, {"message": "slow down"}, {"Retry-After": self.retry_after}
            ),
            "status403": lambda: self.send(handler, 403, {"message": "Forbidden"}),
            # The connection closes before any answer (a restart, a proxy).
            "drop": lambda: None,
            # Headers never come (until the fake stops).
            "hang": lambda: self.stopping.wait(60),
            "drip": lambda: self.drip(handler),
            "huge_chunked": lambda: self.huge_chunked(handler),
            "missing_pageinfo": lambda: self.send(handler, 200, {"results": []}),
        }
        answer = answers.get(fault)
        if answer is None:
            return False
        answer()
        if fault in ("drop", "hang"):
            handler.close_connection = True
        return True

    def distinct_page(self, take: int, skip: int) -> dict[str, Any]:
        """A page of requests never seen before, at every skip: copies of the newest request
        with ids from 1,000,000 + skip, older the further the walk goes; pageInfo announces
        a million pages."""
        template = self.by_modified()[0]
        results = []
        for offset in range(take):
            item = copy.deepcopy(template)
            item["id"] = 1_000_000 + skip + offset
            item["updatedAt"] = iso(1_800_000_000 - skip - offset)
            results.append(item)
        page_info = {"page": skip // take + 1, "pages": 10**6, "results": 10**6 * take}
        return {"pageInfo": page_info, "results": results}

    def drip(self, handler: BaseHTTPRequestHandler) -> None:
        """200 with a Content-Length of 1 MB, then a byte every 0.2 s until the fake stops."""
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "1000000")
        handler.end_headers()
        try:
            handler.wfile.write(b"[")
            while not self.stopping.wait(0.2):
                handler.wfile.write(b" ")
                handler.wfile.flush()
        except OSError:
            pass
        handler.close_connection = True

    def huge_chunked(self, handler: BaseHTTPRequestHandler) -> None:
        """200, chunked (no Content-Length), 64 KiB chunks as fast as the client reads, until
        it hangs up or 100 MB went (only a cap checked while reading can refuse it)."""
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        chunk = b"1," * 32_768
        try:
            handler.wfile.write(b"1\r\n[\r\n")
            for _ in range(1600):
                if self.stopping.is_set():
                    break
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass
        handler.close_connection = True

    def endless(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            handler.wfile.write(b"1\r\n[\r\n")
            for _ in range(600):
                handler.wfile.write(b"2\r\n1,\r\n")
                handler.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass
        handler.close_connection = True

    @staticmethod
    def send(
        handler: BaseHTTPRequestHandler,
        status: int,
        data: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        FakeOverseerr.raw(handler, status, json.dumps(data).encode(), "application/json", headers)

    @staticmethod
    def raw(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except OSError:
            pass
