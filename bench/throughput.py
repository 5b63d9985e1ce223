"""Throughput of the job platform against raw Celery, measured in one run on one machine.

    python3 -m bench.throughput [--jobs 5000] [--publish 3000] [--rounds 3]

Prints, with the same reliability settings (acks late, prefetch 1, prefork -c 2):
- publish: a plain `.delay()` loop (the baseline), `enqueue()` one by one, `enqueue_many()`
  in batches of 100, and over HTTP (single jobs, and batches of 100), ledger rows included;
- drain: raw Celery no-op tasks/s (the baseline) and ledger-tracked `platform.noop` jobs/s.
Each measurement runs `--rounds` times, alternated with its baseline; the table shows, for each
row, the round whose ratio to its baseline is the median.
Uses DATABASE_URL / REDIS_URL servers when set (else embedded ones), in a database and a
Redis prefix of its own that it removes at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_ID = uuid.uuid4().hex[:8]
PREFIX = f"mnw-bench-{RUN_ID}:"
API_KEY = f"bench-{RUN_ID}"


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, str]]:
    """(PostgreSQL server URL, Redis URL): from the environment, else embedded."""
    from medianest_workers.runtime.embedded import EmbeddedPostgres, EmbeddedValkey

    with tempfile.TemporaryDirectory(prefix="mnw-bench-") as folder:
        started = []
        pg_url = os.environ.get("DATABASE_URL")
        redis_url = os.environ.get("REDIS_URL")
        if not pg_url:
            pg = EmbeddedPostgres(Path(folder) / "pg", keep=False)
            pg_url = pg.start()
            started.append(pg)
        if not redis_url:
            valkey = EmbeddedValkey(Path(folder) / "valkey", persist=False)
            redis_url = valkey.start()
            started.append(valkey)
        try:
            yield pg_url, redis_url
        finally:
            for server in reversed(started):
                server.stop()


@contextlib.contextmanager
def bench_environment() -> Iterator[str]:
    """A migrated database and a Redis prefix of this run's own, set in os.environ."""
    import redis

    from medianest_workers.db import admin, migrate
    from medianest_workers.settings import reset_settings_cache

    with servers() as (server_url, redis_url):
        name = f"mnw_bench_{RUN_ID}"
        url = admin.create_database(server_url, name)
        os.environ.update(
            DATABASE_URL=url,
            REDIS_URL=redis_url,
            REDIS_KEY_PREFIX=PREFIX,
            API_KEYS=API_KEY,
            DB_POOL_SIZE="10",
            RESCUE_QUEUED_AFTER_SECONDS="3600",
        )
        reset_settings_cache()
        try:
            migrate.upgrade(url)
            yield redis_url
        finally:
            from medianest_workers.db.session import reset_engine

            reset_engine()
            admin.drop_database(server_url, name)
            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=f"{PREFIX}*", count=1000))
            if keys:
                client.delete(*keys)


