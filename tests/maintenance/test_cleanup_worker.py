"""Cleanup in a real worker: its counts land in the ledger, and a worker SIGKILLed mid-run
loses nothing: the next run continues to zero rows left."""

from __future__ import annotations

import os
import signal

from sqlalchemy import Engine, text

from medianest_workers.platform.enqueue import enqueue
from tests.helpers import wait_for
from tests.maintenance.conftest import USER_ID
from tests.platform.conftest import job_row, wait_terminal

EXPIRED = 150_000
VALID = 100


def _fill(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO session_tokens (id, user_id, token_hash, expires_at)"
                f" SELECT 'old-' || n, '{USER_ID}', 'old-hash-' || n,"
                "   timezone('UTC', now()) - interval '1 day' + n * interval '1 ms'"
                " FROM generate_series(1, :expired) AS n"
                " UNION ALL"
                f" SELECT 'new-' || n, '{USER_ID}', 'new-hash-' || n,"
                "   timezone('UTC', now()) + interval '1 day'"
                " FROM generate_series(1, :valid) AS n"
            ),
            {"expired": EXPIRED, "valid": VALID},
        )


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT count(*) FILTER (WHERE id LIKE 'old-%'),"
                " count(*) FILTER (WHERE id LIKE 'new-%') FROM session_tokens"
            )
        ).one()
    return row[0], row[1]


def test_killed_mid_run_then_run_again_reaches_zero(engine: Engine, db_now, start_worker) -> None:
    _fill(engine)
    # Small batches so that the run lasts long enough to be killed in the middle.
    small = {"CLEANUP_BATCH_MIN_ROWS": "100", "CLEANUP_BATCH_MAX_ROWS": "100"}
    worker = start_worker(queues="maintenance", concurrency=1, **small)
    first = enqueue("maintenance.cleanup", {"targets": ["session_tokens"]})

    def partly_done() -> bool:
        expired, _ = _counts(engine)
        return EXPIRED // 3 < expired < EXPIRED

    wait_for(partly_done, timeout=120, what="the cleanup to be under way", interval=0.05)
    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=10)

    left, valid = _counts(engine)
    assert 0 < left < EXPIRED, "killed in the middle"
    assert valid == VALID
    assert job_row(engine, first.job_id)["state"] == "running"  # its worker died with it

    start_worker(queues="maintenance", concurrency=1)
    second = enqueue("maintenance.cleanup", {"targets": ["session_tokens"]})
    row = wait_terminal(engine, second.job_id, timeout=180)

    assert row["state"] == "succeeded", row
    assert _counts(engine) == (0, VALID)
    counts = row["result"]["targets"]["session_tokens"]
    assert counts["deleted"] <= left  # the killed run's last batches may have committed
    assert counts["complete"] is True
    assert row["result"]["deleted"] == counts["deleted"]
