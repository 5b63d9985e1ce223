"""Declarative base, the naming convention and the column types shared by every model.

The naming convention reproduces PostgreSQL's (and Prisma's) own names, so that a constraint
or index created from a model has the name the MediaNest backend's database already uses.
"""

from __future__ import annotations

import uuid

from sqlalchemy import MetaData, text
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.orm import DeclarativeBase

__all__ = ["CURRENT_TIMESTAMP", "Base", "Timestamp3", "metadata", "new_id"]

NAMING_CONVENTION = {
    "pk": "%(table_name)s_pkey",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
    "ck": "%(table_name)s_%(constraint_name)s_check",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: `TIMESTAMP(3) WITHOUT TIME ZONE`, holding naive UTC
#: (tests/contracts/medianest-interop.md section 1).
Timestamp3 = TIMESTAMP(precision=3, timezone=False)

#: The server default Prisma gives to `@default(now())` columns.
CURRENT_TIMESTAMP = text("CURRENT_TIMESTAMP")


class Base(DeclarativeBase):
    """Base of every mapped class; relationships must be loaded explicitly."""

    metadata = metadata


def new_id() -> str:
    """A client-side UUID v4 string: MediaNest text primary keys have no database default."""
    return str(uuid.uuid4())
