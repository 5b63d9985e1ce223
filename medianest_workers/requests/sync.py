"""Pull sync: make `media_requests` follow Overseerr's requests (upsert on `overseerr_id`).

`sync_requests` walks `GET /request?sort=modified` newest first, page by page, until it passes
the stored watermark minus an overlap (or to the end: first run, `full`). Each page is one
transaction (under the REQUESTS_WRITE advisory lock, so two writers never insert the same
`overseerr_id`): new requests are inserted, changed rows updated, unchanged rows not written.
The watermark moves only when the walk reached its end, after its last page committed; a walk
that fails part way leaves it, and the next walk re-reads those pages (finding them unchanged).

The walk is bounded: at most min(OVERSEERR_SYNC_MAX_PAGES, pageInfo.pages + 1) pages, no more
items than pageInfo announced (plus one page of slack for items moving while we walk), and a
page that brings no request not seen before stops it (PaginationError).

Per request: the requester is matched by `plex_id`, then email (an unknown one is a recorded
skip); the title comes from the media details endpoint (only for rows we create; cached per
tmdb id within the run, fetched concurrently by one pool of the walk before the page's
transaction opens); the status from status_map.py; `completed_at` is set once the row becomes
available. While a page is written, the next one is read (only when the walk goes on: it
never reads a page the walk would not). Local rows to adopt are found in one query per page.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, func, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from medianest_workers.db.locks import AdvisoryLock
from medianest_workers.db.models.medianest import MediaRequest, User
from medianest_workers.db.models.requests import RequestSyncState
from medianest_workers.requests import errors, status_map
from medianest_workers.requests.client import SERVICE_NAME, OverseerrClient
from medianest_workers.requests.models import OverseerrRequest, Page, parse_request
from medianest_workers.timeutil import utcnow

#: A peer's value quoted in a skip's detail: a short lowercase word, never a key-like string.
_WORD = re.compile(r"[a-z]{1,12}")

MEDIA_TYPES = ("movie", "tv")
#: Dates further ahead than this are not believed for the watermark.
CLOCK_SKEW = dt.timedelta(minutes=10)


@dataclass
class SyncReport:
    """What a sync did: the ledger result of `requests.sync` / `requests.sync_one`."""

    pages: int = 0
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    adopted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    #: A few skipped requests with why, for the operator (bounded).
    skip_examples: list[dict[str, Any]] = field(default_factory=list)
    full: bool = False
    complete: bool = False
    watermark: str | None = None

    def skip(self, reason: str, request_id: Any, detail: str = "") -> None:
        self.skipped[reason] += 1
        if len(self.skip_examples) < 20:
            self.skip_examples.append({"id": request_id, "reason": reason, "detail": detail[:200]})

    def as_json(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "fetched": self.fetched,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "adopted": self.adopted,
            "skipped": dict(self.skipped),
            "skipped_total": sum(self.skipped.values()),
            "skip_examples": self.skip_examples,
            "full": self.full,
            "complete": self.complete,
            "watermark": self.watermark,
        }


@dataclass(frozen=True, kw_only=True)
class SyncOptions:
    page_size: int = 100
    max_pages: int = 1000
    overlap: dt.timedelta = dt.timedelta(minutes=5)
    title_concurrency: int = 8

    @classmethod
    def from_settings(cls) -> SyncOptions:
        from medianest_workers.settings import get_settings  # noqa: PLC0415

        settings = get_settings()
        return cls(
            page_size=settings.overseerr_sync_page_size,
            max_pages=settings.overseerr_sync_max_pages,
            overlap=dt.timedelta(seconds=settings.overseerr_sync_overlap_seconds),
            title_concurrency=settings.overseerr_title_concurrency,
        )


Progress = Callable[[SyncReport], None]


@dataclass(frozen=True)
class _Wanted:
    """A request ready to be written: everything but the title of a new row."""

    request: OverseerrRequest
    media_type: str
    tmdb_id: str
    status: str


class TitleCache:
    """Titles by (media type, tmdb id) for one run; fetched concurrently (one pool of threads
    for the run), misses remembered. Close it (or use it as a context manager)."""

    def __init__(self, client: OverseerrClient, concurrency: int) -> None:
        self._client = client
        self._concurrency = concurrency
        self._titles: dict[tuple[str, str], str | None] = {}
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> TitleCache:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def get(self, media_type: str, tmdb_id: str) -> str | None:
        return self._titles.get((media_type, tmdb_id))

    def fetch(self, keys: Iterable[tuple[str, str]]) -> None:
        missing = sorted({key for key in keys if key not in self._titles})
        if not missing:
            return
        if len(missing) == 1 or self._concurrency == 1:
            for key in missing:
                self._titles[key] = self._one(key)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="mnw-titles")
        for key, title in zip(missing, self._pool.map(self._one, missing), strict=True):
            self._titles[key] = title

    def _one(self, key: tuple[str, str]) -> str | None:
        media_type, tmdb_id = key
        try:
            return self._client.media_details(media_type, int(tmdb_id)).display_title
        except (errors.NotFoundError, errors.SchemaError):
            return None  # recorded as a skip by the caller (title_unavailable)


def sync_requests(
    client: OverseerrClient,
    connect: Callable[[], Connection],
    *,
    full: bool = False,
    options: SyncOptions | None = None,
    on_page: Progress | None = None,
) -> SyncReport:
    """Walk Overseerr's requests newest first and upsert them (see the module docstring).

    `connect` opens a connection of the database (`engine.connect`); each page is written in
    a transaction of its own.
    """
    options = options or SyncOptions()
    report = SyncReport()
    watermark = None if full else _load_watermark(connect)
    report.full = watermark is None
    stop_before = None if watermark is None else _minus(watermark, options.overlap)
    seen: set[int] = set()
    newest: dt.datetime | None = None
    announced_pages: int | None = None
    announced_results = 0
    ceiling = utcnow() + CLOCK_SKEW
    page_number = 0
    with (
        TitleCache(client, options.title_concurrency) as titles,
        ThreadPoolExecutor(1, thread_name_prefix="mnw-pages") as prefetch,
    ):
        next_page: Future[Page] | None = None
        while True:
            limit = options.max_pages
            if announced_pages is not None:
                limit = min(limit, announced_pages + 1)
            if page_number >= limit:
                raise errors.PaginationError(
                    f"GET /request: walked {page_number} pages (limit {limit}) without reaching"
                    f" the end; {report.fetched} requests read"
                )
            skip = page_number * options.page_size
            if next_page is None:
                page = client.list_requests(skip=skip, take=options.page_size)
            else:
                page, next_page = next_page.result(), None
            if announced_pages is None:
                announced_pages = page.page_info.pages
                announced_results = page.page_info.results
            parsed = _accept_page(
                page,
                page_number,
                options=options,
                report=report,
                announced_results=announced_results,
                seen=seen,
            )
            page_number += 1
            at_end = (
                not page.results
                or len(page.results) < options.page_size
                or page_number >= announced_pages
            )
            passed = stop_before is not None and _all_older(parsed, stop_before)
            if not (at_end or passed) and page_number < min(limit, announced_pages + 1):
                # The next page is read while this one is written (the walk goes on anyway).
                next_page = prefetch.submit(
                    client.list_requests,
                    skip=page_number * options.page_size,
                    take=options.page_size,
                )
            write_requests(connect, parsed, titles, report)
            for item in parsed:
                if item.updated_at is not None and item.updated_at <= ceiling:
                    newest = item.updated_at if newest is None else max(newest, item.updated_at)
            if on_page is not None:
                on_page(report)
            if at_end or passed:
                break
    new_watermark = _store_watermark(connect, newest, old=watermark, full=report.full)
    report.complete = True
    report.watermark = new_watermark.isoformat() if new_watermark else None
    return report


def _accept_page(
    page: Page,
    page_number: int,
    *,
    options: SyncOptions,
    report: SyncReport,
    announced_results: int,
    seen: set[int],
) -> list[OverseerrRequest]:
    """The page's requests, counted; PaginationError when the walk is abused."""
    if len(page.results) > options.page_size:
        raise errors.PaginationError(
            f"GET /request: page {page_number + 1} holds {len(page.results)} results,"
            f" {options.page_size} were asked"
        )
    report.pages += 1
    report.fetched += len(page.results)
    if report.fetched > announced_results + options.page_size:
        raise errors.PaginationError(
            f"GET /request: {report.fetched} results read, pageInfo announced {announced_results}"
        )
    parsed = _parse_items(page.results, report)
    ids = {item.id for item in parsed}
    if page.results and ids and ids <= seen:
        raise errors.PaginationError(
            f"GET /request: page {page_number + 1} repeats requests already read"
            " (the server ignores skip)"
        )
    seen |= ids
    return parsed


