"""Mapped classes: the MediaNest backend's tables and the platform's own."""

from medianest_workers.db.models.backups import Backup
from medianest_workers.db.models.jobs import Job
from medianest_workers.db.models.medianest import (
    Account,
    ErrorLog,
    MediaRequest,
    RateLimit,
    ServiceConfig,
    ServiceStatus,
    Session,
    SessionToken,
    User,
    VerificationToken,
    YoutubeDownload,
)

__all__ = [
    "Account",
    "Backup",
    "ErrorLog",
    "Job",
    "MediaRequest",
    "RateLimit",
    "ServiceConfig",
    "ServiceStatus",
    "Session",
    "SessionToken",
    "User",
    "VerificationToken",
    "YoutubeDownload",
]
