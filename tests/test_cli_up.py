"""`medianest-workers up` as an operator runs it: a real process tree, stopped by SIGTERM.

Most runs use this test run's servers (a scratch database, which `up` migrates, and a Redis key
prefix of their own); one removes DATABASE_URL/REDIS_URL, so `up` starts and stops its
embedded PostgreSQL and Valkey under a temporary DATA_DIR, and the command line finds them
through DATA_DIR/up.json. Every process a run leaves behind is looked for by pid, and killed
in `finally` whatever happened.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import pytest

from medianest_workers.runtime.cli import main
from medianest_workers.runtime.instance import (
    AlreadyRunningError,
    UpRecord,
    exclusive_lock,
    read_record,
)
from medianest_workers.runtime.roles import ROLES, mask_url
from medianest_workers.settings import reset_settings_cache
from tests.helpers import alive, free_port, wait_for

GRACE_SECONDS = 15
WORKER = "mnw-media-downloads-health-maintenance@"


def descendants(root: int) -> set[int]:
    """Every live process below `root`."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {pid for pid in found if alive(pid)}


def processes_using(folder: Path) -> list[str]:
    """Live processes whose command line or working directory lies in `folder`."""
    hits = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not alive(int(entry.name)):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(folder) in cmdline or cwd.startswith(str(folder)):
            hits.append(f"{entry.name}: {cmdline}")
    return hits


def http_status(url: str, auth: tuple[str, str] | None = None) -> int | None:
    request = urllib.request.Request(url)  # noqa: S310 - loopback URLs we built
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@dataclass
class Up:
    """A running `medianest-workers up` and what it printed."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    seen: set[int] = field(default_factory=set)

    def output(self) -> str:
        return self.stdout.read_text()

    def errors(self) -> str:
        return self.stderr.read_text()

    def wait_running(self) -> None:
        def running() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"up exited early:\n{self.output()}\n{self.errors()[-4000:]}")
            return "medianest-workers up: running" in self.output()

        wait_for(running, 120, "up to start every role")

    def role_pid(self, role: str) -> int:
        found = re.search(rf"^medianest-workers up: {role} .*\(pid (\d+)\)$", self.output(), re.M)
        assert found, self.output()
        return int(found.group(1))

    def remember_processes(self) -> set[int]:
        self.seen |= descendants(self.process.pid)
        return self.seen

    def stop(self) -> int:
        """SIGTERM to `up` alone, as systemd or docker send it; the exit code."""
        self.remember_processes()
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=GRACE_SECONDS + 30)

    def interrupt(self) -> int:
        """SIGINT to `up`'s whole process group, as a Ctrl-C at a terminal; the exit code."""
        self.remember_processes()
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=GRACE_SECONDS + 30)


@pytest.fixture
def run_up(tmp_path: Path) -> Iterator[Callable[..., Up]]:
    started: list[Up] = []

    def start(arguments: list[str], env: dict[str, str]) -> Up:
        index = len(started)
        stdout, stderr = tmp_path / f"up{index}.out", tmp_path / f"up{index}.err"
        command = [sys.executable, "-m", "medianest_workers.runtime.cli", "up", *arguments]
        with stdout.open("wb") as out, stderr.open("wb") as err:
            # A process group of its own, like a shell's job: see Up.interrupt.
            process = subprocess.Popen(command, stdout=out, stderr=err, env=env, process_group=0)
        up = Up(process, stdout, stderr)
        started.append(up)
        return up

    try:
        yield start
    finally:
        for up in started:
            if up.process.poll() is None:
                up.remember_processes()
            for pid in [up.process.pid, *up.seen]:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            up.process.wait(timeout=10)


def up_environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        **variables,
    }
    env.pop("FLOWER_PASSWORD", None)
    return env


API_KEY = "up-test-key"


