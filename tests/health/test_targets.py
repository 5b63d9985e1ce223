"""service_config rows as targets: kinds, options, and every row that cannot be checked carries a
clear reason instead of crashing the round."""

from __future__ import annotations

import datetime as dt

import pytest

from medianest_workers.db.models import ServiceConfig
from medianest_workers.health.targets import (
    CheckOptions,
    Kind,
    MaintenanceWindow,
    infer_kind,
    target_from_row,
)
from medianest_workers.security import crypto


def row(name: str, url: str = "http://127.0.0.1:9/", **fields: object) -> ServiceConfig:
    return ServiceConfig(service_name=name, service_url=url, enabled=True, **fields)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("plex", Kind.PLEX),
        ("Plex-Living-Room", Kind.PLEX),
        ("overseerr", Kind.OVERSEERR),
        ("jellyseerr", Kind.OVERSEERR),
        ("seerr", Kind.OVERSEERR),
        ("uptime-kuma", Kind.UPTIME_KUMA),
        ("sonarr", Kind.HTTP),
    ],
)
def test_kind_is_inferred_from_the_name(name: str, kind: Kind) -> None:
    assert infer_kind(name) == kind
    assert target_from_row(row(name)).kind == kind


def test_config_data_kind_wins_and_options_are_read() -> None:
    target = target_from_row(
        row(
            "media",
            config_data={
                "kind": "http",
                "expected_status": 204,
                "keyword": "ok",
                "json": {"path": "a.b", "equals": True},
                "degraded_ms": 900,
                "verify_tls": False,
                "theme": "dark",  # the backend's own keys are ignored
            },
        )
    )
    assert target.problem is None
    assert target.kind == Kind.HTTP
    assert target.options.expected_status == [204]
    assert target.options.keyword == "ok"
    assert target.options.json_condition is not None
    assert target.options.degraded_ms == 900
    assert not target.options.verify_tls
    assert target_from_row(row("plex-x", config_data={"kind": "seerr"})).kind == Kind.OVERSEERR


@pytest.mark.parametrize(
    ("url", "config_data", "message"),
    [
        ("ftp://127.0.0.1/", None, "service_url: scheme 'ftp' refused; only http and https"),
        ("file:///etc/passwd", None, "service_url: scheme 'file' refused"),
        ("FILE:///etc/passwd", None, "service_url: scheme 'file' refused"),
        ("javascript:alert(1)", None, "service_url: scheme 'javascript' refused"),
        ("127.0.0.1:32400", None, "service_url: scheme '(none)' refused"),
        ("http://", None, "service_url: no host"),
        ("http://[::1", None, "service_url: malformed URL"),
        ("http://host:99999/", None, "service_url: malformed URL"),
        ("http://a b/", None, "service_url: contains whitespace"),
        ("", None, "service_url: empty"),
        ("http://127.0.0.1/", {"kind": "gopher"}, "config_data.kind: unknown kind 'gopher'"),
        ("http://127.0.0.1/", {"expected_status": "abc"}, "config_data.expected_status"),
        ("http://127.0.0.1/", {"expected_status": 700}, "between 100 and 599"),
        ("http://127.0.0.1/", {"json": {"path": ""}}, "config_data.json.path"),
        ("http://127.0.0.1/", {"maintenance": [{"start": "2026-01-01T00:00"}]}, "maintenance"),
        ("http://127.0.0.1/", {"path": "ftp://x/y"}, "config_data.path: scheme 'ftp' refused"),
    ],
)
def test_a_row_that_cannot_be_checked_names_the_field(
    url: str, config_data: dict | None, message: str
) -> None:
    target = target_from_row(row("svc", url, config_data=config_data))
    assert target.problem is not None
    assert target.problem[0] == "ConfigError"
    assert message in target.problem[1]


def test_config_data_that_is_not_an_object() -> None:
    target = target_from_row(row("svc", config_data=["not", "an", "object"]))
    assert target.problem == ("ConfigError", "config_data: must be a JSON object, not list")


def test_a_key_that_does_not_decrypt_is_that_services_error(health_env) -> None:
    good = target_from_row(row("overseerr", api_key=crypto.encrypt("the-key")))
    assert good.problem is None
    assert good.api_key is not None and good.api_key.get_secret_value() == "the-key"
    other = crypto.encrypt_with("the-key", secret="z" * 40)
    bad = target_from_row(row("overseerr", api_key=other))
    assert bad.problem is not None and bad.problem[0] == "ServiceConfigError"
    assert "api_key cannot be decrypted" in bad.problem[1]
    assert other not in bad.problem[1]


def test_maintenance_windows() -> None:
    absolute = MaintenanceWindow.model_validate(
        {"start": "2026-12-03T02:00:00Z", "end": "2026-12-03T03:00:00+00:00"}
    )
    assert absolute.contains(dt.datetime(2026, 12, 3, 2, 30))
    assert not absolute.contains(dt.datetime(2026, 12, 3, 3, 0))
    # Every Sunday (6) 23:00 to 01:00 UTC: the Monday-morning hour belongs to Sunday's window.
    weekly = MaintenanceWindow.model_validate({"days": [6], "from": "23:00", "to": "01:00"})
    sunday_night = dt.datetime(2026, 12, 6, 23, 30)  # a Sunday
    assert sunday_night.weekday() == 6
    assert weekly.contains(sunday_night)
    assert weekly.contains(sunday_night + dt.timedelta(hours=1))  # Monday 00:30
    assert not weekly.contains(sunday_night + dt.timedelta(hours=2))
    assert not weekly.contains(sunday_night - dt.timedelta(days=1))  # Saturday 23:30
    daily = CheckOptions.model_validate({"maintenance": [{"from": "04:00", "to": "04:15"}]})
    assert daily.maintenance[0].contains(dt.datetime(2026, 1, 1, 4, 10))
