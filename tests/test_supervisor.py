"""The process supervisor behind `medianest-workers up`, with trivial children.

Each test runs a supervisor in a process of its own (it handles signals), whose children are
small Python programs; it prints its children's pids as one JSON line. Every pid a test
learns of is killed in `finally`, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from medianest_workers.runtime.supervisor import EXIT_FAILURE, ChildSpec, Supervisor
from tests.helpers import alive, wait_for

SUPERVISE = """
import json, logging, os, sys
from medianest_workers.runtime.supervisor import ChildSpec, Supervisor

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
specs = [ChildSpec(name, argv, **options) for name, argv, options in json.loads(sys.argv[1])]
with Supervisor(specs, grace_seconds=float(sys.argv[2])) as supervisor:
    print(json.dumps(supervisor.pids), flush=True)
    if len(sys.argv) > 3:  # wait until a file exists, for at most argv[4] seconds
        flag, timeout = sys.argv[3], float(sys.argv[4])
        ready = supervisor.wait_until(lambda: os.path.exists(flag), timeout=timeout)
        print(json.dumps({"ready": ready, "stopping": supervisor.stopping}), flush=True)
    code = supervisor.wait()
sys.exit(code)
"""

SLEEPER = "import time; print('ready', flush=True); time.sleep(120)"
IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('ready', flush=True); time.sleep(120)"
)
#: Ignores SIGTERM, exits 0 at SIGQUIT (as a Celery worker's cold shutdown ends).
HURRIED_BY_SIGQUIT = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " signal.signal(signal.SIGQUIT, lambda *_: sys.exit(0));"
    " print('ready', flush=True); time.sleep(120)"
)
DIES_SOON = "import time; print('ready', flush=True); time.sleep(1); raise SystemExit(3)"
#: Leaves a grandchild in its process group, then dies (at once, or on SIGTERM).
WITH_GRANDCHILD = (
    "import subprocess, sys, time;"
    " p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
    " print('grandchild', p.pid, flush=True); time.sleep({lifetime})"
)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@dataclass
class Supervised:
    """A supervisor process running the given children, and what it printed."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    known_pids: set[int] = field(default_factory=set)

    def output(self) -> str:
        return self.stdout.read_text()

    def errors(self) -> str:
        return self.stderr.read_text()

    def children(self) -> dict[str, int]:
        wait_for(lambda: "{" in self.output(), 20, "the supervisor's pid line")
        line = next(line for line in self.output().splitlines() if line.startswith("{"))
        pids: dict[str, int] = json.loads(line)
        self.known_pids.update(pids.values())
        return pids

    def readiness(self) -> dict[str, bool]:
        """What `wait_until` returned, and `stopping` then."""
        wait_for(lambda: '{"ready"' in self.output(), 30, "the supervisor's readiness line")
        line = next(line for line in self.output().splitlines() if line.startswith('{"ready"'))
        answer: dict[str, bool] = json.loads(line)
        return answer

    def wait_ready(self, count: int) -> None:
        wait_for(lambda: self.output().count("ready") >= count, 20, f"{count} ready children")

    def grandchildren(self, count: int) -> list[int]:
        wait_for(lambda: self.output().count("grandchild") >= count, 20, f"{count} grandchildren")
        pids = [int(pid) for pid in re.findall(r"^grandchild (\d+)$", self.output(), re.M)]
        self.known_pids.update(pids)
        return pids

    def send(self, signum: int) -> float:
        """Send `signum` to the supervisor; the monotonic time it was sent."""
        self.process.send_signal(signum)
        return time.monotonic()

    def exit_code(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., Supervised]]:
    started: list[Supervised] = []

    def start(
        children: dict[str, list[str]],
        *,
        grace: float,
        options: dict[str, dict[str, object]] | None = None,
        wait_until: tuple[Path, float] | None = None,
    ) -> Supervised:
        index = len(started)
        stdout, stderr = tmp_path / f"out{index}", tmp_path / f"err{index}"
        specs = [[name, argv, (options or {}).get(name, {})] for name, argv in children.items()]
        extra = [] if wait_until is None else [str(wait_until[0]), str(wait_until[1])]
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-c", SUPERVISE, json.dumps(specs), str(grace), *extra],
                stdout=out,
                stderr=err,
            )
        supervised = Supervised(process, stdout, stderr, {process.pid})
        started.append(supervised)
        return supervised

    try:
        yield start
    finally:
        for supervised in started:
            for pid in supervised.known_pids:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            supervised.process.wait(timeout=10)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_stops_every_child_within_the_grace(
    supervise: Callable[..., Supervised], signum: int
) -> None:
    supervised = supervise({"one": python(SLEEPER), "two": python(SLEEPER)}, grace=10)
    pids = supervised.children()
    supervised.wait_ready(2)
    assert all(os.getpgid(pid) == pid for pid in pids.values()), "own process groups"

    sent = supervised.send(signum)
    assert supervised.exit_code(timeout=10) == 0

    assert time.monotonic() - sent < 5, "stopped by the forwarded signal, not by the grace"
    assert not [pid for pid in pids.values() if alive(pid)]
    assert f"{signal.Signals(signum).name} received; stopping" in supervised.errors()


