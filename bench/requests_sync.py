"""The Overseerr pull sync against a naive one-request-at-a-time loop, in one run.

    python3 -m bench.requests_sync [--requests 10000] [--naive 2000] [--users 200]

Serves `--requests` requests (movies and tv, every status, `--users` requesters) from the
loopback fake Overseerr of the tests (tests/requests/fake_overseerr.py, in a process of its own,
as Overseerr is), in a database of its
own, and prints:
- naive: for each request, GET /request/{id}, GET /movie|tv/{tmdbId} for its title, then the
  requester, the row and its INSERT in a transaction of its own (the baseline; run on the first
  `--naive` requests, compared per request);
- first sync: `requests.sync`'s service function (requests/sync.py, default settings) on an
  empty table, checked row for row against the fake;
- re-sync with no change: the beat's incremental sync, and a `full` walk of everything;
- one change: one request changed in Overseerr, then the incremental sync.
Rows written are counted twice: each transaction's pg_stat_xact_user_tables before its commit,
and pg_stat_user_tables once the sync's backends have exited. Targets: first sync at least
10x the naive loop per request; re-sync with no change under 2 s and 0 rows written.
Uses the DATABASE_URL server when set (else an embedded one); drops its database at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_ID = uuid.uuid4().hex[:8]
TARGET_RATIO = 10.0
TARGET_RESYNC_S = 2.0


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A migrated database of this run's own (DATABASE_URL's server, else an embedded one)."""
    from bench.cleanup import postgres_server
    from medianest_workers.db import admin, migrate
    from medianest_workers.db.session import reset_engine
    from medianest_workers.settings import reset_settings_cache

    with postgres_server() as server_url:
        name = f"mnw_bench_requests_{RUN_ID}"
        url = admin.create_database(server_url, name)
        os.environ["DATABASE_URL"] = url
        reset_settings_cache()
        try:
            migrate.upgrade(url)
            yield url
        finally:
            reset_engine()
            admin.drop_database(server_url, name)


def populate_fake(fake: Any, requests: int, users: int) -> None:
    """`users` requesters and `requests` requests (movies and tv, every status) in the fake."""
    for uid in range(1, users + 1):
        fake.add_user(uid, f"user{uid}@example.org", 10_000 + uid if uid % 2 else None)
    start = time.time() - 86_400
    for rid in range(1, requests + 1):
        fake.add_request(
            rid,
            user=rid % users + 1,
            tmdb=100_000 + rid,
            media_type="movie" if rid % 3 else "tv",
            status=(1, 2, 2, 3, 4, 5)[rid % 6],
            media_status=rid % 7 + 1,
            updated=start + rid * 5,
        )


def populate_users(engine: Any, users: int) -> None:
    """The same requesters in `users`: odd ones matched by plex id, even ones by email."""
    from sqlalchemy import text

    rows = [
        {
            "id": f"u{uid}",
            "email": f"User{uid}@Example.org",
            "plex": 10_000 + uid if uid % 2 else None,
        }
        for uid in range(1, users + 1)
    ]
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, email, plex_id) VALUES (:id, :email, CAST(:plex AS text))"
            ),
            rows,
        )


def _serve(pipe: Any, requests: int, users: int) -> None:
    from tests.requests.fake_overseerr import FakeOverseerr

    fake = FakeOverseerr()
    try:
        populate_fake(fake, requests, users)
        pipe.send(fake.url)
        while True:
            command, *args = pipe.recv()
            if command == "stop":
                return
            if command == "snapshot":
                pipe.send((fake.requests, fake.titles))
            elif command == "decline":
                old = fake.requests[args[0]]
                fake.add_request(
                    args[0],
                    user=old["requestedBy"]["id"],
                    tmdb=old["media"]["tmdbId"],
                    media_type=old["type"],
                    status=3,
                    media_status=old["media"]["status"],
                    updated=time.time(),
                )
                pipe.send("ok")
    finally:
        fake.stop()


