"""Pull sync against a loopback fake Overseerr: correctness, no-op re-sync, one change, faults."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from pydantic import SecretStr
from sqlalchemy import Engine, text

from medianest_workers.db.session import reset_engine
from medianest_workers.requests import errors, status_map
from medianest_workers.requests.client import ClientOptions, OverseerrClient, api_base
from medianest_workers.requests.sync import SyncOptions, sync_one, sync_requests
from tests.requests.fake_overseerr import KEY, FakeOverseerr
from tests.requests.write_counter import XactWrites, table_writes

SPEC = yaml.safe_load((Path(__file__).parents[1] / "contracts" / "overseerr-api.yml").read_text())


def spec_validator(schema_name: str) -> OAS30Validator:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": SPEC["components"]}
    return OAS30Validator(schema)


@pytest.fixture
def client(fake: FakeOverseerr) -> Iterator[OverseerrClient]:
    options = ClientOptions(read_timeout=2, read_deadline=3, retries=2, backoff_factor=0.01)
    with OverseerrClient(fake.url, SecretStr(KEY), options) as overseerr:
        yield overseerr


def add_users(engine: Engine, fake: FakeOverseerr) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, email, plex_id) VALUES"
                " ('u1', 'one@example.org', '1001'), ('u2', 'Two@Example.org', NULL)"
            )
        )
    fake.add_user(1, "other@example.org", 1001)  # matched by plex id
    fake.add_user(2, "two@example.org", None)  # matched by email, case-insensitively
    fake.add_user(3, "stranger@example.org", 4242)  # unknown here


def rows(engine: Engine) -> dict[str, dict]:
    with engine.connect() as connection:
        found = connection.execute(text("SELECT * FROM media_requests")).mappings().all()
    return {row["overseerr_id"]: dict(row) for row in found}


def n_tup(engine: Engine) -> tuple[int, int]:
    """Rows inserted and updated in media_requests (closed backends flush their counts)."""
    engine.dispose()
    time.sleep(0.5)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_stat_force_next_flush()"))
        return connection.execute(
            text(
                "SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables"
                " WHERE relname = 'media_requests'"
            )
        ).one()


CONTRACTS = Path(__file__).parents[1] / "contracts"
SPECS = {
    name: yaml.safe_load((CONTRACTS / name).read_text())
    for name in ("overseerr-api.yml", "seerr-api.yml")
}


def answer_validator(
    spec: dict, path: str, method: str = "get", status: str = "200"
) -> OAS30Validator:
    answer = spec["paths"][path][method]["responses"][status]["content"]["application/json"]
    return OAS30Validator({**answer["schema"], "components": spec["components"]})


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_fake_answers_validate_against_both_specs(
    fake: FakeOverseerr, client: OverseerrClient, spec_name: str
) -> None:
    """Each endpoint's answer, as the fake sends it over HTTP, against Overseerr's and Seerr's
    specs (request and media statuses of both, Seerr's 5 completed and 6/7 media included)."""
    spec = SPECS[spec_name]
    fake.add_user(1, "a@example.org", 1)
    fake.add_user(2, "b@example.org", None)
    for rid, (status, media_status) in enumerate(
        [(1, 2), (2, 3), (3, 1), (4, 5), (5, 5), (2, 6), (2, 7)], 1
    ):
        fake.add_request(
            rid, user=rid % 2 + 1, tmdb=100 + rid, status=status, media_status=media_status
        )
    fake.add_request(8, user=1, tmdb=200, media_type="tv")
    http = client._http  # the client's own session: its key, its base

    def get(path: str, **params: object) -> object:
        answer = http.get(client.base + path, params=params, timeout=5)
        assert answer.status_code == 200, (path, answer.status_code)
        return answer.json()

    answer_validator(spec, "/request").validate(get("/request", take=5, skip=0, sort="modified"))
    one = answer_validator(spec, "/request/{requestId}")
    one.validate(get("/request/5"))
    assert not one.is_valid({"id": "abc", "status": 2})  # the validator does check
    answer_validator(spec, "/movie/{movieId}").validate(get("/movie/101"))
    answer_validator(spec, "/tv/{tvId}").validate(get("/tv/200"))
    answer_validator(spec, "/user").validate(get("/user", take=10, skip=0))
    created = http.post(
        client.base + "/request",
        json={"mediaType": "movie", "mediaId": 999, "userId": 1},
        timeout=5,
    )
    assert created.status_code == 201
    answer_validator(spec, "/request", "post", "201").validate(created.json())


@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize(
    "fault", ["understated_results", "endless_distinct", "endless_pages", "repeat"]
)
def test_fault_pages_validate_against_both_specs(
    fake: FakeOverseerr, client: OverseerrClient, spec_name: str, fault: str
) -> None:
    """The scripted faults that answer a page lie in pageInfo or in which requests they hold,
    never in the shape: every page they send is valid for both specs."""
    fake.add_user(1, "a@example.org", 1)
    for rid in range(1, 8):
        fake.add_request(rid, user=1, tmdb=100 + rid)
    fake.fault = fault
    validator = answer_validator(SPECS[spec_name], "/request")
    for skip in (0, 3, 6, 30):
        answer = client._http.get(
            client.base + "/request", params={"take": 3, "skip": skip}, timeout=5
        )
        assert answer.status_code == 200
        validator.validate(answer.json())


def test_api_base_accepts_both_forms() -> None:
    assert api_base("http://o:5055") == "http://o:5055/api/v1"
    assert api_base("http://o:5055/api/v1/") == "http://o:5055/api/v1"


def test_fake_answers_validate_against_the_spec(fake: FakeOverseerr) -> None:
    fake.add_user(1, "a@example.org", 1)
    item = fake.add_request(1, user=1, tmdb=10)
    spec_validator("MediaRequest").validate(item)
    spec_validator("PageInfo").validate(fake.page([item], 20, 0)["pageInfo"])
    spec_validator("User").validate(fake.users[1])


@pytest.mark.parametrize(
    ("request_status", "media_status", "expected"),
    [
        *[(1, m, "pending") for m in range(1, 8)],
        *[(3, m, "denied") for m in range(1, 8)],
        *[(4, m, "failed") for m in range(1, 8)],
        (2, 1, "approved"),
        (2, 2, "approved"),
        (2, 3, "processing"),
        (2, 4, "partially-available"),
        (2, 5, "available"),
        (2, 6, "denied"),
        (2, 7, "failed"),
        (5, 1, "available"),
        (5, 2, "available"),
        (5, 3, "available"),
        (5, 4, "partially-available"),
        (5, 5, "available"),
        (5, 6, "denied"),
        (5, 7, "failed"),
        (2, None, "approved"),
        (0, 3, None),
        (6, 3, None),
        (2, 0, None),
        (2, 8, None),
        (1, 99, None),
    ],
)
def test_status_table(request_status: int, media_status: int | None, expected: str | None) -> None:
    result = status_map.backend_status(request_status, media_status)
    assert result == expected
    assert result is None or result in status_map.BACKEND_STATUSES


def test_first_sync_resync_and_one_change(
    engine: Engine, session_factory: object, fake: FakeOverseerr, client: OverseerrClient
) -> None:
    add_users(engine, fake)
    for rid in range(1, 251):
        fake.add_request(rid, user=1 if rid % 2 else 2, tmdb=1000 + rid, media_status=rid % 5 + 1)
    fake.add_request(251, user=3, tmdb=9999)  # unknown requester
    fake.add_request(252, user=1, tmdb=8888, media_type="music")  # odd media type
    fake.add_request(253, user=1, tmdb=7777, status=9)  # unknown status
    options = SyncOptions(page_size=40, title_concurrency=3, overlap=dt.timedelta(seconds=10))
    report = sync_requests(client, engine.connect, options=options)
    assert report.complete and report.full
    assert report.created == 250
    assert report.skipped == {
        "unknown_requester": 1,
        "unsupported_media_type": 1,
        "unknown_status": 1,
    }
    odd = [e for e in report.skip_examples if e["reason"] == "unsupported_media_type"]
    assert odd == [{"id": 252, "reason": "unsupported_media_type", "detail": "'music'"}]
    synced = rows(engine)
    assert set(synced) == {str(rid) for rid in range(1, 251)}
    for rid in range(1, 251):
        row = synced[str(rid)]
        assert row["user_id"] == ("u1" if rid % 2 else "u2")
        assert row["title"] == f"Title movie {1000 + rid}"
        assert row["tmdb_id"] == str(1000 + rid)
        assert row["media_type"] == "movie"
        expected = {1: "approved", 2: "approved", 3: "processing", 4: "partially-available"}
        assert row["status"] == expected.get(rid % 5 + 1, "available")
        assert (row["completed_at"] is not None) == (row["status"] == "available")

    before = n_tup(engine)
    again = sync_requests(client, engine.connect, options=options)
    assert again.created == 0 and again.updated == 0
    assert again.pages <= 2  # stopped past the watermark, not at the end (7 pages)
    assert n_tup(engine) == before  # no row written

    fake.add_request(7, user=1, tmdb=1007, status=3, updated=dt.datetime.now(dt.UTC).timestamp())
    changed = sync_requests(client, engine.connect, options=options)
    assert changed.updated == 1 and changed.created == 0
    assert rows(engine)["7"]["status"] == "denied"
    ins, upd = n_tup(engine)
    assert (ins, upd) == (before[0], before[1] + 1)


def test_sync_one_refetches_and_ignores_missing(
    engine: Engine, session_factory: object, fake: FakeOverseerr, client: OverseerrClient
) -> None:
    add_users(engine, fake)
    fake.add_request(5, user=1, tmdb=55, media_type="tv", status=5, media_status=5)
    result = sync_one(client, engine.connect, 5)
    assert result["found"] and result["created"] == 1
    assert rows(engine)["5"]["title"] == "Title tv 55"
    assert rows(engine)["5"]["status"] == "available"
    assert sync_one(client, engine.connect, 404)["found"] is False


def test_adopts_the_backends_local_row(
    engine: Engine, session_factory: object, fake: FakeOverseerr, client: OverseerrClient
) -> None:
    add_users(engine, fake)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO media_requests (id, user_id, title, media_type, tmdb_id)"
                " VALUES ('local', 'u1', 'Mine', 'movie', '31')"
            )
        )
    fake.add_request(3, user=1, tmdb=31)
    report = sync_requests(client, engine.connect)
    assert report.adopted == 1 and report.created == 0
    assert rows(engine)["3"]["id"] == "local"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("malformed_json", errors.SchemaError),
        ("html", errors.OverseerrUnavailableError),
        ("html200", errors.SchemaError),
        ("huge", errors.ResponseTooLargeError),
        ("endless", errors.ResponseTimeoutError),
        ("status503", errors.OverseerrUnavailableError),
        ("status429", errors.OverseerrUnavailableError),
        ("missing_pageinfo", errors.SchemaError),
        ("repeat", errors.PaginationError),
        ("endless_pages", errors.PaginationError),
    ],
)
def test_faults_are_clear_errors(
    engine: Engine,
    session_factory: object,
    fake: FakeOverseerr,
    client: OverseerrClient,
    fault: str,
    error: type[Exception],
) -> None:
    add_users(engine, fake)
    for rid in range(1, 31):
        fake.add_request(rid, user=1, tmdb=rid)
    fake.fault = fault
    with pytest.raises(error) as caught:
        sync_requests(client, engine.connect, options=SyncOptions(page_size=10))
    assert str(caught.value)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM mnw_request_sync_state")) == 0


