"""The HTTP API (medianest_workers/api) against real PostgreSQL, Redis and Celery workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, text

from medianest_workers.api import auth, health
from medianest_workers.api.app import create_app
from medianest_workers.platform import celery_app as celery_app_module
from medianest_workers.platform import enqueue as enqueue_module
from medianest_workers.platform import queries
from medianest_workers.platform.rescuer import rescue
from medianest_workers.runtime.embedded import EmbeddedValkey
from medianest_workers.settings import load_settings, reset_settings_cache
from tests.helpers import free_port, wait_for
from tests.platform.conftest import REPO_ROOT, job_row, runs, wait_terminal

API_KEY = "test-key-0123456789abcdef"
OTHER_KEY = "second-key-fedcba9876543210"
BODY_LIMIT = 8192
DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_DATABASE = "postgresql+psycopg2://nobody:nothing@127.0.0.1:1/none"
NOOP = {"kind": "platform.noop", "payload": {}}


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("API_KEYS", f"{API_KEY}, {OTHER_KEY}")
    monkeypatch.setenv("API_MAX_BODY_BYTES", str(BODY_LIMIT))
    monkeypatch.setenv("BEAT_SCHEDULE_MODULE", "tests.platform.sample_schedule")
    reset_settings_cache()
    yield monkeypatch
    reset_settings_cache()


@pytest.fixture
def client(api_env, session_factory) -> Iterator[TestClient]:
    with TestClient(create_app(), headers={"X-API-Key": API_KEY}) as test_client:
        yield test_client


def job_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM mnw_jobs")).scalar_one()


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object of a refusal, checking the shared shape on the way."""
    body = response.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert {"code", "message", "field"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"]
    return error


def post_raw(client: TestClient, content: bytes, **headers: str) -> httpx.Response:
    return client.post(
        "/v1/jobs", content=content, headers={"Content-Type": "application/json", **headers}
    )


def queue_length(redis_client: redis.Redis, prefix: str, queue: str) -> int:
    return int(redis_client.llen(f"{prefix}{queue}"))


# --- the document and auth ----------------------------------------------------------------


def test_openapi_and_docs_are_served_without_a_key(api_env, session_factory) -> None:
    with TestClient(create_app()) as anonymous:
        document = anonymous.get("/openapi.json")
        assert document.status_code == 200
        paths = document.json()["paths"]
        for path in (
            "/v1/jobs",
            "/v1/jobs/batch",
            "/v1/jobs/{job_id}",
            "/v1/jobs/{job_id}/cancel",
            "/v1/schedules",
            "/v1/schedules/{name}/run",
            "/healthz",
            "/metrics",
        ):
            assert path in paths
        schemes = document.json()["components"]["securitySchemes"]
        assert any(scheme.get("name") == "X-API-Key" for scheme in schemes.values())
        assert anonymous.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/jobs"),
        ("POST", "/v1/jobs/batch"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/some-id"),
        ("POST", "/v1/jobs/some-id/cancel"),
        ("GET", "/v1/job-kinds"),
        ("GET", "/v1/schedules"),
        ("POST", "/v1/schedules/tests.tick/run"),
    ],
)
@pytest.mark.parametrize("key", [None, "", "wrong-key", API_KEY[:-1], API_KEY + "x"])
def test_every_v1_endpoint_needs_a_valid_key(client, engine, method, path, key) -> None:
    headers = {"X-API-Key": key} if key is not None else {}
    if key is None:
        client.headers.pop("X-API-Key")
    # An invalid body must not be reported before the missing key (nothing leaks).
    response = client.request(method, path, content=b"{not json", headers=headers)
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "unauthorized"
    assert error["field"] == "X-API-Key"
    assert response.headers["WWW-Authenticate"] == "X-API-Key"
    assert job_count(engine) == 0


def test_any_configured_key_is_accepted(client) -> None:
    response = client.post("/v1/jobs", json=NOOP, headers={"X-API-Key": OTHER_KEY})
    assert response.status_code == 202


def test_no_configured_key_refuses_everything(api_env, session_factory) -> None:
    api_env.setenv("API_KEYS", "")
    reset_settings_cache()
    with TestClient(create_app()) as anonymous:
        response = anonymous.post("/v1/jobs", json=NOOP, headers={"X-API-Key": ""})
        assert response.status_code == 401
        response = anonymous.get("/v1/jobs", headers={"X-API-Key": "anything"})
        assert response.status_code == 401


