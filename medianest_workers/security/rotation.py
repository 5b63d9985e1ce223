"""Key rotation: re-encrypt every secret column from an old ENCRYPTION_KEY to a new one.

`rotate_encryption_key` walks `users.plex_token` and `service_config.api_key` by primary key in
batches (keyset pagination). For each batch it reads the rows, does the crypto work outside any
transaction (scrypt costs ~50 ms per value, so no lock is held meanwhile), then writes the batch
in one short transaction of conditional UPDATEs (`WHERE id = :id AND col = :value_read`): a value
a concurrent writer changed in between is never overwritten; it is reported as a conflict and a
rerun picks it up.

Per value:
- decrypts with the new key: already current, left alone (whatever its shape);
- decrypts with the old key: re-written as a single-wrapped current-format value under the new
  key (legacy 3-part and double-wrapped values included);
- decrypts with neither: a failure, reported by id (never by value) and left untouched.

So the run is resumable and idempotent: after a crash (or with `max_batches`) a rerun skips what
is already rotated, and a second complete run changes nothing. Run it while nothing writes these
columns under the old key (the backend stopped, or already on the new key).

Cost: a scrypt per decrypt attempt and per encrypt (legacy values excepted: fixed salt, one
derivation). The key that opened the previous value is tried first, so a row still to rotate
costs about two scrypts and an already rotated one about one. Revisiting rotated rows at all is
what a caller avoids with `resume_after` (start each column after that id) and
`on_batch` (called after each batch with the column's report, whose `clean_through` is the id
up to which every row visited is rotated or current): maintenance/key_rotation.py keeps those
as checkpoints, so a resumed rotation reads no row it already rotated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Table, select, update
from sqlalchemy.orm import Session

from medianest_workers.db.base import metadata
from medianest_workers.db.models import ServiceConfig, User
from medianest_workers.security.crypto import (
    CryptoError,
    InvalidSecretError,
    decrypt_with,
    encrypt_with,
)
from medianest_workers.settings import get_settings
from medianest_workers.timeutil import utcnow

logger = logging.getLogger(__name__)

RowId = str | int


@dataclass(frozen=True, slots=True)
class _Target:
    """One encrypted column, and what else an UPDATE of its row must set."""

    table: Table
    column_name: str
    touch: Callable[[], dict[str, Any]]

    @property
    def name(self) -> str:
        return f"{self.table.name}.{self.column_name}"

    @property
    def pk(self) -> Column[Any]:
        return self.table.c.id

    @property
    def column(self) -> Column[Any]:
        return self.table.c[self.column_name]

    def parse_id(self, value: str) -> RowId:
        """A primary key written as text (a checkpoint) back in the column's own type."""
        return int(value) if self.pk.type.python_type is int else value


def _nothing_else() -> dict[str, Any]:
    return {}


def _updated_at_now() -> dict[str, Any]:
    # Prisma's @updatedAt: the client sets service_config.updated_at on every UPDATE.
    return {"updated_at": utcnow()}


TARGETS = (
    _Target(metadata.tables[User.__tablename__], "plex_token", _nothing_else),
    _Target(metadata.tables[ServiceConfig.__tablename__], "api_key", _updated_at_now),
)


@dataclass(slots=True)
class ColumnReport:
    """What a run did to one encrypted column."""

    column: str
    rotated: int = 0
    already_current: int = 0
    failed_ids: list[RowId] = field(default_factory=list)
    conflict_ids: list[RowId] = field(default_factory=list)
    finished: bool = False  # every row was visited (False when max_batches stopped the run)
    #: Every row up to this id (from the start, or from `resume_after`) is rotated or current.
    clean_through: RowId | None = None

    @property
    def visited(self) -> int:
        """Rows this run read from this column."""
        return self.rotated + self.already_current + len(self.failed_ids) + len(self.conflict_ids)


@dataclass(slots=True)
class RotationReport:
    """Per column: rotated, already current, failed ids, conflicting ids, finished."""

    columns: dict[str, ColumnReport]

    @property
    def users(self) -> ColumnReport:
        return self.columns["users.plex_token"]

    @property
    def service_config(self) -> ColumnReport:
        return self.columns["service_config.api_key"]

    @property
    def complete(self) -> bool:
        """Every row visited, and every value now decrypts with the new key."""
        return all(
            report.finished and not report.failed_ids and not report.conflict_ids
            for report in self.columns.values()
        )


@dataclass(slots=True)
class _Run:
    """One rotation run: where, which keys, how big a batch, how many batches are left."""

    session_factory: Callable[[], Session]
    old_secret: str = field(repr=False)
    new_secret: str = field(repr=False)
    batch_size: int
    batches_left: int | None  # None: unbounded
    on_batch: Callable[[ColumnReport], None] | None = None
    new_key_first: bool = True  # which key opened the last value (see _which_key)

    def may_continue(self) -> bool:
        return self.batches_left is None or self.batches_left > 0

    def spend_batch(self) -> None:
        if self.batches_left is not None:
            self.batches_left -= 1

    def reencrypt(self, plaintext: str) -> str:
        """The plaintext under the new key, single-wrapped."""
        return encrypt_with(plaintext, secret=self.new_secret)


@dataclass(frozen=True, slots=True)
class _Rewrite:
    row_id: RowId
    value_read: str
    new_value: str = field(repr=False)


