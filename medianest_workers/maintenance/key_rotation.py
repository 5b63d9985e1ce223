"""Key rotation for operators: `security/rotation.py` from key files, checkpointed, with progress.

`rotate_key()` is what both the job (`maintenance.rotate_key`) and `medianest-workers
rotate-key` run. The keys come from files read here, in the process that rotates: a job's
payload carries only the paths. Before any row is written it refuses, each with one line that
never holds a key (`KeyRotationError`):
- a key file missing, unreadable, empty or shorter than 32 characters (a trailing newline is
  not part of the key, as for ENCRYPTION_KEY_FILE);
- the same key in both files;
- an old key that opens none of the values sampled from the rows still to rotate while some
  open with neither key (a wrong old key: the run would write nothing useful).

Checkpoints (mnw_key_rotation_checkpoints): after each batch, each column's `clean_through` is
saved; the next run starts each column after it, so a rotation stopped by a crash, a time limit
or a cancel resumes without reading, let alone decrypting, the rows it already rotated. A
checkpoint is trusted only if the value at its id decrypts with this run's new key (one
scrypt): a checkpoint of an earlier rotation to another key is discarded. It is saved just after
its batch commits, so a crash in between costs one batch re-read. `from_start=True` ignores and
replaces them (to re-check everything, e.g. after rows were written under the old key meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from medianest_workers.db.models import KeyRotationCheckpoint
from medianest_workers.errors import MedianestWorkersError
from medianest_workers.security.crypto import CryptoError, decrypt_with
from medianest_workers.security.rotation import (
    TARGETS,
    ColumnReport,
    RotationReport,
    RowId,
    rotate_encryption_key,
)
from medianest_workers.settings import MIN_ENCRYPTION_KEY_LENGTH

SessionFactory = Callable[[], Session]
#: Values sampled per column, among the rows still to rotate, to catch a wrong old key.
SAMPLE_PER_COLUMN = 3


class KeyRotationError(MedianestWorkersError):
    """Bad input: nothing was written. The message is one line and holds no key."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Rows done (rotated, current, failed or skipped by a checkpoint) of rows total."""

    column: str
    rows_done: int
    rows_total: int
    column_report: ColumnReport

    def as_json(self) -> dict[str, Any]:
        return {"column": self.column, "rows_done": self.rows_done, "rows_total": self.rows_total}


@dataclass(slots=True)
class RotationOutcome:
    """What a rotation did, and what the operator does next."""

    report: RotationReport
    rows_total: int
    new_key_file: Path
    resumed_after: dict[str, str] = field(default_factory=dict)
    #: Values a checkpoint covered: not read by this run.
    rows_skipped: int = 0

    @property
    def complete(self) -> bool:
        return self.report.complete

    def closing_line(self) -> str:
        """One line: done and what to change in the configurations, or what is left."""
        if self.complete:
            return (
                "rotation complete: set the MediaNest backend's ENCRYPTION_KEY to the new key"
                f" (the content of {self.new_key_file}) and restart it; for medianest-workers set"
                f" ENCRYPTION_KEY to it, or ENCRYPTION_KEY_FILE={self.new_key_file}, and restart"
                " the workers"
            )
        problems = []
        for name, column in self.report.columns.items():
            if column.failed_ids:
                problems.append(
                    f"{name} ids {_ids(column.failed_ids)} decrypt with neither key (untouched)"
                )
            if column.conflict_ids:
                problems.append(f"{name} ids {_ids(column.conflict_ids)} changed meanwhile")
            if not column.finished:
                problems.append(f"{name} not finished")
        return (
            f"rotation not complete: {'; '.join(problems)}; run it again to resume (rows"
            " already rotated are not read again); keep ENCRYPTION_KEY unchanged until it is"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "rows_total": self.rows_total,
            "rows_skipped": self.rows_skipped,
            "resumed_after": self.resumed_after,
            "columns": {
                name: {
                    "rotated": column.rotated,
                    "already_current": column.already_current,
                    "failed_ids": column.failed_ids,
                    "conflict_ids": column.conflict_ids,
                    "finished": column.finished,
                }
                for name, column in self.report.columns.items()
            },
            "next": self.closing_line(),
        }


def _ids(ids: list[RowId]) -> str:
    shown = ", ".join(str(row_id) for row_id in ids[:10])
    return f"{shown} (+{len(ids) - 10} more)" if len(ids) > 10 else shown


