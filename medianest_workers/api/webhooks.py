"""POST /v1/webhooks/overseerr: Overseerr's webhook as a hint to re-sync one request.

Authenticated by the `Authorization` header value configured in Overseerr's webhook agent
(OVERSEERR_WEBHOOK_SECRET, compared in constant time); refused while the secret is unset.
Accepts Overseerr's default template (`request.request_id`) and the backend's keys
(`request.id`, `media.tmdbId`, `media.mediaType`). It never trusts the payload's status: it
enqueues `requests.sync_one` with an idempotency key per request and time window
(OVERSEERR_WEBHOOK_WINDOW_SECONDS), so a storm makes one job per request, and answers 202.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from medianest_workers.api.errors import ApiError
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.settings import get_settings

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _request_id(body: Any) -> int | None:
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object", field="body")
    request = body.get("request")
    if request is None:
        return None
    if not isinstance(request, dict):
        raise ApiError(422, "invalid_body", "request must be an object", field="request")
    for name in ("request_id", "id"):
        value = request.get(name)
        if value in (None, ""):
            continue
        text = str(value).strip()
        if isinstance(value, bool) or not text.isdigit() or not 0 < int(text) < 2**31:
            raise ApiError(
                422,
                "invalid_body",
                f"request.{name} must be a positive integer",
                field=f"request.{name}",
            )
        return int(text)
    return None


@router.post("/overseerr", status_code=202)
async def overseerr_webhook(
    request: Request, authorization: str | None = Header(default=None)
) -> JSONResponse:
    settings = get_settings()
    secret = settings.overseerr_webhook_secret
    if secret is None or not secret.get_secret_value():
        raise ApiError(503, "webhook_disabled", "OVERSEERR_WEBHOOK_SECRET is not set")
    given = authorization or ""
    if not hmac.compare_digest(_digest(given), _digest(secret.get_secret_value())):
        raise ApiError(401, "unauthorized", "wrong or missing Authorization", field="Authorization")
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(422, "invalid_json", "the body is not JSON", field="body") from None
    request_id = _request_id(body)
    if request_id is None:
        return JSONResponse({"accepted": False, "reason": "no request in this notification"}, 202)
    window = int(time.time()) // settings.overseerr_webhook_window_seconds
    enqueued = enqueue(
        "requests.sync_one",
        {"overseerr_request_id": request_id},
        idempotency_key=f"overseerr-webhook:{request_id}:{window}",
        enqueued_by="webhook",
        trigger="overseerr-webhook",
    )
    return JSONResponse(
        {"accepted": True, "job_id": enqueued.job_id, "created": enqueued.created}, 202
    )
