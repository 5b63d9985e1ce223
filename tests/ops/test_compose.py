"""docker-compose.yml (and its MediaNest override) validate and run our CLI.

The schema is the compose specification's own, as check-jsonschema ships it (no network; no
Docker engine or compose plugin here). Variables are interpolated from .env.example the way
compose does (`${X:-default}`, `${X:?error}`, `$$`); the override's `!reset` / `!override`
tags are merged as compose merges them. Every app service's command (and healthcheck)
parses with our real argparse parser; the exporters' flags are checked against the real
binaries' --help where Debian's packages are installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from medianest_workers.runtime.cli import build_parser
from medianest_workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
OVERRIDE = ROOT / "docker-compose.medianest.yml"
_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?]([^}]*))?\}|\$\$")
#: What a user of the override sets in .env (docker-compose.medianest.yml's header).
MEDIANEST_ENV = {
    "MEDIANEST_DATABASE_URL": "postgresql://medianest:secret@postgres:5432/medianest",
    "MEDIANEST_REDIS_URL": "redis://:secret@redis:6379/0",
    "MEDIANEST_NETWORK": "medianest_default",
    "DOWNLOADS_HOST_DIR": "/srv/medianest/downloads",
}


# --- loading as compose does --------------------------------------------------------------


class _Reset:
    """`!reset`: the key is removed from the merged file."""


class _Override:
    def __init__(self, value: Any) -> None:
        self.value = value


class _ComposeLoader(yaml.SafeLoader):
    pass


def _construct_reset(loader: yaml.SafeLoader, node: yaml.Node) -> _Reset:
    return _Reset()


def _construct_override(loader: yaml.SafeLoader, node: yaml.Node) -> _Override:
    if isinstance(node, yaml.MappingNode):
        return _Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return _Override(loader.construct_sequence(node, deep=True))
    return _Override(loader.construct_scalar(node))  # type: ignore[arg-type]


_ComposeLoader.add_constructor("!reset", _construct_reset)
_ComposeLoader.add_constructor("!override", _construct_override)

#: Sequences compose replaces instead of appending to (the rest are merged).
_REPLACED = {"command", "entrypoint", "test"}


def _merge(base: Any, override: Any, key: str = "") -> Any:
    if isinstance(override, _Override):
        return override.value
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            if isinstance(value, _Reset):
                merged.pop(name, None)
            elif name in merged:
                merged[name] = _merge(merged[name], value, name)
            else:
                merged[name] = _strip(value)
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in _REPLACED:
        return base + [item for item in override if item not in base]
    return _strip(override)


def _strip(value: Any) -> Any:
    """A value of the override alone: tags resolved."""
    if isinstance(value, _Override):
        return value.value
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not isinstance(v, _Reset)}
    return value


def _env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name] = value
    return values


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if "?" in match.group(0):
            raise AssertionError(f"{name} is required and not in .env.example")
        return default or ""

    return _VARIABLE.sub(replace, value)


def _compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def _load(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)  # noqa: S506 - SafeLoader + tags


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _interpolate(_load(COMPOSE), _env_example())


@pytest.fixture(scope="module")
def joined() -> dict[str, Any]:
    """docker-compose.yml + docker-compose.medianest.yml, merged, as a joining user runs it."""
    merged = _merge(_load(COMPOSE), _load(OVERRIDE))
    return _interpolate(merged, {**_env_example(), **MEDIANEST_ENV})


def _active(compose: dict[str, Any]) -> dict[str, Any]:
    """The services `docker compose up` starts (no profile given)."""
    return {name: s for name, s in compose["services"].items() if not s.get("profiles")}


def _app_services(compose: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in _active(compose).items() if "build" in s}


# --- the standalone stack ------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification(compose: dict) -> None:
    jsonschema.validate(compose, _compose_schema())


def test_every_app_service_command_is_one_of_our_cli(compose: dict) -> None:
    parser = build_parser()
    app_services = _app_services(compose)
    assert {"migrate", "api", "beat", "flower", "worker-downloads"} <= set(app_services)
    for name, service in app_services.items():
        args = parser.parse_args(service["command"])
        assert args.command, name
        check = service.get("healthcheck", {}).get("test")
        if check and check[1] == "medianest-workers":
            parser.parse_args(check[2:])


def test_stack_follows_the_operations_rules(compose: dict) -> None:
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:15-alpine"
    assert services["redis"]["image"] == "redis:7-alpine"
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--maxmemory-policy noeviction" in redis_command
    assert '--requirepass "$REDIS_PASSWORD"' in redis_command
    workers = [name for name in services if name.startswith("worker-")]
    assert "worker-downloads" in workers
    assert [name for name, s in services.items() if s.get("command") == ["beat"]] == ["beat"]
    assert services["beat"]["deploy"]["replicas"] == 1
    for name, service in services.items():
        if name != "migrate":
            assert service["restart"] == "unless-stopped", name
            assert "healthcheck" in service, name
        for dependency in service.get("depends_on", {}).values():
            assert dependency["condition"] in ("service_healthy", "service_completed_successfully")
    assert services["migrate"]["restart"] == "no"
    for name, service in _app_services(compose).items():
        if name not in ("migrate", "flower"):
            condition = service["depends_on"]["migrate"]["condition"]
            assert condition == "service_completed_successfully", name
    for name in workers:
        queues = build_parser().parse_args(services[name]["command"]).queues
        assert ("downloads" in queues) == (name == "worker-downloads")
    named = set(compose["volumes"])
    assert {"postgres-data", "redis-data", "backups"} <= named


def _liveness_check(compose: dict, name: str) -> tuple[str, str]:
    """(the `medianest-workers` subcommand of a service's healthcheck, the file it reads)."""
    test = compose["services"][name]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "medianest-workers"], name
    args = build_parser().parse_args(test[2:])
    return args.command, str(args.file)