class FakeProcess:
    """The fake Overseerr in a process of its own (as Overseerr is), driven over a pipe."""

    def __init__(self, requests: int, users: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, requests, users), daemon=True)
        self.process.start()
        if not self._pipe.poll(120):
            raise RuntimeError("the fake Overseerr did not start")
        self.url: str = self._pipe.recv()

    def snapshot(self) -> tuple[dict[int, Any], dict[tuple[str, int], str]]:
        self._pipe.send(("snapshot",))
        return self._pipe.recv()

    def decline(self, request_id: int) -> None:
        self._pipe.send(("decline", request_id))
        self._pipe.recv()

    def stop(self) -> None:
        if self.process.is_alive():
            self._pipe.send(("stop",))
            self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)


def check_rows(fake: FakeProcess, engine: Any) -> list[str]:
    """Differences between media_requests and the fake's requests (empty: row for row)."""
    from sqlalchemy import text

    from medianest_workers.requests import status_map

    requests, titles = fake.snapshot()
    with engine.connect() as connection:
        found = {
            row[0]: (*row[1:6], row[6] is not None)
            for row in connection.execute(
                text(
                    "SELECT overseerr_id, user_id, title, media_type, tmdb_id, status,"
                    " completed_at FROM media_requests"
                )
            )
        }
    problems = []
    for rid, item in requests.items():
        media = item["media"]
        status = status_map.backend_status(item["status"], media["status"])
        want = (
            f"u{item['requestedBy']['id']}",
            titles[(media["mediaType"], media["tmdbId"])],
            media["mediaType"],
            str(media["tmdbId"]),
            status,
            status == "available",
        )
        got = found.pop(str(rid), None)
        if got != want:
            problems.append(f"request {rid}: {got} != {want}")
    problems.extend(f"row {key} not in Overseerr" for key in found)
    return problems


@dataclass
class Phase:
    name: str
    requests: int
    seconds: float
    xact_writes: int
    table_writes: int
    pages: int = 0
    detail: str = ""

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else float("inf")


def measured(name: str, engine: Any, requests: int, action: Any) -> tuple[Phase, Any]:
    from tests.requests.write_counter import XactWrites, table_writes

    before = table_writes(engine)
    with XactWrites(engine) as writes:
        started = time.perf_counter()
        result = action()
        seconds = time.perf_counter() - started
    after = table_writes(engine)
    phase = Phase(name, requests, seconds, writes.total, after.total - before.total)
    return phase, result


