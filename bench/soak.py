"""Soak: 100,000 jobs over HTTP while workers drain them, clean and then under random faults.

    python3 -m bench.soak [--jobs 100000] [--batch 100] [--clients 4] [--phases clean,faults]
                          [--seed 11] [--backlog 1000] [--workers 1] [--concurrency 4]

Not CI: a full run takes tens of minutes; `--jobs 3000` tries it out in about a minute.

Each phase owns its servers (tests/reliability/conftest.py `own_scenario`): an embedded
PostgreSQL and an embedded Valkey on a free loopback port, never the machine's shared ones, so
that it may restart them. Against them it starts the HTTP API (uvicorn), `--workers` real
`celery worker` processes (prefork, `--concurrency` children, the scenarios' 0.5 s heartbeats
and 3 s staleness) and the rescuer (a round every second, republishing queued rows whose message
went out over 30 s ago). Everything is stopped, and its temporary folder removed, at the end,
on Ctrl-C and on errors.

The jobs are the reliability catalog's `reliability.work` with an empty payload, not
`platform.noop`: the same no-op, but each execution writes a `rel_runs` row and its effect a
`rel_effects` row, so the checker (tests/reliability/checker.py) can prove that no accepted job
is lost and that none had two effects, and count executions per job. Every job has its own
idempotency key, so a client that gets no answer (the database restarting) sends its batch
again without doubling it. `--clients` threads POST `/v1/jobs/batch` (`--batch` jobs a request)
while the workers drain; a client waits while `--backlog` accepted jobs are not yet terminal (0:
never), which keeps a job's wait in the queue under the rescuer's 30 s (a backlog older than
that would be republished as if Redis had lost it).

The `faults` phase injects, at seeded random points of its progress (5-80 % of the jobs
terminal), five SIGKILLs of a worker child (one running a job when there is one), one Redis
restart (stopped and started empty on its port: the rescuer republishes what the ledger has
queued) and one PostgreSQL restart (`pg_ctl restart -m immediate`), one at a time.

Printed per phase: jobs, wall time, enqueue and drain throughput (jobs/s), enqueue latency
p50/p99 (per HTTP batch request) and retried requests, time-to-terminal p50/p99/max (the
ledger's finished_at - enqueued_at), executions per job (mean, max, histogram), the rescuer's
totals, each fault (when, what, the jobs it hit, how long it took, when the jobs it hit were all
terminal, when jobs finished again after it), worker RSS over time (main process and children,
sampled every 3 s: start, quartiles, end, max; the API's RSS beside it) and the checker's
verdict. The exit status is 1 when the checker reports lost jobs, duplicate effects or any
other problem, else 0; no figure is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from medianest_workers.db.job_states import TERMINAL_STATES, JobState
from tests.helpers import wait_for
from tests.reliability.checker import Report, check, database_now, wait_terminal
from tests.reliability.conftest import STALE_SECONDS, Scenario, check_mixed, own_scenario

KIND = "reliability.work"
API_KEY = "soak-key"
QUEUED_AFTER_SECONDS = 30.0
CHILD_KILLS = 5
RSS_EVERY_SECONDS = 3.0
POLL_SECONDS = 1.0
#: Faults strike when this share of the phase's jobs is terminal (drawn from the range).
FAULT_PROGRESS = (0.05, 0.8)
#: Longest wait for the jobs a fault hit before the next fault (they are checked anyway).
FAULT_SETTLE_SECONDS = 120.0
#: Least time between the end of one fault (its hit jobs terminal) and the next.
FAULT_GAP_SECONDS = 2.0
_NOT_TERMINAL = [state.value for state in JobState if state not in TERMINAL_STATES]
MIB = 1024 * 1024


# --- measurements while a phase runs ---------------------------------------------------------


@dataclass
class Sample:
    """One reading of the monitor: seconds into the phase, ledger progress, memory."""

    at: float
    terminal: int
    backlog: int
    worker_rss: int
    worker_processes: int
    api_rss: int


@dataclass
class Monitor:
    """Polls the ledger (backlog, terminal jobs) every second and the processes' RSS every
    few seconds, in a thread; the clients' backpressure and the fault plan read it."""

    engine: Engine
    worker_pids: Callable[[], list[int]]
    api_pid: int
    started: float = field(default_factory=time.monotonic)
    backlog: int = 0
    terminal: int = 0
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        last_sample = -RSS_EVERY_SECONDS
        while not self.stop.is_set():
            with contextlib.suppress(OperationalError):  # PostgreSQL restarting
                self.backlog, self.terminal = ledger_counts(self.engine)
            now = time.monotonic() - self.started
            if now - last_sample >= RSS_EVERY_SECONDS:
                self.sample(now)
                last_sample = now
            self.stop.wait(POLL_SECONDS)

    def sample(self, now: float) -> None:
        rss, count = 0, 0
        for pid in self.worker_pids():
            pid_rss, pid_count = tree_rss(pid)
            rss, count = rss + pid_rss, count + pid_count
        api_rss, _ = tree_rss(self.api_pid)
        self.samples.append(Sample(now, self.terminal, self.backlog, rss, count, api_rss))

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def ledger_counts(engine: Engine) -> tuple[int, int]:
    """(jobs not yet terminal, terminal jobs) in the phase's ledger."""
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT count(*) FILTER (WHERE state = ANY(:open)), count(*) FROM mnw_jobs"
                " WHERE kind = :kind"
            ),
            {"open": _NOT_TERMINAL, "kind": KIND},
        ).one()
    return int(row[0]), int(row[1]) - int(row[0])


