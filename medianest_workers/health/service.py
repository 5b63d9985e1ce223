"""A health round as a plain function: load the targets, probe them all, record, announce.

`check_all` reads every enabled `service_config` row (and, with HEALTH_PLATFORM_CHECKS, the
platform's own PostgreSQL, Redis and workers), probes them concurrently (probe.py), records
the round (recording.py), then, after the commit, writes the backend's Redis keys and emits
one `service.transition` event per change of state (the notifications listen to it).
Nothing here waits on a notification being sent.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medianest_workers.db.session import get_engine, session_scope
from medianest_workers.health import probe, recording
from medianest_workers.health.platform_checks import PLATFORM_PROBES
from medianest_workers.health.probe import PlatformProbe, ProbeConfig
from medianest_workers.health.recording import Recorded
from medianest_workers.health.redis_client import make_client
from medianest_workers.health.targets import CheckTarget, Kind, platform_targets, target_from_row
from medianest_workers.platform import events
from medianest_workers.platform.services import enabled_service_rows
from medianest_workers.settings import Settings, get_settings
from medianest_workers.timeutil import utcnow

log = logging.getLogger(__name__)

TRANSITION_EVENT = "service.transition"


@dataclass
class RoundReport:
    services: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    transitions: int = 0
    backend_keys_written: bool = True
    seconds: float = 0.0
    recorded: list[Recorded] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "services": self.services,
            "by_status": self.by_status,
            "transitions": self.transitions,
            "backend_keys_written": self.backend_keys_written,
            "seconds": round(self.seconds, 3),
        }


def probe_config(settings: Settings) -> ProbeConfig:
    return ProbeConfig(
        timeout=settings.health_timeout_seconds,
        degraded_ms=settings.health_degraded_ms,
        max_body_bytes=settings.health_max_body_bytes,
        concurrency=settings.health_max_concurrency,
    )


def load_targets(*, include_platform: bool) -> list[CheckTarget]:
    """Every enabled service_config row as a target (plus the platform's own parts)."""
    with session_scope() as session:
        targets = [target_from_row(row) for row in enabled_service_rows(session)]
    if include_platform:
        taken = {target.name for target in targets}
        targets += [target for target in platform_targets() if target.name not in taken]
    return targets


def check_all(
    *,
    settings: Settings | None = None,
    targets: Sequence[CheckTarget] | None = None,
    include_platform: bool | None = None,
    platform: Mapping[Kind, PlatformProbe] | None = None,
    now: dt.datetime | None = None,
) -> RoundReport:
    """One round (see the module docstring); `now` (naive UTC) is when the round checked."""
    settings = settings or get_settings()
    if include_platform is None:
        include_platform = settings.health_platform_checks
    now = now or utcnow()
    if targets is None:
        targets = load_targets(include_platform=include_platform)
    started = dt.datetime.now(dt.UTC)
    results = probe.run_round(targets, probe_config(settings), platform or PLATFORM_PROBES)
    recorded = recording.record_round(
        get_engine(),
        recording.results_by_name(targets, results),
        now=now,
        down_after=settings.health_down_after,
    )
    report = RoundReport(services=len(recorded), recorded=recorded)
    for one in recorded:
        report.by_status[one.status] = report.by_status.get(one.status, 0) + 1
    client = make_client(settings.require_redis_url())
    try:
        report.backend_keys_written = recording.write_backend_keys(client, recorded)
    finally:
        client.close()
    for one in recorded:
        if one.changed:
            report.transitions += 1
            events.emit(transition_event(one))
    report.seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
    return report


def transition_event(one: Recorded) -> events.Event:
    """The announcement of a change of state (no secret: names, states, the redacted error)."""
    error = recording.backend_value(one)["error"]
    summary = f"{one.name}: {one.previous_status} -> {one.status}"
    return events.Event(
        name=TRANSITION_EVENT,
        subject=f"service:{one.name}",
        summary=summary if error is None else f"{summary} ({error})",
        dedup_key=f"health.transition:{one.transition_id}",
        fields={
            "service": one.name,
            "from_status": one.previous_status,
            "to_status": one.status,
            "transition_id": one.transition_id,
            "consecutive_failures": one.consecutive_failures,
            "error": error if isinstance(error, str) else None,
        },
    )
