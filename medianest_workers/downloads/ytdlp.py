"""yt-dlp, as the downloads family drives it: options, the guarded network, error classes.

- `GuardedYoutubeDL` sends every request (playlist pages, redirects, media, thumbnails)
  through one request handler, `GuardedRequestsRH`, which checks the URL before it connects
  and each redirect target before it is followed (downloads/safety.py).
- `build_options` maps a download's quality/format and the settings to yt-dlp's options:
  names from title and video id (never the playlist index), a JPEG thumbnail beside each
  file and metadata embedded in it (what Plex reads), ffmpeg from the `imageio-ffmpeg` wheel
  (or the system's), the `deno` wheel as the JavaScript runtime YouTube extraction needs,
  polite sleeps, a maximum file size. No option that runs a command is ever set.
- `classify` sorts an entry's failure into retryable, bot check, permanent or fatal.
"""

from __future__ import annotations

import enum
import errno
import functools
import logging
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from yt_dlp import YoutubeDL
from yt_dlp.networking._requests import RequestsRH, RequestsSession
from yt_dlp.networking.common import Request, Response
from yt_dlp.networking.exceptions import HTTPError, RequestError, TransportError
from yt_dlp.postprocessor.metadataparser import MetadataParserPP
from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError

from medianest_workers.downloads.safety import (
    BlockedDestinationError,
    NetworkPolicy,
    PathEscapeError,
    check_fetch_url,
    check_peer,
)

log = logging.getLogger(__name__)

QUALITY_HEIGHTS: dict[str, int | None] = {
    "best": None,
    "2160p": 2160,
    "1440p": 1440,
    "1080p": 1080,
    "720p": 720,
    "480p": 480,
    "360p": 360,
}
FORMATS = ("mp4", "webm", "mkv")
#: Formats fetched by anything but yt-dlp's own downloaders (ffmpeg would bypass the guard).
_NATIVE_ONLY = "[protocol!*=rtmp][protocol!*=rtsp][protocol!*=mms][protocol!*=ism]"
#: File name: title (at most 150 bytes) and video id; yt-dlp makes both filesystem-safe.
OUTPUT_TEMPLATE = "%(title).150B [%(id)s].%(ext)s"


class BlockedRequestError(RequestError):
    """yt-dlp's face of a BlockedDestinationError (its request machinery passes these on)."""

    def __init__(self, blocked: BlockedDestinationError) -> None:
        super().__init__(str(blocked), cause=blocked)
        self.blocked = blocked


def _checked_connection(base: type, policy: NetworkPolicy) -> type:
    """A urllib3 connection class that checks its peer address right after connecting."""

    def _new_conn(self: Any) -> socket.socket:
        sock = base._new_conn(self)
        try:
            check_peer(str(sock.getpeername()[0]), policy=policy)
        except BlockedDestinationError:
            sock.close()
            raise
        return sock

    return type(f"Checked{base.__name__}", (base,), {"_new_conn": _new_conn})


class _GuardedSession(RequestsSession):
    """A requests session that checks every redirect target before following it."""

    policy = NetworkPolicy()

    def rebuild_method(self, prepared_request: Any, response: Any) -> None:
        check_fetch_url(prepared_request.url, policy=self.policy)
        super().rebuild_method(prepared_request, response)


class GuardedRequestsRH(RequestsRH):
    """yt-dlp's requests handler with the SSRF guard on every request.

    Three checks: the URL before it is sent (scheme, host, what it resolves to), each
    redirect target before it is followed, and the peer address of every new connection
    (so a host that resolves to a public address for the check and a private one for the
    connection, DNS rebinding, is refused too).
    """

    RH_KEY = "MnwGuarded"
    RH_NAME = "mnw-guarded-requests"
    policy = NetworkPolicy()

    def _create_instance(self, cookiejar: Any, legacy_ssl_support: Any = None) -> Any:
        plain = super()._create_instance(cookiejar, legacy_ssl_support)
        session = _GuardedSession()
        session.policy = self.policy
        session.adapters.clear()
        pools = {
            "http": type(
                "CheckedHTTPPool",
                (urllib3.HTTPConnectionPool,),
                {"ConnectionCls": _checked_connection(HTTPConnection, self.policy)},
            ),
            "https": type(
                "CheckedHTTPSPool",
                (urllib3.HTTPSConnectionPool,),
                {"ConnectionCls": _checked_connection(HTTPSConnection, self.policy)},
            ),
        }
        for prefix, adapter in plain.adapters.items():
            adapter.poolmanager.pool_classes_by_scheme = pools
            session.mount(prefix, adapter)
        session.headers = plain.headers
        session.cookies = plain.cookies
        session.trust_env = False
        return session

    def _send(self, request: Request) -> Response:
        try:
            check_fetch_url(request.url, policy=self.policy)
            return super()._send(request)
        except BlockedDestinationError as exc:
            raise BlockedRequestError(exc) from exc


