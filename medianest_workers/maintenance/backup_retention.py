"""Which backups to keep: generations by day, ISO week and month, as a pure function.

Keep the newest backup of each of the last `daily` calendar days (today included), of each of
the last `weekly` ISO weeks (this one included) and of each of the last `monthly` months
(this one included), all in UTC; delete the rest. Whatever the policy, the newest backup is
kept, and so is any backup dated after `now` (a clock that jumped back must not delete).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, kw_only=True)
class RetentionPolicy:
    daily: int = 7
    weekly: int = 4
    monthly: int = 6


def _day(moment: dt.datetime) -> tuple[int, ...]:
    return (moment.year, moment.month, moment.day)


def _iso_week(moment: dt.datetime) -> tuple[int, ...]:
    year, week, _ = moment.isocalendar()
    return (year, week)


def _month(moment: dt.datetime) -> tuple[int, ...]:
    return (moment.year, moment.month)


def _last_days(now: dt.datetime, count: int) -> set[tuple[int, ...]]:
    return {_day(now - dt.timedelta(days=back)) for back in range(count)}


def _last_weeks(now: dt.datetime, count: int) -> set[tuple[int, ...]]:
    return {_iso_week(now - dt.timedelta(weeks=back)) for back in range(count)}


def _last_months(now: dt.datetime, count: int) -> set[tuple[int, ...]]:
    months = set()
    year, month = now.year, now.month
    for _ in range(count):
        months.add((year, month))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months


def partition(
    backups: Iterable[tuple[K, dt.datetime]], *, now: dt.datetime, policy: RetentionPolicy
) -> tuple[list[K], list[K]]:
    """(keep, delete) of `(file, time)` pairs, each list in the input's order.

    Times are naive UTC (or aware, compared as they are with `now`); files must be distinct.
    """
    items = list(backups)
    newest_first = sorted(items, key=lambda item: item[1], reverse=True)
    keep: set[K] = {key for key, moment in items if moment > now}
    past = [(key, moment) for key, moment in newest_first if moment <= now]
    if past:
        keep.add(past[0][0])
    buckets: list[tuple[Callable[[dt.datetime], tuple[int, ...]], set[tuple[int, ...]]]] = [
        (_day, _last_days(now, policy.daily)),
        (_iso_week, _last_weeks(now, policy.weekly)),
        (_month, _last_months(now, policy.monthly)),
    ]
    for bucket_of, wanted in buckets:
        filled: set[tuple[int, ...]] = set()
        for key, moment in past:  # newest first: the first of a bucket is its newest
            bucket = bucket_of(moment)
            if bucket in wanted and bucket not in filled:
                filled.add(bucket)
                keep.add(key)
    kept = [key for key, _ in items if key in keep]
    deleted = [key for key, _ in items if key not in keep]
    return kept, deleted
