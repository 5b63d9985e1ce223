"""Batched cleanup against one plain DELETE, on identical tables, with a writer running meanwhile.

    python3 -m bench.cleanup [--rows 2000000]

Builds `--rows` session_tokens (COPY; half of them expired, shuffled) in a database of its
own, clones it (CREATE DATABASE ... TEMPLATE) and prints, for the batched cleanup
(maintenance/cleanup.py, default settings) on one copy and for a single
`DELETE FROM session_tokens WHERE expires_at < now()` on the other: the total time, the
longest single statement, and the longest wait of a concurrent writer (single-row INSERT
commits of fresh tokens in a loop, each one timed). Targets: no cleanup statement over
250 ms, no writer wait over 250 ms, batched total within 2x the plain DELETE.
Uses the DATABASE_URL server when set (else an embedded one); drops its databases at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_ID = uuid.uuid4().hex[:8]
USER_ID = "bench-user"
CHUNK_ROWS = 200_000
LIMIT_MS = 250.0


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server URL: DATABASE_URL when set, else an embedded server."""
    from medianest_workers.runtime.embedded import EmbeddedPostgres

    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="mnw-bench-") as folder:
        server = EmbeddedPostgres(Path(folder) / "pg", keep=False)
        url = server.start()
        try:
            yield url
        finally:
            server.stop()


def expiries(rows: int, layout: str, seed: int = 42) -> Iterator[dt.datetime]:
    """The `expires_at` of each row in insertion order; about half are in the past.

    ordered: tokens inserted as they are issued over 60 days, each expiring 30 days later
    (+- 1 day), so that the table's physical order follows `expires_at` as in production.
    shuffled: expired and valid rows interleaved at random (the worst case for an index scan).
    """
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    span = 60 * 86_400
    for n in range(rows):
        if layout == "ordered":
            issued = now - dt.timedelta(seconds=span * (1 - n / rows))
            yield issued + dt.timedelta(days=30, seconds=rng.randint(-86_400, 86_400))
        else:
            offset = dt.timedelta(seconds=rng.randint(60, 30 * 86_400))
            yield now - offset if rng.random() < 0.5 else now + offset


def copy_rows(url: str, rows: int, layout: str) -> None:
    """COPY `rows` session tokens (see `expiries`), plus the user they belong to."""
    import psycopg2

    rng = random.Random(7)
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO users (id, email) VALUES (%s, 'bench@example.com')", (USER_ID,)
            )
            buffer = io.StringIO()
            for n, expires in enumerate(expiries(rows, layout)):
                buffer.write(f"t{n}\t{USER_ID}\t{rng.randbytes(32).hex()}\t{expires}\n")
                if (n + 1) % CHUNK_ROWS == 0 or n + 1 == rows:
                    buffer.seek(0)
                    cursor.copy_expert(
                        "COPY session_tokens (id, user_id, token_hash, expires_at) FROM STDIN",
                        buffer,
                    )
                    buffer = io.StringIO()
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE session_tokens")
    finally:
        connection.close()


