"""An Overseerr made from the OpenAPI spec alone: schema-valid answers with meaningless values.

`strategy(spec, schema)` turns an OpenAPI 3.0 schema (the subset the spec uses: $ref, type,
properties/required, items, nullable, enum, anyOf/oneOf) into a Hypothesis strategy: optional
properties present or not, numbers of any sign and size (floats too where the spec says
`number`), any text, odd dates, arrays of 0-3 items, recursion cut off at MAX_DEPTH.
`worlds(spec)` draws one answer per endpoint the client uses; `SpecServer` serves a world on
loopback (GET /request pages cycle: a server that never ends its walk by itself).
"""

from __future__ import annotations

import contextlib
import json
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hypothesis import strategies as st

from tests.loopback import LoopbackServer

MAX_DEPTH = 6
#: Odd but parseable (the plausible pages use them so that requests reach the database).
PARSEABLE_DATES = (
    "2020-09-12T10:00:27.000Z",
    "0001-01-01T00:00:00.000Z",
    "9999-12-31T23:59:59.999Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "2026-12-03T12:00:00+14:00",
    "1970-01-01",
)
ODD_DATES = (*PARSEABLE_DATES, "2020-02-30T10:00:00.000Z", "yesterday", "")
ENDPOINTS = {
    "pages": ("/request", "get", "200"),
    "request": ("/request/{requestId}", "get", "200"),
    "created": ("/request", "post", "201"),
    "movie": ("/movie/{movieId}", "get", "200"),
    "tv": ("/tv/{tvId}", "get", "200"),
    "users": ("/user", "get", "200"),
}


