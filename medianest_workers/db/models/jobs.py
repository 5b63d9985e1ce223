"""The job ledger: one row per job, the truth about it whatever Redis does (docs/architecture.md).

Workers move a row queued → running → succeeded / failed / dead; `cancelled` is set from
outside. An idempotency key names one effect: it is unique among jobs that are queued,
running or succeeded, so a second enqueue with it returns the first job; once a job failed,
died or was cancelled its key may enqueue a fresh one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from medianest_workers.db.base import CURRENT_TIMESTAMP, Base, Timestamp3
from medianest_workers.db.job_states import KEY_HOLDING_STATES, JobState

_STATE_LIST = ", ".join(f"'{state.value}'" for state in JobState)
_KEY_HOLDING_LIST = ", ".join(f"'{state.value}'" for state in KEY_HOLDING_STATES)
KEY_HOLDING_PREDICATE = f"idempotency_key IS NOT NULL AND state IN ({_KEY_HOLDING_LIST})"


class Job(Base):
    __tablename__ = "mnw_jobs"
    __table_args__ = (
        CheckConstraint(f"state IN ({_STATE_LIST})", name="state"),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
        Index(
            "mnw_jobs_idempotency_key_live_key",
            "idempotency_key",
            unique=True,
            postgresql_where=text(KEY_HOLDING_PREDICATE),
        ),
        Index("mnw_jobs_state_published_at_idx", "state", "published_at"),
        Index("mnw_jobs_kind_enqueued_at_idx", "kind", "enqueued_at"),
        Index("mnw_jobs_enqueued_at_idx", "enqueued_at"),
        Index("mnw_jobs_schedule_name_enqueued_at_idx", "schedule_name", "enqueued_at"),
        # Retention (maintenance cleanup) and the /metrics duration query.
        Index(
            "mnw_jobs_finished_at_idx",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)  # the Celery task id
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    queue: Mapped[str] = mapped_column(Text, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'queued'"))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_class: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[str] = mapped_column(Text, nullable=False)
    #: Who asked: "service:<name>", "beat", "user:<id>", "cli".
    enqueued_by: Mapped[str] = mapped_column(Text, nullable=False)
    #: The MediaNest user the job acts for, when there is one (no FK: users are the backend's).
    user_id: Mapped[str | None] = mapped_column(Text)
    schedule_name: Mapped[str | None] = mapped_column(Text)
    #: "scheduled" or "manual" for jobs enqueued from a schedule.
    trigger: Mapped[str | None] = mapped_column(Text)
    #: hostname:pid of the worker process running the job.
    worker: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(
        nullable=False, server_default=text("false"), default=False
    )
    enqueued_at: Mapped[dt.datetime] = mapped_column(
        Timestamp3, nullable=False, server_default=CURRENT_TIMESTAMP
    )
    #: Last time a message for this job was handed to the broker (NULL: the publish failed).
    published_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
    #: A job still queued after this is not run: it ends `cancelled` with error `Expired`.
    expires_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
