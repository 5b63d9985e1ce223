"""The four queues, by the kind of work they carry (docs/architecture.md), and their routing.

Generic on purpose: a family puts each of its job kinds on the queue whose worker settings
fit it; the machinery knows no family. Each queue has an exchange of its own, named like it,
and is bound to it with its own name as routing key: an operator sees in the broker which
exchange feeds which queue, and a message can never land on another queue by a shared
default exchange. On Redis they are direct exchanges: kombu's Redis transport routes a
direct exchange whose bindings were wiped (Redis restarted empty) to the queue named by the
routing key, where a topic exchange would drop the message. On RabbitMQ they are topic
exchanges: its native delayed delivery (retries with a countdown on quorum queues) binds
`#.<queue>` to them, which a direct exchange cannot carry.
"""

from __future__ import annotations

import enum

REDIS_EXCHANGE_TYPE = "direct"
AMQP_EXCHANGE_TYPE = "topic"


class Queue(enum.StrEnum):
    MEDIA = "media"  # short calls to peers: short time limits
    DOWNLOADS = "downloads"  # long transfers: low concurrency, long limits
    HEALTH = "health"  # probes: short limits, never starved by long work
    MAINTENANCE = "maintenance"  # housekeeping: cleanup, retention, backups

    @property
    def exchange(self) -> str:
        """The exchange that feeds this queue (and only this queue)."""
        return self.value

    @property
    def routing_key(self) -> str:
        """The routing key this queue is bound with on its exchange."""
        return self.value
