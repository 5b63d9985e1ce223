"""Push (exactly one Overseerr request per pending row) and the Overseerr webhook endpoint."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, text

from medianest_workers.platform.enqueue import enqueue
from medianest_workers.platform.rescuer import rescue_round
from medianest_workers.requests import errors
from medianest_workers.requests.client import ClientOptions, OverseerrClient
from medianest_workers.requests.push import push_pending
from medianest_workers.settings import reset_settings_cache
from tests.helpers import wait_for
from tests.platform.conftest import Worker, job_row, wait_terminal
from tests.requests.fake_overseerr import KEY, FakeOverseerr


def local_pending(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, email, plex_id) VALUES ('u1', 'one@example.org', '1001');"
                " INSERT INTO media_requests (id, user_id, title, media_type, tmdb_id)"
                " VALUES ('r1', 'u1', 'Dune', 'movie', '438631')"
            )
        )


def overseerr_id(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return connection.scalar(text("SELECT overseerr_id FROM media_requests WHERE id = 'r1'"))


def test_push_creates_one_request_and_never_twice(
    engine: Engine, session_factory: object, fake: FakeOverseerr
) -> None:
    local_pending(engine)
    fake.add_user(7, "one@example.org", 1001)
    fake.titles[("movie", 438631)] = "Dune"
    with OverseerrClient(fake.url, SecretStr(KEY)) as client:
        first = push_pending(client, engine.connect)
        assert first.created == 1
        assert overseerr_id(engine) == "1"
        second = push_pending(client, engine.connect)
        assert second.candidates == 0
    assert [r["requestedBy"]["id"] for r in fake.requests.values()] == [7]


def test_lost_answer_is_found_again_not_resubmitted(
    engine: Engine, session_factory: object, fake: FakeOverseerr
) -> None:
    """Overseerr created the request but we never committed it (answer lost, worker gone)."""
    local_pending(engine)
    fake.add_user(7, "one@example.org", 1001)
    fake.titles[("movie", 438631)] = "Dune"
    fake.post_hold.clear()  # Overseerr creates the request, then its answer never arrives
    options = ClientOptions(read_timeout=1, retries=0)
    with OverseerrClient(fake.url, SecretStr(KEY), options) as client:
        with pytest.raises(errors.OverseerrUnavailableError):
            push_pending(client, engine.connect)
        assert fake.posted.is_set() and overseerr_id(engine) is None
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT state FROM mnw_request_pushes")) == "submitting"
        fake.post_hold.set()
        again = push_pending(client, engine.connect)
    assert again.created == 0 and again.linked_existing == 1
    assert len(fake.requests) == 1
    assert overseerr_id(engine) == str(next(iter(fake.requests)))


def test_worker_killed_between_overseerrs_answer_and_our_commit_makes_one_request(
    engine: Engine,
    session_factory: object,
    fake: FakeOverseerr,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    """A real worker is SIGKILLed while Overseerr holds its POST /request (the request is
    created, its answer not yet sent); the rescued job links that request, creates no other."""
    local_pending(engine)
    fake.add_user(7, "one@example.org", 1001)
    fake.titles[("movie", 438631)] = "Dune"
    fake.post_hold.clear()
    workers.append(Worker("media", 1, tmp_path / "first.log", {}))
    job = enqueue("requests.push", {})
    wait_for(fake.posted.is_set, timeout=60, what="the worker's POST /request")
    os.killpg(workers[0].process.pid, signal.SIGKILL)  # the worker and its child, mid-POST
    workers[0].process.wait(timeout=10)
    assert len(fake.requests) == 1 and overseerr_id(engine) is None
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT state FROM mnw_request_pushes")) == "submitting"
    assert job_row(engine, job.job_id)["state"] == "running"
    fake.post_hold.set()  # the held answer goes to a dead socket

    workers.append(Worker("media", 1, tmp_path / "second.log", {}))
    wait_for(
        lambda: (
            job.job_id in rescue_round().requeued_running
            or job_row(engine, job.job_id)["state"] != "running"
        ),
        timeout=30,
        what="the rescuer to requeue the lost job",
        interval=0.5,
    )
    row = wait_terminal(engine, job.job_id, timeout=60)
    assert row["state"] == "succeeded", workers[1].log()
    assert row["attempts"] == 2
    assert row["result"]["created"] == 0 and row["result"]["linked_existing"] == 1
    assert len(fake.requests) == 1
    assert [call for call in fake.calls if call == "POST /request"] == ["POST /request"]
    assert overseerr_id(engine) == str(next(iter(fake.requests)))
    with engine.connect() as connection:
        push = connection.execute(text("SELECT * FROM mnw_request_pushes")).mappings().one()
    assert push["state"] == "linked" and push["attempts"] == 2


def test_409_for_another_requesters_request_is_a_skip_and_creates_nothing(
    engine: Engine, session_factory: object, fake: FakeOverseerr
) -> None:
    """Overseerr answers 409 (one live request per media; its spec lists no body, it sends
    {"message"}): the media is requested by someone else, so nothing is linked or created."""
    local_pending(engine)
    fake.add_user(7, "one@example.org", 1001)
    fake.add_user(8, "other@example.org", 2002)
    fake.add_request(1, user=8, tmdb=438631, status=1, title="Dune")
    with OverseerrClient(fake.url, SecretStr(KEY)) as client:
        report = push_pending(client, engine.connect)
    assert report.skipped == {"conflict_other_requester": 1}
    assert report.created == report.linked_existing == 0
    assert list(fake.requests) == [1] and overseerr_id(engine) is None
    assert fake.calls.count("POST /request") == 1
    with engine.connect() as connection:
        push = connection.execute(text("SELECT * FROM mnw_request_pushes")).mappings().one()
    assert push["state"] == "skipped" and "409" in push["last_error"]


def test_409_for_this_requesters_request_links_it(
    engine: Engine, session_factory: object, fake: FakeOverseerr
) -> None:
    """The requester's request exists but the first lookup missed it (stale details): the
    POST's 409 makes the push look again and link it, never create a second one."""
    local_pending(engine)
    fake.add_user(7, "one@example.org", 1001)
    fake.add_request(4, user=7, tmdb=438631, status=2, media_status=3, title="Dune")
    fake.stale_details = 1
    with OverseerrClient(fake.url, SecretStr(KEY)) as client:
        report = push_pending(client, engine.connect)
    assert report.linked_existing == 1 and report.created == 0
    assert fake.calls.count("POST /request") == 1 and list(fake.requests) == [4]
    assert overseerr_id(engine) == "4"
    with engine.connect() as connection:
        status = connection.scalar(text("SELECT status FROM media_requests WHERE id = 'r1'"))
    assert status == "processing"


