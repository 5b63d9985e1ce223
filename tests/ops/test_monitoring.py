"""ops/: the alert rules and the dashboard use only metrics that the real exporters export.

The names are read off real /metrics pages: the API's (created by `create_app`, with a
backup, a health check and finished jobs in the database so that every family has samples),
Flower's (`medianest-workers flower`, a real process), and, where Debian's packages are
installed (`prometheus-postgres-exporter`, `prometheus-redis-exporter`), the real exporters
run against this run's database (with ops/postgres-exporter/queries.yaml) and Redis.
`promtool` (Debian's `prometheus` package) checks the rules and the config, and runs
ops/prometheus/alerts_test.yml; without it those tests are skipped and the rules' structure
is still checked here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from medianest_workers.api.app import create_app
from medianest_workers.platform.registry import load_job_modules
from tests.conftest import truncate_all
from tests.helpers import free_port, wait_for
from tests.ops.conftest import answers, stop
from tests.ops.promql import exported_families, exported_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
RULES = OPS / "prometheus" / "alerts.yml"
DASHBOARD = OPS / "grafana" / "medianest-workers.json"
PG_QUERIES = OPS / "postgres-exporter" / "queries.yaml"
PROMETHEUS_BUILTIN = {"up"}
#: Which /metrics page exports a name, by its prefix.
SOURCES = {"mnw_": "medianest-workers", "flower_": "flower", "pg_": "postgres", "redis_": "redis"}


# --- what the rules and the dashboard use --------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _prometheus_targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every Prometheus query of the dashboard, variables included."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("type") == "prometheus":
                found.append((panel["title"], target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((\w+), *\w+\)", variable["query"]["query"])
            assert match, variable
            found.append((f"variable {variable['name']}", match.group(1)))
    return found


def _used_names() -> dict[str, set[str]]:
    """Every metric name used, with where (rule or panel)."""
    used: dict[str, set[str]] = {}
    for rule in _rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"rule {rule['alert']}")
    for title, expression in _prometheus_targets(_dashboard()):
        for name in metric_names(expression):
            used.setdefault(name, set()).add(f"panel {title!r}")
    return used


def _used_from(source: str) -> dict[str, set[str]]:
    prefix = next(prefix for prefix, name in SOURCES.items() if name == source)
    return {name: where for name, where in _used_names().items() if name.startswith(prefix)}


def _assert_exported(source: str, exposition: str) -> None:
    used = _used_from(source)
    assert used, f"nothing of {source} is used: the prefix table is wrong"
    exported = exported_names(exposition)
    missing = {name: sorted(where) for name, where in used.items() if name not in exported}
    assert not missing, f"{source}'s /metrics does not export: {missing}"


def test_promql_names_are_found_in_expressions() -> None:
    expression = (
        'sum by (kind) (rate(flower_events_total{type="task-failed", task=~"$kind"}[5m]))'
        " / ignoring(type) group_left sum(mnw_jobs) > 0.25 and on (queue) up == 0"
        " or histogram_quantile(0.9, sum by (le) (rate(x_bucket[$__rate_interval]))) offset 5m"
    )
    assert metric_names(expression) == {"flower_events_total", "mnw_jobs", "up", "x_bucket"}


def test_every_name_used_has_a_known_source() -> None:
    unknown = {
        name: sorted(where)
        for name, where in _used_names().items()
        if name not in PROMETHEUS_BUILTIN and not name.startswith(tuple(SOURCES))
    }
    assert not unknown, f"metrics of no exporter we run: {unknown}"


# --- the real /metrics pages ---------------------------------------------------------------


@pytest.fixture
def populated_database(session_factory: object, engine: Engine) -> Iterator[None]:
    """A good backup with a restore check and a health check: every family has samples."""
    load_job_modules()
    with engine.begin() as connection:
        connection.execute(
            text(
                """
                INSERT INTO mnw_backups (id, path, state, database_name, started_at, finished_at,
                    size_bytes, verified_at, restore_checked_at, restore_check_ok)
                VALUES ('b1', '/backups/x.dump', 'succeeded', 'medianest',
                    timezone('UTC', now()) - interval '2 hours',
                    timezone('UTC', now()) - interval '1 hour', 12345,
                    timezone('UTC', now()) - interval '1 hour',
                    timezone('UTC', now()) - interval '1 hour', true)
                """
            )
        )
        connection.execute(
            text(
                """
                INSERT INTO mnw_health_checks (service_name, kind, checked_at, result, status,
                    consecutive_failures, response_time_ms, http_status, cert_days_left,
                    in_maintenance)
                VALUES ('plex', 'http', timezone('UTC', now()), 'up', 'up', 0, 42, 200, 80.5,
                    false)
                """
            )
        )
    yield
    truncate_all(engine)


def test_rules_and_dashboard_use_only_names_our_metrics_export(populated_database: None) -> None:
    with TestClient(create_app()) as client:
        scrape = client.get("/metrics")
    assert scrape.status_code == 200
    _assert_exported("medianest-workers", scrape.text)
    # Every family the collectors export is somewhere on the dashboard.
    on_dashboard = {
        name
        for _title, expression in _prometheus_targets(_dashboard())
        for name in metric_names(expression)
    }
    not_shown = [
        family
        for family, names in exported_families(scrape.text).items()
        if family.startswith("mnw_") and not names & on_dashboard
    ]
    assert not not_shown, f"families on /metrics that no dashboard panel shows: {not_shown}"


def test_rules_and_dashboard_use_only_names_flower_exports(start_flower) -> None:  # type: ignore[no-untyped-def]
    scrape = httpx.get(f"{start_flower().url}/metrics", timeout=10)
    assert scrape.status_code == 200
    _assert_exported("flower", scrape.text)


def _exporter(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} not installed (Debian package {binary}); .ci/run installs it")
    return path


def _scrape_exporter(argv: list[str], port: int, env: dict[str, str], log_path: Path) -> str:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: answers(url, process), timeout=30, what=argv[0])
        return httpx.get(url, timeout=30).text
    finally:
        stop(process)


def test_rules_and_dashboard_use_only_names_postgres_exporter_exports(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    binary = _exporter("prometheus-postgres-exporter")
    port = free_port()
    separator = "&" if "?" in database_url else "?"
    exposition = _scrape_exporter(
        [binary, f"--web.listen-address=127.0.0.1:{port}", f"--extend.query-path={PG_QUERIES}"],
        port,
        {
            "DATA_SOURCE_NAME": f"{database_url}{separator}sslmode=disable",
            "PATH": os.environ["PATH"],
        },
        tmp_path / "postgres_exporter.log",
    )
    assert re.search(r"^pg_up 1", exposition, re.MULTILINE), exposition[-2000:]
    _assert_exported("postgres", exposition)


def test_rules_and_dashboard_use_only_names_redis_exporter_exports(
    redis_server_url: str, tmp_path: Path
) -> None:
    binary = _exporter("prometheus-redis-exporter")
    port = free_port()
    exposition = _scrape_exporter(
        [binary, f"--redis.addr={redis_server_url}", f"--web.listen-address=127.0.0.1:{port}"],
        port,
        {"PATH": os.environ["PATH"]},
        tmp_path / "redis_exporter.log",
    )
    assert re.search(r"^redis_up 1", exposition, re.MULTILINE), exposition[-2000:]
    _assert_exported("redis", exposition)


# --- the slowest statements panel: its SQL runs on the real schema -------------------------


def test_slowest_statements_panel_reads_the_latest_snapshot(
    session_factory: object, engine: Engine
) -> None:
    (panel,) = [
        panel
        for panel in _dashboard()["panels"]
        if panel.get("datasource", {}).get("type") == "grafana-postgresql-datasource"
    ]
    sql = panel["targets"][0]["rawSql"]
    with engine.begin() as connection:
        for taken, query, mean in (
            ("2026-01-01", "SELECT old", 900.0),
            ("2026-01-02", "SELECT slow", 50.0),
            ("2026-01-02", "SELECT fast", 1.0),
        ):
            connection.execute(
                text(
                    """
                    INSERT INTO mnw_query_stats (taken_at, rank, queryid, query, calls,
                        total_exec_ms, mean_exec_ms, rows, shared_blks_hit, shared_blks_read)
                    VALUES (:taken, 1, 1, :query, 10, :mean * 10, :mean, 5, 1, 1)
                    """
                ),
                {"taken": taken, "query": query, "mean": mean},
            )
        rows = connection.execute(text(sql)).all()
    assert [row.query for row in rows] == ["SELECT slow", "SELECT fast"]
    assert float(rows[0].mean_ms) == 50.0


# --- the dashboard's shape -----------------------------------------------------------------


def test_dashboard_is_importable_grafana_json() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    inputs = {item["name"] for item in dashboard["__inputs"]}
    for panel in dashboard["panels"]:
        position = panel["gridPos"]
        assert position["x"] >= 0 and position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            uid = panel["datasource"]["uid"]
            assert uid.strip("${}") in inputs, panel["title"]
            assert panel["targets"], panel["title"]
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for shown in (
        "connections used / max",
        "cache hit ratio",
        "index hit ratio",
        "largest tables",
        "largest indexes",
        "dead tuples",
        "longest open transaction",
        "slowest statements",
        "workers online",
    ):
        assert shown in titles


# --- the rules ------------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
REQUIRED_ALERTS = {
    "MediaNestWorkerDown",
    "MediaNestQueueBackingUp",
    "MediaNestJobFailureRate",
    "MediaNestDeadJobs",
    "MediaNestBackupTooOld",
    "MediaNestServiceDown",
    "MediaNestScrapeTargetDown",
}


def test_rules_have_the_structure_prometheus_loads() -> None:
    """What `promtool check rules` checks of the structure (it runs too, where installed)."""
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    group_names = [group["name"] for group in document["groups"]]
    assert len(group_names) == len(set(group_names))
    alerts = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule["alert"]
            assert _DURATION.match(rule.get("for", "0s")), rule["alert"]
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
            alerts.append(rule["alert"])
    assert len(alerts) == len(set(alerts))
    assert set(alerts) >= REQUIRED_ALERTS


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package prometheus); .ci/run installs it")
    return path


def test_promtool_checks_the_rules_and_the_config() -> None:
    promtool = _promtool()
    for argv in (["check", "rules", str(RULES)], ["check", "config", "prometheus.yml"]):
        result = subprocess.run(
            [promtool, *argv], cwd=RULES.parent, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    """ops/prometheus/alerts_test.yml: series in, alerts out (worker down, backup, failures)."""
    promtool = _promtool()
    result = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
