"""Announcements one part of the platform makes and another reacts to, without importing it.

Families never import each other (docs/architecture.md). When something worth telling happens
(a download ended, a job went `dead`, a service changed state), the code that knows emits an
`Event` *after its transaction committed*; whoever cares subscribed at import time (the health
family's notifications do). Listeners run in the emitting process, synchronously, so they must
be quick: enqueue a job, never do the work. A listener that raises is logged and skipped; an
emitter is never disturbed by what its listeners do. An event carries no secret.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

FieldValue = str | int | float | bool | None


@dataclass(frozen=True)
class Event:
    """Something that happened. `name` is dotted (`download.finished`, `job.dead`).

    `subject` says what it happened to (`download:42`, `job:<uuid>`, `service:plex`);
    `dedup_key` is the same for every emission of the same occurrence (a retried emitter
    emits it again; a listener that enqueues uses it as the idempotency key).
    """

    name: str
    subject: str
    summary: str
    dedup_key: str
    fields: Mapping[str, FieldValue] = field(default_factory=dict)


Listener = Callable[[Event], None]

_lock = threading.Lock()
_listeners: list[tuple[str, Listener]] = []


def subscribe(pattern: str, listener: Listener) -> None:
    """Call `listener` for every event whose name matches `pattern` (fnmatch: `job.*`, `*`).

    Subscribing the same listener to the same pattern twice has no further effect.
    """
    with _lock:
        if (pattern, listener) not in _listeners:
            _listeners.append((pattern, listener))


def unsubscribe(pattern: str, listener: Listener) -> None:
    with _lock:
        if (pattern, listener) in _listeners:
            _listeners.remove((pattern, listener))


def emit(event: Event) -> int:
    """Hand `event` to every matching listener; returns how many took it without raising."""
    with _lock:
        targets = [lst for pattern, lst in _listeners if fnmatch.fnmatchcase(event.name, pattern)]
    delivered = 0
    for listener in targets:
        try:
            listener(event)
        except Exception:
            log.exception("event listener failed", extra={"event": event.name})
        else:
            delivered += 1
    return delivered
