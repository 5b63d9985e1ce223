"""Prometheus metrics read from the ledger and the broker at scrape time.

- `mnw_jobs{kind,state}`: jobs in the ledger by kind and state (every registered kind and
  every state is reported, zeros included, so series do not vanish);
- `mnw_job_duration_seconds{kind,quantile}` (+ `_count`, `_sum`): run time of the last
  attempt of jobs that finished in the last 15 minutes, quantiles by `percentile_cont`;
- `mnw_jobs_finished_recent{kind,state}`: jobs that ended in the last 15 minutes, by end state
  (succeeded, failed, dead, cancelled; zeros included): the failure rate and the dead jobs
  of the alert rules (ops/prometheus/alerts.yml) are ratios and counts of this window;
- `mnw_queue_length{queue}`: messages waiting in each broker queue (Redis: all priority
  sub-lists; RabbitMQ: the queue's message count);
- `mnw_queue_consumers{queue}`: live worker nodes consuming each queue (presence records);
- `mnw_queue_oldest_queued_age_seconds{queue}`: age of the oldest `queued` job of each queue
  in the ledger (0 when none is queued);
- `mnw_metrics_source_up{source}`: 1 when the database / broker answered this scrape.

Only counts and timings are exposed: no payloads, ids or keys. The database reads run under
a statement timeout, the Redis reads under the client's socket timeout, and a failing source
turns its `source_up` to 0 instead of failing the scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, text

from medianest_workers.db.job_states import TERMINAL_STATES, JobState
from medianest_workers.db.session import get_engine
from medianest_workers.platform.celery_app import app as celery_app
from medianest_workers.platform.celery_app import is_amqp
from medianest_workers.platform.ledger import NOW_UTC
from medianest_workers.platform.queue_stats import amqp_lengths, consumers, redis_lengths
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import all_specs
from medianest_workers.settings import get_settings

log = logging.getLogger(__name__)

DURATION_WINDOW_SECONDS = 15 * 60
QUANTILES = (0.5, 0.9, 0.99)
SCRAPE_STATEMENT_TIMEOUT_MS = 5_000

_COUNTS = text("SELECT kind, state, count(*) AS jobs FROM mnw_jobs GROUP BY kind, state")
_DURATIONS = text(
    f"""
    SELECT kind, count(*) AS finished, sum(seconds) AS total,
        percentile_cont(CAST(:quantiles AS double precision[]))
            WITHIN GROUP (ORDER BY seconds) AS quantiles
    FROM (
        SELECT kind, extract(epoch FROM finished_at - started_at) AS seconds
        FROM mnw_jobs
        WHERE finished_at >= {NOW_UTC} - make_interval(secs => :window)
          AND started_at IS NOT NULL AND finished_at >= started_at
    ) AS finished_jobs
    GROUP BY kind
    """
)


_FINISHED_RECENT = text(
    f"""
    SELECT kind, state, count(*) AS jobs FROM mnw_jobs
    WHERE finished_at >= {NOW_UTC} - make_interval(secs => :window)
      AND state IN ({", ".join(f"'{state.value}'" for state in sorted(TERMINAL_STATES))})
    GROUP BY kind, state
    """
)

_OLDEST_QUEUED = text(
    f"""
    SELECT queue, extract(epoch FROM {NOW_UTC} - min(enqueued_at)) AS age
    FROM mnw_jobs WHERE state = 'queued' GROUP BY queue
    """
)


class DatabaseCollector(Collector):
    """A collector that reads the database at scrape time, each read bounded in time.

    Subclasses read inside `self.scrape_transaction()`: one transaction whose statements give up
    after `statement_timeout_ms`, so a lock held elsewhere slows a scrape, never hangs it.
    Registering touches nothing (`describe` is empty).
    """

    def __init__(
        self,
        *,
        engine: Callable[[], Engine] = get_engine,
        statement_timeout_ms: int = SCRAPE_STATEMENT_TIMEOUT_MS,
    ) -> None:
        self._engine = engine
        self._timeout_ms = statement_timeout_ms

    @contextmanager
    def scrape_transaction(self) -> Iterator[Connection]:
        with self._engine().begin() as connection:
            connection.execute(text(f"SET LOCAL statement_timeout = {int(self._timeout_ms)}"))
            yield connection

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: registering must not touch the database."""
        return iter(())


