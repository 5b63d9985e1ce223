"""The requests family's job kinds: thin wrappers over sync.py and push.py.

`requests.sync` ({"full": false}): the pull sync, on beat every 5 minutes and on demand.
`requests.sync_one` ({"overseerr_request_id": N}): one request again (webhooks enqueue it).
`requests.push`: pending local rows without an Overseerr request are submitted.
All on the `media` queue; Overseerr's errors steer the retries (requests/errors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from medianest_workers.db.session import get_engine
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.jobs import job
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import EmptyPayload, RetryPolicy
from medianest_workers.requests import push, sync
from medianest_workers.requests.client import client_from_config
from medianest_workers.settings import get_settings

PROGRESS_INTERVAL_SECONDS = 1.0


class SyncPayload(BaseModel):
    model_config = {"extra": "forbid"}

    full: bool = Field(default=False, description="walk every request, not only the changed ones")


class SyncOnePayload(BaseModel):
    model_config = {"extra": "forbid"}

    overseerr_request_id: int = Field(gt=0, le=2**31 - 1, description="Overseerr's request id")


def _page_progress(ctx: JobContext) -> Callable[[sync.SyncReport], None]:
    """Page hook: progress at most every PROGRESS_INTERVAL_SECONDS, then the cancel check."""

    def on_page(report: sync.SyncReport) -> None:
        ctx.report_progress(report.as_json(), min_interval=PROGRESS_INTERVAL_SECONDS)
        ctx.check_cancelled()

    return on_page


@job(
    "requests.sync",
    queue=Queue.MEDIA,
    payload=SyncPayload,
    soft_time_limit=240,
    time_limit=270,
    retry=RetryPolicy(max_attempts=3, backoff_base_seconds=10, backoff_max_seconds=60),
)
def sync_requests(ctx: JobContext, payload: SyncPayload) -> dict[str, Any]:
    """Pull Overseerr's requests changed since the watermark (all with full) into media_requests."""
    with client_from_config() as client:
        report = sync.sync_requests(
            client,
            get_engine().connect,
            full=payload.full,
            options=sync.SyncOptions.from_settings(),
            on_page=_page_progress(ctx),
        )
    return report.as_json()


@job(
    "requests.sync_one",
    queue=Queue.MEDIA,
    payload=SyncOnePayload,
    soft_time_limit=30,
    time_limit=45,
    retry=RetryPolicy(max_attempts=3, backoff_base_seconds=5, backoff_max_seconds=60),
)
def sync_one(ctx: JobContext, payload: SyncOnePayload) -> dict[str, Any]:
    """Re-fetch one Overseerr request (a webhook's hint) and upsert its media_requests row."""
    with client_from_config() as client:
        return sync.sync_one(client, get_engine().connect, payload.overseerr_request_id)


@job(
    "requests.push",
    queue=Queue.MEDIA,
    payload=EmptyPayload,
    soft_time_limit=120,
    time_limit=150,
    retry=RetryPolicy(max_attempts=3, backoff_base_seconds=10, backoff_max_seconds=60),
)
def push_requests(ctx: JobContext, payload: EmptyPayload) -> dict[str, Any]:
    """Submit pending local media_requests without an overseerr_id to Overseerr, once each."""

    def progress(report: push.PushReport) -> None:
        ctx.report_progress(report.as_json())
        ctx.check_cancelled()

    with client_from_config() as client:
        return push.push_pending(
            client,
            get_engine().connect,
            skip_retry_seconds=get_settings().overseerr_push_skip_retry_seconds,
            on_row=progress,
        ).as_json()
