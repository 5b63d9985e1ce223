"""Key rotation on a real database: every shape rotated, failures reported, reruns idempotent."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from medianest_workers.db.models import ServiceConfig, User
from medianest_workers.security import rotation
from medianest_workers.security.crypto import (
    DecryptionError,
    InvalidSecretError,
    decrypt_with,
    encrypt_with,
    is_current_format,
)
from medianest_workers.security.rotation import RotationReport, rotate_encryption_key
from medianest_workers.settings import reset_settings_cache
from tests.security.test_crypto import reference_encrypt_legacy

OLD = "old-secret-0123456789abcdef-0123456789"
NEW = "new-secret-fedcba9876543210-fedcba9876"
UNRELATED = "unrelated-secret-00000000000000000000"
LONG_AGO = dt.datetime(2024, 1, 1, 12, 0, 0)


@dataclass
class Row:
    """A seeded row: its id, the plaintext it holds (None: NULL) and the value stored."""

    id: str | int
    plaintext: str | None
    stored: str | None


def old_current(plaintext: str) -> str:
    return encrypt_with(plaintext, secret=OLD)


def old_legacy(plaintext: str) -> str:
    return reference_encrypt_legacy(plaintext.encode(), OLD)


def old_double(plaintext: str) -> str:
    return encrypt_with(encrypt_with(plaintext, secret=OLD), secret=OLD)


def add_user(session: Session, plaintext: str | None, stored: str | None) -> Row:
    user = User(email=f"{uuid.uuid4().hex}@example.test", plex_token=stored)
    session.add(user)
    session.commit()
    return Row(user.id, plaintext, stored)


def add_service(session: Session, plaintext: str | None, stored: str | None) -> Row:
    service = ServiceConfig(
        service_name=f"service-{uuid.uuid4().hex[:8]}",
        service_url="http://127.0.0.1:5055",
        api_key=stored,
        updated_at=LONG_AGO,
    )
    session.add(service)
    session.commit()
    return Row(service.id, plaintext, stored)


def first_user_id(session_factory: sessionmaker[Session]) -> str:
    """The id the rotation visits first: the database's own order."""
    with session_factory() as session:
        return session.execute(select(User.id).order_by(User.id).limit(1)).scalar_one()


def plex_tokens(session_factory: sessionmaker[Session]) -> dict[str, str | None]:
    with session_factory() as session:
        rows = session.execute(select(User.id, User.plex_token)).all()
    return {user_id: plex_token for user_id, plex_token in rows}


def api_keys(session_factory: sessionmaker[Session]) -> dict[int, tuple[str | None, dt.datetime]]:
    with session_factory() as session:
        rows = session.execute(
            select(ServiceConfig.id, ServiceConfig.api_key, ServiceConfig.updated_at)
        ).all()
    return {row_id: (api_key, updated_at) for row_id, api_key, updated_at in rows}


def assert_single_wrapped_under_new_key(stored: str | None, plaintext: str) -> None:
    assert stored is not None
    assert is_current_format(stored)
    assert decrypt_with(stored, secret=NEW) == plaintext
    # One layer only: the ciphertext part is exactly as long as the plaintext.
    assert len(stored.split(":")[0]) == 2 * len(plaintext.encode("utf-8"))


@dataclass
class Seeded:
    users: dict[str, Row]
    services: dict[str, Row]


@pytest.fixture
def seeded(db_session: Session) -> Seeded:
    users = {
        "current": add_user(db_session, "plex-current-ü", old_current("plex-current-ü")),
        "legacy": add_user(db_session, "plex-legacy", old_legacy("plex-legacy")),
        "double": add_user(db_session, "plex-double", old_double("plex-double")),
        "null": add_user(db_session, None, None),
        "unrelated": add_user(
            db_session, "plex-unrelated", encrypt_with("plex-unrelated", secret=UNRELATED)
        ),
        "new": add_user(db_session, "plex-new", encrypt_with("plex-new", secret=NEW)),
    }
    services = {
        "current": add_service(db_session, "api-current", old_current("api-current")),
        "legacy": add_service(db_session, "api-legacy", old_legacy("api-legacy")),
        "null": add_service(db_session, None, None),
        "unrelated": add_service(
            db_session, "api-unrelated", encrypt_with("api-unrelated", secret=UNRELATED)
        ),
    }
    return Seeded(users=users, services=services)


