"""Push: local `media_requests` rows in `pending` without `overseerr_id` become Overseerr
requests (`POST /api/v1/request`), and get their `overseerr_id`.

Never twice, even across retries and a worker killed between Overseerr's answer and our
commit:
1. one push runs at a time (the REQUESTS_PUSH advisory lock, held by this connection: a
   killed worker's lock goes with its connection);
2. before the POST, the attempt is committed in `mnw_request_pushes` (`submitting`);
3. before every POST, Overseerr is asked whether this requester already has a request for
   this media (the media details' `mediaInfo.requests`): if so it is linked, not created
   (that is where a killed push's request is found again); a 409 answer is looked up too;
4. the link is one conditional UPDATE (`WHERE overseerr_id IS NULL`) with the push row, in
   one transaction. The pull sync adopts such a row the same way if it sees the request first.

The requester is found in Overseerr by plex id, then email (`GET /user`); one who is not
there is a recorded skip, never a request made in the API key owner's name. A skipped row is
tried again only after OVERSEERR_PUSH_SKIP_RETRY_SECONDS (the requester may be imported
meanwhile), so skipped rows neither POST at every run nor take the places of new ones.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from medianest_workers.db.locks import AdvisoryLock
from medianest_workers.db.models.medianest import MediaRequest, User
from medianest_workers.db.models.requests import RequestPush
from medianest_workers.requests import errors, status_map
from medianest_workers.requests.client import OverseerrClient
from medianest_workers.requests.models import OverseerrRequest, OverseerrUser, parse_request
from medianest_workers.timeutil import utcnow

USER_PAGE = 100
MAX_USER_PAGES = 200


@dataclass
class PushReport:
    candidates: int = 0
    created: int = 0
    linked_existing: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    busy: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "created": self.created,
            "linked_existing": self.linked_existing,
            "skipped": dict(self.skipped),
            "busy": self.busy,
        }


class OverseerrUsers:
    """Overseerr's users, read once per push (bounded walk of GET /user)."""

    def __init__(self, client: OverseerrClient) -> None:
        self._client = client
        self._by_plex: dict[str, int] | None = None
        self._by_email: dict[str, int] = {}

    def find(self, plex_id: str | None, email: str | None) -> int | None:
        if self._by_plex is None:
            self._load()
        assert self._by_plex is not None  # noqa: S101
        if plex_id and plex_id in self._by_plex:
            return self._by_plex[plex_id]
        if email:
            return self._by_email.get(email.strip().lower())
        return None

    def _load(self) -> None:
        self._by_plex = {}
        seen: set[int] = set()
        for number in range(MAX_USER_PAGES):
            page = self._client.list_users(skip=number * USER_PAGE, take=USER_PAGE)
            fresh = 0
            for raw in page.results:
                try:
                    user = OverseerrUser.model_validate(raw)
                except ValueError:
                    continue
                if user.id in seen:
                    continue
                seen.add(user.id)
                fresh += 1
                if user.plex_id is not None:
                    self._by_plex[str(user.plex_id)] = user.id
                if user.email:
                    self._by_email.setdefault(user.email.strip().lower(), user.id)
            if len(page.results) < USER_PAGE or fresh == 0 or number + 1 >= page.page_info.pages:
                return


def push_pending(
    client: OverseerrClient,
    connect: Callable[[], Connection],
    *,
    limit: int = 100,
    skip_retry_seconds: float = 3600.0,
    on_row: Callable[[PushReport], None] | None = None,
) -> PushReport:
    """Submit up to `limit` pending local rows (oldest first); see the module docstring."""
    report = PushReport()
    with connect() as lock_connection:
        got = lock_connection.scalar(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": int(AdvisoryLock.REQUESTS_PUSH)}
        )
        lock_connection.commit()
        if not got:
            report.busy = True
            return report
        try:
            _push_rows(
                client, connect, limit, report, skip_retry_seconds=skip_retry_seconds, on_row=on_row
            )
        finally:
            lock_connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": int(AdvisoryLock.REQUESTS_PUSH)}
            )
            lock_connection.commit()
    return report


