"""Recurring jobs: how beat_schedule.py declares them (`Schedule`) and how they are loaded.

A schedule enqueues its job kind through the ledger (never straight onto a queue) with the
idempotency key `beat:<name>:<slot>`, where the slot is the due time rounded down to the
schedule's period: a second beat firing the same slot enqueues nothing (schedule_runs.py).
Light on purpose: every process configures Celery's beat_schedule from it.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import importlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.schedules import schedule as interval

from medianest_workers.settings import get_settings
from medianest_workers.timeutil import naive_utc


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


@functools.cache
def _probe_app() -> Celery:
    """A bare UTC app for crontab arithmetic: asking the real app would configure it at import
    time (a Schedule is built when beat_schedule.py is imported), before the settings are."""
    probe = Celery("mnw-cron-probe", set_as_current=False)
    probe.conf.update(timezone="UTC", enable_utc=True)
    return probe


def _shortest_cron_gap(cron: crontab) -> dt.timedelta:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    runs = []
    moment = start
    probe = copy.copy(cron)
    probe.app = _probe_app()
    for _ in range(50):
        # remaining_delta, not remaining_estimate: the latter counts from the real now.
        last_run, delta, _now = probe.remaining_delta(moment)
        moment = last_run + delta + dt.timedelta(seconds=1)
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
