"""/v1/jobs and /v1/job-kinds (api/jobs.py) against real PostgreSQL, Redis and workers."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from celery import Celery

from medianest_workers.api import jobs as api_jobs
from medianest_workers.platform import celery_app as celery_app_module
from medianest_workers.platform import enqueue as enqueue_module
from medianest_workers.platform import queries
from medianest_workers.platform.rescuer import rescue
from medianest_workers.runtime.embedded import EmbeddedValkey
from medianest_workers.runtime.jobs_cli import add_job_commands
from medianest_workers.settings import load_settings
from tests.api.conftest import (
    API_KEY,
    DEAD_REDIS,
    NOOP,
    error_of,
    job_count,
    queue_length,
)
from tests.helpers import wait_for
from tests.platform.conftest import job_row, runs, wait_terminal

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


@pytest.mark.parametrize(
    "key", ["ключ", "é" * 255, "注文-42"], ids=["cyrillic", "255-chars", "cjk"]
)
def test_a_non_ascii_idempotency_key_is_read_as_utf8(client, engine, key) -> None:
    headers = {"Idempotency-Key": key.encode("utf-8")}
    first = client.post("/v1/jobs", json=NOOP, headers=headers)
    assert first.status_code == 202, first.text
    assert first.json()["idempotency_key"] == key
    assert job_row(engine, first.json()["id"])["idempotency_key"] == key
    assert client.get(first.headers["Location"]).json()["idempotency_key"] == key
    again = client.post("/v1/jobs", json=NOOP, headers=headers)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert job_count(engine) == 1


def test_an_idempotency_key_of_more_than_255_characters_is_422(client, engine) -> None:
    response = client.post("/v1/jobs", json=NOOP, headers={"Idempotency-Key": "é".encode() * 256})
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "invalid_request"
    assert error["field"] == "Idempotency-Key"
    assert "255" in error["message"]
    assert job_count(engine) == 0


def test_an_idempotency_key_that_is_not_utf8_is_422(live_server, engine) -> None:
    # A real server: the TestClient would re-encode the header's bytes as UTF-8 on the way.
    for raw in (b"\xff\xfe", "ключ".encode("cp1251"), b"ok-\xc3"):
        response = httpx.post(
            f"{live_server}/v1/jobs",
            json=NOOP,
            headers={"X-API-Key": API_KEY, "Idempotency-Key": raw},
            timeout=30,
        )
        assert response.status_code == 422, response.text
        error = error_of(response)
        assert error["code"] == "invalid_request"
        assert error["field"] == "Idempotency-Key"
        assert "not valid UTF-8" in error["message"]
    assert job_count(engine) == 0


def test_the_idempotency_key_header_is_documented_with_its_bounds(client) -> None:
    parameters = client.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]["parameters"]
    (header,) = [item for item in parameters if item["name"] == "Idempotency-Key"]
    assert header["in"] == "header" and header["required"] is False
    assert header["description"]
    assert header["schema"]["minLength"] == 1
    assert header["schema"]["maxLength"] == 255


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


def test_each_job_of_a_batch_is_validated_once(client, engine, monkeypatch) -> None:
    calls: list[str] = []
    real = enqueue_module.validate

    def counting(kind, payload, **options):
        calls.append(kind)
        return real(kind, payload, **options)

    monkeypatch.setattr(enqueue_module, "validate", counting)
    monkeypatch.setattr(api_jobs, "validate", counting, raising=False)
    jobs = [NOOP, {"kind": "tests.effect"}, {**NOOP, "idempotency_key": "once"}]
    response = client.post("/v1/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 202, response.text
    assert calls == ["platform.noop", "tests.effect", "platform.noop"]
    assert job_count(engine) == 3


@pytest.mark.parametrize(
    ("jobs", "code", "field", "message"),
    [
        (
            [NOOP, NOOP, {"kind": "no.such_kind"}],
            "unknown_kind",
            "jobs.2.kind",
            "GET /v1/job-kinds",
        ),
        (
            [NOOP, NOOP, NOOP, {"kind": "platform.noop", "payload": {"sleep": -1, "x": 1}}],
            "invalid_payload",
            "jobs.3.payload.sleep",
            "jobs.3.payload.sleep",
        ),
        (
            [{**NOOP, "idempotency_key": "k"}, NOOP, {**NOOP, "idempotency_key": "k"}],
            "duplicate_idempotency_key",
            "jobs.2.idempotency_key",
            "jobs.0",
        ),
    ],
)
def test_a_batch_refusal_names_the_job_by_its_index(
    client, engine, jobs, code, field, message
) -> None:
    response = client.post("/v1/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == code
    assert error["field"] == field
    assert message in error["message"]
    if code == "invalid_payload":
        details = {item["field"] for item in error["details"]}
        assert details == {"jobs.3.payload.sleep", "jobs.3.payload.x"}
    assert job_count(engine) == 0


def test_a_batch_takes_keys_per_job_not_in_the_header(client, engine) -> None:
    response = client.post(
        "/v1/jobs/batch", json={"jobs": [NOOP]}, headers={"Idempotency-Key": "whole"}
    )
    assert response.status_code == 422
    assert error_of(response)["field"] == "Idempotency-Key"
    assert job_count(engine) == 0


def test_the_batch_endpoint_does_not_offer_the_header_it_refuses(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    def headers(path: str) -> set[str]:
        parameters = paths[path]["post"].get("parameters", [])
        return {parameter["name"] for parameter in parameters if parameter["in"] == "header"}

    assert "Idempotency-Key" in headers("/v1/jobs")
    assert "Idempotency-Key" not in headers("/v1/jobs/batch")
    batch_item = client.get("/openapi.json").json()["components"]["schemas"]["BatchJobCreate"]
    assert "idempotency_key" in batch_item["properties"]  # where a batch takes its keys


@pytest.mark.parametrize(
    "raw", [b"whole", b"", "ключ".encode(), b"\xff"], ids=["ascii", "empty", "utf8", "not-utf8"]
)
def test_a_batch_refuses_any_idempotency_key_header(client, engine, raw) -> None:
    response = client.post(
        "/v1/jobs/batch", json={"jobs": [NOOP]}, headers={"Idempotency-Key": raw}
    )
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["field"] == "Idempotency-Key"
    assert "idempotency_key" in error["message"]
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


def test_a_key_conflict_names_the_job_holding_the_key(client) -> None:
    held = client.post("/v1/jobs", json=NOOP, headers={"Idempotency-Key": "c-2"}).json()["id"]
    other = {"kind": "platform.noop", "payload": {"sleep": 2}}
    single = client.post("/v1/jobs", json=other, headers={"Idempotency-Key": "c-2"})
    batch = client.post(
        "/v1/jobs/batch", json={"jobs": [NOOP, NOOP, {**other, "idempotency_key": "c-2"}]}
    )
    for response, field in ((single, "Idempotency-Key"), (batch, "jobs.2.idempotency_key")):
        assert response.status_code == 409, response.text
        error = error_of(response)
        assert error["code"] == "idempotency_conflict"
        assert error["field"] == field
        assert held in error["message"]


# --- read and list -------------------------------------------------------------------------


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


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    parser = argparse.ArgumentParser(prog="medianest-workers")
    add_job_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.handler(args) == 0
    return json.loads(capsys.readouterr().out)


def test_the_cli_prints_jobs_as_the_api_answers_them(client, engine, capsys) -> None:
    job_id = client.post("/v1/jobs", json=NOOP, headers={"Idempotency-Key": "cli-api"}).json()["id"]
    other = client.post("/v1/jobs", json={"kind": "tests.effect", "user_id": "u-3"}).json()["id"]
    assert client.post(f"/v1/jobs/{other}/cancel").status_code == 200  # an error to show
    for shown_id in (job_id, other):
        assert _cli(capsys, "jobs", "show", shown_id) == client.get(f"/v1/jobs/{shown_id}").json()
    listed = _cli(capsys, "jobs", "list", "--json", "--limit", "1")
    assert listed == client.get("/v1/jobs", params={"limit": 1}).json()
    assert listed["next_cursor"] is not None
    assert listed["jobs"][0]["error"]["error_class"] == "JobCancelledError"


def test_the_job_schema_is_the_view_of_a_job(client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    job = schemas["JobOut"]
    shown = [name for name in queries.JobView.__dataclass_fields__ if name != "worker"]
    error_at = shown.index("error_class")
    shown[error_at : error_at + 2] = ["error"]  # error_class and error_message, nested
    assert list(job["properties"]) == shown
    assert set(job["required"]) == set(shown)
    assert job["description"]
    assert job["properties"]["state"]["description"].startswith("queued, running")
    assert job["properties"]["error"]["description"]
    assert job["properties"]["enqueued_at"]["format"] == "date-time"
    assert job["properties"]["attempts"]["type"] == "integer"
    assert set(schemas["JobAccepted"]["properties"]) == {*shown, "created", "published"}


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


# --- Redis down at enqueue -----------------------------------------------------------------


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
        for index in range(32):  # 2 MiB of data, then a limit below what is used: full
            full.set(f"filler:{index}", b"x" * 64 * 1024)
        used = int(full.info("memory")["used_memory"])
        full.config_set("maxmemory-policy", "noeviction")
        # Below the data itself, so no freed buffer can make room again (a limit just above
        # the use let a small publish through now and then).
        full.config_set("maxmemory", used - 1024 * 1024)
        with pytest.raises(redis.exceptions.OutOfMemoryError, match="maxmemory"):
            full.set("filler:one-more", b"x")
        broker = Celery("full-broker", set_as_current=False)
        celery_app_module.configure(broker, load_settings(redis_url=url))
        real_app = enqueue_module.celery_app
        monkeypatch.setattr(enqueue_module, "celery_app", broker)
        try:
            response = client.post("/v1/jobs", json=NOOP)
        finally:
            monkeypatch.setattr(enqueue_module, "celery_app", real_app)
            broker.close()
        assert not [key for key in full.keys("*") if key.startswith(b"mnw")]  # nothing got in
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
