"""One heartbeat thread per worker process: keeps running jobs' rows fresh, relays cancels.

The rescuer treats a `running` row whose heartbeat is older than HEARTBEAT_STALE_SECONDS as
abandoned (its worker was killed), so a live job must beat more often than that.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from medianest_workers.platform import ledger
from medianest_workers.platform.context import JobContext
from medianest_workers.settings import get_settings

log = logging.getLogger(__name__)


class Heartbeats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, JobContext] = {}
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def track(self, context: JobContext) -> None:
        with self._lock:
            self._jobs[context.job_id] = context
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="mnw-heartbeat", daemon=True)
                self._thread.start()

    def untrack(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def _run(self) -> None:
        interval = get_settings().heartbeat_interval_seconds
        worker = ledger.worker_identity()
        while True:
            time.sleep(interval)
            with self._lock:
                jobs = dict(self._jobs)
            if not jobs:
                continue
            try:
                cancels = ledger.heartbeat(list(jobs), worker=worker)
            except Exception:  # the next beat tries again; a job must not die of this
                log.warning("heartbeat failed", exc_info=True)
                continue
            for job_id, cancel_requested in cancels.items():
                if cancel_requested and job_id in jobs:
                    jobs[job_id]._cancel.set()


heartbeats = Heartbeats()