def test_a_child_that_dies_stops_the_others_and_is_reported(
    supervise: Callable[..., Supervised],
) -> None:
    supervised = supervise({"steady": python(SLEEPER), "fragile": python(DIES_SOON)}, grace=10)
    pids = supervised.children()

    assert supervised.exit_code(timeout=15) == EXIT_FAILURE

    errors = supervised.errors()
    assert f"fragile (pid {pids['fragile']}) exited unexpectedly with exit code 3" in errors
    assert "stopping the others" in errors
    assert not [pid for pid in pids.values() if alive(pid)]


def test_a_child_ignoring_sigterm_is_killed_after_the_grace(
    supervise: Callable[..., Supervised],
) -> None:
    grace = 1.5
    supervised = supervise(
        {"stubborn": python(IGNORES_SIGTERM), "polite": python(SLEEPER)}, grace=grace
    )
    pids = supervised.children()
    supervised.wait_ready(2)  # SIGTERM is ignored from here on

    sent = supervised.send(signal.SIGTERM)
    assert supervised.exit_code(timeout=grace + 10) == EXIT_FAILURE

    assert time.monotonic() - sent >= grace
    assert f"stubborn (pid {pids['stubborn']}) did not stop within {grace:g}s" in (
        supervised.errors()
    )
    assert "polite" not in supervised.errors().partition("did not stop")[2]
    assert not [pid for pid in pids.values() if alive(pid)]


def test_a_second_signal_kills_without_waiting_for_the_grace(
    supervise: Callable[..., Supervised],
) -> None:
    supervised = supervise({"stubborn": python(IGNORES_SIGTERM)}, grace=60)
    pids = supervised.children()
    supervised.wait_ready(1)

    sent = supervised.send(signal.SIGINT)
    time.sleep(0.5)
    supervised.send(signal.SIGINT)
    assert supervised.exit_code(timeout=15) == EXIT_FAILURE

    assert time.monotonic() - sent < 10
    assert f"stubborn (pid {pids['stubborn']}) was still running at a second stop signal" in (
        supervised.errors()
    )
    assert not alive(pids["stubborn"])


def test_a_hurry_signal_goes_to_a_child_still_running_after_its_delay(
    supervise: Callable[..., Supervised],
) -> None:
    hurry_after = 1.5
    supervised = supervise(
        {"worker": python(HURRIED_BY_SIGQUIT), "polite": python(SLEEPER)},
        grace=20,
        options={"worker": {"hurry_signal": int(signal.SIGQUIT), "hurry_after": hurry_after}},
    )
    pids = supervised.children()
    supervised.wait_ready(2)

    sent = supervised.send(signal.SIGINT)
    assert supervised.exit_code(timeout=15) == 0, supervised.errors()

    took = time.monotonic() - sent
    assert hurry_after <= took < hurry_after + 4, "hurried, then stopped on its own"
    assert f"worker (pid {pids['worker']}) still running after 1.5s; sending SIGQUIT" in (
        supervised.errors()
    )
    assert "polite" not in supervised.errors().partition("still running")[2]
    assert "killing" not in supervised.errors()
    assert not [pid for pid in pids.values() if alive(pid)]