def test_wrong_key_is_auth_failed(fake: FakeOverseerr) -> None:
    with (
        OverseerrClient(fake.url, SecretStr("wrong")) as overseerr,
        pytest.raises(errors.AuthFailedError),
    ):
        overseerr.list_requests(skip=0, take=10)
    assert fake.calls == ["GET /request"]  # no retry storm


def test_wrong_types_are_skips_naming_the_field(
    engine: Engine, session_factory: object, fake: FakeOverseerr, client: OverseerrClient
) -> None:
    add_users(engine, fake)
    fake.add_request(1, user=1, tmdb=1)
    bad = fake.add_request(2, user=1, tmdb=2)
    bad["id"] = "abc"
    negative = fake.add_request(3, user=1, tmdb=3)
    negative["media"]["tmdbId"] = -3
    odd = fake.add_request(4, user=1, tmdb=4)
    odd["updatedAt"] = "yesterday-ish"
    report = sync_requests(client, engine.connect)
    assert report.created == 1
    assert report.skipped["invalid_item"] == 3
    details = " ".join(example["detail"] for example in report.skip_examples)
    assert "id" in details and "media.tmdbId" in details and "updatedAt" in details
    # The peer's values are not quoted: an id that is no int is left out.
    assert sorted(map(str, (e["id"] for e in report.skip_examples))) == ["3", "4", "None"]


