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
from jsonschema import Draft202012Validator

from medianest_workers.api.errors import ApiError
from medianest_workers.api.routing import StrictQueryRoute
from medianest_workers.api.schemas import ERROR_RESPONSES
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.settings import get_settings

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=StrictQueryRoute)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


#: A request id as the webhook may carry it: a number, or its digits as Overseerr's template
#: writes them (`"{{request_id}}"`); empty or null when the notification is about no request.
MAX_REQUEST_ID = 2**31 - 1
_ID_SCHEMA: dict[str, Any] = {
    # `minimum`/`maximum` bind numbers only, `pattern` strings only (JSON Schema).
    "type": ["integer", "string", "null"],
    "minimum": 1,
    "maximum": MAX_REQUEST_ID,
    "pattern": "^([1-9][0-9]{0,8})?$",
}
BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Overseerr's default webhook template, or the MediaNest backend's keys",
    "properties": {
        "notification_type": {"type": "string"},
        "request": {
            "type": ["object", "null"],
            "properties": {"request_id": _ID_SCHEMA, "id": _ID_SCHEMA},
        },
    },
}


_BODY = Draft202012Validator(BODY_SCHEMA)


def _request_id(body: Any) -> int | None:
    """The request the notification is about (None: none), or 422 naming the field."""
    error = next(iter(sorted(_BODY.iter_errors(body), key=lambda one: list(one.path))), None)
    if error is not None:
        field = ".".join(str(part) for part in error.absolute_path) or "body"
        message = (
            "the body must be a JSON object"
            if field == "body"
            else f"{field}: must be a positive integer (as a number or its digits), or empty"
            if field.startswith("request.")
            else f"{field}: {error.message}"
        )
        raise ApiError(422, "invalid_body", message, field=field)
    request = body.get("request") or {}
    for name in ("request_id", "id"):
        value = request.get(name)
        if value is not None and value != "":
            return int(value)  # the schema admitted digits or an integral number only
    return None


@router.post(
    "/overseerr",
    status_code=202,
    responses=ERROR_RESPONSES,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": BODY_SCHEMA}}}
    },
)
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