def tree_rss(pid: int) -> tuple[int, int]:
    """Resident bytes of a process and all its descendants, and how many processes."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total, len(processes)


def start_thread(
    target: Callable[[], None], errors: list[BaseException], stop: threading.Event | None = None
) -> threading.Thread:
    """`target` in a daemon thread; what it raises lands in `errors` (and sets `stop`)."""

    def guarded() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
            if stop is not None:
                stop.set()

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    return thread


def join(thread: threading.Thread, timeout: float | None = None) -> None:
    """Join in short waits, so that Ctrl-C and SIGTERM reach the main thread meanwhile."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while thread.is_alive() and (deadline is None or time.monotonic() < deadline):
        thread.join(0.5)


# --- enqueue over HTTP -----------------------------------------------------------------------


@dataclass
class Enqueued:
    """What the clients did: the accepted ids by batch, each accepted request's latency."""

    ids: list[list[str]]
    latencies: list[float] = field(default_factory=list)
    retried: int = 0
    waited: float = 0.0
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def job_specs(phase: str, count: int) -> list[dict[str, Any]]:
    """The phase's jobs, in the shape the reliability checker takes (kind, payload, key)."""
    return [{"kind": KIND, "payload": {}, "key": f"soak-{phase}-{n}"} for n in range(count)]


def post_batch(
    client: httpx.Client, specs: Sequence[dict[str, Any]], stop: threading.Event
) -> tuple[list[str], float, int]:
    """POST one batch until it is accepted: (its ids, the accepted request's seconds, failures).

    A 5xx or no answer (the database or the API restarting) is retried with the same
    idempotency keys, so a batch stored before its answer was lost is not stored twice.
    """
    body = {
        "jobs": [
            {"kind": spec["kind"], "payload": spec["payload"], "idempotency_key": spec["key"]}
            for spec in specs
        ]
    }
    failures = 0
    while not stop.is_set():
        started = time.perf_counter()
        try:
            response = client.post("/v1/jobs/batch", json=body)
        except httpx.HTTPError:
            response = None
        elapsed = time.perf_counter() - started
        if response is not None and response.status_code == 202:
            return [job["id"] for job in response.json()["jobs"]], elapsed, failures
        if response is not None and response.status_code < 500:
            raise RuntimeError(f"batch refused: {response.status_code} {response.text[:300]}")
        failures += 1
        stop.wait(0.5)
    raise InterruptedError("stopped")


def enqueue_all(
    base: str,
    specs: list[dict[str, Any]],
    *,
    batch: int,
    clients: int,
    backlog: int,
    monitor: Monitor,
    stop: threading.Event,
) -> Enqueued:
    """Enqueue `specs` in batches from `clients` threads, each waiting while the backlog is
    full; returns when every batch is accepted (or raises what a client raised)."""
    batches = [specs[start : start + batch] for start in range(0, len(specs), batch)]
    result = Enqueued(ids=[[] for _ in batches])
    next_batch = itertools.count()
    errors: list[BaseException] = []

    def client_loop() -> None:
        with httpx.Client(base_url=base, headers={"X-API-Key": API_KEY}, timeout=30) as client:
            while not stop.is_set():
                index = next(next_batch)
                if index >= len(batches):
                    return
                waited = wait_for_room(monitor, backlog, len(batches[index]), stop)
                ids, elapsed, failures = post_batch(client, batches[index], stop)
                with result.lock:
                    result.ids[index] = ids
                    result.latencies.append(elapsed)
                    result.retried += failures
                    result.waited += waited
                    monitor.backlog += len(ids)  # counted until the next poll sees them

    started = time.monotonic()
    threads = [start_thread(client_loop, errors, stop) for _ in range(clients)]
    for thread in threads:
        join(thread)
    result.seconds = time.monotonic() - started
    if errors:
        raise errors[0]
    return result


