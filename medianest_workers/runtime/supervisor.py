"""A small process supervisor: `medianest-workers up` runs every role under one of these.

Each child runs in its own process group, so a Ctrl-C at the terminal reaches only the
supervisor, which then stops the children in order of its choosing:

- SIGINT, SIGTERM or SIGHUP asks every child to stop with SIGTERM (a Celery worker finishes
  its running tasks, uvicorn drains its connections); a second signal kills them at once.
- A child may name a second signal that hurries it, sent when it is still running some time
  into the stop (a Celery worker's SIGQUIT: cancel the running tasks, hand their messages back).
- A child still running after the grace period is killed with SIGKILL, with its whole group.
- A child that exits on its own while nothing asked it to is reported, and the others are
  stopped: the supervisor exits non-zero so that an operator (or systemd) notices.
- When a child's main process exits, whatever it left in its process group is killed, and on
  Linux every child gets SIGTERM should the supervisor itself die: no orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

logger = logging.getLogger(__name__)

#: What the supervisor returns when a child died unexpectedly or had to be killed.
EXIT_FAILURE = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_POLL_SECONDS = 0.1
_KILL_WAIT_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildSpec:
    """One process to run: a name for messages, its argv, and its environment (None: ours).

    `hurry_signal`, if set, is sent `hurry_after` seconds into a stop to a child still running
    (it should then stop sooner); the grace period still bounds the whole stop.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    hurry_signal: int | None = None
    hurry_after: float = 0.0


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes]
    returncode: int | None = None
    hurried: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """Start `specs`, wait for a stop signal or a child's death, stop everyone.

    Use it from the main thread (it handles signals), as a context manager: entering installs
    the signal handlers and starts the children, `wait()` blocks and returns the exit code,
    leaving always stops whatever still runs and restores the previous signal handlers.
    """

    def __init__(self, specs: Sequence[ChildSpec], *, grace_seconds: float) -> None:
        if len({spec.name for spec in specs}) != len(specs):
            raise ValueError("child names must be unique")
        self._specs = list(specs)
        self._grace_seconds = grace_seconds
        self._children: list[_Child] = []
        self._signals: list[int] = []
        self._previous_handlers: dict[int, Any] = {}
        self._failed = False

    @property
    def pids(self) -> dict[str, int]:
        """The pid of each started child, by name."""
        return {child.spec.name: child.pid for child in self._children}

    def __enter__(self) -> Supervisor:
        for signum in STOP_SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        try:
            for spec in self._specs:
                self._children.append(_Child(spec, _spawn(spec)))
                logger.info("started %s (pid %d)", spec.name, self._children[-1].pid)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)
            self._previous_handlers.clear()

    @property
    def stopping(self) -> bool:
        """Whether a stop signal came or a child was seen to exit: `wait()` returns at once."""
        return bool(self._signals) or any(child.returncode is not None for child in self._children)

    def wait_until(self, ready: Callable[[], bool], *, timeout: float) -> bool:
        """Poll `ready` until it holds (True); False at a stop signal, a child's exit or timeout.

        After False, `stopping` tells a timeout (False) from the rest.
        """
        deadline = time.monotonic() + timeout
        while not self._signals and not any(_reap(child) for child in self._children):
            if ready():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)
        return False

    def wait(self) -> int:
        """Block until a stop signal or a child's unexpected exit; stop all; the exit code."""
        while not self._signals:
            for child in self._children:
                if _reap(child):
                    logger.error(
                        "%s (pid %d) exited unexpectedly with %s; stopping the others",
                        child.spec.name,
                        child.pid,
                        _describe(child.returncode),
                    )
                    self._failed = True
                    self.stop()
                    return EXIT_FAILURE
            time.sleep(_POLL_SECONDS)
        logger.info("%s received; stopping", signal.Signals(self._signals[0]).name)
        self.stop()
        return EXIT_FAILURE if self._failed else 0

    def stop(self) -> None:
        """SIGTERM every running child, SIGKILL those still running after the grace period."""
        running = [child for child in self._children if not _reap(child)]
        for child in running:
            _signal_pid(child.pid, signal.SIGTERM)
        seen_signals = len(self._signals)
        started = time.monotonic()
        deadline = started + self._grace_seconds
        reason = f"did not stop within {self._grace_seconds:g}s"
        while running and time.monotonic() < deadline:
            if len(self._signals) > seen_signals:
                reason = "was still running at a second stop signal"
                break
            self._hurry(running, time.monotonic() - started)
            time.sleep(_POLL_SECONDS)
            running = [child for child in running if not _reap(child)]
        for child in running:
            logger.error("%s (pid %d) %s; killing it", child.spec.name, child.pid, reason)
            self._failed = True
            _signal_group(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + _KILL_WAIT_SECONDS
        while running and time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
            running = [child for child in running if not _reap(child)]
        for child in running:  # unkillable (stuck in the kernel): name it rather than hang
            logger.error("%s (pid %d) survived SIGKILL", child.spec.name, child.pid)

    @staticmethod
    def _hurry(running: Sequence[_Child], elapsed: float) -> None:
        for child in running:
            signum = child.spec.hurry_signal
            if signum is not None and not child.hurried and elapsed >= child.spec.hurry_after:
                child.hurried = True
                logger.info(
                    "%s (pid %d) still running after %gs; sending %s",
                    child.spec.name,
                    child.pid,
                    child.spec.hurry_after,
                    signal.Signals(signum).name,
                )
                _signal_pid(child.pid, signum)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signum)


def _spawn(spec: ChildSpec) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - argv built by our own code, no shell
        list(spec.argv),
        env=None if spec.env is None else dict(spec.env),
        process_group=0,
        preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 - only async-signal-safe calls
    )


def _die_with_parent(parent_pid: int) -> Any:
    """A preexec_fn: on Linux, SIGTERM the child when the supervisor dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols include libc's

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the supervisor died before prctl took effect
            os._exit(1)

    return preexec


def _reap(child: _Child) -> bool:
    """Whether the child has exited; if so, kill what it left in its group, then reap it.

    The child is waited for without reaping first (WNOWAIT): while it is a zombie its pid, and
    so its process-group id, cannot be reused, so the group kill cannot hit a stranger.
    """
    if child.returncode is not None:
        return True
    try:
        status = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # already reaped by someone else
        child.returncode = child.process.poll()
        return child.returncode is not None
    if status is None:
        return False
    _signal_group(child.pid, signal.SIGKILL)
    child.returncode = child.process.wait()
    return True


def _signal_pid(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _describe(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"signal {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"