def test_requester_missing_in_overseerr_is_a_skip(
    engine: Engine, session_factory: object, fake: FakeOverseerr
) -> None:
    local_pending(engine)
    with OverseerrClient(fake.url, SecretStr(KEY)) as client:
        report = push_pending(client, engine.connect)
    assert report.skipped == {"requester_not_in_overseerr": 1}
    assert fake.requests == {}


def test_a_skipped_row_waits_its_retry_and_never_blocks_new_ones(
    engine: Engine, session_factory: object, fake: FakeOverseerr
) -> None:
    """A skip is not retried at every push (no POST storm for a 409), and skipped rows do not
    fill the push's `limit`: a newer pending row behind them is still submitted."""
    local_pending(engine)  # r1: its requester is not in Overseerr yet
    with OverseerrClient(fake.url, SecretStr(KEY)) as client:
        first = push_pending(client, engine.connect, limit=1)
        assert first.skipped == {"requester_not_in_overseerr": 1}
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (id, email, plex_id)"
                    " VALUES ('u2', 'two@example.org', '2002');"
                    " INSERT INTO media_requests (id, user_id, title, media_type, tmdb_id)"
                    " VALUES ('r2', 'u2', 'Arrival', 'movie', '329865')"
                )
            )
        fake.add_user(8, "two@example.org", 2002)
        fake.add_user(7, "one@example.org", 1001)  # r1's requester arrives meanwhile
        second = push_pending(client, engine.connect, limit=1)
        assert (second.candidates, second.created) == (1, 1)  # r2, not r1 again
        assert push_pending(client, engine.connect, limit=1).candidates == 0
        with engine.begin() as connection:  # the retry time of r1's skip passes
            connection.execute(
                text(
                    "UPDATE mnw_request_pushes SET updated_at = updated_at - interval '2 hours'"
                    " WHERE media_request_id = 'r1'"
                )
            )
        third = push_pending(client, engine.connect, limit=1)
    assert (third.candidates, third.created) == (1, 1)
    assert overseerr_id(engine) is not None
    assert fake.calls.count("POST /request") == 2


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from medianest_workers.api.app import create_app  # noqa: PLC0415

    monkeypatch.setenv("OVERSEERR_WEBHOOK_SECRET", "Bearer hook-secret")
    reset_settings_cache()
    with TestClient(create_app()) as client:
        yield client
    monkeypatch.undo()
    reset_settings_cache()