def naive_loop(client: Any, engine: Any, ids: list[int]) -> None:
    """One request at a time: fetch it, fetch its title, match, write, commit."""
    from sqlalchemy import text

    from medianest_workers.requests import status_map
    from medianest_workers.requests.models import parse_request

    for rid in ids:
        item = parse_request(client.get_request(rid))
        if isinstance(item, tuple):
            continue
        status = status_map.backend_status(item.status, item.media_status)
        media_type = item.media_type
        if status is None or media_type not in ("movie", "tv") or item.media is None:
            continue
        tmdb = item.media.tmdb_id
        title = client.media_details(media_type, tmdb).display_title
        who = item.requested_by
        with engine.begin() as connection:
            user = None
            if who is not None and who.plex_id:
                user = connection.scalar(
                    text("SELECT id FROM users WHERE plex_id = :p"), {"p": str(who.plex_id)}
                )
            if user is None and who is not None and who.email:
                user = connection.scalar(
                    text("SELECT id FROM users WHERE lower(email) = lower(:e)"), {"e": who.email}
                )
            if user is None:
                continue
            existing = connection.scalar(
                text("SELECT id FROM media_requests WHERE overseerr_id = :o"), {"o": str(rid)}
            )
            if existing is None:
                connection.execute(
                    text(
                        "INSERT INTO media_requests (id, user_id, title, media_type, tmdb_id,"
                        " status, overseerr_id, created_at, completed_at) VALUES (:id, :u, :t,"
                        " :m, :tmdb, :s, :o, :c, CASE WHEN :s = 'available'"
                        " THEN timezone('UTC', now()) END)"
                    ),
                    {
                        "id": str(uuid.uuid4()),
                        "u": user,
                        "t": title,
                        "m": media_type,
                        "tmdb": str(tmdb),
                        "s": status,
                        "o": str(rid),
                        "c": item.created_at,
                    },
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests in Overseerr")
    parser.add_argument("--naive", type=int, default=2_000, help="requests the naive loop does")
    parser.add_argument("--users", type=int, default=200, help="requesters")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    from pydantic import SecretStr
    from sqlalchemy import text

    from medianest_workers.db.session import build_engine
    from medianest_workers.requests.client import ClientOptions, OverseerrClient
    from medianest_workers.requests.sync import SyncOptions, sync_requests
    from medianest_workers.settings import get_settings
    from tests.requests.fake_overseerr import KEY

    with database():
        settings = get_settings()
        engine = build_engine(settings, application_name="bench-requests-sync")
        started = time.perf_counter()
        fake = FakeProcess(args.requests, args.users)
        phases: list[Phase] = []
        try:
            populate_users(engine, args.users)
            print(
                f"{args.requests:,} requests of {args.users} requesters in the fake Overseerr"
                f" ({time.perf_counter() - started:.1f} s)"
            )
            client = OverseerrClient(fake.url, SecretStr(KEY), ClientOptions.from_settings())
            options = SyncOptions.from_settings()
            naive_ids = list(range(1, min(args.naive, args.requests) + 1))
            naive, _ = measured(
                "naive loop", engine, len(naive_ids), lambda: naive_loop(client, engine, naive_ids)
            )
            phases.append(naive)
            with engine.begin() as connection:
                connection.execute(text("TRUNCATE media_requests, mnw_request_sync_state"))

            def sync(full: bool) -> Any:
                return sync_requests(client, engine.connect, full=full, options=options)

            first, report = measured("first sync", engine, args.requests, lambda: sync(True))
            first.pages = report.pages
            first.detail = f"created {report.created:,}, skipped {dict(report.skipped)}"
            phases.append(first)
            problems = check_rows(fake, engine)

            again, report = measured(
                "re-sync, no change", engine, args.requests, lambda: sync(False)
            )
            again.pages = report.pages
            again.detail = f"unchanged {report.unchanged}, walk stopped at the watermark"
            phases.append(again)

            full, report = measured(
                "full re-sync, no change", engine, args.requests, lambda: sync(True)
            )
            full.pages = report.pages
            full.detail = f"unchanged {report.unchanged:,}"
            phases.append(full)

            changed_id = args.requests // 2
            fake.decline(changed_id)
            one, report = measured("one change", engine, args.requests, lambda: sync(False))
            one.pages = report.pages
            one.detail = f"updated {report.updated}"
            phases.append(one)
            problems += check_rows(fake, engine)
            client.close()
        finally:
            fake.stop()
            engine.dispose()

    print(
        f"\n{'':26} {'requests':>9} {'seconds':>8} {'req/s':>9} {'pages':>6}"
        f" {'rows written (xact / table stats)':>34}"
    )
    for phase in phases:
        writes = f"{phase.xact_writes:,} / {phase.table_writes:,}"
        print(
            f"{phase.name:26} {phase.requests:9,} {phase.seconds:8.2f} {phase.per_second:9,.0f}"
            f" {phase.pages:6} {writes:>34}   {phase.detail}"
        )
    ratio = first.per_second / naive.per_second
    print(f"\nfirst sync / naive loop, per request: {ratio:.1f}x")
    print(f"re-sync with no change: {again.seconds:.3f} s; full walk {full.seconds:.2f} s")
    checks = [
        (f"first sync correct row for row ({len(problems)} differences)", not problems),
        (f"first sync at least {TARGET_RATIO:.0f}x the naive loop ({ratio:.1f}x)", ratio >= 10),
        (
            f"re-sync with no change under {TARGET_RESYNC_S:.0f} s ({again.seconds:.2f} s)",
            again.seconds < TARGET_RESYNC_S,
        ),
        (
            f"re-syncs with no change write 0 rows ({again.xact_writes}/{again.table_writes},"
            f" full {full.xact_writes}/{full.table_writes})",
            again.xact_writes == again.table_writes == full.xact_writes == full.table_writes == 0,
        ),
        (
            f"one change writes exactly 1 row ({one.xact_writes}/{one.table_writes})",
            one.xact_writes == one.table_writes == 1,
        ),
    ]
    print()
    for line, ok in checks:
        print(f"{'met ' if ok else 'MISSED'}  {line}")
    for problem in problems[:10]:
        print("  ", problem)


if __name__ == "__main__":
    main()