class LedgerCollector(DatabaseCollector):
    """Collects the metrics of the module docstring on every scrape."""

    def __init__(
        self,
        *,
        redis_client: redis.Redis,
        key_prefix: str,
        engine: Callable[[], Engine] = get_engine,
        statement_timeout_ms: int = SCRAPE_STATEMENT_TIMEOUT_MS,
    ) -> None:
        super().__init__(engine=engine, statement_timeout_ms=statement_timeout_ms)
        self._redis = redis_client
        self._prefix = key_prefix

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "mnw_metrics_source_up",
            "1 when the source answered this scrape, 0 when it failed",
            labels=["source"],
        )
        try:
            counts, durations, finished, oldest = self._read_ledger()
        except Exception as exc:  # noqa: BLE001 - a scrape reports the outage, never fails
            log.warning("metrics: ledger read failed (%s)", type(exc).__name__)
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            yield self._jobs_metric(counts)
            yield self._duration_metric(durations)
            yield self._finished_metric(finished)
            ages = {queue.value: 0.0 for queue in Queue}
            ages.update({queue: max(0.0, float(age)) for queue, age in oldest if queue in ages})
            family = GaugeMetricFamily(
                "mnw_queue_oldest_queued_age_seconds",
                "Age of the oldest queued job of the queue in the ledger (0: none queued)",
                labels=["queue"],
            )
            for queue, age in ages.items():
                family.add_metric([queue], age)
            yield family
        try:
            lengths = self._queue_lengths()
        except Exception as exc:  # noqa: BLE001 - as above
            log.warning("metrics: queue length read failed (%s)", type(exc).__name__)
            up.add_metric(["broker"], 0)
        else:
            up.add_metric(["broker"], 1)
            queues = GaugeMetricFamily(
                "mnw_queue_length", "Messages waiting in the broker queue", labels=["queue"]
            )
            for queue, length in lengths.items():
                queues.add_metric([queue], length)
            yield queues
        try:
            counts_by_queue = consumers(self._redis, self._prefix)
        except Exception as exc:  # noqa: BLE001 - as above
            log.warning("metrics: presence read failed (%s)", type(exc).__name__)
        else:
            family = GaugeMetricFamily(
                "mnw_queue_consumers", "Live worker nodes consuming the queue", labels=["queue"]
            )
            for queue, (nodes, _processes) in counts_by_queue.items():
                family.add_metric([queue], nodes)
            yield family
        yield up

    def _read_ledger(self) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        with self.scrape_transaction() as connection:
            counts = connection.execute(_COUNTS).all()
            durations = connection.execute(
                _DURATIONS, {"quantiles": list(QUANTILES), "window": DURATION_WINDOW_SECONDS}
            ).all()
            finished = connection.execute(
                _FINISHED_RECENT, {"window": DURATION_WINDOW_SECONDS}
            ).all()
            oldest = connection.execute(_OLDEST_QUEUED).all()
        return counts, durations, finished, oldest

    def _queue_lengths(self) -> dict[str, int]:
        if is_amqp(get_settings().require_broker_url()):
            return amqp_lengths(celery_app)
        return redis_lengths(self._redis, self._prefix)

    @staticmethod
    def _jobs_metric(counts: list[Any]) -> GaugeMetricFamily:
        totals: dict[tuple[str, str], int] = {
            (spec.kind, state.value): 0 for spec in all_specs() for state in JobState
        }
        for kind, state, jobs in counts:
            totals[(kind, state)] = int(jobs)
        family = GaugeMetricFamily(
            "mnw_jobs", "Jobs in the ledger by kind and state", labels=["kind", "state"]
        )
        for (kind, state), jobs in sorted(totals.items()):
            family.add_metric([kind, state], jobs)
        return family

    @staticmethod
    def _finished_metric(finished: list[Any]) -> GaugeMetricFamily:
        totals: dict[tuple[str, str], int] = {
            (spec.kind, state.value): 0 for spec in all_specs() for state in TERMINAL_STATES
        }
        for kind, state, jobs in finished:
            totals[(kind, state)] = int(jobs)
        family = GaugeMetricFamily(
            "mnw_jobs_finished_recent",
            f"Jobs that ended in the last {DURATION_WINDOW_SECONDS // 60} minutes, by end state",
            labels=["kind", "state"],
        )
        for (kind, state), jobs in sorted(totals.items()):
            family.add_metric([kind, state], jobs)
        return family

    @staticmethod
    def _duration_metric(durations: list[Any]) -> Metric:
        family = Metric(
            "mnw_job_duration_seconds",
            f"Run time of the last attempt of jobs finished in the last "
            f"{DURATION_WINDOW_SECONDS // 60} minutes",
            "summary",
        )
        for kind, finished, total, quantiles in durations:
            for quantile, seconds in zip(QUANTILES, quantiles, strict=True):
                family.add_sample(
                    "mnw_job_duration_seconds",
                    {"kind": kind, "quantile": str(quantile)},
                    float(seconds),
                )
            family.add_sample("mnw_job_duration_seconds_count", {"kind": kind}, float(finished))
            family.add_sample("mnw_job_duration_seconds_sum", {"kind": kind}, float(total))
        return family
