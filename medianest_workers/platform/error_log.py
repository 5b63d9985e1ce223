"""Rows in the backend's error_logs table for jobs that failed or died.

The ledger writes them in the transaction that ends the job (`ledger.finish`,
`ledger.mark_dead`), inside a savepoint: the row commits with the state change or, should the
backend's table refuse it, the state change commits alone and a warning is logged.

error_logs.user_id is NOT NULL and references users: a job without an owner (or whose owner
is gone) is logged under a system user that the platform creates on first need (suspended,
no credentials: it can never log in).
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

from sqlalchemy import Connection, func, literal, select
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.exc import SQLAlchemyError

from medianest_workers.db.base import new_id
from medianest_workers.db.models.medianest import ErrorLog, User

log = logging.getLogger(__name__)

SYSTEM_USER_ID = "00000000-0000-4000-8000-00000000a11e"
SYSTEM_USER_EMAIL = "system@medianest-workers.invalid"
#: error_logs.request_method of the rows written for jobs (the backend writes HTTP methods).
JOB_METHOD = "JOB"

_ENSURE_SYSTEM_USER = (
    insert(User)
    .values(
        id=SYSTEM_USER_ID,
        email=SYSTEM_USER_EMAIL,
        name="medianest-workers",
        role="user",
        status="suspended",
        requires_password_change=False,
    )
    .on_conflict_do_nothing()
)


@dataclass(frozen=True, kw_only=True)
class JobFailure:
    """What error_logs records of one job that ended `failed` or `dead`."""

    job_id: str
    kind: str
    correlation_id: str
    user_id: str | None
    attempts: int
    error_class: str
    error_message: str
    error: BaseException | None = None


def insert_job_errors(connection: Connection, failures: list[JobFailure]) -> None:
    """Write one error_logs row per failure in `connection`'s transaction (a savepoint)."""
    if not failures:
        return
    try:
        with connection.begin_nested():
            connection.execute(_ENSURE_SYSTEM_USER)
            for failure in failures:
                connection.execute(_insert(failure))
    except SQLAlchemyError:
        log.warning(
            "could not write error_logs for job(s) %s",
            ", ".join(failure.job_id for failure in failures),
            exc_info=True,
        )


def _insert(failure: JobFailure) -> Insert:
    owner = select(User.id).where(User.id == failure.user_id).scalar_subquery()
    stack = None
    if failure.error is not None:
        stack = "".join(traceback.format_exception(failure.error))
    return insert(ErrorLog).values(
        id=new_id(),
        correlation_id=failure.correlation_id,
        user_id=func.coalesce(owner, literal(SYSTEM_USER_ID)),
        error_code=failure.error_class,
        error_message=_storable(failure.error_message),
        stack_trace=None if stack is None else _storable(stack),
        request_path=f"job:{failure.kind}",
        request_method=JOB_METHOD,
        status_code=None,
        metadata_={"jobId": failure.job_id, "kind": failure.kind, "attempts": failure.attempts},
        created_at=func.timezone("UTC", func.now()),
    )


def _storable(text: str) -> str:
    """Text PostgreSQL accepts: NUL characters and lone surrogates replaced."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
