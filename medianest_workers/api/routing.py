"""Routes that refuse what they do not take: an unknown query parameter is a 422 naming it.

FastAPI ignores query parameters an operation does not declare, so a typo (`?stat=failed`)
silently answers something else (every job). `StrictQueryRoute` refuses them instead, naming
the parameter and the ones the operation takes, so the API is exactly what its OpenAPI
document says.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from medianest_workers.api.errors import ApiError


class StrictQueryRoute(APIRoute):
    """An APIRoute whose requests may carry only the query parameters it declares."""

    @functools.cached_property
    def query_names(self) -> frozenset[str]:
        return frozenset(_query_names(self.dependant))

    def check_query(self, request: Request) -> None:
        known = self.query_names
        for name in request.query_params:
            if name not in known:
                takes = ", ".join(sorted(known)) or "none"
                raise ApiError(
                    422,
                    "invalid_request",
                    f"unknown query parameter {name!r} (this operation takes: {takes})",
                    field=name,
                )

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            self.check_query(request)
            return await handler(request)

        return strict


def _query_names(dependant: Dependant) -> Iterator[str]:
    """The query parameters of an operation and of every dependency it uses."""
    for param in dependant.query_params:
        yield param.alias
    for sub in dependant.dependencies:
        yield from _query_names(sub)
