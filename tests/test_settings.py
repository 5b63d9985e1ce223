"""Settings: the one place the environment is read; bad values are one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medianest_workers.settings import SettingsError, load_settings

GOOD_KEY = "k" * 32


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("ENCRYPTION_KEY", "ENCRYPTION_KEY_FILE", "API_KEYS", "DB_POOL_SIZE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_reads_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ENCRYPTION_KEY", GOOD_KEY)
    clean_env.setenv("API_KEYS", "one, two")
    clean_env.setenv("DB_POOL_SIZE", "7")
    settings = load_settings()
    assert settings.require_encryption_key() == GOOD_KEY
    assert [key.get_secret_value() for key in settings.api_keys] == ["one", "two"]
    assert settings.db_pool_size == 7
    assert GOOD_KEY not in repr(settings)


def test_key_from_a_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(GOOD_KEY + "\n")
    clean_env.setenv("ENCRYPTION_KEY_FILE", str(key_file))
    assert load_settings().require_encryption_key() == GOOD_KEY


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ENCRYPTION_KEY", "short", "ENCRYPTION_KEY: must be at least 32 characters"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL: must be a URL starting with"),
        ("REDIS_URL", "http://x", "REDIS_URL: must be a URL starting with"),
        ("DB_POOL_SIZE", "many", "DB_POOL_SIZE: Input should be a valid integer"),
        ("DB_POOL_SIZE", "0", "DB_POOL_SIZE: Input should be greater than or equal to 1"),
        ("ENCRYPTION_KEY_FILE", "/nonexistent/key", "ENCRYPTION_KEY_FILE: cannot read"),
    ],
)
def test_invalid_values_name_the_variable(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_missing_key_is_named_when_needed(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match=r"^ENCRYPTION_KEY: not set"):
        load_settings().require_encryption_key()


def test_key_and_key_file_together_are_refused(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(GOOD_KEY)
    clean_env.setenv("ENCRYPTION_KEY", GOOD_KEY)
    clean_env.setenv("ENCRYPTION_KEY_FILE", str(key_file))
    with pytest.raises(SettingsError, match="not both"):
        load_settings()


def test_the_cli_prints_one_line_without_traceback() -> None:
    env = {**os.environ, "ENCRYPTION_KEY": "secret-but-short"}
    result = subprocess.run(
        [sys.executable, "-m", "medianest_workers.runtime.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("medianest-workers: ENCRYPTION_KEY: must be at least 32")
    assert "Traceback" not in result.stderr
    assert "secret-but-short" not in result.stderr