def rate(count: int, action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return count / (time.perf_counter() - started)


def reset_state(redis_url: str) -> None:
    import redis
    from sqlalchemy import text

    from medianest_workers.db.session import get_engine

    with get_engine().begin() as connection:
        connection.execute(text("TRUNCATE mnw_jobs"))
    client = redis.Redis.from_url(redis_url)
    keys = [key for key in client.scan_iter(match=f"{PREFIX}*") if b"redbeat" not in key]
    if keys:
        client.delete(*keys)


# --- publishing -----------------------------------------------------------------------------


def publish_delay_loop(count: int) -> float:
    from bench.raw_app import raw_noop

    return rate(count, lambda: [raw_noop.apply_async(queue="bench_raw") for _ in range(count)])


def publish_enqueue_loop(count: int) -> float:
    from medianest_workers.platform.enqueue import enqueue

    return rate(count, lambda: [enqueue("platform.noop", {}) for _ in range(count)])


def publish_enqueue_batches(count: int, size: int = 100) -> float:
    from medianest_workers.platform.enqueue import JobRequest, enqueue_many

    def run() -> None:
        for _ in range(count // size):
            enqueue_many([JobRequest(kind="platform.noop") for _ in range(size)])

    return rate(count // size * size, run)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def api_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "medianest_workers.api.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def publish_http(base: str, count: int, *, batch: int, clients: int) -> float:
    """Jobs/s enqueued over HTTP by `clients` threads, each on one keep-alive connection.

    The load comes from the standard library's http.client: the API is measured, not the
    client. httpx, tried first, spent about 1 ms of CPU per request, as much as the API's
    own work, on the same two cores.
    """
    host, port = base.removeprefix("http://").split(":")
    per_client = count // clients // batch
    if batch == 1:
        path, body = "/v1/jobs", json.dumps({"kind": "platform.noop"}).encode()
    else:
        jobs = [{"kind": "platform.noop"} for _ in range(batch)]
        path, body = "/v1/jobs/batch", json.dumps({"jobs": jobs}).encode()
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}

    def client_loop() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            for _ in range(per_client):
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                if response.status != 202:
                    raise RuntimeError(f"{path} answered {response.status}: {answer[:200]!r}")
        finally:
            connection.close()

    def run() -> None:
        threads = [threading.Thread(target=client_loop) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return rate(per_client * clients * batch, run)


# --- draining -------------------------------------------------------------------------------


@contextlib.contextmanager
def idle_worker(app_path: str, node: str) -> Iterator[None]:
    """A prefork -c 2 worker consuming only an empty queue until told otherwise."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app_path,
            "worker",
            "-Q",
            f"idle-{node}",
            "-c",
            "2",
            "-P",
            "prefork",
            "-n",
            f"{node}@%h",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "WARNING",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        start_new_session=True,
    )
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def wait_ready(app: object, node: str) -> str:
    destination = f"{node}@{socket.gethostname()}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if app.control.ping(destination=[destination], timeout=0.5):  # type: ignore[attr-defined]
            return destination
    raise RuntimeError(f"worker {destination} did not start")


def drain(app: object, node: str, queue: str, done: Callable[[], bool]) -> float:
    destination = wait_ready(app, node)
    started = time.perf_counter()
    app.control.add_consumer(queue, destination=[destination], reply=False)  # type: ignore[attr-defined]
    while not done():
        # Every 50 ms (0.1 % of a 5000-job drain): at 5 ms the ledger's count(*) took a third
        # of the drain's database time, a cost of the measurement, not of the ledger.
        time.sleep(0.05)
    return time.perf_counter() - started


def drain_raw(redis_url: str, count: int) -> float:
    import redis

    from bench.raw_app import app, raw_noop

    client = redis.Redis.from_url(redis_url)
    with idle_worker("bench.raw_app:app", "raw"):
        for _ in range(count):
            raw_noop.apply_async(queue="bench_raw")

        def done() -> bool:
            return client.llen(f"{PREFIX}bench_raw") == 0 and client.hlen(f"{PREFIX}unacked") == 0

        return count / drain(app, "raw", "bench_raw", done)


def drain_ledger(count: int) -> float:
    from sqlalchemy import text

    from medianest_workers.db.session import get_engine
    from medianest_workers.platform.celery_app import app
    from medianest_workers.platform.enqueue import JobRequest, enqueue_many

    with idle_worker("medianest_workers.platform.celery_app:app", "ledger"):
        for _ in range(count // 100):
            enqueue_many([JobRequest(kind="platform.noop") for _ in range(100)])
        total = count // 100 * 100

        def done() -> bool:
            with get_engine().connect() as connection:
                finished = connection.execute(
                    text("SELECT count(*) FROM mnw_jobs WHERE state = 'succeeded'")
                ).scalar_one()
            return finished >= total

        return total / drain(app, "ledger", "maintenance", done)


SINGLE = "HTTP single (8 clients)"
BATCH = "HTTP batch of 100 (4 clients)"


def publish_round(redis_url: str, count: int, base: str | None) -> dict[str, float]:
    """One round of every publish measurement (the baseline first); HTTP ones when `base`."""
    measures: list[tuple[str, Callable[[], float]]] = [
        ("delay loop", lambda: publish_delay_loop(count)),
        ("enqueue() loop", lambda: publish_enqueue_loop(count)),
        ("enqueue_many(100)", lambda: publish_enqueue_batches(count)),
    ]
    if base is not None:
        measures += [
            ("HTTP single (8 clients)", lambda: publish_http(base, count, batch=1, clients=8)),
            (
                "HTTP batch of 100 (4 clients)",
                lambda: publish_http(base, count, batch=100, clients=4),
            ),
        ]
    results = {}
    for name, measure in measures:
        results[name] = measure()
        reset_state(redis_url)
    return results


def drain_round(redis_url: str, count: int) -> dict[str, float]:
    raw = drain_raw(redis_url, count)
    reset_state(redis_url)
    ledger = drain_ledger(count)
    reset_state(redis_url)
    return {"raw Celery drain": raw, "ledger drain": ledger}


def median_rows(rounds: list[dict[str, float]], baseline: str) -> list[tuple[str, float, float]]:
    """(measurement, rate, ratio to the baseline of the same round): the round of median ratio
    (for the baseline itself, its median rate)."""
    rows = []
    for name in rounds[0]:
        if name == baseline:
            rates = sorted(found[name] for found in rounds)
            rows.append((name, rates[len(rates) // 2], 1.0))
            continue
        ranked = sorted(rounds, key=lambda found: found[name] / found[baseline])
        middle = ranked[len(ranked) // 2]
        rows.append((name, middle[name], middle[name] / middle[baseline]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per drain measurement")
    parser.add_argument("--publish", type=int, default=3000, help="messages per publish run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of every measurement; medians are shown"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    has_api = importlib.util.find_spec("medianest_workers.api.app") is not None
    if not has_api:
        print("no HTTP API in this checkout: HTTP rows skipped")
    # Rounds alternate the measurements with their baselines, so that a load that comes and
    # goes on the machine strikes both; each row shows the round of median ratio.
    with bench_environment() as redis_url:
        with api_server() if has_api else contextlib.nullcontext(None) as base:
            publishing = [publish_round(redis_url, args.publish, base) for _ in range(args.rounds)]
        draining = []
        for _ in range(args.rounds):
            draining.append(drain_round(redis_url, args.jobs))
            raw, ledger = draining[-1]["raw Celery drain"], draining[-1]["ledger drain"]
            print(f"drain round: raw {raw:.0f}/s, ledger {ledger:.0f}/s, ratio {ledger / raw:.2f}")
    for found in publishing:
        if SINGLE in found:
            single, delay = found[SINGLE], found["delay loop"]
            print(f"publish round: delay loop {delay:.0f}/s, HTTP single {single:.0f}/s", end="")
            print(f", ratio {single / delay:.2f}")
    print(f"\n{'measurement':34} {'per s':>9} {'ratio':>7}  baseline", end="")
    print(f" (each row: the round of median ratio, of {args.rounds}; a baseline: its median)")
    for rounds, baseline in ((publishing, "delay loop"), (draining, "raw Celery drain")):
        for name, value, ratio in median_rows(rounds, baseline):
            print(f"{name:34} {value:9.0f} {ratio:7.2f}  {baseline}")


if __name__ == "__main__":
    main()
