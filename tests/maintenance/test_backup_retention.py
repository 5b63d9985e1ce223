"""Retention by generation (backup_retention.partition): a pure function on a fake clock."""

from __future__ import annotations

import datetime as dt

from medianest_workers.maintenance.backup_retention import RetentionPolicy, partition

NOW = dt.datetime(2026, 12, 3, 12, 0)  # a Thursday; ISO week 49 runs Mon 30 Nov - Sun 6 Dec
POLICY = RetentionPolicy(daily=7, weekly=4, monthly=6)


def nightly(first: dt.datetime, last: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """One dated file a night at 03:30, named by its date."""
    files = []
    day = first
    while day <= last:
        files.append((f"{day:%Y-%m-%d}.dump", day))
        day += dt.timedelta(days=1)
    return files


def test_a_year_of_nightly_backups_keeps_days_weeks_and_months() -> None:
    files = nightly(dt.datetime(2025, 12, 1, 3, 30), dt.datetime(2026, 12, 3, 3, 30))
    keep, delete = partition(files, now=NOW, policy=POLICY)
    assert keep == [
        "2026-07-31.dump",  # months: the newest of Jul, Aug, Sep, Oct
        "2026-08-31.dump",
        "2026-09-30.dump",
        "2026-10-31.dump",
        "2026-11-15.dump",  # weeks 46 and 47 (Sundays); weeks 48 and 49 are days already
        "2026-11-22.dump",
        "2026-11-27.dump",  # the last seven days (Nov 30 is also November's newest)
        "2026-11-28.dump",
        "2026-11-29.dump",
        "2026-11-30.dump",
        "2026-12-01.dump",
        "2026-12-02.dump",
        "2026-12-03.dump",
    ]
    assert len(keep) + len(delete) == len(files)
    assert set(keep).isdisjoint(delete)


def test_the_newest_of_a_day_is_the_one_kept() -> None:
    files = [
        ("morning", dt.datetime(2026, 12, 2, 3, 30)),
        ("evening", dt.datetime(2026, 12, 2, 21, 0)),
        ("today", dt.datetime(2026, 12, 3, 3, 30)),
    ]
    keep, delete = partition(files, now=NOW, policy=RetentionPolicy(daily=2, weekly=0, monthly=0))
    assert keep == ["evening", "today"]
    assert delete == ["morning"]


def test_weeks_are_iso_weeks_across_a_year_boundary() -> None:
    now = dt.datetime(2027, 1, 2, 12, 0)  # Saturday of ISO week 53 of 2026
    files = [
        ("w52-sun", dt.datetime(2026, 12, 27, 3, 30)),
        ("w53-mon", dt.datetime(2026, 12, 28, 3, 30)),
        ("w53-fri", dt.datetime(2027, 1, 1, 3, 30)),
        ("w51-sat", dt.datetime(2026, 12, 19, 3, 30)),
    ]
    keep, _ = partition(files, now=now, policy=RetentionPolicy(daily=0, weekly=2, monthly=0))
    assert sorted(keep) == ["w52-sun", "w53-fri"]


def test_months_count_back_across_a_year() -> None:
    now = dt.datetime(2026, 2, 10)
    files = [
        ("2025-11", dt.datetime(2025, 11, 30)),
        ("2025-12-a", dt.datetime(2025, 12, 1)),
        ("2025-12-b", dt.datetime(2025, 12, 31)),
        ("2026-01", dt.datetime(2026, 1, 15)),
        ("2026-02", dt.datetime(2026, 2, 1)),
    ]
    keep, delete = partition(files, now=now, policy=RetentionPolicy(daily=0, weekly=0, monthly=3))
    assert keep == ["2025-12-b", "2026-01", "2026-02"]
    assert delete == ["2025-11", "2025-12-a"]


def test_the_newest_backup_survives_any_policy_and_stale_clocks() -> None:
    files = [("old", dt.datetime(2020, 1, 1)), ("older", dt.datetime(2019, 1, 1))]
    keep, delete = partition(files, now=NOW, policy=RetentionPolicy(daily=0, weekly=0, monthly=0))
    assert keep == ["old"] and delete == ["older"]


def test_backups_dated_after_now_are_kept() -> None:
    files = [("future", NOW + dt.timedelta(days=3)), ("today", NOW - dt.timedelta(hours=1))]
    keep, delete = partition(files, now=NOW, policy=RetentionPolicy(daily=1, weekly=0, monthly=0))
    assert keep == ["future", "today"] and delete == []


def test_nothing_to_keep_or_delete() -> None:
    assert partition([], now=NOW, policy=POLICY) == ([], [])