def job_flows_through_every_role(api: str, flower_workers: str, auth: tuple[str, str]) -> None:
    """A job enqueued over HTTP runs on the worker, Flower lists both, /metrics counts it."""
    headers = {"X-API-Key": API_KEY}
    flower_tasks = flower_workers.replace("/api/workers", "/api/tasks")

    def run_job() -> str:
        answer = httpx.post(f"{api}/v1/jobs", json={"kind": "platform.noop"}, headers=headers)
        assert answer.status_code == 202, answer.text
        location = f"{api}{answer.headers['Location']}"
        wait_for(
            lambda: httpx.get(location, headers=headers).json()["state"] == "succeeded",
            60,
            "the job to succeed",
        )
        return str(answer.json()["id"])

    def flower_lists(job_id: str) -> bool:
        return job_id in httpx.get(flower_tasks, auth=auth, timeout=30).json()

    def workers() -> dict[str, object]:
        return httpx.get(f"{flower_workers}?refresh=1", auth=auth, timeout=30).json()

    wait_for(
        lambda: any(name.startswith(WORKER) for name in workers()),
        60,
        "Flower to list the worker",
    )
    # Flower learns of tasks from events, which it only sees once it has subscribed: wait for
    # a first job to show up there, then follow a second one end to end.
    wait_for(lambda: flower_lists(run_job()), 60, "Flower to receive task events")
    job_id = run_job()
    wait_for(lambda: flower_lists(job_id), 30, "Flower to list the task")
    metrics = httpx.get(f"{api}/metrics").text
    counted = re.search(
        r'^mnw_jobs\{kind="platform.noop",state="succeeded"\} (\d+)\.0$', metrics, re.M
    )
    assert counted and int(counted.group(1)) >= 2, metrics


