"""One round of probes: every target checked at once, each within one deadline.

asyncio with httpx's AsyncClient, not a thread per check: a hundred checks are a hundred
coroutines on one event loop (no hundred threads, no hundred pools), and a check that
overruns its deadline is *cancelled*: its socket is closed at once, so a service that accepts
the connection and never answers, or drips its body a byte a second, costs the round one
timeout and nothing more (a thread blocked in a read cannot be stopped). httpx's own connect,
read, write and pool timeouts bound each step; `asyncio.wait(..., timeout=)` bounds the whole
check (the request, the authenticated call, the certificate read) by HEALTH_TIMEOUT_SECONDS.
The platform's own checks (PostgreSQL, Redis, workers) are blocking calls: they run on a
small thread pool of the round, each with its own client-side timeouts, and the round waits
for them no longer than for any other check.

Every outcome is a `CheckResult`: `up`, `degraded` (slower than the threshold, or its key
refused) or `down`, with an error class and a message that never shows the service's key
or URL credentials.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509

from medianest_workers.health.targets import CheckTarget, ConfigProblem, JsonCondition, Kind

UP, DEGRADED, DOWN = "up", "degraded", "down"
MAX_MESSAGE = 500
MAX_REDIRECTS = 5
USER_AGENT = "medianest-workers-health/1"

#: A platform check: raises (any exception) when the part is not healthy; gets the timeout.
#: A builtin TimeoutError it raises is recorded like the round's own deadline (`Timeout`).
PlatformProbe = Callable[[float], None]


@dataclass(frozen=True)
class CheckResult:
    """What one check found."""

    result: str
    response_time_ms: int
    http_status: int | None = None
    error_class: str | None = None
    error_message: str | None = None
    cert_days_left: float | None = None

    @property
    def failed(self) -> bool:
        return self.result == DOWN


@dataclass(frozen=True, kw_only=True)
class ProbeConfig:
    timeout: float
    degraded_ms: int
    max_body_bytes: int
    concurrency: int


class _Failure(Exception):
    """A check failed for a reason it names: (error class, message, HTTP status)."""

    def __init__(self, error_class: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.http_status = http_status


@dataclass
class _Progress:
    """How far the main request got (for the message of a check that ran out of time)."""

    stage: str = "before the response headers"
    body_bytes: int = 0


@dataclass(frozen=True)
class _Answer:
    status: int
    elapsed_ms: int


def run_round(
    targets: Sequence[CheckTarget],
    config: ProbeConfig,
    platform: Mapping[Kind, PlatformProbe] | None = None,
) -> dict[str, CheckResult]:
    """Check every target at once; {target name: result}. Returns within about one timeout."""
    return asyncio.run(probe_all(targets, config, platform or {}))


async def probe_all(
    targets: Sequence[CheckTarget],
    config: ProbeConfig,
    platform: Mapping[Kind, PlatformProbe],
) -> dict[str, CheckResult]:
    limit = asyncio.Semaphore(config.concurrency)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    timeout = httpx.Timeout(config.timeout)
    common: dict[str, Any] = {
        "timeout": timeout,
        "limits": limits,
        "follow_redirects": True,
        "max_redirects": MAX_REDIRECTS,
        "trust_env": False,
        "headers": {"User-Agent": USER_AGENT},
    }
    threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mnw-health-probe")
    try:
        async with (
            httpx.AsyncClient(verify=True, **common) as verified,
            httpx.AsyncClient(verify=False, **common) as unverified,  # noqa: S501 - opt-in per row
        ):

            async def one(target: CheckTarget) -> tuple[str, CheckResult]:
                async with limit:
                    client = verified if target.options.verify_tls else unverified
                    result = await _check(target, client, config, platform, threads)
                return target.name, _redacted(result, target.secrets())

            pairs = await asyncio.gather(*(one(target) for target in targets))
    finally:
        threads.shutdown(wait=False, cancel_futures=True)
    return dict(pairs)


async def _check(
    target: CheckTarget,
    client: httpx.AsyncClient,
    config: ProbeConfig,
    platform: Mapping[Kind, PlatformProbe],
    threads: ThreadPoolExecutor,
) -> CheckResult:
    started = time.monotonic()
    if target.problem is not None:
        return CheckResult(DOWN, 0, error_class=target.problem[0], error_message=target.problem[1])
    if target.kind in (Kind.POSTGRES, Kind.REDIS, Kind.WORKERS):
        return await _platform_check(target, config, platform, threads, started)
    progress = _Progress()
    main = asyncio.create_task(_main_request(target, client, config, progress))
    auth = (
        asyncio.create_task(_auth_request(target, client))
        if target.api_key is not None and target.kind != Kind.HTTP
        else None
    )
    parts = urlsplit(target.url)
    cert = (
        asyncio.create_task(_cert_days_left(parts.hostname or "", parts.port or 443))
        if parts.scheme.lower() == "https"
        else None
    )
    tasks = [task for task in (main, auth, cert) if task is not None]
    _done, pending = await asyncio.wait(tasks, timeout=config.timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    elapsed = _ms_since(started)
    days_left = _value(cert)
    if not main.done() or main.cancelled():
        extra = f", {progress.body_bytes} bytes read" if progress.body_bytes else ""
        return CheckResult(
            DOWN,
            elapsed,
            error_class="Timeout",
            error_message=f"no complete answer within {config.timeout:g} s"
            f" ({progress.stage}{extra})",
            cert_days_left=days_left,
        )
    error = main.exception()
    if error is not None:
        failure = _as_failure(error, config.timeout)
        if failure.error_class == "CertificateError" and days_left is not None and days_left < 0:
            failure.message = f"certificate expired {-days_left:g} days ago; {failure.message}"
        return CheckResult(
            DOWN,
            elapsed,
            http_status=failure.http_status,
            error_class=failure.error_class,
            error_message=failure.message,
            cert_days_left=days_left,
        )
    answer: _Answer = main.result()
    threshold = target.options.degraded_ms or config.degraded_ms
    degraded: tuple[str, str] | None = None
    if auth is not None:
        degraded = _auth_problem(auth)
    if degraded is None and answer.elapsed_ms > threshold:
        degraded = ("Slow", f"answered in {answer.elapsed_ms} ms (threshold {threshold} ms)")
    if degraded is not None:
        return CheckResult(
            DEGRADED,
            answer.elapsed_ms,
            http_status=answer.status,
            error_class=degraded[0],
            error_message=degraded[1],
            cert_days_left=days_left,
        )
    return CheckResult(UP, answer.elapsed_ms, http_status=answer.status, cert_days_left=days_left)


def _value(task: asyncio.Task[Any] | None) -> Any:
    if task is None or not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


def _auth_problem(auth: asyncio.Task[int]) -> tuple[str, str] | None:
    if not auth.done() or auth.cancelled():
        return ("AuthCheckFailed", "the authenticated call did not answer in time")
    error = auth.exception()
    if error is not None:
        failure = _as_failure(error, 0)
        return ("AuthCheckFailed", f"the authenticated call failed: {failure.message}")
    status = auth.result()
    if status in (401, 403):
        return ("AuthFailed", f"the configured key was refused (HTTP {status})")
    if not 200 <= status < 400:
        return ("AuthCheckFailed", f"the authenticated call answered HTTP {status}")
    return None


# --- the requests, by kind -------------------------------------------------------------------


def _join(base: str, path: str) -> str:
    if "://" in path:
        return path
    return base.rstrip("/") + "/" + path.lstrip("/")


def _main_spec(target: CheckTarget) -> tuple[str, str, list[int] | None, str | None]:
    """(method, URL, accepted statuses (None: 200-399), body expected: 'json' | 'xml' | None)."""
    if target.kind == Kind.PLEX:
        return "GET", _join(target.url, "/identity"), [200], "xml"
    if target.kind == Kind.OVERSEERR:
        return "GET", _join(target.url, "/api/v1/status"), [200], "json"
    if target.kind == Kind.UPTIME_KUMA:
        return "GET", _join(target.url, "/api/entry-page"), [200], "json"
    options = target.options
    url = _join(target.url, options.path) if options.path else target.url
    return options.method, url, options.expected_status, None


async def _main_request(
    target: CheckTarget, client: httpx.AsyncClient, config: ProbeConfig, progress: _Progress
) -> _Answer:
    method, url, accepted, expect = _main_spec(target)
    options = target.options
    headers = {"Accept": "application/json"} if expect == "json" else {}
    wants_body = expect is not None or options.keyword is not None
    wants_body = wants_body or options.json_condition is not None
    started = time.monotonic()
    async with client.stream(method, url, headers=headers) as response:
        progress.stage = "while reading the body"
        status = response.status_code
        if accepted is None:
            if not 200 <= status < 400:
                raise _Failure("HttpStatus", f"answered HTTP {status} (expected 200-399)", status)
        elif status not in accepted:
            wanted = ", ".join(str(code) for code in accepted)
            raise _Failure("HttpStatus", f"answered HTTP {status} (expected {wanted})", status)
        body = b""
        if wants_body:
            body = await _read_capped(response, config.max_body_bytes, progress)
        elapsed = _ms_since(started)
    content_type = response.headers.get("content-type", "")
    if expect == "json":
        _json_body(body, content_type, status)
    elif expect == "xml" and b"MediaContainer" not in body:
        raise _Failure(
            "ProtocolError", f"not a Plex answer (no MediaContainer; {_kind_of(content_type)})"
        )
    if options.keyword is not None and options.keyword.encode() not in body:
        raise _Failure("KeywordMissing", f"keyword {options.keyword!r} not in the answer", status)
    if options.json_condition is not None:
        _check_json(options.json_condition, _json_body(body, content_type, status), status)
    return _Answer(status, elapsed)


async def _read_capped(response: httpx.Response, cap: int, progress: _Progress) -> bytes:
    chunks: list[bytes] = []
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        progress.body_bytes += len(chunk)
        if progress.body_bytes > cap:
            raise _Failure(
                "ResponseTooLarge", f"the answer exceeds {cap} bytes", response.status_code
            )
    return b"".join(chunks)


def _kind_of(content_type: str) -> str:
    return f"Content-Type {content_type.split(';', 1)[0].strip() or 'missing'}"


def _json_body(body: bytes, content_type: str, status: int) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _Failure(
            "ProtocolError", f"expected JSON, got something else ({_kind_of(content_type)})", status
        ) from None


def _check_json(condition: JsonCondition, document: Any, status: int) -> None:
    value = document
    for part in condition.path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise _Failure("JsonConditionFailed", f"no value at {condition.path!r}", status)
    if value != condition.equals or isinstance(value, bool) != isinstance(condition.equals, bool):
        raise _Failure(
            "JsonConditionFailed",
            f"{condition.path} is {json.dumps(value)[:100]},"
            f" expected {json.dumps(condition.equals)}",
            status,
        )


async def _auth_request(target: CheckTarget, client: httpx.AsyncClient) -> int:
    """The status of an authenticated call (401/403: the key is refused)."""
    assert target.api_key is not None  # noqa: S101 - only started with a key
    key = target.api_key.get_secret_value()
    auth: httpx.BasicAuth | None = None
    if target.kind == Kind.PLEX:
        url, headers = _join(target.url, "/"), {"X-Plex-Token": key, "Accept": "application/json"}
    elif target.kind == Kind.OVERSEERR:
        url, headers = _join(target.url, "/api/v1/auth/me"), {"X-Api-Key": key}
    else:  # Uptime Kuma: /metrics takes an API key as the basic-auth password
        url, headers, auth = _join(target.url, "/metrics"), {}, httpx.BasicAuth("", key)
    async with client.stream("GET", url, headers=headers, auth=auth) as response:
        return response.status_code


async def _cert_days_left(host: str, port: int) -> float:
    """Days until the server's certificate expires (negative: expired), read without trust."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
    if not der:
        raise ConnectionError("no certificate")
    certificate = x509.load_der_x509_certificate(der)
    left = certificate.not_valid_after_utc - dt.datetime.now(dt.UTC)
    return round(left.total_seconds() / 86_400, 2)


