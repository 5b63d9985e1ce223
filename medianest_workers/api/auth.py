"""API keys: the `X-API-Key` header, checked against API_KEYS in constant time.

Each configured key is compared (as SHA-256 digests, so lengths do not leak either) with
`hmac.compare_digest`, and every key is compared whatever the outcome, so the time taken
says nothing about which key nearly matched. No key configured means every request is
refused. /healthz, /metrics and the OpenAPI document need no key.

The /v1 routers use `KeyFirstRoute`: the key is checked before FastAPI reads the body, so a
client without a valid key learns nothing about how its body would have been taken (a
malformed body is not a 400 before the 401). `require_api_key`, the routers' dependency,
checks it again and is what the OpenAPI document shows as the security scheme.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable

from fastapi import Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

from medianest_workers.api.errors import ApiError
from medianest_workers.api.routing import StrictQueryRoute
from medianest_workers.settings import get_settings

HEADER = "X-API-Key"

api_key_header = APIKeyHeader(
    name=HEADER, auto_error=False, description="One of the keys in API_KEYS"
)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def key_matches(candidate: str, keys: Iterable[SecretStr]) -> bool:
    """True if `candidate` equals one of `keys`; every key is compared."""
    given = _digest(candidate)
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, _digest(key.get_secret_value()))
    return matched


def check_api_key(key: str | None) -> None:
    """Refuse with 401 unless `key` is one of API_KEYS."""
    if not key:
        raise ApiError(
            401,
            "unauthorized",
            f"the {HEADER} header is required",
            field=HEADER,
            headers={"WWW-Authenticate": HEADER},
        )
    if not key_matches(key, get_settings().api_keys):
        raise ApiError(
            401,
            "unauthorized",
            f"the {HEADER} header does not hold a valid key",
            field=HEADER,
            headers={"WWW-Authenticate": HEADER},
        )


async def require_api_key(key: str | None = Security(api_key_header)) -> None:
    """FastAPI dependency: refuse the request with 401 unless it carries a valid key.

    `async` although it never awaits: FastAPI runs a plain `def` dependency in its thread
    pool, a thread hop per request for a few microseconds of hashing.
    """
    check_api_key(key)


class KeyFirstRoute(StrictQueryRoute):
    """A route that checks the API key before its query and body are read and parsed."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = APIRoute.get_route_handler(self)

        async def key_first(request: Request) -> Response:
            check_api_key(request.headers.get(HEADER))
            self.check_query(request)
            return await handler(request)

        return key_first
