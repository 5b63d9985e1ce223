"""Recording rounds: Uptime Kuma semantics (down only after N failures in a row), history,
transitions, the backend's service_status rows and Redis keys, and uptime against a history
computed by hand."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from medianest_workers.health import recording
from medianest_workers.health.probe import DEGRADED, DOWN, UP, CheckResult
from medianest_workers.health.recording import Previous, decide, record_round
from medianest_workers.health.targets import CheckOptions, CheckTarget, Kind
from medianest_workers.health.uptime import uptime_windows

T0 = dt.datetime(2026, 11, 1, 12, 0)
OK = CheckResult(UP, 12, http_status=200)
SLOW = CheckResult(DEGRADED, 900, http_status=200, error_class="Slow", error_message="slow")
FAIL = CheckResult(DOWN, 1500, error_class="Timeout", error_message="no answer within 1.5 s")


@pytest.mark.parametrize(
    ("previous", "result", "expected"),
    [
        (None, OK, (UP, 0)),
        (None, SLOW, (DEGRADED, 0)),
        (None, FAIL, (DEGRADED, 1)),  # never seen, failing: not yet down
        (Previous(UP, 0), FAIL, (UP, 1)),  # one lost packet is no outage
        (Previous(UP, 1), FAIL, (UP, 2)),
        (Previous(UP, 2), FAIL, (DOWN, 3)),  # the third in a row
        (Previous(DOWN, 3), FAIL, (DOWN, 4)),
        (Previous(DOWN, 7), OK, (UP, 0)),  # back up at the first success
        (Previous(DEGRADED, 2), FAIL, (DOWN, 3)),
        (Previous(UP, 0), SLOW, (DEGRADED, 0)),
    ],
)
def test_decide(previous: Previous | None, result: CheckResult, expected: tuple) -> None:
    assert decide(previous, result, down_after=3, in_maintenance=False) == expected


def test_decide_in_maintenance_carries_the_state_over() -> None:
    assert decide(Previous(UP, 2), FAIL, down_after=3, in_maintenance=True) == (UP, 2)
    assert decide(Previous(DOWN, 5), OK, down_after=3, in_maintenance=True) == (DOWN, 5)
    assert decide(None, FAIL, down_after=3, in_maintenance=True) == (DEGRADED, 0)


def _target(name: str, **options: object) -> CheckTarget:
    return CheckTarget(
        name=name,
        kind=Kind.HTTP,
        url="http://127.0.0.1:9/",
        options=CheckOptions.model_validate(options),
    )


def _status_row(engine: Engine, name: str) -> dict:
    with engine.connect() as connection:
        return dict(
            connection.execute(
                text("SELECT * FROM service_status WHERE service_name = :n"), {"n": name}
            )
            .mappings()
            .one()
        )


def _transitions(engine: Engine, name: str) -> list[tuple]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text(
                    "SELECT from_status, to_status, error_class FROM mnw_health_transitions"
                    " WHERE service_name = :n ORDER BY id"
                ),
                {"n": name},
            )
        ]


def test_one_failure_is_no_outage_three_in_a_row_are(
    engine: Engine, session_factory, redis_client, service_names
) -> None:
    name = service_names("flaky")
    target = _target(name)
    sequence = [OK, FAIL, OK, FAIL, FAIL, FAIL, FAIL, OK]
    statuses = []
    for minute, result in enumerate(sequence):
        [one] = record_round(
            engine, [(target, result)], now=T0 + dt.timedelta(minutes=minute), down_after=3
        )
        statuses.append((one.status, one.consecutive_failures, one.changed))
        recording.write_backend_keys(redis_client, [one])
    assert statuses == [
        (UP, 0, False),  # the first state is no transition
        (UP, 1, False),
        (UP, 0, False),
        (UP, 1, False),
        (UP, 2, False),
        (DOWN, 3, True),
        (DOWN, 4, False),
        (UP, 0, True),
    ]
    assert _transitions(engine, name) == [(None, UP, None), (UP, DOWN, "Timeout"), (DOWN, UP, None)]

    # The backend's rows: service_status upserted (one row), its Redis key in its shape.
    row = _status_row(engine, name)
    assert row["status"] == UP
    assert row["response_time_ms"] == 12
    assert row["last_check_at"] == T0 + dt.timedelta(minutes=7)
    # 8 checks, after each of which the service was not down but for 2: 6 of 8.
    assert row["uptime_percentage"] == Decimal("75.00")
    key = f"service:health:{name}"
    value = json.loads(redis_client.get(key))
    assert value == {
        "service": name,
        "healthy": True,
        "lastChecked": "2026-11-01T12:07:00.000Z",
        "responseTime": 12,
        "error": None,
    }
    assert 290 < redis_client.ttl(key) <= 300


def test_service_status_and_key_of_a_down_service(
    engine: Engine, session_factory, redis_client, service_names
) -> None:
    name = service_names("gone")
    target = _target(name)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    for minute in range(3):
        recorded = record_round(
            engine, [(target, FAIL)], now=now - dt.timedelta(minutes=2 - minute), down_after=3
        )
    recording.write_backend_keys(redis_client, recorded)
    row = _status_row(engine, name)
    assert row["status"] == DOWN
    assert row["response_time_ms"] == 1500
    # Three checks in the last 24 h, after two of which it was not (yet) down.
    assert row["uptime_percentage"] == Decimal("66.67")
    value = json.loads(redis_client.get(f"service:health:{name}"))
    assert value["healthy"] is False
    assert value["error"] == "Timeout: no answer within 1.5 s"
    assert value["responseTime"] == 1500


def _insert(connection, name: str, at: dt.datetime, status: str, maintenance: bool = False):
    connection.execute(
        text(
            "INSERT INTO mnw_health_checks (service_name, kind, checked_at, result, status,"
            " consecutive_failures, in_maintenance)"
            " VALUES (:n, 'http', :at, :status, :status, 0, :m)"
        ),
        {"n": name, "at": at, "status": status, "m": maintenance},
    )


def test_uptime_matches_a_hand_computed_history(engine: Engine, session_factory) -> None:
    """A history laid out by hand, counted by hand:

    - last 24 h: 20 checks: 15 up, 2 degraded, 3 down; 4 more in maintenance (down, ignored)
      -> 17 of 20 = 85.00 %
    - exactly 24 h ago: 1 up, in the 7 d window only (windows are `(now - w, now]`);
      1 to 7 days ago: 10 more: 5 up, 5 down -> 7 d: 23 of 31 = 74.19 %
    - 7 to 30 days ago: 10 more, all down -> 30 d: 23 of 41 = 56.10 %
    - 31 days ago: 5 up (outside every window) and 1 check in the future (ignored).
    """
    now = dt.datetime(2026, 11, 30, 12, 0)
    name = "hand-computed"
    with engine.begin() as connection:
        for n in range(15):
            _insert(connection, name, now - dt.timedelta(minutes=n), UP)
        for n in range(2):
            _insert(connection, name, now - dt.timedelta(hours=1, minutes=n), DEGRADED)
        for n in range(3):
            _insert(connection, name, now - dt.timedelta(hours=23, minutes=n), DOWN)
        for n in range(4):
            _insert(connection, name, now - dt.timedelta(hours=2, minutes=n), DOWN, True)
        for n in range(5):
            _insert(connection, name, now - dt.timedelta(days=2, minutes=n), UP)
            _insert(connection, name, now - dt.timedelta(days=6, minutes=n), DOWN)
        for n in range(10):
            _insert(connection, name, now - dt.timedelta(days=8 + n), DOWN)
        for n in range(5):
            _insert(connection, name, now - dt.timedelta(days=31, minutes=n), UP)
        _insert(connection, name, now + dt.timedelta(minutes=1), DOWN)
        # Exactly 24 h ago belongs to the 7-day window only: (now - 24 h, now].
        _insert(connection, name, now - dt.timedelta(hours=24), UP)
        figures = uptime_windows(connection, [name, "never-checked"], now=now)
    assert figures[name] == {"24h": 85.0, "7d": 74.19, "30d": 56.1}
    assert figures[name]["7d"] == round(100 * 23 / 31, 2)
    assert figures[name]["30d"] == round(100 * 23 / 41, 2)
    assert figures["never-checked"] == {"24h": None, "7d": None, "30d": None}


def test_checks_in_a_maintenance_window_change_nothing(
    engine: Engine, session_factory, service_names
) -> None:
    name = service_names("maint")
    window = {"start": "2026-11-01T12:01:00", "end": "2026-11-01T12:10:00"}
    target = _target(name, maintenance=[window])
    outcomes = []
    for minute, result in enumerate([OK, FAIL, FAIL, FAIL, FAIL]):
        [one] = record_round(
            engine, [(target, result)], now=T0 + dt.timedelta(minutes=minute), down_after=3
        )
        outcomes.append((one.status, one.in_maintenance))
    assert outcomes == [(UP, False), (UP, True), (UP, True), (UP, True), (UP, True)]
    assert _transitions(engine, name) == [(None, UP, None)]
    with engine.connect() as connection:
        figures = uptime_windows(connection, [name], now=T0 + dt.timedelta(minutes=5))
    assert figures[name]["24h"] == 100.0  # one counted check: the one before the window