def sync_one(client: OverseerrClient, connect: Callable[[], Connection], request_id: int) -> dict:
    """Re-fetch one request (a webhook's hint) and upsert it; the payload is never trusted."""
    report = SyncReport(full=False)
    try:
        raw = client.get_request(request_id)
    except errors.NotFoundError:
        return {"overseerr_request_id": request_id, "found": False, **report.as_json()}
    report.fetched = 1
    parsed = _parse_items([raw], report)
    with TitleCache(client, 1) as titles:
        write_requests(connect, parsed, titles, report)
    report.complete = True
    return {"overseerr_request_id": request_id, "found": True, **report.as_json()}


def _minus(moment: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """`moment - delta`, or the earliest datetime when that is before year 1 (a watermark
    Overseerr dated 0001-01-01 is odd, not a reason to crash)."""
    try:
        return moment - delta
    except OverflowError:
        return moment.replace(year=1, month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


def _all_older(items: Sequence[OverseerrRequest], stop_before: dt.datetime) -> bool:
    dates = [item.updated_at for item in items if item.updated_at is not None]
    return bool(dates) and max(dates) < stop_before


def _parse_items(results: Sequence[Any], report: SyncReport) -> list[OverseerrRequest]:
    parsed = []
    for item in results:
        outcome = parse_request(item)
        if isinstance(outcome, tuple):
            field_name, message = outcome
            report.skip("invalid_item", _peer_id(item), f"{field_name}: {message}")
            continue
        parsed.append(outcome)
    return parsed


def _peer_id(item: Any) -> int | None:
    """The item's id if it is one (an int): the ledger never quotes an arbitrary value of the
    peer's, which could be anything, the API key it was sent included (secrets canary test)."""
    request_id = item.get("id") if isinstance(item, dict) else None
    valid = isinstance(request_id, int) and not isinstance(request_id, bool)
    return request_id if valid else None


def _peer_word(value: str) -> str:
    """A peer's short word (a media type such as 'music') quoted; anything else is not."""
    if _WORD.fullmatch(value):
        return repr(value)
    return f"(not shown: {len(value)} characters)"


def _wanted(item: OverseerrRequest, report: SyncReport) -> _Wanted | None:
    media_type = item.media_type
    if media_type is None:
        report.skip("missing_media_type", item.id)
        return None
    if media_type not in MEDIA_TYPES:
        report.skip("unsupported_media_type", item.id, _peer_word(media_type))
        return None
    if item.media is None or item.media.tmdb_id is None:
        report.skip("missing_tmdb_id", item.id)
        return None
    status = status_map.backend_status(item.status, item.media_status)
    if status is None:
        report.skip("unknown_status", item.id, f"request {item.status}, media {item.media_status}")
        return None
    return _Wanted(item, media_type, str(item.media.tmdb_id), status)


def write_requests(
    connect: Callable[[], Connection],
    items: Sequence[OverseerrRequest],
    titles: TitleCache,
    report: SyncReport,
) -> None:
    """Upsert one page of requests in one transaction (see the module docstring)."""
    wanted = [w for w in (_wanted(item, report) for item in items) if w is not None]
    # Later duplicates of an id on the same page are the same request: keep the first.
    by_id: dict[str, _Wanted] = {}
    for entry in wanted:
        by_id.setdefault(str(entry.request.id), entry)
    if not by_id:
        return
    with connect() as connection:
        known = set(
            connection.scalars(
                select(MediaRequest.overseerr_id).where(MediaRequest.overseerr_id.in_(by_id))
            )
        )
    titles.fetch((w.media_type, w.tmdb_id) for key, w in by_id.items() if key not in known)
    with connect() as connection, connection.begin():
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": int(AdvisoryLock.REQUESTS_WRITE)}
        )
        _write_page(connection, by_id, titles, report)


def _write_page(
    connection: Connection,
    by_id: dict[str, _Wanted],
    titles: TitleCache,
    report: SyncReport,
) -> None:
    table = MediaRequest.__table__
    existing = {
        row.overseerr_id: row
        for row in connection.execute(
            select(table).where(table.c.overseerr_id.in_(by_id)).order_by(table.c.created_at)
        )
    }
    users = _match_users(connection, [w.request for w in by_id.values()])
    adoptable = _adoptable(
        connection,
        [
            (key, entry, users[entry.request.id])
            for key, entry in by_id.items()
            if key not in existing and entry.request.id in users
        ],
    )
    now = utcnow()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for key, entry in by_id.items():
        item = entry.request
        user_id = users.get(item.id)
        row = existing.get(key)
        if row is None:
            row = adoptable.get(key)
            if row is not None:
                report.adopted += 1
        completed_at = _completed_at(entry, row.completed_at if row is not None else None, now)
        if row is None:
            if user_id is None:
                report.skip("unknown_requester", item.id, _requester_hint(item))
                continue
            title = titles.get(entry.media_type, entry.tmdb_id)
            if title is None:
                report.skip("title_unavailable", item.id, f"{entry.media_type} {entry.tmdb_id}")
                continue
            inserts.append(
                {
                    "id": str(uuid.uuid4()),
                    "user_id": user_id,
                    "title": title,
                    "media_type": entry.media_type,
                    "tmdb_id": entry.tmdb_id,
                    "status": entry.status,
                    "overseerr_id": key,
                    "created_at": item.created_at or now,
                    "completed_at": completed_at,
                }
            )
            continue
        values = {
            "user_id": user_id or row.user_id,
            "title": row.title or titles.get(entry.media_type, entry.tmdb_id) or row.title,
            "media_type": entry.media_type,
            "tmdb_id": entry.tmdb_id,
            "status": entry.status,
            "overseerr_id": key,
            "completed_at": completed_at,
        }
        current = {name: getattr(row, name) for name in values}
        if values == current:
            report.unchanged += 1
            continue
        updates.append({"b_id": row.id, **values})
        report.updated += 1
    if inserts:
        connection.execute(pg_insert(table), inserts)
        report.created += len(inserts)
    if updates:
        statement = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values({name: bindparam(name) for name in updates[0] if name != "b_id"})
        )
        connection.execute(statement, updates)


