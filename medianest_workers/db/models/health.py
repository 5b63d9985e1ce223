"""The health family's tables: every check, every transition, every notification sent.

- `mnw_health_checks`: one row per check of a service (a round checks every service once).
  `result` is what this check found (`up`, `degraded`, `down`); `status` is the service's
  state after it, Uptime Kuma style: a failed check turns an `up` service `down` only once
  `consecutive_failures` reaches HEALTH_DOWN_AFTER. A check inside a maintenance window
  (`in_maintenance`) carries the state over unchanged and is left out of the uptime figures.
- `mnw_health_transitions`: each change of a service's `status` (`from_status` NULL for
  its first), with the error of the check that caused it.
- `mnw_notifications`: one row per notification (its dedup key: a transition, a finished
  download, a dead job) and which of the NOTIFY_URLS already received it (digests, never
  the URLs), so that a retried or repeated job sends nothing twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    Identity,
    Index,
    Integer,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from medianest_workers.db.base import CURRENT_TIMESTAMP, Base, Timestamp3

HEALTH_STATUSES = ("up", "degraded", "down")
_STATUS_LIST = ", ".join(f"'{status}'" for status in HEALTH_STATUSES)


class HealthCheck(Base):
    __tablename__ = "mnw_health_checks"
    __table_args__ = (
        CheckConstraint(f"result IN ({_STATUS_LIST})", name="result"),
        CheckConstraint(f"status IN ({_STATUS_LIST})", name="status"),
        Index("mnw_health_checks_service_name_checked_at_idx", "service_name", "checked_at"),
        # Retention (maintenance cleanup).
        Index("mnw_health_checks_checked_at_idx", "checked_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    service_name: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    checked_at: Mapped[dt.datetime] = mapped_column(Timestamp3, nullable=False)
    result: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False)
    response_time_ms: Mapped[int | None] = mapped_column(Integer)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_class: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    cert_days_left: Mapped[float | None] = mapped_column(Double)
    in_maintenance: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )


class HealthTransition(Base):
    __tablename__ = "mnw_health_transitions"
    __table_args__ = (
        CheckConstraint(f"to_status IN ({_STATUS_LIST})", name="to_status"),
        Index("mnw_health_transitions_service_name_at_idx", "service_name", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    service_name: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[dt.datetime] = mapped_column(Timestamp3, nullable=False)
    from_status: Mapped[str | None] = mapped_column(Text)
    to_status: Mapped[str] = mapped_column(Text, nullable=False)
    #: The check that caused it (no FK: the history is pruned, the transitions are not).
    check_id: Mapped[int | None] = mapped_column(BigInteger)
    error_class: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)


class Notification(Base):
    __tablename__ = "mnw_notifications"

    dedup_key: Mapped[str] = mapped_column(Text, primary_key=True)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(
        Timestamp3, nullable=False, server_default=CURRENT_TIMESTAMP
    )
    #: sha256 prefixes of the NOTIFY_URLS that accepted it.
    delivered: Mapped[list[Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    sent_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
