"""The downloads family's job kinds (thin @job wrappers over its service functions).

`downloads.playlist`, on the `downloads` queue (the backend's figure: 3 at once):
`{"user_id", "url", "quality", "format"}` starts a new download (its youtube_downloads row
has the job's id as its id), `{"download_id"}` (quality and format optional) runs an
existing row, the backend's or a re-run of ours. After the row's final transaction
commits, `download.finished` is announced (platform/events.py): the health family notifies
it, the Plex step subscribes to it.

`downloads.plex_sync` (`{"download_id"}`, on `media`): the Plex step of a finished download
(downloads/plex.py), enqueued by the `download.finished` listener this module subscribes
(downloads/plex_events.py).

`downloads.pickup`, on beat every minute: the backend's `queued` rows that no job of ours
holds get a `downloads.playlist` job each, exactly once (idempotency key on the row id and
its count of finished runs, so a row queued again after a run gets a new one);
rows left `downloading` by a job that ended `dead` or `failed` are marked `failed`.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from medianest_workers.db.session import get_engine
from medianest_workers.downloads import plex, plex_events, records
from medianest_workers.platform import events
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.enqueue import JobRequest, enqueue_many
from medianest_workers.platform.errors import JobCancelledError, PermanentError
from medianest_workers.platform.jobs import job
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import EmptyPayload, RetryPolicy
from medianest_workers.settings import get_settings

if TYPE_CHECKING:
    from medianest_workers.downloads.service import RunReport

log = logging.getLogger(__name__)

PLAYLIST_KIND = "downloads.playlist"
FINISHED_EVENT = "download.finished"
PICKUP_BATCH = 100

Quality = Literal["best", "2160p", "1440p", "1080p", "720p", "480p", "360p"]
Format = Literal["mp4", "webm", "mkv"]
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
#: What a playlist URL must look like at enqueue: http(s), a host, no user:password@, no
#: space. Hosts (DOWNLOAD_ALLOWED_HOSTS) and addresses depend on the configuration and on
#: DNS: the worker checks them (downloads/safety.py), before and during the download.
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]+([/?#]\S*)?$"
_URL = re.compile(URL_PATTERN)
#: The two forms, as JSON Schema says them (the OpenAPI document, and the check after
#: pydantic's): an existing row, or a new download.
_FORMS: dict[str, Any] = {
    "oneOf": [
        {
            "title": "existing row",
            "required": ["download_id"],
            "properties": {
                "download_id": {"type": "string"},
                "user_id": {"type": "null"},
                "url": {"type": "null"},
            },
        },
        {
            "title": "new download",
            "required": ["user_id", "url"],
            "properties": {
                "download_id": {"type": "null"},
                "user_id": {"type": "string"},
                "url": {"type": "string"},
            },
        },
    ]
}


class PlaylistPayload(BaseModel):
    """Either `user_id` and `url` (a new download) or `download_id` (an existing row)."""

    model_config = {"extra": "forbid", "json_schema_extra": _FORMS}

    download_id: str | None = Field(
        default=None, pattern=_ID.pattern, description="an existing youtube_downloads row"
    )
    user_id: str | None = Field(
        default=None, pattern=_ID.pattern, description="the MediaNest user (a new download)"
    )
    url: str | None = Field(
        default=None,
        max_length=2048,
        description=(
            "the playlist URL (a new download): http(s); its host must be one of"
            " DOWNLOAD_ALLOWED_HOSTS (checked by the worker, with every address it reaches)"
        ),
        json_schema_extra={"pattern": URL_PATTERN},
    )
    quality: Quality = Field(default="1080p", description="the highest resolution wanted")
    format: Format = Field(default="mp4", description="the container of the files")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _URL.search(value):
            if "@" in value.split("//", 1)[-1].split("/", 1)[0]:
                raise ValueError("must not carry a user name or password")
            raise ValueError(
                "must be an http:// or https:// URL (no file:, ytsearch: or bare words)"
            )
        return value

    @model_validator(mode="after")
    def _one_form(self) -> PlaylistPayload:
        if self.download_id is not None:
            if self.user_id is not None or self.url is not None:
                raise ValueError("give either download_id, or user_id and url, not both")
        elif self.user_id is None or self.url is None:
            raise ValueError("give download_id, or both user_id and url")
        return self


def _announce(report: RunReport, ctx: JobContext) -> None:
    """download.finished, after the row's final transaction committed (never raises)."""
    try:
        events.emit(
            events.Event(
                name=FINISHED_EVENT,
                subject=f"download:{report.download_id}",
                summary=(
                    f"download {report.download_id} {report.status}:"
                    f" {report.playlist_title or '?'} ({report.downloaded} new,"
                    f" {report.failed} failed)"
                ),
                dedup_key=f"{FINISHED_EVENT}:{report.download_id}:{report.run}",
                fields={
                    "download_id": report.download_id,
                    "playlist_title": report.playlist_title,
                    "status": report.status,
                    "downloaded": report.downloaded,
                    "failed": report.failed,
                    "user_id": report.user_id,
                },
            )
        )
    except Exception:
        log.exception("download %s: announcing its end failed", report.download_id)


