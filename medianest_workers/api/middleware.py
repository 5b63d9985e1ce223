"""Two small ASGI middlewares: correlation ids and the request body limit.

- `CorrelationIdMiddleware` takes `X-Correlation-Id` from the request (sanitized; a fresh id
  when absent or unsafe), makes it current for the request's log lines, stores it for the
  endpoints (`correlation_id_of`) and echoes it on every response, refusals included.
- `BodyLimitMiddleware` answers 413 before reading a body whose Content-Length is over the
  limit, and caps the bytes actually read (chunked bodies have no Content-Length). A body
  within the limit is buffered and replayed to the app.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medianest_workers import correlation
from medianest_workers.api.errors import error_body

CORRELATION_HEADER = "X-Correlation-Id"
_STATE_KEY = "correlation_id"


def correlation_id_of(request: Request) -> str:
    """The request's correlation id (set by CorrelationIdMiddleware)."""
    value = request.scope.get("state", {}).get(_STATE_KEY)
    return value if isinstance(value, str) else correlation.new_correlation_id()


class CorrelationIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, CORRELATION_HEADER.lower().encode())
        # latin-1 never fails, and how non-ASCII bytes decode does not matter: a correlation id
        # is ASCII only, anything else is replaced by a fresh id.
        cid = correlation.sanitize(incoming.decode("latin-1") if incoming else None)
        scope.setdefault("state", {})[_STATE_KEY] = cid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != CORRELATION_HEADER.lower().encode()
                ]
                headers.append((CORRELATION_HEADER.encode(), cid.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        with correlation.bound(cid):
            await self.app(scope, receive, send_with_id)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _refuse(send, 400, "bad_request", "Content-Length is not a number")
                return
            if int(declared) > self.max_bytes:
                await self._too_large(send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nobody to answer
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replay: list[Message] = [
            {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        ]

        async def buffered_receive() -> Message:
            if replay:
                return replay.pop()
            return await receive()  # after the body: wait for the disconnect

        await self.app(scope, buffered_receive, send)

    async def _too_large(self, send: Send) -> None:
        await _refuse(
            send,
            413,
            "body_too_large",
            f"the request body exceeds the limit of {self.max_bytes} bytes",
        )


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value
    return None


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
