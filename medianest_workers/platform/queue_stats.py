"""The operator's view of the queues: length, consumers and oldest queued job of each.

Read only, from three places: the broker (messages waiting: Redis lists, or RabbitMQ's
passive declare), the workers' presence records in Redis (presence.py: who consumes what,
whatever the broker) and the ledger (the oldest `queued` job of each queue and how many
are queued there, a retry waiting out its backoff included). `medianest-workers queues`
prints it; nothing here writes.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import Connection, func, select

from medianest_workers.db.job_states import JobState
from medianest_workers.db.models.jobs import Job
from medianest_workers.platform.presence import presence_key_pattern
from medianest_workers.platform.queues import Queue
from medianest_workers.timeutil import aware_utc

#: kombu's Redis transport keeps one list per priority step; priority 0 is the bare name.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


@dataclass(frozen=True, kw_only=True)
class QueueStats:
    queue: str
    exchange: str
    routing_key: str
    #: Messages waiting in the broker (None: the broker did not answer).
    length: int | None
    #: Worker nodes consuming the queue, and their processes (from the presence records).
    consumers: int
    processes: int
    #: Jobs `queued` in the ledger for this queue, and the oldest one.
    queued_jobs: int
    oldest_job_id: str | None
    oldest_enqueued_at: dt.datetime | None

    def as_json(self) -> dict[str, Any]:
        values = dict(self.__dict__)
        if self.oldest_enqueued_at is not None:
            values["oldest_enqueued_at"] = self.oldest_enqueued_at.isoformat()
        return values


def redis_queue_keys(prefix: str, queue: str) -> list[str]:
    """The Redis lists holding `queue`'s messages (kombu's priority steps)."""
    return [
        f"{prefix}{queue}{PRIORITY_SEPARATOR}{step}" if step else f"{prefix}{queue}"
        for step in PRIORITY_STEPS
    ]


def redis_lengths(client: redis.Redis, prefix: str) -> dict[str, int]:
    """Messages waiting in each queue of a Redis broker (one pipelined round trip)."""
    pipeline = client.pipeline(transaction=False)
    for queue in Queue:
        for key in redis_queue_keys(prefix, queue.value):
            pipeline.llen(key)
    answers = iter(pipeline.execute())
    return {queue.value: sum(int(next(answers)) for _ in PRIORITY_STEPS) for queue in Queue}


def amqp_lengths(app: Any) -> dict[str, int]:
    """Messages waiting in each queue of a RabbitMQ broker (passive declares: nothing made)."""
    lengths: dict[str, int] = {}
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        for queue in Queue:
            try:
                _name, messages, _consumers = channel.queue_declare(queue.value, passive=True)
            except Exception as exc:
                if "NOT_FOUND" not in str(exc):
                    raise
                channel = connection.channel()  # the failed declare closed that channel
                messages = 0
            lengths[queue.value] = int(messages)
    return lengths


def consumers(client: redis.Redis, prefix: str) -> dict[str, tuple[int, int]]:
    """(worker nodes, processes) consuming each queue, from the live presence records."""
    counts = {queue.value: (0, 0) for queue in Queue}
    keys = list(client.scan_iter(match=presence_key_pattern(prefix), count=500))
    for raw in client.mget(keys) if keys else []:
        if raw is None:  # expired between SCAN and MGET
            continue
        record = json.loads(raw)
        for name in record.get("queues", []):
            if name in counts:
                nodes, processes = counts[name]
                counts[name] = (nodes + 1, processes + int(record.get("processes", 0)))
    return counts


def queued_in_ledger(
    connection: Connection,
) -> dict[str, tuple[int, str | None, dt.datetime | None]]:
    """Per queue: how many jobs are `queued`, and the id and enqueue time of the oldest."""
    ranked = (
        select(
            Job.queue,
            Job.id,
            Job.enqueued_at,
            func.count().over(partition_by=Job.queue).label("jobs"),
            func.row_number()
            .over(partition_by=Job.queue, order_by=(Job.enqueued_at, Job.id))
            .label("position"),
        )
        .where(Job.state == JobState.QUEUED.value)
        .subquery()
    )
    oldest = select(ranked.c.queue, ranked.c.jobs, ranked.c.id, ranked.c.enqueued_at).where(
        ranked.c.position == 1
    )
    result: dict[str, tuple[int, str | None, dt.datetime | None]] = {
        queue.value: (0, None, None) for queue in Queue
    }
    for queue, jobs, job_id, at in connection.execute(oldest):
        result[queue] = (int(jobs), job_id, aware_utc(at))
    return result


def queue_stats(
    *,
    lengths: dict[str, int] | None,
    consumer_counts: dict[str, tuple[int, int]],
    ledger: dict[str, tuple[int, str | None, dt.datetime | None]],
) -> list[QueueStats]:
    """One QueueStats per queue, in the Queue enum's order."""
    stats = []
    for queue in Queue:
        nodes, processes = consumer_counts.get(queue.value, (0, 0))
        queued, job_id, at = ledger.get(queue.value, (0, None, None))
        stats.append(
            QueueStats(
                queue=queue.value,
                exchange=queue.exchange,
                routing_key=queue.routing_key,
                length=None if lengths is None else lengths.get(queue.value, 0),
                consumers=nodes,
                processes=processes,
                queued_jobs=queued,
                oldest_job_id=job_id,
                oldest_enqueued_at=at,
            )
        )
    return stats