def wait_for_room(monitor: Monitor, backlog: int, size: int, stop: threading.Event) -> float:
    """Wait while `size` more jobs would overfill the backlog; the seconds waited."""
    started = time.monotonic()
    while backlog and monitor.backlog + size > backlog and not stop.is_set():
        time.sleep(0.05)
    return time.monotonic() - started


# --- faults ---------------------------------------------------------------------------------


@dataclass
class Strike:
    """What a fault did, the jobs in flight as it struck, and when (database clock)."""

    detail: str
    in_flight: list[str]
    fault_at: dt.datetime


@dataclass
class Fault:
    """One injected fault: when (seconds into the phase, share of jobs terminal), its strike,
    when it was over, and what it hit (the jobs in flight not finished before it struck)."""

    kind: str
    at: float
    progress: float
    strike: Strike
    ended_at: dt.datetime
    took: float
    hit: list[str] = field(default_factory=list)
    recovery: float | None = None
    resumed: float | None = None


def fault_plan(rng: random.Random) -> list[tuple[float, str]]:
    """(share of jobs terminal, fault kind) for each fault, in the order they strike."""
    kinds = ["child_kill"] * CHILD_KILLS + ["redis_restart", "postgres_restart"]
    rng.shuffle(kinds)
    points = sorted(rng.uniform(*FAULT_PROGRESS) for _ in kinds)
    return list(zip(points, kinds, strict=True))


def ids_where(engine: Engine, condition: str, **params: Any) -> list[str]:
    """Ids of the phase's jobs matching an SQL condition on mnw_jobs."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                text(f"SELECT id FROM mnw_jobs WHERE kind = :kind AND {condition}"),
                {"kind": KIND, **params},
            ).scalars()
        )


def worker_children(scenario: Scenario) -> list[tuple[int, int]]:
    """(child pid, worker pid) of every live pool child of the scenario's workers."""
    pairs = []
    for worker in scenario.workers:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(worker.process.pid).children():
                with contextlib.suppress(psutil.Error):
                    if child.status() != psutil.STATUS_ZOMBIE:
                        pairs.append((child.pid, worker.process.pid))
    return sorted(pairs)


def kill_child(scenario: Scenario, rng: random.Random) -> Strike:
    """SIGKILL one worker child, one running a job when there is one, and wait until its
    worker replaced it."""
    children = worker_children(scenario)
    if not children:
        raise RuntimeError("no worker child to kill")
    host = socket.gethostname()
    running = set(running_workers(scenario.engine))
    busy = [pair for pair in children if f"{host}:{pair[0]}" in running]
    pid, parent = rng.choice(busy or children)
    strike = Strike(
        f"SIGKILL child {pid} of worker {parent}",
        ids_where(
            scenario.engine, "state = 'running' AND worker = :worker", worker=f"{host}:{pid}"
        ),
        database_now(scenario.engine),
    )
    os.kill(pid, signal.SIGKILL)

    def replaced() -> bool:
        now = worker_children(scenario)
        return pid not in {child for child, _ in now} and len(now) >= len(children)

    wait_for(replaced, timeout=60, what=f"a replacement of child {pid}", interval=0.1)
    return strike


