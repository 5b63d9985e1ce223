"""One error shape for every refusal: `{"error": {"code", "message", "field"}}`.

`field` names what was wrong (`kind`, `payload.sleep`, `jobs.2.idempotency_key`, `limit`,
`X-API-Key`) or is null when the reason is the request as a whole. Validation errors may add
`details`, one `{field, message}` per problem. FastAPI's own validation errors, 404 and 405
are rewritten into this shape; database outages answer 503; nothing a client sends can make
an endpoint answer 500 with a traceback.
"""

from __future__ import annotations

import email.message
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

MAX_FIELD = 200
MAX_MESSAGE = 1000
MAX_DETAILS = 20

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}


#: What FastAPI says when json.loads fails with something else than a JSONDecodeError.
_FASTAPI_PARSE_FAILURE = "There was an error parsing the body"


class ApiError(Exception):
    """Raise from an endpoint to refuse a request with the shared error shape."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.field = field
        self.details = details
        self.headers = headers


def _clean(value: str, limit: int) -> str:
    """A string safe to put in a UTF-8 JSON body (lone surrogates escaped), bounded."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


def error_body(
    code: str,
    message: str,
    *,
    field: str | None = None,
    details: Sequence[Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "message": _clean(message, MAX_MESSAGE),
        "field": None if field is None else _clean(field, MAX_FIELD),
    }
    if details:
        error["details"] = [
            {
                "field": _clean(str(item.get("field") or ""), MAX_FIELD) or None,
                "message": _clean(str(item.get("message", "")), MAX_MESSAGE),
            }
            for item in list(details)[:MAX_DETAILS]
        ]
    return {"error": error}


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    details: Sequence[Mapping[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, field=field, details=details),
        status_code=status_code,
        headers=dict(headers) if headers else None,
    )


def field_path(parts: Sequence[Any]) -> str:
    return ".".join(str(part) for part in parts)


def _message(error: Mapping[str, Any]) -> str:
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True  # no Content-Type: FastAPI reads the body as JSON
    parsed = email.message.Message()
    parsed["content-type"] = content_type
    subtype = parsed.get_content_subtype()
    return parsed.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _validation_field(loc: Sequence[Any]) -> str | None:
    if not loc:
        return None
    source, rest = loc[0], loc[1:]
    if source == "body":
        return field_path(rest) or None
    if source in ("query", "path", "header", "cookie"):
        return str(rest[0]) if rest else str(source)  # the parameter, not `state.0`
    return field_path(loc)


def _validation_response(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    first = errors[0] if errors else {"type": "invalid", "loc": (), "msg": "invalid request"}
    loc = tuple(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "invalid JSON")
        position = f" at character {loc[1]}" if len(loc) > 1 else ""
        return error_response(
            400, "malformed_json", f"the body is not valid JSON: {reason}{position}"
        )
    if loc == ("body",):
        if first.get("type") == "missing":
            return error_response(422, "body_required", "a JSON object body is required")
        if not _is_json(request.headers.get("content-type")):
            return error_response(
                415,
                "unsupported_media_type",
                "send the body as application/json",
                field="Content-Type",
            )
        return error_response(422, "invalid_body", "the body must be a JSON object")
    details = [
        {"field": _validation_field(tuple(error.get("loc", ()))), "message": _message(error)}
        for error in errors
    ]
    field = _validation_field(loc)
    return error_response(
        422,
        "invalid_request",
        f"{field}: {_message(first)}" if field else _message(first),
        field=field,
        details=details,
    )


def install(app: FastAPI) -> None:
    """Register the handlers that give every refusal the shared shape."""

    @app.exception_handler(ApiError)
    def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status_code,
            exc.code,
            exc.message,
            field=exc.field,
            details=exc.details,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_PARSE_FAILURE:
            return error_response(
                400,
                "malformed_json",
                "the body could not be read as JSON (not UTF-8, nested too deeply,"
                " or a number too long)",
            )
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeoutError)
    def _database_down(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__)
        return error_response(
            503,
            "database_unavailable",
            "the job ledger is unavailable; try again shortly",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(DataError)
    def _data_error(_request: Request, exc: DataError) -> JSONResponse:
        log.warning("the database refused a value: %s", type(exc.orig).__name__)
        return error_response(422, "invalid_value", "the database refused a value of the request")

    @app.exception_handler(Exception)
    def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal error; it was logged")
