"""Rows in the backend's error_logs table for jobs that failed or died.

error_logs.user_id is NOT NULL and references users: a job without an owner is logged under
a system user that the platform creates on first need (suspended, no credentials: it can
never log in).
"""

from __future__ import annotations

import json
import logging
import traceback

from sqlalchemy import text

from medianest_workers.db.base import new_id
from medianest_workers.db.session import get_engine
from medianest_workers.platform.ledger import DEAD_ERROR_CLASS, DEAD_MESSAGE

log = logging.getLogger(__name__)

SYSTEM_USER_ID = "00000000-0000-4000-8000-00000000a11e"
SYSTEM_USER_EMAIL = "system@medianest-workers.invalid"

_ENSURE_SYSTEM_USER = text(
    """
    INSERT INTO users (id, email, name, role, status, requires_password_change)
    VALUES (:id, :email, 'medianest-workers', 'user', 'suspended', false)
    ON CONFLICT DO NOTHING
    """
)

_INSERT = text(
    """
    INSERT INTO error_logs (id, correlation_id, user_id, error_code, error_message, stack_trace,
        request_path, request_method, status_code, metadata, created_at)
    SELECT :id, :correlation_id,
        COALESCE((SELECT id FROM users WHERE id = :user_id), :system_user),
        :error_code, :error_message, :stack_trace, :path, 'JOB', NULL,
        CAST(:metadata AS jsonb), timezone('UTC', now())
    """
)


def record_job_error(
    *,
    job_id: str,
    kind: str,
    correlation_id: str,
    user_id: str | None,
    error_class: str,
    error_message: str,
    attempts: int,
    error: BaseException | None = None,
) -> None:
    """Write one error_logs row; never raises (the ledger already holds the error)."""
    stack = "".join(traceback.format_exception(error)) if error is not None else None
    try:
        with get_engine().begin() as connection:
            connection.execute(
                _ENSURE_SYSTEM_USER, {"id": SYSTEM_USER_ID, "email": SYSTEM_USER_EMAIL}
            )
            connection.execute(
                _INSERT,
                {
                    "id": new_id(),
                    "correlation_id": correlation_id,
                    "user_id": user_id,
                    "system_user": SYSTEM_USER_ID,
                    "error_code": error_class,
                    "error_message": error_message,
                    "stack_trace": stack,
                    "path": f"job:{kind}",
                    "metadata": json.dumps({"jobId": job_id, "kind": kind, "attempts": attempts}),
                },
            )
    except Exception:
        log.warning("could not write error_logs for job %s", job_id, exc_info=True)


def record_dead_job(
    *, job_id: str, kind: str, correlation_id: str, user_id: str | None, attempts: int
) -> None:
    """The error_logs row of a job that ended `dead` (its attempts never finished)."""
    record_job_error(
        job_id=job_id,
        kind=kind,
        correlation_id=correlation_id,
        user_id=user_id,
        error_class=DEAD_ERROR_CLASS,
        error_message=DEAD_MESSAGE,
        attempts=attempts,
    )
