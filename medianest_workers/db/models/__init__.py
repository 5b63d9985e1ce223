"""Mapped classes: the MediaNest backend's tables and the platform's own."""

from medianest_workers.db.models.backups import Backup
from medianest_workers.db.models.downloads import DownloadArchiveEntry
from medianest_workers.db.models.health import HealthCheck, HealthTransition, Notification
from medianest_workers.db.models.jobs import Job
from medianest_workers.db.models.key_rotation import KeyRotationCheckpoint
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
from medianest_workers.db.models.query_stats import QueryStat
from medianest_workers.db.models.requests import RequestPush, RequestSyncState

__all__ = [
    "Account",
    "Backup",
    "DownloadArchiveEntry",
    "ErrorLog",
    "HealthCheck",
    "HealthTransition",
    "Job",
    "KeyRotationCheckpoint",
    "MediaRequest",
    "Notification",
    "QueryStat",
    "RateLimit",
    "RequestPush",
    "RequestSyncState",
    "ServiceConfig",
    "ServiceStatus",
    "Session",
    "SessionToken",
    "User",
    "VerificationToken",
    "YoutubeDownload",
]
