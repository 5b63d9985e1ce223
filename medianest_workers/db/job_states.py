"""The states of a job in the ledger (no dependencies: the CLI parser imports it cheaply)."""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # raised a non-retryable error, or its retries ran out
    DEAD = "dead"  # attempts used up without ever finishing (killed, lost: a poison pill)
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD, JobState.CANCELLED}
)
#: States in which a job holds its idempotency key.
KEY_HOLDING_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED)
