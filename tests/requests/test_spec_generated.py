"""The sync and the push against an Overseerr generated from the OpenAPI spec alone.

Every answer is valid for overseerr-api.yml (checked) but meaningless: negative or huge ids,
fractional numbers, unknown statuses, odd dates, any text, fields present or not, pages that
cycle. For each example the sync (full, then incremental), sync_one and a push of one pending
row must end, within a bound, with a report (its skips recorded) or one of our clear errors:
never another exception, never a hang. SPEC_EXAMPLES sets the number of examples (default
120); explicit ones reach the database: one with a NUL in its title (PostgreSQL text cannot
hold it: a `title_unavailable` skip, not a crash), one dated 0001-01-01 (the watermark minus
the overlap would be before year 1).
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from openapi_schema_validator import OAS30Validator
from pydantic import SecretStr
from sqlalchemy import Engine, text

from medianest_workers.errors import MedianestWorkersError
from medianest_workers.requests.client import ClientOptions, OverseerrClient
from medianest_workers.requests.push import push_pending
from medianest_workers.requests.sync import SyncOptions, SyncReport, sync_one, sync_requests
from tests.requests.spec_server import ENDPOINTS, SpecServer, response_schema, worlds

SPEC = yaml.safe_load((Path(__file__).parents[1] / "contracts" / "overseerr-api.yml").read_text())
#: Longest one example's sync + push may take (short client timeouts, a bounded walk).
BOUND_SECONDS = 30.0
EXAMPLES = int(os.environ.get("SPEC_EXAMPLES", "120"))


def _validator(name: str) -> OAS30Validator:
    path, method, status = ENDPOINTS[name]
    schema = {**response_schema(SPEC, path, method, status), "components": SPEC["components"]}
    return OAS30Validator(schema)


VALIDATORS = {name: _validator(name) for name in ENDPOINTS}


def _written_world(title: str, updated: str = "2020-09-12T10:00:27.000Z") -> dict[str, Any]:
    """A world whose one request reaches the database (its title and date as given)."""
    user = {"id": 3, "email": "one@example.org", "createdAt": "", "updatedAt": "yesterday"}
    item = {
        "id": 11,
        "status": 2,
        "type": "movie",
        "updatedAt": updated,
        "requestedBy": user,
        "media": {"tmdbId": 604, "status": 5, "mediaType": "movie"},
    }
    page = {"pageInfo": {"page": 1, "pages": 1, "results": 1}, "results": [item]}
    return {
        "pages": [page],
        "request": item,
        "created": item,
        "movie": {"id": 604, "title": title},
        "tv": {"id": 604, "name": title},
        "users": {"pageInfo": {"pages": 1, "results": 1}, "results": [user]},
    }


def _requesters(world: dict[str, Any]) -> list[str]:
    """Emails of the generated requesters (so that some requests match a local user)."""
    emails = []
    for page in world["pages"]:
        for item in page.get("results", []):
            who = item.get("requestedBy") if isinstance(item, dict) else None
            if isinstance(who, dict) and isinstance(who.get("email"), str):
                emails.append(who["email"])
    for user in world["users"].get("results", []):
        if isinstance(user.get("email"), str):
            emails.append(user["email"])
    return emails


def _local_state(engine: Engine, world: dict[str, Any]) -> None:
    emails = [e for e in dict.fromkeys(_requesters(world)) if "\x00" not in e]
    with engine.begin() as connection:
        for table in ("mnw_request_pushes", "media_requests", "mnw_request_sync_state", "users"):
            connection.execute(text(f"DELETE FROM {table}"))
        for email in emails:
            connection.execute(
                text("INSERT INTO users (id, email) VALUES (:id, :email)"),
                {"id": str(uuid.uuid4()), "email": email},
            )
        if emails:
            connection.execute(
                text(
                    "INSERT INTO media_requests (id, user_id, title, media_type, tmdb_id)"
                    " SELECT 'local', id, 'Local', 'movie', '603' FROM users LIMIT 1"
                )
            )


def _bounded(action: Any) -> Any:
    """`action()`'s result or exception; AssertionError when it outlives BOUND_SECONDS."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = action()
        except BaseException as exc:  # noqa: BLE001 - judged by the caller
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND_SECONDS)
    assert not thread.is_alive(), f"no end after {BOUND_SECONDS} s"
    return outcome


def _ended_cleanly(outcome: dict[str, Any]) -> None:
    error = outcome.get("error")
    if error is not None:
        assert isinstance(error, MedianestWorkersError), repr(error)
        assert str(error)
        return
    result = outcome["result"]
    if isinstance(result, SyncReport):
        assert result.complete
        recorded = result.created + result.updated + result.unchanged + sum(result.skipped.values())
        assert recorded <= result.fetched


def test_sync_and_push_end_cleanly_against_a_server_generated_from_the_spec(
    engine: Engine, session_factory: object
) -> None:
    server = SpecServer()
    options = ClientOptions(read_timeout=2, read_deadline=3, retries=0, backoff_factor=0.01)
    sync_options = SyncOptions(page_size=5, max_pages=20, title_concurrency=2)
    outcomes: dict[str, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(world=worlds(SPEC))
    @example(world=_written_world("Dune"))
    @example(world=_written_world("Du\x00ne"))
    @example(world=_written_world("Dune", updated="0001-01-01T00:00:00.000Z"))
    def run_example(world: dict[str, Any]) -> None:
        for name, validator in VALIDATORS.items():
            answers = world[name] if name == "pages" else [world[name]]
            for answer in answers:
                validator.validate(answer)
        server.world = world
        _local_state(engine, world)
        with OverseerrClient(server.url, SecretStr("any"), options) as client:
            for full in (True, False):
                outcome = _bounded(
                    lambda full=full: sync_requests(
                        client, engine.connect, full=full, options=sync_options
                    )
                )
                _ended_cleanly(outcome)
                key = type(outcome.get("error", outcome.get("result"))).__name__
                outcomes[key] = outcomes.get(key, 0) + 1
                if key == "SyncReport":
                    report = outcome["result"]
                    outcomes["created"] = outcomes.get("created", 0) + report.created
                    for reason, count in report.skipped.items():
                        outcomes[reason] = outcomes.get(reason, 0) + count
            _ended_cleanly(_bounded(lambda: sync_one(client, engine.connect, 7)))
            _ended_cleanly(_bounded(lambda: push_pending(client, engine.connect)))
        with engine.connect() as connection:
            synced = connection.scalar(
                text("SELECT count(*) FROM media_requests WHERE overseerr_id IS NOT NULL")
            )
        outcomes["rows_synced"] = outcomes.get("rows_synced", 0) + synced

    try:
        run_example()
    finally:
        server.stop()
    print(outcomes)
    assert outcomes.get("SyncReport", 0) > 0  # the walk does get through generated pages
    assert outcomes.get("rows_synced", 0) > 0  # and requests get as far as the database
