"""Ledger reads and the cancel action (platform/queries.py) against real PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from medianest_workers.db.job_states import JobState
from medianest_workers.db.models.jobs import Job
from medianest_workers.platform import ledger, queries
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.platform.errors import InvalidCursorError, JobFinishedError, JobNotFoundError
from tests.platform.conftest import job_row

BASE = dt.datetime(2025, 3, 1, 12, 0, 0)


def insert_job(engine: Engine, **values: Any) -> str:
    row = {
        "id": str(uuid.uuid4()),
        "kind": "platform.noop",
        "queue": "maintenance",
        "payload": {},
        "state": "queued",
        "attempts": 0,
        "max_attempts": 3,
        "correlation_id": "corr-q",
        "enqueued_by": "test",
        "enqueued_at": BASE,
        **values,
    }
    with engine.begin() as connection:
        connection.execute(insert(Job).values(**row))
    return row["id"]


def test_get_job_returns_aware_utc_times_and_none_for_unknown(engine, session_factory) -> None:
    job_id = insert_job(engine, started_at=BASE + dt.timedelta(seconds=1))
    view = queries.get_job(job_id)
    assert view is not None
    assert view.enqueued_at == BASE.replace(tzinfo=dt.UTC)
    assert view.started_at == (BASE + dt.timedelta(seconds=1)).replace(tzinfo=dt.UTC)
    assert view.finished_at is None
    assert view.as_json()["enqueued_at"] == "2025-03-01T12:00:00+00:00"
    assert queries.get_job(str(uuid.uuid4())) is None
    assert queries.get_jobs([]) == {}


def test_list_filters_by_kind_state_and_time(engine, session_factory) -> None:
    old = insert_job(engine, enqueued_at=BASE - dt.timedelta(hours=2))
    done = insert_job(engine, state="succeeded", enqueued_at=BASE)
    other = insert_job(engine, kind="tests.effect", queue="media", enqueued_at=BASE)
    new = insert_job(engine, enqueued_at=BASE + dt.timedelta(hours=2))

    def ids(**filters: Any) -> set[str]:
        return {job.id for job in queries.list_jobs(**filters).jobs}

    assert ids() == {old, done, other, new}
    assert ids(kind="tests.effect") == {other}
    assert ids(states=[JobState.SUCCEEDED]) == {done}
    assert ids(states=["queued", "succeeded"], kind="platform.noop") == {old, done, new}
    assert ids(enqueued_after=BASE) == {done, other, new}  # inclusive
    assert ids(enqueued_before=BASE) == {old}  # exclusive
    # An aware bound is converted to UTC: 14:00+02:00 is 12:00 UTC.
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert ids(enqueued_before=dt.datetime(2025, 3, 1, 14, 0, tzinfo=plus_two)) == {old}
    assert ids(enqueued_after=BASE + dt.timedelta(hours=1), kind="tests.effect") == set()


def test_keyset_pagination_walks_every_job_once_newest_first(engine, session_factory) -> None:
    # Ties on enqueued_at are broken by id, so no job is skipped or repeated.
    created = [
        insert_job(engine, enqueued_at=BASE + dt.timedelta(seconds=index // 3))
        for index in range(11)
    ]
    seen: list[queries.JobView] = []
    cursor = None
    pages = 0
    while True:
        page = queries.list_jobs(limit=4, cursor=cursor)
        seen.extend(page.jobs)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert sorted(job.id for job in seen) == sorted(created)
    keys = [(job.enqueued_at, job.id) for job in seen]
    assert keys == sorted(keys, reverse=True)


def test_a_full_last_page_has_no_next_cursor(engine, session_factory) -> None:
    for _ in range(3):
        insert_job(engine)
    page = queries.list_jobs(limit=3)
    assert len(page.jobs) == 3
    assert page.next_cursor is None


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64 !!",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b'["yesterday", "x"]').decode(),
        base64.urlsafe_b64encode(b'["2025-01-01T00:00:00", 5]').decode(),
        base64.urlsafe_b64encode(b'["2025-01-01T00:00:00+02:00", "x"]').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b'["2025-01-01T00:00:00", "a\\u0000b"]').decode(),
        base64.urlsafe_b64encode(b'["2025-01-01T00:00:00", "\\ud800"]').decode(),
        "A" * 1000,
        "1733234000000000",  # no id
        ".3b9f",  # no time
        "-5.3b9f",
        "123456789012345678.3b9f",  # more than the 17 digits a position has
        "1733234000000000.a b",
        "1733234000000000.a\x00b",
        "1733234000000000." + "a" * 201,
    ],
)
def test_a_cursor_not_made_by_list_jobs_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        queries.list_jobs(cursor=cursor)


@pytest.mark.parametrize(
    "cursor", ["0.a", "99999999999999999.zzz", "1733234000000000.not-one-of-ours", "5.A_b:c-d"]
)
def test_every_cursor_of_the_documented_form_is_a_position(cursor: str) -> None:
    # What the OpenAPI document's pattern admits, the query takes (a fuzzer's valid value works).
    assert re.fullmatch(queries.CURSOR_PATTERN, cursor)
    queries.list_jobs(cursor=cursor, limit=1)


@pytest.mark.parametrize("limit", [0, -1, queries.MAX_PAGE_SIZE + 1])
def test_limit_out_of_range_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        queries.list_jobs(limit=limit)


def test_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError, match="bogus"):
        queries.list_jobs(states=["bogus"])


def test_cancel_a_queued_job_at_once_and_a_worker_claim_skips_it(engine, session_factory) -> None:
    job = enqueue("platform.noop", {}, idempotency_key="cancel-me")
    outcome = ledger.cancel(job.job_id)
    assert outcome.immediate
    assert outcome.job.state == "cancelled"
    assert outcome.job.cancel_requested
    row = job_row(engine, job.job_id)
    assert row["state"] == "cancelled"
    assert row["finished_at"] is not None
    assert row["error_class"] == "JobCancelledError"
    # A worker receiving the message now does nothing.
    claim = ledger.claim(job.job_id, worker="test:1", stale_seconds=60)
    assert isinstance(claim, ledger.Skip)
    assert job_row(engine, job.job_id)["attempts"] == 0
    # The cancelled job no longer holds its idempotency key.
    again = enqueue("platform.noop", {}, idempotency_key="cancel-me")
    assert again.created
    assert again.job_id != job.job_id


def test_cancel_a_running_job_only_asks_it_to_stop(engine, session_factory) -> None:
    job_id = insert_job(engine, state="running", attempts=1, worker="elsewhere:1")
    outcome = ledger.cancel(job_id)
    assert not outcome.immediate
    assert outcome.job.state == "running"
    assert outcome.job.cancel_requested
    assert job_row(engine, job_id)["finished_at"] is None
    # Asking twice is harmless.
    assert ledger.cancel(job_id).job.state == "running"
    # The worker's heartbeat relays the request.
    assert ledger.heartbeat([job_id], worker="elsewhere:1") == {job_id: True}


@pytest.mark.parametrize("state", ["succeeded", "failed", "dead", "cancelled"])
def test_cancel_a_finished_job_is_refused_with_its_state(engine, session_factory, state) -> None:
    job_id = insert_job(engine, state=state, finished_at=BASE)
    with pytest.raises(JobFinishedError, match=f"already {state}") as caught:
        ledger.cancel(job_id)
    assert caught.value.job.state == state
    assert job_row(engine, job_id)["cancel_requested"] is False


def test_cancel_an_unknown_job_is_refused(engine, session_factory) -> None:
    with pytest.raises(JobNotFoundError):
        ledger.cancel(str(uuid.uuid4()))


@pytest.mark.parametrize("job_id", ["a\x00b", "\ud800", "\x00"])
def test_text_postgresql_cannot_hold_matches_no_job(engine, session_factory, job_id) -> None:
    insert_job(engine)
    assert queries.get_job(job_id) is None
    assert queries.get_jobs([job_id, job_id]) == {}
    with pytest.raises(JobNotFoundError):
        ledger.cancel(job_id)
    assert queries.list_jobs(kind=job_id).jobs == []
