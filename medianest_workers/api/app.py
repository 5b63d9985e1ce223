"""The FastAPI application: `create_app()`, served by `uvicorn --factory` (roles.run_api).

Endpoints are plain `def`s (FastAPI runs them in its thread pool): enqueue() and the ledger
reads are synchronous SQLAlchemy. `POST /v1/jobs` is the exception: it awaits the group
committer's thread (platform/group_enqueue.py) instead of occupying one of the pool's.
The OpenAPI document is at /openapi.json, docs at /docs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from medianest_workers import __version__
from medianest_workers.api import errors, health, jobs, openapi, schedules, services, webhooks
from medianest_workers.api.middleware import BodyLimitMiddleware, CorrelationIdMiddleware
from medianest_workers.health.metrics import HealthCollector
from medianest_workers.maintenance.backup_metrics import BackupCollector
from medianest_workers.platform.metrics import LedgerCollector
from medianest_workers.platform.registry import load_job_modules
from medianest_workers.settings import get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """\
Enqueue MediaNest background jobs and follow them.

Every request except /healthz, /metrics and this document needs an `X-API-Key` header.
Every refusal is `{"error": {"code", "message", "field"}}`. `X-Correlation-Id` (or a fresh id)
is recorded on the jobs a request enqueues and echoed on the response. No string may hold a
NUL character (U+0000), which PostgreSQL cannot store: such a request is refused with 422.
"""


def create_app() -> FastAPI:
    """Build the API (job kinds loaded, middlewares and error handlers installed)."""
    settings = get_settings()
    load_job_modules()  # an unknown kind must mean "unknown", not "not imported yet"
    if not settings.api_keys:
        log.warning("API_KEYS is empty: every request that needs a key is refused")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            app.state.health_checks.shutdown(wait=False, cancel_futures=True)
            app.state.redis.close()

    app = FastAPI(
        title="medianest-workers",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # A body without a Content-Type is read as JSON. FastAPI's strict default guards
        # against cross-site requests that skip the CORS preflight, which cannot carry the
        # X-API-Key header this API requires (and /v1 checks the key before reading a body).
        strict_content_type=False,
    )
    app.state.redis = health.make_redis_client(settings.require_redis_url())
    app.state.health_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mnw-health")
    app.state.metrics_registry = CollectorRegistry(auto_describe=False)
    app.state.metrics_registry.register(
        LedgerCollector(redis_client=app.state.redis, key_prefix=settings.redis_key_prefix)
    )
    app.state.metrics_registry.register(BackupCollector())
    app.state.metrics_registry.register(HealthCollector())
    errors.install(app)
    app.include_router(jobs.router)
    app.include_router(schedules.router)
    app.include_router(services.router)
    app.include_router(health.router)
    app.include_router(webhooks.router)
    openapi.install(app)
    # Added last runs first: the correlation id is set before the body limit can refuse.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(CorrelationIdMiddleware)
    return app
