"""Uptime over 24 h, 7 d and 30 d, computed from the check history.

Over a window ending at `now`, uptime is the share of the service's checks taken in
`(now - window, now]` after which it was not `down` (`status`: a single failed check that did
not turn it down is no outage; `degraded` counts as up), checks inside a maintenance window
left out. Every check weighs the same (a round checks every service once a minute). None when
the window holds no counted check.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Connection, text

WINDOWS: dict[str, dt.timedelta] = {
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
}
LONGEST_WINDOW = max(WINDOWS.values())

_FILTERS = ",\n".join(
    f"count(*) FILTER (WHERE checked_at > :start_{name}) AS n_{name},"
    f" count(*) FILTER (WHERE checked_at > :start_{name} AND status <> 'down') AS up_{name}"
    for name in WINDOWS
)
_UPTIME = text(
    f"""
    SELECT service_name, {_FILTERS}
    FROM mnw_health_checks
    WHERE service_name = ANY(:names) AND NOT in_maintenance
      AND checked_at > :start_longest AND checked_at <= :now
    GROUP BY service_name
    """
)

Uptime = dict[str, float | None]


def percentage(up: int, total: int) -> float | None:
    """`up` of `total` as a percentage with two decimals (None when there is nothing)."""
    return None if total == 0 else round(100.0 * up / total, 2)


def uptime_windows(
    connection: Connection, names: Sequence[str], *, now: dt.datetime
) -> dict[str, Uptime]:
    """{service: {"24h": %, "7d": %, "30d": %}} for each of `names` (None: no checks)."""
    params: dict[str, object] = {"names": list(names), "now": now}
    params["start_longest"] = now - LONGEST_WINDOW
    for name, length in WINDOWS.items():
        params[f"start_{name}"] = now - length
    found: dict[str, Uptime] = {name: dict.fromkeys(WINDOWS) for name in names}
    for row in connection.execute(_UPTIME, params).mappings():
        found[row["service_name"]] = {
            window: percentage(row[f"up_{window}"], row[f"n_{window}"]) for window in WINDOWS
        }
    return found
