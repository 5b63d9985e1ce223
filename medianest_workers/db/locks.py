"""Named PostgreSQL advisory locks: every lock key of the platform is defined here."""

from __future__ import annotations

import enum


class AdvisoryLock(enum.IntEnum):
    """pg_advisory_lock keys (63-bit integers spelling their purpose in ASCII)."""

    MIGRATE = 0x6D6E772D6D696772  # "mnw-migr": one deploy migrates at a time
    BACKUP = 0x6D6E772D6261636B  # "mnw-back": one backup of a database at a time
    HEALTH_ROUND = 0x6D6E772D6865616C  # "mnw-heal": one health round records at a time
    #: "mnw-plex", XORed with a 32-bit hash of a collection title: one sync per collection.
    PLEX_COLLECTION = 0x6D6E772D706C6578
    REQUESTS_WRITE = 0x6D6E772D72657177  # "mnw-reqw": one writer of synced media_requests rows
    REQUESTS_PUSH = 0x6D6E772D72657170  # "mnw-reqp": one push to Overseerr at a time
    #: "mnw-down", XORed with a 32-bit hash of the folder: one download per playlist folder.
    DOWNLOAD_FOLDER = 0x6D6E772D646F776E
    #: "mnw-dusr", XORed with a 32-bit hash of the user id: one new download of a user at a
    #: time passes the hourly limit.
    DOWNLOAD_USER = 0x6D6E772D64757372
