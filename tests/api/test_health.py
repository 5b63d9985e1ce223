"""/healthz and /metrics (api/health.py)."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from medianest_workers.api import health
from medianest_workers.api.app import create_app
from medianest_workers.settings import reset_settings_cache
from tests.api.conftest import (
    DEAD_DATABASE,
    DEAD_REDIS,
    NOOP,
    queue_length,
)
from tests.platform.conftest import wait_terminal


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
