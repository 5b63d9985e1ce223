"""Notifications: what each announcement says, delivery through Apprise to a loopback `json://`
receiver (once, retried only where it failed, never a secret), and the announcements that start
them: a transition of a round, and a job the ledger marks `dead`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text

from medianest_workers.health import notify
from medianest_workers.health.notify import NOTIFY_KIND, NotifyPayload, deliver, message_for
from medianest_workers.platform import events
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.platform.errors import PermanentError, RetryableError
from medianest_workers.platform.rescuer import rescue
from medianest_workers.settings import reset_settings_cache

SECRET_IN_URL = "receiver-token-0123456789"


def _payload(key: str = "test:notify:1") -> NotifyPayload:
    return NotifyPayload(
        dedup_key=key, title="[MediaNest] plex is DOWN", body="plex is down", notify_type="failure"
    )


def _record(engine: Engine, key: str) -> dict:
    with engine.connect() as connection:
        return dict(
            connection.execute(
                text("SELECT * FROM mnw_notifications WHERE dedup_key = :k"), {"k": key}
            )
            .mappings()
            .one()
        )


@pytest.fixture
def clean_notifications(engine: Engine) -> Iterator[None]:
    yield
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM mnw_notifications WHERE dedup_key LIKE 'test:%'"))


def _event(name: str, **fields: object) -> events.Event:
    return events.Event(
        name=name, subject="x", summary="s", dedup_key=f"test:{name}", fields=fields
    )


def test_what_each_announcement_says() -> None:
    down = message_for(
        _event(
            "service.transition",
            service="plex",
            from_status="up",
            to_status="down",
            consecutive_failures=3,
            error="Timeout: no answer within 10 s",
        )
    )
    assert down is not None
    assert (down.title, down.notify_type) == ("[MediaNest] plex is DOWN", "failure")
    assert down.body == (
        "plex is down after 3 failed checks in a row (was up). Last error: Timeout: no answer"
        " within 10 s"
    )
    back = message_for(
        _event("service.transition", service="plex", from_status="down", to_status="up")
    )
    assert back is not None
    assert (back.title, back.body, back.notify_type) == (
        "[MediaNest] plex is UP",
        "plex went from down to up.",
        "success",
    )
    download = message_for(
        _event(
            "download.finished",
            download_id=7,
            playlist_title="Lectures",
            status="completed",
            downloaded=19,
            failed=1,
        )
    )
    assert download is not None
    assert download.title == "[MediaNest] Download completed: Lectures"
    assert download.body == "Lectures: 19 downloaded, 1 failed (completed)."
    assert download.notify_type == "warning"  # one entry failed
    dead = message_for(_event("job.dead", job_id="j-1", kind="requests.sync", attempts=3))
    assert dead is not None
    assert dead.title == "[MediaNest] Job dead: requests.sync"
    assert dead.body == "Job j-1 (requests.sync) used up its 3 attempts and is dead."
    # A notification job's own death is not notified again (no loop).
    assert message_for(_event("job.dead", job_id="j-2", kind=NOTIFY_KIND, attempts=6)) is None


def test_a_message_arrives_once_and_a_repeat_sends_nothing(
    engine: Engine, session_factory, receive, clean_notifications
) -> None:
    receiver = receive()
    url = SecretStr(receiver.apprise_url + f"?token={SECRET_IN_URL}")
    payload = _payload("test:once")
    first = deliver(engine, payload, [url])
    assert first.as_json() == {"sent": 1, "already": 0, "failed": [], "invalid": []}
    [message] = receiver.messages
    assert message["title"] == "[MediaNest] plex is DOWN"
    assert message["message"] == "plex is down"
    assert message["type"] == "failure"
    again = deliver(engine, payload, [url])  # a repeated job (or a retry after a crash)
    assert again.as_json() == {"sent": 0, "already": 1, "failed": [], "invalid": []}
    assert len(receiver.messages) == 1
    record = _record(engine, "test:once")
    assert record["delivered"] == [notify.url_digest(url.get_secret_value())]
    assert record["sent_at"] is not None and record["last_error"] is None
    assert SECRET_IN_URL not in repr(record)


def test_a_failing_url_is_retried_alone(
    engine: Engine, session_factory, receive, clean_notifications
) -> None:
    good, failing = receive(), receive()
    failing.status = 500
    urls = [SecretStr(good.apprise_url), SecretStr(failing.apprise_url + f"?t={SECRET_IN_URL}")]
    payload = _payload("test:retry")
    with pytest.raises(RetryableError) as raised:
        deliver(engine, payload, urls)
    assert str(raised.value) == "1 of 2 notification URLs failed: NOTIFY_URLS entry 2 (json://)"
    assert SECRET_IN_URL not in str(raised.value)
    assert (len(good.messages), len(failing.messages)) == (1, 0)
    record = _record(engine, "test:retry")
    assert record["sent_at"] is None
    assert record["last_error"] == "NOTIFY_URLS entry 2 (json://)"
    failing.status = 200  # the receiver is back: the retry sends only where it failed
    report = deliver(engine, payload, urls)
    assert report.as_json() == {"sent": 1, "already": 1, "failed": [], "invalid": []}
    assert (len(good.messages), len(failing.messages)) == (1, 1)
    assert _record(engine, "test:retry")["attempts"] == 1  # the second claim of the same key


def test_an_unusable_url_is_a_permanent_error_that_names_its_position(
    engine: Engine, session_factory, clean_notifications
) -> None:
    with pytest.raises(PermanentError) as raised:
        deliver(engine, _payload("test:invalid"), [SecretStr(f"nosuchscheme://{SECRET_IN_URL}")])
    assert str(raised.value) == (
        "NOTIFY_URLS entry 1 (nosuchscheme://) is not a usable Apprise URL"
    )


@pytest.fixture
def notify_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("NOTIFY_URLS", "json://127.0.0.1:9/unused")
    reset_settings_cache()
    yield monkeypatch
    monkeypatch.undo()
    reset_settings_cache()


def _notify_jobs(engine: Engine, key: str) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT * FROM mnw_jobs WHERE kind = :kind AND idempotency_key = :key"),
            {"kind": NOTIFY_KIND, "key": key},
        ).mappings()
        return [dict(row) for row in rows]


def test_an_occurrence_announced_twice_is_one_job(engine: Engine, session_factory, notify_env):
    event = _event("service.transition", service="s", from_status="up", to_status="down")
    notify.on_event(event)
    notify.on_event(event)
    [job] = _notify_jobs(engine, event.dedup_key)
    assert job["queue"] == "health"
    assert job["payload"]["title"] == "[MediaNest] s is DOWN"
    assert job["enqueued_by"] == notify.ENQUEUED_BY


def test_without_notify_urls_nothing_is_enqueued(engine: Engine, session_factory) -> None:
    event = _event("job.dead", job_id="j", kind="platform.noop", attempts=3)
    notify.on_event(event)
    assert _notify_jobs(engine, event.dedup_key) == []


@pytest.fixture
def heard() -> Iterator[list[events.Event]]:
    """Every `job.dead` announced while the test runs."""
    caught: list[events.Event] = []
    events.subscribe("job.dead", caught.append)
    yield caught
    events.unsubscribe("job.dead", caught.append)


def _running(engine: Engine, job_id: str, *, attempts: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE mnw_jobs SET state = 'running', attempts = :attempts, worker = 'gone:1',"
                " heartbeat_at = timezone('UTC', now()) - interval '10 minutes' WHERE id = :id"
            ),
            {"id": job_id, "attempts": attempts},
        )


def test_the_rescuer_announces_a_job_it_marks_dead_once(
    engine: Engine, session_factory, heard: list[events.Event], notify_env
) -> None:
    job = enqueue("platform.noop", {})
    max_attempts = job.row["max_attempts"] if job.row else 3
    _running(engine, job.job_id, attempts=max_attempts)
    report = rescue(queued_after=300, stale_after=60, batch_size=100)
    assert job.job_id in report.dead
    [event] = [one for one in heard if one.fields["job_id"] == job.job_id]
    assert event.dedup_key == f"job.dead:{job.job_id}"
    assert event.fields == {"job_id": job.job_id, "kind": "platform.noop", "attempts": max_attempts}
    # The notification listener (subscribed by the health tasks module) enqueued its job.
    [notification] = _notify_jobs(engine, event.dedup_key)
    assert notification["payload"]["title"] == "[MediaNest] Job dead: platform.noop"
    # A second pass finds nothing more to mark, so nothing more is announced.
    rescue(queued_after=300, stale_after=60, batch_size=100)
    assert [one.fields["job_id"] for one in heard].count(job.job_id) == 1
