"""Key rotation for operators, on the test database: key files, refusals, checkpoints that let a
stopped rotation resume without decrypting again what it rotated, the job and the command."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from medianest_workers.db.models import KeyRotationCheckpoint, ServiceConfig, User
from medianest_workers.maintenance import key_rotation
from medianest_workers.maintenance.key_rotation import KeyRotationError, Progress, rotate_key
from medianest_workers.maintenance.tasks import RotateKeyPayload
from medianest_workers.maintenance.tasks import rotate_key as rotate_key_job
from medianest_workers.platform.errors import PermanentError
from medianest_workers.security import rotation
from medianest_workers.security.crypto import decrypt_with, encrypt_with

OLD = "old-key-0123456789abcdef-0123456789abcdef"
NEW = "new-key-fedcba9876543210-fedcba9876543210"
NEWER = "newer-key-00112233445566778899-aabbccddeeff"
WRONG = "wrong-key-99999999999999999999-99999999999"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Keys:
    folder: Path

    def file(self, name: str, content: str) -> Path:
        path = self.folder / name
        path.write_text(content, encoding="utf-8")
        return path

    @property
    def old(self) -> Path:
        return self.file("old.key", OLD + "\n")

    @property
    def new(self) -> Path:
        return self.file("new.key", NEW + "\n")


@pytest.fixture
def keys(tmp_root: Path) -> Keys:
    """Key files in this run's own folder (not tmp_path, which other runs may prune)."""
    folder = tmp_root / f"keys-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return Keys(folder)


def seed_users(session_factory: sessionmaker[Session], count: int, secret: str = OLD) -> None:
    with session_factory() as session, session.begin():
        for n in range(count):
            session.add(
                User(
                    email=f"{uuid.uuid4().hex}@example.test",
                    plex_token=encrypt_with(f"plex-{n}", secret=secret),
                )
            )


def seed_service(session_factory: sessionmaker[Session], secret: str = OLD) -> None:
    with session_factory() as session, session.begin():
        session.add(
            ServiceConfig(
                service_name=f"svc-{uuid.uuid4().hex[:8]}",
                service_url="http://127.0.0.1:5055",
                api_key=encrypt_with("api", secret=secret),
            )
        )


def tokens(session_factory: sessionmaker[Session]) -> dict[str, str]:
    with session_factory() as session:
        rows = session.execute(select(User.id, User.plex_token).order_by(User.id)).all()
    return {row_id: value for row_id, value in rows}


def all_open_with(session_factory: sessionmaker[Session], secret: str) -> bool:
    return all(
        decrypt_with(value, secret=secret).startswith("plex-")
        for value in tokens(session_factory).values()
    )


class Stop(Exception):
    """Raised from a progress callback: the operator's Ctrl-C, a time limit, a cancel."""


def run_cli(*argv: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "medianest_workers.runtime.cli", *argv],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


# --- bad input: one line, nothing written ----------------------------------------------------


@pytest.mark.parametrize(
    ("old_content", "new_content", "expected"),
    [
        (None, NEW, "no such file"),
        ("", NEW, "empty"),
        ("short-key\n", NEW, "must be at least 32"),
        (OLD, "x" * 31, "must be at least 32"),
        (OLD + "\n", OLD, "hold the same key"),
    ],
    ids=["missing", "empty", "short-old", "short-new", "same"],
)
def test_bad_key_files_are_refused_before_any_row_is_read(
    session_factory: sessionmaker[Session],
    keys: Keys,
    old_content: str | None,
    new_content: str,
    expected: str,
) -> None:
    seed_users(session_factory, 2)
    before = tokens(session_factory)
    old_file = keys.folder / "absent.key" if old_content is None else keys.file("o", old_content)
    new_file = keys.file("n", new_content)

    with pytest.raises(KeyRotationError, match=expected) as refused:
        rotate_key(session_factory, old_key_file=old_file, new_key_file=new_file)

    message = str(refused.value)
    assert "\n" not in message
    for secret in (OLD, NEW, "short-key"):
        assert secret not in message
    assert tokens(session_factory) == before


def test_a_directory_is_an_unreadable_key_file(
    session_factory: sessionmaker[Session], keys: Keys
) -> None:
    with pytest.raises(KeyRotationError, match="cannot read it"):
        rotate_key(session_factory, old_key_file=keys.folder, new_key_file=keys.new)


