"""The `requests.sync` job through a real worker and the ledger: its attempts end recorded
within their bounds against an Overseerr that pages forever, drips or hangs, and it records
progress while a multi-page sync runs."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text

from medianest_workers.platform.enqueue import enqueue
from tests.helpers import wait_for
from tests.platform.conftest import Worker, wait_terminal
from tests.requests.fake_overseerr import FakeOverseerr
from tests.requests.test_sync import add_users, rows

#: Short client bounds for the worker (settings the client reads).
FAST_CLIENT = {
    "HTTP_TIMEOUT_SECONDS": "1",
    "OVERSEERR_READ_DEADLINE_SECONDS": "1",
    "OVERSEERR_SYNC_MAX_PAGES": "3",
    "OVERSEERR_SYNC_PAGE_SIZE": "5",
}
#: The `requests.sync` soft time limit (tasks.py); every attempt here must end far sooner.
SOFT_TIME_LIMIT = 240


def job_state(engine: Engine, job_id: str) -> dict:
    """The job's row, with how long its attempt has been running or ran (`ran_for`, s)."""
    with engine.connect() as connection:
        row = (
            connection.execute(
                text(
                    "SELECT state, attempts, error_class, error_message, progress, result,"
                    " extract(epoch FROM (timezone('UTC', clock_timestamp()) - started_at))"
                    " AS ran_for FROM mnw_jobs WHERE id = :id"
                ),
                {"id": job_id},
            )
            .mappings()
            .one()
        )
    return dict(row)


def attempt_recorded(engine: Engine, job_id: str) -> dict | None:
    """The row once its first attempt ended: finished, or back to queued for a retry."""
    row = job_state(engine, job_id)
    if row["state"] in ("failed", "succeeded", "dead"):
        return row
    if row["state"] == "queued" and row["attempts"] >= 1 and row["error_class"]:
        return row
    return None


def test_sync_job_attempts_end_recorded_within_their_bounds(
    engine: Engine,
    session_factory: object,
    fake: FakeOverseerr,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    """Pages forever (new requests on every page): `failed`, PaginationError, no retry. A body
    that drips forever: retried, ResponseTimeoutError. Headers that never come: retried,
    OverseerrUnavailableError (timed out). Each attempt ends within seconds, recorded."""
    add_users(engine, fake)
    fake.add_request(1, user=1, tmdb=10)
    workers.append(Worker("media", 1, tmp_path / "worker.log", FAST_CLIENT))
    cases = [
        ("endless_distinct", "failed", "PaginationError", "walked 3 pages (limit 3)"),
        ("drip", "queued", "ResponseTimeoutError", "body not complete after 1 s"),
        ("hang", "queued", "OverseerrUnavailableError", "timed out"),
    ]
    for fault, state, error_class, message in cases:
        fake.fault = fault
        job = enqueue("requests.sync", {"full": True})
        row = wait_for(
            lambda job_id=job.job_id: attempt_recorded(engine, job_id),
            timeout=60,
            what=f"the {fault} job's attempt to be recorded",
        )
        assert (row["state"], row["attempts"]) == (state, 1), (fault, row, workers[0].log())
        assert row["error_class"] == error_class, row
        assert message in row["error_message"], row
        # Recorded at once: the attempt ran a few seconds at most, not up to its time limit.
        assert row["ran_for"] < 10 < SOFT_TIME_LIMIT, (fault, row["ran_for"])
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM mnw_request_sync_state")) == 0


def test_sync_job_records_progress_while_it_runs(
    engine: Engine,
    session_factory: object,
    fake: FakeOverseerr,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    """40 requests, pages of 10: while the worker waits for page 3 (held by the fake), the
    ledger row is running and its progress shows the pages written so far; then the job
    succeeds with all four pages in its result."""
    add_users(engine, fake)
    for rid in range(1, 41):
        fake.add_request(rid, user=1, tmdb=rid)
    fake.hold_skip = 20
    fake.page_hold.clear()
    settings = {**FAST_CLIENT, "OVERSEERR_SYNC_PAGE_SIZE": "10", "OVERSEERR_SYNC_MAX_PAGES": "50"}
    workers.append(Worker("media", 1, tmp_path / "worker.log", settings))
    job = enqueue("requests.sync", {"full": False})
    wait_for(fake.page_held.is_set, timeout=60, what="the worker to ask for page 3")

    def with_progress() -> dict | None:
        row = job_state(engine, job.job_id)
        return row if row["progress"] else None

    row = wait_for(with_progress, timeout=10, what="progress on the ledger row")
    assert row["state"] == "running"
    progress = row["progress"]
    assert progress["pages"] in (1, 2) and progress["complete"] is False
    assert progress["fetched"] == 10 * progress["pages"]
    assert progress["created"] == progress["fetched"]
    assert len(rows(engine)) >= progress["created"]  # what it reports is committed
    fake.page_hold.set()
    done = wait_terminal(engine, job.job_id, timeout=30)
    assert done["state"] == "succeeded", workers[0].log()
    assert done["result"]["pages"] == 4 and done["result"]["created"] == 40
    assert done["result"]["complete"] is True
