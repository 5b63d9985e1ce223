"""Reads of the health tables, for the API (`/v1/services`) and the metrics collector."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from medianest_workers.health.uptime import Uptime, uptime_windows

_LATEST = text(
    """
    SELECT DISTINCT ON (service_name) service_name, kind, checked_at, result, status,
        consecutive_failures, response_time_ms, http_status, error_class, error_message,
        cert_days_left, in_maintenance
    FROM mnw_health_checks
    ORDER BY service_name, checked_at DESC, id DESC
    """
)
_LAST_TRANSITIONS = text(
    """
    SELECT DISTINCT ON (service_name) service_name, at, from_status, to_status,
        error_class, error_message
    FROM mnw_health_transitions WHERE from_status IS NOT NULL
    ORDER BY service_name, at DESC, id DESC
    """
)
_HISTORY = text(
    """
    SELECT id, checked_at, result, status, consecutive_failures, response_time_ms,
        http_status, error_class, error_message, cert_days_left, in_maintenance
    FROM mnw_health_checks
    WHERE service_name = :name AND (CAST(:before AS bigint) IS NULL OR id < :before)
    ORDER BY id DESC LIMIT :limit
    """
)
_TRANSITIONS = text(
    """
    SELECT id, at, from_status, to_status, error_class, error_message
    FROM mnw_health_transitions WHERE service_name = :name
    ORDER BY at DESC, id DESC LIMIT :limit
    """
)
_NOW = text("SELECT timezone('UTC', now())")


@dataclass(frozen=True)
class ServiceView:
    name: str
    latest: dict[str, Any]
    uptime: Uptime
    last_transition: dict[str, Any] | None


def db_now(connection: Connection) -> dt.datetime:
    return connection.execute(_NOW).scalar_one()


def services(connection: Connection, *, now: dt.datetime | None = None) -> list[ServiceView]:
    """Every service with a check: its latest check, uptime windows and last transition."""
    now = now or db_now(connection)
    latest = {row["service_name"]: dict(row) for row in connection.execute(_LATEST).mappings()}
    transitions = {
        row["service_name"]: dict(row) for row in connection.execute(_LAST_TRANSITIONS).mappings()
    }
    uptimes = uptime_windows(connection, list(latest), now=now)
    return [
        ServiceView(
            name=name,
            latest=row,
            uptime=uptimes[name],
            last_transition=transitions.get(name),
        )
        for name, row in sorted(latest.items())
    ]


def history(
    connection: Connection, name: str, *, limit: int, before: int | None = None
) -> list[dict[str, Any]]:
    """The service's checks, newest first; `before` (a check id) pages further back."""
    rows = connection.execute(_HISTORY, {"name": name, "before": before, "limit": limit})
    return [dict(row) for row in rows.mappings()]


def transitions(connection: Connection, name: str, *, limit: int) -> list[dict[str, Any]]:
    """The service's transitions, newest first."""
    rows = connection.execute(_TRANSITIONS, {"name": name, "limit": limit})
    return [dict(row) for row in rows.mappings()]


def known(connection: Connection, name: str) -> bool:
    found = connection.execute(
        text("SELECT 1 FROM mnw_health_checks WHERE service_name = :name LIMIT 1"), {"name": name}
    )
    return found.first() is not None