def test_a_wrong_old_key_is_refused_and_nothing_is_written(
    session_factory: sessionmaker[Session], keys: Keys
) -> None:
    seed_users(session_factory, 4)
    seed_service(session_factory)
    before = tokens(session_factory)

    with pytest.raises(KeyRotationError, match="the old key opens none") as refused:
        rotate_key(session_factory, old_key_file=keys.file("w", WRONG), new_key_file=keys.new)

    assert "Nothing was written" in str(refused.value)
    assert tokens(session_factory) == before
    with session_factory() as session:
        assert session.scalars(select(KeyRotationCheckpoint)).all() == []


# --- checkpoints: resume without decrypting again --------------------------------------------


@dataclass
class DecryptSpy:
    """Every value `security.rotation` tries to decrypt."""

    seen: list[str] = field(default_factory=list)

    def __call__(self, stored: str, *, secret: str) -> str:
        self.seen.append(stored)
        return decrypt_with(stored, secret=secret)


def test_a_stopped_rotation_resumes_without_reading_what_it_rotated(
    session_factory: sessionmaker[Session], keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_users(session_factory, 6)
    seed_service(session_factory)
    steps: list[Progress] = []

    def stop_after_two_batches(step: Progress) -> None:
        steps.append(step)
        if len(steps) == 2:
            raise Stop

    with pytest.raises(Stop):
        rotate_key(
            session_factory,
            old_key_file=keys.old,
            new_key_file=keys.new,
            batch_size=2,
            on_progress=stop_after_two_batches,
        )
    assert [(s.rows_done, s.rows_total) for s in steps] == [(2, 7), (4, 7)]
    halfway = tokens(session_factory)
    rotated = dict(list(halfway.items())[:4])
    assert all(decrypt_with(v, secret=NEW) for v in rotated.values())

    spy = DecryptSpy()
    monkeypatch.setattr(rotation, "decrypt_with", spy)
    resumed_steps: list[Progress] = []
    outcome = rotate_key(
        session_factory,
        old_key_file=keys.old,
        new_key_file=keys.new,
        batch_size=2,
        on_progress=resumed_steps.append,
    )

    assert outcome.complete
    assert outcome.rows_skipped == 4
    assert outcome.resumed_after == {"users.plex_token": list(rotated)[-1]}
    assert not set(spy.seen) & set(rotated.values())  # not one of them decrypted again
    assert outcome.report.users.rotated == 2
    assert outcome.report.service_config.rotated == 1
    assert [(s.rows_done, s.rows_total) for s in resumed_steps] == [(6, 7), (7, 7)]
    assert all_open_with(session_factory, NEW)
    assert {k: v for k, v in tokens(session_factory).items() if k in rotated} == rotated


def test_a_complete_rotation_rerun_reads_nothing(
    session_factory: sessionmaker[Session], keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_users(session_factory, 3)
    rotate_key(session_factory, old_key_file=keys.old, new_key_file=keys.new)
    spy = DecryptSpy()
    monkeypatch.setattr(rotation, "decrypt_with", spy)

    again = rotate_key(session_factory, old_key_file=keys.old, new_key_file=keys.new)

    assert again.complete and again.rows_skipped == 3
    assert spy.seen == []


def test_from_start_checks_every_row_again(
    session_factory: sessionmaker[Session], keys: Keys
) -> None:
    seed_users(session_factory, 3)
    rotate_key(session_factory, old_key_file=keys.old, new_key_file=keys.new)

    again = rotate_key(
        session_factory, old_key_file=keys.old, new_key_file=keys.new, from_start=True
    )

    assert again.complete and again.rows_skipped == 0
    assert again.report.users.already_current == 3


def test_a_checkpoint_of_a_rotation_to_another_key_is_not_trusted(
    session_factory: sessionmaker[Session], keys: Keys
) -> None:
    seed_users(session_factory, 3)
    rotate_key(session_factory, old_key_file=keys.old, new_key_file=keys.new)

    next_year = rotate_key(
        session_factory, old_key_file=keys.new, new_key_file=keys.file("newer", NEWER)
    )

    assert next_year.complete
    assert next_year.rows_skipped == 0 and next_year.resumed_after == {}
    assert next_year.report.users.rotated == 3
    assert all_open_with(session_factory, NEWER)


def test_rows_that_open_with_neither_key_are_named_and_left_alone(
    session_factory: sessionmaker[Session], keys: Keys
) -> None:
    seed_users(session_factory, 3)
    seed_users(session_factory, 1, secret=WRONG)
    before = tokens(session_factory)
    (stray,) = [k for k, v in before.items() if key_opens(v, WRONG)]

    outcome = rotate_key(session_factory, old_key_file=keys.old, new_key_file=keys.new)

    assert not outcome.complete
    assert outcome.report.users.failed_ids == [stray]
    assert stray in outcome.closing_line() and "neither key" in outcome.closing_line()
    assert tokens(session_factory)[stray] == before[stray]


def key_opens(value: str, secret: str) -> bool:
    try:
        decrypt_with(value, secret=secret)
    except Exception:  # noqa: BLE001 - any failure means: not this key
        return False
    return True


# --- the job --------------------------------------------------------------------------------


@dataclass
class FakeContext:
    progress: list[dict[str, Any]] = field(default_factory=list)

    def report_progress(self, progress: dict[str, Any]) -> None:
        self.progress.append(progress)

    def check_cancelled(self) -> None:
        pass


def test_the_job_reads_the_key_files_and_reports_progress(
    session_factory: sessionmaker[Session], keys: Keys
) -> None:
    seed_users(session_factory, 3)
    ctx = FakeContext()
    payload = RotateKeyPayload(old_key_file=str(keys.old), new_key_file=str(keys.new), batch_size=2)

    result = rotate_key_job(ctx, payload)  # type: ignore[arg-type]

    assert result["complete"] is True
    assert "ENCRYPTION_KEY" in result["next"] and "ENCRYPTION_KEY_FILE" in result["next"]
    assert ctx.progress[-1] == {"column": "users.plex_token", "rows_done": 3, "rows_total": 3}
    assert OLD not in str(result) and NEW not in str(result)
    assert all_open_with(session_factory, NEW)


def test_the_job_fails_for_good_on_bad_input(
    session_factory: sessionmaker[Session], keys: Keys
) -> None:
    payload = RotateKeyPayload(old_key_file=str(keys.old), new_key_file=str(keys.old))
    with pytest.raises(PermanentError, match="hold the same key"):
        rotate_key_job(FakeContext(), payload)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload",
    [
        {"old_key_file": "old.key", "new_key_file": "/run/secrets/new"},
        {"old_key_file": OLD, "new_key_file": "/run/secrets/new"},
        {"old_key_file": "/a", "new_key_file": "/b", "old_key": OLD},
    ],
    ids=["relative-path", "a-key-instead-of-a-path", "a-key-field"],
)
def test_the_payload_takes_absolute_paths_only(payload: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        RotateKeyPayload.model_validate(payload)


# --- the command ----------------------------------------------------------------------------


def test_rotate_key_prints_progress_then_what_to_configure(
    session_factory: sessionmaker[Session], keys: Keys
) -> None:
    seed_users(session_factory, 3)
    old_file, new_file = keys.old, keys.new

    code, out, err = run_cli(
        "rotate-key",
        "--old-key-file",
        str(old_file),
        "--new-key-file",
        str(new_file),
        "--batch-size",
        "2",
    )

    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert (
        lines[0] == "users.plex_token: 2/3 rows done (rotated 2, current 0, failed 0, conflicts 0)"
    )
    assert lines[1].startswith("users.plex_token: 3/3 rows done")
    assert lines[-1].startswith("rotation complete: set the MediaNest backend's ENCRYPTION_KEY")
    assert f"ENCRYPTION_KEY_FILE={new_file}" in lines[-1]
    assert OLD not in out and NEW not in out
    assert all_open_with(session_factory, NEW)

    code, out, _ = run_cli(
        "rotate-key", "--old-key-file", str(old_file), "--new-key-file", str(new_file)
    )
    assert code == 0
    assert "3 done by an earlier run of this rotation (not read again)" in out


def test_rotate_key_refuses_a_wrong_old_key_in_one_line(
    session_factory: sessionmaker[Session], keys: Keys
) -> None:
    seed_users(session_factory, 2)
    before = tokens(session_factory)

    code, out, err = run_cli(
        "rotate-key",
        "--old-key-file",
        str(keys.file("w", WRONG)),
        "--new-key-file",
        str(keys.new),
    )

    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "the old key opens none" in err
    assert WRONG not in err
    assert tokens(session_factory) == before


def test_rotate_key_needs_both_flags() -> None:
    code, _, err = run_cli("rotate-key", "--old-key-file", "/x")
    assert code == 2 and "--new-key-file" in err


def test_key_rotation_refusals_are_medianest_errors() -> None:
    from medianest_workers.errors import MedianestWorkersError  # noqa: PLC0415

    assert issubclass(key_rotation.KeyRotationError, MedianestWorkersError)
