"""The OpenAPI document names every job kind and its payload; 405 and date-time parameters
say what the API accepts (findings of a schemathesis run against the document)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from medianest_workers.platform import queries
from medianest_workers.platform.registry import all_specs
from medianest_workers.settings import reset_settings_cache


def test_job_bodies_are_a_union_discriminated_by_kind(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    union = schemas["JobCreateByKind"]
    mapping = union["discriminator"]["mapping"]
    assert union["discriminator"]["propertyName"] == "kind"
    assert set(mapping) == {spec.kind for spec in all_specs()}
    for spec in all_specs():
        variant = schemas[mapping[spec.kind].rsplit("/", 1)[-1]]
        assert variant["properties"]["kind"]["const"] == spec.kind
        payload_ref = variant["properties"]["payload"]["$ref"].rsplit("/", 1)[-1]
        assert schemas[payload_ref]["title"] == spec.payload_model.__name__
    body = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/JobCreateByKind"}
    batch = schemas["BatchCreate"]["properties"]["jobs"]["items"]
    assert batch == {"$ref": "#/components/schemas/BatchJobCreateByKind"}


def test_a_405_allows_every_method_of_the_path(client: TestClient) -> None:
    response = client.put("/v1/jobs", json={})
    assert response.status_code == 405
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_a_date_time_parameter_refuses_a_number(client: TestClient) -> None:
    response = client.get("/v1/jobs?enqueued_before=0.5")
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "enqueued_before"
    ok = client.get("/v1/jobs?enqueued_before=2026-12-03T08:00:00Z")
    assert ok.status_code == 200


def test_an_unknown_query_parameter_is_refused_naming_it(client: TestClient) -> None:
    response = client.get("/v1/jobs?stat=failed")  # a typo must not list every job
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "stat"
    assert error["code"] == "invalid_request"
    assert "enqueued_after" in error["message"]  # says what the operation takes
    assert client.get("/healthz?verbose=1").status_code == 422


def test_a_payload_value_of_another_json_type_is_refused_not_coerced(client: TestClient) -> None:
    # Pydantic alone would take 1 for a boolean; the document says boolean, so 1 is refused.
    response = client.post("/v1/jobs", json={"kind": "requests.sync", "payload": {"full": 1}})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_payload"
    assert error["field"] == "payload.full"
    ok = client.post("/v1/jobs", json={"kind": "requests.sync", "payload": {"full": True}})
    assert ok.status_code == 202, ok.text


def test_the_job_list_cursor_is_documented_as_the_query_takes_it(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    [cursor] = [
        parameter
        for parameter in document["paths"]["/v1/jobs"]["get"]["parameters"]
        if parameter["name"] == "cursor"
    ]
    assert cursor["schema"]["pattern"] == queries.CURSOR_PATTERN
    first = client.post("/v1/jobs", json={"kind": "platform.noop"})
    assert first.status_code == 202
    client.post("/v1/jobs", json={"kind": "platform.noop"})
    page = client.get("/v1/jobs", params={"limit": 1}).json()
    assert re.fullmatch(queries.CURSOR_PATTERN, page["next_cursor"])


def test_the_webhook_body_is_documented_and_held_to_it(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVERSEERR_WEBHOOK_SECRET", "hook-secret-0123456789")
    reset_settings_cache()
    document = client.get("/openapi.json").json()
    body = document["paths"]["/v1/webhooks/overseerr"]["post"]["requestBody"]
    assert body["required"] is True
    headers = {"Authorization": "hook-secret-0123456789"}
    for bad in ("0012", " 12", "12a", True, 0, 2**31):
        response = client.post(
            "/v1/webhooks/overseerr", json={"request": {"request_id": bad}}, headers=headers
        )
        assert response.status_code == 422, bad
        assert response.json()["error"]["field"] == "request.request_id"
    for good, expected in (("12", 12), (12, 12), (12.0, 12)):
        response = client.post(
            "/v1/webhooks/overseerr", json={"request": {"request_id": good}}, headers=headers
        )
        assert response.status_code == 202, response.text
        job = client.get(f"/v1/jobs/{response.json()['job_id']}").json()
        assert job["payload"] == {"overseerr_request_id": expected}
    test_notification = {"notification_type": "TEST_NOTIFICATION", "request": {"request_id": ""}}
    response = client.post("/v1/webhooks/overseerr", json=test_notification, headers=headers)
    assert response.json() == {"accepted": False, "reason": "no request in this notification"}
    reset_settings_cache()