def _completed_at(entry: _Wanted, current: dt.datetime | None, now: dt.datetime) -> Any:
    if current is not None or entry.status != status_map.AVAILABLE:
        return current
    media = entry.request.media
    moment = (media.updated_at if media else None) or entry.request.updated_at or now
    return min(moment, now)


def _requester_hint(item: OverseerrRequest) -> str:
    who = item.requested_by
    if who is None:
        return "no requestedBy"
    return f"overseerr user {who.id}"


def _adoptable(
    connection: Connection, entries: Sequence[tuple[str, _Wanted, str]]
) -> dict[str, Any]:
    """For new requests (overseerr id, request, matched user id): a local row for the same
    media and requester that has no overseerr_id yet (the backend's, or one a push submitted
    but did not link before it died), oldest first, each row to one request only. One query
    for the page, its rows locked."""
    if not entries:
        return {}
    table = MediaRequest.__table__
    wanted = sorted({(user_id, entry.tmdb_id, entry.media_type) for _, entry, user_id in entries})
    rows = connection.execute(
        select(table)
        .where(
            table.c.overseerr_id.is_(None),
            tuple_(table.c.user_id, table.c.tmdb_id, table.c.media_type).in_(wanted),
        )
        .order_by(table.c.created_at, table.c.id)
        .with_for_update()
    ).all()
    free: dict[tuple[str, str | None, str], list[Any]] = {}
    for row in rows:
        free.setdefault((row.user_id, row.tmdb_id, row.media_type), []).append(row)
    adopted: dict[str, Any] = {}
    for key, entry, user_id in entries:
        queue = free.get((user_id, entry.tmdb_id, entry.media_type))
        if queue:
            adopted[key] = queue.pop(0)
    return adopted


