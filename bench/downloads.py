"""Our playlist download against the plain `yt-dlp` command, on the same loopback playlist.

    python3 -m bench.downloads [--entries 20] [--rounds 3]

Serves a loopback RSS playlist of `--entries` real small MP4s (tests/downloads/feed_server.py,
made with the imageio-ffmpeg wheel's ffmpeg) and, each round, times:

- plain: the `yt-dlp` command (`python -m yt_dlp`, a fresh process) with the options our
  job sets (names from title and id, JPEG thumbnail, embedded metadata, the same format
  choice, a download archive file);
- ours: the `downloads.playlist` job on a real, warm `downloads` worker, from enqueue to its
  ledger row `succeeded` (the guarded request handler, the archive in PostgreSQL, the
  youtube_downloads row, progress): what a deployment sees;
- ours, cold: the job's service (downloads/service.py) in a fresh process, paying the
  platform's imports as the plain command pays yt-dlp's;

then the re-run of each with nothing new (the archive). Prints the medians and the ratios.
Targets: ours within 1.2x of plain; a re-run of a 20-entry playlist under 2 s.
Needs REDIS_URL (the worker's broker, keys under a prefix of this run's, deleted at the end);
uses the DATABASE_URL server when set (else an embedded one); drops its database at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.cleanup import postgres_server

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_ID = uuid.uuid4().hex[:8]
PREFIX = f"mnw-bench-dl-{RUN_ID}:"


def plain_command(feed_url: str, folder: Path, archive: Path) -> list[str]:
    """The yt-dlp command line equivalent to our job's options (downloads/ytdlp.py)."""
    from medianest_workers.downloads import ytdlp

    fmt, sort = ytdlp.format_selector("1080p", "mp4")
    return [
        sys.executable,
        "-m",
        "yt_dlp",
        "-q",
        "--no-progress",
        "-f",
        fmt,
        "-S",
        ",".join(sort),
        "--merge-output-format",
        "mp4",
        "-P",
        str(folder),
        "-o",
        ytdlp.OUTPUT_TEMPLATE,
        "--windows-filenames",
        "--write-thumbnail",
        "--convert-thumbnails",
        "jpg",
        "--embed-metadata",
        "--download-archive",
        str(archive),
        "--ffmpeg-location",
        str(ytdlp.ffmpeg_location()),
        "--sleep-requests",
        "0",
        feed_url,
    ]


def _insert_row(engine: Any, download_id: str, url: str) -> None:
    from sqlalchemy import text

    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO youtube_downloads (id, user_id, playlist_url)"
                " VALUES (:id, 'benchuser', :url)"
            ),
            {"id": download_id, "url": url},
        )


def _delete_keys(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=REPO_ROOT, timeout=600)
    return time.perf_counter() - started


def child(download_id: str) -> None:
    """Run our job's service once for `download_id` (in a fresh process, like plain)."""
    from medianest_workers.db.session import get_engine
    from medianest_workers.downloads import service

    class Control:
        job_id = f"bench-{RUN_ID}"
        attempt = 1
        max_attempts = 1
        cancel_requested = False

        def report_progress(self, progress: dict, *, min_interval: float = 0.0) -> bool:
            return True

    report = service.run(
        get_engine().connect,
        download_id,
        quality="1080p",
        fmt="mp4",
        control=Control(),
        limits=service.Limits.from_settings(),
    )
    if report.status != "completed":
        raise SystemExit(f"our run ended {report.status}: {report.error}")
    print(f"ours: {report.downloaded} downloaded, {report.already} already", file=sys.stderr)


