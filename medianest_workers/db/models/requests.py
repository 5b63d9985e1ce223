"""The requests family's tables: where the Overseerr pull sync stands, and push attempts.

- `mnw_request_sync_state`: one row per service (`overseerr`). `watermark` is the newest
  `updatedAt` (naive UTC) of a walk that reached its end; the next walk stops once it passes
  it (minus an overlap). Written only after the walk's last page committed.
- `mnw_request_pushes`: one row per local `media_requests` row submitted to Overseerr. It is
  written (`submitting`, attempts + 1) and committed *before* the POST, so a push that died
  between Overseerr's answer and our commit is known to have maybe happened: the next attempt
  looks for the request in Overseerr before creating one (requests/push.py).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from medianest_workers.db.base import CURRENT_TIMESTAMP, Base, Timestamp3


class RequestSyncState(Base):
    __tablename__ = "mnw_request_sync_state"

    service_name: Mapped[str] = mapped_column(Text, primary_key=True)
    watermark: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
    last_walk_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
    last_full_walk_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
    updated_at: Mapped[dt.datetime] = mapped_column(
        Timestamp3, nullable=False, server_default=CURRENT_TIMESTAMP
    )


class RequestPush(Base):
    __tablename__ = "mnw_request_pushes"

    media_request_id: Mapped[str] = mapped_column(Text, primary_key=True)
    #: submitting (a POST may have happened), linked (overseerr_id written), skipped.
    state: Mapped[str] = mapped_column(Text, nullable=False)
    overseerr_request_id: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(
        Timestamp3, nullable=False, server_default=CURRENT_TIMESTAMP
    )
