"""The health family's job kinds: a round of checks every minute, and notifications.

Importing this module subscribes the notifications to the announcements they send
(`service.transition`, `download.finished`, `job.dead`): every process that loads the job
catalog listens, whoever emits.
"""

from __future__ import annotations

from typing import Any

from medianest_workers.db.session import get_engine
from medianest_workers.health import notify, service
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.jobs import job
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import EmptyPayload, RetryPolicy
from medianest_workers.settings import get_settings

notify.subscribe()


#: HEALTH_TIMEOUT_SECONDS is at most 40 s: a round (one timeout, then its writes) fits in the
#: soft limit, and both end before the next minute's round.
@job(
    "health.check_all",
    queue=Queue.HEALTH,
    payload=EmptyPayload,
    soft_time_limit=50,
    time_limit=58,
    retry=RetryPolicy(max_attempts=1),  # the next minute's round is the retry
)
def check_all(ctx: JobContext, payload: EmptyPayload) -> dict[str, Any]:
    """Check every enabled service (and the platform's own parts) at once and record it."""
    return service.check_all().as_json()


@job(
    notify.NOTIFY_KIND,
    queue=Queue.HEALTH,
    payload=notify.NotifyPayload,
    soft_time_limit=60,
    time_limit=75,
    retry=RetryPolicy(max_attempts=6, backoff_base_seconds=5.0, backoff_max_seconds=300.0),
)
def send_notification(ctx: JobContext, payload: notify.NotifyPayload) -> dict[str, Any]:
    """Send one notification to every NOTIFY_URLS entry that has not received it yet."""
    urls = get_settings().notify_urls
    if not urls:
        return {"sent": 0, "skipped": "NOTIFY_URLS is empty"}
    return notify.deliver(get_engine(), payload, urls).as_json()
