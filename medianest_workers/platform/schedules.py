"""Recurring jobs: how beat_schedule.py declares them and what the API reports about them.

A schedule enqueues its job kind through the ledger (never straight onto a queue) with the
idempotency key `beat:<name>:<slot>`, where the slot is the due time rounded down to the
schedule's period: a second beat firing the same slot enqueues nothing. Manual runs are
`trigger="manual"`. Last run, duration and result come from the ledger rows.
"""

from __future__ import annotations

import datetime as dt
import importlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from celery.schedules import crontab
from celery.schedules import schedule as interval
from sqlalchemy import select
from sqlalchemy.orm import Session

from medianest_workers.db.base import naive_utc, utcnow
from medianest_workers.db.models.jobs import Job
from medianest_workers.platform import correlation
from medianest_workers.platform.enqueue import Enqueued, enqueue
from medianest_workers.settings import get_settings


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """One recurring job: `every` (an interval) or `cron` (a crontab), and an expiry."""

    name: str
    kind: str
    description: str
    expires: dt.timedelta
    every: dt.timedelta | None = None
    cron: crontab | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ValueError(f"schedule {self.name}: give exactly one of every= or cron=")
        if self.expires <= dt.timedelta(0) or self.expires >= self.period:
            raise ValueError(f"schedule {self.name}: expires must be shorter than its period")

    @property
    def period(self) -> dt.timedelta:
        """The interval, or for a crontab the shortest gap between two runs (a minute or more)."""
        if self.every is not None:
            return self.every
        assert self.cron is not None  # noqa: S101 - __post_init__ guarantees it
        return _shortest_cron_gap(self.cron)

    @property
    def celery_schedule(self) -> interval | crontab:
        if self.every is not None:
            return interval(run_every=self.every)
        assert self.cron is not None  # noqa: S101
        return self.cron

    def describe(self) -> str:
        if self.every is not None:
            return f"every {int(self.every.total_seconds())} s"
        return f"cron {self.cron}"

    def slot(self, due: dt.datetime) -> dt.datetime:
        """The slot a due time belongs to: rounded down to the period (naive UTC)."""
        due = naive_utc(due)
        seconds = int(self.period.total_seconds()) if self.every is not None else 60
        epoch = int(due.replace(tzinfo=dt.UTC).timestamp())
        return dt.datetime.fromtimestamp(epoch - epoch % seconds, dt.UTC).replace(tzinfo=None)

    def idempotency_key(self, due: dt.datetime) -> str:
        return f"beat:{self.name}:{self.slot(due).isoformat()}"


def _shortest_cron_gap(cron: crontab) -> dt.timedelta:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    runs = []
    moment = start
    for _ in range(50):
        moment = moment + cron.remaining_estimate(moment) + dt.timedelta(seconds=1)
        runs.append(moment)
    gaps = [later - earlier for earlier, later in itertools.pairwise(runs)]
    return max(min(gaps), dt.timedelta(minutes=1))


def load_schedules() -> dict[str, Schedule]:
    """Every schedule of beat_schedule.py, by name."""
    module = importlib.import_module(get_settings().beat_schedule_module)
    schedules: list[Schedule] = module.SCHEDULES
    by_name = {entry.name: entry for entry in schedules}
    if len(by_name) != len(schedules):
        raise ValueError("beat_schedule.py: schedule names must be unique")
    return by_name


def celery_beat_schedule() -> dict[str, dict[str, Any]]:
    """beat_schedule.py in the shape of Celery's `beat_schedule` setting."""
    return {
        entry.name: {"task": entry.kind, "schedule": entry.celery_schedule, "args": ()}
        for entry in load_schedules().values()
    }


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
    """Enqueue schedule `name` now (a manual run); KeyError for an unknown name."""
    entry = load_schedules()[name]
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
