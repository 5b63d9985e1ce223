"""The checker every reliability scenario runs after its fault (RELIABILITY.md, "The checker").

Plain functions on the scenario's database: `wait_terminal` waits (bounded) for the accepted
jobs to end, `check` reads the ledger and the jobs' own tables (tests/reliability/jobs.py) and
returns a `Report`: how many jobs, executions and duplicate executions (allowed, counted),
duplicate effects, lost jobs, the recovery time, and every broken invariant in `problems`:

1. every accepted job is terminal by the deadline (else it is *lost*);
2. at most one effect per job (its idempotency key), and exactly one for a job that
   succeeded; a job's batch is whole or absent;
3. executions <= max_attempts, and the ledger's attempts too (a `dead` row may show one
   more: the claim that found its attempts used up);
4. every failed, dead or cancelled job has an error class and message;
5. no row anywhere in the ledger `running` with a heartbeat older than `stale_after`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from medianest_workers.db.job_states import TERMINAL_STATES

_TERMINAL = [state.value for state in TERMINAL_STATES]


@dataclass
class Report:
    jobs: int
    states: dict[str, int]
    executions: int
    #: Executions beyond the first of each job (retries and re-runs): allowed, counted.
    duplicate_executions: int
    #: Executions beyond those each job plans (its planned failures + 1): what faults cost.
    fault_reruns: int
    #: Jobs with more than one effect.
    duplicate_effects: list[str]
    #: Jobs not terminal by the deadline.
    lost: list[str]
    #: Seconds from the fault until the last job it hit was terminal (None: none was hit).
    recovery_seconds: float | None
    #: Seconds from the fault until every job was terminal.
    drain_seconds: float | None
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        recovery = "-" if self.recovery_seconds is None else f"{self.recovery_seconds:.1f} s"
        drain = "-" if self.drain_seconds is None else f"{self.drain_seconds:.1f} s"
        return (
            f"jobs={self.jobs} states={self.states} executions={self.executions}"
            f" duplicate_executions={self.duplicate_executions} fault_reruns={self.fault_reruns}"
            f" duplicate_effects={len(self.duplicate_effects)} lost={len(self.lost)}"
            f" recovery={recovery} drain={drain} problems={len(self.problems)}"
        )

    def assert_ok(self) -> None:
        assert not self.problems, "\n".join([self.summary(), *self.problems[:20]])


def database_now(engine: Engine) -> dt.datetime:
    """The database clock, as the ledger stamps its rows (naive UTC)."""
    with engine.connect() as connection:
        return connection.execute(text("SELECT timezone('UTC', clock_timestamp())")).scalar_one()


def running_ids(engine: Engine, ids: Sequence[str]) -> list[str]:
    """The jobs among `ids` running right now (those a fault about to happen hits)."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT id FROM mnw_jobs WHERE id = ANY(:ids) AND state = 'running'"),
                {"ids": list(ids)},
            ).scalars()
        )


def not_terminal(engine: Engine, ids: Sequence[str]) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT id FROM mnw_jobs WHERE id = ANY(:ids) AND state <> ALL(:done)"),
                {"ids": list(ids), "done": _TERMINAL},
            ).scalars()
        )


def wait_terminal(engine: Engine, ids: Sequence[str], *, deadline: float) -> list[str]:
    """Wait up to `deadline` s for every job of `ids` to be terminal; those still not (lost).

    A database that does not answer (restarting) counts as not done yet.
    """
    end = time.monotonic() + deadline
    pending = list(ids)
    while True:
        with contextlib.suppress(OperationalError):
            pending = not_terminal(engine, pending)
        if not pending or time.monotonic() > end:
            return pending
        time.sleep(0.5)


