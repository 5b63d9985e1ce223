"""A loopback "video site" for the downloads tests and bench: an RSS playlist of real media.

`FeedServer` serves `/feed.xml`, an RSS 2.0 channel whose `<item>`s carry `<enclosure>` URLs
and `<guid>`s (yt-dlp's generic extractor reads it as a playlist, the guid as the video id),
and the media files themselves, made once at set-up with the `imageio-ffmpeg` wheel's ffmpeg
(tiny real MP4s: H.264 + AAC). Paths:

- `/media/<name>.mp4`: the file, with Range support (yt-dlp resumes a partial file);
- `/broken/<name>.mp4`: 404 (a removed video); `/error500/<name>.mp4`: 500 (a flaky one);
- `/slow/<name>.mp4`: the file dripped `drip_bytes` every `drip_interval` s (cancel tests);
- `/thumb/<guid>.png`: a PNG thumbnail (items with `thumbnail=True` name it);
- `/redirect?to=<url>`: a 302 to `to` (redirect SSRF tests).

`entries` is the playlist: a list of `Entry(guid, title, path)`, changeable between runs.
"""

from __future__ import annotations

import functools
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape, quoteattr

import imageio_ffmpeg


@dataclass(frozen=True)
class Entry:
    guid: str
    title: str
    #: `media`, `broken`, `error500` or `slow`.
    path: str = "media"
    #: Whether the item has an `<itunes:image>` (served as `/thumb/<guid>.png`).
    thumbnail: bool = False


@functools.cache
def _make_media(folder: str, seconds: float, size: str) -> bytes:
    """A small real MP4 (test pattern and a tone), made by the wheel's ffmpeg."""
    out = Path(folder) / f"sample-{seconds}-{size}.mp4"
    if not out.exists():
        subprocess.run(
            [
                imageio_ffmpeg.get_ffmpeg_exe(),
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc=duration={seconds}:size={size}:rate=10",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=440:duration={seconds}",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-shortest",
                "-movflags",
                "+faststart",
                str(out),
            ],
            check=True,
            timeout=120,
        )
    return out.read_bytes()


def make_thumbnail(folder: Path) -> bytes:
    """A small real PNG (one test-pattern frame)."""
    return _make_png(str(folder))


def make_media(folder: Path, seconds: float = 1.0, size: str = "160x120") -> bytes:
    return _make_media(str(folder), seconds, size)


@functools.cache
def _make_png(folder: str) -> bytes:
    out = Path(folder) / "thumb.png"
    if not out.exists():
        subprocess.run(
            [
                imageio_ffmpeg.get_ffmpeg_exe(),
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=160x90",
                "-frames:v",
                "1",
                str(out),
            ],
            check=True,
            timeout=60,
        )
    return out.read_bytes()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (yt-dlp peeks at a media file, a cancel) is no error."""


class FeedServer:
    def __init__(
        self, media: bytes, *, title: str = "Loopback Playlist", thumbnail: bytes = b""
    ) -> None:
        self.media = media
        self.thumbnail = thumbnail
        self.title = title
        self.entries: list[Entry] = []
        self.drip_bytes = 2048
        self.drip_interval = 0.05
        self.requests: list[str] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                server.handle(self, head=True)

            def do_GET(self) -> None:
                server.handle(self, head=False)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def feed_url(self) -> str:
        return f"{self.url}/feed.xml"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def media_requests(self) -> list[str]:
        with self.lock:
            return [path for path in self.requests if not path.startswith("/feed")]

    def feed(self) -> bytes:
        items = "".join(
            f"<item><title>{escape(entry.title)}</title><guid>{escape(entry.guid)}</guid>"
            f"<enclosure url={quoteattr(f'{self.url}/{entry.path}/{entry.guid}.mp4')}"
            f' length="{len(self.media)}" type="video/mp4"/>'
            + (
                f"<itunes:image href={quoteattr(f'{self.url}/thumb/{entry.guid}.png')}/>"
                if entry.thumbnail
                else ""
            )
            + "</item>"
            for entry in self.entries
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"'
            ' xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel>'
            f"<title>{escape(self.title)}</title><link>{self.url}/</link>"
            f"<description>test</description>{items}</channel></rss>"
        ).encode()

    def handle(self, request: BaseHTTPRequestHandler, *, head: bool) -> None:
        parts = urlsplit(request.path)
        with self.lock:
            self.requests.append(parts.path)
        if parts.path == "/feed.xml":
            self._send(request, 200, self.feed(), "application/rss+xml", head=head)
        elif parts.path == "/redirect":
            target = parse_qs(parts.query).get("to", [""])[0]
            request.send_response(302)
            request.send_header("Location", target)
            request.send_header("Content-Length", "0")
            request.end_headers()
        elif parts.path.startswith("/thumb/") and self.thumbnail:
            self._send(request, 200, self.thumbnail, "image/png", head=head)
        elif parts.path.startswith("/media/"):
            self._send_media(request, head=head)
        elif parts.path.startswith("/slow/"):
            self._drip(request, head=head)
        elif parts.path.startswith("/error500/"):
            self._send(request, 500, b"server error", "text/plain", head=head)
        else:
            self._send(request, 404, b"not found", "text/plain", head=head)

    def _send(
        self, request: BaseHTTPRequestHandler, status: int, body: bytes, kind: str, *, head: bool
    ) -> None:
        request.send_response(status)
        request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if not head:
            request.wfile.write(body)

    def _send_media(self, request: BaseHTTPRequestHandler, *, head: bool) -> None:
        body = self.media
        start = 0
        ranged = request.headers.get("Range", "")
        if ranged.startswith("bytes="):
            first = ranged[6:].split("-", 1)[0]
            start = int(first) if first.isdigit() else 0
        if start:
            request.send_response(206)
            request.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            request.send_response(200)
        request.send_header("Content-Type", "video/mp4")
        request.send_header("Accept-Ranges", "bytes")
        request.send_header("Content-Length", str(len(body) - start))
        request.end_headers()
        if not head:
            request.wfile.write(body[start:])

    def _drip(self, request: BaseHTTPRequestHandler, *, head: bool) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "video/mp4")
        request.send_header("Content-Length", str(len(self.media)))
        request.end_headers()
        if head:
            return
        try:
            for start in range(0, len(self.media), self.drip_bytes):
                request.wfile.write(self.media[start : start + self.drip_bytes])
                request.wfile.flush()
                time.sleep(self.drip_interval)
        except (BrokenPipeError, ConnectionResetError):
            pass
