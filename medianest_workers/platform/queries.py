"""Reads of the job ledger, shared by the HTTP API and the CLI (ledger.py writes it).

Times come out as aware UTC datetimes (the ledger stores naive UTC). Listing is keyset
paginated on (enqueued_at DESC, id DESC) with an opaque cursor, so a page is one index range
scan however deep the client pages.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, select, tuple_

from medianest_workers.db.job_states import TERMINAL_STATES, JobState
from medianest_workers.db.models.jobs import Job
from medianest_workers.db.session import get_engine
from medianest_workers.platform.errors import (
    InvalidCursorError,
)
from medianest_workers.timeutil import aware_utc, naive_utc

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_CURSOR_LENGTH = 256


@dataclass(frozen=True, kw_only=True)
class JobView:
    """What callers may see of one job (no worker secrets; payloads hold ids, never tokens)."""

    id: str
    kind: str
    queue: str
    state: str
    attempts: int
    max_attempts: int
    payload: dict[str, Any]
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error_class: str | None
    error_message: str | None
    cancel_requested: bool
    idempotency_key: str | None
    correlation_id: str
    enqueued_by: str
    user_id: str | None
    schedule_name: str | None
    trigger: str | None
    worker: str | None
    enqueued_at: dt.datetime
    started_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    finished_at: dt.datetime | None
    #: A queued job not started by then ends cancelled (error class `Expired`).
    expires_at: dt.datetime | None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO-8601 UTC)."""
        return {
            name: value.isoformat() if isinstance(value, dt.datetime) else value
            for name, value in asdict(self).items()
        }


VIEW_COLUMNS = tuple(getattr(Job, name) for name in JobView.__dataclass_fields__)


def storable(value: str) -> bool:
    """False for text PostgreSQL cannot hold (NUL, unpaired surrogates): no row can match it."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def view_of_row(row: Mapping[str, Any]) -> JobView:
    """A JobView of a ledger row given as a mapping of its columns."""
    values = {name: row[name] for name in JobView.__dataclass_fields__}
    for name in ("enqueued_at", "started_at", "heartbeat_at", "finished_at", "expires_at"):
        values[name] = aware_utc(values[name])
    return JobView(**values)


# --- single jobs ---------------------------------------------------------------------------


def get_job(job_id: str, *, connection: Connection | None = None) -> JobView | None:
    """The job with this id, or None."""
    return get_jobs([job_id], connection=connection).get(job_id)


def get_jobs(job_ids: Iterable[str], *, connection: Connection | None = None) -> dict[str, JobView]:
    """The jobs with these ids, by id (unknown ids are absent)."""
    ids = [job_id for job_id in dict.fromkeys(job_ids) if storable(job_id)]
    if not ids:
        return {}
    statement = select(*VIEW_COLUMNS).where(Job.id.in_(ids))
    if connection is not None:
        rows = connection.execute(statement).mappings().all()
    else:
        with get_engine().connect() as own:
            rows = own.execute(statement).mappings().all()
    return {row["id"]: view_of_row(row) for row in rows}


# --- listing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobView]
    #: Pass it back as `cursor` for the next (older) page; None on the last page.
    next_cursor: str | None


#: A cursor is the position of the last job of a page: its enqueue time in microseconds since
#: the epoch (UTC), a dot, its id. Every string of this form is a valid position (the next page
#: is the jobs before it), so the OpenAPI document can say exactly what a client may send.
CURSOR_PATTERN = r"^[0-9]{1,17}\.[A-Za-z0-9_:-]{1,200}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_EPOCH = dt.datetime(1970, 1, 1)  # noqa: DTZ001 - naive UTC, as the ledger stores times
_MICROSECOND = dt.timedelta(microseconds=1)


def encode_cursor(job: JobView) -> str:
    micros = (naive_utc(job.enqueued_at) - _EPOCH) // _MICROSECOND
    return f"{micros}.{job.id}"


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """(enqueued_at, id) of the last job of the previous page, or InvalidCursorError."""
    if len(cursor) > MAX_CURSOR_LENGTH or _CURSOR.fullmatch(cursor) is None:
        raise InvalidCursorError
    micros, job_id = cursor.split(".", 1)
    return _EPOCH + int(micros) * _MICROSECOND, job_id


def list_jobs(
    *,
    kind: str | None = None,
    states: Sequence[JobState | str] = (),
    enqueued_after: dt.datetime | None = None,
    enqueued_before: dt.datetime | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> JobPage:
    """Jobs newest first, filtered; `enqueued_after` is inclusive, `enqueued_before` exclusive.

    Raises ValueError for a limit outside 1..MAX_PAGE_SIZE or an unknown state, and
    InvalidCursorError for a cursor this function did not make.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    wanted = [JobState(state).value for state in states]
    if kind is not None and not storable(kind):
        return JobPage(jobs=[], next_cursor=None)
    statement = select(*VIEW_COLUMNS)
    if kind is not None:
        statement = statement.where(Job.kind == kind)
    if wanted:
        statement = statement.where(Job.state.in_(wanted))
    if enqueued_after is not None:
        statement = statement.where(Job.enqueued_at >= naive_utc(enqueued_after))
    if enqueued_before is not None:
        statement = statement.where(Job.enqueued_at < naive_utc(enqueued_before))
    if cursor is not None:
        after_at, after_id = decode_cursor(cursor)
        statement = statement.where(tuple_(Job.enqueued_at, Job.id) < tuple_(after_at, after_id))
    statement = statement.order_by(Job.enqueued_at.desc(), Job.id.desc()).limit(limit + 1)
    with get_engine().connect() as connection:
        rows = connection.execute(statement).mappings().all()
    jobs = [view_of_row(row) for row in rows[:limit]]
    more = len(rows) > limit
    return JobPage(jobs=jobs, next_cursor=encode_cursor(jobs[-1]) if more else None)
