"""The Overseerr / Seerr HTTP client: `/api/v1` with `X-Api-Key`, bounded and validated.

Built on requests with urllib3's `Retry`: connection errors, 429 (its `Retry-After` honoured,
capped) and 5xx are retried with exponential backoff and jitter, GETs only (a POST is made
idempotent by requests/push.py, not by resending it). Every call has a connect and a read
timeout, every body a size cap and a total reading deadline (a body that never ends cannot
hold a job). 401/403 is AuthFailedError at once. Every answer is validated (requests/models.py).
The key lives in the client only (a SecretStr until the header is built), never in a log.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from pydantic import SecretStr
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from medianest_workers.platform.services import load_service
from medianest_workers.requests import errors
from medianest_workers.requests.models import (
    MediaDetails,
    OverseerrRequest,
    Page,
    validate,
)
from medianest_workers.settings import get_settings

SERVICE_NAME = "overseerr"
API_PREFIX = "/api/v1"
#: The longest Retry-After the client waits for; a longer one fails this attempt.
MAX_RETRY_AFTER_SECONDS = 30.0
_CHUNK = 65_536


class _BoundedRetry(Retry):
    """urllib3's Retry with Retry-After capped (a server cannot park the job for hours)."""

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        if value is None:
            return None
        return min(value, MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    read_deadline: float = 30.0
    max_response_bytes: int = 5_242_880
    retries: int = 4
    backoff_factor: float = 0.5
    pool_size: int = 8

    @classmethod
    def from_settings(cls) -> ClientOptions:
        settings = get_settings()
        return cls(
            connect_timeout=min(5.0, settings.http_timeout_seconds),
            read_timeout=settings.http_timeout_seconds,
            read_deadline=settings.overseerr_read_deadline_seconds,
            max_response_bytes=settings.overseerr_max_response_bytes,
            pool_size=max(4, settings.overseerr_title_concurrency * 2),
        )


def api_base(url: str) -> str:
    """The `/api/v1` root of a server base URL (a URL already ending with it is kept)."""
    base = url.rstrip("/")
    if base.endswith(API_PREFIX):
        return base
    return base + API_PREFIX


class OverseerrClient:
    """One Overseerr (or Seerr) server. Thread-safe for concurrent GETs."""

    def __init__(self, url: str, api_key: SecretStr, options: ClientOptions | None = None):
        self.base = api_base(url)
        self.options = options or ClientOptions()
        retry = _BoundedRetry(
            total=self.options.retries,
            connect=self.options.retries,
            read=1,
            status=self.options.retries,
            backoff_factor=self.options.backoff_factor,
            backoff_jitter=self.options.backoff_factor,
            backoff_max=10.0,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(
            max_retries=retry,
            pool_connections=1,
            pool_maxsize=self.options.pool_size,
        )
        self._http = requests.Session()
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        # The environment's proxies (NO_PROXY honoured) and CA bundle, read once per client:
        # requests would walk os.environ twice on every call (a sixth of a title GET's CPU).
        # .netrc is not read: the key is the only credential sent.
        self._http.proxies = requests.utils.get_environ_proxies(self.base)
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self._http.verify = bundle
        self._http.trust_env = False
        self._http.headers.update(
            {"X-Api-Key": api_key.get_secret_value(), "Accept": "application/json"}
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OverseerrClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- endpoints ---------------------------------------------------------------------------

    def list_requests(self, *, skip: int, take: int, sort: str = "modified") -> Page:
        """GET /request: one page, newest first by `sort`."""
        data = self._get("/request", {"take": take, "skip": skip, "sort": sort, "filter": "all"})
        return validate(Page, data, "GET /request")

    def get_request(self, request_id: int) -> Any:
        """GET /request/{id}: the raw item (the caller parses it like a list item)."""
        return self._get(f"/request/{int(request_id)}")

    def media_details(self, media_type: str, tmdb_id: int) -> MediaDetails:
        """GET /movie/{tmdbId} or /tv/{tmdbId}."""
        if media_type not in ("movie", "tv"):
            raise ValueError(f"media_type must be movie or tv, not {media_type!r}")
        where = f"GET /{media_type}/{int(tmdb_id)}"
        return validate(MediaDetails, self._get(f"/{media_type}/{int(tmdb_id)}"), where)

    def list_users(self, *, skip: int, take: int) -> Page:
        return validate(Page, self._get("/user", {"take": take, "skip": skip}), "GET /user")

    def create_request(self, *, media_type: str, tmdb_id: int, user_id: int) -> OverseerrRequest:
        """POST /request for `user_id` (never retried here: see requests/push.py)."""
        body: dict[str, Any] = {"mediaType": media_type, "mediaId": int(tmdb_id), "userId": user_id}
        if media_type == "tv":
            body["seasons"] = "all"
        data = self._call("POST", "/request", json_body=body)
        return validate(OverseerrRequest, data, "POST /request")

    # -- transport ---------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._call("GET", path, params=params)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        where = f"{method} {path}"
        try:
            response = self._http.request(
                method,
                self.base + path,
                params=params,
                json=json_body,
                timeout=(self.options.connect_timeout, self.options.read_timeout),
                stream=True,
                allow_redirects=False,
            )
        except requests.exceptions.RetryError as exc:
            raise errors.OverseerrUnavailableError(f"{where}: gave up after retries") from exc
        except requests.exceptions.Timeout as exc:
            raise errors.OverseerrUnavailableError(f"{where}: timed out") from exc
        except requests.exceptions.ConnectionError as exc:
            # Retries spent on read timeouts end as a ConnectionError too (a MaxRetryError
            # caused by ReadTimeoutError): the server accepted but did not answer.
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            if isinstance(reason, urllib3.exceptions.ReadTimeoutError):
                raise errors.OverseerrUnavailableError(
                    f"{where}: timed out (no answer within {self.options.read_timeout:g} s)"
                ) from exc
            raise errors.OverseerrUnavailableError(f"{where}: cannot connect") from exc
        except requests.exceptions.RequestException as exc:
            raise errors.OverseerrUnavailableError(f"{where}: {type(exc).__name__}") from exc
        with response:
            self._check_status(where, response)
            body = self._read(where, response)
        return self._decode(where, response, body)

    @staticmethod
    def _check_status(where: str, response: requests.Response) -> None:
        status = response.status_code
        if status in (200, 201):
            return
        if status in (401, 403):
            raise errors.AuthFailedError(f"{where}: HTTP {status}: Overseerr refused the API key")
        if status == 429 or status >= 500:
            raise errors.OverseerrUnavailableError(f"{where}: HTTP {status} after retries")
        if status == 404:
            raise errors.NotFoundError(where, status)
        if status == 409:
            raise errors.ConflictError(where, status)
        raise errors.UnexpectedStatusError(where, status)

    def _read(self, where: str, response: requests.Response) -> bytes:
        cap = self.options.max_response_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise errors.ResponseTooLargeError(f"{where}: {declared} bytes announced, cap {cap}")
        deadline = time.monotonic() + self.options.read_deadline
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in _body_chunks(response):
                size += len(chunk)
                if size > cap:
                    raise errors.ResponseTooLargeError(f"{where}: body exceeds {cap} bytes")
                if time.monotonic() > deadline:
                    raise errors.ResponseTimeoutError(
                        f"{where}: body not complete after {self.options.read_deadline:.0f} s"
                    )
                chunks.append(chunk)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise errors.OverseerrUnavailableError(
                f"{where}: body read failed ({type(exc).__name__})"
            ) from exc
        return b"".join(chunks)

    @staticmethod
    def _decode(where: str, response: requests.Response, body: bytes) -> Any:
        content_type = response.headers.get("Content-Type", "")
        if "json" not in content_type.lower():
            raise errors.SchemaError(
                where, "(body)", f"expected JSON, got {content_type or 'no Content-Type'}"
            )
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.SchemaError(where, "(body)", f"malformed JSON ({exc})") from None


def _body_chunks(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: at most one socket read per chunk (urllib3's `read1`), so the
    reading deadline is checked after every read. `iter_content` fills each chunk before it
    yields (a body dripping one byte per read timeout with a large Content-Length would hold
    the job for hours before the deadline is looked at)."""
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:  # urllib3 < 2.3
        yield from response.iter_content(_CHUNK)
        return
    while chunk := read1(_CHUNK, decode_content=True):
        yield chunk


def endpoint() -> tuple[str, SecretStr]:
    """Overseerr's URL and key: the `service_config` row `overseerr`, else the settings."""
    service = load_service(SERVICE_NAME)
    if service is not None and service.url and service.api_key is not None:
        return service.url, service.api_key
    settings = get_settings()
    if settings.overseerr_url and settings.overseerr_api_key is not None:
        return settings.overseerr_url, settings.overseerr_api_key
    raise errors.NotConfiguredError(
        "Overseerr is not configured: enable the service_config row 'overseerr'"
        " or set OVERSEERR_URL and OVERSEERR_API_KEY"
    )


def client_from_config() -> OverseerrClient:
    url, key = endpoint()
    return OverseerrClient(url, key, ClientOptions.from_settings())
