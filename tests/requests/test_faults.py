"""Faults the client and the page walk must bound, counted at the fake Overseerr.

Retries (how many requests the fake received, how long the client waited), 401/403 without
a retry, page walks that would never end, a page whose write fails part way, a chunked body
over the cap, titles fetched once per tmdb id.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from medianest_workers.requests import client as client_module
from medianest_workers.requests import errors
from medianest_workers.requests.client import ClientOptions, OverseerrClient
from medianest_workers.requests.sync import SyncOptions, sync_requests
from tests.requests.fake_overseerr import KEY, FakeOverseerr
from tests.requests.test_sync import add_users, rows
from tests.requests.write_counter import XactWrites


def fast_client(url: str, key: str = KEY, **options: float) -> OverseerrClient:
    """A client with short timeouts and backoff (each test stays within a few seconds)."""
    defaults = {
        "connect_timeout": 1.0,
        "read_timeout": 1.0,
        "read_deadline": 2.0,
        "retries": 3,
        "backoff_factor": 0.01,
    }
    return OverseerrClient(url, SecretStr(key), ClientOptions(**{**defaults, **options}))


def one_request(fake: FakeOverseerr) -> None:
    fake.add_user(1, "one@example.org", 1001)
    fake.add_request(1, user=1, tmdb=10)


def sync_state(engine: Engine) -> dict | None:
    with engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM mnw_request_sync_state")).mappings().first()
    return dict(row) if row is not None else None


# -- retries ---------------------------------------------------------------------------------


def test_5xx_is_retried_with_backoff_then_answered(fake: FakeOverseerr) -> None:
    """Two 503s, then the page: three requests, the second retry after a backoff."""
    one_request(fake)
    fake.fault, fake.fault_times = "status503", 2
    with fast_client(fake.url, backoff_factor=0.2) as overseerr:
        started = time.monotonic()
        page = overseerr.list_requests(skip=0, take=10)
        waited = time.monotonic() - started
    assert [item["id"] for item in page.results] == [1]
    assert fake.count("GET /request") == 3
    # urllib3: no wait before the first retry, backoff_factor * 2 (+ jitter) before the next.
    assert 0.4 <= waited < 3, waited


def test_5xx_storm_gives_up_after_the_retries(fake: FakeOverseerr) -> None:
    one_request(fake)
    fake.fault = "status503"
    with (
        fast_client(fake.url, retries=2) as overseerr,
        pytest.raises(errors.OverseerrUnavailableError, match="HTTP 503 after retries"),
    ):
        overseerr.list_requests(skip=0, take=10)
    assert fake.count("GET /request") == 3  # the first call and two retries, no more


def test_429_waits_its_retry_after(fake: FakeOverseerr) -> None:
    one_request(fake)
    fake.fault, fake.fault_times, fake.retry_after = "status429", 1, "1"
    with fast_client(fake.url) as overseerr:
        started = time.monotonic()
        page = overseerr.list_requests(skip=0, take=10)
        waited = time.monotonic() - started
    assert page.page_info.results == 1
    assert fake.count("GET /request") == 2
    assert 0.95 <= waited < 3, waited  # Retry-After: 1 honoured (backoff alone is 0.01 s)


def test_429_storm_gives_up_after_the_retries(fake: FakeOverseerr) -> None:
    one_request(fake)
    fake.fault, fake.retry_after = "status429", "0"
    with (
        fast_client(fake.url, retries=2) as overseerr,
        pytest.raises(errors.OverseerrUnavailableError, match="HTTP 429 after retries"),
    ):
        overseerr.list_requests(skip=0, take=10)
    assert fake.count("GET /request") == 3


def test_a_long_retry_after_is_capped(fake: FakeOverseerr, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry-After: 3600 does not park the job for an hour: the wait is capped."""
    monkeypatch.setattr(client_module, "MAX_RETRY_AFTER_SECONDS", 0.3)
    one_request(fake)
    fake.fault, fake.fault_times, fake.retry_after = "status429", 1, "3600"
    with fast_client(fake.url) as overseerr:
        started = time.monotonic()
        overseerr.list_requests(skip=0, take=10)
        waited = time.monotonic() - started
    assert fake.count("GET /request") == 2
    assert 0.25 <= waited < 2, waited


def test_a_dropped_connection_is_retried(fake: FakeOverseerr) -> None:
    """The server closes the connection without an answer: the GET is sent again once
    (urllib3 counts it as a read error, retried once: the answer may have been lost)."""
    one_request(fake)
    fake.fault, fake.fault_times = "drop", 1
    with fast_client(fake.url) as overseerr:
        assert overseerr.list_requests(skip=0, take=10).page_info.results == 1
    assert fake.count("GET /request") == 2
    fake.fault, fake.fault_times = "drop", None
    with (
        fast_client(fake.url) as overseerr,
        pytest.raises(errors.OverseerrUnavailableError, match="cannot connect"),
    ):
        overseerr.list_requests(skip=0, take=10)
    assert fake.count("GET /request") == 4