@job(
    PLAYLIST_KIND,
    queue=Queue.DOWNLOADS,
    payload=PlaylistPayload,
    soft_time_limit=3300,
    time_limit=3600,
    retry=RetryPolicy(max_attempts=4, backoff_base_seconds=30, backoff_max_seconds=900),
)
def download_playlist(ctx: JobContext, payload: PlaylistPayload) -> dict[str, Any]:
    """Download a YouTube playlist (new or an existing youtube_downloads row) into its folder."""
    # yt-dlp is heavy: only the process that runs a download loads it (not the API or beat).
    from medianest_workers.downloads import service  # noqa: PLC0415

    limits = service.Limits.from_settings()
    connect = get_engine().connect
    download_id = payload.download_id
    if download_id is None:  # a new download: the validator saw user_id and url
        download_id = service.start_new(
            connect,
            download_id=ctx.job_id,
            user_id=str(payload.user_id),
            url=str(payload.url),
            limits=limits,
        )
    report = service.run(
        connect,
        download_id,
        quality=payload.quality,
        fmt=payload.format,
        control=ctx,
        limits=limits,
    )
    _announce(report, ctx)
    if report.status == "cancelled":
        raise JobCancelledError(report.error or "cancelled")
    if report.status == "failed":
        raise PermanentError(report.error or "the download failed")
    return report.as_json()


@job(
    "downloads.pickup",
    queue=Queue.DOWNLOADS,
    payload=EmptyPayload,
    soft_time_limit=30,
    time_limit=45,
    retry=RetryPolicy(max_attempts=2, backoff_base_seconds=5, backoff_max_seconds=10),
)
def pickup(ctx: JobContext, payload: EmptyPayload) -> dict[str, Any]:
    """Enqueue a downloads.playlist job for each queued youtube_downloads row no job holds."""
    with get_engine().begin() as connection:
        abandoned = records.fail_abandoned(connection)
    with get_engine().connect() as connection:
        rows = records.unowned_queued(connection, limit=PICKUP_BATCH)
    if abandoned:
        log.warning("downloads left by a dead or failed job marked failed: %s", abandoned)
    if not rows:
        return {
            "enqueued": 0,
            "existing": 0,
            **({"abandoned": len(abandoned)} if abandoned else {}),
        }
    done = enqueue_many(
        [
            JobRequest(
                kind=PLAYLIST_KIND,
                payload={"download_id": download_id},
                # Once per row and run: a row the backend queues again after a finished run
                # gets a new job; two pickups before the job ends make one.
                idempotency_key=f"{PLAYLIST_KIND}:{download_id}:{run}",
                user_id=user_id,
            )
            for download_id, user_id, run in rows
        ],
        correlation_id=ctx.correlation_id,
    )
    created = sum(1 for item in done if item.created)
    result = {"enqueued": created, "existing": len(done) - created}
    return {**result, "abandoned": len(abandoned)} if abandoned else result


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
