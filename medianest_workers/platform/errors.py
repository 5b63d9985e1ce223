"""The platform's exceptions: what callers of enqueue() and job functions raise and catch."""

from __future__ import annotations


class PlatformError(Exception):
    """Base of every error raised by the job platform."""


class UnknownJobKindError(PlatformError):
    """No job is registered under this kind."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown job kind {kind!r}")
        self.kind = kind


class PayloadInvalidError(PlatformError):
    """The payload does not match the job kind's schema; `errors` name each field."""

    def __init__(self, kind: str, errors: list[dict[str, str]]) -> None:
        first = errors[0] if errors else {"field": "payload", "message": "invalid"}
        super().__init__(f"invalid payload for {kind}: {first['field']}: {first['message']}")
        self.kind = kind
        self.errors = errors


class IdempotencyConflictError(PlatformError):
    """The idempotency key is held by a job with another kind or payload."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"idempotency key is already used by job {job_id} with another request")
        self.key = key
        self.job_id = job_id


class JobError(Exception):
    """Base of errors a job function raises on purpose."""


class RetryableError(JobError):
    """A transient failure: the job is tried again with backoff, up to its max attempts."""


class PermanentError(JobError):
    """A failure that no retry can fix: the job ends `failed` at once."""


class JobCancelledError(JobError):
    """Raised by `JobContext.check_cancelled()` once cancellation was requested."""
