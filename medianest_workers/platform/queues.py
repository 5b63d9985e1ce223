"""The four queues and what runs on each (docs/architecture.md)."""

from __future__ import annotations

import enum


class Queue(enum.StrEnum):
    MEDIA = "media"  # Overseerr sync: short time limits
    DOWNLOADS = "downloads"  # yt-dlp and Plex: low concurrency, long limits
    HEALTH = "health"  # service checks: never starved by downloads
    MAINTENANCE = "maintenance"  # cleanup, retention, backups, rescuer: one at a time