# --- the platform's own parts ----------------------------------------------------------------


async def _platform_check(
    target: CheckTarget,
    config: ProbeConfig,
    platform: Mapping[Kind, PlatformProbe],
    threads: ThreadPoolExecutor,
    started: float,
) -> CheckResult:
    probe = platform.get(target.kind)
    if probe is None:
        return CheckResult(DOWN, 0, error_class="ConfigError", error_message="no probe configured")
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(threads, probe, config.timeout)
    try:
        await asyncio.wait_for(future, timeout=config.timeout)
    except TimeoutError:
        return CheckResult(
            DOWN,
            _ms_since(started),
            error_class="Timeout",
            error_message=f"no answer within {config.timeout:g} s",
        )
    except Exception as exc:  # noqa: BLE001 - any failure of the part is its recorded error
        return CheckResult(
            DOWN,
            _ms_since(started),
            error_class=type(exc).__name__,
            error_message=str(exc) or type(exc).__name__,
        )
    elapsed = _ms_since(started)
    if elapsed > config.degraded_ms:
        return CheckResult(
            DEGRADED,
            elapsed,
            error_class="Slow",
            error_message=f"answered in {elapsed} ms (threshold {config.degraded_ms} ms)",
        )
    return CheckResult(UP, elapsed)


# --- errors ----------------------------------------------------------------------------------