def response_schema(spec: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    answer = spec["paths"][path][method]["responses"][status]
    return answer["content"]["application/json"]["schema"]


def _resolve(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _integers() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(-3, 12), st.integers(-(2**53), 2**53))


def _extras() -> dict[str, dict[str, st.SearchStrategy]]:
    """Fields real Overseerr sends beyond the spec, by schema name (the spec's objects allow
    additional properties, so an answer that has them is still valid), with odd values too."""
    media_types = st.one_of(st.sampled_from(["movie", "tv", "music", ""]), st.text(max_size=8))
    return {
        "MediaRequest": {"type": media_types},
        "MediaInfo": {"mediaType": media_types, "status4k": _integers()},
        "User": {"plexId": st.one_of(st.none(), _integers(), st.text(max_size=8))},
    }


def strategy(spec: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy:
    """Values valid for `schema` (OpenAPI 3.0), as meaningless as the schema allows."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        base = strategy(spec, _resolve(spec, schema["$ref"]), depth)
        extras = _extras().get(name)
        if extras is None:
            return base
        added = st.fixed_dictionaries({}, optional=extras)
        return st.tuples(base, added).map(
            lambda pair: {**pair[0], **pair[1]} if isinstance(pair[0], dict) else pair[0]
        )
    base = _base(spec, schema, depth)
    if schema.get("nullable"):
        return st.one_of(st.none(), base)
    return base


def _base(spec: dict[str, Any], schema: dict[str, Any], depth: int) -> st.SearchStrategy:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return st.one_of([strategy(spec, option, depth) for option in options])
    kind = schema.get("type") or ("object" if "properties" in schema else None)
    if kind == "array":
        if depth >= MAX_DEPTH:
            return st.just([])
        return st.lists(strategy(spec, schema.get("items", {}), depth + 1), max_size=3)
    if kind == "object":
        return _object(spec, schema, depth)
    scalars = {
        "integer": _integers(),
        "number": st.one_of(_integers(), st.floats(allow_nan=False, allow_infinity=False)),
        "string": st.one_of(st.sampled_from(ODD_DATES), st.text(max_size=30)),
        "boolean": st.booleans(),
    }
    return scalars.get(kind, st.one_of(st.none(), st.booleans(), _integers(), st.text(max_size=10)))


def _object(spec: dict[str, Any], schema: dict[str, Any], depth: int) -> st.SearchStrategy:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fixed = {
        name: strategy(spec, sub, depth + 1) for name, sub in properties.items() if name in required
    }
    optional = {}
    if depth < MAX_DEPTH:
        optional = {
            name: strategy(spec, sub, depth + 1)
            for name, sub in properties.items()
            if name not in required
        }
    return st.fixed_dictionaries(fixed, optional=optional)


@st.composite
def worlds(draw: st.DrawFn, spec: dict[str, Any]) -> dict[str, Any]:
    """One answer per endpoint (1-3 pages for GET /request), each valid for its schema."""
    world: dict[str, Any] = {}
    titles = {"movie": "title", "tv": "name"}
    for name, (path, method, status) in ENDPOINTS.items():
        answers = strategy(spec, response_schema(spec, path, method, status))
        world[name] = (
            draw(answers)
            if name != "pages"
            else draw(st.lists(_page(spec), min_size=1, max_size=3))
        )
        if name in titles and not draw(st.booleans()):
            # Half of the details are plausible: an id, a title, no mediaInfo (still valid).
            details = {k: v for k, v in world[name].items() if k != "mediaInfo"}
            title = draw(_mostly(st.text(min_size=1), st.text()))
            world[name] = {**details, "id": draw(_integers()), titles[name]: title}
    return world


def _mostly(usual: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """`usual` values, sometimes `odd` ones (Hypothesis starts from the first option)."""
    return st.one_of(usual, odd)


def _plausible(parts: tuple[dict[str, Any], dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """A generated request with small ids and statuses and odd but parseable dates laid over
    it (still schema-valid); its dates are dropped where the overlay has none."""
    item, overlay, media = parts
    item = {k: v for k, v in item.items() if k not in ("createdAt", "updatedAt")}
    old_media = {k: v for k, v in (item.get("media") or {}).items() if k != "updatedAt"}
    return {**item, **overlay, "media": {**old_media, **media}}


@st.composite
def _page(draw: st.DrawFn, spec: dict[str, Any]) -> dict[str, Any]:
    """A GET /request answer; half of them with a pageInfo of small non-negative integers and
    up to 6 results whose ids, statuses and tmdb ids are small integers (still valid: the walk
    gets past the envelope, and requests get as far as the database)."""
    path, method, status = ENDPOINTS["pages"]
    if draw(st.booleans()):
        return draw(strategy(spec, response_schema(spec, path, method, status)))
    item = st.tuples(
        strategy(spec, {"$ref": "#/components/schemas/MediaRequest"}, 1),
        st.fixed_dictionaries(
            {
                "id": _mostly(st.integers(1, 40), st.integers(-1, 0)),
                "status": _mostly(st.integers(1, 5), st.integers(-1, 9)),
                "requestedBy": st.tuples(
                    strategy(spec, {"$ref": "#/components/schemas/User"}, 2),
                    _mostly(st.emails(), st.text(max_size=10)),
                ).map(lambda pair: {**pair[0], "email": pair[1]}),
                "type": st.sampled_from(["movie", "tv", "music"]),
            },
            optional={
                "createdAt": st.sampled_from(PARSEABLE_DATES),
                "updatedAt": st.sampled_from(PARSEABLE_DATES),
            },
        ),
        st.fixed_dictionaries(
            {
                "tmdbId": _mostly(st.integers(1, 30), st.integers(-1, 0)),
                "status": _mostly(st.integers(1, 7), st.integers(-1, 9)),
            },
            optional={
                "updatedAt": st.sampled_from(PARSEABLE_DATES),
            },
        ),
    ).map(_plausible)
    small = _mostly(st.integers(1, 4), st.just(0))
    return {
        "pageInfo": {
            "page": draw(small),
            "pages": draw(small),
            "results": draw(st.integers(0, 15)),
        },
        "results": draw(st.lists(item, max_size=6)),
    }


class SpecServer:
    """Serves `world` (set before each example) on loopback, X-Api-Key not checked."""

    def __init__(self) -> None:
        self.world: dict[str, Any] = {}
        self.calls = 0
        self.loopback = LoopbackServer(self.answer)

    @property
    def url(self) -> str:
        return self.loopback.url

    def stop(self) -> None:
        self.loopback.stop()

    def body_for(self, method: str, path: str, query: dict[str, str]) -> Any:
        world = self.world
        if method == "POST":
            return world["created"]
        if path == "/request":
            take = max(1, int(query.get("take", 20)))
            pages = world["pages"]
            return pages[(int(query.get("skip", 0)) // take) % len(pages)]
        routes = {"/request/": "request", "/movie/": "movie", "/tv/": "tv", "/user": "users"}
        for prefix, name in routes.items():
            if path.startswith(prefix):
                return world[name]
        return None

    def answer(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        self.calls += 1
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        body = self.body_for(method, parts.path.removeprefix("/api/v1"), query)
        status = 201 if method == "POST" else 200
        data = json.dumps(body).encode()
        if body is None:
            status, data = 404, b'{"message": "no route"}'
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        with contextlib.suppress(OSError):
            handler.wfile.write(data)
