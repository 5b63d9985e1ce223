"""The worker's start-up refusal of bounds that cannot hold (platform/worker_hooks.py)."""

from __future__ import annotations

import pytest
from celery import signals

from medianest_workers.platform import worker_hooks
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import JobSpec, RetryPolicy


def test_bounds_beyond_the_visibility_timeout_stop_the_worker_from_starting(monkeypatch) -> None:
    """Celery swallows a signal receiver's Exception: the refusal must get past it."""
    late = JobSpec(
        kind="tests.late",
        queue=Queue.MEDIA,
        func=lambda ctx, payload: None,
        retry=RetryPolicy(backoff_base_seconds=60, backoff_max_seconds=9000),
    )
    monkeypatch.setattr(worker_hooks, "all_specs", lambda: [late])
    with pytest.raises(SystemExit, match=r"tests\.late: time limit or retry delay 9000 s"):
        signals.worker_init.send(sender=None)


def test_bounds_that_fit_let_the_worker_start(monkeypatch) -> None:
    fits = JobSpec(kind="tests.fits", queue=Queue.MEDIA, func=lambda ctx, payload: None)
    monkeypatch.setattr(worker_hooks, "all_specs", lambda: [fits])
    responses = dict(signals.worker_init.send(sender=None))
    assert responses[worker_hooks._check_bounds] is None