def test_keys_are_compared_in_constant_time_against_every_key(monkeypatch) -> None:
    from pydantic import SecretStr  # noqa: PLC0415

    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    keys = [SecretStr("first"), SecretStr("second"), SecretStr("third-and-longer")]
    assert auth.key_matches("first", keys)
    assert len(calls) == 3  # no early exit on the match
    assert all(len(a) == len(b) == 32 for a, b in calls)  # digests: lengths do not leak
    calls.clear()
    assert not auth.key_matches("fourth", keys)
    assert len(calls) == 3
    assert not auth.key_matches("first", [])


# --- enqueue -------------------------------------------------------------------------------


def test_post_a_job_answers_202_with_the_job_and_a_location(client, engine) -> None:
    response = client.post(
        "/v1/jobs",
        json={"kind": "platform.noop", "payload": {"sleep": 0.5}, "user_id": "u-7"},
        headers={"X-Correlation-Id": "req-abc.123"},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["kind"] == "platform.noop"
    assert body["queue"] == "maintenance"
    assert body["state"] == "queued"
    assert body["attempts"] == 0 and body["max_attempts"] == 3
    assert body["payload"] == {"sleep": 0.5}
    assert body["created"] is True and body["published"] is True
    assert body["error"] is None and body["progress"] is None
    assert body["enqueued_at"].endswith("Z")
    assert response.headers["Location"] == f"/v1/jobs/{body['id']}"
    assert response.headers["X-Correlation-Id"] == "req-abc.123"
    assert "Idempotent-Replayed" not in response.headers
    row = job_row(engine, body["id"])
    assert row["correlation_id"] == "req-abc.123"
    assert row["enqueued_by"] == "api"
    assert row["user_id"] == "u-7"

    polled = client.get(response.headers["Location"])
    assert polled.status_code == 200
    assert polled.json()["id"] == body["id"]
    assert polled.json()["state"] == "queued"
    assert "created" not in polled.json()


@pytest.mark.parametrize("given", [None, "has spaces", "x" * 200, "semi;colon", "ünïcode"])
def test_a_missing_or_unsafe_correlation_id_is_replaced_and_echoed(client, engine, given):
    headers = {} if given is None else {"X-Correlation-Id": given.encode("utf-8")}
    response = client.post("/v1/jobs", json=NOOP, headers=headers)
    assert response.status_code == 202
    echoed = response.headers["X-Correlation-Id"]
    assert echoed != given
    assert len(echoed) == 32 and all(char in "0123456789abcdef" for char in echoed)
    assert job_row(engine, response.json()["id"])["correlation_id"] == echoed


def test_refusals_echo_the_correlation_id_too(client) -> None:
    headers = {"X-Correlation-Id": "corr-refused"}
    assert client.get("/v1/nothing", headers=headers).headers["X-Correlation-Id"] == "corr-refused"
    big = post_raw(client, b" " * (BODY_LIMIT + 1), **headers)
    assert big.status_code == 413
    assert big.headers["X-Correlation-Id"] == "corr-refused"
    client.headers.pop("X-API-Key")
    assert client.get("/v1/jobs", headers=headers).headers["X-Correlation-Id"] == "corr-refused"


def test_the_same_idempotency_key_and_body_returns_the_first_job(client, engine) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/jobs", json=NOOP, headers=headers)
    again = client.post("/v1/jobs", json=NOOP, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["created"] is True
    assert again.json()["created"] is False
    assert again.json()["published"] is None
    assert again.json()["idempotency_key"] == "order-42"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    # The payload is compared as the schema normalises it: {} and {"sleep": 0} are one request.
    same = client.post("/v1/jobs", json={**NOOP, "payload": {"sleep": 0}}, headers=headers)
    assert same.status_code == 202 and same.json()["id"] == first.json()["id"]
    assert job_count(engine) == 1


@pytest.mark.parametrize(
    "other",
    [
        {"kind": "platform.noop", "payload": {"sleep": 1}},
        {"kind": "tests.effect", "payload": {}},
    ],
)
def test_the_same_key_with_another_request_is_409(client, engine, other) -> None:
    headers = {"Idempotency-Key": "order-43"}
    assert client.post("/v1/jobs", json=NOOP, headers=headers).status_code == 202
    response = client.post("/v1/jobs", json=other, headers=headers)
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "idempotency_conflict"
    assert error["field"] == "Idempotency-Key"
    assert job_count(engine) == 1


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_an_empty_or_overlong_idempotency_key_is_422(client, engine, key) -> None:
    response = client.post("/v1/jobs", json=NOOP, headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert error_of(response)["field"] == "Idempotency-Key"
    assert job_count(engine) == 0


_DEEP = b'{"kind": "platform.noop", "payload": {"a": ' + b"[" * 3000 + b"]" * 3000 + b"}}"


def _nested_payload(levels: int) -> bytes:
    inner: Any = 1
    for _ in range(levels):
        inner = {"a": inner}
    return json.dumps({"kind": "platform.noop", "payload": inner}).encode()


@pytest.mark.parametrize(
    ("content", "status", "code", "field"),
    [
        (b'{"kind": "platform.noop",', 400, "malformed_json", None),
        (b"{'kind': 'platform.noop'}", 400, "malformed_json", None),
        (b"\xff\xfe\x00", 400, "malformed_json", None),
        (b"[1, 2]", 422, "invalid_body", None),
        (b'"platform.noop"', 422, "invalid_body", None),
        (b"42", 422, "invalid_body", None),
        (b"null", 422, "invalid_body", None),
        (b"", 422, "body_required", None),
        (b"{}", 422, "invalid_request", "kind"),
        (b'{"payload": {}}', 422, "invalid_request", "kind"),
        (b'{"kind": 5}', 422, "invalid_request", "kind"),
        (b'{"kind": ["platform.noop"]}', 422, "invalid_request", "kind"),
        (b'{"kind": ""}', 422, "invalid_request", "kind"),
        (b'{"kind": "no.such_kind"}', 422, "unknown_kind", "kind"),
        (b'{"kind": "x\\u0000y"}', 422, "invalid_request", "kind"),
        (b'{"kind": "\\ud800"}', 422, "invalid_request", "kind"),
        (
            b'{"kind": "platform.noop", "payload": {"sleep": "long"}}',
            422,
            "invalid_payload",
            "payload.sleep",
        ),
        (
            b'{"kind": "platform.noop", "payload": {"sleep": -1}}',
            422,
            "invalid_payload",
            "payload.sleep",
        ),
        (
            b'{"kind": "platform.noop", "payload": {"sleep": NaN}}',
            422,
            "invalid_payload",
            "payload.sleep",
        ),
        (
            b'{"kind": "platform.noop", "payload": {"sleep": 1e999}}',
            422,
            "invalid_payload",
            "payload.sleep",
        ),
        (
            b'{"kind": "platform.noop", "payload": {"nope": 1}}',
            422,
            "invalid_payload",
            "payload.nope",
        ),
        (
            b'{"kind": "platform.noop", "payload": {"\\u0000": 1}}',
            422,
            "invalid_payload",
            "payload",
        ),
        (b'{"kind": "platform.noop", "payload": [1]}', 422, "invalid_request", "payload"),
        (b'{"kind": "platform.noop", "payload": null}', 422, "invalid_request", "payload"),
        (b'{"kind": "platform.noop", "payload": "{}"}', 422, "invalid_request", "payload"),
        (b'{"kind": "platform.noop", "extra": 1}', 422, "invalid_request", "extra"),
        (b'{"kind": "platform.noop", "user_id": 7}', 422, "invalid_request", "user_id"),
        (b'{"kind": "platform.noop", "user_id": "u\\u0000"}', 422, "invalid_request", "user_id"),
        (_DEEP, 400, "malformed_json", None),
        (_nested_payload(40), 422, "invalid_payload", None),
        (
            b'{"kind": "platform.noop", "payload": {"sleep": ' + b"9" * 5000 + b"}}",
            400,
            "malformed_json",
            None,
        ),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field_and_writes_nothing(
    client, engine, content, status, code, field
) -> None:
    response = post_raw(client, content)
    assert response.status_code == status, response.text
    error = error_of(response)
    if code is not None:
        assert error["code"] == code
    if field is not None:
        assert error["field"] == field
    assert job_count(engine) == 0


def test_a_body_that_is_not_json_is_415(client, engine) -> None:
    response = client.post(
        "/v1/jobs", content=json.dumps(NOOP).encode(), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert error_of(response)["field"] == "Content-Type"
    assert job_count(engine) == 0


def test_invalid_payload_lists_every_problem(client) -> None:
    response = client.post(
        "/v1/jobs", json={"kind": "platform.noop", "payload": {"sleep": "x", "more": 1}}
    )
    assert response.status_code == 422
    details = error_of(response)["details"]
    assert {item["field"] for item in details} == {"payload.sleep", "payload.more"}


def test_an_oversized_body_is_413_by_content_length(client, engine) -> None:
    payload = {"kind": "platform.noop", "payload": {"pad": "x" * BODY_LIMIT}}
    response = client.post("/v1/jobs", json=payload)
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "body_too_large"
    assert str(BODY_LIMIT) in error["message"]
    assert job_count(engine) == 0


def test_an_oversized_chunked_body_is_413(client, engine) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "platform.noop", "payload": {"pad": "'
        for _ in range(BODY_LIMIT // 1000 + 1):
            yield b"x" * 1000
        yield b'"}}'

    response = client.post(
        "/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in {name.lower() for name in response.request.headers}
    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"
    assert job_count(engine) == 0


def test_a_chunked_body_within_the_limit_is_accepted(client, engine) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "platform.noop", '
        yield b'"payload": {"sleep": 0}}'

    response = client.post(
        "/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 202, response.text
    assert job_count(engine) == 1


# --- batch ---------------------------------------------------------------------------------


def test_a_batch_is_accepted_in_one_answer(client, engine) -> None:
    jobs = [
        {"kind": "platform.noop", "payload": {"sleep": 0}, "idempotency_key": "b-1"},
        {"kind": "tests.effect", "payload": {}, "user_id": "u-1"},
        {"kind": "platform.noop"},
    ]
    response = client.post("/v1/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 202, response.text
    accepted = response.json()["jobs"]
    assert [job["kind"] for job in accepted] == ["platform.noop", "tests.effect", "platform.noop"]
    assert all(job["created"] and job["state"] == "queued" for job in accepted)
    assert accepted[0]["idempotency_key"] == "b-1"
    assert accepted[1]["user_id"] == "u-1"
    assert job_count(engine) == 3
    cid = response.headers["X-Correlation-Id"]
    assert {job["correlation_id"] for job in accepted} == {cid}

    replay = client.post("/v1/jobs/batch", json={"jobs": jobs[:1]})
    assert replay.status_code == 202
    assert replay.json()["jobs"][0]["id"] == accepted[0]["id"]
    assert replay.json()["jobs"][0]["created"] is False
    assert job_count(engine) == 3


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"jobs": []}, 422, "invalid_request", "jobs"),
        ({"jobs": [NOOP] * 101}, 422, "invalid_request", "jobs"),
        ({"jobs": NOOP}, 422, "invalid_request", "jobs"),
        ({}, 422, "invalid_request", "jobs"),
        ({"jobs": [NOOP, {"kind": "no.such_kind"}]}, 422, "unknown_kind", "jobs.1.kind"),
        (
            {"jobs": [NOOP, {"kind": "platform.noop", "payload": {"sleep": "x"}}]},
            422,
            "invalid_payload",
            "jobs.1.payload.sleep",
        ),
        ({"jobs": [NOOP, {"payload": {}}]}, 422, "invalid_request", "jobs.1.kind"),
        (
            {"jobs": [{**NOOP, "idempotency_key": ""}]},
            422,
            "invalid_request",
            "jobs.0.idempotency_key",
        ),
        (
            {"jobs": [{**NOOP, "idempotency_key": "d"}, {**NOOP, "idempotency_key": "d"}]},
            422,
            "duplicate_idempotency_key",
            "jobs.1.idempotency_key",
        ),
        (
            {"jobs": [NOOP, {"kind": "platform.noop", "payload": {"sleep": float("inf")}}]},
            422,
            "invalid_payload",
            "jobs.1.payload.sleep",
        ),
    ],
)
def test_a_bad_batch_is_refused_whole(client, engine, body, status, code, field) -> None:
    response = client.post(
        "/v1/jobs/batch",
        content=json.dumps(body).encode(),  # allows Infinity, which Python's json writes
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code
    assert error["field"] == field
    assert job_count(engine) == 0


def test_a_batch_takes_keys_per_job_not_in_the_header(client, engine) -> None:
    response = client.post(
        "/v1/jobs/batch", json={"jobs": [NOOP]}, headers={"Idempotency-Key": "whole"}
    )
    assert response.status_code == 422
    assert error_of(response)["field"] == "Idempotency-Key"
    assert job_count(engine) == 0


def test_a_batch_conflicting_with_an_existing_key_is_409_naming_the_job(client, engine) -> None:
    assert client.post("/v1/jobs", json=NOOP, headers={"Idempotency-Key": "c-1"}).status_code == 202
    jobs = [NOOP, {"kind": "platform.noop", "payload": {"sleep": 2}, "idempotency_key": "c-1"}]
    response = client.post("/v1/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "idempotency_conflict"
    assert error["field"] == "jobs.1.idempotency_key"
    assert job_count(engine) == 1


# --- read and list -------------------------------------------------------------------------


def test_unknown_job_route_and_method_answer_in_the_error_shape(client) -> None:
    missing = client.get(f"/v1/jobs/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "job_not_found"
    weird = client.get("/v1/jobs/" + "%00%ff" * 10)
    assert weird.status_code == 404
    assert error_of(weird)["code"] == "job_not_found"
    weird_cancel = client.post("/v1/jobs/a%00b/cancel")
    assert weird_cancel.status_code == 404
    assert error_of(weird_cancel)["code"] == "job_not_found"
    no_route = client.get("/v1/nothing-here")
    assert no_route.status_code == 404
    assert error_of(no_route)["code"] == "not_found"
    wrong_method = client.delete("/v1/jobs")
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["code"] == "method_not_allowed"
    # Starlette names the methods of the first route matching the path.
    assert set(wrong_method.headers["Allow"].split(", ")) <= {"GET", "POST"}


def test_list_filters_and_pages_through_every_job(client) -> None:
    ids = []
    for index in range(5):
        body = NOOP if index % 2 else {"kind": "tests.effect", "payload": {}}
        ids.append(client.post("/v1/jobs", json=body).json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/jobs", params=params)
        assert page.status_code == 200, page.text
        seen.extend(job["id"] for job in page.json()["jobs"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert seen == list(reversed(ids))  # newest first

    effects = client.get("/v1/jobs", params={"kind": "tests.effect"}).json()["jobs"]
    assert {job["id"] for job in effects} == {ids[0], ids[2], ids[4]}
    queued = client.get("/v1/jobs", params=[("state", "queued"), ("state", "running")]).json()
    assert len(queued["jobs"]) == 5
    assert client.get("/v1/jobs", params={"state": "succeeded"}).json()["jobs"] == []
    future = client.get("/v1/jobs", params={"enqueued_after": "2999-01-01T00:00:00+02:00"})
    assert future.status_code == 200 and future.json()["jobs"] == []
    past = client.get("/v1/jobs", params={"enqueued_before": "2000-01-01T00:00:00Z"})
    assert past.status_code == 200 and past.json()["jobs"] == []
    everything = client.get("/v1/jobs", params={"enqueued_after": "2000-01-01T00:00:00"})
    assert len(everything.json()["jobs"]) == 5


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"limit": "0"}, "invalid_request", "limit"),
        ({"limit": "501"}, "invalid_request", "limit"),
        ({"limit": "-3"}, "invalid_request", "limit"),
        ({"limit": "ten"}, "invalid_request", "limit"),
        ({"limit": "1.5"}, "invalid_request", "limit"),
        ({"state": "bogus"}, "invalid_request", "state"),
        ({"state": "QUEUED"}, "invalid_request", "state"),
        ({"enqueued_after": "yesterday"}, "invalid_request", "enqueued_after"),
        ({"enqueued_before": "2025-13-45T99:00:00"}, "invalid_request", "enqueued_before"),
        ({"cursor": "garbage"}, "invalid_cursor", "cursor"),
        ({"cursor": "WyIyMDI1LTAxLTAxIiwgNV0"}, "invalid_cursor", "cursor"),
        ({"cursor": "c" * 300}, "invalid_request", "cursor"),
        ({"cursor": "\x00"}, "invalid_request", "cursor"),
        ({"kind": "k\x00"}, "invalid_request", "kind"),
    ],
)
def test_bad_list_parameters_are_422_naming_the_parameter(client, params, code, field) -> None:
    response = client.get("/v1/jobs", params=params)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == code
    assert error["field"] == field


def test_job_kinds_lists_each_kind_with_its_payload_schema(client) -> None:
    response = client.get("/v1/job-kinds")
    assert response.status_code == 200
    kinds = {kind["kind"]: kind for kind in response.json()["kinds"]}
    noop = kinds["platform.noop"]
    assert noop["queue"] == "maintenance"
    assert "sleep" in noop["payload_schema"]["properties"]
    assert "tests.effect" in kinds


# --- cancel --------------------------------------------------------------------------------


def test_cancel_a_queued_job_then_again_then_an_unknown_one(client, engine) -> None:
    job_id = client.post("/v1/jobs", json=NOOP).json()["id"]
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "cancelled"
    assert response.json()["cancel_requested"] is True
    assert job_row(engine, job_id)["state"] == "cancelled"

    again = client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409
    error = error_of(again)
    assert error["code"] == "job_finished"
    assert "already cancelled" in error["message"]

    unknown = client.post(f"/v1/jobs/{uuid.uuid4()}/cancel")
    assert unknown.status_code == 404
    assert error_of(unknown)["code"] == "job_not_found"


def test_cancel_stops_a_running_job_and_a_cancelled_queued_job_never_runs(
    client, engine, job_tables, start_worker
) -> None:
    # Queued and cancelled before any worker exists: its message is delivered, and skipped.
    skipped = client.post("/v1/jobs", json={"kind": "tests.effect", "payload": {}}).json()["id"]
    assert client.post(f"/v1/jobs/{skipped}/cancel").status_code == 200
    worker = start_worker(queues="media", concurrency=1)  # one at a time: in queue order
    looping = client.post("/v1/jobs", json={"kind": "tests.cooperative", "payload": {"sleep": 25}})
    job_id = looping.json()["id"]
    wait_for(lambda: job_row(engine, job_id)["state"] == "running", timeout=30)

    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "running"
    assert response.json()["cancel_requested"] is True

    row = wait_terminal(engine, job_id, timeout=20)
    assert row["state"] == "cancelled", worker.log()
    assert row["error_class"] == "JobCancelledError"
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
    assert runs(engine, skipped) == 0
    assert job_row(engine, skipped)["attempts"] == 0
    assert job_row(engine, skipped)["state"] == "cancelled"


# --- end to end, health, metrics -----------------------------------------------------------


def _samples(text_format: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text_format)
        for sample in family.samples
    }


def test_a_job_posted_over_http_runs_and_shows_in_metrics(client, engine, start_worker) -> None:
    start_worker()
    response = client.post("/v1/jobs", json={"kind": "platform.noop", "payload": {"sleep": 0.2}})
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert wait_terminal(engine, job_id)["state"] == "succeeded"
    polled = client.get(f"/v1/jobs/{job_id}").json()
    assert polled["state"] == "succeeded"
    assert polled["attempts"] == 1
    assert polled["started_at"] and polled["finished_at"]

    client.headers.pop("X-API-Key")  # /metrics needs no key
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    samples = _samples(scrape.text)
    noop = frozenset({("kind", "platform.noop"), ("state", "succeeded")})
    assert samples[("mnw_jobs", noop)] >= 1
    assert samples[("mnw_jobs", frozenset({("kind", "tests.effect"), ("state", "dead")}))] == 0
    count = samples[("mnw_job_duration_seconds_count", frozenset({("kind", "platform.noop")}))]
    assert count >= 1
    median = samples[
        ("mnw_job_duration_seconds", frozenset({("kind", "platform.noop"), ("quantile", "0.5")}))
    ]
    assert 0.1 <= median < 30
    for queue in ("media", "downloads", "health", "maintenance"):
        assert ("mnw_queue_length", frozenset({("queue", queue)})) in samples
    assert samples[("mnw_metrics_source_up", frozenset({("source", "database")}))] == 1
    assert samples[("mnw_metrics_source_up", frozenset({("source", "broker")}))] == 1
    assert job_id not in scrape.text  # counts only


def test_metrics_count_waiting_messages(client, redis_client, redis_prefix) -> None:
    before = queue_length(redis_client, redis_prefix, "maintenance")
    for _ in range(3):
        assert client.post("/v1/jobs", json=NOOP).status_code == 202
    samples = _samples(client.get("/metrics").text)
    assert samples[("mnw_queue_length", frozenset({("queue", "maintenance")}))] == before + 3
    assert samples[("mnw_jobs", frozenset({("kind", "platform.noop"), ("state", "queued")}))] == 3


def test_healthz_reports_database_and_broker(client) -> None:
    client.headers.pop("X-API-Key")
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_is_503_naming_a_dead_broker_and_metrics_still_answer(api_env, session_factory):
    api_env.setenv("REDIS_URL", DEAD_REDIS)
    reset_settings_cache()
    with TestClient(create_app()) as anonymous:
        started = time.monotonic()
        response = anonymous.get("/healthz")
        assert time.monotonic() - started < 5
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["database"] == "ok"
        assert body["broker"].startswith("unreachable")
        assert body["error"]["code"] == "unavailable"
        assert "broker" in body["error"]["message"]
        scrape = anonymous.get("/metrics")
        assert scrape.status_code == 200
        samples = _samples(scrape.text)
        assert samples[("mnw_metrics_source_up", frozenset({("source", "broker")}))] == 0
        assert samples[("mnw_metrics_source_up", frozenset({("source", "database")}))] == 1


def test_healthz_is_503_naming_a_dead_database(client, monkeypatch) -> None:
    dead = create_engine(DEAD_DATABASE, connect_args={"connect_timeout": 1})
    monkeypatch.setattr(health, "get_engine", lambda: dead)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] != "ok"
    assert response.json()["broker"] == "ok"
    assert "database" in response.json()["error"]["message"]
    dead.dispose()


def test_database_down_answers_503_not_500(client, monkeypatch) -> None:
    dead = create_engine(DEAD_DATABASE, connect_args={"connect_timeout": 1})
    monkeypatch.setattr(enqueue_module, "get_engine", lambda: dead)
    monkeypatch.setattr(queries, "get_engine", lambda: dead)
    for response in (
        client.post("/v1/jobs", json=NOOP),
        client.get(f"/v1/jobs/{uuid.uuid4()}"),
        client.get("/v1/jobs"),
    ):
        assert response.status_code == 503, response.text
        assert error_of(response)["code"] == "database_unavailable"
        assert response.headers["Retry-After"]
    dead.dispose()


# --- Redis down at enqueue ------------------------------------------------------------------


def test_redis_down_at_enqueue_is_still_202_and_the_rescuer_publishes_the_job(
    client, engine, redis_client, redis_prefix, monkeypatch
) -> None:
    dead_broker = Celery("dead-broker", set_as_current=False)
    celery_app_module.configure(dead_broker, load_settings(redis_url=DEAD_REDIS))
    real_app = enqueue_module.celery_app
    monkeypatch.setattr(enqueue_module, "celery_app", dead_broker)
    before = queue_length(redis_client, redis_prefix, "maintenance")
    try:
        started = time.monotonic()
        response = client.post("/v1/jobs", json=NOOP, headers={"Idempotency-Key": "rd-1"})
        assert time.monotonic() - started < 20
    finally:
        monkeypatch.setattr(enqueue_module, "celery_app", real_app)
        dead_broker.close()
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["created"] is True
    assert body["published"] is False
    assert body["state"] == "queued"
    row = job_row(engine, body["id"])
    assert row["state"] == "queued"
    assert row["published_at"] is None
    assert queue_length(redis_client, redis_prefix, "maintenance") == before

    report = rescue(queued_after=300, stale_after=60, batch_size=100)
    assert body["id"] in report.republished_queued
    assert queue_length(redis_client, redis_prefix, "maintenance") == before + 1
    messages = [json.loads(raw) for raw in redis_client.lrange(f"{redis_prefix}maintenance", 0, -1)]
    assert body["id"] in {message["headers"]["id"] for message in messages}
    # Polling and replaying work as for any job.
    assert client.get(response.headers["Location"]).json()["state"] == "queued"
    replay = client.post("/v1/jobs", json=NOOP, headers={"Idempotency-Key": "rd-1"})
    assert replay.json()["id"] == body["id"]


def test_redis_out_of_memory_at_enqueue_is_202_unpublished_not_a_silent_drop(
    client, engine, tmp_path, redis_client, redis_prefix, monkeypatch
) -> None:
    """RELIABILITY #9: a full broker (noeviction) refuses the publish; the job stays queued."""
    server = EmbeddedValkey(tmp_path / "full-valkey", persist=False)
    url = server.start()
    full = redis.Redis.from_url(url)
    try:
        used = int(full.info("memory")["used_memory"])
        full.config_set("maxmemory-policy", "noeviction")
        full.config_set("maxmemory", used + 256 * 1024)
        with pytest.raises(redis.exceptions.OutOfMemoryError, match="maxmemory"):
            for index in range(1000):
                full.set(f"filler:{index}", b"x" * 64 * 1024)
        broker = Celery("full-broker", set_as_current=False)
        celery_app_module.configure(broker, load_settings(redis_url=url))
        real_app = enqueue_module.celery_app
        monkeypatch.setattr(enqueue_module, "celery_app", broker)
        try:
            response = client.post("/v1/jobs", json=NOOP)
        finally:
            monkeypatch.setattr(enqueue_module, "celery_app", real_app)
            broker.close()
        assert not any(key.startswith(b"mnw") for key in full.keys("*"))  # nothing got in
    finally:
        full.close()
        server.stop()
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["published"] is False
    assert job_row(engine, body["id"])["state"] == "queued"
    report = rescue(queued_after=300, stale_after=60, batch_size=100)
    assert body["id"] in report.republished_queued
    assert queue_length(redis_client, redis_prefix, "maintenance") == 1


# --- schedules -----------------------------------------------------------------------------


def test_schedules_are_listed_and_run_on_demand(client, engine) -> None:
    listed = client.get("/v1/schedules")
    assert listed.status_code == 200, listed.text
    schedules = {item["name"]: item for item in listed.json()["schedules"]}
    tick = schedules["tests.tick"]
    assert tick["kind"] == "platform.noop"
    assert tick["last_run_at"] is None and tick["last_job_id"] is None

    run = client.post("/v1/schedules/tests.tick/run", headers={"X-Correlation-Id": "manual-1"})
    assert run.status_code == 202, run.text
    job = run.json()
    assert job["kind"] == "platform.noop"
    assert job["schedule_name"] == "tests.tick"
    assert job["trigger"] == "manual"
    assert job["correlation_id"] == "manual-1"
    assert run.headers["Location"] == f"/v1/jobs/{job['id']}"

    after = {item["name"]: item for item in client.get("/v1/schedules").json()["schedules"]}
    assert after["tests.tick"]["last_job_id"] == job["id"]
    assert after["tests.tick"]["last_trigger"] == "manual"
    assert after["tests.tick"]["last_run_at"].endswith("Z")

    unknown = client.post("/v1/schedules/no.such.schedule/run")
    assert unknown.status_code == 404
    assert error_of(unknown)["code"] == "schedule_not_found"
    assert job_count(engine) == 1


# --- a real server: concurrency and streaming -----------------------------------------------


@pytest.fixture
def live_server(api_env, session_factory, tmp_path: Path) -> Iterator[str]:
    """The API served by uvicorn --factory in its own process, as `medianest-workers api` does."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "medianest_workers.api.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url, process, log_path), timeout=30, interval=0.2)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _answers(url: str, process: subprocess.Popen, log_path: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"uvicorn exited: {log_path.read_text(errors='replace')}")
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_twenty_concurrent_posts_with_one_key_make_one_job(live_server, engine) -> None:
    """RELIABILITY #17: exactly one row; every response carries the same job id."""
    headers = {"X-API-Key": API_KEY, "Idempotency-Key": "concurrent-17"}
    body = {"kind": "platform.noop", "payload": {"sleep": 0}}

    def post(_: int) -> httpx.Response:
        return httpx.post(f"{live_server}/v1/jobs", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(post, range(20)))
    assert [response.status_code for response in responses] == [202] * 20
    ids = {response.json()["id"] for response in responses}
    assert len(ids) == 1
    assert sum(response.json()["created"] for response in responses) == 1
    assert sum("Idempotent-Replayed" in response.headers for response in responses) == 19
    assert job_count(engine) == 1


def test_a_real_server_caps_streamed_bodies(live_server, engine) -> None:
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}

    def endless() -> Iterator[bytes]:
        yield b'{"kind": "platform.noop", "payload": {"pad": "'
        for _ in range(1000):  # 1 MB, far past the limit: the server stops reading early
            yield b"x" * 1024

    try:
        response = httpx.post(
            f"{live_server}/v1/jobs", content=endless(), headers=headers, timeout=30
        )
    except httpx.HTTPError:  # the server may close the socket while we still send
        response = None
    if response is not None:
        assert response.status_code == 413
        assert error_of(response)["code"] == "body_too_large"
    declared = httpx.post(
        f"{live_server}/v1/jobs",
        content=b"{" + b" " * (BODY_LIMIT + 10) + b"}",
        headers=headers,
        timeout=30,
    )
    assert declared.status_code == 413
    malformed = httpx.post(f"{live_server}/v1/jobs", content=b"{oops", headers=headers)
    assert malformed.status_code == 400
    assert error_of(malformed)["code"] == "malformed_json"
    assert job_count(engine) == 0
    # The server is still serving.
    assert httpx.get(f"{live_server}/healthz", timeout=5).status_code == 200
