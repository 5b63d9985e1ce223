"""Cleanup as plain functions: exactly the rows past their time go, in batches, and no valid row
ever does (boundaries, every target, concurrent writers, rows locked or revived meanwhile)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from sqlalchemy import Connection, Engine, text

import beat_schedule
from medianest_workers.maintenance import cleanup
from medianest_workers.maintenance.tasks import CleanupPayload
from medianest_workers.maintenance.tasks import cleanup as cleanup_job
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.platform.errors import JobCancelledError, PayloadInvalidError
from medianest_workers.settings import SettingsError, load_settings
from tests.maintenance import rows
from tests.maintenance.conftest import USER_ID

MS = dt.timedelta(milliseconds=1)
#: Two rows per batch: every test below runs several batches.
SMALL_BATCHES = {"cleanup_batch_min_rows": 2, "cleanup_batch_max_rows": 2}


def test_every_target_is_declared_once_with_a_schedule() -> None:
    assert cleanup.TARGET_NAMES == (
        "session_tokens",
        "sessions",
        "verification_tokens",
        "rate_limits",
        "error_logs",
        "jobs",
        "health_checks",
        "notifications",
    )
    scheduled = [entry for entry in beat_schedule.SCHEDULES if entry.kind == "maintenance.cleanup"]
    assert sorted(entry.payload["targets"][0] for entry in scheduled) == sorted(
        cleanup.TARGET_NAMES
    )
    for entry in scheduled:
        assert CleanupPayload.model_validate(entry.payload).targets == entry.payload["targets"]
        assert entry.expires < entry.period


def test_retention_comes_from_the_settings() -> None:
    settings = load_settings(
        error_log_retention_days=7, job_retention_days=2, rate_limit_max_window_seconds=900
    )
    by_name = cleanup.TARGETS_BY_NAME
    assert by_name["error_logs"].retention_seconds(settings) == 7 * 86_400
    assert by_name["jobs"].retention_seconds(settings) == 2 * 86_400
    assert by_name["rate_limits"].retention_seconds(settings) == 900
    assert by_name["session_tokens"].retention_seconds(settings) == 0
    assert by_name["error_logs"].variable == "ERROR_LOG_RETENTION_DAYS"
    defaults = load_settings()
    for target in cleanup.TARGETS:  # every retention names a real setting
        assert target.retention_seconds(defaults) >= 0
    assert defaults.error_log_retention_days == 30
    assert defaults.job_retention_days == 14
    assert defaults.rate_limit_max_window_seconds == 3600


def test_inconsistent_batch_bounds_are_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^CLEANUP_BATCH_MIN_ROWS: "):
        load_settings(cleanup_batch_min_rows=500, cleanup_batch_max_rows=100)


@pytest.mark.parametrize("target", cleanup.TARGET_NAMES)
def test_deletes_exactly_the_rows_past_their_time(
    engine: Engine, db_now: dt.datetime, target: str
) -> None:
    settings = load_settings(**SMALL_BATCHES)
    cutoff = db_now - dt.timedelta(
        seconds=cleanup.TARGETS_BY_NAME[target].retention_seconds(settings)
    )
    past = {f"past-{n}": cutoff - MS * (1 + n * 1000) for n in range(5)}
    past["past-long-ago"] = cutoff - dt.timedelta(days=400)
    kept = {
        "at-the-cutoff": cutoff,
        "just-after": cutoff + MS,
        "now": db_now,
        "in-an-hour": db_now + dt.timedelta(hours=1),
    }
    with engine.begin() as connection:
        for key, at in {**past, **kept}.items():
            rows.insert(connection, target, key, at)

    [report] = cleanup.run_cleanup([target], settings=settings, now=db_now)

    with engine.connect() as connection:
        assert rows.keys(connection, target) == set(kept)
    assert report.deleted == len(past)
    assert report.complete
    assert report.batches == len(past) // 2 + 1  # full batches of two, then a short one
    assert report.cutoff == cutoff


def test_jobs_retention_keeps_unfinished_jobs_whatever_their_age(
    engine: Engine, db_now: dt.datetime
) -> None:
    cutoff = db_now - dt.timedelta(days=14)
    old = cutoff - dt.timedelta(days=30)
    with engine.begin() as connection:
        for state in ("succeeded", "failed", "dead", "cancelled"):
            rows.insert(connection, "jobs", f"old-{state}", old, state)
            rows.insert(connection, "jobs", f"recent-{state}", cutoff, state)
        rows.insert(connection, "jobs", "queued", None, "queued")
        rows.insert(connection, "jobs", "running", None, "running")
        # Not a state the ledger leaves behind; still, only finished jobs are ever deleted.
        rows.insert(connection, "jobs", "running-with-finished-at", old, "running")

    [report] = cleanup.run_cleanup(["jobs"], now=db_now)

    with engine.connect() as connection:
        assert rows.keys(connection, "jobs") == {
            "recent-succeeded",
            "recent-failed",
            "recent-dead",
            "recent-cancelled",
            "queued",
            "running",
            "running-with-finished-at",
        }
    assert report.deleted == 4


def test_the_database_clock_decides_by_default(engine: Engine, db_now: dt.datetime) -> None:
    with engine.begin() as connection:
        statement = text(
            "INSERT INTO session_tokens (id, user_id, token_hash, expires_at) VALUES"
            f" ('gone', '{USER_ID}', 'h1', timezone('UTC', now()) - interval '1 minute'),"
            f" ('kept', '{USER_ID}', 'h2', timezone('UTC', now()) + interval '1 minute')"
        )
        connection.execute(statement)
    [report] = cleanup.run_cleanup(["session_tokens"])
    with engine.connect() as connection:
        assert rows.keys(connection, "session_tokens") == {"kept"}
    assert report.deleted == 1
    assert report.cutoff is not None and abs(report.cutoff - db_now) < dt.timedelta(minutes=1)


def test_a_row_held_by_another_transaction_is_skipped_and_survives_its_revival(
    engine: Engine, db_now: dt.datetime
) -> None:
    """The backend extends an expired session while cleanup runs: the batch waits for it no
    longer than its lock timeout, is done again passing over it, and does not delete it."""
    with engine.begin() as connection:
        for n in range(5):
            rows.insert(
                connection, "session_tokens", f"expired-{n}", db_now - dt.timedelta(hours=1)
            )
    with engine.connect() as holder:
        holder.execute(
            text("UPDATE session_tokens SET expires_at = :at WHERE id = 'expired-2'"),
            {"at": db_now + dt.timedelta(days=1)},
        )
        # A bound that would fail the batch if it waited for the row lock.
        settings = load_settings(cleanup_lock_timeout_ms=1, **SMALL_BATCHES)
        [report] = cleanup.run_cleanup(["session_tokens"], settings=settings, now=db_now)
        holder.commit()
    assert report.timeouts == 0
    assert report.lock_waits == 1  # one range batch met the row, and was redone without it
    assert report.deleted == 4
    assert report.complete
    with engine.connect() as connection:
        assert rows.keys(connection, "session_tokens") == {"expired-2"}


def test_a_locked_row_still_expired_goes_on_the_next_run(
    engine: Engine, db_now: dt.datetime
) -> None:
    with engine.begin() as connection:
        for n in range(3):
            rows.insert(connection, "sessions", f"expired-{n}", db_now - dt.timedelta(hours=1))
    with engine.connect() as holder:
        holder.execute(text("SELECT 1 FROM sessions WHERE id = 'expired-1' FOR UPDATE"))
        [held] = cleanup.run_cleanup(["sessions"], now=db_now)
        holder.rollback()
    assert (held.deleted, held.lock_waits, held.timeouts) == (2, 1, 0)
    with engine.connect() as connection:
        assert rows.keys(connection, "sessions") == {"expired-1"}
    [report] = cleanup.run_cleanup(["sessions"], now=db_now)
    assert report.deleted == 1


def test_races_writers_inserting_valid_rows_and_reviving_expired_ones(
    engine: Engine, db_now: dt.datetime
) -> None:
    """Fresh rows inserted and expired rows made valid while cleanup runs all survive; every
    row still expired is gone."""
    expired_count = 20_000
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO session_tokens (id, user_id, token_hash, expires_at)"
                f" SELECT 'old-' || n, '{USER_ID}', 'old-hash-' || n,"
                "   timezone('UTC', now()) - n * interval '1 second'"
                " FROM generate_series(1, :count) AS n"
            ),
            {"count": expired_count},
        )
    stop = threading.Event()
    inserted: list[str] = []
    revived: list[str] = []

    def insert_fresh() -> None:
        with engine.connect() as connection:
            while not stop.is_set():
                key = f"fresh-{uuid.uuid4()}"
                rows.insert(connection, "session_tokens", key, db_now + dt.timedelta(hours=1))
                connection.commit()
                inserted.append(key)

    def revive_expired() -> None:
        with engine.connect() as connection:
            for n in range(1, expired_count, 7):  # newest first: cleanup meets them last
                if stop.is_set():
                    return
                changed = connection.execute(
                    text(
                        "UPDATE session_tokens SET expires_at = :at WHERE id = :id"
                        " AND expires_at < :now"
                    ),
                    {"id": f"old-{n}", "at": db_now + dt.timedelta(days=1), "now": db_now},
                ).rowcount
                connection.commit()
                if changed:
                    revived.append(f"old-{n}")

    threads = [threading.Thread(target=insert_fresh), threading.Thread(target=revive_expired)]
    for thread in threads:
        thread.start()
    try:
        settings = load_settings(cleanup_batch_min_rows=100, cleanup_batch_max_rows=300)
        [report] = cleanup.run_cleanup(["session_tokens"], settings=settings)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert report.complete and report.batches > 10
    with engine.connect() as connection:
        left = rows.keys(connection, "session_tokens")
        still_expired = connection.execute(
            text("SELECT count(*) FROM session_tokens WHERE expires_at < :cutoff"),
            {"cutoff": report.cutoff},
        ).scalar_one()
    assert inserted and revived
    assert left == set(inserted) | set(revived)
    assert still_expired == 0
    assert report.deleted == expired_count - len(revived)


def test_batch_size_follows_the_measured_time() -> None:
    sizer = cleanup.BatchSizer(target_seconds=0.05, minimum=100, maximum=20_000, size=1000)
    sizer.adapt(1000, 0.025)  # twice as fast as the aim: twice as many rows
    assert sizer.size == 2000
    sizer.adapt(2000, 0.001)  # far faster: at most doubled each time
    assert sizer.size == 4000
    sizer.adapt(4000, 0.1)  # twice too slow: half
    assert sizer.size == 2000
    sizer.adapt(2000, 10.0)  # far too slow: at most halved
    assert sizer.size == 1000
    for _ in range(20):
        sizer.adapt(sizer.size, 0.0)
    assert sizer.size == 20_000
    for _ in range(20):
        sizer.shrink()
    assert sizer.size == 100


def test_a_batch_over_its_statement_timeout_shrinks_then_gives_up(
    engine: Engine, db_now: dt.datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.begin() as connection:
        rows.insert(connection, "sessions", "expired", db_now - dt.timedelta(hours=1))
    sizes: list[int] = []

    def slow(
        connection: Connection, cutoff: dt.datetime, after: dt.datetime | None, limit: int
    ) -> cleanup.Batch:
        sizes.append(limit)
        connection.execute(text("SELECT pg_sleep(1)"))
        return cleanup.Batch(0, None)

    target = cleanup.Target(
        name="slow", table="sessions", column="expires", description="x", delete=slow
    )
    settings = load_settings(cleanup_statement_timeout_ms=20)
    with pytest.raises(cleanup.CleanupStalledError, match="slow: 5 batches in a row"):
        cleanup.clean_target(target, settings=settings, now=db_now)
    assert sizes == [1000, 250, 100, 100, 100]
    with engine.connect() as connection:
        assert rows.keys(connection, "sessions") == {"expired"}


def test_unknown_targets_are_refused_at_enqueue_losing_nothing(
    engine: Engine, session_factory
) -> None:
    with pytest.raises(PayloadInvalidError) as caught:
        enqueue("maintenance.cleanup", {"targets": ["sessions", "session"]})
    assert caught.value.errors[0]["field"] == "targets.1"
    assert "unknown cleanup target 'session'" in str(caught.value)
    assert "session_tokens" in caught.value.errors[0]["message"]  # the known ones are listed
    for bad in ({"targets": []}, {"targets": "sessions"}, {"target": ["sessions"]}):
        with pytest.raises(PayloadInvalidError):
            enqueue("maintenance.cleanup", bad)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM mnw_jobs")).scalar_one() == 0
    job = enqueue("maintenance.cleanup", {})
    assert job.row is not None
    assert job.row["payload"] == {"targets": list(cleanup.TARGET_NAMES)}
    assert CleanupPayload(targets=["jobs", "jobs"]).targets == ["jobs"]


def _context() -> JobContext:
    return JobContext(
        job_id="not-in-the-ledger",
        kind="maintenance.cleanup",
        attempt=1,
        max_attempts=1,
        correlation_id="c",
        user_id=None,
        enqueued_by="test",
    )


def test_the_job_returns_counts_per_target(engine: Engine, db_now: dt.datetime) -> None:
    with engine.begin() as connection:
        rows.insert(connection, "sessions", "expired", db_now - dt.timedelta(hours=1))
        rows.insert(connection, "sessions", "valid", db_now + dt.timedelta(hours=1))
    result = cleanup_job(_context(), CleanupPayload(targets=["sessions", "session_tokens"]))
    assert result["deleted"] == 1
    assert result["complete"] is True
    assert result["targets"]["sessions"]["deleted"] == 1
    assert result["targets"]["session_tokens"]["deleted"] == 0


def test_a_cancel_stops_between_batches_keeping_what_was_done(
    engine: Engine, db_now: dt.datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEANUP_BATCH_MIN_ROWS", "2")
    monkeypatch.setenv("CLEANUP_BATCH_MAX_ROWS", "2")
    from medianest_workers.settings import reset_settings_cache  # noqa: PLC0415

    reset_settings_cache()
    with engine.begin() as connection:
        for n in range(6):
            rows.insert(connection, "sessions", f"expired-{n}", db_now - dt.timedelta(hours=1))
    ctx = _context()
    ctx._cancel.set()
    with pytest.raises(JobCancelledError):
        cleanup_job(ctx, CleanupPayload(targets=["sessions"]))
    with engine.connect() as connection:
        assert len(rows.keys(connection, "sessions")) == 4  # the first batch is committed


def test_a_row_behind_the_pass_goes_on_the_next_run(engine: Engine, db_now: dt.datetime) -> None:
    """Each batch starts after the last one; what turns up behind them waits for the next run."""
    with engine.begin() as connection:
        for n in range(6):
            rows.insert(connection, "sessions", f"expired-{n}", db_now - dt.timedelta(hours=n + 1))

    def insert_behind(report: cleanup.TargetReport) -> None:
        if report.batches == 1:
            with engine.begin() as connection:
                rows.insert(connection, "sessions", "behind", db_now - dt.timedelta(days=9))

    settings = load_settings(**SMALL_BATCHES)
    [first] = cleanup.run_cleanup(
        ["sessions"], settings=settings, now=db_now, on_batch=insert_behind
    )
    assert (first.deleted, first.complete) == (6, True)
    with engine.connect() as connection:
        assert rows.keys(connection, "sessions") == {"behind"}
    [second] = cleanup.run_cleanup(["sessions"], settings=settings, now=db_now)
    assert second.deleted == 1
    with engine.connect() as connection:
        assert rows.keys(connection, "sessions") == set()


def test_rows_sharing_one_value_beyond_a_batch_all_go(engine: Engine, db_now: dt.datetime) -> None:
    """No range splits rows of one value: such a batch goes oldest first by LIMIT instead."""
    tied = db_now - dt.timedelta(hours=2)
    with engine.begin() as connection:
        rows.insert(connection, "session_tokens", "older", db_now - dt.timedelta(hours=3))
        for n in range(7):
            rows.insert(connection, "session_tokens", f"tied-{n}", tied)
        rows.insert(connection, "session_tokens", "newer", db_now - dt.timedelta(hours=1))
        rows.insert(connection, "session_tokens", "valid", db_now + dt.timedelta(hours=1))
    settings = load_settings(**SMALL_BATCHES)
    [report] = cleanup.run_cleanup(["session_tokens"], settings=settings, now=db_now)
    with engine.connect() as connection:
        assert rows.keys(connection, "session_tokens") == {"valid"}
    assert (report.deleted, report.complete, report.timeouts) == (9, True, 0)
