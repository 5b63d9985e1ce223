"""The requests family's errors: what Overseerr did wrong, each steering the job's retries.

Transient trouble (connection refused, timeouts, 429 and 5xx once the client's own retries
are spent) is a RetryableError; what no retry can fix (a refused key, an answer that is not
what the API promises, a walk that makes no progress) is a PermanentError. Each has a short
`code` recorded with the message.
"""

from __future__ import annotations

from medianest_workers.platform.errors import PermanentError, RetryableError


class OverseerrUnavailableError(RetryableError):
    """Overseerr could not be reached or kept failing (connection, timeout, 429, 5xx)."""

    code = "unavailable"


class AuthFailedError(PermanentError):
    """Overseerr refused the API key (401/403): no retry storm, fix the key."""

    code = "auth_failed"


class NotConfiguredError(PermanentError):
    """Neither a `service_config` row `overseerr` nor OVERSEERR_URL/OVERSEERR_API_KEY."""

    code = "not_configured"


class ResponseTooLargeError(PermanentError):
    """The answer exceeded OVERSEERR_MAX_RESPONSE_BYTES."""

    code = "response_too_large"


class ResponseTimeoutError(RetryableError):
    """The answer's body did not end within OVERSEERR_READ_DEADLINE_SECONDS."""

    code = "timeout"


class SchemaError(PermanentError):
    """The answer is not what the API promises; the message names the field."""

    code = "schema_error"

    def __init__(self, where: str, field: str, message: str) -> None:
        super().__init__(f"{where}: {field}: {message}")
        self.field = field


class UnexpectedStatusError(PermanentError):
    """An HTTP status the endpoint does not answer (404 on a list, 400, ...)."""

    code = "unexpected_status"

    def __init__(self, where: str, status: int) -> None:
        super().__init__(f"{where}: HTTP {status}")
        self.status = status


class NotFoundError(UnexpectedStatusError):
    """404: the request or the media does not exist (any more)."""

    code = "not_found"


class ConflictError(UnexpectedStatusError):
    """409: Overseerr already holds a request for this media."""

    code = "conflict"


class PaginationError(PermanentError):
    """The page walk made no progress or went past what pageInfo announced."""

    code = "pagination_abuse"
