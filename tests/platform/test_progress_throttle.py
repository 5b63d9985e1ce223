"""JobContext.report_progress(min_interval=...): a hook called per chunk writes the row rarely."""

from __future__ import annotations

from sqlalchemy import Engine

from medianest_workers.platform import ledger
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.enqueue import enqueue
from tests.platform.conftest import job_row


def _running(engine: Engine) -> JobContext:
    job = enqueue("platform.noop", {})
    claimed = ledger.claim(job.job_id, worker="test-host:1", stale_seconds=60)
    assert isinstance(claimed, ledger.Claimed)
    return JobContext(
        job_id=job.job_id,
        kind="platform.noop",
        attempt=claimed.attempt,
        max_attempts=claimed.max_attempts,
        correlation_id=claimed.correlation_id,
        user_id=None,
        enqueued_by="test",
    )


def test_reports_within_the_interval_are_dropped(engine: Engine, session_factory) -> None:
    context = _running(engine)
    assert context.report_progress({"n": 1}, min_interval=60)
    assert not context.report_progress({"n": 2}, min_interval=60)
    assert job_row(engine, context.job_id)["progress"] == {"n": 1}
    # Without an interval every report is written, as before.
    assert context.report_progress({"n": 3})
    assert job_row(engine, context.job_id)["progress"] == {"n": 3}


def test_a_report_after_the_interval_is_written(engine: Engine, session_factory) -> None:
    context = _running(engine)
    assert context.report_progress({"n": 1}, min_interval=0.05)
    context.sleep(0.06)
    assert context.report_progress({"n": 2}, min_interval=0.05)
    assert job_row(engine, context.job_id)["progress"] == {"n": 2}
