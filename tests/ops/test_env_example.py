""".env.example documents every setting, with its true default, and names nothing stale.

A new Settings field without a line in .env.example fails here, naming the line to add.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from medianest_workers.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"
_LINE = re.compile(r"^(#? ?)([A-Z][A-Z0-9_]*)=(.*)$", re.MULTILINE)


def _lines() -> list[tuple[bool, str, str]]:
    """(commented out, NAME, value) of every assignment line."""
    return [(bool(hash_.strip()), name, value) for hash_, name, value in _LINE.findall(_read())]


def _read() -> str:
    return ENV_EXAMPLE.read_text()


def _default_text(field: str) -> str:
    """A field's declared default as .env.example writes it (empty: none)."""
    default = Settings.model_fields[field].get_default(call_default_factory=True)
    if default is None or isinstance(default, SecretStr) or default == []:
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def test_every_setting_appears_in_env_example() -> None:
    named = {name for _commented, name, _value in _lines()}
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in named]
    assert not missing, (
        f".env.example lacks {len(missing)} setting(s) of medianest_workers/settings.py; add"
        " a line for each (commented out, with its default) under its section:\n"
        + "\n".join(f"  # {name}={_default_text(name.lower())}" for name in missing)
    )


def test_defaults_shown_are_the_real_defaults() -> None:
    shown = {
        name: value
        for commented, name, value in _lines()
        if commented and value and name.lower() in Settings.model_fields
    }
    assert len(shown) > 40  # most settings have a default worth showing
    wrong = []
    for name, value in shown.items():
        field = name.lower()
        # The declared default, not this environment's value (the tests set some).
        default = Settings.model_fields[field].get_default(call_default_factory=True)
        expected = getattr(load_settings(**{field: default}), field)
        if getattr(load_settings(**{field: value}), field) != expected:
            wrong.append(f"{name}={value} (default: {expected!r})")
    assert not wrong, ".env.example shows a wrong default: " + "; ".join(wrong)


def test_names_that_are_not_settings_are_compose_variables() -> None:
    compose_text = "".join(path.read_text() for path in sorted(ROOT.glob("docker-compose*.yml")))
    stale = [
        name
        for _commented, name, _value in _lines()
        if name.lower() not in Settings.model_fields and "${" + name not in compose_text
    ]
    assert not stale, f".env.example names neither a setting nor a compose variable: {stale}"


@pytest.mark.parametrize("name", ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "FLOWER_PASSWORD"])
def test_required_compose_secrets_are_set_uncommented(name: str) -> None:
    assert (False, name, "change-me") in _lines()
