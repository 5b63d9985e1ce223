"""`medianest-workers queues` (the operator's view of the queues), `worker-alive`, `beat-alive`.

`queues` prints, per queue, its exchange and routing key, the messages waiting in the broker,
the worker nodes (and processes) consuming it, and the jobs `queued` in the ledger with the
oldest one's age and id (`--json` for the same as JSON). A broker that does not answer shows
`?` as the length; exit code 0. `worker-alive` is a container's worker healthcheck: exit 0
when WORKER_LIVENESS_FILE was touched within `--max-age` seconds, else 1 (no broadcast).
`beat-alive` is beat's: exit 0 when BEAT_LIVENESS_FILE was touched (after a tick) within
`--max-age` seconds, by default BEAT_LOCK_TIMEOUT_SECONDS (a beat silent for longer has lost
its lock, so it no longer schedules), else 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from medianest_workers.settings import SettingsError, get_settings

EXIT_OK = 0
EXIT_NOT_ALIVE = 1


def add_ops_commands(subparsers: Any) -> None:
    """Register `queues`, `worker-alive` and `beat-alive` on the `add_subparsers()` object."""
    queues = subparsers.add_parser(
        "queues", help="each queue: length, consumers, oldest queued job (broker and ledger)"
    )
    queues.add_argument("--json", action="store_true", help="print JSON instead of a table")
    queues.set_defaults(handler=run_queues)

    alive = subparsers.add_parser(
        "worker-alive", help="healthcheck: exit 0 when the worker's liveness file is fresh"
    )
    alive.add_argument("--file", type=Path, help="default: WORKER_LIVENESS_FILE")
    alive.add_argument(
        "--max-age", type=float, metavar="SECONDS", help="default: 3 x WORKER_LIVENESS_INTERVAL"
    )
    alive.set_defaults(handler=run_worker_alive)

    beat_alive = subparsers.add_parser(
        "beat-alive", help="healthcheck: exit 0 when beat's liveness file is fresh (it ticks)"
    )
    beat_alive.add_argument("--file", type=Path, help="default: BEAT_LIVENESS_FILE")
    beat_alive.add_argument(
        "--max-age", type=float, metavar="SECONDS", help="default: BEAT_LOCK_TIMEOUT_SECONDS"
    )
    beat_alive.set_defaults(handler=run_beat_alive)


def run_queues(args: argparse.Namespace) -> int:
    from medianest_workers.db.session import get_engine  # noqa: PLC0415 - `--help` stays light
    from medianest_workers.platform import queue_stats  # noqa: PLC0415
    from medianest_workers.platform.celery_app import app, is_amqp  # noqa: PLC0415
    from medianest_workers.platform.presence import redis_client  # noqa: PLC0415

    settings = get_settings()
    client = redis_client(settings.require_redis_url())
    try:
        lengths: dict[str, int] | None
        try:
            if is_amqp(settings.require_broker_url()):
                lengths = queue_stats.amqp_lengths(app)
            else:
                lengths = queue_stats.redis_lengths(client, settings.redis_key_prefix)
        except Exception as exc:  # noqa: BLE001 - the ledger's view is still worth printing
            print(f"medianest-workers: queues: broker unavailable ({exc})", file=sys.stderr)
            lengths = None
        consumer_counts = queue_stats.consumers(client, settings.redis_key_prefix)
    finally:
        client.close()
    with get_engine().connect() as connection:
        ledger = queue_stats.queued_in_ledger(connection)
    stats = queue_stats.queue_stats(lengths=lengths, consumer_counts=consumer_counts, ledger=ledger)
    if args.json:
        print(json.dumps([item.as_json() for item in stats], indent=2))
        return EXIT_OK
    now = dt.datetime.now(dt.UTC)
    row = "{:<12} {:<24} {:>6} {:>9} {:>6}  {}"
    print(row.format("QUEUE", "EXCHANGE/KEY", "LENGTH", "CONSUMERS", "QUEUED", "OLDEST"))
    for item in stats:
        oldest = "-"
        if item.oldest_enqueued_at is not None:
            age = (now - item.oldest_enqueued_at).total_seconds()
            oldest = f"{_age(age)} ago  {item.oldest_job_id}"
        length = "?" if item.length is None else str(item.length)
        route = f"{item.exchange}/{item.routing_key}"
        consumers = f"{item.consumers} ({item.processes})"
        print(row.format(item.queue, route, length, consumers, item.queued_jobs, oldest))
    return EXIT_OK


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def run_worker_alive(args: argparse.Namespace) -> int:
    settings = get_settings()
    path = args.file or settings.worker_liveness_file
    if path is None:
        raise SettingsError("WORKER_LIVENESS_FILE: not set (or give --file)")
    max_age = args.max_age or 3 * settings.worker_liveness_interval_seconds
    return _fresh("worker-alive", path, max_age, "worker not started?")


def run_beat_alive(args: argparse.Namespace) -> int:
    settings = get_settings()
    path = args.file or settings.beat_liveness_file
    if path is None:
        raise SettingsError("BEAT_LIVENESS_FILE: not set (or give --file)")
    max_age = args.max_age or float(settings.beat_lock_timeout_seconds)
    return _fresh("beat-alive", path, max_age, "beat not started, or waiting for the lock?")


def _fresh(command: str, path: Path, max_age: float, missing_hint: str) -> int:
    """EXIT_OK when `path` was touched within `max_age` seconds; else the reason on stderr."""
    from medianest_workers.platform.presence import liveness_age  # noqa: PLC0415

    age = liveness_age(path)
    if age is None:
        print(f"{command}: {path} does not exist ({missing_hint})", file=sys.stderr)
        return EXIT_NOT_ALIVE
    if age > max_age:
        print(f"{command}: {path} is {age:.0f}s old (more than {max_age:g}s)", file=sys.stderr)
        return EXIT_NOT_ALIVE
    return EXIT_OK
