"""Overseerr's answers as the client accepts them (overseerr-api.yml / seerr-api.yml shapes).

A page's envelope (`pageInfo`, `results`) is checked strictly: a wrong envelope is one
SchemaError for the page. Each request in it is checked on its own (`parse_request`), so one
meaningless item is a recorded skip naming its field, not the loss of its page. Real
Overseerr sends more than the spec lists (`media.mediaType`, `requestedBy.plexId`,
`media.status4k`, the request's `type`); those are read when present.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medianest_workers.requests.errors import SchemaError


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        try:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
            raise ValueError("date out of range in UTC") from None
    return value


def _no_nul(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL: such a string is refused here, naming its field."""
    if value is not None and "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


class PageInfo(_Model):
    page: int | None = Field(default=None, ge=0)
    pages: int = Field(ge=0)
    results: int = Field(ge=0)


class Page(_Model):
    """A list endpoint's answer; `results` items are validated one by one afterwards."""

    page_info: PageInfo = Field(alias="pageInfo")
    results: list[Any]


class Requester(_Model):
    id: int
    email: str | None = None
    plex_id: int | None = Field(default=None, alias="plexId")

    _text = field_validator("email")(_no_nul)


class Media(_Model):
    id: int | None = None
    tmdb_id: int | None = Field(default=None, alias="tmdbId", gt=0)
    media_type: str | None = Field(default=None, alias="mediaType")
    status: int | None = None
    status4k: int | None = None
    updated_at: dt.datetime | None = Field(default=None, alias="updatedAt")
    requests: list[Any] = Field(default_factory=list)

    _utc = field_validator("updated_at")(_naive_utc)


class OverseerrRequest(_Model):
    id: int = Field(gt=0)
    status: int
    media: Media | None = None
    type: str | None = None
    is4k: bool = False
    created_at: dt.datetime | None = Field(default=None, alias="createdAt")
    updated_at: dt.datetime | None = Field(default=None, alias="updatedAt")
    requested_by: Requester | None = Field(default=None, alias="requestedBy")

    _utc = field_validator("created_at", "updated_at")(_naive_utc)

    @property
    def media_type(self) -> str | None:
        if self.media is not None and self.media.media_type:
            return self.media.media_type
        return self.type

    @property
    def media_status(self) -> int | None:
        if self.media is None:
            return None
        if self.is4k and self.media.status4k is not None:
            return self.media.status4k
        return self.media.status


class MediaDetails(_Model):
    """Movie details (`title`) or TV details (`name`), and their mediaInfo."""

    id: int | None = None
    title: str | None = None
    name: str | None = None
    media_info: Media | None = Field(default=None, alias="mediaInfo")

    _text = field_validator("title", "name")(_no_nul)

    @property
    def display_title(self) -> str | None:
        text = (self.title or self.name or "").strip()
        return text or None


class OverseerrUser(_Model):
    id: int
    email: str | None = None
    plex_id: int | None = Field(default=None, alias="plexId")

    _text = field_validator("email")(_no_nul)


def first_error(exc: ValidationError) -> tuple[str, str]:
    """(field path, message) of a validation error's first problem, by the wire names."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "(body)"
    return field, error["msg"]


def validate(model: type[_Model], data: Any, where: str) -> Any:
    """`data` as `model`, or SchemaError naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field, message = first_error(exc)
        raise SchemaError(where, field, message) from None


def parse_request(item: Any) -> OverseerrRequest | tuple[str, str]:
    """One list item as a request, or (field, message) saying why it cannot be one."""
    try:
        return OverseerrRequest.model_validate(item)
    except ValidationError as exc:
        return first_error(exc)
