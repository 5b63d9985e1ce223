"""Record a round: each service's new state, its history row, its transition, the backend's rows.

`decide` is the Uptime Kuma semantics as a plain function: a passing check (`up` or
`degraded`) sets the state at once; a failing one counts, and the service turns `down` only
when HEALTH_DOWN_AFTER checks in a row failed; before that it keeps its state (a service
never seen before is `degraded` meanwhile: known to be failing, not yet down). A check inside
a maintenance window changes nothing: state and count carry over.

`record_round` writes, in one transaction (under an advisory lock, so that two rounds never
interleave): one `mnw_health_checks` row per service, a `mnw_health_transitions` row when its
state changed, and the backend's `service_status` row (upserted on `service_name`:
`status`, `response_time_ms`, `last_check_at`, `uptime_percentage` = 24 h).
After the commit, `write_backend_keys` sets `service:health:<name>` (the backend's JSON
shape, 300 s TTL; written on purpose outside our prefix, medianest-interop.md section 5).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import redis
from sqlalchemy import Connection, Engine, text
from sqlalchemy.dialects.postgresql import insert

from medianest_workers.db.locks import AdvisoryLock
from medianest_workers.db.models.medianest import ServiceStatus
from medianest_workers.health.probe import DEGRADED, DOWN, CheckResult
from medianest_workers.health.targets import CheckTarget
from medianest_workers.health.uptime import Uptime, uptime_windows

log = logging.getLogger(__name__)

#: The backend reads these keys (medianest-interop.md section 5).
BACKEND_KEY = "service:health:{name}"
BACKEND_KEY_TTL_SECONDS = 300


@dataclass(frozen=True)
class Previous:
    status: str
    consecutive_failures: int


def decide(
    previous: Previous | None, result: CheckResult, *, down_after: int, in_maintenance: bool
) -> tuple[str, int]:
    """(the service's status after this check, its consecutive failures); see the docstring."""
    if in_maintenance:
        if previous is None:
            return (DEGRADED if result.failed else result.result), 0
        return previous.status, previous.consecutive_failures
    if not result.failed:
        return result.result, 0
    failures = (previous.consecutive_failures if previous else 0) + 1
    if failures >= down_after:
        return DOWN, failures
    return (previous.status if previous else DEGRADED), failures


@dataclass(frozen=True)
class Recorded:
    """One service's outcome of a round."""

    name: str
    kind: str
    check_id: int
    checked_at: dt.datetime
    result: CheckResult
    status: str
    consecutive_failures: int
    in_maintenance: bool
    previous_status: str | None
    transition_id: int | None
    uptime: Uptime

    @property
    def changed(self) -> bool:
        """A transition from a known state (a service's first state is no transition)."""
        return self.transition_id is not None and self.previous_status is not None


_PREVIOUS = text(
    """
    SELECT DISTINCT ON (service_name) service_name, status, consecutive_failures
    FROM mnw_health_checks WHERE service_name = ANY(:names)
    ORDER BY service_name, checked_at DESC, id DESC
    """
)
_INSERT_CHECK = text(
    """
    INSERT INTO mnw_health_checks (service_name, kind, checked_at, result, status,
        consecutive_failures, response_time_ms, http_status, error_class, error_message,
        cert_days_left, in_maintenance)
    VALUES (:service_name, :kind, :checked_at, :result, :status, :consecutive_failures,
        :response_time_ms, :http_status, :error_class, :error_message, :cert_days_left,
        :in_maintenance)
    RETURNING id
    """
)
_INSERT_TRANSITION = text(
    """
    INSERT INTO mnw_health_transitions (service_name, at, from_status, to_status, check_id,
        error_class, error_message)
    VALUES (:service_name, :at, :from_status, :to_status, :check_id, :error_class,
        :error_message)
    RETURNING id
    """
)


def record_round(
    engine: Engine,
    checked: Sequence[tuple[CheckTarget, CheckResult]],
    *,
    now: dt.datetime,
    down_after: int,
) -> list[Recorded]:
    """Write the round (see the module docstring); what was recorded, by service."""
    names = [target.name for target, _ in checked]
    recorded: list[Recorded] = []
    with engine.begin() as connection:
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": AdvisoryLock.HEALTH_ROUND}
        )
        previous = {
            row.service_name: Previous(row.status, row.consecutive_failures)
            for row in connection.execute(_PREVIOUS, {"names": names})
        }
        for target, result in checked:
            maintenance = target.in_maintenance(now)
            before = previous.get(target.name)
            status, failures = decide(
                before, result, down_after=down_after, in_maintenance=maintenance
            )
            check_id = _insert_check(
                connection,
                target=target,
                result=result,
                now=now,
                status=status,
                failures=failures,
                maintenance=maintenance,
            )
            transition_id = None
            if before is None or before.status != status:
                transition_id = connection.execute(
                    _INSERT_TRANSITION,
                    {
                        "service_name": target.name,
                        "at": now,
                        "from_status": before.status if before else None,
                        "to_status": status,
                        "check_id": check_id,
                        "error_class": result.error_class,
                        "error_message": result.error_message,
                    },
                ).scalar_one()
            recorded.append(
                Recorded(
                    name=target.name,
                    kind=target.kind.value,
                    check_id=check_id,
                    checked_at=now,
                    result=result,
                    status=status,
                    consecutive_failures=failures,
                    in_maintenance=maintenance,
                    previous_status=before.status if before else None,
                    transition_id=transition_id,
                    uptime={},
                )
            )
        uptimes = uptime_windows(connection, names, now=now)
        recorded = [_with_uptime(one, uptimes[one.name]) for one in recorded]
        _upsert_service_status(connection, recorded)
    return recorded


