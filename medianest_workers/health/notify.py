"""Notifications through Apprise (NOTIFY_URLS): transitions, finished downloads, dead jobs.

Three announcements (platform/events.py) become a `health.notify` job on the `health`
queue: `service.transition` (this family's rounds), `download.finished` (the downloads
family) and `job.dead` (the platform's ledger). The listener only enqueues, with the event's
dedup key as the idempotency key, so a round never waits for a notification and the same
occurrence announced twice is one job. The death of a `health.notify` job itself is not
announced again (no loop).

The job sends through Apprise to every URL of NOTIFY_URLS, and records in
`mnw_notifications` (keyed by the dedup key) which URLs accepted it, by digest, never the URL
(which holds a token): a retry (some URL failed) or a repeated job sends only to the URLs
that have not received it. Messages carry names, states and redacted errors, never a key,
token or URL.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import Engine, text

from medianest_workers.platform import events
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.platform.errors import PermanentError, RetryableError
from medianest_workers.settings import get_settings

log = logging.getLogger(__name__)

NOTIFY_KIND = "health.notify"
TITLE_PREFIX = "[MediaNest]"
MAX_TITLE = 250
MAX_BODY = 4000
ENQUEUED_BY = "events"

NotifyType = Literal["info", "success", "warning", "failure"]


class NotifyPayload(BaseModel):
    """One message (texts only: no secret travels in a payload)."""

    model_config = {"extra": "forbid"}

    dedup_key: str = Field(min_length=1, max_length=300)
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    body: str = Field(min_length=1, max_length=MAX_BODY)
    notify_type: NotifyType = "info"


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _message(dedup_key: str, title: str, body: str, notify_type: NotifyType) -> NotifyPayload:
    return NotifyPayload(
        dedup_key=dedup_key,
        title=_cut(f"{TITLE_PREFIX} {title}", MAX_TITLE),
        body=_cut(body, MAX_BODY),
        notify_type=notify_type,
    )


def message_for(event: events.Event) -> NotifyPayload | None:
    """The message an event deserves (None: none, e.g. a notify job's own death)."""
    fields = event.fields
    if event.name == "service.transition":
        service, before, after = (
            fields.get("service"),
            fields.get("from_status"),
            fields.get("to_status"),
        )
        error = fields.get("error")
        body = f"{service} went from {before} to {after}."
        if after == "down":
            failures = fields.get("consecutive_failures")
            body = f"{service} is down after {failures} failed checks in a row (was {before})."
        if error and after != "up":
            body += f" Last error: {error}"
        kind: NotifyType = {"down": "failure", "degraded": "warning"}.get(str(after), "success")  # type: ignore[assignment]
        return _message(event.dedup_key, f"{service} is {str(after).upper()}", body, kind)
    if event.name == "download.finished":
        status = str(fields.get("status"))
        title = fields.get("playlist_title") or f"download {fields.get('download_id')}"
        downloaded, failed = fields.get("downloaded"), fields.get("failed")
        good = status == "completed" and not failed
        return _message(
            event.dedup_key,
            f"Download {status}: {title}",
            f"{title}: {downloaded} downloaded, {failed} failed ({status}).",
            "success" if good else ("failure" if status == "failed" else "warning"),
        )
    if event.name == "job.dead":
        if fields.get("kind") == NOTIFY_KIND:
            log.error("a notification job is dead (%s); not notified again", event.subject)
            return None
        return _message(
            event.dedup_key,
            f"Job dead: {fields.get('kind')}",
            f"Job {fields.get('job_id')} ({fields.get('kind')}) used up its"
            f" {fields.get('attempts')} attempts and is dead.",
            "failure",
        )
    return _message(
        event.dedup_key, event.summary or event.name, event.summary or event.name, "info"
    )


def on_event(event: events.Event) -> None:
    """Listener: enqueue the event's notification (nothing when NOTIFY_URLS is empty)."""
    if not get_settings().notify_urls:
        return
    payload = message_for(event)
    if payload is None:
        return
    enqueue(
        NOTIFY_KIND,
        payload.model_dump(),
        idempotency_key=event.dedup_key,
        enqueued_by=ENQUEUED_BY,
    )


#: The announcements that are notified.
NOTIFIED_EVENTS = ("service.transition", "download.finished", "job.dead")


def subscribe() -> None:
    """Listen to NOTIFIED_EVENTS (idempotent; the tasks module calls it at import)."""
    for name in NOTIFIED_EVENTS:
        events.subscribe(name, on_event)


# --- sending ---------------------------------------------------------------------------------


def url_digest(url: str) -> str:
    """How mnw_notifications names a URL: a sha256 prefix (the URL holds a token)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "?"


@dataclass
class Delivery:
    sent: int = 0
    already: int = 0
    failed: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "already": self.already,
            "failed": self.failed,
            "invalid": self.invalid,
        }


_CLAIM = text(
    """
    INSERT INTO mnw_notifications (dedup_key, title) VALUES (:key, :title)
    ON CONFLICT (dedup_key) DO UPDATE SET attempts = mnw_notifications.attempts + 1
    RETURNING delivered
    """
)
_DELIVERED = text(
    """
    UPDATE mnw_notifications SET delivered = delivered || to_jsonb(CAST(:digest AS text))
    WHERE dedup_key = :key AND NOT delivered ? :digest
    """
)
_FINISH = text(
    """
    UPDATE mnw_notifications SET last_error = :error,
        sent_at = CASE WHEN :complete THEN timezone('UTC', now()) ELSE sent_at END
    WHERE dedup_key = :key
    """
)


def send_one(url: str, payload: NotifyPayload) -> bool | None:
    """Send through Apprise: True sent, False refused or failed, None not a usable URL."""
    import apprise  # noqa: PLC0415 - heavy; only the notify job needs it

    sender = apprise.Apprise()
    if not sender.add(url):
        return None
    return bool(
        sender.notify(title=payload.title, body=payload.body, notify_type=payload.notify_type)
    )


def deliver(engine: Engine, payload: NotifyPayload, urls: Sequence[SecretStr]) -> Delivery:
    """Send `payload` to every URL not yet reached; RetryableError if some failed."""
    report = Delivery()
    with engine.begin() as connection:
        delivered = set(
            connection.execute(
                _CLAIM, {"key": payload.dedup_key, "title": payload.title}
            ).scalar_one()
        )
    for position, secret in enumerate(urls, start=1):
        url = secret.get_secret_value()
        digest = url_digest(url)
        if digest in delivered:
            report.already += 1
            continue
        label = f"NOTIFY_URLS entry {position} ({_scheme(url)}://)"
        try:
            outcome = send_one(url, payload)
        except Exception as exc:  # noqa: BLE001 - a plugin's failure is that URL's failure
            log.warning("notification to %s failed (%s)", label, type(exc).__name__)
            outcome = False
        if outcome is None:
            report.invalid.append(label)
        elif outcome:
            report.sent += 1
            delivered.add(digest)
            with engine.begin() as connection:
                connection.execute(_DELIVERED, {"key": payload.dedup_key, "digest": digest})
        else:
            report.failed.append(label)
    problems = report.failed + [f"{label} is not a usable Apprise URL" for label in report.invalid]
    with engine.begin() as connection:
        connection.execute(
            _FINISH,
            {
                "key": payload.dedup_key,
                "error": "; ".join(problems) or None,
                "complete": not problems,
            },
        )
    if report.failed:
        raise RetryableError(
            f"{len(report.failed)} of {len(urls)} notification URLs failed: "
            + ", ".join(report.failed)
        )
    if report.invalid:
        raise PermanentError("; ".join(problems))
    return report