def rotate(session_factory: sessionmaker[Session], **options: int) -> RotationReport:
    return rotate_encryption_key(session_factory, old_secret=OLD, new_secret=NEW, **options)


def test_rotates_every_shape_and_reports_failures(
    session_factory: sessionmaker[Session], seeded: Seeded
) -> None:
    report = rotate(session_factory, batch_size=2)

    users, services = report.users, report.service_config
    assert (users.rotated, users.already_current) == (3, 1)
    assert users.failed_ids == [seeded.users["unrelated"].id]
    assert (services.rotated, services.already_current) == (2, 0)
    assert services.failed_ids == [seeded.services["unrelated"].id]
    assert users.finished and services.finished
    assert users.conflict_ids == services.conflict_ids == []
    assert not report.complete  # the unrelated rows could not be rotated

    tokens = plex_tokens(session_factory)
    for name in ("current", "legacy", "double"):
        row = seeded.users[name]
        assert row.plaintext is not None
        assert_single_wrapped_under_new_key(tokens[str(row.id)], row.plaintext)
    for name in ("null", "unrelated", "new"):
        row = seeded.users[name]
        assert tokens[str(row.id)] == row.stored  # untouched, byte for byte

    keys = api_keys(session_factory)
    for name in ("current", "legacy"):
        row = seeded.services[name]
        assert row.plaintext is not None
        api_key, updated_at = keys[int(row.id)]
        assert_single_wrapped_under_new_key(api_key, row.plaintext)
        assert updated_at > LONG_AGO  # Prisma's @updatedAt, maintained by the writer
    for name in ("null", "unrelated"):
        row = seeded.services[name]
        assert keys[int(row.id)] == (row.stored, LONG_AGO)


def test_a_second_run_changes_nothing(
    session_factory: sessionmaker[Session], seeded: Seeded
) -> None:
    rotate(session_factory, batch_size=2)
    tokens, keys = plex_tokens(session_factory), api_keys(session_factory)

    again = rotate(session_factory, batch_size=2)

    assert (again.users.rotated, again.users.already_current) == (0, 4)
    assert (again.service_config.rotated, again.service_config.already_current) == (0, 2)
    assert again.users.failed_ids == [seeded.users["unrelated"].id]
    assert again.service_config.failed_ids == [seeded.services["unrelated"].id]
    assert plex_tokens(session_factory) == tokens
    assert api_keys(session_factory) == keys


def test_a_run_stopped_after_one_batch_resumes_and_completes(
    session_factory: sessionmaker[Session], db_session: Session
) -> None:
    users = [add_user(db_session, f"token-{n}", old_current(f"token-{n}")) for n in range(3)]
    service = add_service(db_session, "api", old_legacy("api"))

    first = rotate(session_factory, batch_size=1, max_batches=1)

    assert (first.users.rotated, first.users.finished) == (1, False)
    assert (first.service_config.rotated, first.service_config.finished) == (0, False)
    assert not first.complete
    tokens = plex_tokens(session_factory)
    first_id = first_user_id(session_factory)
    for user in users:
        assert (tokens[str(user.id)] == user.stored) is (user.id != first_id)

    second = rotate(session_factory, batch_size=1)

    assert second.complete
    assert (second.users.rotated, second.users.already_current) == (2, 1)
    assert second.service_config.rotated == 1
    tokens = plex_tokens(session_factory)
    for user in users:
        assert user.plaintext is not None
        assert_single_wrapped_under_new_key(tokens[str(user.id)], user.plaintext)
    assert_single_wrapped_under_new_key(api_keys(session_factory)[int(service.id)][0], "api")


