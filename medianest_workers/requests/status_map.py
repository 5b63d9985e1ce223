"""Overseerr's request and media status numbers -> `media_requests.status` (the backend's enum).

Request status (Overseerr): 1 pending approval, 2 approved, 3 declined, 4 failed; Seerr adds
5 completed. Media status: 1 unknown, 2 pending, 3 processing, 4 partially available,
5 available; 6 blocklisted (Jellyseerr's blacklisted), 7 deleted (Seerr).
(tests/contracts/medianest-interop.md section 2.)

The request's own status decides when it says pending, declined or failed; an approved or
completed request takes its media's availability. Declined is written `denied` (the shared
enum has it; the backend's webhook wrote `failed`, which we read but do not write for it).
Media that was blocklisted reads `denied`; deleted media, gone from the server, `failed`.
Any number not in this table is None: the caller records a skip and writes nothing.
"""

from __future__ import annotations

PENDING = "pending"
APPROVED = "approved"
PROCESSING = "processing"
PARTIALLY_AVAILABLE = "partially-available"
AVAILABLE = "available"
DENIED = "denied"
FAILED = "failed"

#: The backend's shared enum (what may be written).
BACKEND_STATUSES = frozenset(
    {PENDING, APPROVED, PROCESSING, PARTIALLY_AVAILABLE, AVAILABLE, DENIED, FAILED}
)

REQUEST_STATUSES = {
    1: "pending approval",
    2: "approved",
    3: "declined",
    4: "failed",
    5: "completed",
}
MEDIA_STATUSES = {
    1: "unknown",
    2: "pending",
    3: "processing",
    4: "partially available",
    5: "available",
    6: "blocklisted",
    7: "deleted",
}

#: Approved (2) requests, by media status.
_APPROVED_BY_MEDIA = {
    1: APPROVED,
    2: APPROVED,
    3: PROCESSING,
    4: PARTIALLY_AVAILABLE,
    5: AVAILABLE,
    6: DENIED,
    7: FAILED,
}
#: Completed (5, Seerr) requests, by media status: done unless the media says otherwise.
_COMPLETED_BY_MEDIA = {
    1: AVAILABLE,
    2: AVAILABLE,
    3: AVAILABLE,
    4: PARTIALLY_AVAILABLE,
    5: AVAILABLE,
    6: DENIED,
    7: FAILED,
}
_BY_REQUEST = {1: PENDING, 3: DENIED, 4: FAILED}


def backend_status(request_status: int, media_status: int | None) -> str | None:
    """The backend's status for this pair, or None when either number is unknown.

    A missing media status (no media object) counts as 1, unknown.
    """
    media = 1 if media_status is None else media_status
    if media not in MEDIA_STATUSES:
        return None
    if request_status in _BY_REQUEST:
        return _BY_REQUEST[request_status]
    if request_status == 2:
        return _APPROVED_BY_MEDIA[media]
    if request_status == 5:
        return _COMPLETED_BY_MEDIA[media]
    return None