def test_webhook_refused_without_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from medianest_workers.api.app import create_app  # noqa: PLC0415

    monkeypatch.delenv("OVERSEERR_WEBHOOK_SECRET", raising=False)
    reset_settings_cache()
    try:
        with TestClient(create_app()) as client:
            answer = client.post("/v1/webhooks/overseerr", json={"request": {"request_id": "1"}})
        assert answer.status_code == 503
    finally:
        reset_settings_cache()


def test_webhook_storm_makes_one_job(
    api: TestClient, engine: Engine, session_factory: object
) -> None:
    body = {
        "notification_type": "MEDIA_APPROVED",
        "media": {"media_type": "movie", "tmdbId": "438631", "status": "PROCESSING"},
        "request": {"request_id": "42", "requestedBy_email": "one@example.org"},
    }
    assert api.post("/v1/webhooks/overseerr", json=body).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert api.post("/v1/webhooks/overseerr", json=body, headers=wrong).status_code == 401
    good = {"Authorization": "Bearer hook-secret"}
    answers = [api.post("/v1/webhooks/overseerr", json=body, headers=good) for _ in range(10)]
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["job_id"] for a in answers}) == 1
    backend = {"notification_type": "MEDIA_AVAILABLE", "request": {"id": 42}}
    assert api.post("/v1/webhooks/overseerr", json=backend, headers=good).json()["created"] is False
    with engine.connect() as connection:
        payloads = connection.scalars(
            text("SELECT payload FROM mnw_jobs WHERE kind = 'requests.sync_one'")
        ).all()
    assert payloads == [{"overseerr_request_id": 42}]
    bad = {"request": {"request_id": "abc"}}
    refused = api.post("/v1/webhooks/overseerr", json=bad, headers=good)
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "request.request_id"
    test = {"notification_type": "TEST_NOTIFICATION", "request": None}
    assert api.post("/v1/webhooks/overseerr", json=test, headers=good).json()["accepted"] is False


def test_webhook_only_enqueues_and_answers_at_once(
    api: TestClient,
    engine: Engine,
    session_factory: object,
    fake: FakeOverseerr,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Overseerr is configured (and would answer), yet the webhook fetches nothing from it:
    the fake receives no request while the webhook is handled; a queued sync_one is all."""
    monkeypatch.setenv("OVERSEERR_URL", fake.url)
    monkeypatch.setenv("OVERSEERR_API_KEY", KEY)
    reset_settings_cache()
    fake.add_user(7, "one@example.org", 1001)
    fake.add_request(42, user=7, tmdb=438631)
    body = {"notification_type": "MEDIA_APPROVED", "request": {"request_id": "42"}}
    good = {"Authorization": "Bearer hook-secret"}
    api.post("/v1/webhooks/overseerr", json=body, headers=good)  # warm: the first call's imports
    timings = []
    for rid in (43, 44, 45):
        started = time.monotonic()
        answer = api.post("/v1/webhooks/overseerr", json={"request": {"id": rid}}, headers=good)
        timings.append(time.monotonic() - started)
        assert answer.status_code == 202 and answer.json()["created"] is True
    assert fake.calls == []  # nothing fetched inline: the job re-fetches, later
    assert max(timings) < 1.0, timings  # milliseconds in fact; loose on a shared machine
    with engine.connect() as connection:
        jobs = connection.execute(
            text("SELECT state, payload FROM mnw_jobs WHERE kind = 'requests.sync_one'")
        ).all()
    assert sorted(p["overseerr_request_id"] for _s, p in jobs) == [42, 43, 44, 45]
    assert {state for state, _p in jobs} == {"queued"}
