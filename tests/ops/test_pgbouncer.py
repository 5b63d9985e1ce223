"""ops/pgbouncer.md, checked against a real PgBouncer in transaction pooling on loopback.

Where Debian's `pgbouncer` is installed (skipped otherwise): the job path (enqueue, a real
worker's claim, heartbeat and finish) works through transaction pooling with
`ignore_startup_parameters = options`, and a session advisory lock does not hold there (two
clients both "take" it), which is why migrate, backups and requests.push need a direct
connection or session pooling.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from tests.helpers import free_port, wait_for
from tests.ops.conftest import ROOT, start_cli, stop


@pytest.fixture
def pgbouncer(database_url: str) -> Iterator[Callable[[int], str]]:
    """Start PgBouncer (transaction pooling, `pool_size` server connections): its URL."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if binary is None:
        pytest.skip("pgbouncer not installed (Debian package pgbouncer)")
    server = make_url(database_url)
    if not server.host or "host" in server.query:
        pytest.skip(
            "PostgreSQL listens on a Unix socket here (embedded):"
            " PgBouncer, running as nobody, cannot reach it"
        )
    processes: list[subprocess.Popen[bytes]] = []
    # PgBouncer refuses to run as root: as root it runs as nobody, who cannot enter pytest's
    # private tmp_path, so its files go to a folder of their own.
    scratch = tempfile.TemporaryDirectory(prefix="mnw-pgbouncer-")
    Path(scratch.name).chmod(0o755)

    def start(pool_size: int) -> str:
        folder = Path(scratch.name) / f"pgbouncer{len(processes)}"
        folder.mkdir()
        folder.chmod(0o777)
        port = free_port()
        password = f" password={server.password}" if server.password else ""
        ini = folder / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}"
            f" user={server.username or 'postgres'}{password}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            "auth_type = any\npool_mode = transaction\n"
            f"default_pool_size = {pool_size}\nignore_startup_parameters = options\n"
            f"logfile = {folder / 'pgbouncer.log'}\npidfile = {folder / 'pgbouncer.pid'}\n"
        )
        ini.chmod(0o644)
        argv = [binary, *(["-u", "nobody"] if os.geteuid() == 0 else []), str(ini)]
        processes.append(
            subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        url = server.set(host="127.0.0.1", port=port, password=None).render_as_string(
            hide_password=False
        )
        wait_for(lambda: _connects(url), timeout=20, what="PgBouncer")
        return url

    try:
        yield start
    finally:
        for process in processes:
            stop(process)
        scratch.cleanup()


def _connects(url: str) -> bool:
    try:
        psycopg2.connect(
            url.replace("postgresql+psycopg2://", "postgresql://"), connect_timeout=2
        ).close()
    except psycopg2.OperationalError:
        return False
    return True


def test_a_session_advisory_lock_does_not_hold_through_transaction_pooling(
    pgbouncer: Callable[[int], str],
) -> None:
    url = pgbouncer(1).replace("postgresql+psycopg2://", "postgresql://")
    first, second = psycopg2.connect(url), psycopg2.connect(url)
    try:
        for connection in (first, second):
            connection.autocommit = True
        taken = []
        for connection in (first, second):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(424242)")
                taken.append(cursor.fetchone()[0])
        # Both clients ran on the one server connection, which holds the lock: both "have" it.
        assert taken == [True, True]
        with first.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock_all()")
    finally:
        first.close()
        second.close()


def test_jobs_run_through_transaction_pooling(
    session_factory: object, engine: Engine, pgbouncer: Callable[[int], str], tmp_path: Path
) -> None:
    url = pgbouncer(4)
    env = {"DATABASE_URL": url}
    worker = start_cli(
        ["worker", "--queues", "maintenance", "--concurrency", "1"], tmp_path / "worker.log", **env
    )
    try:
        enqueued = subprocess.run(
            [
                sys.executable,
                "-m",
                "medianest_workers.runtime.cli",
                "enqueue",
                "platform.noop",
                "{}",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert enqueued.returncode == 0, enqueued.stderr
        job_id = next(word for word in enqueued.stdout.replace('"', " ").split() if len(word) == 36)

        def state() -> str | None:
            with engine.connect() as connection:
                found = connection.execute(
                    text("SELECT state FROM mnw_jobs WHERE id = :id"), {"id": job_id}
                ).scalar_one()
            return found if found in ("succeeded", "failed", "dead") else None

        assert wait_for(state, timeout=90, what="the job through PgBouncer") == "succeeded"
    finally:
        stop(worker)
