"""Time as the MediaNest database holds it: naive UTC datetimes with millisecond precision."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """Now as a naive UTC datetime with millisecond precision, as the backend stores it."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def aware_utc(moment: dt.datetime | None) -> dt.datetime | None:
    """A datetime the database holds (naive UTC) as an aware UTC one; aware ones unchanged."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=dt.UTC)


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """A datetime as the database holds it: aware ones converted to UTC, naive taken as UTC."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)
