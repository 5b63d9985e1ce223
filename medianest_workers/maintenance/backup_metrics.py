"""Prometheus metrics of the backups, read from mnw_backups at scrape time.

- `mnw_backup_last_success_age_seconds`: how old the newest good backup is (started, that is
  its snapshot); `+Inf` when there is none, so that an age alert fires on a fresh install too;
- `mnw_backup_last_success_size_bytes`: its size (absent when there is none);
- `mnw_backup_last_restore_check_age_seconds`: how long ago a restore check last succeeded
  (`+Inf` when none did).

A good backup is `succeeded`, verified, and not contradicted by a restore check. A failing
read logs a warning and yields nothing: the scrape itself never fails (api/app.py registers
this next to the platform's LedgerCollector, which reports the database's reachability).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import text

from medianest_workers.platform.ledger import NOW_UTC
from medianest_workers.platform.metrics import DatabaseCollector

log = logging.getLogger(__name__)

_LAST_GOOD = text(
    f"""
    SELECT
        (SELECT extract(epoch FROM {NOW_UTC} - started_at) FROM mnw_backups
         WHERE state = 'succeeded' AND verified_at IS NOT NULL
           AND restore_check_ok IS NOT FALSE
         ORDER BY started_at DESC LIMIT 1) AS age,
        (SELECT size_bytes FROM mnw_backups
         WHERE state = 'succeeded' AND verified_at IS NOT NULL
           AND restore_check_ok IS NOT FALSE
         ORDER BY started_at DESC LIMIT 1) AS size,
        (SELECT extract(epoch FROM {NOW_UTC} - max(restore_checked_at)) FROM mnw_backups
         WHERE restore_check_ok) AS check_age
    """
)


class BackupCollector(DatabaseCollector):
    """Collects the metrics of the module docstring on every scrape."""

    def collect(self) -> Iterator[Metric]:
        try:
            with self.scrape_transaction() as connection:
                age, size, check_age = connection.execute(_LAST_GOOD).one()
        except Exception as exc:  # noqa: BLE001 - a scrape reports what it can, never fails
            log.warning("metrics: backups read failed (%s)", type(exc).__name__)
            return
        yield GaugeMetricFamily(
            "mnw_backup_last_success_age_seconds",
            "Age of the newest verified backup (+Inf: none)",
            value=math.inf if age is None else float(age),
        )
        if size is not None:
            yield GaugeMetricFamily(
                "mnw_backup_last_success_size_bytes",
                "Size of the newest verified backup",
                value=float(size),
            )
        yield GaugeMetricFamily(
            "mnw_backup_last_restore_check_age_seconds",
            "Time since a backup was last restored and its row counts matched (+Inf: never)",
            value=math.inf if check_age is None else float(check_age),
        )
