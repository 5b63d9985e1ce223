"""A worker's liveness, proved by its own event loop: a file touched and a Redis record.

`WorkerPresence` is a consumer bootstep: while the worker's consumer runs (connected to the
broker, its loop turning), a timer of that loop, every WORKER_LIVENESS_INTERVAL_SECONDS,
touches WORKER_LIVENESS_FILE (when set: a container's healthcheck reads its age with
`medianest-workers worker-alive`, no broadcast) and writes `<prefix>workers:<node>` in Redis
(its queues and processes, expiring after three intervals), which `medianest-workers queues`
counts as the queues' consumers whatever the broker. A hung loop or a lost broker stops both.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import redis
from celery import bootsteps

from medianest_workers.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: A record lives this many intervals: one missed beat does not make a worker vanish.
RECORD_LIFETIME_INTERVALS = 3


def presence_key_pattern(prefix: str) -> str:
    return f"{prefix}workers:*"


def presence_key(prefix: str, node: str) -> str:
    return f"{prefix}workers:{node}"


def redis_client(url: str, *, timeout: float = 2.0) -> redis.Redis:
    """A client with short timeouts for presence writes and reads (valkey:// is redis://)."""
    for scheme, replacement in (("valkeys://", "rediss://"), ("valkey://", "redis://")):
        if url.startswith(scheme):
            url = replacement + url.removeprefix(scheme)
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
    )


def touch(path: Path) -> None:
    """Create `path` or set its modification time to now."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path)


def liveness_age(path: Path) -> float | None:
    """Seconds since `path` was last touched, or None when it does not exist."""
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return None


class WorkerPresence(bootsteps.StartStopStep):
    """The bootstep of the module docstring (added to the app's consumer blueprint)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._settings: Settings = get_settings()
        self._timer_entry: Any = None
        self._client: redis.Redis | None = None

    def start(self, parent: Any) -> None:
        settings = self._settings
        self._client = redis_client(settings.require_redis_url())
        self._beat(parent)
        self._timer_entry = parent.timer.call_repeatedly(
            settings.worker_liveness_interval_seconds, self._beat, (parent,), priority=10
        )

    def stop(self, parent: Any) -> None:
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None
        if self._client is not None:
            try:
                self._client.delete(presence_key(self._settings.redis_key_prefix, parent.hostname))
            except redis.RedisError:
                log.debug("presence record not removed (it expires)", exc_info=True)
            self._client.close()
            self._client = None

    shutdown = stop

    def _beat(self, parent: Any) -> None:
        settings = self._settings
        if settings.worker_liveness_file is not None:
            try:
                touch(settings.worker_liveness_file)
            except OSError as exc:
                log.warning("cannot touch %s: %s", settings.worker_liveness_file, exc.strerror)
        record = {
            "node": parent.hostname,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": sorted(queue.name for queue in parent.task_consumer.queues)
            if parent.task_consumer is not None
            else [],
            "processes": int(parent.controller.concurrency or 1),
        }
        lifetime = RECORD_LIFETIME_INTERVALS * settings.worker_liveness_interval_seconds
        try:
            assert self._client is not None  # noqa: S101 - set by start()
            self._client.set(
                presence_key(settings.redis_key_prefix, parent.hostname),
                json.dumps(record),
                px=int(lifetime * 1000),
            )
        except redis.RedisError as exc:
            log.warning("presence record not written (%s)", type(exc).__name__)
