"""`medianest-workers enqueue` and `medianest-workers jobs list|show|cancel`.

`add_job_commands(subparsers)` registers them on the main parser; each handler takes the
parsed arguments and returns the exit code: 0 done, 1 refused (unknown kind, invalid payload,
no such job, nothing to cancel), and argparse's 2 for malformed arguments. Results are JSON
on stdout (`jobs list` prints a compact table unless `--json`); refusals one line on stderr.
`jobs show` and `jobs list --json` print jobs in the shape GET /v1/jobs/{id} and GET /v1/jobs
answer (the API's JobOut and JobList make both).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Any

from medianest_workers.db.job_states import JobState

if TYPE_CHECKING:  # the handlers import the platform when they run: `--help` and `up` stay light
    from medianest_workers.platform import queries

EXIT_OK = 0
EXIT_REFUSED = 1
PROG = "medianest-workers"
ENQUEUED_BY = "cli"
DEFAULT_LIST_LIMIT = 20


def add_job_commands(subparsers: Any) -> None:
    """Register `enqueue` and `jobs` on the `add_subparsers()` object of the main parser."""
    enqueue_parser = subparsers.add_parser(
        "enqueue", help="enqueue a job: its kind and its payload as a JSON object"
    )
    enqueue_parser.add_argument("kind", metavar="KIND", help="e.g. platform.noop")
    enqueue_parser.add_argument(
        "payload", metavar="JSON", type=_json_object, nargs="?", default={}, help="default: {}"
    )
    enqueue_parser.add_argument(
        "--idempotency-key", metavar="K", type=_non_empty, help="the same key returns the same job"
    )
    enqueue_parser.set_defaults(handler=run_enqueue)

    jobs = subparsers.add_parser("jobs", help="list, show or cancel jobs")
    actions = jobs.add_subparsers(dest="jobs_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="jobs, newest first")
    listing.add_argument("--kind", metavar="K")
    listing.add_argument(
        "--state", metavar="S", choices=[state.value for state in JobState], action="append"
    )
    listing.add_argument(
        "--limit", metavar="N", type=_limit, default=DEFAULT_LIST_LIMIT, help="1..500, default 20"
    )
    listing.add_argument("--cursor", help="the next_cursor of the previous page")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=run_list)
    show = actions.add_parser("show", help="one job, as JSON")
    show.add_argument("job_id", metavar="ID")
    show.set_defaults(handler=run_show)
    cancel = actions.add_parser("cancel", help="cancel a queued job, or stop a running one")
    cancel.add_argument("job_id", metavar="ID")
    cancel.set_defaults(handler=run_cancel)


# --- argument types ------------------------------------------------------------------------


def _json_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON: {exc.msg} at character {exc.pos}"
        ) from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("the payload must be a JSON object, like '{}'")
    return parsed


def _non_empty(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _limit(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    from medianest_workers.platform import queries  # noqa: PLC0415 - see the imports

    if not 1 <= number <= queries.MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be between 1 and {queries.MAX_PAGE_SIZE}")
    return number


# --- handlers ------------------------------------------------------------------------------


def run_enqueue(args: argparse.Namespace) -> int:
    from medianest_workers.platform import queries  # noqa: PLC0415 - see the imports
    from medianest_workers.platform.enqueue import enqueue  # noqa: PLC0415
    from medianest_workers.platform.errors import (  # noqa: PLC0415
        IdempotencyConflictError,
        PayloadInvalidError,
        UnknownJobKindError,
    )

    try:
        result = enqueue(
            args.kind,
            args.payload,
            idempotency_key=args.idempotency_key,
            enqueued_by=ENQUEUED_BY,
        )
    except UnknownJobKindError as exc:
        return _refuse(str(exc))
    except PayloadInvalidError as exc:
        problems = "; ".join(f"{e['field']}: {e['message']}" for e in exc.fields())
        return _refuse(f"invalid payload for {exc.kind}: {problems}")
    except IdempotencyConflictError as exc:
        return _refuse(str(exc))
    view = queries.get_job(result.job_id)
    _print_json(
        {
            "id": result.job_id,
            "kind": result.kind,
            "queue": result.queue,
            "state": view.state if view else None,
            "created": result.created,
            "published": result.published if result.created else None,
        }
    )
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    from medianest_workers.platform import errors, queries  # noqa: PLC0415 - see the imports

    try:
        page = queries.list_jobs(
            kind=args.kind, states=args.state or (), limit=args.limit, cursor=args.cursor
        )
    except errors.InvalidCursorError as exc:
        return _refuse(str(exc))
    if args.json:
        from medianest_workers.api.schemas import JobList, JobOut  # noqa: PLC0415

        listed = JobList(jobs=[JobOut.of(job) for job in page.jobs], next_cursor=page.next_cursor)
        _print_json(listed.model_dump(mode="json"))
        return EXIT_OK
    sys.stdout.write(format_table(page.jobs))
    if page.next_cursor:
        sys.stdout.write(f"more: --cursor {page.next_cursor}\n")
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    from medianest_workers.api.schemas import JobOut  # noqa: PLC0415 - see the imports
    from medianest_workers.platform import queries  # noqa: PLC0415

    job = queries.get_job(args.job_id)
    if job is None:
        return _refuse(f"no job with id {args.job_id!r}")
    _print_json(JobOut.of(job).model_dump(mode="json"))
    return EXIT_OK


def run_cancel(args: argparse.Namespace) -> int:
    from medianest_workers.platform import errors, ledger  # noqa: PLC0415 - see the imports

    try:
        outcome = ledger.cancel(args.job_id)
    except (errors.JobNotFoundError, errors.JobFinishedError) as exc:
        return _refuse(str(exc))
    _print_json(
        {
            "id": outcome.job.id,
            "state": outcome.job.state,
            "cancel_requested": outcome.job.cancel_requested,
            "outcome": "cancelled" if outcome.immediate else "stop requested",
        }
    )
    return EXIT_OK


# --- output --------------------------------------------------------------------------------

_COLUMNS = ("ID", "KIND", "STATE", "TRIES", "ENQUEUED (UTC)", "TOOK")


def format_table(jobs: list[queries.JobView]) -> str:
    """A compact fixed-width table, one job a line."""
    if not jobs:
        return "no jobs\n"
    rows = [_COLUMNS, *(_row(job) for job in jobs)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )


def _row(job: queries.JobView) -> tuple[str, ...]:
    state = job.state + ("*" if job.cancel_requested and not job.terminal else "")
    return (
        job.id,
        job.kind,
        state,
        f"{job.attempts}/{job.max_attempts}",
        _when(job.enqueued_at),
        _took(job.started_at, job.finished_at),
    )


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _took(started: dt.datetime | None, finished: dt.datetime | None) -> str:
    if started is None or finished is None:
        return "-"
    return f"{(finished - started).total_seconds():.1f}s"


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _refuse(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_REFUSED
