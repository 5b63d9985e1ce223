"""How an entry's failure is classified (the messages are yt-dlp's own)."""

from __future__ import annotations

import errno

import pytest
from yt_dlp.networking.common import Response
from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import DownloadError, ExtractorError

from medianest_workers.downloads.safety import BlockedDestinationError
from medianest_workers.downloads.ytdlp import ErrorClass, classify


def _http(status: int) -> DownloadError:
    response = Response(fp=None, url="https://example.test/v", headers={}, status=status)
    cause = HTTPError(response)
    return DownloadError(f"ERROR: unable to download video data: {cause}", (HTTPError, cause, None))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_http(429), ErrorClass.RETRYABLE),
        (_http(503), ErrorClass.RETRYABLE),
        (_http(404), ErrorClass.PERMANENT),
        (
            DownloadError(
                "ERROR: [youtube] x: Private video. Sign in if you've been granted access"
            ),
            ErrorClass.PERMANENT,
        ),
        (
            DownloadError("ERROR: [youtube] x: Video unavailable. This video has been removed"),
            ErrorClass.PERMANENT,
        ),
        (
            DownloadError(
                "ERROR: [youtube] x: The uploader has not made this video available in your country"
            ),
            ErrorClass.PERMANENT,
        ),
        (ExtractorError("Read timed out", expected=False), ErrorClass.RETRYABLE),
        (
            DownloadError("ERROR: boom", (TransportError, TransportError("reset"), None)),
            ErrorClass.RETRYABLE,
        ),
        (BlockedDestinationError("http://10.0.0.1/", "private"), ErrorClass.PERMANENT),
        (OSError(errno.ENOSPC, "No space left on device"), ErrorClass.FATAL),
    ],
)
def test_classes(error: BaseException, expected: ErrorClass) -> None:
    assert classify(error)[0] == expected


def test_a_bot_check_is_its_own_class_with_the_cookies_hint() -> None:
    error = DownloadError(
        "ERROR: [youtube] dQw4w9WgXcQ: Sign in to confirm you\u2019re not a bot."
        " Use --cookies-from-browser or --cookies for the authentication."
    )
    error_class, message = classify(error)
    assert error_class == ErrorClass.BOT_CHECK
    assert "YTDLP_COOKIES_FILE" in message
    assert not message.startswith("ERROR:")


def test_a_disk_full_wrapped_by_yt_dlp_is_fatal() -> None:
    cause = OSError(errno.ENOSPC, "No space left on device")
    wrapped = DownloadError(
        "ERROR: unable to write data: [Errno 28] No space left", (OSError, cause, None)
    )
    assert classify(wrapped)[0] == ErrorClass.FATAL
