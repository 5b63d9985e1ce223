"""RELIABILITY 14: the database out of connections while jobs run and the API is asked."""

from __future__ import annotations

import time

import httpx

from tests.helpers import wait_for
from tests.reliability.checker import database_now, not_terminal, running_ids
from tests.reliability.conftest import (
    Scenario,
    check_mixed,
    mixed_jobs,
)
from tests.reliability.test_worker_kill import expected_states

EXHAUSTED_SECONDS = 8.0
API_KEY = "reliability-key-0123456789"
#: Longest an API answer may take while the database refuses connections.
API_BOUND_SECONDS = 12.0


APP_ROLE = "mnw_app"


def as_app_role(scenario: Scenario) -> str:
    """The platform's processes connect as an ordinary role (not the superuser, to whom no
    connection limit applies), with every right on the scenario's tables."""
    scenario.postgres.execute(f"CREATE ROLE {APP_ROLE} LOGIN")
    for what in ("TABLES", "SEQUENCES"):
        scenario.postgres.execute(f"GRANT ALL ON ALL {what} IN SCHEMA public TO {APP_ROLE}")
    return scenario.postgres.url.replace("postgres:@", f"{APP_ROLE}:@", 1)


class Exhaustion:
    """The platform's connections used up: no new one is granted, and those it holds are cut
    (so that every pool must connect again), until `end()`."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.cut = 0

    def begin(self) -> None:
        self.scenario.postgres.execute(f"ALTER ROLE {APP_ROLE} CONNECTION LIMIT 0")
        self.cut_connections()

    def cut_connections(self) -> None:
        rows = self.scenario.postgres.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 1000))"
            " FROM pg_stat_activity WHERE usename = :role",
            role=APP_ROLE,
        )
        self.cut += rows[0][0]

    def end(self) -> None:
        self.scenario.postgres.execute(f"ALTER ROLE {APP_ROLE} CONNECTION LIMIT -1")


def test_the_database_out_of_connections_bounds_every_wait_and_loses_nothing(
    scenario_factory,
) -> None:
    """Connecting is refused ("too many clients") for a while: the workers' claims and jobs
    fail with recorded, retryable errors instead of hanging, the API answers (503) within its
    bounds, and once connections are free again every job ends, once."""
    scenario: Scenario = scenario_factory()
    scenario.database_url = as_app_role(scenario)
    specs = mixed_jobs(200, seed=19)
    worker = scenario.start_worker(concurrency=4)
    rescuer = scenario.start_rescuer(queued_after=10)
    api = scenario.start_api(API_KEY)
    ids = scenario.enqueue(specs)
    wait_for(lambda: len(not_terminal(scenario.engine, ids)) <= 170, timeout=60, interval=0.1)

    hit = running_ids(scenario.engine, ids)
    fault_at = database_now(scenario.engine)
    answers: list[tuple[str, int, float]] = []
    headers = {"X-API-Key": API_KEY}
    exhaustion = Exhaustion(scenario)
    exhaustion.begin()
    try:
        started = time.monotonic()
        while time.monotonic() - started < EXHAUSTED_SECONDS:
            for method, path, body in (
                ("GET", "/healthz", None),
                ("POST", "/v1/jobs", {"kind": "reliability.work", "payload": {}}),
                ("GET", f"/v1/jobs/{ids[-1]}", None),
            ):
                asked = time.monotonic()
                response = httpx.request(
                    method, f"{api}{path}", json=body, headers=headers, timeout=30
                )
                answers.append((path, response.status_code, time.monotonic() - asked))
            exhaustion.cut_connections()  # none should be left to cut
    finally:
        exhaustion.end()

    report = check_mixed(scenario.engine, ids, specs, deadline=150, fault_at=fault_at, hit=hit)
    log = worker.log()
    refused = log.count("cannot reach the ledger")
    slowest = max(seconds for *_, seconds in answers)
    codes = sorted({(path, code) for path, code, _ in answers})
    print(
        f"\nthe platform's connections used up for {EXHAUSTED_SECONDS} s ({exhaustion.cut}"
        f" cut): faults=1 worker_refusals_logged={refused}"
        f" api_answers={len(answers)} slowest_api={slowest:.1f} s codes={codes}"
        f" rescuer_requeued={rescuer.total('requeued_running')} {report.summary()}"
    )
    report.assert_ok()
    assert report.lost == [] and report.duplicate_effects == []
    assert report.states == expected_states(specs)
    # The API kept answering, each answer bounded, and said the database was unavailable.
    assert slowest < API_BOUND_SECONDS, answers
    assert ("/healthz", 503) in codes, codes
    assert all(code in (200, 201, 503) for _, code in codes), codes
    # The workers met the refusal and recorded it (then retried) rather than hanging.
    assert refused > 0, log
    assert worker.process.poll() is None
