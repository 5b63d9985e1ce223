"""The `@job` decorator: how a domain declares a job kind.

    @job("downloads.playlist", queue=Queue.DOWNLOADS, payload=PlaylistPayload,
         soft_time_limit=3300, time_limit=3600, retry=RetryPolicy(max_attempts=3))
    def download_playlist(ctx: JobContext, payload: PlaylistPayload) -> dict | None:
        ...

The kind is the stable dotted name the job is enqueued, routed and listed by. The function
gets its context and its validated payload (ids and small values, never secrets) and returns
a small JSON-able result or None. Ledger bookkeeping, retries and time limits are the
platform's business.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from celery import Task
from pydantic import BaseModel

from medianest_workers.platform import worker_hooks  # noqa: F401  (connects worker signals)
from medianest_workers.platform.celery_app import app
from medianest_workers.platform.execution import execute
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import (
    EmptyPayload,
    JobFunction,
    JobSpec,
    RetryPolicy,
    register,
)

_KIND = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


def job(
    kind: str,
    *,
    queue: Queue,
    payload: type[BaseModel] = EmptyPayload,
    soft_time_limit: float = 60.0,
    time_limit: float = 90.0,
    retry: RetryPolicy | None = None,
    description: str = "",
) -> Callable[[JobFunction], JobFunction]:
    """Register `func` as job kind `kind` on `queue` (see the module docstring)."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"job kind {kind!r} must be a dotted lowercase name like 'domain.action'")
    if not 0 < soft_time_limit < time_limit:
        raise ValueError(f"{kind}: need 0 < soft_time_limit < time_limit")

    def decorate(func: JobFunction) -> JobFunction:
        spec = JobSpec(
            kind=kind,
            queue=queue,
            func=func,
            payload_model=payload,
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
            retry=retry or RetryPolicy(),
            description=description or (func.__doc__ or "").strip().split("\n")[0],
        )
        register(spec)

        def run(task: Task, *_args: Any, **_kwargs: Any) -> dict[str, Any] | None:
            return execute(task, spec)

        app.task(
            name=kind,
            bind=True,
            queue=queue.value,
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
            acks_late=True,
            reject_on_worker_lost=True,
            ignore_result=True,
            max_retries=None,
            typing=False,
        )(run)
        return func

    return decorate