def cli(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    """`medianest-workers ARGUMENTS` in a process of its own, with `env`."""
    command = [sys.executable, "-m", "medianest_workers.runtime.cli", *arguments]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def show(env: dict[str, str], job_id: str) -> dict[str, object]:
    shown = cli(env, "jobs", "show", job_id)
    assert shown.returncode == 0, shown.stderr
    job: dict[str, object] = json.loads(shown.stdout)
    return job


def without_urls(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name not in ("DATABASE_URL", "REDIS_URL")}


def worker_ready(up: Up) -> None:
    wait_for(lambda: WORKER in up.errors(), 60, "the worker to start")
    wait_for(lambda: " ready." in up.errors(), 60, "the worker to be ready")


@pytest.mark.slow
def test_up_runs_the_roles_and_stops_them_all_on_sigterm(
    run_up: Callable[..., Up], scratch_database: str, redis_prefix: str, tmp_path: Path
) -> None:
    api_port, flower_port = free_port(), free_port()
    env = up_environment(
        tmp_path,
        API_KEYS=API_KEY,
        DATABASE_URL=scratch_database,  # an empty database: `up` migrates it first
        REDIS_KEY_PREFIX=f"{redis_prefix}up-{uuid.uuid4().hex[:6]}:",
    )
    record_path = Path(env["DATA_DIR"]) / "up.json"
    arguments = ["--roles", ",".join(ROLES), "--api-port", str(api_port)]
    up = run_up([*arguments, "--flower-port", str(flower_port)], env)

    up.wait_running()
    healthz = f"http://127.0.0.1:{api_port}/healthz"
    assert http_status(healthz) == 200, "`running` is said once the API answers"
    output = up.output()
    assert re.search(r"^medianest-workers up: database +postgresql://\S+$", output, re.M)
    assert re.search(r"^medianest-workers up: redis +redis://\S+$", output, re.M)
    assert json.loads(record_path.read_text()) == {
        "pid": up.process.pid,
        "database_url": scratch_database,
        "redis_url": env["REDIS_URL"],
        "api_url": f"http://127.0.0.1:{api_port}",
        "flower_url": f"http://127.0.0.1:{flower_port}",
    }
    worker_ready(up)
    password = re.search(r"shown once\): (\S+)$", output, re.M)
    assert password, output
    flower = f"http://127.0.0.1:{flower_port}/api/workers"
    wait_for(lambda: http_status(flower) is not None, 60, "Flower to listen")
    assert http_status(flower) == 401
    assert http_status(flower, ("admin", "wrong")) == 401
    assert http_status(flower, ("admin", password.group(1))) == 200
    auth = ("admin", password.group(1))
    job_flows_through_every_role(f"http://127.0.0.1:{api_port}", flower, auth)
    role_pids = {role: up.role_pid(role) for role in ROLES}
    processes = up.remember_processes()
    assert set(role_pids.values()) <= processes
    pool = descendants(role_pids["worker"])
    assert len(pool) == 2, "one worker with two prefork processes"

    assert up.stop() == 0

    assert not [pid for pid in processes if alive(pid)], up.errors()[-4000:]
    assert "medianest-workers up: stopped   exit code 0" in up.output()
    assert not record_path.exists(), "up.json goes with `up`"


@pytest.mark.slow
def test_up_says_running_only_once_the_api_answers(
    run_up: Callable[..., Up], database_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = up_environment(tmp_path, DATABASE_URL=database_url, REDIS_KEY_PREFIX=redis_prefix)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = run_up(["--roles", "api", "--api-port", str(port)], env)  # cannot listen there

        assert up.process.wait(timeout=120) == 1

    assert "medianest-workers up: running" not in up.output()
    assert re.search(r"api \(pid \d+\) exited unexpectedly", up.errors()), up.errors()[-4000:]
    assert "medianest-workers up: stopped   exit code 1" in up.output()
    assert not (Path(env["DATA_DIR"]) / "up.json").exists()


@pytest.mark.slow
def test_up_without_urls_runs_embedded_servers_the_cli_finds_and_stops_them_on_ctrl_c(
    run_up: Callable[..., Up], tmp_path: Path
) -> None:
    env = without_urls(up_environment(tmp_path))
    data_dir = Path(env["DATA_DIR"])
    record_path = data_dir / "up.json"
    up = run_up(["--roles", "worker"], env)

    up.wait_running()
    worker_ready(up)
    output = up.output()
    database = re.search(r"^medianest-workers up: database +(\S+) \(embedded", output, re.M)
    redis = re.search(r"^medianest-workers up: redis +(\S+) \(embedded", output, re.M)
    assert database and database.group(1).startswith("postgresql://"), output
    assert "/medianest?" in database.group(1)
    assert redis and redis.group(1).startswith("redis://127.0.0.1:"), output
    assert processes_using(data_dir), "the embedded servers run from the data folder"

    # Where up's servers listen, for the command line: readable by its owner only.
    assert record_path.stat().st_mode & 0o777 == 0o600
    record = json.loads(record_path.read_text())
    assert record["pid"] == up.process.pid
    assert mask_url(record["database_url"]) == database.group(1)
    assert mask_url(record["redis_url"]) == redis.group(1)
    assert record["api_url"] is None and record["flower_url"] is None
    enqueued = cli(env, "enqueue", "platform.noop")
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = json.loads(enqueued.stdout)["id"]
    wait_for(lambda: show(env, job_id)["state"] == "succeeded", 60, "the job to succeed")
    listed = cli(env, "jobs", "list")
    assert listed.returncode == 0 and job_id in listed.stdout, listed.stderr

    # A second `up` on the same data folder is refused before it starts anything.
    second = run_up(["--roles", "worker"], env)
    assert second.process.wait(timeout=60) == 2
    assert second.errors() == (
        f"medianest-workers: up: already running on {data_dir} (pid {up.process.pid});"
        " stop it first, or give this one another DATA_DIR\n"
    )
    assert second.output() == ""
    assert up.process.poll() is None, "the first `up` runs on"

    assert up.interrupt() == 0

    assert not record_path.exists(), "up.json goes with `up`"
    wait_for(lambda: not processes_using(data_dir), 10, "the embedded servers to stop")
    valkey_log = (data_dir / "valkey" / "valkey.log").read_text()
    assert "Received SIGINT" not in valkey_log, "the terminal's Ctrl-C must not reach Valkey"
    assert "Received SIGTERM" in valkey_log, "`up` stops Valkey itself, after the roles"
    assert not [pid for pid in up.seen if alive(pid)]
    assert (data_dir / "postgres" / "PG_VERSION").is_file(), "the data folder is kept"
    port = int(redis.group(1).rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "Valkey no longer listens"
    after = cli(env, "jobs", "list")
    assert after.returncode == 2
    assert after.stderr == (
        "medianest-workers: DATABASE_URL: not set (or run `medianest-workers up`)\n"
    )


@pytest.mark.slow
def test_ctrl_c_during_a_job_hands_it_back_and_the_next_up_runs_it_once(
    run_up: Callable[..., Up], scratch_database: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = up_environment(
        tmp_path,
        DATABASE_URL=scratch_database,
        REDIS_KEY_PREFIX=f"{redis_prefix}up-{uuid.uuid4().hex[:6]}:",
    )
    up = run_up(["--roles", "worker"], env)
    up.wait_running()
    worker_ready(up)
    enqueued = cli(env, "enqueue", "platform.noop", '{"sleep": 25}')
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = json.loads(enqueued.stdout)["id"]
    wait_for(lambda: show(env, job_id)["state"] == "running", 30, "the job to start")

    interrupted = time.monotonic()
    assert up.interrupt() == 0, up.errors()[-4000:]

    took = time.monotonic() - interrupted
    assert took < GRACE_SECONDS, "the worker stopped on its own, before the grace ran out"
    errors = up.errors()
    assert "killing it" not in errors
    assert "still running after 7.5s; sending SIGQUIT" in errors
    assert "Restoring 1 unacknowledged message(s)" in errors, "the job's message is back"
    assert not [pid for pid in up.seen if alive(pid)]
    # The rescuer round `up` runs last counts the job of a worker that is gone as lost.
    job = show(env, job_id)
    assert (job["state"], job["attempts"]) == ("queued", 1), job
    assert "1 running job(s) queued again" in up.output()

    again = run_up(["--roles", "worker"], env)
    again.wait_running()
    wait_for(lambda: show(env, job_id)["state"] == "succeeded", 60, "the job to succeed")
    assert show(env, job_id)["attempts"] == 2, "once interrupted, once to the end"
    assert again.stop() == 0
    assert show(env, job_id)["state"] == "succeeded"


#: Holds DATA_DIR's lock and writes up.json as `up` does (argv: DATA_DIR, a record as JSON).
HOLD_LOCK = """
import json, os, sys, time
from pathlib import Path
from medianest_workers.runtime.instance import UpRecord, exclusive_lock, write_record

data_dir = Path(sys.argv[1])
with exclusive_lock(data_dir):
    write_record(data_dir, UpRecord(**{**json.loads(sys.argv[2]), "pid": os.getpid()}))
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_killed_up_blocks_neither_the_next_up_nor_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    record = UpRecord(pid=0, database_url="postgresql://nowhere/x", redis_url="redis://nowhere:1/0")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(data_dir), json.dumps(asdict(record))],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        with (
            pytest.raises(AlreadyRunningError, match=rf"\(pid {holder.pid}\)"),
            exclusive_lock(data_dir),
        ):
            pass
        monkeypatch.setenv("DATA_DIR", str(data_dir))
        reset_settings_cache()
        try:
            assert main(["up", "--roles", "worker"]) == 2
        finally:
            reset_settings_cache()
        assert capsys.readouterr().err.startswith("medianest-workers: up: already running on")
        assert read_record(data_dir) == UpRecord(**{**asdict(record), "pid": holder.pid})
    finally:
        holder.kill()
        holder.wait(timeout=10)

    assert read_record(data_dir) is None, "the record of a dead `up` is ignored"
    with exclusive_lock(data_dir):  # the kernel dropped the dead holder's lock
        pass
    env = without_urls({**os.environ, "DATA_DIR": str(data_dir)})
    listed = cli(env, "jobs", "list")
    assert listed.returncode == 2
    assert "DATABASE_URL: not set" in listed.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://mnw:s3cret@db:5432/medianest", "postgresql://mnw:***@db:5432/medianest"),
        (
            "postgresql://postgres:@/medianest?host=/tmp/x",
            "postgresql://postgres:@/medianest?host=/tmp/x",
        ),
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
    ],
)
def test_printed_urls_hide_passwords(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize(
    "arguments",
    [
        ["up", "--roles", "api,cron"],
        ["up", "--api-port", "70000"],
        ["up", "--api-port", "0"],
        ["worker", "--queues", "media,videos"],
        ["worker", "--concurrency", "0"],
        ["worker", "--pool", "gevent"],
    ],
)
def test_bad_flags_are_refused_naming_the_value(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(arguments)
    assert exit_.value.code == 2
    assert arguments[-1] in capsys.readouterr().err


def test_up_refuses_to_run_no_role(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--roles", "flower", "--no-flower"]) == 2
    assert "no role left to run" in capsys.readouterr().err


def test_flower_refuses_to_start_without_a_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FLOWER_PASSWORD", raising=False)
    reset_settings_cache()
    try:
        assert main(["flower"]) == 2
    finally:
        reset_settings_cache()
    assert capsys.readouterr().err.startswith("medianest-workers: FLOWER_PASSWORD: not set")


def test_flower_refuses_a_password_it_cannot_pass_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOWER_PASSWORD", "one,two")
    reset_settings_cache()
    try:
        assert main(["flower"]) == 2
    finally:
        reset_settings_cache()
    assert "FLOWER_PASSWORD: must be non-empty, without ','" in capsys.readouterr().err