def _match_users(connection: Connection, items: Sequence[OverseerrRequest]) -> dict[int, str]:
    """Overseerr request id -> users.id: by plex_id first, then by email (case-insensitive)."""
    plex_ids = {
        str(i.requested_by.plex_id) for i in items if i.requested_by and i.requested_by.plex_id
    }
    emails = {
        i.requested_by.email.strip().lower()
        for i in items
        if i.requested_by and i.requested_by.email and i.requested_by.email.strip()
    }
    if not plex_ids and not emails:
        return {}
    rows = connection.execute(
        select(User.id, User.plex_id, func.lower(User.email)).where(
            or_(User.plex_id.in_(plex_ids), func.lower(User.email).in_(emails))
        )
    ).all()
    by_plex = {plex: uid for uid, plex, _email in rows if plex}
    by_email: dict[str, str] = {}
    for uid, _plex, email in rows:
        by_email.setdefault(email, uid)
    matched = {}
    for item in items:
        who = item.requested_by
        if who is None:
            continue
        uid = by_plex.get(str(who.plex_id)) if who.plex_id else None
        if uid is None and who.email:
            uid = by_email.get(who.email.strip().lower())
        if uid is not None:
            matched[item.id] = uid
    return matched


def _load_watermark(connect: Callable[[], Connection]) -> dt.datetime | None:
    with connect() as connection:
        return connection.scalar(
            select(RequestSyncState.watermark).where(RequestSyncState.service_name == SERVICE_NAME)
        )


def _store_watermark(
    connect: Callable[[], Connection],
    newest: dt.datetime | None,
    *,
    old: dt.datetime | None,
    full: bool,
) -> dt.datetime | None:
    value = old if newest is None else (newest if old is None else max(old, newest))
    now = utcnow()
    table = RequestSyncState.__table__
    values: dict[str, Any] = {"watermark": value, "last_walk_at": now, "updated_at": now}
    if full:
        values["last_full_walk_at"] = now
    statement = pg_insert(table).values(service_name=SERVICE_NAME, **values)
    statement = statement.on_conflict_do_update(index_elements=["service_name"], set_=values)
    with connect() as connection, connection.begin():
        connection.execute(statement)
    return value
