"""The probes against loopback peers: every fault gives a clear result and error, and none holds
the round past about one timeout (all checks run at once)."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import SecretStr

from medianest_workers.health.probe import DEGRADED, DOWN, UP, CheckResult, ProbeConfig, run_round
from medianest_workers.health.targets import CheckOptions, CheckTarget, Kind
from tests.health.conftest import OVERSEERR_KEY, PLEX_TOKEN, make_certificate

TIMEOUT = 1.5
CONFIG = ProbeConfig(timeout=TIMEOUT, degraded_ms=400, max_body_bytes=4096, concurrency=50)


def http(name: str, url: str, **options: object) -> CheckTarget:
    return CheckTarget(
        name=name, kind=Kind.HTTP, url=url, options=CheckOptions.model_validate(options)
    )


def test_every_behaviour_of_a_peer_in_one_round(serve) -> None:
    peer = serve()
    base = peer.url
    targets = [
        http("ok", f"{base}/ok"),
        http("error-500", f"{base}/error"),
        http("hang", f"{base}/hang"),
        http("hang-2", f"{base}/hang"),
        http("slow", f"{base}/slow"),
        http("drip", f"{base}/drip", keyword="never"),
        http("keyword-found", f"{base}/keyword", keyword="nominal"),
        http("keyword-missing", f"{base}/keyword", keyword="outage"),
        http("json-ok", f"{base}/json", json={"path": "items.0.state", "equals": "ready"}),
        http("json-bool", f"{base}/json", json={"path": "db.ok", "equals": True}),
        http("json-wrong", f"{base}/json", json={"path": "db.ok", "equals": 1}),
        http("json-html", f"{base}/html", json={"path": "a", "equals": 1}),
        http("expected-404", f"{base}/nothing", expected_status=404),
        http("unexpected-404", f"{base}/nothing"),
        http("redirect-to-ftp", f"{base}/to-ftp"),
        http("refused", "http://127.0.0.1:1/"),
        CheckTarget(name="overseerr-html", kind=Kind.OVERSEERR, url=f"{base}/html"),
    ]
    started = time.monotonic()
    results = run_round(targets, CONFIG)
    elapsed = time.monotonic() - started

    # Three checks wait out the timeout; sequentially that alone would be 3 timeouts.
    assert elapsed < 2.5 * TIMEOUT, elapsed
    expect = {
        "ok": (UP, None),
        "error-500": (DOWN, "HttpStatus"),
        "hang": (DOWN, "Timeout"),
        "hang-2": (DOWN, "Timeout"),
        "slow": (DEGRADED, "Slow"),
        "drip": (DOWN, "Timeout"),
        "keyword-found": (UP, None),
        "keyword-missing": (DOWN, "KeywordMissing"),
        "json-ok": (UP, None),
        "json-bool": (UP, None),
        "json-wrong": (DOWN, "JsonConditionFailed"),
        "json-html": (DOWN, "ProtocolError"),
        "expected-404": (UP, None),
        "unexpected-404": (DOWN, "HttpStatus"),
        "redirect-to-ftp": (DOWN, "UnsupportedScheme"),
        "refused": (DOWN, "ConnectionError"),
        "overseerr-html": (DOWN, "ProtocolError"),
    }
    found = {name: (result.result, result.error_class) for name, result in results.items()}
    assert found == expect
    assert results["error-500"].http_status == 500
    assert "HTTP 500" in (results["error-500"].error_message or "")
    assert "before the response headers" in (results["hang"].error_message or "")
    assert "while reading the body" in (results["drip"].error_message or "")
    assert "expected JSON" in (results["overseerr-html"].error_message or "")
    assert "text/html" in (results["overseerr-html"].error_message or "")
    assert results["ok"].response_time_ms < TIMEOUT * 1000
    assert results["slow"].response_time_ms >= 400


def test_plex_overseerr_and_kuma_with_right_and_wrong_keys(serve) -> None:
    peer = serve()
    right = {
        "plex": CheckTarget(
            name="plex", kind=Kind.PLEX, url=peer.url, api_key=SecretStr(PLEX_TOKEN)
        ),
        "overseerr": CheckTarget(
            name="overseerr",
            kind=Kind.OVERSEERR,
            url=f"{peer.url}/ok",
            api_key=SecretStr(OVERSEERR_KEY),
        ),
        "plex-no-token": CheckTarget(name="plex-no-token", kind=Kind.PLEX, url=peer.url),
        "kuma": CheckTarget(name="kuma", kind=Kind.UPTIME_KUMA, url=peer.url),
    }
    wrong = {
        "plex-bad": CheckTarget(
            name="plex-bad", kind=Kind.PLEX, url=peer.url, api_key=SecretStr("wrong-token-xyz")
        ),
        "overseerr-bad": CheckTarget(
            name="overseerr-bad",
            kind=Kind.OVERSEERR,
            url=f"{peer.url}/ok",
            api_key=SecretStr("wrong-key-xyz"),
        ),
        "kuma-bad": CheckTarget(
            name="kuma-bad", kind=Kind.UPTIME_KUMA, url=peer.url, api_key=SecretStr("kuma-key")
        ),
    }
    results = run_round([*right.values(), *wrong.values()], CONFIG)
    for name in right:
        assert results[name].result == UP, (name, results[name])
    for name in wrong:
        assert results[name].result == DEGRADED, (name, results[name])
        assert results[name].error_class == "AuthFailed"
    assert "HTTP 401" in (results["plex-bad"].error_message or "")
    assert "HTTP 403" in (results["overseerr-bad"].error_message or "")
    paths = [path for path, _ in peer.requests]
    assert "/identity" in paths and "/ok/api/v1/status" in paths and "/api/entry-page" in paths
    assert paths.count("/ok/api/v1/auth/me") == 2


def test_certificates_self_signed_and_expired(serve, tmp_path: Path) -> None:
    fresh = serve(tls=make_certificate(tmp_path, expired=False))
    expired = serve(tls=make_certificate(tmp_path, expired=True))
    results = run_round(
        [
            http("self-signed", f"{fresh.url}/ok"),
            http("self-signed-accepted", f"{fresh.url}/ok", verify_tls=False),
            http("expired", f"{expired.url}/ok"),
            http("expired-accepted", f"{expired.url}/ok", verify_tls=False),
        ],
        CONFIG,
    )
    assert results["self-signed"].result == DOWN
    assert results["self-signed"].error_class == "CertificateError"
    assert "self-signed" in (results["self-signed"].error_message or "")
    assert results["self-signed-accepted"].result == UP
    assert results["expired"].error_class == "CertificateError"
    assert "expired" in (results["expired"].error_message or "")
    assert results["expired-accepted"].result == UP  # trust waived: only reachability counts
    for name in ("self-signed", "self-signed-accepted"):
        assert 29 < (results[name].cert_days_left or 0) <= 30
    for name in ("expired", "expired-accepted"):
        assert -1.1 < (results[name].cert_days_left or 0) < -0.9


def test_a_target_with_a_problem_is_a_recorded_failure_without_a_request(serve) -> None:
    peer = serve()
    results = run_round(
        [
            CheckTarget(
                name="broken",
                kind=Kind.HTTP,
                problem=("ConfigError", "service_url: scheme 'ftp' refused; only http and https"),
            ),
            http("ok", f"{peer.url}/ok"),
        ],
        CONFIG,
    )
    assert results["broken"] == CheckResult(
        DOWN,
        0,
        error_class="ConfigError",
        error_message="service_url: scheme 'ftp' refused; only http and https",
    )
    assert results["ok"].result == UP
    assert peer.requests == [("/ok", peer.requests[0][1])]


def test_error_messages_never_show_the_key_or_url_credentials(serve) -> None:
    peer = serve()
    port = peer.url.rsplit(":", 1)[1]
    target = CheckTarget(
        name="leaky",
        kind=Kind.HTTP,
        url=f"http://admin:hunter2secret@127.0.0.1:{port}/error?token=abcdef123",
    )
    results = run_round([target], CONFIG)
    message = results["leaky"].error_message or ""
    assert results["leaky"].result == DOWN
    assert "hunter2secret" not in message and "abcdef123" not in message


def test_platform_parts_are_checked_on_threads_within_the_timeout() -> None:
    def hangs(timeout: float) -> None:
        time.sleep(timeout * 2)

    def fails(timeout: float) -> None:
        raise ConnectionError("refused")

    def works(timeout: float) -> None:
        return None

    targets = [
        CheckTarget(name="pg", kind=Kind.POSTGRES),
        CheckTarget(name="redis", kind=Kind.REDIS),
        CheckTarget(name="workers", kind=Kind.WORKERS),
    ]
    started = time.monotonic()
    results = run_round(
        targets, CONFIG, {Kind.POSTGRES: works, Kind.REDIS: fails, Kind.WORKERS: hangs}
    )
    assert time.monotonic() - started < 2 * TIMEOUT
    assert results["pg"].result == UP
    assert (results["redis"].result, results["redis"].error_class) == (DOWN, "ConnectionError")
    assert (results["workers"].result, results["workers"].error_class) == (DOWN, "Timeout")
