"""One error shape for every refusal: `{"error": {"code", "message", "field"}}`.

`field` names what was wrong (`kind`, `payload.sleep`, `jobs.2.idempotency_key`, `limit`,
`X-API-Key`) or is null when the reason is the request as a whole. Validation errors may add
`details`, one `{field, message}` per problem. FastAPI's own validation errors, 404 and 405
are rewritten into this shape; database outages answer 503; nothing a client sends can make
an endpoint answer 500 with a traceback.

The platform's refusals (`PlatformError`s: unknown kind, invalid payload, key conflict, no
such job or schedule ...) are mapped to responses here and only here (`PLATFORM_ERRORS`);
endpoints let them propagate. An error's `index` (its job's position in a batch) puts the
field under `jobs.{index}.`.
"""

from __future__ import annotations

import email.message
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, compile_path

from medianest_workers.platform.errors import (
    IdempotencyConflictError,
    IdempotencyContentionError,
    InvalidCursorError,
    JobFinishedError,
    JobNotFoundError,
    PayloadInvalidError,
    PlatformError,
    UnknownJobKindError,
    UnknownScheduleError,
)

log = logging.getLogger(__name__)

#: The header a single enqueue takes its idempotency key from (a batch: each job's field).
IDEMPOTENCY_HEADER = "Idempotency-Key"

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


# --- the platform's refusals --------------------------------------------------------------


def _at(index: int | None, field: str) -> str:
    """`field` of a single request, or of job `index` of a batch (`jobs.2.kind`)."""
    return field if index is None else f"jobs.{index}.{field}"


def _unknown_kind(exc: UnknownJobKindError) -> JSONResponse:
    return error_response(
        422,
        "unknown_kind",
        f"{exc}; GET /v1/job-kinds lists the kinds",
        field=_at(exc.index, "kind"),
    )


def _invalid_payload(exc: PayloadInvalidError) -> JSONResponse:
    payload = _at(exc.index, "payload")
    details = exc.fields(payload)
    first = details[0] if details else {"field": payload, "message": "invalid"}
    return error_response(
        422,
        "invalid_payload",
        f"{first['field']}: {first['message']}",
        field=first["field"],
        details=details,
    )


def _idempotency_conflict(exc: IdempotencyConflictError) -> JSONResponse:
    field = IDEMPOTENCY_HEADER if exc.index is None else _at(exc.index, "idempotency_key")
    if exc.duplicate_of is not None:
        return error_response(
            422,
            "duplicate_idempotency_key",
            f"the same idempotency_key as jobs.{exc.duplicate_of}",
            field=field,
        )
    return error_response(
        409,
        "idempotency_conflict",
        f"this idempotency key already belongs to job {exc.job_id}, enqueued with another"
        " kind or payload",
        field=field,
    )


def _idempotency_contention(_exc: IdempotencyContentionError) -> JSONResponse:
    return error_response(
        503,
        "idempotency_contention",
        "the idempotency keys kept changing hands while the jobs were stored; try again",
        headers={"Retry-After": "1"},
    )


def _job_not_found(exc: JobNotFoundError) -> JSONResponse:
    return error_response(404, "job_not_found", f"no job with id {exc.job_id!r}")


def _job_finished(exc: JobFinishedError) -> JSONResponse:
    return error_response(409, "job_finished", str(exc))


def _invalid_cursor(exc: InvalidCursorError) -> JSONResponse:
    return error_response(422, "invalid_cursor", str(exc), field="cursor")


def _unknown_schedule(exc: UnknownScheduleError) -> JSONResponse:
    return error_response(404, "schedule_not_found", f"no schedule named {exc.name!r}")


#: Each PlatformError a request can meet, and its response. Any other is a 500 (logged).
PLATFORM_ERRORS: dict[type[PlatformError], Callable[[Any], JSONResponse]] = {
    UnknownJobKindError: _unknown_kind,
    PayloadInvalidError: _invalid_payload,
    IdempotencyConflictError: _idempotency_conflict,
    IdempotencyContentionError: _idempotency_contention,
    JobNotFoundError: _job_not_found,
    JobFinishedError: _job_finished,
    InvalidCursorError: _invalid_cursor,
    UnknownScheduleError: _unknown_schedule,
}


def _platform_handler(
    respond: Callable[[Any], JSONResponse],
) -> Callable[[Request, Exception], JSONResponse]:
    def handle(_request: Request, exc: Exception) -> JSONResponse:
        return respond(exc)

    return handle


def allowed_methods(request: Request) -> list[str]:
    """The methods of the resource at this request's path, as the OpenAPI document lists them.

    Starlette answers 405 from the first route whose path matches, so its `Allow` names that
    route's methods only (POST for `/v1/jobs`, whose GET is another route). A literal path of
    the document wins over a template that also matches it (`/v1/jobs/batch` is POST only,
    not the GET of `/v1/jobs/{job_id}`). Paths the document leaves out (its own pages) fall
    back to every method some route takes.
    """
    documented: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
    path = request.url.path
    templates = [path] if path in documented else []
    if not templates:
        templates = [
            template for template in documented if compile_path(template)[0].fullmatch(path)
        ]
    if templates:
        methods = {method.upper() for template in templates for method in documented[template]}
        return [method for method in _METHODS if method in methods]
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


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

    for error_class, respond in PLATFORM_ERRORS.items():
        app.add_exception_handler(error_class, _platform_handler(respond))

    @app.exception_handler(RequestValidationError)
    def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_PARSE_FAILURE:
            return error_response(
                400,
                "malformed_json",
                "the body could not be read as JSON (not UTF-8, nested too deeply,"
                " or a number too long)",
            )
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return error_response(exc.status_code, code, message, headers=headers)

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
