"""The Redis client the health family writes the backend's keys with: short timeouts."""

from __future__ import annotations

import redis


def make_client(url: str, *, timeout: float = 2.0) -> redis.Redis:
    """A client of REDIS_URL (valkey:// is the same protocol), no retries."""
    for scheme, replacement in (("valkeys://", "rediss://"), ("valkey://", "redis://")):
        if url.startswith(scheme):
            url = replacement + url.removeprefix(scheme)
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        health_check_interval=0,
    )
