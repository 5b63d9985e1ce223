"""What a running job function sees: its ids, attempt, and ways to report progress."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from medianest_workers.platform import ledger
from medianest_workers.platform.errors import JobCancelledError


@dataclass
class JobContext:
    job_id: str
    kind: str
    attempt: int
    max_attempts: int
    correlation_id: str
    user_id: str | None
    enqueued_by: str
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _progress_at: float | None = field(default=None, repr=False)

    def report_progress(self, progress: dict[str, Any], *, min_interval: float = 0.0) -> bool:
        """Record progress (small JSON) on the job's ledger row; the API shows it.

        With `min_interval` (seconds), a report sooner than that after the last recorded
        one is dropped (a hook called per chunk writes the row at most that often). Returns
        whether this report was recorded.
        """
        now = time.monotonic()
        last = self._progress_at
        if min_interval > 0 and last is not None and now - last < min_interval:
            return False
        self._progress_at = now
        ledger.set_progress(self.job_id, progress)
        return True

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or raise JobCancelledError as soon as the job is cancelled."""
        if self._cancel.wait(seconds):
            self.check_cancelled()

    def check_cancelled(self) -> None:
        """Raise JobCancelledError if someone asked to cancel this job; call it between steps."""
        if self._cancel.is_set():
            raise JobCancelledError(f"job {self.job_id} was cancelled")
