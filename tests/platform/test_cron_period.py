"""A crontab Schedule's period is the shortest gap between its runs, whatever today's date."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery.schedules import crontab

from medianest_workers.platform.schedules import Schedule


@pytest.mark.parametrize(
    ("cron", "period"),
    [
        (crontab(minute="*/15"), dt.timedelta(minutes=15)),
        (crontab(minute=30, hour=3), dt.timedelta(days=1)),
        (crontab(minute=30, hour=3, day_of_week="1-6"), dt.timedelta(days=1)),
        (crontab(minute=30, hour=3, day_of_week="0"), dt.timedelta(weeks=1)),
        (crontab(minute=0, hour=2, day_of_month="1"), dt.timedelta(days=28)),
    ],
)
def test_cron_period(cron: crontab, period: dt.timedelta) -> None:
    entry = Schedule(
        name="t", kind="platform.noop", description="t", cron=cron, expires=dt.timedelta(minutes=1)
    )
    assert entry.period == period


def test_expires_must_be_shorter_than_a_cron_period() -> None:
    with pytest.raises(ValueError, match="shorter than its period"):
        Schedule(
            name="t",
            kind="platform.noop",
            description="t",
            cron=crontab(minute=30, hour=3),
            expires=dt.timedelta(days=1),
        )


def test_a_cron_schedule_does_not_configure_the_celery_app_at_import() -> None:
    """beat_schedule.py is imported before the settings may be ready (tests set them later)."""
    probe = (
        "import beat_schedule\n"
        "from medianest_workers.platform.celery_app import app\n"
        "assert any(entry.cron is not None for entry in beat_schedule.SCHEDULES)\n"
        "assert not app.configured, 'configured at import'\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", probe],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=True,
        timeout=60,
    )
