"""The four queues, by the kind of work they carry (docs/architecture.md).

Generic on purpose: a family puts each of its job kinds on the queue whose worker settings
fit it; the machinery knows no family.
"""

from __future__ import annotations

import enum


class Queue(enum.StrEnum):
    MEDIA = "media"  # short calls to peers: short time limits
    DOWNLOADS = "downloads"  # long transfers: low concurrency, long limits
    HEALTH = "health"  # probes: short limits, never starved by long work
    MAINTENANCE = "maintenance"  # housekeeping: cleanup, retention, backups
