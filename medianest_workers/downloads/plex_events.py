"""The chain from a finished download to its Plex step: `download.finished` -> plex_sync.

The download emits `download.finished` after its row committed (platform/events.py); this
listener, subscribed when the downloads tasks module is imported, enqueues
`downloads.plex_sync` `{"download_id": ...}` for a download that completed, or that ended
early (`failed`) after downloading some files (`downloaded` > 0). The idempotency key
derives from the event's dedup_key (prefixed: other listeners key their jobs on the same
dedup_key), so an event emitted twice makes one job. Quick by contract: one enqueue, no Plex call.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, Field

from medianest_workers.platform import events
from medianest_workers.platform.enqueue import Enqueued, enqueue

log = logging.getLogger(__name__)

EVENT = "download.finished"
PLEX_SYNC_KIND = "downloads.plex_sync"
ENQUEUED_BY = "events"
#: Statuses of a download that may have ended with only some entries: with downloaded > 0
#: they sync too. The downloads job ends `completed` (some entries may have failed) or
#: `failed` (a fatal stop, possibly after some entries); `cancelled` never syncs.
PARTIAL_STATUSES = frozenset({"failed", "partial", "partially_completed"})


class PlexSyncPayload(BaseModel):
    """The payload of `downloads.plex_sync`: the row's id only (never a token or a path)."""

    model_config = {"extra": "forbid"}

    download_id: str = Field(
        pattern=r"^[A-Za-z0-9_-]{1,128}$",
        description="youtube_downloads.id (text, a UUID) of a finished download",
    )


def idempotency_key(event: events.Event) -> str:
    return f"{PLEX_SYNC_KIND}:{event.dedup_key}"


def wants_sync(event: events.Event) -> bool:
    """Completed, or partially completed: ended early (`failed`) with files downloaded."""
    status = str(event.fields.get("status") or "")
    downloaded = event.fields.get("downloaded")
    if status == "completed":
        return True
    return status in PARTIAL_STATUSES and isinstance(downloaded, int) and downloaded > 0


def on_download_finished(event: events.Event) -> Enqueued | None:
    """Listener: enqueue the Plex step of the download the event is about (or nothing)."""
    download_id = event.fields.get("download_id")
    if download_id is None or not wants_sync(event):
        return None
    user_id = event.fields.get("user_id")
    job = enqueue(
        PLEX_SYNC_KIND,
        {"download_id": str(download_id)},
        idempotency_key=idempotency_key(event),
        user_id=None if user_id is None else str(user_id),
        enqueued_by=ENQUEUED_BY,
    )
    log.info("download %s finished: Plex step is job %s", download_id, job.job_id)
    return job


def subscribe() -> None:
    """Listen to `download.finished` (idempotent; the downloads tasks module calls it)."""
    events.subscribe(EVENT, on_download_finished)