def running_workers(engine: Engine) -> list[str]:
    """The `worker` (host:pid) of every running job of the phase."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT DISTINCT worker FROM mnw_jobs WHERE state = 'running'")
            ).scalars()
        )


def inject(kind: str, scenario: Scenario, rng: random.Random) -> Strike:
    """Strike with one fault of `kind`."""
    engine = scenario.engine
    if kind == "child_kill":
        return kill_child(scenario, rng)
    if kind == "redis_restart":
        open_jobs = ids_where(engine, "state = ANY(:open)", open=_NOT_TERMINAL)
        strike = Strike("Redis stopped, started empty after 1 s", open_jobs, database_now(engine))
        scenario.restart_redis(down_seconds=1.0)
        return strike
    if kind == "postgres_restart":
        running = ids_where(engine, "state = 'running'")
        strike = Strike("pg_ctl restart -m immediate", running, database_now(engine))
        scenario.postgres.restart_immediately()
        return strike
    raise ValueError(kind)


def database_now_when_up(engine: Engine, timeout: float = 120.0) -> dt.datetime:
    """The database clock, waiting for the database to answer (after a restart)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return database_now(engine)
        except OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run_faults(
    scenario: Scenario,
    plan: list[tuple[float, str]],
    rng: random.Random,
    monitor: Monitor,
    total: int,
    faults: list[Fault],
    stop: threading.Event,
) -> None:
    """Strike each planned fault once its share of jobs is terminal, one at a time: the next
    waits until the jobs the previous one hit are terminal (FAULT_SETTLE_SECONDS at most)."""
    for share, kind in plan:
        while monitor.terminal < share * total and not stop.is_set():
            time.sleep(0.1)
        if stop.is_set():
            return
        at, progress = monitor.elapsed(), monitor.terminal / total
        started = time.monotonic()
        strike = inject(kind, scenario, rng)
        took = time.monotonic() - started
        ended_at = database_now_when_up(scenario.engine)
        faults.append(Fault(kind, at, progress, strike, ended_at, took))
        print(
            f"  +{at:.1f} s ({progress:.0%} terminal): {strike.detail};"
            f" {len(strike.in_flight)} in flight",
            flush=True,
        )
        wait_terminal(scenario.engine, strike.in_flight, deadline=FAULT_SETTLE_SECONDS)
        time.sleep(FAULT_GAP_SECONDS)


def measure_recovery(engine: Engine, faults: list[Fault]) -> list[Report]:
    """Fill in what each fault hit (its in-flight jobs not finished before it), its recovery
    (until they were all terminal) and resumption (the first job finished after the fault
    ended), in seconds from the fault; the checker's report on the jobs it hit."""
    reports = []
    for fault in faults:
        fault.hit = ids_where(
            engine,
            "id = ANY(:ids) AND (finished_at IS NULL OR finished_at > :at)",
            ids=fault.strike.in_flight,
            at=fault.strike.fault_at,
        )
        report = check(
            engine,
            fault.hit,
            deadline=10,
            stale_after=STALE_SECONDS,
            fault_at=fault.strike.fault_at,
            hit=fault.hit,
        )
        fault.recovery = report.recovery_seconds
        with engine.connect() as connection:
            first = connection.execute(
                text("SELECT min(finished_at) FROM mnw_jobs WHERE finished_at > :after"),
                {"after": fault.ended_at},
            ).scalar_one()
        if first is not None:
            fault.resumed = (first - fault.strike.fault_at).total_seconds()
        reports.append(report)
    return reports


# --- figures from the ledger ----------------------------------------------------------------


@dataclass
class LedgerFigures:
    """What the ledger and rel_runs say once the phase drained."""

    time_to_terminal: tuple[float, float, float]
    drain_seconds: float
    last_finished: dt.datetime
    executions: dict[int, int]


def ledger_figures(engine: Engine) -> LedgerFigures:
    """Time-to-terminal p50/p99/max, first start to last finish, and the executions histogram."""
    with engine.connect() as connection:
        p50, p99, worst, drain, last = connection.execute(
            text(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t),"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY t), max(t),"
                " extract(epoch FROM max(finished_at) - min(started_at)), max(finished_at)"
                " FROM (SELECT extract(epoch FROM finished_at - enqueued_at) AS t,"
                " finished_at, started_at FROM mnw_jobs WHERE kind = :kind) AS jobs"
            ),
            {"kind": KIND},
        ).one()
        histogram = dict(
            connection.execute(
                text(
                    "SELECT runs, count(*) FROM (SELECT count(*) AS runs FROM rel_runs"
                    " GROUP BY job_id) AS per_job GROUP BY runs ORDER BY runs"
                )
            ).all()
        )
    return LedgerFigures(
        (float(p50 or 0), float(p99 or 0), float(worst or 0)), float(drain or 0), last, histogram
    )


