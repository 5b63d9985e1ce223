"""Secrets canary (issue 11, item 4): no Plex token, Overseerr key or encryption key leaks.

Canary values, unique to the run: a Plex token (the `plex` service_config api_key and the user's
plex_token, both encrypted with the project's crypto), an Overseerr API key (the `overseerr`
row's api_key, encrypted) and the ENCRYPTION_KEY itself. Real jobs of every family run on a real
worker against loopback peers that take those keys: requests.sync against a fake Overseerr,
downloads.plex_sync against a fake Plex, health.check_all probing both, maintenance jobs and a
no-op. Then the peers turn hostile (Overseerr answers 401 quoting the key it was sent, Plex
refuses the token) and the same jobs run again and fail, through their error paths.

Afterwards every place an operator or an attacker can read is searched for each canary, raw and
in its base64 and URL-encoded forms: every Redis key of this run (and the backend health keys),
Celery messages decoded, the worker's and Flower's logs, the API's log records, the API's
answers (the jobs list, each job, /v1/services, /metrics), every table of the database as text
(mnw_jobs with payload/result/error/progress, error_logs, the families' mnw_* tables, the
backend's tables, which hold ciphertexts only), and Flower's API answers. Zero hits, and the
assertion lists where any hit was found.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from medianest_workers.api.app import create_app
from medianest_workers.health.recording import BACKEND_KEY
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.platform.registry import load_job_modules
from medianest_workers.security import crypto
from medianest_workers.settings import reset_settings_cache
from tests.downloads.conftest import DOWNLOAD_ENV, entries
from tests.downloads.feed_server import FeedServer, make_media
from tests.downloads_plex.conftest import USER_ID, Backend
from tests.downloads_plex.fake_plex import FakePlex
from tests.helpers import wait_for
from tests.ops import conftest as ops_fixtures
from tests.ops.conftest import Flower
from tests.platform import conftest as platform_fixtures
from tests.platform.conftest import wait_terminal
from tests.requests import fake_overseerr
from tests.requests.fake_overseerr import FakeOverseerr

API_KEY = "canary-api-key-0123456789abcdef"
# The shared fixtures: real workers and Flower, this run's queues emptied after the test.
_empty_queues = platform_fixtures._empty_queues
_fast_heartbeats = platform_fixtures._fast_heartbeats
start_worker = platform_fixtures.start_worker
start_flower = ops_fixtures.start_flower

#: How each job of the hostile round fails (the error paths this test walks).
ERROR_CLASSES = {
    "requests.sync": "AuthFailedError",
    "downloads.plex_sync": "PlexAuthError",
    "maintenance.rotate_key": "PermanentError",
    "downloads.playlist": "PermanentError",
}


def _canary(label: str) -> str:
    # '+', '/' and '=' make the URL-encoded form differ from the raw one.
    return f"CANARY-{label}-{secrets.token_hex(12)}+/="


class EchoingOverseerr(FakeOverseerr):
    """A fake Overseerr that, once `hostile` is set, quotes the key it was sent: request 3 is a
    well-formed item whose media type is the key, request 2 has the key in every field (not a
    request at all), anything else answers 401 quoting it."""

    hostile = False

    def handle(self, handler: Any, method: str) -> None:
        if not self.hostile:
            return super().handle(handler, method)
        sent = handler.headers.get("X-Api-Key")
        if handler.path == "/api/v1/request/3":
            item = json.loads(json.dumps(self.requests[3]))
            item["type"] = item["media"]["mediaType"] = sent
            return self.send(handler, 200, item)
        if handler.path.startswith("/api/v1/request/"):
            junk = {"id": sent, "status": sent, "type": sent, "media": sent, "requestedBy": sent}
            return self.send(handler, 200, {**junk, sent: sent})
        return self.send(handler, 401, {"message": f"Invalid API key {sent}", "key": sent})


def _forms(value: str) -> dict[str, bytes]:
    """The canary as it could appear: raw, URL-encoded, and base64 at every alignment."""
    raw = value.encode()
    forms = {"raw": raw, "url-encoded": urllib.parse.quote(value, safe="").encode()}
    for shift in range(3):
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            encoded = encode(b"\0" * shift + raw)
            # Drop the groups that depend on what surrounds the value.
            forms[f"{name}@{shift}"] = encoded[4 if shift else 0 : -4]
    return forms


def _decoded_celery_bodies(blob: bytes) -> list[bytes]:
    """Kombu messages in Redis are JSON with a base64 body: decode it too."""
    found: list[bytes] = []
    try:
        message = json.loads(blob)
    except ValueError:
        return found
    if isinstance(message, dict) and isinstance(message.get("body"), str):
        with contextlib.suppress(ValueError):
            found.append(base64.b64decode(message["body"]))
    return found


def _redis_dump(client: redis.Redis, patterns: list[str]) -> dict[str, bytes]:
    """Every key matching `patterns`, its whole value as bytes."""
    dumped: dict[str, bytes] = {}
    for pattern in patterns:
        for key in client.scan_iter(match=pattern, count=1000):
            kind = client.type(key).decode()
            if kind == "string":
                parts = [client.get(key) or b""]
            elif kind == "list":
                parts = client.lrange(key, 0, -1)
            elif kind == "hash":
                parts = [b for pair in client.hgetall(key).items() for b in pair]
            elif kind == "set":
                parts = list(client.smembers(key))
            elif kind == "zset":
                parts = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                parts = [
                    b for _, fields in client.xrange(key) for pair in fields.items() for b in pair
                ]
            else:
                parts = []
            decoded = [body for part in parts for body in _decoded_celery_bodies(part)]
            dumped[f"redis {key.decode(errors='replace')}"] = b"\n".join([key, *parts, *decoded])
    return dumped


def _database_dump(engine: Engine) -> dict[str, bytes]:
    """Every table of the public schema, each row as JSON text."""
    dumped: dict[str, bytes] = {}
    with engine.connect() as connection:
        tables = connection.execute(
            text(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ).scalars()
        for table in list(tables):
            rows = connection.execute(
                text(f'SELECT row_to_json(t)::text FROM "{table}" t')
            ).scalars()
            dumped[f"table {table}"] = "\n".join(rows).encode()
    return dumped


def _flower_dump(flower: Flower, job_ids: list[str]) -> dict[str, bytes]:
    dumped = {
        f"flower {path}": flower.get(path).content
        for path in ("/api/tasks", "/api/workers", "/api/task/types", "/api/queues/length")
    }
    for job_id in job_ids:
        dumped[f"flower /api/task/info/{job_id}"] = flower.get(f"/api/task/info/{job_id}").content
    return dumped


def _api_dump(api: TestClient, job_ids: list[str]) -> dict[str, bytes]:
    dumped: dict[str, bytes] = {}
    listed = api.get("/v1/jobs", params={"limit": 100})
    assert listed.status_code == 200, listed.text
    dumped["api GET /v1/jobs"] = listed.content
    assert {job["id"] for job in listed.json()["jobs"]} >= set(job_ids)
    for job_id in job_ids:
        answer = api.get(f"/v1/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        dumped[f"api GET /v1/jobs/{job_id}"] = answer.content
    for path in ("/v1/services", "/metrics", "/v1/job-kinds"):
        answer = api.get(path)
        assert answer.status_code == 200, (path, answer.text)
        dumped[f"api GET {path}"] = answer.content
    return dumped


@pytest.fixture
def canaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    values = {
        "plex_token": _canary("plex"),
        "overseerr_key": _canary("overseerr"),
        "encryption_key": _canary("encryption-key"),
        "youtube_cookie": _canary("cookie"),
    }
    root = tmp_path / "downloads"
    root.mkdir()
    monkeypatch.setenv("ENCRYPTION_KEY", values["encryption_key"])
    monkeypatch.setenv("DOWNLOAD_ROOT", str(root))
    monkeypatch.setenv("API_KEYS", API_KEY)
    monkeypatch.setenv("HEALTH_PLATFORM_CHECKS", "false")
    for name, value in DOWNLOAD_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(fake_overseerr, "KEY", values["overseerr_key"])
    reset_settings_cache()
    yield values
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
def backend_health_keys(redis_client: redis.Redis) -> Iterator[list[str]]:
    """The backend health keys check_all writes outside the prefix; deleted after the test."""
    keys = [BACKEND_KEY.format(name=name) for name in ("plex", "overseerr")]
    yield keys
    redis_client.delete(*keys)


def test_no_canary_leaks_anywhere(  # noqa: PLR0915 - one scenario, read top to bottom
    engine: Engine,
    session_factory: object,
    redis_client: redis.Redis,
    redis_prefix: str,
    canaries: dict[str, str],
    backend_health_keys: list[str],
    start_worker: Callable[..., Any],
    start_flower: Callable[..., Flower],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    load_job_modules()
    caplog.set_level(logging.DEBUG)
    backend = Backend(engine, tmp_path / "downloads")
    plex = FakePlex(token=canaries["plex_token"])
    overseerr = EchoingOverseerr()
    feed = FeedServer(make_media(tmp_path, seconds=1.0))
    feed.entries = entries(2)
    try:
        plex.add_section("YouTube", locations=[str(backend.root)])
        overseerr.add_user(1, f"{USER_ID}@example.org", None)  # the backend user, by email
        for rid in (1, 2, 3):
            overseerr.add_request(rid, user=1, tmdb=100 + rid)
        backend.user(plex_token=canaries["plex_token"])
        backend.plex_service(plex.url, canaries["plex_token"])
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO service_config (service_name, service_url, api_key, enabled,"
                    " updated_at) VALUES ('overseerr', :url, :key, true, now())"
                ),
                {"url": overseerr.url, "key": crypto.encrypt(canaries["overseerr_key"])},
            )
        first = backend.download(backend.files(backend.folder(), ["One", "Two"]))
        second = backend.download(
            backend.files(backend.folder("Second", "PLsecond"), ["Three"]), title="Second"
        )
        third = backend.download(
            backend.files(backend.folder("Third", "PLthird"), ["Four"]), title="Third"
        )
        key_file = tmp_path / "encryption.key"
        key_file.write_text(canaries["encryption_key"])
        other_key_file = tmp_path / "other.key"
        other_key_file.write_text(secrets.token_hex(24))
        # A browser's cookies for YouTube (Netscape format): read by yt-dlp, never shown.
        cookies_file = tmp_path / "cookies.txt"
        cookies_file.write_text(
            "# Netscape HTTP Cookie File\n"
            f".youtube.com\tTRUE\t/\tTRUE\t2147483647\tSID\t{canaries['youtube_cookie']}\n"
        )

        worker = start_worker(
            queues="media,downloads,health,maintenance",
            PLEX_SCAN_POLL_SECONDS="0.1",
            PLEX_SCAN_WAIT_SECONDS="10",
            HTTP_TIMEOUT_SECONDS="3",
            HEALTH_TIMEOUT_SECONDS="2",
            OVERSEERR_URL="",
            OVERSEERR_API_KEY="",
            YTDLP_COOKIES_FILE=str(cookies_file),
            **DOWNLOAD_ENV,
        )
        flower = start_flower()

        # Round 1: the peers take the keys; every family's jobs succeed.
        happy = {
            "requests.sync": enqueue("requests.sync", {"full": True}).job_id,
            "downloads.plex_sync": enqueue("downloads.plex_sync", {"download_id": first}).job_id,
            "health.check_all": enqueue("health.check_all", {}).job_id,
            "maintenance.cleanup": enqueue(
                "maintenance.cleanup", {"targets": ["rate_limits"]}
            ).job_id,
            "maintenance.query_stats": enqueue("maintenance.query_stats", {}).job_id,
            "platform.noop": enqueue("platform.noop", {}).job_id,
            "downloads.playlist": enqueue(
                "downloads.playlist", {"user_id": USER_ID, "url": feed.feed_url}
            ).job_id,
        }
        # A rotation to the canary key from a key that opens nothing: every value is already
        # under the new key, so it rewrites nothing and succeeds, reporting its progress.
        rotation = enqueue(
            "maintenance.rotate_key",
            {"old_key_file": str(other_key_file), "new_key_file": str(key_file)},
        ).job_id
        row = wait_terminal(engine, rotation, timeout=60)
        assert row["state"] == "succeeded", row
        assert row["progress"], row
        for kind, job_id in happy.items():
            row = wait_terminal(engine, job_id, timeout=60)
            assert row["state"] == "succeeded", (kind, row)
        assert wait_terminal(engine, happy["requests.sync"])["result"]["created"] == 3
        assert backend.row(first)["plex_collection_id"] is not None

        # Round 2: Overseerr quotes the key (a 401, a malformed item), Plex refuses the token.
        overseerr.hostile = True
        plex.token = "not-the-canary-token"
        failing = {
            "requests.sync": enqueue("requests.sync", {"full": True}).job_id,
            "downloads.plex_sync": enqueue("downloads.plex_sync", {"download_id": second}).job_id,
            "maintenance.rotate_key": enqueue(
                "maintenance.rotate_key",
                {"old_key_file": str(key_file), "new_key_file": str(key_file)},
            ).job_id,
            # A host off DOWNLOAD_ALLOWED_HOSTS: the worker refuses it before any request.
            "downloads.playlist": enqueue(
                "downloads.playlist",
                {"user_id": USER_ID, "url": "http://videos.example.invalid/feed.xml"},
            ).job_id,
        }
        probe = enqueue("health.check_all", {}).job_id
        # Odd items are skipped, not fatal: the jobs succeed and report the skip.
        malformed = enqueue("requests.sync_one", {"overseerr_request_id": 2}).job_id
        odd_type = enqueue("requests.sync_one", {"overseerr_request_id": 3}).job_id
        for kind, job_id in failing.items():
            row = wait_terminal(engine, job_id, timeout=60)
            assert row["state"] == "failed", (kind, row)
            assert row["error_class"] and row["error_message"], (kind, row)
            assert row["error_class"] == ERROR_CLASSES[kind], (kind, row)
        assert wait_terminal(engine, probe, timeout=60)["state"] == "succeeded"
        skipped = wait_terminal(engine, malformed, timeout=60)
        assert skipped["state"] == "succeeded", skipped
        assert skipped["result"]["skipped"] == {"invalid_item": 1}, skipped["result"]
        skipped = wait_terminal(engine, odd_type, timeout=60)
        assert skipped["state"] == "succeeded", skipped
        assert skipped["result"]["skipped"] == {"unsupported_media_type": 1}, skipped["result"]
        with engine.connect() as connection:
            statuses = dict(
                connection.execute(text("SELECT service_name, status FROM service_status")).all()
            )
        # The refused keys are failed checks (degraded, then down after HEALTH_DOWN_AFTER).
        assert statuses.get("plex") != "up" and statuses.get("overseerr") != "up", statuses

        # Round 3: Plex takes the token again, but its only library is named with it.
        plex.token = canaries["plex_token"]
        plex.sections[1].title = canaries["plex_token"]
        no_library = enqueue("downloads.plex_sync", {"download_id": third}).job_id
        row = wait_terminal(engine, no_library, timeout=60)
        assert row["state"] == "failed" and row["error_class"] == "PlexLibraryError", row

        job_ids = [
            *happy.values(),
            *failing.values(),
            probe,
            malformed,
            odd_type,
            no_library,
            rotation,
        ]

        def flower_knows_all() -> bool:
            tasks = flower.get("/api/tasks").json()
            return all(
                tasks.get(job_id, {}).get("state") in ("SUCCESS", "FAILURE") for job_id in job_ids
            )

        wait_for(flower_knows_all, timeout=30, what="Flower to have seen every task end")
        # While the worker runs: /api/workers asks it (its stats and configuration).
        wait_for(
            lambda: json.loads(flower.get("/api/workers", refresh="true").content) or None,
            timeout=30,
            what="Flower to describe the worker",
        )
        places = _flower_dump(flower, job_ids)
        worker.stop()  # its log is complete
        # Messages still in the broker when it is searched: two jobs nobody runs now.
        waiting = [
            enqueue("requests.sync", {"full": True}).job_id,
            enqueue("downloads.plex_sync", {"download_id": third}).job_id,
        ]
        job_ids += waiting

        with TestClient(create_app(), headers={"X-API-Key": API_KEY}) as api:
            places.update(_api_dump(api, job_ids))
        places.update(_redis_dump(redis_client, [f"{redis_prefix}*", *backend_health_keys]))
        places.update(_database_dump(engine))
        places["worker log"] = worker.log_path.read_bytes()
        places["flower log"] = flower.log_path.read_bytes()
        places["API and test-process log records"] = caplog.text.encode()
        in_broker = b"\n".join(v for k, v in places.items() if k.startswith("redis "))
        assert all(job_id.encode() in in_broker for job_id in waiting), "messages not dumped"
        assert places["table mnw_jobs"] and places["worker log"]

        hits = [
            f"{which} ({form}) in {place}"
            for which, value in canaries.items()
            for form, needle in _forms(value).items()
            for place, content in places.items()
            if needle in content
        ]
        assert hits == [], "canaries found:\n" + "\n".join(hits)
    finally:
        overseerr.stop()
        plex.stop()
        feed.stop()


def test_the_search_finds_each_form_of_a_canary() -> None:
    """The needles are not vacuous: each form is found where a leak would put it."""
    value = _canary("control")
    raw = value.encode()
    forms = _forms(value)
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            blob = b"prefix " + encode(b"ab"[:shift] + raw + b"suffix") + b" end"
            assert any(needle in blob for needle in forms.values()), (shift, encode)
    assert forms["url-encoded"] in f"?token={urllib.parse.quote(value, safe='')}".encode()
    assert forms["url-encoded"] != forms["raw"]
    message = json.dumps({"body": base64.b64encode(b'[["' + raw + b'"], {}]').decode()})
    assert any(raw in body for body in _decoded_celery_bodies(message.encode()))