class GuardedYoutubeDL(YoutubeDL):
    """A YoutubeDL whose only request handler is the guarded one (no urllib, no curl)."""

    def __init__(self, params: dict[str, Any], *, policy: NetworkPolicy) -> None:
        self._mnw_handler = type("PolicyRH", (GuardedRequestsRH,), {"policy": policy})
        super().__init__(params, auto_init=True)

    def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
        return super().build_request_director([self._mnw_handler], preferences)


@functools.cache
def ffmpeg_location() -> str | None:
    """ffmpeg from the `imageio-ffmpeg` wheel (a fresh pip install has it), else the system's.

    yt-dlp takes the wheel's binary by its path (its versioned name contains `ffmpeg`).
    """
    try:
        import imageio_ffmpeg  # noqa: PLC0415  (optional at import time)

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


@functools.cache
def deno_path() -> str | None:
    """The `deno` wheel's binary (yt-dlp's JavaScript runtime for YouTube), else PATH's."""
    try:
        import deno  # noqa: PLC0415

        return str(deno.find_deno_bin())
    except (ImportError, AttributeError, OSError):
        return shutil.which("deno")


def format_selector(quality: str, fmt: str) -> tuple[str, list[str]]:
    """(format, format_sort) for a quality and container: the best at or below its height."""
    height = QUALITY_HEIGHTS[quality]
    sort = [f"res:{height}"] if height else []
    if fmt == "mp4":
        sort.append("ext:mp4:m4a")
    elif fmt == "webm":
        sort.append("ext:webm:webm")
    return f"bv*{_NATIVE_ONLY}+ba{_NATIVE_ONLY}/b{_NATIVE_ONLY}", sort


@dataclass(frozen=True, kw_only=True)
class DownloadOptions:
    """What one run asks of yt-dlp (the job's choices and the settings)."""

    quality: str
    fmt: str
    max_file_bytes: int
    sleep_seconds: float
    max_sleep_seconds: float
    sleep_requests_seconds: float
    cookies_file: Path | None
    socket_timeout: float


def _not_live(info: dict[str, Any], *, incomplete: bool) -> str | None:
    """match_filter: live streams are skipped (only ffmpeg, outside the guard, records them)."""
    if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
        return "live streams are not downloaded"
    return None


def build_options(
    options: DownloadOptions,
    *,
    logger: Any,
    progress_hook: Any = None,
    postprocessor_hook: Any = None,
) -> dict[str, Any]:
    """The yt-dlp parameters of one run (the folder and the archive are set once known).

    Every value is ours: nothing of a user's reaches an option but the quality and format
    (checked enumerations). No `exec`, no external downloader, no command of any kind.
    """
    fmt, sort = format_selector(options.quality, options.fmt)
    postprocessors: list[dict[str, Any]] = [
        # A title starting with dots would make a hidden file (Plex skips those).
        {
            "key": "MetadataParser",
            "when": "pre_process",
            "actions": [(MetadataParserPP.replacer, "title", r"^[.\s]+", "")],
        },
        {"key": "FFmpegThumbnailsConvertor", "format": "jpg", "when": "before_dl"},
    ]
    if options.fmt == "mkv":
        postprocessors.append({"key": "FFmpegVideoRemuxer", "preferedformat": "mkv"})
    postprocessors.append({"key": "FFmpegMetadata", "add_metadata": True, "add_chapters": True})
    params: dict[str, Any] = {
        "format": fmt,
        "format_sort": sort,
        "merge_output_format": options.fmt,
        "outtmpl": {"default": OUTPUT_TEMPLATE},
        "windowsfilenames": True,
        "trim_file_name": 200,
        "writethumbnail": True,
        "postprocessors": postprocessors,
        "max_filesize": options.max_file_bytes,
        "extract_flat": "in_playlist",
        "match_filter": _not_live,
        "external_downloader": {"default": "native"},
        "sleep_interval": options.sleep_seconds or None,
        "max_sleep_interval": options.max_sleep_seconds or None,
        "sleep_interval_requests": options.sleep_requests_seconds or None,
        "socket_timeout": options.socket_timeout,
        "retries": 3,
        "fragment_retries": 3,
        "extractor_retries": 2,
        "continuedl": True,
        "overwrites": False,
        "logger": logger,
        "quiet": True,
        "noprogress": True,
        "color": {"stdout": "no_color", "stderr": "no_color"},
        "ffmpeg_location": ffmpeg_location(),
        "progress_hooks": [progress_hook] if progress_hook else [],
        "postprocessor_hooks": [postprocessor_hook] if postprocessor_hook else [],
    }
    runtime = deno_path()
    if runtime:
        params["js_runtimes"] = {"deno": {"path": runtime}}
    if options.cookies_file is not None:
        params["cookiefile"] = str(options.cookies_file)
    return params