def check(
    engine: Engine,
    ids: Sequence[str],
    *,
    deadline: float,
    stale_after: float,
    fault_at: dt.datetime | None = None,
    hit: Sequence[str] = (),
    batch_sizes: dict[str, int] | None = None,
    planned_runs: dict[str, int] | None = None,
) -> Report:
    """Wait for `ids` (the accepted jobs) to end, then check the invariants (module docstring).

    `fault_at` (database clock) and `hit` (the jobs in flight when the fault struck) give the
    recovery time; `batch_sizes` the rows each batch job writes when it succeeds;
    `planned_runs` the executions each job needs without a fault (default 1).
    """
    ids = list(ids)
    lost = wait_terminal(engine, ids, deadline=deadline)
    problems = [f"job {job_id} not terminal after {deadline:.0f} s (lost)" for job_id in lost]
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id, state, attempts, max_attempts, error_class, error_message,"
                " finished_at FROM mnw_jobs WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        ).all()
        executions = dict(
            connection.execute(
                text("SELECT job_id, count(*) FROM rel_runs WHERE job_id = ANY(:ids) GROUP BY 1"),
                {"ids": ids},
            ).all()
        )
        effects = dict(
            connection.execute(
                text(
                    "SELECT job_id, count(*) FROM rel_effects WHERE job_id = ANY(:ids) GROUP BY 1"
                ),
                {"ids": ids},
            ).all()
        )
        batches = connection.execute(
            text(
                "SELECT job_id, attempt, count(*) FROM rel_batch WHERE job_id = ANY(:ids)"
                " GROUP BY 1, 2"
            ),
            {"ids": ids},
        ).all()
        stale = list(
            connection.execute(
                text(
                    "SELECT id FROM mnw_jobs WHERE state = 'running' AND heartbeat_at <"
                    " timezone('UTC', now()) - make_interval(secs => :stale)"
                ),
                {"stale": stale_after},
            ).scalars()
        )
    found = {row.id: row for row in rows}
    problems += [f"job {job_id} is not in the ledger" for job_id in ids if job_id not in found]
    states: dict[str, int] = {}
    for row in rows:
        states[row.state] = states.get(row.state, 0) + 1
        runs = executions.get(row.id, 0)
        if runs > row.max_attempts:
            problems.append(f"job {row.id}: {runs} executions > max_attempts {row.max_attempts}")
        allowed = row.max_attempts + (1 if row.state == "dead" else 0)
        if row.attempts > allowed:
            problems.append(f"job {row.id}: attempts {row.attempts} > {allowed}")
        if row.state in ("failed", "dead", "cancelled") and not (
            row.error_class and row.error_message
        ):
            problems.append(f"job {row.id} is {row.state} without an error class and message")
        if row.state == "succeeded" and effects.get(row.id, 0) != 1:
            problems.append(f"job {row.id} succeeded with {effects.get(row.id, 0)} effects")
    duplicate_effects = sorted(job_id for job_id, count in effects.items() if count > 1)
    problems += [f"job {job_id}: {effects[job_id]} effects" for job_id in duplicate_effects]
    for job_id, attempt, count in batches:
        expected = (batch_sizes or {}).get(job_id)
        if expected is not None and count != expected:
            problems.append(f"job {job_id} attempt {attempt}: partial batch {count}/{expected}")
    problems += [f"job {job_id} running with a stale heartbeat" for job_id in stale]
    finished = {row.id: row.finished_at for row in rows if row.finished_at is not None}
    return Report(
        jobs=len(ids),
        states=dict(sorted(states.items())),
        executions=sum(executions.values()),
        duplicate_executions=sum(max(0, count - 1) for count in executions.values()),
        fault_reruns=sum(
            max(0, count - (planned_runs or {}).get(job_id, 1))
            for job_id, count in executions.items()
        ),
        duplicate_effects=duplicate_effects,
        lost=lost,
        recovery_seconds=_seconds_after(fault_at, [finished.get(job_id) for job_id in hit]),
        drain_seconds=_seconds_after(fault_at, list(finished.values())) if not lost else None,
        problems=problems,
    )


def _seconds_after(start: dt.datetime | None, times: list[dt.datetime | None]) -> float | None:
    known = [moment for moment in times if moment is not None]
    if start is None or not known:
        return None
    return max(0.0, (max(known) - start).total_seconds())
