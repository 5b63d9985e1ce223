"""docs/ and ops/: every command parses with our CLI, the links resolve, every family, job
kind, schedule and table is covered, the systemd units verify, and the restore drill runs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, text

from beat_schedule import SCHEDULES
from medianest_workers.db import admin
from medianest_workers.db.base import metadata
from medianest_workers.platform.registry import all_specs, load_job_modules
from medianest_workers.runtime.cli import build_parser
from tests.ops import compose_commands

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
OPS = ROOT / "ops"
PAGES = sorted([*DOCS.glob("*.md"), *OPS.rglob("*.md"), ROOT / "README.md"])
FAMILIES = ("system", "requests", "downloads", "health", "maintenance")
#: Placeholders the pages write for values an operator fills in.
PLACEHOLDERS = {"JOB_ID": "0b9f3c1e", "ID": "0b9f3c1e", "KIND": "requests.sync"}
_FENCE = re.compile(r"```([a-z]*)\n(.*?)```", re.S)
_SPAN = re.compile(r"`([^`]+)`")


def _commands(text: str) -> list[str]:
    """Every `medianest-workers ...` command of a page: code blocks and inline code."""
    found = []
    for language, block in _FENCE.findall(text):
        if language not in ("", "sh", "bash", "console"):
            continue
        for raw in block.splitlines():
            line = raw.strip()
            if "medianest-workers " in line and not line.startswith("#"):
                command = line[line.index("medianest-workers ") :]
                found.append(command.split("  #")[0].split(" # ")[0].split(" >")[0].strip())
    flat = re.sub(r"\s*\n\s*", " ", _FENCE.sub("", text))
    found += _inline(flat)
    return found


def _inline(text: str) -> list[str]:
    """Inline code spans (paired left to right) that are a command of ours."""
    return [span for span in _SPAN.findall(text) if span.startswith("medianest-workers ")]


def _parse(command: str) -> None:
    words = [PLACEHOLDERS.get(word, word) for word in shlex.split(command)]
    assert words[0] == "medianest-workers", command
    try:
        build_parser().parse_args(words[1:])
    except SystemExit as exc:
        raise AssertionError(f"our CLI refuses {command!r}") from exc


def test_every_command_on_the_pages_parses_with_our_cli() -> None:
    checked = 0
    for page in PAGES:
        for command in _commands(page.read_text()):
            if command.split()[1] in ("<role>", "...", "<") or re.search(r"[\[|]", command):
                continue  # usage notation ([--flag], a|b), not a command
            _parse(command)
            checked += 1
    assert checked > 40


def test_every_command_in_the_alerts_parses_with_our_cli() -> None:
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    annotations = " ".join(
        " ".join(rule.get("annotations", {}).values())
        for group in rules["groups"]
        for rule in group["rules"]
    )
    commands = _inline(re.sub(r"\{\{ \$labels\.kind \}\}", "requests.sync", annotations))
    assert commands
    for command in commands:
        _parse(command)


def test_the_sections_the_alerts_point_to_exist() -> None:
    rules = re.sub(r"\s+", " ", (OPS / "prometheus" / "alerts.yml").read_text())
    for page, section in re.findall(r"(docs/\w+\.md), \"([^\"]+)\"", rules):
        headings = re.findall(r"^#+ (.+)$", (ROOT / page).read_text(), re.M)
        assert section in headings, (page, section)
    for page in set(re.findall(r"\b((?:docs|ops)/[\w-]+\.md)", rules)):
        assert (ROOT / page).exists(), page


def test_relative_links_resolve() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: {target}"


def test_every_family_has_its_page_naming_its_job_kinds() -> None:
    load_job_modules()
    pages = {family: (DOCS / f"{family}.md").read_text() for family in FAMILIES}
    for spec in all_specs():
        if not spec.func.__module__.startswith("medianest_workers."):
            continue  # a test's sample kind (tests/platform registers some in this process)
        prefix = spec.kind.split(".")[0]
        family = "system" if prefix == "platform" else prefix
        assert family in pages, spec.kind
        assert f"`{spec.kind}`" in pages[family], f"docs/{family}.md does not name {spec.kind}"
    for family in FAMILIES:
        assert f"medianest_workers/{family}/" in pages[family]


def test_every_schedule_is_on_a_page() -> None:
    text = " ".join(page.read_text() for page in DOCS.glob("*.md"))
    missing = [
        s.name for s in SCHEDULES if s.name not in text and f".{s.name.split('.')[-1]}`" not in text
    ]
    assert not missing, f"schedules no docs page names: {missing}"


def test_shared_database_page_names_every_table() -> None:
    page = (DOCS / "shared-database.md").read_text()
    missing = [table.name for table in metadata.sorted_tables if f"`{table.name}`" not in page]
    assert not missing, f"docs/shared-database.md does not name {missing}"


# --- docker compose commands ---------------------------------------------------------------


def _compose_pages() -> list[tuple[Path, list[str]]]:
    """(file, its `docker compose` commands): the pages, and the comments of the compose files
    and the ops scripts."""
    pages = [(page, compose_commands.commands_in(page.read_text())) for page in PAGES]
    commented = [*ROOT.glob("docker-compose*.yml"), *OPS.glob("*.sh")]
    return pages + [
        (path, compose_commands.commented_commands(path.read_text())) for path in commented
    ]


def test_every_docker_compose_command_names_services_of_the_stack() -> None:
    services = compose_commands.services_of(ROOT / "docker-compose.yml")
    found, wrong = 0, []
    for path, commands in _compose_pages():
        for command in commands:
            found += 1
            wrong += [
                f"{path.relative_to(ROOT)}: {problem}"
                for problem in compose_commands.problems(command, services, ROOT)
            ]
    assert not wrong, "\n".join(wrong)
    assert found >= 12


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("docker compose logs --tail 200 worker-media", "names service 'worker-media'"),
        ("docker compose stop api worker-health beat", "names service 'worker-health'"),
        ("docker compose exec -T maintenance sh", "names service 'maintenance'"),
        ("docker compose cp worker:/var/lib/x ./x", "names service 'worker'"),
        ("docker compose up -d --scale workers=2", "names service 'workers'"),
        ("docker compose ps --sevices", "option --sevices not in"),
        ("docker compose tail beat", "subcommand 'tail' not in"),
        ("docker compose -f docker-compose.other.yml up -d", "no file docker-compose.other.yml"),
    ],
)
def test_a_wrong_docker_compose_command_is_named(command: str, problem: str) -> None:
    services = compose_commands.services_of(ROOT / "docker-compose.yml")
    [found] = compose_commands.problems(command, services, ROOT)
    assert problem in found


def test_docker_compose_commands_are_found_where_the_pages_write_them() -> None:
    page = (
        "Logs: `docker compose logs --tail 200\n   worker-media-health`.\n\n"
        "```sh\ndocker compose exec -T worker-maintenance sh < ops/restore-drill.sh  # compose\n"
        "# docker compose ps beat\n```\n"
    )
    assert compose_commands.commands_in(page) == [
        "docker compose exec -T worker-maintenance sh",
        "docker compose logs --tail 200 worker-media-health",
    ]
    services = compose_commands.services_of(ROOT / "docker-compose.yml")
    for command in compose_commands.commands_in(page):
        assert compose_commands.problems(command, services, ROOT) == []
    joined = "docker compose -f docker-compose.yml -f docker-compose.medianest.yml up -d --build"
    assert compose_commands.problems(joined, services, ROOT) == []


# --- systemd -------------------------------------------------------------------------------


def _units() -> list[Path]:
    return sorted((OPS / "systemd").iterdir())


def test_every_systemd_exec_start_runs_our_cli() -> None:
    starts = 0
    for unit in _units():
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart=/opt/medianest-workers/bin/medianest-workers "):
                command = line.removeprefix("ExecStart=/opt/medianest-workers/bin/")
                _parse(command.replace("%I", "media,health"))
                starts += 1
    assert starts >= 6


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    (tmp_path / "env").write_text("")
    names = []
    for unit in _units():
        body = unit.read_text().replace(
            "/opt/medianest-workers/bin/medianest-workers", shutil.which("true") or "/bin/true"
        )
        body = body.replace("/etc/medianest-workers/env", str(tmp_path / "env"))
        body = body.replace("/bin/systemctl", shutil.which("true") or "/bin/true")
        name = unit.name.replace("@.", "@media\\x2chealth.")  # systemd-escape media,health
        (tmp_path / name).write_text(body)
        names.append(f"./{name}")
    result = subprocess.run(
        [analyze, "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Unknown" not in output, output


# --- the restore drill ---------------------------------------------------------------------


def test_restore_drill_passes_on_a_database_with_rows(
    session_factory: object, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    with engine.begin() as connection:
        for number in range(3):
            connection.execute(
                text(
                    "INSERT INTO users (id, email, plex_id, role)"
                    " VALUES (:id, :email, :plex, 'user')"
                ),
                {"id": str(uuid.uuid4()), "email": f"u{number}@example.org", "plex": f"p{number}"},
            )
    shim = tmp_path / "bin" / "medianest-workers"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m medianest_workers.runtime.cli "$@"\n')
    shim.chmod(0o755)
    drill_db = f"mnw_drill_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PATH": f"{shim.parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "BACKUP_DIR": str(tmp_path / "backups"),
        "DRILL_DB": drill_db,
    }
    try:
        result = subprocess.run(
            ["sh", str(OPS / "restore-drill.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        admin.drop_database(database_url, drill_db)  # in case the drill stopped half way
    assert result.returncode == 0, result.stdout + result.stderr
    assert "restore drill: passed" in result.stdout
    assert re.search(r"users\s+3\s+3\s+ok", result.stdout), result.stdout
