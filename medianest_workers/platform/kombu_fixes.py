"""A workaround for a kombu bug that kills a Celery worker when its Redis connection flaps.

When the worker loses its broker connection, Celery's consumer collects the broken
connection and then closes it (`Consumer.on_connection_error_after_connected`). If the
collect stops half-way (a socket timeout while the channel is closing), the transport has
already been detached from its `Connection` (`transport.client is None`) while the channel
is still open; the close then tries to hand the unacknowledged messages back through a new
Redis pool, and `Channel._connparams` reads `self.connection.client.hostname`:

    AttributeError: 'NoneType' object has no attribute 'hostname'

That is not one of kombu's connection errors, so Celery logs "Unrecoverable error" and the
worker exits with its jobs still queued (seen under 50-150 ms of latency with a reset every
few seconds, kombu 5.7.0; upstream: celery/celery#10205 and #10302, kombu#582 for the same
line in an older path).

The fix says what happened: a channel whose transport is detached raises
`redis.exceptions.ConnectionError`, which kombu counts among the Redis transport's connection
errors. The close ignores it as it ignores any other error of a dead connection, the consumer
reconnects, and the messages it could not hand back stay in kombu's unacked set, from which
the visibility timeout restores them (and the rescuer republishes jobs the ledger still has
queued). Applied once, when `celery_app` is imported; a warning and no fix if kombu no
longer has that method.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import redis.exceptions
from kombu.transport import redis as kombu_redis

logger = logging.getLogger(__name__)

_MARKER = "_medianest_detached_transport_fix"


class DetachedTransportError(redis.exceptions.ConnectionError):
    """The channel's transport was detached from its connection: the connection is closed."""


def apply() -> bool:
    """Install the fix on kombu's Redis channel; True if it is (now or already) installed."""
    channel = kombu_redis.Channel
    original = getattr(channel, "_connparams", None)
    if original is None:
        logger.warning("kombu's Redis channel has no _connparams: the kombu fix is not applied")
        return False
    if getattr(original, _MARKER, False):
        return True

    @functools.wraps(original)
    def _connparams(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        transport = getattr(self, "connection", None)
        if transport is None or getattr(transport, "client", None) is None:
            raise DetachedTransportError("the broker connection of this channel is already closed")
        return original(self, *args, **kwargs)  # type: ignore[no-any-return]

    setattr(_connparams, _MARKER, True)
    channel._connparams = _connparams  # type: ignore[method-assign]
    return True
