"""API keys (api/auth.py): every /v1 endpoint needs one, compared in constant time."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from medianest_workers.api import auth
from medianest_workers.api.app import create_app
from medianest_workers.settings import reset_settings_cache
from tests.api.conftest import (
    API_KEY,
    NOOP,
    OTHER_KEY,
    error_of,
    job_count,
)


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


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "text/plain", "application/x-www-form-urlencoded"]
)
@pytest.mark.parametrize("content", [b"{not json", b"[1]", b'{"kind": "platform.noop"}'])
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/batch", "/v1/schedules/tests.tick/run"])
def test_the_key_is_checked_before_the_body_is_read(
    client, engine, path, content, content_type
) -> None:
    client.headers.pop("X-API-Key")
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post(path, content=content, headers=headers)
    assert response.status_code == 401, response.text
    error = error_of(response)
    assert error["code"] == "unauthorized"
    assert error["field"] == "X-API-Key"
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