def clone_database(server_url: str, name: str, template: str) -> None:
    """CREATE DATABASE name TEMPLATE template: an identical copy, page for page."""
    import psycopg2
    from psycopg2 import sql

    connection = psycopg2.connect(server_url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
    finally:
        connection.close()


@dataclass
class WriterStats:
    inserts: int = 0
    longest_ms: float = 0.0


class Writer(threading.Thread):
    """Inserts fresh tokens one row per transaction, timing each commit, until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stats = WriterStats()
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        import psycopg2

        connection = psycopg2.connect(self.url)
        try:
            with connection.cursor() as cursor:
                n = 0
                while not self.stopping.is_set():
                    started = time.perf_counter()
                    cursor.execute(
                        "INSERT INTO session_tokens (id, user_id, token_hash, expires_at)"
                        " VALUES (%s, %s, %s, timezone('UTC', now()) + interval '1 day')",
                        (f"w-{RUN_ID}-{n}", USER_ID, f"writer-{RUN_ID}-{n}"),
                    )
                    connection.commit()
                    elapsed = (time.perf_counter() - started) * 1000
                    self.stats.inserts += 1
                    self.stats.longest_ms = max(self.stats.longest_ms, elapsed)
                    n += 1
                    self.ready.set()
        finally:
            connection.close()

    def __enter__(self) -> Writer:
        self.start()
        self.ready.wait(30)
        time.sleep(0.5)  # the writer's own steady state first
        return self

    def __exit__(self, *_exc: object) -> None:
        time.sleep(0.5)
        self.stopping.set()
        self.join(30)


@dataclass
class Result:
    total_s: float
    longest_ms: float
    writer: WriterStats
    deleted: int
    statements: int


def run_batched(url: str) -> Result:
    from medianest_workers.db.session import build_engine
    from medianest_workers.maintenance import cleanup
    from medianest_workers.settings import load_settings

    settings = load_settings(database_url=url)
    engine = build_engine(settings)
    deleted = statements = 0
    longest = 0.0
    try:
        with Writer(url) as writer:
            started = time.perf_counter()
            while True:  # as successive scheduled runs would, should one run's budget end
                [report] = cleanup.run_cleanup(["session_tokens"], settings=settings, engine=engine)
                deleted += report.deleted
                statements += report.batches + report.timeouts
                longest = max(longest, report.longest_statement_ms)
                if report.complete:
                    break
            total = time.perf_counter() - started
    finally:
        engine.dispose()
    return Result(total, longest, writer.stats, deleted, statements)


def run_plain(url: str) -> Result:
    import psycopg2

    connection = psycopg2.connect(url)
    try:
        with Writer(url) as writer, connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute("DELETE FROM session_tokens WHERE expires_at < timezone('UTC', now())")
            connection.commit()
            total = time.perf_counter() - started
            deleted = cursor.rowcount
    finally:
        connection.close()
    return Result(total, total * 1000, writer.stats, deleted, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="session_tokens to build")
    parser.add_argument(
        "--layout",
        choices=("ordered", "shuffled"),
        default="ordered",
        help="rows in the order they are issued (production), or expired ones at random",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    from medianest_workers.db import admin, migrate
    from medianest_workers.settings import reset_settings_cache

    with postgres_server() as server_url:
        batched_name, plain_name = f"mnw_bench_cleanup_{RUN_ID}", f"mnw_bench_plain_{RUN_ID}"
        batched_url = admin.create_database(server_url, batched_name)
        plain_url = admin.database_url(server_url, plain_name)
        os.environ["DATABASE_URL"] = batched_url
        reset_settings_cache()
        try:
            migrate.upgrade(batched_url)
            started = time.perf_counter()
            copy_rows(batched_url, args.rows, args.layout)
            built = time.perf_counter() - started
            print(f"built {args.rows:,} session_tokens ({args.layout}) in {built:.1f} s")
            clone_database(server_url, plain_name, batched_name)
            batched = run_batched(batched_url)
            plain = run_plain(plain_url)
        finally:
            admin.drop_database(server_url, plain_name)
            admin.drop_database(server_url, batched_name)

    print(
        f"\n{'':22} {'total s':>8} {'longest stmt ms':>16} {'statements':>11}"
        f" {'deleted':>10} {'writer inserts':>15} {'writer max wait ms':>19}"
    )
    for name, result in (("batched cleanup", batched), ("one plain DELETE", plain)):
        print(
            f"{name:22} {result.total_s:8.2f} {result.longest_ms:16.1f} {result.statements:11}"
            f" {result.deleted:10,} {result.writer.inserts:15,} {result.writer.longest_ms:19.1f}"
        )
    ratio = batched.total_s / plain.total_s if plain.total_s else float("inf")
    checks = [
        (f"no cleanup statement over {LIMIT_MS:.0f} ms", batched.longest_ms <= LIMIT_MS),
        (f"the writer never waits over {LIMIT_MS:.0f} ms", batched.writer.longest_ms <= LIMIT_MS),
        (f"batched total within 2x the plain DELETE ({ratio:.2f}x)", ratio <= 2.0),
    ]
    print()
    for text, ok in checks:
        print(f"{'met ' if ok else 'MISSED'}  {text}")


if __name__ == "__main__":
    main()
