"""The repository stands alone: a clone, with nothing beside it, collects and passes its tests.

No tracked file may point outside the repository (to a sibling folder of shared contracts or
design notes, say): the static test reads every tracked text file for such paths, and the slow
one copies the tracked files into an empty temporary folder and runs the suite there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import medianest_workers
from tests.db import schema_snapshot

REPO = Path(__file__).resolve().parent.parent

#: Set in the nested run so that it does not copy and run the repository again.
NESTED_ENV = "MNW_STANDALONE_NESTED"

#: The servers the developer gave this run, read before the session fixtures point
#: DATABASE_URL at this run's own database; the nested run is given the same servers.
GIVEN_SERVERS = {name: os.environ.get(name) for name in ("DATABASE_URL", "REDIS_URL")}

#: The folder beside the checkout that the repository once read its contracts from.
SIBLING = "shared"

#: Paths that leave the repository for that sibling folder, however they are spelled (the
#: examples are in test_the_detector_flags_escapes_and_not_prose, written so that this file's
#: text matches none of them). Prose that merely says "shared" matches none of them either.
ESCAPES = [
    # a relative path up to a sibling, through one or more parent folders
    re.compile(r"\.\.[/\\]+shared(?![\w.-])"),
    # the contracts folder, reached from wherever
    re.compile(r"\bshared[/\\]+contracts\b"),
    # an absolute path through such a folder, not a URL
    re.compile(r"(?<![\w.~:/\\-])/(?:[\w.-]+/)*shared(?![\w.-])"),
    # the folder name joined with pathlib's slash operator, joinpath or os.path.join
    re.compile(r"""/\s*["']shared["']|["']shared["']\s*/"""),
    re.compile(r"""(?:joinpath|path\.join)\([^)]*["']shared["']"""),
]

#: Path(__file__).resolve().parent.parent... or .parents[N] in Python source.
FILE_ANCESTOR = re.compile(
    r"__file__\)(?:\.resolve\(\)|\.absolute\(\))*(?P<parents>(?:\.parent(?![\w\[]))*)"
    r"(?:\.parents\[(?P<index>\d+)\])?"
)
#: os.path.dirname(os.path.dirname(... __file__ ...)).
FILE_DIRNAME = re.compile(
    r"(?P<dirnames>(?:os\.path\.dirname\(\s*)+)(?:os\.path\.(?:abspath|realpath)\(\s*)?__file__"
)


def outside_references(path: str, text: str) -> list[str]:
    """`path:line: match` for every place in `text` (the tracked file `path`) that points to a
    path outside the repository."""
    depth = len(Path(path).parts)  # levels from the file up to the repository root, inclusive
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        hits = [match.group(0) for pattern in ESCAPES for match in pattern.finditer(line)]
        if path.endswith(".py"):
            for match in FILE_ANCESTOR.finditer(line):
                levels = match.group("parents").count(".parent")
                if match.group("index") is not None:
                    levels += int(match.group("index")) + 1
                if levels > depth:
                    hits.append(match.group(0))
            for match in FILE_DIRNAME.finditer(line):
                if match.group("dirnames").count("dirname") > depth:
                    hits.append(match.group(0))
        found.extend(f"{path}:{number}: {hit}" for hit in hits)
    return found


def test_the_detector_flags_escapes_and_not_prose() -> None:
    """The patterns are built here from pieces so that this file's own text stays clean."""
    up, sep = "..", "/"
    escapes = [
        sep.join([up, "shared", "DESIGN.md"]),
        "\\".join([up, "shared"]),
        sep.join([up, up, "shared", "contracts", "medianest-schema.json"]),
        "see " + sep.join(["", "shared", "contracts"]),
        "cat " + sep.join(["", "work", "shared", "STYLE.md"]),
        "ROOT.parent / " + '"shared"',
        '"shared"' + ' / "contracts"',
        "os.path." + "join(root, " + "'shared')",
    ]
    for text in escapes:
        assert outside_references("notes.txt", text), text
    for expression, ok in [
        ("Path(" + "__file__" + ").resolve().parents[3]", False),
        ("Path(" + "__file__" + ").resolve().parents[2]", True),
        ("Path(" + "__file__" + ").resolve().parent.parent.parent.parent", False),
        ("Path(" + "__file__" + ").parent.parent", True),
        ("os.path.dirname(" * 4 + "__file__" + ")" * 4, False),
        ("os.path.dirname(" * 3 + "__file__" + ")" * 3, True),
    ]:
        # tests/db/x.py: parents[2] (three levels up) is the repository root.
        assert (outside_references("tests/db/x.py", expression) == []) is ok, expression
    prose = [
        "the shared enum of the backend",
        "Small helpers shared by the tests: free ports",
        "# The per-user download folders, shared with Plex",
        "a connection is never shared across forks",
        "shared" + sep + " and shared_contracts and shared-memory are names in this repo",
        sep.join(["https://example.com", "shared", "file"]),
        "value = config['shared']",
    ]
    for text in prose:
        assert outside_references("README.md", text) == [], text


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, timeout=60, check=False)


