"""The Celery app, configured once from the settings (RELIABILITY.md, "Settings that matter").

At-least-once delivery (acks late, reject on worker lost, prefetch 1, one visibility timeout
longer than any hard limit or retry delay), JSON only, results ignored (state lives in the
ledger), events on for Flower, broker reconnects forever. Tasks are routed to their queue by
job name through the registry.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from kombu import Queue as KombuQueue

from medianest_workers.platform import logs  # noqa: F401  (connects Celery's logging signal)
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.schedules import celery_beat_schedule
from medianest_workers.settings import Settings, get_settings

#: Modules whose import registers the platform's own job kinds and the domains' ones.
BUILTIN_JOB_MODULES = ("medianest_workers.platform.builtin",)


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    return {
        "visibility_timeout": settings.visibility_timeout_seconds,
        "global_keyprefix": settings.redis_key_prefix,
        "socket_timeout": settings.redis_socket_timeout_seconds,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 10,
    }


def configure(app: Celery, settings: Settings) -> None:
    transport = broker_transport_options(settings)
    app.conf.update(
        broker_url=settings.require_redis_url(),
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
        task_queues=[KombuQueue(queue.value, routing_key=queue.value) for queue in Queue],
        task_default_queue=Queue.MAINTENANCE.value,
        task_routes=(_route_by_job_name,),
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
        imports=[*BUILTIN_JOB_MODULES, *settings.job_modules],
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


def _route_by_job_name(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any
) -> dict[str, str] | None:
    from medianest_workers.platform.registry import find_spec  # noqa: PLC0415 - import cycle

    spec = find_spec(name)
    return None if spec is None else {"queue": spec.queue.value, "routing_key": spec.queue.value}


app = Celery("medianest_workers", set_as_current=True)


@app.on_configure.connect
def _configure_from_settings(sender: Celery, **_: Any) -> None:
    """Configuration is read on first use, not at import (the settings may not be ready)."""
    configure(sender, get_settings())


class ConfigurationError(RuntimeError):
    """The job kinds' bounds do not fit the broker settings: the worker refuses to start."""


@signals.worker_init.connect
def _check_bounds(**_: Any) -> None:
    """Every hard time limit and retry delay must end within the visibility timeout."""
    from medianest_workers.platform.jobs import check_time_bounds  # noqa: PLC0415
    from medianest_workers.platform.registry import all_specs  # noqa: PLC0415

    problems = check_time_bounds(get_settings().visibility_timeout_seconds, all_specs())
    if problems:
        raise ConfigurationError("; ".join(problems))


@signals.worker_process_init.connect
def _fresh_engine_in_child(**_: Any) -> None:
    """Never share a pool across a fork (session.py also does this through register_at_fork)."""
    from medianest_workers.db.session import dispose_engine_after_fork  # noqa: PLC0415

    dispose_engine_after_fork()
