"""The downloads family's job kinds (thin @job wrappers over its service functions)."""

from __future__ import annotations

from typing import Any

from medianest_workers.downloads import plex, plex_events
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.jobs import job
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import RetryPolicy
from medianest_workers.settings import get_settings

# -- downloads.plex_sync ({"download_id": ...}): the Plex step of a finished download
# (downloads/plex.py), enqueued by the `download.finished` listener that importing this module
# subscribes (downloads/plex_events.py). On `media`, not `downloads`: it is calls to a peer and
# mostly waiting for Plex to index, and must never hold a download slot.

plex_events.subscribe()

_plex_settings = get_settings()


#: The limits cover one attempt's wait for the scan plus the calls around it.
@job(
    plex_events.PLEX_SYNC_KIND,
    queue=Queue.MEDIA,
    payload=plex_events.PlexSyncPayload,
    soft_time_limit=_plex_settings.plex_scan_wait_seconds + 120,
    time_limit=_plex_settings.plex_scan_wait_seconds + 150,
    retry=RetryPolicy(
        max_attempts=_plex_settings.plex_sync_max_attempts,
        backoff_base_seconds=_plex_settings.plex_sync_backoff_base_seconds,
        backoff_max_seconds=_plex_settings.plex_sync_backoff_max_seconds,
    ),
)
def plex_sync(ctx: JobContext, payload: plex_events.PlexSyncPayload) -> dict[str, Any]:
    """Scan a finished download's folder in Plex and create or extend its collection."""

    def progress(state: dict[str, Any]) -> None:
        ctx.report_progress({**state, "attempt": ctx.attempt})
        ctx.check_cancelled()

    report = plex.sync_download(payload.download_id, sleep=ctx.sleep, on_progress=progress)
    return report.as_json()
