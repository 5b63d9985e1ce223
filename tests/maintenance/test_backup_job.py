"""The `maintenance.backup` job through a real worker, its schedules, and its /metrics."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

import beat_schedule
from medianest_workers.maintenance import backups
from medianest_workers.maintenance.backup_metrics import BackupCollector
from medianest_workers.maintenance.schedules import SCHEDULES
from medianest_workers.maintenance.tasks import BackupPayload
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.platform.registry import find_spec
from medianest_workers.settings import get_settings
from tests.maintenance.conftest import FakeTool, files_in
from tests.platform.conftest import wait_terminal


def test_a_wrong_pg_dump_fails_the_job_clearly_and_a_good_one_succeeds(
    start_worker,
    engine: Engine,
    session_factory,
    tmp_path: Path,
    fake_pg_dump: FakeTool,
    real_tools,
) -> None:
    folder = tmp_path / "job-backups"
    fake = fake_pg_dump("sys.exit('must not run')", version=f"{real_tools.major + 1}.0")
    worker = start_worker(
        queues="maintenance", concurrency=1, PG_DUMP_PATH=str(fake), BACKUP_DIR=str(folder)
    )
    try:
        failed = wait_terminal(engine, enqueue("maintenance.backup", {}).job_id, timeout=60)
    finally:
        worker.stop()
    assert failed["state"] == "failed", worker.log()
    assert failed["attempts"] == 1  # permanent: not retried
    assert failed["error_class"] == "PgToolVersionError"
    assert f"no pg_dump of PostgreSQL {real_tools.major}" in failed["error_message"]
    assert files_in(folder) == []

    start_worker(queues="maintenance", concurrency=1, BACKUP_DIR=str(folder))
    job = enqueue("maintenance.backup", {"restore_check": True})
    done = wait_terminal(engine, job.job_id, timeout=120)
    assert done["state"] == "succeeded", done
    result = done["result"]
    assert result["restore_check_ok"] is True
    assert files_in(folder) == [Path(result["file"]).name]
    with engine.connect() as connection:
        states = connection.execute(
            text("SELECT state, job_id FROM mnw_backups ORDER BY started_at")
        ).all()
    assert states == [("failed", failed["id"]), ("succeeded", job.job_id)]


def test_the_job_fits_the_broker_and_the_schedules_are_sound() -> None:
    spec = find_spec("maintenance.backup")
    assert spec is not None
    assert spec.queue.value == "maintenance"
    assert spec.time_limit < get_settings().visibility_timeout_seconds
    settings = get_settings()
    worst = settings.backup_dump_timeout_seconds + 2 * settings.backup_restore_timeout_seconds
    assert worst < spec.soft_time_limit < spec.time_limit
    assert {entry.name for entry in SCHEDULES} <= {e.name for e in beat_schedule.SCHEDULES}
    backup_schedules = [entry for entry in SCHEDULES if entry.name.startswith("maintenance.backup")]
    for entry in backup_schedules:
        assert entry.kind == "maintenance.backup" and entry.description
        assert entry.expires < entry.period
        BackupPayload.model_validate(entry.payload)
    periods = sorted(entry.period for entry in backup_schedules)
    assert periods == [dt.timedelta(days=1), dt.timedelta(weeks=1)]
    assert [entry.payload for entry in backup_schedules if entry.period.days == 7] == [
        {"restore_check": True}
    ]


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }


def test_metrics_report_the_age_and_size_of_the_last_good_backup(
    backup_config, engine: Engine
) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BackupCollector(engine=lambda: engine))
    before = _samples(registry)
    assert before["mnw_backup_last_success_age_seconds"] == math.inf
    assert "mnw_backup_last_success_size_bytes" not in before

    view = backups.make_backup(backup_config, restore_check=True)
    after = _samples(registry)
    assert 0 <= after["mnw_backup_last_success_age_seconds"] < 60
    assert after["mnw_backup_last_success_size_bytes"] == view.size_bytes
    assert 0 <= after["mnw_backup_last_restore_check_age_seconds"] < 60

    with engine.begin() as connection:  # a backup whose restore check failed is not good
        connection.execute(text("UPDATE mnw_backups SET restore_check_ok = false"))
    assert _samples(registry)["mnw_backup_last_success_age_seconds"] == math.inf