def test_resync_without_change_writes_no_row(
    engine: Engine, session_factory: object, fake: FakeOverseerr, client: OverseerrClient
) -> None:
    """Incremental and full re-syncs of 300 unchanged requests: 0 rows inserted or updated,
    counted per transaction (pg_stat_xact_user_tables) and in the table's statistics."""
    reset_engine()  # no other backend of this database may hold unflushed counts
    add_users(engine, fake)
    for rid in range(1, 301):
        fake.add_request(
            rid,
            user=1 if rid % 2 else 2,
            tmdb=5000 + rid,
            media_type="movie" if rid % 3 else "tv",
            status=(1, 2, 3, 4, 5)[rid % 5],
            media_status=rid % 7 + 1,
        )
    options = SyncOptions(page_size=50, title_concurrency=4)
    with XactWrites(engine) as first:
        created = sync_requests(client, engine.connect, options=options)
    assert created.created == 300 and first.inserted == 300 and first.updated == 0
    before = table_writes(engine)
    for full in (False, True, True):
        with XactWrites(engine) as writes:
            report = sync_requests(client, engine.connect, full=full, options=options)
        assert report.complete and report.created == report.updated == report.adopted == 0
        assert report.unchanged == (300 if full else report.fetched)
        assert writes.total == 0, (full, writes)
    assert table_writes(engine) == before


def test_environment_proxies_are_honoured_once_per_client(
    fake: FakeOverseerr, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client reads HTTP(S)_PROXY / NO_PROXY when it is built (not on every call)."""
    fake.add_user(1, "a@example.org", 1)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the discard port: nothing answers
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    options = ClientOptions(retries=0, connect_timeout=1, read_timeout=1)
    with (
        OverseerrClient(fake.url, SecretStr(KEY), options) as proxied,
        pytest.raises(errors.OverseerrUnavailableError),
    ):
        proxied.list_users(skip=0, take=10)
    assert fake.calls == []  # the call went to the (absent) proxy, not to Overseerr
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with OverseerrClient(fake.url, SecretStr(KEY), options) as direct:
        monkeypatch.setenv("NO_PROXY", "")  # read once: a later change does not matter
        assert direct.list_users(skip=0, take=10).page_info.results == 1