class YtdlpLogger:
    """yt-dlp's messages into our log (debug as debug; its errors are raised to us anyway).

    The cookies file's path is replaced by `<YTDLP_COOKIES_FILE>` in every message.
    """

    def __init__(self, cookies_file: Path | None = None) -> None:
        self._secret = str(cookies_file) if cookies_file else None

    def _clean(self, message: str) -> str:
        if self._secret:
            message = message.replace(self._secret, "<YTDLP_COOKIES_FILE>")
        return message

    def debug(self, message: str) -> None:
        log.debug("yt-dlp: %s", self._clean(message))

    def info(self, message: str) -> None:
        log.debug("yt-dlp: %s", self._clean(message))

    def warning(self, message: str) -> None:
        log.info("yt-dlp: %s", self._clean(message))

    def error(self, message: str) -> None:
        log.info("yt-dlp: %s", self._clean(message))


class ErrorClass(enum.StrEnum):
    """How an entry's failure is treated."""

    RETRYABLE = "retryable"  # network, 5xx, throttled: the job is tried again for it
    BOT_CHECK = "bot_check"  # sign-in or bot check: backed off, see YTDLP_COOKIES_FILE
    PERMANENT = "permanent"  # private, removed, not in this region, blocked, unsupported
    FATAL = "fatal"  # disk full, and the like: the whole download stops


COOKIES_HINT = (
    "the site asks for a sign-in or a bot check: export a logged-in browser's cookies"
    " (Netscape format) to a file and set YTDLP_COOKIES_FILE to it"
)
_BOT = re.compile(
    r"not a bot|sign in to confirm|confirm your age|login required|sign in to view"
    r"|use --cookies|cookies-from-browser|members[- ]only",
    re.I,
)
_PERMANENT = re.compile(
    r"private video|has been removed|video unavailable|is not available|no longer available"
    r"|not available in your country|geo.?restrict|copyright|terminated|does not exist"
    r"|unsupported url|requested format is not available|larger than max-filesize",
    re.I,
)
_RETRYABLE = re.compile(
    r"timed out|connection (reset|refused|aborted)|temporar|incomplete ?read|try again"
    r"|too many requests|rate.?limit|throttl|http error 5\d\d",
    re.I,
)
_FATAL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}


def error_chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and what caused it, through yt-dlp's wrappers (exc_info, cause, __cause__)."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        exc_info = getattr(current, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1 and exc_info[1] is not None:
            stack.append(exc_info[1])
        for attribute in ("cause", "__cause__", "__context__"):
            cause = getattr(current, attribute, None)
            if isinstance(cause, BaseException):
                stack.append(cause)


def classify(error: BaseException) -> tuple[ErrorClass, str]:
    """(class, one-line message) of an entry's failure."""
    message = _message(error)
    chain = list(error_chain(error))
    for link in chain:
        if isinstance(link, BlockedDestinationError | PathEscapeError):
            return ErrorClass.PERMANENT, str(link)
        if isinstance(link, OSError) and link.errno in _FATAL_ERRNOS:
            return ErrorClass.FATAL, f"{errno.errorcode.get(link.errno, link.errno)}: {link}"
    if _BOT.search(message):
        return ErrorClass.BOT_CHECK, f"{message} ({COOKIES_HINT})"
    found = _by_http_status(chain) or _by_text(message) or _by_transport(chain)
    return found or ErrorClass.PERMANENT, message


def _by_http_status(chain: list[BaseException]) -> ErrorClass | None:
    for link in chain:
        if isinstance(link, GeoRestrictedError):
            return ErrorClass.PERMANENT
        if isinstance(link, HTTPError):
            # 403: an expired signed media URL, most often; a new attempt extracts afresh.
            if link.status in (403, 429) or link.status >= 500:
                return ErrorClass.RETRYABLE
            return ErrorClass.PERMANENT
    return None


def _by_text(message: str) -> ErrorClass | None:
    if _PERMANENT.search(message):
        return ErrorClass.PERMANENT
    if _RETRYABLE.search(message):
        return ErrorClass.RETRYABLE
    return None


def _by_transport(chain: list[BaseException]) -> ErrorClass | None:
    transient = TransportError | requests.ConnectionError | TimeoutError | ConnectionError
    if any(isinstance(link, transient) for link in chain):
        return ErrorClass.RETRYABLE
    return None


def _message(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, DownloadError | ExtractorError):
        text = re.sub(r"^ERROR:\s*", "", text)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return " ".join(text.split())[:500]