def test_beat_and_workers_are_checked_by_the_file_their_loop_touches(compose: dict) -> None:
    """tests/ops/test_beat_liveness.py and test_worker_presence.py run these commands."""
    for name, service in _active(compose).items():
        command = service.get("command") or []
        if command[:1] == ["worker"]:
            environment_name, check = "WORKER_LIVENESS_FILE", "worker-alive"
        elif command == ["beat"]:
            environment_name, check = "BEAT_LIVENESS_FILE", "beat-alive"
        else:
            continue
        assert _liveness_check(compose, name) == (check, service["environment"][environment_name])


def test_downloads_worker_writes_where_the_settings_say(compose: dict) -> None:
    worker = compose["services"]["worker-downloads"]
    (volume,) = worker["volumes"]
    target = volume.split(":")[1]
    assert worker["environment"]["DOWNLOAD_ROOT"] == target
    assert target == str(Settings.model_fields["download_root"].default)
    # Issue 8: 3 downloads at once by default, the backend's figure.
    assert build_parser().parse_args(worker["command"]).concurrency == 3


def test_backups_land_on_a_named_volume(compose: dict) -> None:
    worker = compose["services"]["worker-maintenance"]
    backup_dir = worker["environment"]["BACKUP_DIR"]
    assert f"backups:{backup_dir}" in worker["volumes"]


def test_flower_runs_with_auth_and_purges_offline_workers(compose: dict) -> None:
    flower = compose["services"]["flower"]
    assert flower["environment"]["FLOWER_PASSWORD"]
    args = build_parser().parse_args(flower["command"])
    assert args.command == "flower"
    # `medianest-workers flower` passes --basic-auth and --purge_offline_workers to Flower
    # (tests/ops/test_flower.py runs it); the command line never holds the password.
    assert not any("basic" in part or "password" in part.lower() for part in flower["command"])


def test_every_compose_variable_is_in_env_example() -> None:
    documented = set(
        re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    )
    used = set()
    for path in (COMPOSE, OVERRIDE):
        used |= {match.group(1) for match in _VARIABLE.finditer(path.read_text()) if match.group(1)}
    assert used - documented == set(), "docker-compose variables missing from .env.example"


def _flags(argv: list[str]) -> list[str]:
    return [part.split("=", 1)[0].lstrip("-") for part in argv if part.startswith("-")]


@pytest.mark.parametrize(
    ("service", "binary"),
    [
        ("postgres-exporter", "prometheus-postgres-exporter"),
        ("redis-exporter", "prometheus-redis-exporter"),
    ],
)
def test_exporter_flags_are_the_exporters_own(compose: dict, service: str, binary: str) -> None:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} not installed (Debian package {binary}); .ci/run installs it")
    result = subprocess.run([path, "--help"], capture_output=True, text=True, check=False)
    usage = result.stdout + result.stderr
    for flag in _flags(compose["services"][service]["command"]):
        assert re.search(rf"(^|\s)--?{re.escape(flag)}[\s=]", usage, re.M), (service, flag)


# --- joining an existing MediaNest deployment ----------------------------------------------


def test_joined_stack_validates_against_the_compose_specification(joined: dict) -> None:
    jsonschema.validate(joined, _compose_schema())


def test_joined_stack_uses_the_backends_servers_and_network(joined: dict) -> None:
    active = _active(joined)
    assert "postgres" not in active and "redis" not in active
    for name, service in active.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in active, f"{name} waits for {dependency}, which does not start"
    for name, service in _app_services(joined).items():
        assert service["environment"]["DATABASE_URL"] == MEDIANEST_ENV["MEDIANEST_DATABASE_URL"]
        assert service["environment"]["REDIS_URL"] == MEDIANEST_ENV["MEDIANEST_REDIS_URL"]
        assert service["environment"]["WORKER_LIVENESS_FILE"], name  # kept from the base
        assert service["environment"]["BEAT_LIVENESS_FILE"], name
        build_parser().parse_args(service["command"])
        if name not in ("migrate", "flower"):
            assert service["depends_on"] == {
                "migrate": {"condition": "service_completed_successfully"}
            }, name
    assert joined["networks"]["default"] == {"name": "medianest_default", "external": True}
    downloads = active["worker-downloads"]["volumes"]
    assert downloads == ["/srv/medianest/downloads:/var/lib/medianest/downloads"]
    assert _liveness_check(joined, "beat") == ("beat-alive", "/tmp/mnw-beat-alive")
    exporter = active["redis-exporter"]
    assert "environment" not in exporter  # the password is in the URL
    assert f"--redis.addr={MEDIANEST_ENV['MEDIANEST_REDIS_URL']}" in exporter["command"]


def test_image_has_the_pg_dump_of_the_compose_servers_major(compose: dict) -> None:
    """Backups need pg_dump of the server's exact major (maintenance/pg_tools.py)."""
    major = re.fullmatch(r"postgres:(\d+)-alpine", compose["services"]["postgres"]["image"])
    assert major
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG PG_CLIENT_MAJOR={major.group(1)}\n" in dockerfile
    assert '"postgresql-client-${PG_CLIENT_MAJOR}"' in dockerfile
    assert "-bookworm" in dockerfile  # whose Debian release ships that client
