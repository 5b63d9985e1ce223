"""`medianest-workers`: the operator's command line.

Each subcommand is a small function; configuration errors print one line and exit 2. Every
subcommand but `up` uses the URLs of the `up` running on DATA_DIR when DATABASE_URL /
REDIS_URL are not set (instance.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from medianest_workers.errors import ConfigurationError
from medianest_workers.logs import configure_logging
from medianest_workers.runtime.backup_cli import add_backup_commands
from medianest_workers.runtime.db_cli import add_db_commands
from medianest_workers.runtime.instance import adopt_running_up
from medianest_workers.runtime.jobs_cli import add_job_commands
from medianest_workers.runtime.key_cli import add_rotate_key_command
from medianest_workers.runtime.ops_cli import add_ops_commands
from medianest_workers.runtime.roles import (
    POOLS,
    QUEUES,
    ROLES,
    run_api,
    run_beat,
    run_flower,
    run_up,
    run_worker,
)
from medianest_workers.settings import get_settings

EXIT_CONFIG = 2
#: The database (or another server a command needs) cannot be reached.
EXIT_UNAVAILABLE = 1

Handler = Callable[[argparse.Namespace], int]


def _migrate(_args: argparse.Namespace) -> int:
    from medianest_workers.db import migrate  # noqa: PLC0415 - keep `--help` fast

    migrate.upgrade(get_settings().require_database_url())
    return 0


def _up(args: argparse.Namespace) -> int:
    roles = [role for role in args.roles if not (args.no_flower and role == "flower")]
    if not roles:
        print("medianest-workers: up: no role left to run", file=sys.stderr)
        return EXIT_CONFIG
    return run_up(roles=roles, api_port=args.api_port, flower_port=args.flower_port)


def _api(args: argparse.Namespace) -> int:
    return run_api(host=args.host, port=args.port)


def _worker(args: argparse.Namespace) -> int:
    concurrency = args.concurrency or get_settings().worker_concurrency
    return run_worker(args.queues, concurrency, args.pool)


def _beat(_args: argparse.Namespace) -> int:
    return run_beat()


def _flower(args: argparse.Namespace) -> int:
    return run_flower(address=args.address, port=args.port)


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated subset of `allowed`, in the order given."""

    def parse(value: str) -> list[str]:
        chosen = [part.strip() for part in value.split(",") if part.strip()]
        unknown = [part for part in chosen if part not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"{value!r}: choose from {','.join(allowed)} (comma-separated)"
            )
        return list(dict.fromkeys(chosen))

    return parse


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value}: not a TCP port")
    return port


def _fixed_port(value: str) -> int:
    """A port `up` can wait on and print: 0 (any free port) is refused."""
    port = _port(value)
    if port == 0:
        raise argparse.ArgumentTypeError("0: up needs a fixed port (it waits on it and prints it)")
    return port


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medianest-workers", description="MediaNest's background-job platform."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    migrate = commands.add_parser("migrate", help="upgrade the database to the latest schema")
    migrate.set_defaults(handler=_migrate)

    up = commands.add_parser(
        "up",
        help="run everything on this machine (embedded servers without DATABASE_URL/REDIS_URL)",
    )
    up.add_argument(
        "--roles", type=_choices(ROLES), default=list(ROLES), help=f"default: {','.join(ROLES)}"
    )
    up.add_argument("--no-flower", action="store_true", help="do not start Flower")
    up.add_argument("--api-port", type=_fixed_port, help="default: API_PORT")
    up.add_argument("--flower-port", type=_port, help="default: FLOWER_PORT")
    up.set_defaults(handler=_up)

    api = commands.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", help="default: API_HOST")
    api.add_argument("--port", type=_port, help="default: API_PORT")
    api.set_defaults(handler=_api)

    worker = commands.add_parser("worker", help="run a Celery worker")
    worker.add_argument(
        "--queues", type=_choices(QUEUES), default=list(QUEUES), help=f"of {','.join(QUEUES)}"
    )
    worker.add_argument("--concurrency", type=_positive, help="default: WORKER_CONCURRENCY")
    worker.add_argument("--pool", choices=POOLS, default="prefork")
    worker.set_defaults(handler=_worker)

    beat = commands.add_parser("beat", help="run the scheduler (exactly one per deployment)")
    beat.set_defaults(handler=_beat)

    flower = commands.add_parser("flower", help="run Flower (needs FLOWER_PASSWORD)")
    flower.add_argument("--address", help="default: FLOWER_HOST")
    flower.add_argument("--port", type=_port, help="default: FLOWER_PORT")
    flower.set_defaults(handler=_flower)

    add_job_commands(commands)
    add_backup_commands(commands)
    add_db_commands(commands)
    add_rotate_key_command(commands)
    add_ops_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        get_settings()  # a configuration error is reported before anything starts
        if args.command != "up":
            adopt_running_up()
        configure_logging(logging.INFO)
        return handler(args)
    except ConfigurationError as exc:
        print(f"medianest-workers: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:
        outage = _database_outage(exc)
        if outage is None:
            raise
        print(f"medianest-workers: cannot reach the database: {outage}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _database_outage(error: Exception) -> str | None:
    """The first line of a database connection failure, or None for any other error.

    SQLAlchemy is imported only by the commands that use the database: if it is not loaded,
    the error cannot be one of its own.
    """
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is None or not isinstance(
        error, (sqlalchemy_exc.OperationalError, sqlalchemy_exc.InterfaceError)
    ):
        return None
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
