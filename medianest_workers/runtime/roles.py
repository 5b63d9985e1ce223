"""The platform's roles, each run in the current process, and `up`, which runs them all.

`run_api`, `run_worker`, `run_beat` and `run_flower` are what the one-role subcommands (and
so docker-compose) run. `run_up` is the one-machine setup: embedded PostgreSQL and Valkey
when no URL is given, migrations, then every role as a child process under a `Supervisor`.
One `up` runs per DATA_DIR (instance.py), recording there where its servers listen.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from medianest_workers.platform.queues import Queue
from medianest_workers.runtime.instance import (
    UpRecord,
    exclusive_lock,
    remove_record,
    write_record,
)
from medianest_workers.runtime.supervisor import EXIT_FAILURE, STOP_SIGNALS, ChildSpec, Supervisor
from medianest_workers.settings import SettingsError, get_settings, reset_settings_cache

if TYPE_CHECKING:
    from celery import Celery

ROLES = ("api", "worker", "beat", "flower")
QUEUES = tuple(queue.value for queue in Queue)
POOLS = ("prefork", "solo", "threads")
EMBEDDED_DATABASE = "medianest"
API_FACTORY = "medianest_workers.api.app:create_app"
#: `up` says `running` once the API's /healthz answers 200; it gives up after this long.
API_READY_SECONDS = 60.0


def run_api(*, host: str | None = None, port: int | None = None) -> int:
    """Serve the HTTP API with uvicorn until SIGINT/SIGTERM."""
    import uvicorn  # noqa: PLC0415 - each role imports only what it runs

    settings = get_settings()
    settings.require_database_url()
    settings.require_redis_url()
    uvicorn.run(
        API_FACTORY,
        factory=True,
        host=host or settings.api_host,
        port=settings.api_port if port is None else port,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_seconds / 2)),
        log_level="info",
    )
    return 0


def run_worker(queues: Sequence[str], concurrency: int, pool: str) -> int:
    """Run a Celery worker consuming `queues` with `concurrency` processes (or threads).

    `app.Worker` rather than `app.worker_main`: Celery's command line (click, click-repl,
    prompt-toolkit) would add ~25 MB to the worker and to each of its forked processes.
    """
    from celery.utils.nodenames import default_nodename, host_format  # noqa: PLC0415

    app = _celery_app(database=True)
    from medianest_workers.platform.worker_hooks import check_connection_budget  # noqa: PLC0415

    check_connection_budget(processes=concurrency if pool == "prefork" else 1)
    worker = app.Worker(
        hostname=host_format(default_nodename(f"mnw-{'-'.join(queues)}@%h")),
        queues=list(queues),
        concurrency=concurrency,
        pool_cls=pool,
        task_events=True,
        without_gossip=True,
        without_mingle=True,
        loglevel=logging.INFO,
    )
    worker.start()
    return _exit_code(worker.exitcode)


def run_beat() -> int:
    """Run Celery beat (exactly one per deployment) with the app's schedule and scheduler."""
    app = _celery_app(database=True)
    data_dir = get_settings().data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    # `schedule` matters only to Celery's file-based scheduler; the app may configure another.
    app.Beat(loglevel=logging.INFO, schedule=str(data_dir / "celerybeat-schedule")).run()
    return 0


def run_flower(*, address: str | None = None, port: int | None = None) -> int:
    """Run Flower behind basic auth; without FLOWER_PASSWORD it refuses to start."""
    settings = get_settings()
    if settings.flower_password is None:
        raise SettingsError(
            "FLOWER_PASSWORD: not set (Flower's UI and API need a password;"
            " `medianest-workers up` generates one)"
        )
    user, password = settings.flower_user, settings.flower_password.get_secret_value()
    if not user or ":" in user or "," in user:
        raise SettingsError("FLOWER_USER: must be non-empty, without ':' or ','")
    if not password or "," in password:
        raise SettingsError("FLOWER_PASSWORD: must be non-empty, without ','")
    app = _celery_app(database=False)
    # Flower learns task names from events: importing the job modules (and with them
    # SQLAlchemy and the models) would only cost it ~25 MB.
    app.conf.broker_url  # noqa: B018 - reads the settings in first: they set `imports`
    app.conf.imports = []
    return _exit_code(
        app.start(
            [
                "flower",
                f"--address={address or settings.flower_host}",
                f"--port={settings.flower_port if port is None else port}",
                f"--basic-auth={user}:{password}",  # in memory only: never on a command line
                f"--max_tasks={settings.flower_max_tasks}",
                f"--purge_offline_workers={settings.flower_purge_offline_workers_seconds}",
            ]
        )
    )


def _celery_app(*, database: bool) -> Celery:
    settings = get_settings()
    settings.require_redis_url()
    if database:
        settings.require_database_url()
    from medianest_workers.platform.celery_app import app  # noqa: PLC0415

    return app


def _exit_code(code: int | None) -> int:
    return code or 0


