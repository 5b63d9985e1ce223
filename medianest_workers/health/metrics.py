"""Prometheus metrics of the service health checks, read from the history at scrape time.

Per service (label `service`), from its latest check:
- `mnw_service_up`: 1 unless the service is `down`;
- `mnw_service_degraded`: 1 when it is `degraded`;
- `mnw_service_response_time_seconds`: the latest check's response time;
- `mnw_service_consecutive_failures`: failed checks in a row;
- `mnw_service_certificate_days_left`: days until its https certificate expires (only for
  services whose certificate was read; negative once expired);
- `mnw_service_uptime_ratio{window="24h|7d|30d"}`: uptime as a ratio (absent: no checks).

A failing read logs a warning and yields nothing: the scrape itself never fails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from medianest_workers.health import queries
from medianest_workers.platform.metrics import DatabaseCollector

log = logging.getLogger(__name__)


class HealthCollector(DatabaseCollector):
    """Collects the metrics of the module docstring on every scrape."""

    def collect(self) -> Iterator[Metric]:
        try:
            with self.scrape_transaction() as connection:
                views = queries.services(connection)
        except Exception as exc:  # noqa: BLE001 - a scrape reports what it can, never fails
            log.warning("metrics: health read failed (%s)", type(exc).__name__)
            return
        up = GaugeMetricFamily("mnw_service_up", "1 unless the service is down", labels=["service"])
        degraded = GaugeMetricFamily(
            "mnw_service_degraded", "1 when the service is degraded", labels=["service"]
        )
        response = GaugeMetricFamily(
            "mnw_service_response_time_seconds",
            "Response time of the latest check",
            labels=["service"],
        )
        failures = GaugeMetricFamily(
            "mnw_service_consecutive_failures", "Failed checks in a row", labels=["service"]
        )
        cert = GaugeMetricFamily(
            "mnw_service_certificate_days_left",
            "Days until the service's TLS certificate expires",
            labels=["service"],
        )
        uptime = GaugeMetricFamily(
            "mnw_service_uptime_ratio",
            "Share of checks the service was not down, per window",
            labels=["service", "window"],
        )
        for view in views:
            latest = view.latest
            up.add_metric([view.name], 0.0 if latest["status"] == "down" else 1.0)
            degraded.add_metric([view.name], 1.0 if latest["status"] == "degraded" else 0.0)
            if latest["response_time_ms"] is not None:
                response.add_metric([view.name], latest["response_time_ms"] / 1000.0)
            failures.add_metric([view.name], float(latest["consecutive_failures"]))
            if latest["cert_days_left"] is not None:
                cert.add_metric([view.name], float(latest["cert_days_left"]))
            for window, value in view.uptime.items():
                if value is not None:
                    uptime.add_metric([view.name, window], value / 100.0)
        yield from (up, degraded, response, failures, cert, uptime)
