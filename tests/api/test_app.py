"""The application as a whole (api/app.py): its OpenAPI document and docs."""

from __future__ import annotations

from fastapi.testclient import TestClient

from medianest_workers.api.app import create_app


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
