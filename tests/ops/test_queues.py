"""Queues on their own exchanges, `medianest-workers queues`, and the connection budget."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine

from medianest_workers.platform.celery_app import (
    app,
    exchange_type,
    kombu_queues,
    retry_countdown,
)
from medianest_workers.platform.connection_budget import check_budget, connections_needed
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.platform.errors import ConnectionBudgetError
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import load_job_modules
from medianest_workers.runtime.cli import main
from medianest_workers.settings import get_settings, load_settings


def test_each_queue_has_its_own_exchange_and_routing_key() -> None:
    queues = {queue.name: queue for queue in kombu_queues(get_settings())}
    assert set(queues) == {queue.value for queue in Queue}
    exchanges = {queue.exchange.name for queue in queues.values()}
    assert len(exchanges) == len(Queue)
    for queue in Queue:
        assert queues[queue.value].exchange.name == queue.exchange
        assert queues[queue.value].routing_key == queue.routing_key
        # direct on Redis, topic on RabbitMQ (tests/ops/test_rabbitmq.py runs this there)
        assert queues[queue.value].exchange.type == exchange_type(get_settings())
    app.loader.import_default_modules()
    assert app.amqp.queues["media"].exchange.name == "media"


def test_exchange_types_by_broker() -> None:
    assert exchange_type(load_settings(broker_url="redis://127.0.0.1:6379/0")) == "direct"
    assert exchange_type(load_settings(broker_url="amqp://guest:guest@127.0.0.1//")) == "topic"


def test_amqp_retry_countdowns_are_whole_seconds_of_at_least_one() -> None:
    """kombu's native delayed delivery refuses a countdown below 1 s (the retry was lost)."""
    amqp = load_settings(broker_url="amqp://guest:guest@127.0.0.1:5672//")
    redis_broker = load_settings(broker_url="redis://127.0.0.1:6379/0")
    assert [retry_countdown(s, amqp) for s in (0.1, 1.0, 1.2, 30)] == [1.0, 1.0, 2.0, 30.0]
    assert [retry_countdown(s, redis_broker) for s in (0.1, 1.2)] == [0.1, 1.2]


def test_amqp_broker_declares_quorum_queues() -> None:
    settings = load_settings(broker_url="amqp://guest:guest@127.0.0.1:5672//")
    for queue in kombu_queues(settings):
        assert queue.queue_arguments == {"x-queue-type": "quorum"}
        assert queue.durable
        assert queue.exchange.type == "topic"


def test_queues_command_shows_length_and_oldest_queued_job(
    session_factory: object, capsys: pytest.CaptureFixture[str]
) -> None:
    load_job_modules()
    first = enqueue("platform.noop", {})
    enqueue("platform.noop", {})
    assert main(["queues", "--json"]) == 0
    rows = {row["queue"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {queue.value for queue in Queue}
    noop_queue = first.queue
    assert rows[noop_queue]["length"] == 2
    assert rows[noop_queue]["queued_jobs"] == 2
    assert rows[noop_queue]["oldest_job_id"] == first.job_id
    assert rows[noop_queue]["exchange"] == noop_queue
    others = [row for name, row in rows.items() if name != noop_queue]
    assert all(row["oldest_job_id"] is None and row["queued_jobs"] == 0 for row in others)
    assert main(["queues"]) == 0
    table = capsys.readouterr().out
    assert first.job_id in table
    assert table.splitlines()[0].split()[:3] == ["QUEUE", "EXCHANGE/KEY", "LENGTH"]


def test_connection_budget_refuses_pools_the_server_cannot_hold(engine: Engine) -> None:
    settings = load_settings(db_pool_size=5, db_max_overflow=2, db_reserved_connections=0)
    with engine.connect() as connection:
        fits = check_budget(connection, settings, processes=1)
        assert fits.needed == connections_needed(settings, processes=1) == 8
        too_many = fits.allowed // 7 + 1
        with pytest.raises(ConnectionBudgetError) as refused:
            check_budget(connection, settings, processes=too_many)
    message = str(refused.value)
    assert "WORKER_CONCURRENCY" in message and "DB_RESERVED_CONNECTIONS" in message
    assert str(fits.max_connections) in message


def test_worker_alive_checks_the_age_of_the_liveness_file(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "alive"
    assert main(["worker-alive", "--file", str(path)]) == 1
    assert "does not exist" in capsys.readouterr().err
    path.touch()
    assert main(["worker-alive", "--file", str(path), "--max-age", "30"]) == 0
