"""SSRF and traversal: refused at enqueue (422 naming the field), in the worker, on redirects,
for every connection, and file names that never leave the user's folder."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from medianest_workers.api.app import create_app
from medianest_workers.db.session import get_engine
from medianest_workers.downloads import safety, service
from medianest_workers.downloads.files import playlist_key
from medianest_workers.downloads.safety import NetworkPolicy
from medianest_workers.downloads.ytdlp import DownloadOptions, YtdlpLogger, build_options
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.platform.errors import PayloadInvalidError
from medianest_workers.settings import reset_settings_cache
from tests.downloads.conftest import Control, backend_row, download_row, media_files
from tests.downloads.feed_server import Entry, FeedServer

API_KEY = "downloads-test-key-0123456789"


@pytest.fixture
def client(
    download_env: Path, monkeypatch: pytest.MonkeyPatch, session_factory
) -> Iterator[TestClient]:
    monkeypatch.setenv("API_KEYS", API_KEY)
    reset_settings_cache()
    with TestClient(create_app(), headers={"X-API-Key": API_KEY}) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "http:// or https://"),
        ("ytsearch:never gonna give you up", "http:// or https://"),
        ("ytsearch10:cats", "http:// or https://"),
        ("never gonna give you up", "http:// or https://"),
        ("ftp://127.0.0.1/feed.xml", "http:// or https://"),
        ("http:///etc/passwd", "http:// or https://"),
        ("http://user:secret@127.0.0.1/feed.xml", "user name or password"),
    ],
)
def test_bad_urls_are_refused_at_enqueue_with_a_422_naming_payload_url(
    client: TestClient, engine: Engine, url: str, why: str
) -> None:
    response = client.post(
        "/v1/jobs",
        json={"kind": "downloads.playlist", "payload": {"user_id": "u1", "url": url}},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "payload.url", error
    assert why in error["message"]
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM mnw_jobs")).scalar_one() == 0


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "not allowed"),
        ("http://evil.example/playlist", "not allowed"),
    ],
)
def test_hosts_off_the_allow_list_are_refused_by_the_worker_before_any_request(
    engine: Engine, user: str, limits: service.Limits, url: str, why: str
) -> None:
    """Accepted at enqueue (the allow-list is configuration, not the document's schema)."""
    assert enqueue("downloads.playlist", {"user_id": user, "url": url}).created
    download_id = backend_row(engine, user, url)
    report = _run(download_id, limits)
    assert report.status == "failed"
    assert why in report.error and "DOWNLOAD_ALLOWED_HOSTS" in report.error
    assert download_row(engine, download_id)["file_paths"]["error"] == report.error


def test_metadata_addresses_are_refused_even_when_private_networks_are_allowed(
    engine: Engine, user: str, limits: service.Limits
) -> None:
    homelab = dataclasses.replace(
        limits,
        allowed_hosts=("169.254.169.254", "10.0.0.5"),
        policy=NetworkPolicy(allow_private=True),
    )
    download_id = backend_row(engine, user, "http://169.254.169.254/latest/meta-data/")
    report = _run(download_id, homelab)
    assert report.status == "failed"
    assert "cloud metadata address" in report.error
    # A private homelab address passes the URL check with DOWNLOAD_ALLOW_PRIVATE_NETWORKS.
    assert (
        safety.check_playlist_url(
            "http://10.0.0.5/feed", allowed_hosts=homelab.allowed_hosts, policy=homelab.policy
        )
        == "http://10.0.0.5/feed"
    )


def test_private_addresses_are_refused_unless_allowed() -> None:
    strict = NetworkPolicy()
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.1.1", "::1", "fe80::1"):
        assert strict.refusal(ipaddress.ip_address(address)), address
    assert strict.refusal(ipaddress.ip_address("::ffff:127.0.0.1"))  # IPv4-mapped
    assert strict.refusal(ipaddress.ip_address("142.250.185.78")) is None
    homelab = NetworkPolicy(allowed_networks=safety.parse_networks(["192.168.1.0/24"]))
    assert homelab.refusal(ipaddress.ip_address("192.168.1.20")) is None
    assert homelab.refusal(ipaddress.ip_address("192.168.2.20"))
    assert NetworkPolicy(allow_private=True).refusal(ipaddress.ip_address("10.1.2.3")) is None
    assert NetworkPolicy(allow_private=True).refusal(ipaddress.ip_address("169.254.169.254"))


def test_user_ids_that_are_not_plain_names_are_refused(download_env: Path, session_factory):
    with pytest.raises(PayloadInvalidError) as refused:
        enqueue("downloads.playlist", {"user_id": "../etc", "url": "http://127.0.0.1/f"})
    assert refused.value.fields()[0]["field"] == "payload.user_id"


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"user_id": "u1"},
        {"url": "https://www.youtube.com/playlist?list=PL1"},
        {"download_id": "d1", "user_id": "u1"},
        {"download_id": "d1", "user_id": "u1", "url": "https://www.youtube.com/watch?v=x"},
    ],
)
def test_a_payload_is_one_form_or_the_other(
    download_env: Path, session_factory, payload: dict
) -> None:
    with pytest.raises(PayloadInvalidError) as refused:
        enqueue("downloads.playlist", payload)
    assert "download_id" in refused.value.fields()[0]["message"]