def _push_rows(
    client: OverseerrClient,
    connect: Callable[[], Connection],
    limit: int,
    report: PushReport,
    *,
    skip_retry_seconds: float,
    on_row: Callable[[PushReport], None] | None,
) -> None:
    table = MediaRequest.__table__
    pushes = RequestPush.__table__
    retry_before = utcnow() - dt.timedelta(seconds=skip_retry_seconds)
    recently_skipped = (
        select(pushes.c.media_request_id)
        .where(
            pushes.c.media_request_id == table.c.id,
            pushes.c.state == "skipped",
            pushes.c.updated_at > retry_before,
        )
        .exists()
    )
    with connect() as connection:
        rows = connection.execute(
            select(table, User.plex_id, User.email)
            .join(User, User.id == table.c.user_id)
            .where(
                table.c.status == status_map.PENDING,
                table.c.overseerr_id.is_(None),
                ~recently_skipped,
            )
            .order_by(table.c.created_at, table.c.id)
            .limit(limit)
        ).all()
    report.candidates = len(rows)
    users = OverseerrUsers(client)
    for row in rows:
        _push_one(client, connect, row, users, report)
        if on_row is not None:
            on_row(report)


def _push_one(
    client: OverseerrClient,
    connect: Callable[[], Connection],
    row: Any,
    users: OverseerrUsers,
    report: PushReport,
) -> None:
    if row.media_type not in ("movie", "tv"):
        _record(connect, row.id, "skipped", error=f"media_type {row.media_type!r}")
        report.skipped["unsupported_media_type"] += 1
        return
    if not (row.tmdb_id or "").isdigit() or int(row.tmdb_id) <= 0:
        _record(connect, row.id, "skipped", error=f"tmdb_id {row.tmdb_id!r}")
        report.skipped["invalid_tmdb_id"] += 1
        return
    overseerr_user = users.find(row.plex_id, row.email)
    if overseerr_user is None:
        _record(connect, row.id, "skipped", error="requester not in Overseerr")
        report.skipped["requester_not_in_overseerr"] += 1
        return
    tmdb_id = int(row.tmdb_id)
    _record(connect, row.id, "submitting", attempt=True)
    found = find_existing(client, row.media_type, tmdb_id, overseerr_user)
    if found is not None:
        _link(connect, row.id, found)
        report.linked_existing += 1
        return
    try:
        created = client.create_request(
            media_type=row.media_type, tmdb_id=tmdb_id, user_id=overseerr_user
        )
    except errors.ConflictError:
        found = find_existing(client, row.media_type, tmdb_id, overseerr_user)
        if found is None:
            _record(connect, row.id, "skipped", error="409 and no request of this requester")
            report.skipped["conflict_other_requester"] += 1
            return
        _link(connect, row.id, found)
        report.linked_existing += 1
        return
    _link(connect, row.id, created)
    report.created += 1


def find_existing(
    client: OverseerrClient, media_type: str, tmdb_id: int, overseerr_user: int
) -> OverseerrRequest | None:
    """This requester's newest non-4K request for the media, if Overseerr holds one."""
    try:
        details = client.media_details(media_type, tmdb_id)
    except errors.NotFoundError:
        return None
    if details.media_info is None:
        return None
    mine = []
    for raw in details.media_info.requests:
        parsed = parse_request(raw)
        if isinstance(parsed, tuple) or parsed.is4k:
            continue
        if parsed.requested_by is not None and parsed.requested_by.id == overseerr_user:
            mine.append(parsed)
    return max(mine, key=lambda request: request.id) if mine else None


def _record(
    connect: Callable[[], Connection],
    media_request_id: str,
    state: str,
    *,
    attempt: bool = False,
    error: str | None = None,
    overseerr_id: int | None = None,
    connection: Connection | None = None,
) -> None:
    table = RequestPush.__table__
    values: dict[str, Any] = {
        "state": state,
        "last_error": error,
        "overseerr_request_id": overseerr_id,
        "updated_at": utcnow(),
    }
    statement = pg_insert(table).values(
        media_request_id=media_request_id, attempts=1 if attempt else 0, **values
    )
    set_ = dict(values)
    if attempt:
        set_["attempts"] = table.c.attempts + 1
    statement = statement.on_conflict_do_update(index_elements=["media_request_id"], set_=set_)
    if connection is not None:
        connection.execute(statement)
        return
    with connect() as own, own.begin():
        own.execute(statement)


def _link(
    connect: Callable[[], Connection], media_request_id: str, request: OverseerrRequest
) -> None:
    table = MediaRequest.__table__
    status = status_map.backend_status(request.status, request.media_status)
    values: dict[str, Any] = {"overseerr_id": str(request.id)}
    if status is not None and status != status_map.PENDING:
        values["status"] = status
    with connect() as connection, connection.begin():
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": int(AdvisoryLock.REQUESTS_WRITE)}
        )
        connection.execute(
            table.update()
            .where(table.c.id == media_request_id, table.c.overseerr_id.is_(None))
            .values(values)
        )
        _record(
            connect,
            media_request_id,
            "linked",
            overseerr_id=request.id,
            connection=connection,
        )