def tracked_files() -> list[str]:
    """The tracked files of this checkout, relative to it (skips when it is not a git checkout,
    as in the nested run's copy)."""
    top = _git("rev-parse", "--show-toplevel")
    if top.returncode != 0 or Path(top.stdout.decode().strip()).resolve() != REPO:
        pytest.skip(f"{REPO} is not the top of a git checkout")
    listing = _git("ls-files", "-z")
    assert listing.returncode == 0, listing.stderr.decode()
    return [name for name in listing.stdout.decode().split("\0") if name]


def test_no_tracked_file_points_outside_the_repository() -> None:
    """Every tracked text file, docs included, as it is in the working tree."""
    found = []
    checked = 0
    for name in tracked_files():
        path = REPO / name
        if path.is_symlink():
            target = (path.parent / os.readlink(path)).resolve()
            if not target.is_relative_to(REPO):
                found.append(f"{name}: a symlink to {target}")
            continue
        if not path.is_file():  # deleted in the working tree
            continue
        data = path.read_bytes()
        if b"\0" in data:  # binary
            continue
        checked += 1
        found.extend(outside_references(name, data.decode("utf-8", errors="replace")))
    assert checked > 0
    assert found == [], "paths outside the repository:\n" + "\n".join(found)


def test_imports_come_from_this_checkout() -> None:
    """The package and the contracts under test are this checkout's, not an installed copy's
    (the nested run relies on this to prove the copy, not the original, passes)."""
    assert Path(medianest_workers.__file__).resolve().is_relative_to(REPO)
    assert schema_snapshot.CONTRACTS.resolve().is_relative_to(REPO)
    assert (schema_snapshot.CONTRACTS / "medianest-schema.json").is_file()


def copy_tracked_files(destination: Path) -> int:
    """Copy the tracked files, with their working-tree contents, under `destination`."""
    copied = 0
    for name in tracked_files():
        source, target = REPO / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
        else:  # deleted in the working tree
            continue
        copied += 1
    return copied


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """The standard output of `command`, which must succeed within `timeout` seconds."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output}"
    return result.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(bool(os.environ.get(NESTED_ENV)), reason="inside the nested run already")
def test_a_copy_with_nothing_beside_it_passes() -> None:
    with tempfile.TemporaryDirectory(prefix="mnw-standalone-") as folder:
        clone = Path(folder) / "medianest-workers"
        assert copy_tracked_files(clone) > 0
        for ancestor in clone.parents:
            assert not (ancestor / SIBLING).exists(), f"{ancestor} has a {SIBLING} folder"

        env = {
            name: value
            for name, value in os.environ.items()
            if name not in {"DATABASE_URL", "REDIS_URL", "REDIS_KEY_PREFIX", "PYTHONPATH"}
        }
        env.update({name: value for name, value in GIVEN_SERVERS.items() if value})
        env.update({"PYTHONPATH": str(clone), NESTED_ENV: "1", "PYTHONDONTWRITEBYTECODE": "1"})
        pytest_command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]

        imported = _run(
            [
                sys.executable,
                "-c",
                "import medianest_workers, tests.db.schema_snapshot as s; "
                "print(medianest_workers.__file__); print(s.CONTRACTS)",
            ],
            clone,
            env,
            timeout=60,
        )
        for line in imported.splitlines():
            assert Path(line).resolve().is_relative_to(clone.resolve()), imported

        collected = _run([*pytest_command, "--collect-only", "-q"], clone, env, timeout=180)
        count = re.search(r"(\d+) tests? collected", collected)
        assert count, collected
        assert int(count.group(1)) > 0, collected

        # The tests that read the contract files, and the check that the copy's package is the
        # one imported (this module's slow test skips itself there).
        ran = _run(
            [*pytest_command, "-q", "-rA", "tests/db", "tests/test_standalone.py"],
            clone,
            env,
            timeout=600,
        )
        assert "PASSED tests/test_standalone.py::test_imports_come_from_this_checkout" in ran, ran
        passed = re.search(r"(\d+) passed", ran)
        assert passed, ran
        assert int(passed.group(1)) > 0, ran