def percentile(values: Sequence[float], share: float) -> float:
    """The `share` quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


# --- one phase ------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    """Everything a phase prints."""

    name: str
    jobs: int
    wall: float
    enqueued: Enqueued
    figures: LedgerFigures
    report: Report
    fault_reports: list[Report]
    faults: list[Fault]
    samples: list[Sample]
    rescuer: dict[str, int]
    setup: str

    @property
    def ok(self) -> bool:
        reports = [self.report, *self.fault_reports]
        return all(not (r.lost or r.duplicate_effects or r.problems) for r in reports)


def prepare(scenario: Scenario, args: argparse.Namespace) -> str:
    """Index rel_effects by job (each job looks its effect up: without it the soak is
    quadratic), start the API, the workers and the rescuer, and wait for the workers' pools;
    the API's URL."""
    scenario.postgres.execute("CREATE INDEX IF NOT EXISTS rel_effects_job ON rel_effects (job_id)")
    base = scenario.start_api(API_KEY)
    for _ in range(args.workers):
        scenario.start_worker(queues="media", concurrency=args.concurrency)
    scenario.start_rescuer(interval=1.0, queued_after=QUEUED_AFTER_SECONDS)

    def pools_ready() -> bool:
        return all(tree_rss(w.process.pid)[1] > args.concurrency for w in scenario.workers)

    wait_for(pools_ready, timeout=120, what="the workers' pools", interval=0.2)
    time.sleep(1.0)  # the pools' children connect to Redis
    return base


def run_phase(name: str, args: argparse.Namespace, rng: random.Random, folder: Path) -> PhaseResult:
    """One phase on servers of its own, stopped (and their data removed) after it."""
    data, logs = folder / f"{name}-data", folder / f"{name}-logs"
    logs.mkdir(parents=True)
    with own_scenario(data, logs) as scenario:
        base = prepare(scenario, args)
        monitor = Monitor(
            scenario.engine, lambda: [w.process.pid for w in scenario.workers], api_pid(scenario)
        )
        threading.Thread(target=monitor.run, daemon=True).start()
        try:
            return drive(name, scenario, base, monitor, args, rng)
        finally:
            monitor.stop.set()


def api_pid(scenario: Scenario) -> int:
    """The API's process id (the one server a phase starts)."""
    return scenario.servers[0].pid


def drive(
    name: str,
    scenario: Scenario,
    base: str,
    monitor: Monitor,
    args: argparse.Namespace,
    rng: random.Random,
) -> PhaseResult:
    """Enqueue the phase's jobs while the workers drain them (and, in `faults`, the faults
    strike), then run the checker and gather the figures."""
    specs = job_specs(name, args.jobs)
    started_at = database_now(scenario.engine)
    faults: list[Fault] = []
    errors: list[BaseException] = []
    injector = None
    if name == "faults":
        plan = fault_plan(rng)
        injector = start_thread(
            lambda: run_faults(scenario, plan, rng, monitor, len(specs), faults, monitor.stop),
            errors,
        )
    enqueued = enqueue_all(
        base,
        specs,
        batch=args.batch,
        clients=args.clients,
        backlog=args.backlog,
        monitor=monitor,
        stop=monitor.stop,
    )
    if injector is not None:
        join(injector, timeout=FAULT_SETTLE_SECONDS * (CHILD_KILLS + 3))
    if errors:
        raise errors[0]
    ids = [job_id for batch in enqueued.ids for job_id in batch]
    report = check_mixed(scenario.engine, ids, specs, deadline=300 + monitor.backlog / 20)
    monitor.sample(monitor.elapsed())
    figures = ledger_figures(scenario.engine)
    return PhaseResult(
        name=name,
        jobs=len(ids),
        wall=(figures.last_finished - started_at).total_seconds(),
        enqueued=enqueued,
        figures=figures,
        report=report,
        fault_reports=measure_recovery(scenario.engine, faults),
        faults=faults,
        samples=monitor.samples,
        rescuer={
            key: scenario.rescuers[0].total(key)
            for key in ("requeued_running", "republished_queued", "dead")
        },
        setup=(
            f"{args.workers} worker(s) -c {args.concurrency}, {args.clients} clients,"
            f" batches of {args.batch}, backlog <= {args.backlog or 'unbounded'}"
        ),
    )


# --- printing -------------------------------------------------------------------------------