# --- up -----------------------------------------------------------------------------------


class StopRequestedError(Exception):
    """A stop signal arrived while `up` was still starting."""


@dataclass
class _StartupSignals:
    """Until the supervisor takes over, stop signals are remembered and raised where safe."""

    received: int | None = None
    interruptible: bool = False

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum
        if self.interruptible:
            raise StopRequestedError(signal.Signals(signum).name)

    def check(self) -> None:
        if self.received is not None:
            raise StopRequestedError(signal.Signals(self.received).name)

    @contextlib.contextmanager
    def interruptible_section(self) -> Iterator[None]:
        self.check()
        self.interruptible = True
        try:
            yield
        finally:
            self.interruptible = False


def run_up(
    *,
    roles: Sequence[str] = ROLES,
    api_port: int | None = None,
    flower_port: int | None = None,
) -> int:
    """Run every role on this machine until Ctrl-C or SIGTERM; the exit code.

    Embedded servers are started (and stopped at the end) for an unset DATABASE_URL or
    REDIS_URL, the database is migrated, then each role runs as a supervised child process.
    Another `up` on the same DATA_DIR is an AlreadyRunningError, raised before anything starts.
    """
    data_dir = get_settings().data_dir
    startup = _StartupSignals()
    previous = {signum: signal.signal(signum, startup.handler) for signum in STOP_SIGNALS}
    try:
        with exclusive_lock(data_dir), contextlib.ExitStack() as servers:
            remove_record(data_dir)  # left by an `up` that was killed
            code = _start(servers, startup, roles=roles, api_port=api_port, flower_port=flower_port)
    except StopRequestedError as exc:
        _say("stopped", f"{exc} received while starting")
        return 0
    else:
        _say("stopped", f"exit code {code}")
        return code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _start(
    servers: contextlib.ExitStack,
    startup: _StartupSignals,
    *,
    roles: Sequence[str],
    api_port: int | None,
    flower_port: int | None,
) -> int:
    _say("database", *_database(servers))
    _say("redis", *_redis(servers))
    with startup.interruptible_section():
        code = _migrate()
    if code != 0:
        _say("migrate", f"failed (exit code {code})")
        return code
    startup.check()
    code = _supervise(servers, startup, roles=roles, api_port=api_port, flower_port=flower_port)
    if "worker" in roles:
        _hand_back_jobs()
    return code


def _supervise(
    servers: contextlib.ExitStack,
    startup: _StartupSignals,
    *,
    roles: Sequence[str],
    api_port: int | None,
    flower_port: int | None,
) -> int:
    settings = get_settings()
    env = dict(os.environ)
    where: dict[str, str] = {}
    specs: list[ChildSpec] = []
    api_url = flower_url = None
    if "api" in roles:
        port = settings.api_port if api_port is None else api_port
        specs.append(_role_spec("api", ["--port", str(port)], env))
        api_url = f"http://{_url_host(settings.api_host)}:{port}"
        where["api"] = api_url
    if "worker" in roles:
        concurrency, pool = settings.worker_concurrency, "prefork"
        arguments = ["--queues", ",".join(QUEUES), "--concurrency", str(concurrency)]
        # SIGTERM: a warm shutdown (running jobs finish). Still running halfway through the
        # grace, SIGQUIT: a cold one (running jobs are cancelled, their messages restored to
        # the queue), so that the worker exits on its own before the grace runs out.
        specs.append(
            _role_spec(
                "worker",
                [*arguments, "--pool", pool],
                env,
                hurry_signal=signal.SIGQUIT,
                hurry_after=settings.shutdown_grace_seconds / 2,
            )
        )
        where["worker"] = f"queues {','.join(QUEUES)}, {concurrency} {pool} processes"
    if "beat" in roles:
        specs.append(_role_spec("beat", [], env))
        where["beat"] = "one scheduler"
    generated_password = None
    if "flower" in roles:
        port = settings.flower_port if flower_port is None else flower_port
        flower_env = env
        if settings.flower_password is None:
            generated_password = secrets.token_urlsafe(18)
            flower_env = {**env, "FLOWER_PASSWORD": generated_password}
        specs.append(_role_spec("flower", ["--port", str(port)], flower_env))
        flower_url = f"http://{_url_host(settings.flower_host)}:{port}"
        where["flower"] = f"{flower_url} (user {settings.flower_user})"
    with Supervisor(specs, grace_seconds=settings.shutdown_grace_seconds) as supervisor:
        startup.check()  # a signal that came just before the supervisor's handlers
        for name, pid in supervisor.pids.items():
            _say(name, f"{where[name]}  (pid {pid})")
        if generated_password is not None:
            _say("flower", f"password (generated for this run, shown once): {generated_password}")
        if api_url is not None and not supervisor.wait_until(
            _answers(f"{api_url}/healthz"), timeout=API_READY_SECONDS
        ):
            if not supervisor.stopping:
                _say("api", f"/healthz did not answer 200 within {API_READY_SECONDS:g}s; stopping")
                return EXIT_FAILURE
            return supervisor.wait()  # a stop signal, or a role that died: wait() reports it
        record = UpRecord(
            pid=os.getpid(),
            database_url=settings.require_database_url(),
            redis_url=settings.require_redis_url(),
            api_url=api_url,
            flower_url=flower_url,
        )
        servers.callback(remove_record, settings.data_dir)  # before the servers stop
        write_record(settings.data_dir, record)
        _say("running", "Ctrl-C or SIGTERM stops everything")
        return supervisor.wait()


