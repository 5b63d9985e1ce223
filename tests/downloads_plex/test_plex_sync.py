"""The Plex step's service against a loopback Plex: scan, wait, collection, errors."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from medianest_workers.downloads import plex_errors
from medianest_workers.downloads.plex import PlexSyncOptions, sync_download
from medianest_workers.security import crypto
from tests.downloads_plex.conftest import Backend
from tests.downloads_plex.fake_plex import TOKEN, FakePlex, Item

NAMES = ["Intro", "Rainy Night", "Café Study", "Late Train", "Outro"]


def collection_files(fake: FakePlex, key: str) -> list[str]:
    collection = fake.collections[int(key)]
    return [fake.items[item].file for item in collection.items]


def calls(fake: FakePlex, method: str, suffix: str) -> list:
    return [call for call in fake.calls if call.method == method and call.path.endswith(suffix)]


def test_first_sync_scans_only_the_folder_and_creates_the_collection(
    fake: FakePlex, backend: Backend
) -> None:
    backend.user()
    backend.plex_service(fake.url)
    other = backend.files(backend.folder("Other list", "PLother"), ["Elsewhere"])
    fake.scan(fake.sections[2], str(other[0].parent))  # already in the library, not ours
    folder = backend.folder()
    files = backend.files(folder, NAMES)
    download_id = backend.download(files)
    fake.scan_delay = 0.4  # Plex indexes a while after the scan was asked for

    report = sync_download(download_id)

    assert fake.refreshes()[-1] == str(folder)
    assert report.created and report.added == 5 and report.found == report.expected == 5
    assert report.polls >= 2  # it waited for the delayed scan
    row = backend.row(download_id)
    assert row["plex_collection_id"] == report.collection_id
    assert row["status"] == "completed"
    collection = fake.collections[int(report.collection_id)]
    assert collection.title == "Lo-fi Beats" and collection.section == 2
    assert sorted(collection_files(fake, report.collection_id)) == sorted(map(str, files))


def test_rerun_adds_only_the_new_files(fake: FakePlex, backend: Backend) -> None:
    backend.user()
    backend.plex_service(fake.url)
    folder = backend.folder()
    first = backend.files(folder, NAMES)
    download_id = backend.download(first)
    created = sync_download(download_id)

    again = sync_download(download_id)
    assert not again.created and again.added == 0 and again.already == 5
    assert calls(fake, "PUT", "/items") == []

    # the playlist grew by two: a new download of it lists only the new files
    grown = backend.files(folder, ["Encore", "Bonus"])
    second = backend.download(grown)
    report = sync_download(second)

    assert report.collection_id == created.collection_id and not report.created
    assert report.added == 2
    puts = calls(fake, "PUT", "/items")
    assert len(puts) == 1 and puts[0].query["uri"][0].count(",") == 1  # exactly two keys
    assert len(fake.collections) == 1
    assert sorted(collection_files(fake, created.collection_id)) == sorted(map(str, first + grown))
    assert backend.row(second)["plex_collection_id"] == created.collection_id


def test_collection_renamed_in_plex_is_still_found_by_the_stored_id(
    fake: FakePlex, backend: Backend
) -> None:
    backend.user()
    backend.plex_service(fake.url)
    folder = backend.folder()
    download_id = backend.download(backend.files(folder, NAMES[:2]))
    first = sync_download(download_id)
    fake.collections[int(first.collection_id)].title = "My chill mix"  # the user renamed it
    later = backend.download(backend.files(folder, ["New one"]))
    report = sync_download(later)
    assert report.collection_id == first.collection_id and report.added == 1
    assert len(fake.collections) == 1


def test_plex_down_is_retryable_and_leaves_the_row_alone(fake: FakePlex, backend: Backend) -> None:
    backend.user()
    backend.plex_service(fake.url)
    download_id = backend.download(backend.files(backend.folder(), NAMES[:1]))
    fake.go_down()
    with pytest.raises(plex_errors.PlexUnavailableError, match="cannot be reached"):
        sync_download(download_id)
    row = backend.row(download_id)
    assert row["status"] == "completed" and row["plex_collection_id"] is None
    fake.come_up()
    assert sync_download(download_id).created


def test_wrong_token_is_a_clear_error_without_the_token(
    fake: FakePlex, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-token-SECRET-9876543210"
    backend.user(plex_token=TOKEN)  # the owner's token is only used when the row has none
    backend.plex_service(fake.url, api_key=wrong)
    download_id = backend.download(backend.files(backend.folder(), NAMES[:1]))
    fake.echo_token = True
    caplog.set_level(logging.DEBUG)
    with pytest.raises(plex_errors.PlexAuthError) as caught:
        sync_download(download_id)
    message = str(caught.value)
    assert "refused the token (401)" in message and "service_config 'plex'" in message
    assert wrong not in message and TOKEN not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert wrong not in caplog.text and TOKEN not in caplog.text
    assert [call.token for call in fake.calls if call.path == "/"] == [wrong]


def test_the_owners_plex_token_is_used_when_the_service_row_has_no_key(
    fake: FakePlex, backend: Backend
) -> None:
    backend.user(plex_token=crypto.encrypt(TOKEN))  # wrapped twice, as the backend's login does
    backend.plex_service(fake.url, api_key=None)
    download_id = backend.download(backend.files(backend.folder(), NAMES[:2]))
    assert sync_download(download_id).added == 2
    assert {call.token for call in fake.calls if call.path != "/identity"} == {TOKEN}


def test_no_token_at_all_is_a_clear_error(fake: FakePlex, backend: Backend) -> None:
    backend.user()
    backend.plex_service(fake.url, api_key=None)
    download_id = backend.download(backend.files(backend.folder(), NAMES[:1]))
    with pytest.raises(plex_errors.PlexNotConfiguredError, match="has no plex_token"):
        sync_download(download_id)
    assert fake.calls == []


def test_library_missing_names_the_library_and_what_exists(
    fake: FakePlex, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.user()
    backend.plex_service(fake.url)
    download_id = backend.download(backend.files(backend.folder(), NAMES[:1]))
    options = PlexSyncOptions(download_root=backend.root, library="Kids YouTube")
    with pytest.raises(plex_errors.PlexLibraryError) as caught:
        sync_download(download_id, options=options)
    assert "no library 'Kids YouTube'" in str(caught.value)
    assert "'Movies', 'YouTube'" in str(caught.value)
    assert fake.refreshes() == []


def test_wait_is_bounded_when_items_never_appear(fake: FakePlex, backend: Backend) -> None:
    backend.user()
    backend.plex_service(fake.url)
    download_id = backend.download(backend.files(backend.folder(), NAMES[:3]))
    fake.index_files = False
    options = PlexSyncOptions(download_root=backend.root, scan_wait_seconds=1.0, poll_seconds=0.2)
    started = time.monotonic()
    with pytest.raises(plex_errors.PlexNotIndexedError) as caught:
        sync_download(download_id, options=options)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 5.0
    assert caught.value.missing == 3 and caught.value.expected == 3
    assert "3 of 3 files" in str(caught.value) and "after 1 s" in str(caught.value)
    assert len(calls(fake, "GET", "/all")) >= 3  # it kept looking, then gave up
    assert fake.collections == {} and backend.row(download_id)["plex_collection_id"] is None


def test_files_indexed_in_time_are_collected_before_the_retry(
    fake: FakePlex, backend: Backend
) -> None:
    backend.user()
    backend.plex_service(fake.url)
    folder = backend.folder()
    files = backend.files(folder, NAMES[:3])
    download_id = backend.download(files)
    fake.index_files = False
    fake.scan(fake.sections[2], str(folder))  # nothing
    fake.index_files = True
    fake.scan(fake.sections[2], str(folder))  # indexes the 3 files on disk now
    fake.index_files = False  # a fourth, listed file never gets indexed
    unindexable = backend.files(folder, ["Broken"])
    download_id = backend.download(files + unindexable)
    options = PlexSyncOptions(download_root=backend.root, scan_wait_seconds=0.5, poll_seconds=0.1)
    with pytest.raises(plex_errors.PlexNotIndexedError, match="the others are in the collection"):
        sync_download(download_id, options=options)
    key = backend.row(download_id)["plex_collection_id"]
    assert key is not None and len(fake.collections[int(key)].items) == 3


def test_plex_sees_the_downloads_under_another_root(
    fake: FakePlex, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLEX_DOWNLOAD_ROOT", "/data/youtube")
    from medianest_workers.settings import reset_settings_cache  # noqa: PLC0415

    reset_settings_cache()
    fake.plex_to_local = lambda path: path.replace("/data/youtube", str(backend.root), 1)
    fake.sections[2].locations = ["/data/youtube"]
    backend.user()
    backend.plex_service(fake.url)
    folder = backend.folder()
    download_id = backend.download(backend.files(folder, NAMES[:2]))
    report = sync_download(download_id)
    expected = f"/data/youtube/{folder.relative_to(backend.root)}"
    assert fake.refreshes() == [expected] and report.scanned == expected
    assert report.added == 2
    assert all(f.startswith("/data/youtube/") for f in collection_files(fake, report.collection_id))


def test_rows_that_cannot_be_synced(fake: FakePlex, backend: Backend, tmp_path: Path) -> None:
    backend.user()
    backend.plex_service(fake.url)
    assert sync_download(backend.download([], status="completed")).skipped == "no_files"
    active = backend.download(backend.files(backend.folder(), ["x"]), status="downloading")
    assert sync_download(active).skipped == "download_active"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    stray = backend.download(backend.files(outside, ["y"]))
    with pytest.raises(plex_errors.DownloadRowError, match="not in a playlist folder"):
        sync_download(stray)
    with pytest.raises(plex_errors.DownloadRowError, match="does not exist"):
        sync_download("no-such-row")
    assert fake.refreshes() == []


def test_no_plex_configured_is_a_skip(fake: FakePlex, backend: Backend) -> None:
    backend.user()
    backend.plex_service(fake.url, enabled=False)
    download_id = backend.download(backend.files(backend.folder(), ["x"]))
    assert sync_download(download_id).skipped == "plex_not_configured"
    assert fake.calls == []


def test_a_large_library_costs_one_page_per_look(fake: FakePlex, backend: Backend) -> None:
    """The new files are the newest items: each look reads one page, not the library."""
    old = int(time.time()) - 86_400
    for number in range(1000):
        key = fake.new_key()
        fake.items[key] = Item(key, 2, f"old {number}", f"/old/{number}.mp4", 10, old)
    backend.user()
    backend.plex_service(fake.url)
    download_id = backend.download(backend.files(backend.folder(), NAMES))
    report = sync_download(download_id)
    assert report.added == 5
    listings = [call for call in calls(fake, "GET", "/all") if "sort" in call.query]
    assert len(listings) == report.polls == 1


def test_a_big_playlist_is_created_and_extended_in_short_calls(
    fake: FakePlex, backend: Backend
) -> None:
    backend.user()
    backend.plex_service(fake.url)
    files = backend.files(backend.folder(), [f"Track {n:03}" for n in range(130)])
    report = sync_download(backend.download(files))
    assert report.created and report.added == 130
    assert len(fake.collections[int(report.collection_id)].items) == 130
    assert len(calls(fake, "POST", "/library/collections")) == 1
    assert len(calls(fake, "PUT", "/items")) == 1  # the 30 past the first 100


def test_a_service_url_that_is_no_url_is_a_clear_error(fake: FakePlex, backend: Backend) -> None:
    backend.user()
    backend.plex_service("plex.local:32400/?X-Plex-Token=hidden")
    download_id = backend.download(backend.files(backend.folder(), NAMES[:1]))
    with pytest.raises(plex_errors.PlexNotConfiguredError, match="not a usable") as caught:
        sync_download(download_id)
    assert "hidden" not in str(caught.value)


def test_the_same_row_grown_in_place_adds_exactly_the_new_files(
    fake: FakePlex, backend: Backend, engine: Engine
) -> None:
    """A re-run that rewrites the same row's file_paths with every file of the playlist."""
    backend.user()
    backend.plex_service(fake.url)
    folder = backend.folder()
    first = backend.files(folder, NAMES)
    download_id = backend.download(first)
    created = sync_download(download_id)
    grown = first + backend.files(folder, ["Encore", "Bonus"])
    listed = [{"path": str(p), "size": p.stat().st_size, "filename": p.name} for p in grown]
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE youtube_downloads SET file_paths = jsonb_set(file_paths, '{files}',"
                " CAST(:files AS jsonb)) WHERE id = :id"
            ),
            {"files": json.dumps(listed), "id": download_id},
        )
    report = sync_download(download_id)
    assert report.collection_id == created.collection_id
    assert (report.added, report.already, report.expected) == (2, 5, 7)
    assert len(fake.collections[int(created.collection_id)].items) == 7


