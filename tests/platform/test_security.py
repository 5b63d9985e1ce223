"""Security posture of the broker side: only JSON is accepted, bounds fit the broker."""

from __future__ import annotations

import pickle
from pathlib import Path

from kombu import Connection, Exchange, Producer

from medianest_workers.platform.enqueue import enqueue
from medianest_workers.platform.registry import JobSpec, RetryPolicy, all_specs, check_time_bounds
from medianest_workers.settings import get_settings
from tests.helpers import wait_for
from tests.platform.conftest import wait_terminal


class _Canary:
    """Unpickling this creates a file: proof that pickled code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path(self.path).touch, ())


def test_a_pickled_message_is_refused_and_runs_nothing(
    engine, session_factory, start_worker, tmp_path: Path
) -> None:
    canary = tmp_path / "pickle-ran"
    worker = start_worker()
    wait_for(lambda: " ready." in worker.log(), timeout=30)  # its queues are declared
    settings = get_settings()
    with Connection(
        settings.redis_url,
        transport_options={"global_keyprefix": settings.redis_key_prefix},
    ) as connection:
        producer = Producer(connection, exchange=Exchange("maintenance", type="direct"))
        producer.publish(
            pickle.dumps(((_Canary(str(canary)),), {}, {})),
            routing_key="maintenance",
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={"task": "platform.noop", "id": "pickled-1", "lang": "py"},
        )
    wait_for(
        lambda: "ContentDisallowed" in worker.log() or "disallowed" in worker.log(), timeout=30
    )
    healthy = enqueue("platform.noop", {})
    assert wait_terminal(engine, healthy.job_id)["state"] == "succeeded"
    assert not canary.exists()


def test_every_job_kind_fits_the_visibility_timeout() -> None:
    assert check_time_bounds(get_settings().visibility_timeout_seconds, all_specs()) == []


def test_a_job_outliving_the_visibility_timeout_is_reported() -> None:
    spec = JobSpec(
        kind="x.long",
        queue=all_specs()[0].queue,
        func=lambda ctx, payload: None,
        time_limit=7300,
        soft_time_limit=7000,
        retry=RetryPolicy(),
    )
    (problem,) = check_time_bounds(7200, [spec])
    assert "x.long" in problem and "VISIBILITY_TIMEOUT_SECONDS" in problem