def _role_spec(
    role: str,
    arguments: list[str],
    env: Mapping[str, str],
    *,
    hurry_signal: int | None = None,
    hurry_after: float = 0.0,
) -> ChildSpec:
    argv = [sys.executable, "-m", "medianest_workers.runtime.cli", role, *arguments]
    return ChildSpec(
        name=role, argv=argv, env=env, hurry_signal=hurry_signal, hurry_after=hurry_after
    )


def _url_host(host: str) -> str:
    """A host to reach a server listening on `host` (any address: loopback), for a URL."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"[{host}]" if ":" in host else host


def _answers(url: str) -> Callable[[], bool]:
    """A check: whether GET `url` answers 200 (within 2 s)."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - http://ours
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    return check


def _hand_back_jobs() -> None:
    """One rescuer round once the worker stopped: its unfinished jobs are queued again now."""
    from medianest_workers.system.service import rescue_now  # noqa: PLC0415 - only at the end

    try:
        counts = rescue_now()
    except Exception as exc:  # noqa: BLE001 - the next rescuer (any worker's) does it later
        _say("rescuer", f"failed ({type(exc).__name__}: {exc}); jobs are rescued later")
        return
    if counts.get("requeued_running"):
        _say("rescuer", f"{counts['requeued_running']} running job(s) queued again")


def _database(servers: contextlib.ExitStack) -> tuple[str, ...]:
    """The database to use: DATABASE_URL, else an embedded server's (started here)."""
    settings = get_settings()
    if settings.database_url is not None:
        return (mask_url(settings.database_url),)
    from medianest_workers.db import admin  # noqa: PLC0415 - each role imports what it runs
    from medianest_workers.runtime.embedded import EmbeddedPostgres  # noqa: PLC0415

    pgdata = settings.data_dir / "postgres"
    server = EmbeddedPostgres(pgdata, keep=True)
    servers.callback(server.stop)
    with _embedded("DATABASE_URL"):
        admin.create_database(server.start(), EMBEDDED_DATABASE, exist_ok=True)
    _export("DATABASE_URL", server.url(EMBEDDED_DATABASE))
    return mask_url(server.url(EMBEDDED_DATABASE)), f"(embedded, data in {pgdata})"


def _redis(servers: contextlib.ExitStack) -> tuple[str, ...]:
    """The Redis to use: REDIS_URL, else an embedded Valkey's (started here)."""
    settings = get_settings()
    if settings.redis_url is not None:
        return (mask_url(settings.redis_url),)
    from medianest_workers.runtime.embedded import EmbeddedValkey  # noqa: PLC0415

    data_dir = settings.data_dir / "valkey"
    server = EmbeddedValkey(data_dir, persist=True)
    servers.callback(server.stop)
    with _embedded("REDIS_URL"), _sigint_blocked():
        url = server.start()
    _export("REDIS_URL", url)
    return mask_url(get_settings().require_redis_url()), f"(embedded, data in {data_dir})"


@contextlib.contextmanager
def _embedded(variable: str) -> Iterator[None]:
    """A missing `embedded` extra becomes a one-line configuration error naming `variable`."""
    from medianest_workers.runtime.embedded import EmbeddedUnavailableError  # noqa: PLC0415

    try:
        yield
    except EmbeddedUnavailableError as exc:
        raise SettingsError(f"{variable}: not set, and {exc}") from None


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Processes started inside inherit a blocked SIGINT (the mask survives exec).

    Embedded Valkey shares our process group, so a Ctrl-C at the terminal would reach it
    too, and it would quit before the workers that use it; this way only we stop it, last.
    A Ctrl-C that arrives meanwhile is delivered to us when the block is lifted.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _export(name: str, value: str) -> None:
    """Put a variable in our environment, which every child inherits, and re-read settings."""
    os.environ[name] = value
    reset_settings_cache()


def _migrate() -> int:
    """`medianest-workers migrate` in a child process, so that `up` itself stays small."""
    command = [sys.executable, "-m", "medianest_workers.runtime.cli", "migrate"]
    return subprocess.run(command, check=False).returncode  # noqa: S603 - our own argv


def mask_url(url: str) -> str:
    """`url` with its password, if any, replaced by `***`."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _say(what: str, *details: str) -> None:
    print(f"medianest-workers up: {what:<9}", *details, flush=True)