def test_a_refused_connection_is_retried_with_backoff(fake: FakeOverseerr) -> None:
    """Overseerr is restarting: connections are refused for 0.3 s, then it listens. The call
    succeeds after retries with backoff, and Overseerr receives the request once."""
    one_request(fake)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    port = listener.getsockname()[1]
    server = ThreadingHTTPServer(
        ("127.0.0.1", port), fake.loopback.server.RequestHandlerClass, bind_and_activate=False
    )
    server.socket.close()
    server.socket = listener
    serving = threading.Event()

    def listen_later() -> None:
        time.sleep(0.3)
        listener.listen()
        serving.set()
        server.serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=listen_later, daemon=True)
    thread.start()
    try:
        with fast_client(f"http://127.0.0.1:{port}", retries=6, backoff_factor=0.1) as overseerr:
            started = time.monotonic()
            page = overseerr.list_requests(skip=0, take=10)
            waited = time.monotonic() - started
    finally:
        serving.wait(5)
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert page.page_info.results == 1
    assert waited >= 0.3
    assert fake.count("GET /request") == 1


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_auth_failed_without_retry(
    engine: Engine, session_factory: object, fake: FakeOverseerr, status: int
) -> None:
    add_users(engine, fake)
    fake.add_request(1, user=1, tmdb=10)
    key = "wrong" if status == 401 else KEY
    if status == 403:
        fake.fault = "status403"
    with (
        fast_client(fake.url, key, retries=4) as overseerr,
        pytest.raises(errors.AuthFailedError, match=f"HTTP {status}") as caught,
    ):
        sync_requests(overseerr, engine.connect)
    assert caught.value.code == "auth_failed"
    assert fake.count("GET /request") == 1  # exactly one request: no retry storm
    assert sync_state(engine) is None


# -- runaway page walks ----------------------------------------------------------------------


def test_more_results_than_pageinfo_announced_stops_the_walk(
    engine: Engine, session_factory: object, fake: FakeOverseerr
) -> None:
    """60 requests, pageInfo announces 20 (6 pages): the walk stops once it read more than
    announced plus one page of slack (page 4), with a PaginationError, the watermark unset."""
    add_users(engine, fake)
    for rid in range(1, 61):
        fake.add_request(rid, user=1, tmdb=rid)
    fake.fault = "understated_results"
    with (
        fast_client(fake.url) as overseerr,
        pytest.raises(errors.PaginationError, match="40 results read, pageInfo announced 20"),
    ):
        sync_requests(overseerr, engine.connect, options=SyncOptions(page_size=10))
    assert fake.count("GET /request") == 4  # no page read past the one that tripped it
    assert sync_state(engine) is None
    assert len(rows(engine)) == 30  # the pages before it committed, each on its own


def test_endless_distinct_pages_stop_at_the_page_bound(
    engine: Engine, session_factory: object, fake: FakeOverseerr
) -> None:
    """A server that pages forever with new requests on every page and announces a million
    pages: only the page bound can stop it, with a clear error, after exactly that many pages."""
    add_users(engine, fake)
    fake.add_request(1, user=1, tmdb=10)
    fake.fault = "endless_distinct"
    options = SyncOptions(page_size=5, max_pages=4)
    with (
        fast_client(fake.url) as overseerr,
        pytest.raises(errors.PaginationError, match=r"walked 4 pages \(limit 4\)") as caught,
    ):
        sync_requests(overseerr, engine.connect, options=options)
    assert caught.value.code == "pagination_abuse"
    assert "20 requests read" in str(caught.value)
    assert fake.count("GET /request") == 4  # none prefetched past the bound
    assert sync_state(engine) is None


# -- a page is one transaction ---------------------------------------------------------------


