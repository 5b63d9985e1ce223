"""The OpenAPI document names every job kind and its payload; 405 and date-time parameters
say what the API accepts (findings of a schemathesis run against the document)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from medianest_workers.platform.registry import all_specs


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
