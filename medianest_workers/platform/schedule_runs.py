"""Runs of recurring jobs: enqueue a schedule's slot (beat) or a manual run, and report each
schedule's last run, duration, result and next run from the ledger rows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from medianest_workers import correlation
from medianest_workers.db.models.jobs import Job
from medianest_workers.platform.enqueue import Enqueued, enqueue
from medianest_workers.platform.errors import UnknownScheduleError
from medianest_workers.platform.schedules import Schedule, load_schedules
from medianest_workers.timeutil import naive_utc, utcnow


def enqueue_slot(entry: Schedule, due: dt.datetime) -> Enqueued:
    """Enqueue the run of `entry` due at `due`, at most once per slot."""
    return enqueue(
        entry.kind,
        entry.payload,
        idempotency_key=entry.idempotency_key(due),
        enqueued_by="beat",
        schedule_name=entry.name,
        trigger="scheduled",
        expires_in=entry.expires.total_seconds(),
    )


def run_now(name: str, *, correlation_id: str | None = None) -> Enqueued:
    """Enqueue schedule `name` now (a manual run); UnknownScheduleError for an unknown name."""
    entry = load_schedules().get(name)
    if entry is None:
        raise UnknownScheduleError(name)
    return enqueue(
        entry.kind,
        entry.payload,
        enqueued_by="manual",
        correlation_id=correlation_id or correlation.new_correlation_id(),
        schedule_name=entry.name,
        trigger="manual",
        expires_in=entry.expires.total_seconds(),
    )


@dataclass(frozen=True)
class ScheduleStatus:
    name: str
    kind: str
    description: str
    schedule: str
    last_run_at: dt.datetime | None
    next_run_at: dt.datetime
    last_duration_seconds: float | None
    last_trigger: str | None
    last_state: str | None
    last_job_id: str | None


def schedule_statuses(session: Session) -> list[ScheduleStatus]:
    """Last run (from the ledger) and next run of every schedule."""
    statuses = []
    for entry in load_schedules().values():
        last = session.execute(
            select(Job)
            .where(Job.schedule_name == entry.name)
            .order_by(Job.enqueued_at.desc())
            .limit(1)
        ).scalar_one_or_none()
        last_scheduled = session.execute(
            select(Job.enqueued_at)
            .where(Job.schedule_name == entry.name, Job.trigger == "scheduled")
            .order_by(Job.enqueued_at.desc())
            .limit(1)
        ).scalar_one_or_none()
        statuses.append(
            ScheduleStatus(
                name=entry.name,
                kind=entry.kind,
                description=entry.description,
                schedule=entry.describe(),
                last_run_at=last.enqueued_at if last else None,
                next_run_at=_next_run(entry, last_scheduled),
                last_duration_seconds=_duration(last),
                last_trigger=last.trigger if last else None,
                last_state=last.state if last else None,
                last_job_id=last.id if last else None,
            )
        )
    return statuses


def _next_run(entry: Schedule, last_scheduled: dt.datetime | None) -> dt.datetime:
    now = utcnow()
    if last_scheduled is None:
        return now
    remaining = entry.celery_schedule.remaining_estimate(last_scheduled.replace(tzinfo=dt.UTC))
    return max(now, naive_utc(last_scheduled.replace(tzinfo=dt.UTC) + remaining))


def _duration(job: Job | None) -> float | None:
    if job is None or job.started_at is None or job.finished_at is None:
        return None
    return (job.finished_at - job.started_at).total_seconds()
