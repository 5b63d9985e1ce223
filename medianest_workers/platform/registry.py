"""Job kinds: what the `@job` decorator declares, looked up by enqueue(), the API and workers."""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from billiard.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError

from medianest_workers.platform.catalog import job_module_names
from medianest_workers.platform.errors import RetryableError
from medianest_workers.platform.queues import Queue

if TYPE_CHECKING:
    from medianest_workers.platform.context import JobContext

#: Errors worth another attempt unless a job says otherwise: transient by nature.
DEFAULT_RETRYABLE: tuple[type[BaseException], ...] = (
    RetryableError,
    OperationalError,
    ConnectionError,
    TimeoutError,
    SoftTimeLimitExceeded,
)

JobFunction = Callable[["JobContext", Any], Mapping[str, Any] | None]


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Up to `max_attempts` executions; exponential backoff with full jitter between them."""

    max_attempts: int = 3
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    retry_on: tuple[type[BaseException], ...] = DEFAULT_RETRYABLE

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < self.backoff_base_seconds <= self.backoff_max_seconds:
            raise ValueError("need 0 < backoff_base_seconds <= backoff_max_seconds")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
        return (rng or random).uniform(ceiling / 2, ceiling)

    def is_retryable(self, error: BaseException) -> bool:
        return isinstance(error, self.retry_on)


class EmptyPayload(BaseModel):
    """The payload of a job that takes none."""

    model_config = {"extra": "forbid"}


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """Everything the platform knows about one job kind."""

    kind: str
    queue: Queue
    func: JobFunction
    payload_model: type[BaseModel] = EmptyPayload
    soft_time_limit: float = 60.0
    time_limit: float = 90.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    description: str = ""


_REGISTRY: dict[str, JobSpec] = {}


def register(spec: JobSpec) -> None:
    existing = _REGISTRY.get(spec.kind)
    if existing is not None and existing.func is not spec.func:
        raise ValueError(f"job kind {spec.kind!r} is registered twice")
    _REGISTRY[spec.kind] = spec


def find_spec(kind: str) -> JobSpec | None:
    """The spec of `kind` among the registered ones (job modules are loaded on first use)."""
    spec = _REGISTRY.get(kind)
    if spec is None:
        load_job_modules()
        spec = _REGISTRY.get(kind)
    return spec


def all_specs() -> list[JobSpec]:
    load_job_modules()
    return sorted(_REGISTRY.values(), key=lambda spec: spec.kind)


def load_job_modules() -> None:
    """Import every module of the job catalog (job_modules.py); idempotent."""
    for module in job_module_names():
        importlib.import_module(module)


def check_time_bounds(visibility_timeout: float, specs: list[JobSpec]) -> list[str]:
    """Every hard limit and retry delay must end within the visibility timeout."""
    problems = []
    for spec in specs:
        longest = max(spec.time_limit, spec.retry.backoff_max_seconds)
        if longest >= visibility_timeout:
            problems.append(
                f"{spec.kind}: time limit or retry delay {longest:.0f} s is not below"
                f" VISIBILITY_TIMEOUT_SECONDS={visibility_timeout:.0f}"
            )
    return problems
