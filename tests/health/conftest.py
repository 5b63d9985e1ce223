"""Loopback peers for the health tests: a service with one route per behaviour (plain and TLS),
and a notification receiver speaking what Apprise's `json://` sends.

Each server runs in a thread of the test process and is stopped by the fixture that started it
(hanging handlers are released first). Certificates are generated at test time with
`cryptography`: a self-signed one valid for 30 days, and one that expired yesterday.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medianest_workers.health.recording import BACKEND_KEY
from medianest_workers.settings import reset_settings_cache
from tests.platform.conftest import (  # noqa: F401  (fixtures used by these tests)
    _empty_queues,
    _fast_heartbeats,
    start_worker,
)

PLEX_TOKEN = "plex-token-0123456789"
OVERSEERR_KEY = "overseerr-key-0123456789"
SLOW_SECONDS = 0.6


@dataclass
class Peer:
    """A running loopback server: its base URL, what it received, and a switch per route."""

    url: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    #: Routes whose answer the test changes while it runs: path -> status code.
    status_of: dict[str, int] = field(default_factory=dict)


def _handler(peer: Peer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: PLR0912 - one route per behaviour
            path = self.path.split("?", 1)[0]
            peer.requests.append((path, dict(self.headers)))
            if path in peer.status_of:
                self._send(peer.status_of[path], b'{"version": "1.0"}')
            elif path in ("/ok", "/ok/api/v1/status", "/api/v1/status"):
                self._send(200, b'{"version": "2.1.0", "status": "ok"}')
            elif path.endswith("/api/v1/auth/me"):
                good = self.headers.get("X-Api-Key") == OVERSEERR_KEY
                self._send(200 if good else 403, b'{"id": 1}' if good else b'{"message": "no"}')
            elif path == "/identity":
                self._send(
                    200,
                    b'<?xml version="1.0"?><MediaContainer machineIdentifier="abc"'
                    b' version="1.40"/>',
                    "application/xml",
                )
            elif path == "/":
                good = self.headers.get("X-Plex-Token") == PLEX_TOKEN
                self._send(200 if good else 401, b"{}")
            elif path == "/api/entry-page":
                self._send(200, b'{"type": "entryPage", "entryPage": "dashboard"}')
            elif path == "/metrics":
                self._send(401, b"Unauthorized", "text/plain")
            elif path == "/error":
                self._send(500, b'{"message": "internal error"}')
            elif path in ("/html/api/v1/status", "/html"):
                self._send(200, b"<html><body>Login</body></html>", "text/html")
            elif path == "/slow":
                time.sleep(SLOW_SECONDS)
                self._send(200, b'{"status": "ok"}')
            elif path == "/hang":
                peer.release.wait(60)
            elif path == "/drip":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                for _ in range(100_000):
                    if peer.release.wait(0.05):
                        return
                    self.wfile.write(b"x")
                    self.wfile.flush()
            elif path == "/keyword":
                self._send(200, b"all systems nominal", "text/plain")
            elif path == "/json":
                self._send(200, b'{"db": {"ok": true}, "items": [{"state": "ready"}]}')
            elif path == "/to-ftp":
                self.send_response(302)
                self.send_header("Location", "ftp://127.0.0.1/file")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._send(404, b'{"message": "not found"}')

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256


@pytest.fixture
def serve() -> Iterator[Callable[..., Peer]]:
    """`serve(tls=None | ssl.SSLContext)`: a loopback peer, stopped after the test."""
    running: list[tuple[_Server, threading.Thread, Peer]] = []

    def start(tls: ssl.SSLContext | None = None) -> Peer:
        server = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
        scheme = "http"
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        peer = Peer(url=f"{scheme}://127.0.0.1:{server.server_address[1]}")
        server.RequestHandlerClass = _handler(peer)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread, peer))
        return peer

    try:
        yield start
    finally:
        for server, thread, peer in running:
            peer.release.set()
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


def make_certificate(folder: Path, *, expired: bool) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=10), now - dt.timedelta(days=1))
        if expired
        else (now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    )
    import ipaddress  # noqa: PLC0415

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    stem = folder / ("expired" if expired else "selfsigned")
    cert_path, key_path = stem.with_suffix(".crt"), stem.with_suffix(".key")
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


@dataclass
class Receiver:
    """A notification receiver: every JSON body Apprise posted, in order."""

    url: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: Answer this status instead of 200 (a failing receiver).
    status: int = 200

    @property
    def apprise_url(self) -> str:
        return self.url.replace("http://", "json://") + "/notify"


@pytest.fixture
def receive() -> Iterator[Callable[[], Receiver]]:
    """`receive()`: a loopback notification receiver, stopped after the test."""
    running: list[tuple[_Server, threading.Thread]] = []

    def start() -> Receiver:
        receiver = Receiver(url="")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if receiver.status == 200:
                    receiver.messages.append(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = _Server(("127.0.0.1", 0), Handler)
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return receiver

    try:
        yield start
    finally:
        for server, thread in running:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


@pytest.fixture
def service_names(redis_client: redis.Redis) -> Iterator[Callable[[str], str]]:
    """`name("plex")`: a service name unique to this test run; its backend key (written
    outside the test prefix, as the backend reads it) is deleted after the test."""
    made: list[str] = []
    run = uuid.uuid4().hex[:8]

    def name(base: str) -> str:
        made.append(f"{base}-t{run}")
        return made[-1]

    try:
        yield name
    finally:
        keys = [BACKEND_KEY.format(name=one) for one in made]
        if keys:
            redis_client.delete(*keys)


@pytest.fixture
def health_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Short timeouts for the tests (a hanging peer costs 1.5 s), no platform checks."""
    monkeypatch.setenv("HEALTH_TIMEOUT_SECONDS", "1.5")
    monkeypatch.setenv("HEALTH_DEGRADED_MS", "400")
    monkeypatch.setenv("HEALTH_PLATFORM_CHECKS", "false")
    monkeypatch.setenv("ENCRYPTION_KEY", "k" * 40)
    reset_settings_cache()
    yield monkeypatch
    monkeypatch.undo()
    reset_settings_cache()
