"""Building indexes without blocking writers, for migrations (`CREATE INDEX CONCURRENTLY`).

A concurrent build that fails (cancelled, deadlock, a deploy killed mid-way) leaves an INVALID
index behind that `IF NOT EXISTS` would happily skip: such an index is dropped and rebuilt.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

_INDEX_STATE = sa.text(
    """
    SELECT i.indisvalid
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_index i ON i.indexrelid = c.oid
    WHERE n.nspname = current_schema() AND c.relname = :name
    """
)


def build_index_concurrently(name: str, table: str, definition: str) -> None:
    """Create index `name` concurrently unless a valid one exists; rebuild an invalid one.

    `definition` is what follows `ON table`: "USING btree (column) WHERE ...". Must run inside
    `op.get_context().autocommit_block()`.
    """
    bind = op.get_bind()
    valid = bind.execute(_INDEX_STATE, {"name": name}).scalar_one_or_none()
    if valid:
        return
    if valid is False:
        op.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
    op.execute(f'CREATE INDEX CONCURRENTLY "{name}" ON "{table}" {definition}')


def drop_index_concurrently(name: str) -> None:
    """Drop index `name` if it exists, without blocking writers (inside an autocommit block)."""
    op.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