def test_a_symlinked_download_root_is_the_same_root(
    fake: FakePlex, backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The download records real paths; DOWNLOAD_ROOT may be a link (Plex knows the link)."""
    link = tmp_path / "link"
    link.symlink_to(backend.root, target_is_directory=True)
    fake.sections[2].locations = [str(link)]  # the library was set up with the link
    monkeypatch.setenv("DOWNLOAD_ROOT", str(link))
    from medianest_workers.settings import reset_settings_cache  # noqa: PLC0415

    reset_settings_cache()
    backend.user()
    backend.plex_service(fake.url)
    folder = backend.folder()
    report = sync_download(backend.download(backend.files(folder, NAMES[:2])))
    assert fake.refreshes() == [str(link / folder.relative_to(backend.root))]
    assert report.added == 2


def test_one_sync_per_collection_and_a_cancelled_one_lets_go(
    fake: FakePlex, backend: Backend, engine: Engine
) -> None:
    from medianest_workers.downloads.plex import _lock_key  # noqa: PLC0415
    from medianest_workers.platform.errors import JobCancelledError  # noqa: PLC0415

    backend.user()
    backend.plex_service(fake.url)
    download_id = backend.download(backend.files(backend.folder(), NAMES[:2]))
    with engine.connect() as holder:  # another worker's sync of the same collection
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _lock_key("lo-fi beats")})
        with pytest.raises(plex_errors.PlexBusyError, match="'Lo-fi Beats' is running"):
            sync_download(download_id)
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key("lo-fi beats")})
        holder.rollback()
    assert fake.calls == []  # the busy one did not touch Plex

    fake.scan_delay = 0.5

    def cancelled(_seconds: float) -> None:
        raise JobCancelledError("job was cancelled")

    with pytest.raises(JobCancelledError):
        sync_download(download_id, sleep=cancelled)
    assert sync_download(download_id).added == 2  # the cancelled one released the lock


def test_a_folder_outside_the_librarys_folders_is_a_clear_error(
    fake: FakePlex, backend: Backend
) -> None:
    """Plex would ignore the scan: the job says what to set instead of waiting in vain."""
    fake.sections[2].locations = ["/data/youtube"]  # Plex mounts the downloads elsewhere
    backend.user()
    backend.plex_service(fake.url)
    download_id = backend.download(backend.files(backend.folder(), NAMES[:1]))
    with pytest.raises(plex_errors.PlexLibraryError, match="set PLEX_DOWNLOAD_ROOT") as caught:
        sync_download(download_id)
    assert "/data/youtube" in str(caught.value)
    assert fake.refreshes() == []
