"""`medianest-workers`: the operator's command line.

Each subcommand is a small function; configuration errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from medianest_workers.settings import SettingsError, get_settings

EXIT_CONFIG = 2

Handler = Callable[[argparse.Namespace], int]


def _migrate(_args: argparse.Namespace) -> int:
    from medianest_workers.db import migrate  # noqa: PLC0415 - keep `--help` fast

    migrate.upgrade(get_settings().require_database_url())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medianest-workers", description="MediaNest's background-job platform."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    migrate = commands.add_parser("migrate", help="upgrade the database to the latest schema")
    migrate.set_defaults(handler=_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        get_settings()  # a configuration error is reported before anything starts
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        return handler(args)
    except SettingsError as exc:
        print(f"medianest-workers: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
