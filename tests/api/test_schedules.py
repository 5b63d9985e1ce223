"""/v1/schedules (api/schedules.py)."""

from __future__ import annotations

from tests.api.conftest import (
    error_of,
    job_count,
)


def test_schedules_are_listed_and_run_on_demand(client, engine) -> None:
    listed = client.get("/v1/schedules")
    assert listed.status_code == 200, listed.text
    schedules = {item["name"]: item for item in listed.json()["schedules"]}
    tick = schedules["tests.tick"]
    assert tick["kind"] == "platform.noop"
    assert tick["last_run_at"] is None and tick["last_job_id"] is None

    run = client.post("/v1/schedules/tests.tick/run", headers={"X-Correlation-Id": "manual-1"})
    assert run.status_code == 202, run.text
    job = run.json()
    assert job["kind"] == "platform.noop"
    assert job["schedule_name"] == "tests.tick"
    assert job["trigger"] == "manual"
    assert job["correlation_id"] == "manual-1"
    assert run.headers["Location"] == f"/v1/jobs/{job['id']}"

    after = {item["name"]: item for item in client.get("/v1/schedules").json()["schedules"]}
    assert after["tests.tick"]["last_job_id"] == job["id"]
    assert after["tests.tick"]["last_trigger"] == "manual"
    assert after["tests.tick"]["last_run_at"].endswith("Z")

    unknown = client.post("/v1/schedules/no.such.schedule/run")
    assert unknown.status_code == 404
    assert error_of(unknown)["code"] == "schedule_not_found"
    assert job_count(engine) == 1
