"""Group commit for single enqueues: concurrent `enqueue_one()` calls share a transaction.

The HTTP API enqueues one job per request, many requests at once (its event loop hands them
over with `submit_one`; Python threads call `enqueue_one`). Each of those calls
alone costs a checkout, an INSERT, a COMMIT and a publish; here one thread (the committer)
takes every call waiting at that moment and stores them as one multi-row INSERT, one COMMIT
and one pipelined publish. Nothing waits for a group to fill: a call arriving while nobody
commits is stored at once, alone; calls arriving during a commit form the next group. So an
idle API answers as fast as before, and a busy one pays per group instead of per job.

Each call keeps the guarantees of `enqueue()`: it returns only after its own row committed
(the row is the promise), its refusals are its own (validation happens in the caller; a key
conflict refuses that call alone, its row was not inserted), and a row the database refuses
for one call (a constraint, a value) cannot fail its neighbours: when the group's
transaction fails for such a reason, each call is stored again alone, with the same row id,
so a group that did commit after all cannot be inserted twice. Two calls with the same
idempotency key never share a group (the second waits for the next one, where it finds the
first's job).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError

from medianest_workers.db.session import get_engine
from medianest_workers.platform import ledger
from medianest_workers.platform.enqueue import (
    Enqueued,
    JobRequest,
    check_same_request,
    existing_jobs,
    prepare_rows,
    publish_inserted,
    store_and_publish,
)
from medianest_workers.platform.errors import IdempotencyConflictError, IdempotencyContentionError
from medianest_workers.platform.registry import JobSpec

log = logging.getLogger(__name__)

#: Calls stored by one transaction at most (the batch endpoint's limit).
MAX_GROUP = 100

#: Failures of the group's statement that one row can cause: each call is then stored alone.
_ROW_ERRORS = (IntegrityError, DataError, ProgrammingError, IdempotencyContentionError)


@dataclass(frozen=True)
class _Call:
    row: dict[str, Any]
    spec: JobSpec
    future: Future[Enqueued]


def enqueue_one(
    request: JobRequest, *, enqueued_by: str = "service", correlation_id: str | None = None
) -> Enqueued:
    """`enqueue()` for one job, stored with the calls other threads make at the same time.

    Raises what `enqueue()` raises, for this call only.
    """
    return submit_one(request, enqueued_by=enqueued_by, correlation_id=correlation_id).result()


def submit_one(
    request: JobRequest, *, enqueued_by: str = "service", correlation_id: str | None = None
) -> Future[Enqueued]:
    """`enqueue_one()` without waiting: validated here (refusals raise at once), stored by the
    committer thread; the future holds the result, or the refusal of the store.

    An event loop awaits it (`asyncio.wrap_future`) instead of blocking a thread on it.
    """
    rows, specs = prepare_rows(
        [request], enqueued_by=enqueued_by, correlation_id=correlation_id, batch=False
    )
    future: Future[Enqueued] = Future()
    _committer().submit(_Call(rows[0], specs[0], future))
    return future


class _Committer:
    """The thread that stores waiting calls, one group per transaction."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._held: list[_Call] = []  # calls a key of the previous group sent to the next
        self._thread = threading.Thread(target=self._run, name="mnw-group-enqueue", daemon=True)
        self._thread.start()

    def submit(self, call: _Call) -> None:
        self._calls.put(call)

    def _run(self) -> None:
        while True:
            group = self._next_group()
            try:
                store_group(group)
            except BaseException as exc:
                log.exception("group enqueue failed")
                for call in group:
                    if not call.future.done():
                        call.future.set_exception(exc)

    def _next_group(self) -> list[_Call]:
        waiting = self._held or [self._calls.get()]
        self._held = []
        while len(waiting) < MAX_GROUP * 2:
            try:
                waiting.append(self._calls.get_nowait())
            except queue.Empty:
                break
        group: list[_Call] = []
        keys: set[str] = set()
        for call in waiting:
            key = call.row["idempotency_key"]
            if len(group) >= MAX_GROUP or (key is not None and key in keys):
                self._held.append(call)
                continue
            if key is not None:
                keys.add(key)
            group.append(call)
        return group


def store_group(group: Sequence[_Call]) -> None:
    """Store the calls' rows in one transaction, publish them, and answer each call."""
    rows = [call.row for call in group]
    try:
        with get_engine().begin() as connection:
            inserted = ledger.insert_jobs(connection, rows)
            existing = existing_jobs(connection, inserted.holders)
    except _ROW_ERRORS as exc:
        if len(group) == 1:
            group[0].future.set_exception(exc)
            return
        log.info("a group of %d enqueues failed (%s): storing each alone", len(group), exc)
        for call in group:
            _store_alone(call)
        return
    except Exception as exc:  # noqa: BLE001 - the database is unreachable: each call is told
        for call in group:
            call.future.set_exception(exc)
        return
    accepted: list[_Call] = []
    for call in group:
        holder = inserted.holders[call.row["id"]]
        if holder != call.row["id"]:
            try:
                check_same_request(call.row, holder, existing[holder], index=None)
            except IdempotencyConflictError as exc:
                call.future.set_exception(exc)
                continue
        accepted.append(call)
    results = publish_inserted(
        [call.row for call in accepted], [call.spec for call in accepted], inserted
    )
    for call, result in zip(accepted, results, strict=True):
        call.future.set_result(result)


def _store_alone(call: _Call) -> None:
    try:
        call.future.set_result(store_and_publish([call.row], [call.spec], batch=False)[0])
    except Exception as exc:  # noqa: BLE001 - this call's own refusal, given to its caller
        call.future.set_exception(exc)


_lock = threading.Lock()
_instance: _Committer | None = None
_instance_pid: int | None = None


def _committer() -> _Committer:
    global _instance, _instance_pid  # noqa: PLW0603
    with _lock:
        if _instance is None or _instance_pid != os.getpid() or not _instance._thread.is_alive():
            _instance = _Committer()
            _instance_pid = os.getpid()
        return _instance


def _after_fork_in_child() -> None:
    global _lock, _instance, _instance_pid  # noqa: PLW0603
    _lock = threading.Lock()  # a lock held by another thread at fork time would never be freed
    _instance = None
    _instance_pid = None


os.register_at_fork(after_in_child=_after_fork_in_child)
