"""The kombu workaround (platform/kombu_fixes.py) against a real Redis: closing a channel whose
transport is already detached raises one of kombu's connection errors, never an
AttributeError, and the unacknowledged message stays restorable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Exchange, Producer
from kombu import Queue as KombuQueue

from medianest_workers.platform import kombu_fixes
from tests.conftest import delete_keys


@pytest.fixture
def broker(redis_server_url: str, redis_prefix: str) -> Iterator[tuple[Connection, str]]:
    prefix = f"{redis_prefix}kombu-fix-{uuid.uuid4().hex[:8]}:"
    connection = Connection(redis_server_url, transport_options={"global_keyprefix": prefix})
    try:
        yield connection, prefix
    finally:
        connection.release()
        delete_keys(redis_server_url, prefix)


def test_apply_is_idempotent() -> None:
    assert kombu_fixes.apply()
    first = kombu_fixes.kombu_redis.Channel._connparams
    assert kombu_fixes.apply()
    assert kombu_fixes.kombu_redis.Channel._connparams is first


def test_closing_a_channel_of_a_detached_transport_is_a_connection_error_and_keeps_the_message(
    broker: tuple[Connection, str], redis_client: redis.Redis
) -> None:
    connection, prefix = broker
    assert kombu_fixes.apply()
    queue = KombuQueue("fix", Exchange("fix", type="direct"), routing_key="fix")
    channel = connection.default_channel
    Producer(channel).publish({"n": 1}, exchange=queue.exchange, routing_key="fix", declare=[queue])
    message = queue(channel).get(no_ack=False)
    assert message is not None and message.payload == {"n": 1}
    channel._disconnect_pools()  # what the half-finished close did before the transport went
    connection._do_close_transport()  # the transport is detached: transport.client is None

    with pytest.raises(connection.connection_errors) as raised:
        channel.close()
    assert isinstance(raised.value, kombu_fixes.DetachedTransportError)
    assert not isinstance(raised.value, AttributeError)

    assert redis_client.hlen(f"{prefix}unacked") == 1, "the message left kombu's unacked set"