def test_a_run_that_crashes_mid_way_keeps_committed_batches_and_resumes(
    session_factory: sessionmaker[Session], db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = [add_user(db_session, f"token-{n}", old_double(f"token-{n}")) for n in range(3)]
    real_write = rotation._write
    writes = 0

    def crash_on_second_batch(
        session: Session, target: rotation._Target, rewrite: rotation._Rewrite
    ) -> bool:
        nonlocal writes
        writes += 1
        if writes == 2:
            raise RuntimeError("worker killed")
        return real_write(session, target, rewrite)

    monkeypatch.setattr(rotation, "_write", crash_on_second_batch)
    with pytest.raises(RuntimeError, match="worker killed"):
        rotate(session_factory, batch_size=1)

    tokens = plex_tokens(session_factory)
    rotated = [user for user in users if tokens[str(user.id)] != user.stored]
    assert [user.id for user in rotated] == [first_user_id(session_factory)]

    monkeypatch.setattr(rotation, "_write", real_write)
    resumed = rotate(session_factory, batch_size=1)

    assert resumed.complete
    assert (resumed.users.rotated, resumed.users.already_current) == (2, 1)
    tokens = plex_tokens(session_factory)
    for user in users:
        assert user.plaintext is not None
        assert_single_wrapped_under_new_key(tokens[str(user.id)], user.plaintext)


def test_a_value_changed_concurrently_is_never_overwritten(
    session_factory: sessionmaker[Session], db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = add_user(db_session, "token", old_current("token"))
    concurrent_value = encrypt_with("token-from-a-fresh-login", secret=NEW)
    real_write = rotation._write

    def backend_writes_first(
        session: Session, target: rotation._Target, rewrite: rotation._Rewrite
    ) -> bool:
        with session_factory() as other, other.begin():
            other.execute(
                update(User).where(User.id == user.id).values(plex_token=concurrent_value)
            )
        return real_write(session, target, rewrite)

    monkeypatch.setattr(rotation, "_write", backend_writes_first)
    report = rotate(session_factory)

    assert report.users.conflict_ids == [user.id]
    assert report.users.rotated == 0
    assert not report.complete
    assert plex_tokens(session_factory)[str(user.id)] == concurrent_value

    monkeypatch.setattr(rotation, "_write", real_write)
    rerun = rotate(session_factory)
    assert rerun.complete
    assert rerun.users.already_current == 1


def test_logs_name_ids_but_never_secrets_or_values(
    session_factory: sessionmaker[Session], seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rotate(session_factory, batch_size=2)

    assert str(seeded.users["unrelated"].id) in caplog.text
    rows = [*seeded.users.values(), *seeded.services.values()]
    sensitive = [OLD, NEW, UNRELATED]
    sensitive += [row.stored for row in rows if row.stored]
    sensitive += [row.plaintext for row in rows if row.plaintext]
    sensitive += [value for value in plex_tokens(session_factory).values() if value]
    for value in sensitive:
        assert value not in caplog.text


def test_batch_size_defaults_to_the_setting(
    session_factory: sessionmaker[Session], db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(2):
        add_user(db_session, f"token-{n}", old_current(f"token-{n}"))
    monkeypatch.setenv("ROTATION_BATCH_SIZE", "1")
    reset_settings_cache()
    try:
        report = rotate(session_factory, max_batches=1)
    finally:
        reset_settings_cache()
    assert (report.users.rotated, report.users.finished) == (1, False)


def refuse_database() -> Session:
    pytest.fail("the database was touched before the arguments were checked")


@pytest.mark.parametrize(
    ("old", "new"),
    [(OLD, OLD), ("short", NEW), (OLD, "short")],
    ids=["same-secret", "short-old", "short-new"],
)
def test_bad_secrets_are_refused_before_any_row_is_read(old: str, new: str) -> None:
    with pytest.raises(InvalidSecretError) as caught:
        rotate_encryption_key(refuse_database, old_secret=old, new_secret=new)
    for secret in (old, new):
        assert secret not in str(caught.value)


@pytest.mark.parametrize("options", [{"batch_size": 0}, {"max_batches": 0}])
def test_bad_batch_options_are_refused(options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        rotate_encryption_key(refuse_database, old_secret=OLD, new_secret=NEW, **options)


def test_rotated_values_no_longer_decrypt_with_the_old_key(
    session_factory: sessionmaker[Session], db_session: Session
) -> None:
    user = add_user(db_session, "token", old_legacy("token"))
    rotate(session_factory)
    stored = plex_tokens(session_factory)[str(user.id)]
    assert stored is not None
    with pytest.raises(DecryptionError):
        decrypt_with(stored, secret=OLD)