def _ssl_cause(error: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        current = current.__cause__ or current.__context__
    return None


def _as_failure(error: BaseException, timeout: float) -> _Failure:  # noqa: PLR0911 - a classifier
    if isinstance(error, _Failure):
        return error
    if isinstance(error, ConfigProblem | httpx.InvalidURL):
        return _Failure("ConfigError", str(error))
    if isinstance(error, httpx.UnsupportedProtocol):
        return _Failure("UnsupportedScheme", f"refused: {error} (only http and https)")
    tls = _ssl_cause(error)
    if isinstance(tls, ssl.SSLCertVerificationError):
        reason = tls.verify_message or tls.reason or "verification failed"
        return _Failure("CertificateError", f"certificate not trusted: {reason}")
    if tls is not None:
        return _Failure("TlsError", f"TLS handshake failed: {tls.reason or tls}")
    if isinstance(error, httpx.ConnectTimeout):
        return _Failure("Timeout", f"could not connect within {timeout:g} s")
    if isinstance(error, httpx.TimeoutException):
        return _Failure("Timeout", f"no answer within {timeout:g} s")
    if isinstance(error, httpx.TooManyRedirects):
        return _Failure("TooManyRedirects", f"more than {MAX_REDIRECTS} redirects")
    if isinstance(error, httpx.ConnectError):
        return _Failure("ConnectionError", f"cannot connect: {error}")
    if isinstance(error, httpx.RemoteProtocolError):
        return _Failure("ProtocolError", f"broken answer: {error}")
    if isinstance(error, httpx.HTTPError):
        return _Failure(type(error).__name__, str(error) or type(error).__name__)
    return _Failure(type(error).__name__, str(error) or type(error).__name__)


def _redacted(result: CheckResult, secrets: Sequence[str]) -> CheckResult:
    message = result.error_message
    if message is None:
        return result
    for secret in secrets:
        message = message.replace(secret, "***")
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return CheckResult(
        result.result,
        result.response_time_ms,
        http_status=result.http_status,
        error_class=result.error_class,
        error_message=message,
        cert_days_left=result.cert_days_left,
    )


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
