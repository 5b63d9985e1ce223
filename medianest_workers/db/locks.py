"""Named PostgreSQL advisory locks: every lock key of the platform is defined here."""

from __future__ import annotations

import enum


class AdvisoryLock(enum.IntEnum):
    """pg_advisory_lock keys (63-bit integers spelling their purpose in ASCII)."""

    MIGRATE = 0x6D6E772D6D696772  # "mnw-migr": one deploy migrates at a time
    BACKUP = 0x6D6E772D6261636B  # "mnw-back": one backup of a database at a time
    HEALTH_ROUND = 0x6D6E772D6865616C  # "mnw-heal": one health round records at a time