@contextlib.contextmanager
def worker(env: dict[str, str], log_path: Path) -> Iterator[None]:
    """A real `downloads` worker (prefork, -c 1), stopped at the end."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "medianest_workers.platform.celery_app:app",
                "worker",
                "-Q",
                "downloads",
                "-c",
                "1",
                "-P",
                "prefork",
                "-n",
                f"bench-dl-{RUN_ID}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def through_worker(engine: Any, download_id: str) -> float:
    """Enqueue `downloads.playlist` for the row; seconds until its ledger row is finished."""
    from sqlalchemy import text

    from medianest_workers.platform.enqueue import enqueue

    started = time.perf_counter()
    job = enqueue("downloads.playlist", {"download_id": download_id})
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            state = connection.execute(
                text("SELECT state FROM mnw_jobs WHERE id = :id"), {"id": job.job_id}
            ).scalar_one()
        if state == "succeeded":
            return time.perf_counter() - started
        if state in ("failed", "dead", "cancelled"):
            raise SystemExit(f"our job ended {state}")
        time.sleep(0.01)
    raise SystemExit("our job did not finish in 600 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    if args.child:
        child(args.child)
        return

    from sqlalchemy import create_engine, text

    from medianest_workers.db import admin, migrate
    from medianest_workers.db.session import reset_engine, sqlalchemy_url
    from medianest_workers.settings import reset_settings_cache
    from tests.downloads.feed_server import Entry, FeedServer, make_media

    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        raise SystemExit("REDIS_URL: needed (the worker's broker)")
    with postgres_server() as server_url, tempfile.TemporaryDirectory() as scratch:
        name = f"mnw_bench_dl_{RUN_ID}"
        url = admin.create_database(server_url, name)
        feed = None
        try:
            migrate.upgrade(url)
            work = Path(scratch)
            media = make_media(work, seconds=2.0, size="320x240")
            feed = FeedServer(media, title="Bench Playlist")
            feed.entries = [Entry(f"b{n:03d}", f"Bench video {n}") for n in range(args.entries)]
            env = {
                **os.environ,
                "PYTHONPATH": str(REPO_ROOT),
                "DATABASE_URL": url,
                "DOWNLOAD_ALLOWED_HOSTS": "127.0.0.1",
                "DOWNLOAD_ALLOWED_NETWORKS": "127.0.0.1/32",
                "DOWNLOAD_SLEEP_SECONDS": "0",
                "DOWNLOAD_MAX_SLEEP_SECONDS": "0",
                "DOWNLOAD_SLEEP_REQUESTS_SECONDS": "0",
                "DOWNLOAD_MIN_FREE_BYTES": "0",
                "REDIS_URL": redis_url,
                "REDIS_KEY_PREFIX": PREFIX,
            }
            os.environ.update(env)
            reset_settings_cache()
            engine = create_engine(sqlalchemy_url(url))
            with engine.begin() as connection:
                connection.execute(
                    text("INSERT INTO users (id, email) VALUES ('benchuser', 'b@example.test')")
                )
            plain_first, plain_again, ours_first, ours_again = [], [], [], []
            cold_first, cold_again = [], []
            env["DOWNLOAD_ROOT"] = str(work / "worker")
            with worker(env, work / "worker.log"):
                warm = FeedServer(media, title="Warm-up")
                warm.entries = [Entry("warm01", "Warm-up video")]
                try:
                    _insert_row(engine, "warmup", warm.feed_url)
                    through_worker(engine, "warmup")  # the worker's imports, once
                finally:
                    warm.stop()
                for round_ in range(args.rounds):
                    _insert_row(engine, f"worker{round_}", feed.feed_url)
                    ours_first.append(through_worker(engine, f"worker{round_}"))
                    ours_again.append(through_worker(engine, f"worker{round_}"))
                    with engine.begin() as connection:  # the next round starts from nothing
                        connection.execute(text("DELETE FROM mnw_download_archive"))
            for round_ in range(args.rounds):
                folder = work / f"plain{round_}"
                archive = work / f"plain{round_}.archive"
                command = plain_command(feed.feed_url, folder, archive)
                plain_first.append(timed(command, env))
                plain_again.append(timed(command, env))
                assert len(list(folder.glob("*.mp4"))) == args.entries

                env["DOWNLOAD_ROOT"] = str(work / f"cold{round_}")
                download_id = f"cold{round_}"
                _insert_row(engine, download_id, feed.feed_url)
                ours = [sys.executable, "-m", "bench.downloads", "--child", download_id]
                cold_first.append(timed(ours, env))
                cold_again.append(timed(ours, env))
                found = list((work / f"cold{round_}").rglob("*.mp4"))
                assert len(found) == args.entries, len(found)
                with engine.begin() as connection:  # the next round starts from nothing
                    connection.execute(text("DELETE FROM mnw_download_archive"))
            engine.dispose()
        finally:
            if feed is not None:
                feed.stop()
            reset_engine()
            admin.drop_database(server_url, name)
            _delete_keys(redis_url)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    plain, ours, cold = median(plain_first), median(ours_first), median(cold_first)
    print(f"playlist of {args.entries} entries ({len(media)} bytes each), {args.rounds} rounds")
    print(f"  plain yt-dlp command, first run      : {plain:6.2f} s")
    print(f"  our job on a worker, first run       : {ours:6.2f} s  ({ours / plain:.2f}x, <= 1.2)")
    print(f"  our service in a fresh process       : {cold:6.2f} s  ({cold / plain:.2f}x)")
    again_plain, again_ours = median(plain_again), median(ours_again)
    again_cold = median(cold_again)
    print(f"  plain yt-dlp command, re-run         : {again_plain:6.2f} s")
    print(f"  our job on a worker, re-run          : {again_ours:6.2f} s  (target < 2 s)")
    print(f"  our service in a fresh process re-run: {again_cold:6.2f} s")


if __name__ == "__main__":
    main()
