"""The platform suite once more, with RabbitMQ as the broker, when one answers on loopback.

`BROKER_URL=amqp://guest:guest@127.0.0.1:5672/<vhost>` (a virtual host of this run's own,
made and deleted with `rabbitmqctl` where it can, else `/`), and pytest runs, in a child
process, tests/platform and tests/ops/test_queues.py: enqueue and publish, real workers
(retries with backoff through quorum queues' delayed delivery, lost children, poison pills,
duplicates, cancels), the ledger, beat, the rescuer, the jobs CLI, `medianest-workers queues`.
Left out, because they drive Redis *as the broker* (they read or write its lists, or kill
the Redis server the worker consumes from): the six tests of REDIS_BROKER_ONLY. Then the
queues, exchanges and bindings RabbitMQ holds are checked: four durable quorum queues, each
bound to its own topic exchange by its own routing key.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from medianest_workers.platform.queues import Queue

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ = ("127.0.0.1", 5672)
REDIS_BROKER_ONLY = [
    "tests/platform/test_enqueue.py::test_enqueue_writes_a_row_and_publishes",
    "tests/platform/test_enqueue.py::test_batch_enqueue_is_one_transaction",
    "tests/platform/test_enqueue.py::test_redis_down_at_enqueue_keeps_the_job_for_the_rescuer",
    "tests/platform/test_enqueue.py::test_rescuer_republishes_after_a_wipe_and_requeues_lost_running_jobs",
    "tests/platform/test_faults.py::test_redis_restarted_empty_loses_no_job",
    "tests/platform/test_security.py::test_a_pickled_message_is_refused_and_runs_nothing",
]


def _answers() -> bool:
    try:
        with socket.create_connection(RABBITMQ, timeout=2):
            return True
    except OSError:
        return False


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def vhost() -> Iterator[str]:
    """A virtual host of this test's own (deleted after), or `/` without rabbitmqctl."""
    if not _answers():
        pytest.skip("no RabbitMQ answers on 127.0.0.1:5672")
    if shutil.which("rabbitmqctl") is None or _rabbitmqctl("list_vhosts").returncode != 0:
        yield "/"
        return
    name = f"mnw-test-{uuid.uuid4().hex[:8]}"
    created = _rabbitmqctl("add_vhost", name)
    assert created.returncode == 0, created.stderr
    try:
        granted = _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        assert granted.returncode == 0, granted.stderr
        yield name
    finally:
        _rabbitmqctl("delete_vhost", name)


@pytest.mark.timeout(1500)
def test_platform_suite_passes_with_rabbitmq_as_the_broker(vhost: str, tmp_path: Path) -> None:
    broker_url = f"amqp://guest:guest@127.0.0.1:5672/{'' if vhost == '/' else vhost}"
    # DATABASE_URL and REDIS_URL are this run's (conftest.py): the child makes a database and
    # a Redis prefix of its own on the same servers, whether given or embedded.
    env = {**os.environ, "BROKER_URL": broker_url, "PYTHONPATH": str(ROOT)}
    deselect = [arg for test in REDIS_BROKER_ONLY for arg in ("--deselect", test)]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/platform",
            "tests/ops/test_queues.py",
            *deselect,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1400,
        check=False,
    )
    (tmp_path / "rabbitmq-suite.log").write_text(result.stdout + result.stderr)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in summary and "failed" not in summary, summary

    if vhost != "/":
        queues = _rabbitmqctl(
            "list_queues", "-p", vhost, "--no-table-headers", "name", "type", "durable"
        )
        declared = {
            line.split()[0]: line.split()[1:] for line in queues.stdout.splitlines() if line.strip()
        }
        for queue in Queue:
            assert declared[queue.value] == ["quorum", "true"], declared
        exchanges = _rabbitmqctl(
            "list_exchanges", "-p", vhost, "--no-table-headers", "name", "type"
        )
        types = dict(
            line.split() for line in exchanges.stdout.splitlines() if len(line.split()) == 2
        )
        bindings = _rabbitmqctl(
            "list_bindings",
            "-p",
            vhost,
            "--no-table-headers",
            "source_name",
            "destination_name",
            "routing_key",
        )
        bound = {
            tuple(line.split()) for line in bindings.stdout.splitlines() if len(line.split()) == 3
        }
        for queue in Queue:
            assert types[queue.exchange] == "topic"
            assert (queue.exchange, queue.value, queue.routing_key) in bound, bound
