"""A job's success recorded off its path: in worker children, a thread writes the end.

The ledger write that ends a successful job (`ledger.finish`, one round trip) used to sit
between a child's job and its next: the child waited for the UPDATE before Celery acked the
message and handed it another. Here the child hands the write to a thread of its own and goes
on; the thread writes ends in the order they came.

What this costs, and why it is safe (RELIABILITY.md: at-least-once, one effect per key):
- for a few milliseconds the ledger still says `running` for a job that is done;
- if the child dies before the thread wrote the end (SIGKILL, a crash), the job stays
  `running` without heartbeats: the rescuer gives it back once its heartbeat is stale and it
  runs again, the idempotent re-run every job already survives after a lost child;
- a child that exits normally (max tasks per child, warm shutdown) first waits for the
  thread (`drain`, called from `worker_process_shutdown`).

Only ends that need nothing else go this way: a failure (its error_logs row), a cancellation
and a retry are still written before the child moves on. Outside worker children (tests,
`medianest-workers run`, eager calls) `record_success` writes at once.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from medianest_workers.db.job_states import JobState
from medianest_workers.platform import ledger

log = logging.getLogger(__name__)

#: How often a write that failed (the database away) is tried, and the waits between tries;
#: after the last the job is left to the rescuer.
RETRY_DELAYS_SECONDS = (0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class _End:
    job_id: str
    worker: str
    result: dict[str, Any] | None


class Finisher:
    """One thread per process writing successful ends in order."""

    def __init__(self) -> None:
        self._ends: queue.Queue[_End] = queue.Queue()
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="mnw-finisher", daemon=True)
        self._thread.start()

    def submit(self, end: _End) -> None:
        self._ends.put(end)

    def drain(self, timeout: float) -> bool:
        """Wait (bounded) until every end handed over is written; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._ends.unfinished_tasks:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.005)
        return True

    def _run(self) -> None:
        while True:
            end = self._ends.get()
            try:
                write_end(end)
            finally:
                self._ends.task_done()


def write_end(end: _End) -> None:
    """Write one success, trying again while the database is away; never raises."""
    for delay in (*RETRY_DELAYS_SECONDS, None):
        try:
            recorded = ledger.finish(
                end.job_id, worker=end.worker, state=JobState.SUCCEEDED, result=end.result
            )
        except Exception as exc:  # noqa: BLE001 - the end is retried, then left to the rescuer
            if delay is None:
                log.warning(
                    "job %s succeeded but its end could not be recorded (%s): the rescuer "
                    "will run it again",
                    end.job_id,
                    type(exc).__name__,
                )
                return
            time.sleep(delay)
            continue
        if not recorded:
            log.warning(
                "job %s finished but was taken over meanwhile; result not recorded", end.job_id
            )
        return


_lock = threading.Lock()
_finisher: Finisher | None = None
_enabled_pid: int | None = None


def enable() -> None:
    """Write successes off the job's path in this process (a worker child calls it)."""
    global _enabled_pid  # noqa: PLW0603
    _enabled_pid = os.getpid()


def record_success(job_id: str, *, worker: str, result: dict[str, Any] | None) -> None:
    """Record a job's success: handed to this process's thread in a worker child, else now."""
    global _finisher  # noqa: PLW0603
    end = _End(job_id, worker, result)
    if _enabled_pid != os.getpid():
        write_end(end)
        return
    with _lock:
        if _finisher is None or _finisher._pid != os.getpid():
            _finisher = Finisher()
    _finisher.submit(end)


def drain(timeout: float = 10.0) -> None:
    """Wait for this process's pending ends (a child about to exit calls it)."""
    finisher = _finisher
    if finisher is not None and finisher._pid == os.getpid() and not finisher.drain(timeout):
        log.warning("exiting with job ends not yet recorded: the rescuer will run them again")


def _after_fork_in_child() -> None:
    global _lock, _finisher, _enabled_pid  # noqa: PLW0603
    _lock = threading.Lock()
    _finisher = None
    _enabled_pid = None


os.register_at_fork(after_in_child=_after_fork_in_child)