def print_phase(result: PhaseResult) -> None:
    """The phase's figures, its faults, its RSS table and the checker's verdict."""
    enqueued, figures, report = result.enqueued, result.figures, result.report
    latencies = enqueued.latencies
    runs = sum(figures.executions.values())
    executed = sum(count * jobs for count, jobs in figures.executions.items())
    print(f"\n== phase {result.name}: {result.jobs} jobs ({KIND}), {result.setup}")
    print(f"wall             {result.wall:.1f} s")
    print(
        f"enqueue          {result.jobs / enqueued.seconds:.0f} jobs/s"
        f" over {enqueued.seconds:.1f} s;"
        f" {len(latencies)} requests, latency p50 {percentile(latencies, 0.5) * 1000:.0f} ms"
        f" p99 {percentile(latencies, 0.99) * 1000:.0f} ms; {enqueued.retried} failed attempts"
        f" retried; clients waited {enqueued.waited:.0f} s in all on the backlog"
    )
    print(
        f"drain            {result.jobs / figures.drain_seconds:.0f} jobs/s"
        f" (first start to last finish {figures.drain_seconds:.1f} s)"
    )
    p50, p99, worst = figures.time_to_terminal
    print(f"time-to-terminal p50 {p50:.2f} s  p99 {p99:.2f} s  max {worst:.2f} s")
    histogram = ", ".join(f"{count}x: {jobs}" for count, jobs in figures.executions.items())
    print(
        f"executions/job   mean {executed / max(1, result.jobs):.4f}"
        f"  max {max(figures.executions, default=0)}  ({histogram};"
        f" {result.jobs - runs} never ran)"
    )
    print("rescuer          " + "  ".join(f"{k} {v}" for k, v in result.rescuer.items()))
    if result.faults:
        print("faults (seconds into the phase; recovery and resumption from the fault):")
        for fault in result.faults:
            print(
                f"  +{fault.at:6.1f} s {fault.progress:4.0%} {fault.kind:16} hit {len(fault.hit):5}"
                f"  took {fault.took:4.1f} s  hit terminal after {seconds(fault.recovery)}"
                f"  jobs finishing again after {seconds(fault.resumed)}  ({fault.strike.detail})"
            )
    print_rss(result.samples)
    verdict = "OK" if result.ok else "FAILED"
    print(
        f"checker          {verdict}: lost {len(report.lost)}, duplicate effects"
        f" {len(report.duplicate_effects)}, problems {len(report.problems)}; {report.summary()}"
    )
    for problem in [*report.problems, *(p for r in result.fault_reports for p in r.problems)][:20]:
        print(f"  problem: {problem}")


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def print_rss(samples: list[Sample]) -> None:
    """Worker RSS at the start, the quartiles of the run, the end, and its maximum."""
    if not samples:
        return
    end = samples[-1].at
    points: list[tuple[str, Sample]] = []
    for label, share in (("start", 0.0), ("25%", 0.25), ("50%", 0.5), ("75%", 0.75)):
        points.append((label, min(samples, key=lambda s, t=share * end: abs(s.at - t))))
    points.append(("end", samples[-1]))
    points.append(("max", max(samples, key=lambda s: s.worker_rss)))
    print(f"worker RSS ({len(samples)} samples every {RSS_EVERY_SECONDS:.0f} s):")
    print(f"  {'':6} {'t (s)':>7} {'terminal':>9} {'backlog':>8} {'worker MiB':>11}", end="")
    print(f" {'procs':>6} {'API MiB':>8}")
    for label, sample in points:
        print(
            f"  {label:6} {sample.at:7.1f} {sample.terminal:9} {sample.backlog:8}"
            f" {sample.worker_rss / MIB:11.1f} {sample.worker_processes:6}"
            f" {sample.api_rss / MIB:8.1f}"
        )


# --- entry point ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs per phase")
    parser.add_argument("--batch", type=int, default=100, help="jobs per HTTP request (<= 100)")
    parser.add_argument("--clients", type=int, default=4, help="HTTP client threads")
    parser.add_argument("--phases", default="clean,faults", help="clean, faults or both")
    parser.add_argument("--seed", type=int, default=11, help="seed of the fault plan")
    parser.add_argument(
        "--backlog", type=int, default=1000, help="most accepted jobs not yet terminal (0: any)"
    )
    parser.add_argument("--workers", type=int, default=1, help="celery worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="children per worker")
    args = parser.parse_args(argv)
    args.phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
    unknown = set(args.phases) - {"clean", "faults"}
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    if not 1 <= args.batch <= 100:
        parser.error("--batch must be 1 to 100")
    return args


@contextlib.contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM raises SystemExit in the main thread, so that everything started is stopped."""

    def terminate(_signum: int, _frame: object) -> None:
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    results = []
    with stopped_by_sigterm(), tempfile.TemporaryDirectory(prefix="mnw-soak-") as folder:
        for name in args.phases:
            print(f"phase {name}: {args.jobs} jobs ...", flush=True)
            result = run_phase(name, args, rng, Path(folder))
            print_phase(result)
            sys.stdout.flush()
            results.append(result)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
