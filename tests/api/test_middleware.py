"""Correlation ids and the body limit (api/middleware.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import (
    API_KEY,
    BODY_LIMIT,
    NOOP,
    error_of,
    job_count,
    post_raw,
)
from tests.platform.conftest import job_row

# --- correlation ids -----------------------------------------------------------------------


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


# --- body limit ----------------------------------------------------------------------------


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
