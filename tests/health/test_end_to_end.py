"""The family end to end: `health.check_all` rounds on a real worker against a loopback service
that fails and recovers, one notification per transition arriving at a loopback receiver through
a `health.notify` job; then what operators read of it: `/v1/services`, the history, `/metrics`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from medianest_workers.api.app import create_app
from medianest_workers.db.models import ServiceConfig
from medianest_workers.health import recording
from medianest_workers.health.notify import NOTIFY_KIND
from medianest_workers.health.probe import DOWN, UP, CheckResult
from medianest_workers.health.targets import CheckOptions, CheckTarget, Kind
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.settings import reset_settings_cache
from tests.helpers import wait_for
from tests.platform.conftest import wait_terminal

API_KEY = "health-test-key-0123456789"


@pytest.fixture
def service_rows(engine: Engine, session_factory) -> Iterator[Callable[..., None]]:
    """`add(name, url)`: a service_config row, deleted after the test."""
    names: list[str] = []

    def add(name: str, url: str, **config: object) -> None:
        with session_factory() as session, session.begin():
            session.add(
                ServiceConfig(
                    service_name=name, service_url=url, enabled=True, config_data=config or None
                )
            )
        names.append(name)

    yield add
    with engine.begin() as connection:
        connection.execute(
            text("DELETE FROM service_config WHERE service_name = ANY(:names)"), {"names": names}
        )


def _round(engine: Engine) -> dict:
    job = enqueue("health.check_all", {})
    row = wait_terminal(engine, job.job_id, timeout=60)
    assert row["state"] == "succeeded", row
    return row["result"]


def _notify_jobs(engine: Engine) -> list[dict]:
    with engine.connect() as connection:
        return [
            dict(row)
            for row in connection.execute(
                text("SELECT * FROM mnw_jobs WHERE kind = :kind ORDER BY enqueued_at"),
                {"kind": NOTIFY_KIND},
            ).mappings()
        ]


def test_rounds_on_a_worker_notify_each_transition_once(
    engine: Engine,
    redis_client,
    serve,
    receive,
    service_names,
    service_rows,
    start_worker,
    health_env,
) -> None:
    peer, receiver = serve(), receive()
    name = service_names("web")
    service_rows(name, f"{peer.url}/ok")
    start_worker(
        queues="health",
        NOTIFY_URLS=receiver.apprise_url,
        HEALTH_DOWN_AFTER="2",
        HEALTH_TIMEOUT_SECONDS="1.5",
        HEALTH_PLATFORM_CHECKS="false",
        ENCRYPTION_KEY="k" * 40,
    )
    before = len(_notify_jobs(engine))

    def status() -> tuple[str, str]:
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT status FROM service_status WHERE service_name = :n"), {"n": name}
            ).one()
        return row.status, json.loads(redis_client.get(f"service:health:{name}"))["healthy"]

    result = _round(engine)
    assert result["by_status"].get("up", 0) >= 1
    assert status() == ("up", True)
    peer.status_of["/ok"] = 500
    _round(engine)
    assert status() == ("up", True)  # one failure is no outage
    _round(engine)
    assert status() == ("down", False)  # the second in a row (HEALTH_DOWN_AFTER=2)
    [down] = wait_for(lambda: receiver.messages, timeout=30, what="the down notification")
    assert down["title"] == f"[MediaNest] {name} is DOWN"
    assert down["message"].startswith(f"{name} is down after 2 failed checks in a row (was up).")
    assert down["type"] == "failure"
    _round(engine)  # still down: no transition, no message
    del peer.status_of["/ok"]
    _round(engine)
    assert status() == ("up", True)
    wait_for(lambda: len(receiver.messages) == 2, timeout=30, what="the up notification")
    assert receiver.messages[1]["title"] == f"[MediaNest] {name} is UP"
    jobs = _notify_jobs(engine)[before:]
    assert len(jobs) == 2
    for job in jobs:
        wait_terminal(engine, str(job["id"]), timeout=30)
    assert len(receiver.messages) == 2  # and nothing more arrives


@pytest.fixture
def api(health_env: pytest.MonkeyPatch, session_factory) -> Iterator[TestClient]:
    health_env.setenv("API_KEYS", API_KEY)
    reset_settings_cache()
    with TestClient(create_app(), headers={"X-API-Key": API_KEY}) as client:
        yield client


def _history(engine: Engine, name: str) -> None:
    """Five checks a minute apart: up, down, down, down, up (down after 3)."""
    target = CheckTarget(
        name=name, kind=Kind.HTTP, url="https://127.0.0.1:9/", options=CheckOptions()
    )
    start = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=10)
    fail = CheckResult(DOWN, 1500, error_class="Timeout", error_message="no answer within 1.5 s")
    sequence = [
        CheckResult(UP, 20, http_status=200, cert_days_left=12.5),
        fail,
        fail,
        fail,
        CheckResult(UP, 30, http_status=200, cert_days_left=12.5),
    ]
    for minute, result in enumerate(sequence):
        recording.record_round(
            engine, [(target, result)], now=start + dt.timedelta(minutes=minute), down_after=3
        )


def test_services_api_history_and_metrics(engine: Engine, api: TestClient, service_names) -> None:
    name = service_names("nas")
    _history(engine, name)
    listing = api.get("/v1/services")
    assert listing.status_code == 200
    [service] = [one for one in listing.json()["services"] if one["name"] == name]
    assert service["status"] == "up"
    assert service["kind"] == "http"
    assert service["last_check"]["response_time_ms"] == 30
    assert service["last_check"]["cert_days_left"] == 12.5
    assert service["uptime"] == {"24h": 80.0, "7d": 80.0, "30d": 80.0}  # 4 of 5 not down
    assert service["last_transition"]["from_status"] == "down"
    assert service["last_transition"]["to_status"] == "up"

    history = api.get(f"/v1/services/{name}/history", params={"limit": 2})
    assert history.status_code == 200
    body = history.json()
    assert [check["result"] for check in body["checks"]] == ["up", "down"]
    assert body["checks"][1]["error_class"] == "Timeout"
    assert body["checks"][1]["status"] == "down"
    # The latest transitions, as many as `limit`: the first state (None -> up) is older.
    assert [(t["from_status"], t["to_status"]) for t in body["transitions"]] == [
        ("down", "up"),
        ("up", "down"),
    ]
    older = api.get(
        f"/v1/services/{name}/history", params={"limit": 2, "before": body["next_before"]}
    ).json()
    # Minutes 2 and 1: failed checks while the service still counted as up.
    assert [check["result"] for check in older["checks"]] == ["down", "down"]
    assert [check["status"] for check in older["checks"]] == ["up", "up"]
    assert [check["consecutive_failures"] for check in older["checks"]] == [2, 1]

    missing = api.get("/v1/services/no-such-service/history")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert api.get("/v1/services", headers={"X-API-Key": "wrong"}).status_code == 401

    api.headers.pop("X-API-Key")
    metrics = api.get("/metrics").text
    label = f'service="{name}"'
    assert f"mnw_service_up{{{label}}} 1.0" in metrics
    assert f"mnw_service_degraded{{{label}}} 0.0" in metrics
    assert f"mnw_service_response_time_seconds{{{label}}} 0.03" in metrics
    assert f"mnw_service_consecutive_failures{{{label}}} 0.0" in metrics
    assert f"mnw_service_certificate_days_left{{{label}}} 12.5" in metrics
    assert f'mnw_service_uptime_ratio{{{label},window="24h"}} 0.8' in metrics