def read_key_file(path: Path, *, what: str) -> str:
    """The key in `path` (without its trailing newline), or KeyRotationError naming `what`."""
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyRotationError(f"{what} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not readable"
        raise KeyRotationError(f"{what} {path}: cannot read it: {reason}") from None
    key = content.rstrip("\r\n")
    if not key:
        raise KeyRotationError(f"{what} {path}: empty")
    if len(key) < MIN_ENCRYPTION_KEY_LENGTH:
        raise KeyRotationError(
            f"{what} {path}: the key is {len(key)} characters, it must be at least"
            f" {MIN_ENCRYPTION_KEY_LENGTH}"
        )
    return key


def read_keys(old_key_file: Path, new_key_file: Path) -> tuple[str, str]:
    """Both keys, checked: readable, long enough, different."""
    old = read_key_file(old_key_file, what="old key file")
    new = read_key_file(new_key_file, what="new key file")
    if old == new:
        raise KeyRotationError(
            f"old key file {old_key_file} and new key file {new_key_file} hold the same key"
        )
    return old, new


def rotate_key(
    session_factory: SessionFactory,
    *,
    old_key_file: Path,
    new_key_file: Path,
    batch_size: int | None = None,
    from_start: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> RotationOutcome:
    """Rotate every encrypted column from the old key file's key to the new one's (module doc).

    `on_progress` is called after each batch (an exception it raises, e.g. a cancel, stops the
    run there, its checkpoint saved).
    """
    old, new = read_keys(old_key_file, new_key_file)
    if from_start:
        _clear_checkpoints(session_factory)
    starts = _trusted_checkpoints(session_factory, new)
    resume_after = {name: _target(name).parse_id(value) for name, value in starts.items()}
    _check_old_key(session_factory, old, new, resume_after)
    totals, skipped = _counts(session_factory, resume_after)
    rows_total = sum(totals.values())

    visited: dict[str, int] = {}

    def after_batch(column: ColumnReport) -> None:
        if column.clean_through is not None:
            _save_checkpoint(session_factory, column.column, str(column.clean_through))
        visited[column.column] = column.visited
        if on_progress is not None:
            done = sum(skipped.values()) + sum(visited.values())
            on_progress(Progress(column.column, done, rows_total, column))

    report = rotate_encryption_key(
        session_factory,
        old_secret=old,
        new_secret=new,
        batch_size=batch_size,
        resume_after=resume_after,
        on_batch=after_batch,
    )
    return RotationOutcome(
        report=report,
        rows_total=rows_total,
        new_key_file=new_key_file,
        resumed_after=starts,
        rows_skipped=sum(skipped.values()),
    )


def _target(name: str) -> Any:
    return next(target for target in TARGETS if target.name == name)


def _trusted_checkpoints(session_factory: SessionFactory, new_secret: str) -> dict[str, str]:
    """Saved checkpoints whose value still decrypts with `new_secret`; the others deleted."""
    with session_factory() as session:
        saved = dict(
            session.execute(
                select(KeyRotationCheckpoint.column_name, KeyRotationCheckpoint.clean_through)
            ).all()
        )
    trusted: dict[str, str] = {}
    for target in TARGETS:
        if target.name not in saved:
            continue
        row_id = target.parse_id(saved[target.name])
        with session_factory() as session:
            value = session.execute(
                select(target.column).where(target.pk == row_id)
            ).scalar_one_or_none()
        if value is not None and _opens(value, new_secret):
            trusted[target.name] = saved[target.name]
    stale = set(saved) - set(trusted)
    if stale:
        with session_factory() as session, session.begin():
            session.execute(
                delete(KeyRotationCheckpoint).where(KeyRotationCheckpoint.column_name.in_(stale))
            )
    return trusted


def _opens(stored: str, secret: str) -> bool:
    try:
        decrypt_with(stored, secret=secret)
    except CryptoError:
        return False
    return True


def _check_old_key(
    session_factory: SessionFactory, old: str, new: str, resume_after: dict[str, RowId]
) -> None:
    """Refuse if the old key opens no sampled value still to rotate while some open with neither."""
    opened_by_old = neither = 0
    for target in TARGETS:
        query = select(target.column).where(target.column.is_not(None))
        if target.name in resume_after:
            query = query.where(target.pk > resume_after[target.name])
        with session_factory() as session:
            values = session.scalars(query.order_by(target.pk).limit(SAMPLE_PER_COLUMN)).all()
        for value in values:
            if _opens(value, old):
                opened_by_old += 1
            elif not _opens(value, new):
                neither += 1
    if neither and not opened_by_old:
        raise KeyRotationError(
            f"the old key opens none of the {neither} values sampled from the rows still to"
            " rotate (nor does the new key): is the old key file the key the backend uses?"
            " Nothing was written"
        )


def _counts(
    session_factory: SessionFactory, resume_after: dict[str, RowId]
) -> tuple[dict[str, int], dict[str, int]]:
    """Non-NULL values per column, and how many of them a checkpoint already covers."""
    totals: dict[str, int] = {}
    skipped: dict[str, int] = {}
    with session_factory() as session:
        for target in TARGETS:
            present = target.column.is_not(None)
            totals[target.name] = session.execute(
                select(func.count()).select_from(target.table).where(present)
            ).scalar_one()
            skipped[target.name] = 0
            if target.name in resume_after:
                skipped[target.name] = session.execute(
                    select(func.count())
                    .select_from(target.table)
                    .where(present, target.pk <= resume_after[target.name])
                ).scalar_one()
    return totals, skipped


def _save_checkpoint(session_factory: SessionFactory, column: str, clean_through: str) -> None:
    statement = insert(KeyRotationCheckpoint).values(
        column_name=column, clean_through=clean_through
    )
    statement = statement.on_conflict_do_update(
        index_elements=[KeyRotationCheckpoint.column_name],
        set_={"clean_through": clean_through, "updated_at": func.timezone("UTC", func.now())},
    )
    with session_factory() as session, session.begin():
        session.execute(statement)


def _clear_checkpoints(session_factory: SessionFactory) -> None:
    with session_factory() as session, session.begin():
        session.execute(delete(KeyRotationCheckpoint))