@pytest.fixture
def refuse_denied_5(engine: Engine) -> Iterator[None]:
    """The database refuses to mark request 5 denied (a CHECK constraint of the test's)."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "ALTER TABLE media_requests ADD CONSTRAINT test_refuses_denied_5"
                " CHECK (overseerr_id IS DISTINCT FROM '5' OR status <> 'denied')"
            )
        )
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(
                text("ALTER TABLE media_requests DROP CONSTRAINT IF EXISTS test_refuses_denied_5")
            )


def test_a_page_that_fails_part_way_keeps_nothing(
    engine: Engine, session_factory: object, fake: FakeOverseerr, refuse_denied_5: None
) -> None:
    """A page with two new requests (inserted first) and a change the database refuses (the
    update after them): none of the page's rows is kept, the watermark does not move, and
    the next sync, once the database accepts, writes the whole page."""
    add_users(engine, fake)
    for rid in range(1, 11):
        fake.add_request(rid, user=1, tmdb=rid)
    options = SyncOptions(page_size=3, overlap=dt.timedelta(seconds=1))
    with fast_client(fake.url) as overseerr:
        first = sync_requests(overseerr, engine.connect, options=options)
        assert first.created == 10
        before_state, before_rows = sync_state(engine), rows(engine)
        now = time.time()
        fake.add_request(22, user=1, tmdb=22, updated=now + 2)
        fake.add_request(21, user=1, tmdb=21, updated=now + 1)
        fake.add_request(5, user=1, tmdb=5, status=3, updated=now)  # denied: refused
        with XactWrites(engine) as writes, pytest.raises(IntegrityError, match="denied_5"):
            sync_requests(overseerr, engine.connect, options=options)
        assert writes.total == 0 and writes.inserted == 0
        assert rows(engine) == before_rows  # 21 and 22 not kept, 5 not changed
        assert sync_state(engine) == before_state  # watermark, last walk: untouched

        with engine.begin() as connection:
            connection.execute(
                text("ALTER TABLE media_requests DROP CONSTRAINT test_refuses_denied_5")
            )
        again = sync_requests(overseerr, engine.connect, options=options)
    assert (again.created, again.updated) == (2, 1)
    after = rows(engine)
    assert {"21", "22"} <= set(after) and after["5"]["status"] == "denied"
    assert sync_state(engine)["watermark"] > before_state["watermark"]


# -- smaller bounds --------------------------------------------------------------------------


def test_a_chunked_body_over_the_cap_is_refused_while_reading(fake: FakeOverseerr) -> None:
    """No Content-Length to refuse up front: 64 KiB chunks without end, refused by the cap
    as they arrive (not at the read deadline, not after 100 MB)."""
    one_request(fake)
    fake.fault = "huge_chunked"
    with (
        fast_client(fake.url, max_response_bytes=200_000, read_deadline=10) as overseerr,
        pytest.raises(errors.ResponseTooLargeError, match="exceeds 200000 bytes"),
    ):
        started = time.monotonic()
        overseerr.list_requests(skip=0, take=10)
    assert time.monotonic() - started < 3


def test_a_body_dripping_within_the_read_timeout_ends_at_the_deadline(
    fake: FakeOverseerr,
) -> None:
    """A byte every 0.2 s (each read well within the 1 s read timeout) with a Content-Length
    of 1 MB: the reading deadline (2 s) ends it, not the server."""
    one_request(fake)
    fake.fault = "drip"
    with (
        fast_client(fake.url, read_deadline=2) as overseerr,
        pytest.raises(errors.ResponseTimeoutError, match="not complete after 2 s"),
    ):
        started = time.monotonic()
        overseerr.list_requests(skip=0, take=10)
    assert time.monotonic() - started < 4


def test_a_server_that_never_answers_is_a_timeout(fake: FakeOverseerr) -> None:
    one_request(fake)
    fake.fault = "hang"
    with (
        fast_client(fake.url, read_timeout=0.5) as overseerr,
        pytest.raises(errors.OverseerrUnavailableError, match="timed out"),
    ):
        started = time.monotonic()
        overseerr.list_requests(skip=0, take=10)
    assert time.monotonic() - started < 3
    assert fake.count("GET /request") == 2  # a read timeout is retried once


def test_titles_are_fetched_once_per_tmdb_id(
    engine: Engine, session_factory: object, fake: FakeOverseerr
) -> None:
    """36 requests on 4 pages share three movies and one show (the show's tmdb id equals a
    movie's): four media-detail requests in all; a re-sync creates nothing and fetches none."""
    add_users(engine, fake)
    for rid in range(1, 31):
        fake.add_request(rid, user=1, tmdb=100 + rid % 3)
    for rid in range(31, 37):
        fake.add_request(rid, user=2, tmdb=100, media_type="tv")
    options = SyncOptions(page_size=10, title_concurrency=2)
    with fast_client(fake.url) as overseerr:
        report = sync_requests(overseerr, engine.connect, options=options)
        assert report.created == 36 and report.pages == 4
        details = [call for call in fake.calls if call.startswith(("GET /movie/", "GET /tv/"))]
        movies = [f"GET /movie/{tmdb}" for tmdb in (100, 101, 102)]
        assert sorted(details) == [*movies, "GET /tv/100"]
        synced = rows(engine)
        assert synced["31"]["title"] == "Title tv 100"
        assert synced["4"]["title"] == "Title movie 101"
        again = sync_requests(overseerr, engine.connect, full=True, options=options)
    assert again.unchanged == 36
    assert len([c for c in fake.calls if c.startswith(("GET /movie/", "GET /tv/"))]) == 4
