"""What to check for each `service_config` row: its kind, URL, key and options, validated.

A row's kind is `config_data.kind`, else inferred from its `service_name` (`plex`,
`overseerr`/`seerr`/`jellyseerr`, `uptime-kuma`), else the generic `http` check. Options
come from `config_data` (`CheckOptions`); a row that cannot be checked (a key that does not
decrypt, a malformed URL, a scheme other than http(s), an unknown kind, broken options) still
becomes a target, carrying the reason in `problem`: the round records it as that service's
failed check instead of crashing or skipping it.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator

from medianest_workers.db.models.medianest import ServiceConfig
from medianest_workers.platform.services import ServiceConfigError, endpoint_from_row
from medianest_workers.settings import SettingsError


class Kind(enum.StrEnum):
    PLEX = "plex"
    OVERSEERR = "overseerr"
    UPTIME_KUMA = "uptime-kuma"
    HTTP = "http"
    # The platform's own parts (not service_config rows).
    POSTGRES = "postgres"
    REDIS = "redis"
    WORKERS = "workers"


_KIND_ALIASES = {
    "plex": Kind.PLEX,
    "overseerr": Kind.OVERSEERR,
    "seerr": Kind.OVERSEERR,
    "jellyseerr": Kind.OVERSEERR,
    "uptime-kuma": Kind.UPTIME_KUMA,
    "uptime_kuma": Kind.UPTIME_KUMA,
    "uptimekuma": Kind.UPTIME_KUMA,
    "http": Kind.HTTP,
    "generic": Kind.HTTP,
}
_ROW_KINDS = ", ".join(sorted(_KIND_ALIASES))


def infer_kind(service_name: str) -> Kind:
    """The kind a row named `service_name` is checked as when config_data names none."""
    name = service_name.lower()
    if "plex" in name:
        return Kind.PLEX
    if "seerr" in name:  # overseerr, jellyseerr, seerr
        return Kind.OVERSEERR
    if "kuma" in name:
        return Kind.UPTIME_KUMA
    return Kind.HTTP


class JsonCondition(BaseModel):
    """The answer is JSON and the value at `path` (dotted, list indices as numbers) is `equals`."""

    model_config = {"extra": "forbid"}

    path: str = Field(min_length=1, max_length=200)
    equals: str | int | float | bool | None


class MaintenanceWindow(BaseModel):
    """A window whose checks are left out: absolute (`start`/`end`, ISO-8601, UTC when naive)
    or weekly (`days` 0=Monday..6, `from`/`to` as HH:MM UTC; `to` before `from` wraps)."""

    model_config = {"extra": "forbid", "populate_by_name": True}

    start: dt.datetime | None = None
    end: dt.datetime | None = None
    days: list[int] | None = None
    from_time: dt.time | None = Field(default=None, alias="from")
    to_time: dt.time | None = Field(default=None, alias="to")

    @field_validator("days")
    @classmethod
    def _weekdays(cls, days: list[int] | None) -> list[int] | None:
        if days is not None and not all(0 <= day <= 6 for day in days):
            raise ValueError("days are 0 (Monday) to 6 (Sunday)")
        return days

    @model_validator(mode="after")
    def _one_form(self) -> MaintenanceWindow:
        absolute = self.start is not None or self.end is not None
        weekly = self.from_time is not None or self.to_time is not None
        if absolute == weekly:
            raise ValueError("give either start and end, or from and to (and optionally days)")
        if absolute and (self.start is None or self.end is None or self.end <= self.start):
            raise ValueError("needs start and end, end after start")
        if weekly and (self.from_time is None or self.to_time is None):
            raise ValueError("needs from and to")
        return self

    def contains(self, moment: dt.datetime) -> bool:
        """Whether naive-UTC `moment` falls inside the window."""
        if self.start is not None and self.end is not None:
            return _naive(self.start) <= moment < _naive(self.end)
        assert self.from_time is not None and self.to_time is not None  # noqa: S101
        clock = moment.time()
        if self.from_time <= self.to_time:
            inside, day = self.from_time <= clock < self.to_time, moment.weekday()
        elif clock >= self.from_time:  # the evening part of a window that wraps midnight
            inside, day = True, moment.weekday()
        else:  # the morning part belongs to the window that began the day before
            inside, day = clock < self.to_time, (moment.weekday() - 1) % 7
        return inside and (self.days is None or day in self.days)


def _naive(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


class CheckOptions(BaseModel):
    """The `config_data` keys a check reads (others, the backend's own, are ignored)."""

    model_config = {"extra": "ignore"}

    kind: str | None = None
    #: Generic check: where to look, relative to service_url or absolute (default: the URL).
    path: str | None = Field(default=None, max_length=2000)
    method: Literal["GET", "HEAD"] = "GET"
    #: Accepted status codes (default: 200-399).
    expected_status: list[int] | None = None
    #: The body must contain this text.
    keyword: str | None = Field(default=None, min_length=1, max_length=1000)
    json_condition: JsonCondition | None = Field(default=None, alias="json")
    #: Slower than this is `degraded` (default HEALTH_DEGRADED_MS).
    degraded_ms: int | None = Field(default=None, ge=1)
    #: False accepts a self-signed or otherwise unverifiable certificate (days left still read).
    verify_tls: bool = True
    maintenance: list[MaintenanceWindow] = Field(default_factory=list, max_length=100)

    @field_validator("expected_status", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value

    @field_validator("expected_status")
    @classmethod
    def _http_codes(cls, codes: list[int] | None) -> list[int] | None:
        if codes is not None and (not codes or not all(100 <= code <= 599 for code in codes)):
            raise ValueError("status codes are between 100 and 599")
        return codes


@dataclass(frozen=True)
class CheckTarget:
    """One thing a round checks."""

    name: str
    kind: Kind
    url: str = ""
    api_key: SecretStr | None = None
    options: CheckOptions = field(default_factory=CheckOptions)
    #: Why it cannot be checked (recorded as its failed check), with an error class.
    problem: tuple[str, str] | None = None

    def in_maintenance(self, moment: dt.datetime) -> bool:
        return any(window.contains(moment) for window in self.options.maintenance)

    def secrets(self) -> list[str]:
        """Values an error message must never show (the key, the URL's credentials)."""
        found = [self.api_key.get_secret_value()] if self.api_key is not None else []
        parts = urlsplit(self.url) if self.url else None
        if parts is not None:
            found += [value for value in (parts.password, parts.username, parts.query) if value]
        return [value for value in found if len(value) >= 3]


class ConfigProblem(ValueError):
    """A row's URL or options cannot be used; the message names the field."""


def check_url(url: str, *, field_name: str = "service_url") -> str:
    """`url` if it is an absolute http(s) URL with a host, else ConfigProblem naming the field."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigProblem(f"{field_name}: empty")
    if re.search(r"\s", url.strip()):
        raise ConfigProblem(f"{field_name}: contains whitespace")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigProblem(f"{field_name}: malformed URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigProblem(
            f"{field_name}: scheme {parts.scheme or '(none)'!r} refused; only http and https"
        )
    if not parts.hostname:
        raise ConfigProblem(f"{field_name}: no host")
    if port == 0:
        raise ConfigProblem(f"{field_name}: port 0")
    return url.strip()


def _options(config_data: Any) -> CheckOptions:
    if config_data is None:
        return CheckOptions()
    if not isinstance(config_data, dict):
        raise ConfigProblem(f"config_data: must be a JSON object, not {type(config_data).__name__}")
    try:
        return CheckOptions.model_validate(config_data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigProblem(f"config_data.{where}: {message}") from None


def _unknown_kind(raw_kind: object) -> NoReturn:
    raise ConfigProblem(f"config_data.kind: unknown kind {raw_kind!r}; known: {_ROW_KINDS}")


def target_from_row(row: ServiceConfig) -> CheckTarget:
    """The row as a target; a row that cannot be checked carries its `problem`."""
    name = row.service_name
    raw_kind = row.config_data.get("kind") if isinstance(row.config_data, dict) else None
    kind = _KIND_ALIASES.get(str(raw_kind).lower()) if raw_kind else infer_kind(name)
    try:
        if kind is None:
            _unknown_kind(raw_kind)
        options = _options(row.config_data)
        url = check_url(row.service_url)
        if options.path is not None and "://" in options.path:
            check_url(options.path, field_name="config_data.path")
        endpoint = endpoint_from_row(row)
    except ConfigProblem as exc:
        return CheckTarget(
            name=name, kind=kind or Kind.HTTP, url="", problem=("ConfigError", str(exc))
        )
    except (ServiceConfigError, SettingsError) as exc:  # a key that does not decrypt, or no key
        return CheckTarget(name=name, kind=kind, url="", problem=("ServiceConfigError", str(exc)))
    return CheckTarget(name=name, kind=kind, url=url, api_key=endpoint.api_key, options=options)


def platform_targets(prefix: str = "mnw-") -> list[CheckTarget]:
    """The platform's own PostgreSQL, Redis and workers, as targets named `mnw-<part>`."""
    return [
        CheckTarget(name=f"{prefix}{kind.value}", kind=kind)
        for kind in (Kind.POSTGRES, Kind.REDIS, Kind.WORKERS)
    ]