def _insert_check(
    connection: Connection,
    *,
    target: CheckTarget,
    result: CheckResult,
    now: dt.datetime,
    status: str,
    failures: int,
    maintenance: bool,
) -> int:
    return connection.execute(
        _INSERT_CHECK,
        {
            "service_name": target.name,
            "kind": target.kind.value,
            "checked_at": now,
            "result": result.result,
            "status": status,
            "consecutive_failures": failures,
            "response_time_ms": result.response_time_ms,
            "http_status": result.http_status,
            "error_class": result.error_class,
            "error_message": result.error_message,
            "cert_days_left": result.cert_days_left,
            "in_maintenance": maintenance,
        },
    ).scalar_one()


def _with_uptime(one: Recorded, uptime: Uptime) -> Recorded:
    return Recorded(**{**one.__dict__, "uptime": uptime})


def _upsert_service_status(connection: Connection, recorded: Sequence[Recorded]) -> None:
    if not recorded:
        return
    rows = [
        {
            "service_name": one.name,
            "status": one.status,
            "response_time_ms": one.result.response_time_ms,
            "last_check_at": one.checked_at,
            "uptime_percentage": None
            if one.uptime.get("24h") is None
            else Decimal(str(one.uptime["24h"])),
        }
        for one in recorded
    ]
    statement = insert(ServiceStatus).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=[ServiceStatus.service_name],
        set_={
            "status": statement.excluded.status,
            "response_time_ms": statement.excluded.response_time_ms,
            "last_check_at": statement.excluded.last_check_at,
            "uptime_percentage": statement.excluded.uptime_percentage,
        },
    )
    connection.execute(statement)


def backend_value(one: Recorded) -> dict[str, object]:
    """The backend's `service:health:<name>` JSON: service, healthy, lastChecked, ms, error."""
    return {
        "service": one.name,
        "healthy": one.status != DOWN,
        "lastChecked": one.checked_at.replace(tzinfo=dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "responseTime": one.result.response_time_ms,
        "error": _error_text(one.result),
    }


def _error_text(result: CheckResult) -> str | None:
    if result.error_class is None:
        return None
    return (
        f"{result.error_class}: {result.error_message}"
        if result.error_message
        else result.error_class
    )


def write_backend_keys(client: redis.Redis, recorded: Sequence[Recorded]) -> bool:
    """Set each service's backend key (TTL 300 s) in one pipeline; False if Redis failed."""
    if not recorded:
        return True
    try:
        with client.pipeline(transaction=False) as pipe:
            for one in recorded:
                pipe.set(
                    BACKEND_KEY.format(name=one.name),
                    json.dumps(backend_value(one)),
                    ex=BACKEND_KEY_TTL_SECONDS,
                )
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("health: backend keys not written (%s)", type(exc).__name__)
        return False
    return True


def results_by_name(
    targets: Sequence[CheckTarget], results: Mapping[str, CheckResult]
) -> list[tuple[CheckTarget, CheckResult]]:
    return [(target, results[target.name]) for target in targets]
