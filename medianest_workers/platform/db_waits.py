"""Database waits that a job's soft time limit can interrupt (installed in worker children).

psycopg2 normally waits for the server inside libpq, where no Python signal handler runs
until the server answers: a job whose backend is stopped or hung (it cannot enforce its own
statement_timeout then) would ignore its soft time limit and hang its child until the hard
limit kills it. With this wait callback psycopg2 waits in `poll()` here instead, so the soft
limit's SoftTimeLimitExceeded is raised in the job like anywhere else. The socket of the
connection it interrupts is shut down at once (psycopg2 holds the connection's lock here, so
it cannot be closed, and a rollback would wait on the same silent server): what follows on it
fails at once, and SQLAlchemy is told it lost that connection (`handle_error`): it discards it
without rolling back on it, and the soft limit's exception, not a "connection closed", is what
the job raises.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext


def wait_interruptibly(connection: Any) -> None:
    """psycopg2's wait callback: wait on the socket in Python, close it when interrupted."""
    while True:
        state = connection.poll()  # the server's errors (QueryCanceled, ...) propagate as usual
        if state == psycopg2.extensions.POLL_OK:
            return
        if state == psycopg2.extensions.POLL_READ:
            events = select.POLLIN
        elif state == psycopg2.extensions.POLL_WRITE:
            events = select.POLLOUT
        else:
            raise psycopg2.OperationalError(f"unexpected state from poll(): {state}")
        poller = select.poll()
        poller.register(connection.fileno(), events)
        try:
            poller.poll()
        except BaseException:  # a signal handler's exception: the soft limit, a shutdown
            _shut_down(connection.fileno())
            raise


def _shut_down(fd: int) -> None:
    """Shut the socket down for both directions (through a duplicate of its descriptor, so
    that psycopg2 still closes its own)."""
    with socket.socket(fileno=os.dup(fd)) as duplicate, contextlib.suppress(OSError):
        duplicate.shutdown(socket.SHUT_RDWR)


def _discard_interrupted(context: ExceptionContext) -> None:
    """A wait interrupted by a signal shut its connection: a lost connection to SQLAlchemy."""
    if isinstance(context.original_exception, psycopg2.Error) or context.connection is None:
        return
    proxied = context.connection.connection
    raw = getattr(proxied, "dbapi_connection", None)
    if raw is not None and getattr(raw, "closed", 0):
        context.is_disconnect = True


def install() -> None:
    """Make every psycopg2 connection of this process wait interruptibly."""
    psycopg2.extensions.set_wait_callback(wait_interruptibly)
    if not event.contains(Engine, "handle_error", _discard_interrupted):
        event.listen(Engine, "handle_error", _discard_interrupted)
