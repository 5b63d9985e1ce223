"""The Celery app, configured once from the settings (see docs/architecture.md).

At-least-once delivery (acks late, reject on worker lost, prefetch 1, one visibility timeout
longer than any hard limit or retry delay), JSON only, results ignored (state lives in the
ledger), events on for Flower, broker reconnects forever. A message goes to its job kind's
queue (enqueue names it) through that queue's own exchange. The broker is Redis (REDIS_URL)
unless BROKER_URL names RabbitMQ (`amqp://`): then the queues are quorum queues and
publishes are confirmed; Redis still holds beat's schedule and lock. Light on purpose: Flower
and the CLI import this module, which loads no job module, SQLAlchemy or model.
"""

from __future__ import annotations

import math
from typing import Any

from celery import Celery
from kombu import Exchange
from kombu import Queue as KombuQueue

from medianest_workers.platform import (
    celery_logging,  # noqa: F401  (connects Celery's logging signal)
    kombu_fixes,
)
from medianest_workers.platform.catalog import job_module_names
from medianest_workers.platform.presence import WorkerPresence
from medianest_workers.platform.queues import AMQP_EXCHANGE_TYPE, REDIS_EXCHANGE_TYPE, Queue
from medianest_workers.platform.schedules import celery_beat_schedule
from medianest_workers.settings import AMQP_SCHEMES, Settings, get_settings


def is_amqp(url: str) -> bool:
    """Whether a broker URL names RabbitMQ (AMQP) rather than Redis."""
    return url.split("://", 1)[0] in AMQP_SCHEMES


def retry_countdown(seconds: float, settings: Settings | None = None) -> float:
    """The countdown to re-publish a message with, `seconds` wanted.

    On RabbitMQ, a countdown on a quorum queue goes through kombu's native delayed delivery,
    which counts whole seconds and refuses less than one (kombu raises, Celery rejects the
    retry's message and the job waits for the rescuer): rounded up to a whole second >= 1
    there. Unchanged on Redis.
    """
    settings = settings or get_settings()
    if is_amqp(settings.require_broker_url()):
        return float(max(1, math.ceil(seconds)))
    return seconds


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    if is_amqp(settings.require_broker_url()):
        # Publisher confirms: a publish returns once RabbitMQ has the message (quorum queues).
        return {"confirm_publish": True}
    return {
        "visibility_timeout": settings.visibility_timeout_seconds,
        "global_keyprefix": settings.redis_key_prefix,
        "socket_timeout": settings.redis_socket_timeout_seconds,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 10,
    }


def exchange_type(settings: Settings) -> str:
    """Direct exchanges on Redis, topic exchanges on RabbitMQ (queues.py says why)."""
    return AMQP_EXCHANGE_TYPE if is_amqp(settings.require_broker_url()) else REDIS_EXCHANGE_TYPE


def kombu_queues(settings: Settings) -> list[KombuQueue]:
    """Each queue on its own exchange and routing key (queues.py); quorum queues on RabbitMQ."""
    amqp = is_amqp(settings.require_broker_url())
    arguments = {"x-queue-type": "quorum"} if amqp else None
    kind = exchange_type(settings)
    return [
        KombuQueue(
            queue.value,
            Exchange(queue.exchange, type=kind, durable=True),
            routing_key=queue.routing_key,
            durable=True,
            queue_arguments=arguments,
        )
        for queue in Queue
    ]


def configure(app: Celery, settings: Settings) -> None:
    transport = broker_transport_options(settings)
    app.conf.update(
        broker_url=settings.require_broker_url(),
        broker_transport_options=transport,
        result_backend=None,
        result_backend_transport_options=transport,
        visibility_timeout=settings.visibility_timeout_seconds,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_connection_timeout=5,
        broker_heartbeat=10,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        worker_max_memory_per_child=settings.worker_max_memory_per_child_kb,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=False,
        task_queues=kombu_queues(settings),
        task_default_queue=Queue.MAINTENANCE.value,
        task_default_exchange=Queue.MAINTENANCE.exchange,
        task_default_exchange_type=exchange_type(settings),
        task_default_routing_key=Queue.MAINTENANCE.routing_key,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0.1,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        timezone="UTC",
        enable_utc=True,
        imports=job_module_names(),
    )
    configure_beat(app, settings)


def configure_beat(app: Celery, settings: Settings) -> None:
    """The schedule and celery-redbeat's settings (its keys live under our Redis prefix)."""
    redis_options = {"socket_timeout": 5, "socket_connect_timeout": 5, "retry_period": 60}
    app.conf.update(
        beat_schedule=celery_beat_schedule(),
        beat_max_loop_interval=settings.beat_max_interval_seconds,
        beat_scheduler="medianest_workers.platform.beat:LedgerScheduler",
        redbeat_redis_url=settings.require_redis_url(),
        redbeat_redis_options=redis_options,
        redbeat_key_prefix=f"{settings.redis_key_prefix}redbeat",
        redbeat_lock_key=f"{settings.redis_key_prefix}redbeat:lock",
        redbeat_lock_timeout=settings.beat_lock_timeout_seconds,
    )


kombu_fixes.apply()
app = Celery("medianest_workers", set_as_current=True)
app.steps["consumer"].add(WorkerPresence)


@app.on_configure.connect
def _configure_from_settings(sender: Celery, **_: Any) -> None:
    """Configuration is read on first use, not at import (the settings may not be ready)."""
    configure(sender, get_settings())
