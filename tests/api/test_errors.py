"""The one error shape (api/errors.py): bad input, unknown routes, a database outage."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from medianest_workers.api import errors as api_errors
from medianest_workers.platform import enqueue as enqueue_module
from medianest_workers.platform import group_enqueue, queries
from medianest_workers.platform.errors import (
    IdempotencyConflictError,
    IdempotencyContentionError,
    InvalidCursorError,
    JobFinishedError,
    JobNotFoundError,
    PayloadInvalidError,
    UnknownJobKindError,
    UnknownScheduleError,
)
from tests.api.conftest import (
    DEAD_DATABASE,
    NOOP,
    error_of,
    job_count,
    post_raw,
)

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


BATCH = {"jobs": [NOOP, {"kind": "tests.effect"}]}


@pytest.mark.parametrize(("path", "body"), [("/v1/jobs", NOOP), ("/v1/jobs/batch", BATCH)])
def test_a_json_body_without_a_content_type_is_read_as_json(client, engine, path, body) -> None:
    response = client.post(path, content=json.dumps(body).encode())
    assert "content-type" not in response.request.headers
    assert response.status_code == 202, response.text
    assert job_count(engine) == (1 if path == "/v1/jobs" else 2)


@pytest.mark.parametrize(
    ("content", "status", "code", "field"),
    [
        (b'{"kind": "platform.noop",', 400, "malformed_json", None),
        (b"\xff\xfe\x00", 400, "malformed_json", None),
        (b"[1, 2]", 422, "invalid_body", None),
        (b'{"kind": "no.such_kind"}', 422, "unknown_kind", "kind"),
        (
            b'{"kind": "platform.noop", "payload": {"sleep": -1}}',
            422,
            "invalid_payload",
            "payload.sleep",
        ),
    ],
)
def test_without_a_content_type_bad_json_is_refused_as_with_one(
    client, engine, content, status, code, field
) -> None:
    response = client.post("/v1/jobs", content=content)
    assert "content-type" not in response.request.headers
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code
    assert error["field"] == field
    assert job_count(engine) == 0


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/batch"])
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "text/json",
    ],
)
def test_a_content_type_that_is_not_json_is_415_naming_it(
    client, engine, path, content_type
) -> None:
    body = NOOP if path == "/v1/jobs" else BATCH
    response = client.post(
        path, content=json.dumps(body).encode(), headers={"Content-Type": content_type}
    )
    assert response.status_code == 415, response.text
    error = error_of(response)
    assert error["code"] == "unsupported_media_type"
    assert error["field"] == "Content-Type"
    assert "application/json" in error["message"]
    assert job_count(engine) == 0


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/merge-patch+json"]
)
def test_json_content_types_with_parameters_or_suffixes_are_json(
    client, engine, content_type
) -> None:
    response = post_raw(client, json.dumps(NOOP).encode(), **{"Content-Type": content_type})
    assert response.status_code == 202, response.text
    assert job_count(engine) == 1


def test_invalid_payload_lists_every_problem(client) -> None:
    response = client.post(
        "/v1/jobs", json={"kind": "platform.noop", "payload": {"sleep": "x", "more": 1}}
    )
    assert response.status_code == 422
    details = error_of(response)["details"]
    assert {item["field"] for item in details} == {"payload.sleep", "payload.more"}


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
    # Every method of the path, not only those of the first route matching it (Starlette's).
    assert set(wrong_method.headers["Allow"].split(", ")) == {"GET", "POST"}


_SEEN_JOB = SimpleNamespace(id="job-9", state="succeeded")
_PROBLEMS = [{"field": "sleep", "message": "too long"}, {"field": "", "message": "extra"}]

#: (error raised by the platform, status, code, field, a piece of the message)
PLATFORM_REFUSALS = [
    (UnknownJobKindError("x.y"), 422, "unknown_kind", "kind", "GET /v1/job-kinds"),
    (UnknownJobKindError("x.y", index=2), 422, "unknown_kind", "jobs.2.kind", "'x.y'"),
    (PayloadInvalidError("k", _PROBLEMS), 422, "invalid_payload", "payload.sleep", "too long"),
    (
        PayloadInvalidError("k", _PROBLEMS, index=4),
        422,
        "invalid_payload",
        "jobs.4.payload.sleep",
        "jobs.4.payload.sleep: too long",
    ),
    (
        IdempotencyConflictError("k", "job-1"),
        409,
        "idempotency_conflict",
        "Idempotency-Key",
        "job-1",
    ),
    (
        IdempotencyConflictError("k", "job-1", index=3),
        409,
        "idempotency_conflict",
        "jobs.3.idempotency_key",
        "job-1",
    ),
    (
        IdempotencyConflictError("k", "(same batch)", index=3, duplicate_of=1),
        422,
        "duplicate_idempotency_key",
        "jobs.3.idempotency_key",
        "jobs.1",
    ),
    (IdempotencyContentionError("keys moved"), 503, "idempotency_contention", None, "again"),
    (JobNotFoundError("job-7"), 404, "job_not_found", None, "'job-7'"),
    (JobFinishedError(_SEEN_JOB), 409, "job_finished", None, "already succeeded"),
    (InvalidCursorError(), 422, "invalid_cursor", "cursor", "next_cursor"),
    (UnknownScheduleError("nightly"), 404, "schedule_not_found", None, "'nightly'"),
]


@pytest.mark.parametrize(
    ("raised", "status", "code", "field", "message"),
    PLATFORM_REFUSALS,
    ids=[f"{type(case[0]).__name__}-{case[3]}" for case in PLATFORM_REFUSALS],
)
def test_platform_errors_map_to_refusals_in_one_place(raised, status, code, field, message):
    app = FastAPI()
    api_errors.install(app)

    @app.get("/raise")
    def _raise() -> None:
        raise raised

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/raise")
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code
    assert error["field"] == field
    assert message in error["message"]
    if code == "invalid_payload":
        prefix = field.removesuffix(".sleep")
        assert [item["field"] for item in error["details"]] == [field, prefix]
    if status == 503:
        assert response.headers["Retry-After"]


def test_database_down_answers_503_not_500(client, monkeypatch) -> None:
    dead = create_engine(DEAD_DATABASE, connect_args={"connect_timeout": 1})
    monkeypatch.setattr(enqueue_module, "get_engine", lambda: dead)
    monkeypatch.setattr(group_enqueue, "get_engine", lambda: dead)  # POST /v1/jobs stores here
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
