"""docker-compose.yml validates against the compose specification and runs our CLI.

The schema is the compose-spec's own, as check-jsonschema ships it (no network). Variables
are interpolated from .env.example the way compose does (`${X:-default}`, `${X:?error}`,
`$$`); every app service's command (and healthcheck) parses with our real argparse parser.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from medianest_workers.runtime.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?]([^}]*))?\}|\$\$")


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


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _interpolate(yaml.safe_load(COMPOSE.read_text()), _env_example())


def test_compose_file_validates_against_the_compose_specification(compose: dict) -> None:
    jsonschema.validate(compose, _compose_schema())


def test_every_app_service_command_is_one_of_our_cli(compose: dict) -> None:
    parser = build_parser()
    app_services = {
        name: service for name, service in compose["services"].items() if "build" in service
    }
    assert {"migrate", "api", "beat", "flower"} <= set(app_services)
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
    assert "--appendonly yes" in redis_command and "noeviction" in redis_command
    assert "--requirepass" in redis_command
    workers = [name for name in services if name.startswith("worker-")]
    assert "worker-downloads" in workers
    assert [name for name, s in services.items() if s.get("command") == ["beat"]] == ["beat"]
    for name, service in services.items():
        if name != "migrate":
            assert service["restart"] == "unless-stopped", name
            assert "healthcheck" in service or name == "beat", name
        for dependency in service.get("depends_on", {}).values():
            assert dependency["condition"] in ("service_healthy", "service_completed_successfully")
    for name in workers:
        queues = build_parser().parse_args(services[name]["command"]).queues
        assert ("downloads" in queues) == (name == "worker-downloads")