def test_wait_until_returns_once_the_check_holds(
    supervise: Callable[..., Supervised], tmp_path: Path
) -> None:
    flag = tmp_path / "ready"
    supervised = supervise({"one": python(SLEEPER)}, grace=10, wait_until=(flag, 60))
    supervised.children()
    time.sleep(0.5)
    assert '{"ready"' not in supervised.output(), "still waiting: the check does not hold"

    flag.touch()

    assert supervised.readiness() == {"ready": True, "stopping": False}
    supervised.send(signal.SIGTERM)
    assert supervised.exit_code(timeout=10) == 0


def test_wait_until_gives_up_when_a_child_dies_or_at_its_timeout(
    supervise: Callable[..., Supervised], tmp_path: Path
) -> None:
    never = tmp_path / "never"
    dying = supervise({"fragile": python(DIES_SOON)}, grace=10, wait_until=(never, 60))
    slow = supervise({"one": python(SLEEPER)}, grace=10, wait_until=(never, 1))
    pids = {**dying.children(), **slow.children()}

    assert dying.readiness() == {"ready": False, "stopping": True}
    assert dying.exit_code(timeout=15) == EXIT_FAILURE
    assert "fragile" in dying.errors() and "exited unexpectedly" in dying.errors()
    assert slow.readiness() == {"ready": False, "stopping": False}
    slow.send(signal.SIGTERM)
    assert slow.exit_code(timeout=10) == 0
    assert not [pid for pid in pids.values() if alive(pid)]


@pytest.mark.parametrize(
    ("lifetime", "how"), [(120, "stopped"), (0.5, "exiting on its own")], ids=str
)
def test_no_grandchild_outlives_its_child(
    supervise: Callable[..., Supervised], lifetime: float, how: str
) -> None:
    supervised = supervise(
        {"parent": python(WITH_GRANDCHILD.format(lifetime=lifetime)), "other": python(SLEEPER)},
        grace=10,
    )
    pids = supervised.children()
    (grandchild,) = supervised.grandchildren(1)
    if how == "stopped":
        supervised.wait_ready(1)
        supervised.send(signal.SIGTERM)
        assert supervised.exit_code(timeout=15) == 0
    else:
        assert supervised.exit_code(timeout=15) == EXIT_FAILURE

    wait_for(lambda: not alive(grandchild), 5, "the grandchild's death")
    assert not [pid for pid in pids.values() if alive(pid)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_die_with_a_killed_supervisor(supervise: Callable[..., Supervised]) -> None:
    supervised = supervise({"one": python(SLEEPER), "two": python(SLEEPER)}, grace=10)
    pids = supervised.children()
    supervised.wait_ready(2)

    supervised.send(signal.SIGKILL)
    supervised.exit_code(timeout=10)

    wait_for(lambda: not any(alive(pid) for pid in pids.values()), 10, "orphans' death")


def test_a_child_that_cannot_start_stops_those_already_started(
    supervise: Callable[..., Supervised],
) -> None:
    supervised = supervise(
        {"fine": python(SLEEPER), "missing": ["/nonexistent/medianest-role"]}, grace=10
    )

    assert supervised.exit_code(timeout=15) != 0

    errors = supervised.errors()
    assert "FileNotFoundError" in errors
    (started,) = (int(pid) for pid in re.findall(r"started fine \(pid (\d+)\)", errors))
    supervised.known_pids.add(started)
    assert not alive(started)


def test_child_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        Supervisor([ChildSpec("a", ["true"]), ChildSpec("a", ["true"])], grace_seconds=1)