def _run(download_id: str, limits: service.Limits) -> service.RunReport:
    return service.run(
        get_engine().connect,
        download_id,
        quality="best",
        fmt="mp4",
        control=Control(),
        limits=limits,
    )


def test_a_playlist_url_redirecting_to_loopback_is_refused_in_the_worker(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    port = feed.server.server_address[1]
    url = f"{feed.url}/redirect?to=http://127.0.0.2:{port}/feed.xml"
    download_id = backend_row(engine, user, url)
    report = _run(download_id, limits)
    assert report.status == "failed"
    assert "blocked destination" in report.error and "127.0.0.2" in report.error
    row = download_row(engine, download_id)
    assert row["status"] == "failed"
    assert "blocked destination" in row["file_paths"]["error"]
    assert "/feed.xml" not in [p for p in feed.requests if p != "/redirect"]


def test_media_urls_redirecting_to_metadata_or_loopback_are_refused_entry_by_entry(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    port = feed.server.server_address[1]
    feed.entries = [Entry("good01", "Good")]
    good = feed.feed()
    # Two enclosures that redirect: to the metadata service, and to another loopback address.
    bad = (
        f'<item><title>Meta</title><guid>meta01</guid><enclosure url="{feed.url}/redirect?'
        f'to=http://169.254.169.254/latest/meta-data/" type="video/mp4"/></item>'
        f'<item><title>Loop</title><guid>loop01</guid><enclosure url="{feed.url}/redirect?'
        f'to=http://127.0.0.2:{port}/media/x.mp4" type="video/mp4"/></item>'
    ).encode()
    feed.feed = lambda: good.replace(b"</channel>", bad + b"</channel>")  # type: ignore[method-assign]
    download_id = backend_row(engine, user, feed.feed_url)
    report = _run(download_id, limits)
    assert (report.status, report.downloaded, report.failed) == ("completed", 1, 2), report
    errors = {error["entry"]: error for error in report.errors}
    assert errors[2]["class"] == "permanent" and "169.254.169.254" in errors[2]["error"]
    assert "metadata" in errors[2]["error"]
    assert errors[3]["class"] == "permanent" and "127.0.0.2" in errors[3]["error"]


def test_a_host_that_resolves_public_but_connects_private_is_refused(
    engine: Engine,
    user: str,
    feed: FeedServer,
    limits: service.Limits,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: the URL check is told a public address, the connection meets loopback."""
    monkeypatch.setattr(safety, "resolve", lambda host, port: [ipaddress.ip_address("8.8.8.8")])
    strict = dataclasses.replace(
        limits, policy=NetworkPolicy(), allowed_hosts=(*limits.allowed_hosts, "localhost")
    )
    port = feed.server.server_address[1]
    download_id = backend_row(engine, user, f"http://localhost:{port}/feed.xml")
    report = _run(download_id, strict)
    assert report.status == "failed"
    assert "connected to 127.0.0.1" in report.error, report.error


def test_titles_with_dot_dot_slash_stay_inside_the_users_folder(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits
) -> None:
    feed.title = "../../etc"
    feed.entries = [Entry("trav01", "../../etc/x"), Entry("trav02", "..")]
    download_id = backend_row(engine, user, feed.feed_url)
    report = _run(download_id, limits)
    assert report.status == "completed", report
    user_root = (limits.root / user).resolve()
    [folder] = [path for path in user_root.iterdir() if path.is_dir()]
    assert folder.name == f"_.._etc [{playlist_key(feed.feed_url)}]"  # one plain name
    found = media_files(folder)
    assert len(found) == 2
    for path in found:
        assert user_root in path.resolve().parents
        assert not path.name.startswith(".")
    assert not (limits.root.parent / "etc").exists()
    for item in download_row(engine, download_id)["file_paths"]["files"]:
        assert Path(item["path"]).resolve().parent == folder.resolve()


def test_a_symlinked_playlist_folder_pointing_outside_is_refused(
    engine: Engine, user: str, feed: FeedServer, limits: service.Limits, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    user_root = limits.root / user
    user_root.mkdir(parents=True)
    os.symlink(outside, user_root / f"Loopback Playlist [{playlist_key(feed.feed_url)}]")
    feed.entries = [Entry("sym01", "Video")]
    download_id = backend_row(engine, user, feed.feed_url)
    report = _run(download_id, limits)
    assert report.status == "failed"
    assert "outside the download folder" in report.error
    assert list(outside.iterdir()) == []


def test_the_cookies_file_is_used_but_never_logged_or_recorded(
    engine: Engine,
    user: str,
    feed: FeedServer,
    limits: service.Limits,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cookies = tmp_path / "secret-cookies.txt"
    cookies.write_text(
        "# Netscape HTTP Cookie File\n"
        "127.0.0.1\tFALSE\t/\tFALSE\t2147483647\tSID\ttop-secret-cookie-value\n"
    )
    feed.entries = [Entry("cook01", "Video")]
    download_id = backend_row(engine, user, feed.feed_url)
    with caplog.at_level(logging.DEBUG):
        report = _run(download_id, dataclasses.replace(limits, cookies_file=cookies))
    assert report.status == "completed", report
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "yt-dlp:" in logged  # yt-dlp's messages were captured
    assert "top-secret-cookie-value" not in logged
    assert str(cookies) not in logged
    row = download_row(engine, download_id)
    assert "secret" not in json.dumps(row["file_paths"])


def test_the_options_run_no_command_and_no_external_downloader() -> None:
    params = build_options(
        DownloadOptions(
            quality="best",
            fmt="mkv",
            max_file_bytes=1,
            sleep_seconds=0,
            max_sleep_seconds=0,
            sleep_requests_seconds=0,
            cookies_file=None,
            socket_timeout=1,
        ),
        logger=YtdlpLogger(),
    )
    assert params["external_downloader"] == {"default": "native"}
    assert {pp["key"] for pp in params["postprocessors"]} == {
        "MetadataParser",
        "FFmpegThumbnailsConvertor",
        "FFmpegVideoRemuxer",
        "FFmpegMetadata",
    }
    for forbidden in ("exec_cmd", "postprocessor_args", "external_downloader_args", "exec"):
        assert forbidden not in params
    assert "%(playlist_index)" not in params["outtmpl"]["default"]
