"""Key rotation checkpoints (mnw_key_rotation_checkpoints): where a rotation may resume.

One row per encrypted column (`users.plex_token`, `service_config.api_key`): every non-NULL
value up to `clean_through` (by primary key, written as text) was rotated to, or already was
under, the new key of the rotation that wrote the row. A rotation trusts a checkpoint only if
the value at `clean_through` decrypts with its own new key (maintenance/key_rotation.py).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Text
from sqlalchemy.orm import Mapped, mapped_column

from medianest_workers.db.base import CURRENT_TIMESTAMP, Base, Timestamp3


class KeyRotationCheckpoint(Base):
    __tablename__ = "mnw_key_rotation_checkpoints"

    column_name: Mapped[str] = mapped_column(Text, primary_key=True)
    clean_through: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(
        Timestamp3, nullable=False, server_default=CURRENT_TIMESTAMP
    )