def rotate_encryption_key(
    session_factory: Callable[[], Session],
    *,
    old_secret: str,
    new_secret: str,
    batch_size: int | None = None,
    max_batches: int | None = None,
    resume_after: Mapping[str, RowId] | None = None,
    on_batch: Callable[[ColumnReport], None] | None = None,
) -> RotationReport:
    """Re-encrypt every secret column from `old_secret` to `new_secret`; see the module doc.

    `batch_size` defaults to ROTATION_BATCH_SIZE; `max_batches` bounds the batches of this run
    (over all columns), after which it stops cleanly with an unfinished report.
    `resume_after` maps a column name (`users.plex_token`) to the id after which its walk
    starts (the caller vouches for the rows before); `on_batch` gets the column's report after
    each batch is written (an exception it raises stops the run there).
    """
    _check_secrets(old_secret, new_secret)
    size = get_settings().rotation_batch_size if batch_size is None else batch_size
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    if max_batches is not None and max_batches < 1:
        raise ValueError("max_batches must be at least 1")
    starts = dict(resume_after or {})
    unknown = set(starts) - {target.name for target in TARGETS}
    if unknown:
        raise ValueError(f"resume_after names no encrypted column: {sorted(unknown)}")
    run = _Run(session_factory, old_secret, new_secret, size, max_batches, on_batch)
    report = RotationReport(
        columns={
            t.name: ColumnReport(column=t.name, clean_through=starts.get(t.name)) for t in TARGETS
        }
    )
    for target in TARGETS:
        _rotate_column(run, target, report.columns[target.name])
    return report


def _check_secrets(old_secret: str, new_secret: str) -> None:
    """Refuse bad secrets (type, length) before any row is read."""
    for secret in (old_secret, new_secret):
        encrypt_with("probe", secret=secret)
    if old_secret == new_secret:
        raise InvalidSecretError("the old and the new secret are the same")


def _rotate_column(run: _Run, target: _Target, report: ColumnReport) -> None:
    """Walk one column by primary key, batch by batch, while the run has batches left."""
    after: RowId | None = report.clean_through
    clean = True
    while run.may_continue():
        rows = _read_batch(run, target, after)
        if not rows:
            report.finished = True
            return
        failed_before, conflicts_before = len(report.failed_ids), len(report.conflict_ids)
        _apply(run, target, _plan(run, target, rows, report), report)
        bad = {*report.failed_ids[failed_before:], *report.conflict_ids[conflicts_before:]}
        for row_id, _stored in rows:
            clean = clean and row_id not in bad
            if not clean:
                break
            report.clean_through = row_id
        after = rows[-1][0]
        run.spend_batch()
        if run.on_batch is not None:
            run.on_batch(report)
        logger.info(
            "%s: rows up to id %s done (rotated %d, current %d, failed %d, conflicts %d)",
            *(target.name, after, report.rotated, report.already_current),
            *(len(report.failed_ids), len(report.conflict_ids)),
        )


def _read_batch(run: _Run, target: _Target, after: RowId | None) -> list[tuple[RowId, str]]:
    """The next batch of non-NULL values after primary key `after` (keyset pagination)."""
    query = select(target.pk, target.column).where(target.column.is_not(None))
    if after is not None:
        query = query.where(target.pk > after)
    with run.session_factory() as session:
        rows = session.execute(query.order_by(target.pk).limit(run.batch_size)).all()
    return [(row[0], row[1]) for row in rows]


def _plan(
    run: _Run, target: _Target, rows: list[tuple[RowId, str]], report: ColumnReport
) -> list[_Rewrite]:
    """Sort a batch into already current, failed, and values to re-write under the new key."""
    rewrites = []
    for row_id, stored in rows:
        under_old, under_new = _which_key(run, stored)
        if under_old is not None:
            new_value = run.reencrypt(under_old)
            rewrites.append(_Rewrite(row_id=row_id, value_read=stored, new_value=new_value))
        elif under_new:
            report.already_current += 1
        else:
            report.failed_ids.append(row_id)
            logger.warning(
                "%s: id %s decrypts with neither key; left untouched", *(target.name, row_id)
            )
    return rewrites


def _which_key(run: _Run, stored: str) -> tuple[str | None, bool]:
    """(the plaintext if the old key opens it, whether the new key does).

    The key that opened the previous value is tried first: rows come in runs (rotated ones
    before the point where a run stopped, then rows still under the old key), so most values
    cost one scrypt to classify instead of two.
    """
    if run.new_key_first:
        if _decrypted(stored, secret=run.new_secret) is not None:
            return None, True
        plaintext = _decrypted(stored, secret=run.old_secret)
    else:
        plaintext = _decrypted(stored, secret=run.old_secret)
        if plaintext is None and _decrypted(stored, secret=run.new_secret) is not None:
            run.new_key_first = True
            return None, True
    if plaintext is not None:
        run.new_key_first = False
    return plaintext, False


def _decrypted(stored: str, *, secret: str) -> str | None:
    """The plaintext under `secret`, or None if it does not decrypt with it."""
    try:
        return decrypt_with(stored, secret=secret)
    except CryptoError:
        return None


def _apply(run: _Run, target: _Target, rewrites: list[_Rewrite], report: ColumnReport) -> None:
    """Write one batch in one transaction; a row changed since it was read is left alone."""
    if not rewrites:
        return
    with run.session_factory() as session, session.begin():
        conflicts = [rewrite.row_id for rewrite in rewrites if not _write(session, target, rewrite)]
    report.rotated += len(rewrites) - len(conflicts)
    report.conflict_ids.extend(conflicts)
    if conflicts:
        logger.warning(
            "%s: ids %s changed during the rotation; rerun to rotate them", target.name, conflicts
        )


def _write(session: Session, target: _Target, rewrite: _Rewrite) -> bool:
    """The conditional UPDATE of one row: whether the value read was still there."""
    statement = (
        update(target.table)
        .where(target.pk == rewrite.row_id, target.column == rewrite.value_read)
        .values({target.column_name: rewrite.new_value, **target.touch()})
    )
    return session.execute(statement).rowcount == 1
