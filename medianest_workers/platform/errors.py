"""The platform's exceptions: what callers of enqueue() and job functions raise and catch.

Two branches under the package's root (`medianest_workers.errors`): `PlatformError`, what the
machinery refuses (unknown kind, bad payload, key conflict, no such job or schedule), and
`JobError`, what a job function raises on purpose to steer its retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medianest_workers.errors import ConfigurationError, MedianestWorkersError

if TYPE_CHECKING:
    from medianest_workers.platform.queries import JobView


class PlatformError(MedianestWorkersError):
    """Base of every error raised by the job platform."""


class UnknownJobKindError(PlatformError):
    """No job is registered under this kind.

    `index` is the position of the offending request in an `enqueue_many` batch (None for a
    single `enqueue`); likewise for PayloadInvalidError and IdempotencyConflictError.
    """

    def __init__(self, kind: str, *, index: int | None = None) -> None:
        super().__init__(f"unknown job kind {kind!r}")
        self.kind = kind
        self.index = index


class PayloadInvalidError(PlatformError):
    """The payload does not match the job kind's schema; `errors` name each field."""

    def __init__(
        self, kind: str, errors: list[dict[str, str]], *, index: int | None = None
    ) -> None:
        first = errors[0] if errors else {"field": "payload", "message": "invalid"}
        super().__init__(f"invalid payload for {kind}: {first['field']}: {first['message']}")
        self.kind = kind
        self.errors = errors
        self.index = index

    def fields(self, payload: str = "payload") -> list[dict[str, str]]:
        """`errors` with each field as a path from `payload` (`payload.sleep`)."""
        return [
            {
                "field": payload
                if error["field"] in ("", "payload")
                else f"{payload}.{error['field']}",
                "message": error["message"],
            }
            for error in self.errors
        ]


class IdempotencyConflictError(PlatformError):
    """The idempotency key is held by a job with another kind or payload.

    Or, when `duplicate_of` is set, by the request at that index of the same batch (`job_id`
    is then "(same batch)": no job holds it yet).
    """

    def __init__(
        self,
        key: str,
        job_id: str,
        *,
        index: int | None = None,
        duplicate_of: int | None = None,
    ) -> None:
        super().__init__(f"idempotency key is already used by job {job_id} with another request")
        self.key = key
        self.job_id = job_id
        self.index = index
        self.duplicate_of = duplicate_of


class IdempotencyContentionError(PlatformError):
    """Idempotency keys kept changing hands while the jobs were inserted: try again."""


class JobNotFoundError(PlatformError):
    """No job has this id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class JobFinishedError(PlatformError):
    """The job already reached a terminal state: there is nothing left to cancel."""

    def __init__(self, job: JobView) -> None:
        super().__init__(
            f"job {job.id} is already {job.state}; only queued or running jobs can be cancelled"
        )
        self.job = job


class InvalidCursorError(PlatformError, ValueError):
    """The pagination cursor was not made by `list_jobs` (or was altered)."""

    def __init__(self) -> None:
        super().__init__("cursor is not one this API returned (pass next_cursor unchanged)")


class UnknownScheduleError(PlatformError):
    """No schedule of beat_schedule.py has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule named {name!r} in beat_schedule.py")
        self.name = name


class TimeBoundsError(PlatformError, ConfigurationError):
    """Job kinds' bounds do not fit the broker settings: the worker refuses to start."""


class JobError(MedianestWorkersError):
    """Base of errors a job function raises on purpose."""


class RetryableError(JobError):
    """A transient failure: the job is tried again with backoff, up to its max attempts."""


class PermanentError(JobError):
    """A failure that no retry can fix: the job ends `failed` at once."""


class JobCancelledError(JobError):
    """Raised by `JobContext.check_cancelled()` once cancellation was requested."""


class ConnectionBudgetError(PlatformError, ConfigurationError):
    """A worker's database pools could exceed what the server allows: it refuses to start."""
