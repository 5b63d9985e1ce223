"""`docker compose ...` commands written on the pages, checked against the compose files.

Not docker compose itself (no Docker engine runs here): enough of its command line to find
the services a command names. Global options (`-f FILE`, `-p NAME`, ...), the subcommand, its
options (those that take a value are listed, so that a value is never taken for a service),
then the services: every positional word for most subcommands, the first one for `exec` and
`run` (the rest is the command run inside), the `SERVICE:PATH` side of `cp`, the
`SERVICE=N` of `--scale`. A subcommand or option missing from the tables is a problem too:
a typo, or a table to extend. tests/ops/test_docs.py runs it over every page.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

#: Global options that take a value (`docker compose --help`).
GLOBAL_VALUE_OPTIONS = frozenset(
    {"-f", "--file", "-p", "--project-name", "--profile", "--env-file", "--project-directory"}
    | {"--ansi", "--progress", "--parallel"}
)
GLOBAL_FLAGS = frozenset({"--compatibility", "--dry-run", "--all-resources"})


@dataclass(frozen=True)
class Verb:
    """What one subcommand takes: options with a value, flags, and what its positionals are."""

    value_options: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()
    #: "services" (each positional), "service-command" (exec, run), "cp", "none".
    positionals: str = "services"


_BUILD_FLAGS = frozenset({"--no-cache", "--pull", "-q", "--quiet", "--push"})
VERBS: dict[str, Verb] = {
    "up": Verb(
        value_options=frozenset(
            {"--scale", "-t", "--timeout", "--wait-timeout", "--exit-code-from", "--pull"}
            | {"--attach", "--no-attach"}
        ),
        flags=frozenset(
            {"-d", "--detach", "--build", "--no-build", "--no-deps", "--force-recreate"}
            | {"--no-recreate", "--remove-orphans", "--wait", "--abort-on-container-exit"}
            | {"--no-start", "--quiet-pull", "-V", "--renew-anon-volumes", "-y", "--yes"}
        ),
    ),
    "ps": Verb(
        value_options=frozenset({"--filter", "--format", "--status"}),
        flags=frozenset({"-a", "--all", "-q", "--quiet", "--services", "--no-trunc"}),
    ),
    "logs": Verb(
        value_options=frozenset({"-n", "--tail", "--since", "--until", "--index"}),
        flags=frozenset({"-f", "--follow", "-t", "--timestamps", "--no-color"})
        | frozenset({"--no-log-prefix"}),
    ),
    "stop": Verb(value_options=frozenset({"-t", "--timeout"})),
    "start": Verb(),
    "restart": Verb(value_options=frozenset({"-t", "--timeout"}), flags=frozenset({"--no-deps"})),
    "pull": Verb(flags=frozenset({"-q", "--quiet", "--ignore-pull-failures"})),
    "build": Verb(value_options=frozenset({"--build-arg"}), flags=_BUILD_FLAGS),
    "down": Verb(
        value_options=frozenset({"--rmi", "-t", "--timeout"}),
        flags=frozenset({"-v", "--volumes", "--remove-orphans"}),
    ),
    "kill": Verb(value_options=frozenset({"-s", "--signal"})),
    "rm": Verb(flags=frozenset({"-f", "--force", "-s", "--stop", "-v", "--volumes"})),
    "top": Verb(),
    "config": Verb(
        value_options=frozenset({"--format", "-o", "--output"}),
        flags=frozenset({"-q", "--quiet", "--services", "--volumes", "--images"}),
    ),
    "exec": Verb(
        value_options=frozenset({"-e", "--env", "-u", "--user", "-w", "--workdir", "--index"}),
        flags=frozenset({"-T", "--no-TTY", "-d", "--detach", "--privileged"}),
        positionals="service-command",
    ),
    "run": Verb(
        value_options=frozenset({"-e", "--env", "-u", "--user", "-w", "--workdir", "--name"})
        | frozenset({"--entrypoint", "-v", "--volume", "-p", "--publish"}),
        flags=frozenset({"--rm", "-T", "--no-TTY", "-d", "--detach", "--no-deps"})
        | frozenset({"--service-ports", "--build"}),
        positionals="service-command",
    ),
    "cp": Verb(
        value_options=frozenset({"--index"}),
        flags=frozenset({"-a", "--archive", "-L", "--follow-link"}),
        positionals="cp",
    ),
}

#: Where a command written in running text ends (a comment, a redirection, a pipe, ...).
_END = re.compile(r"\s+(?:#|<|>|\||&&|;).*$")
_START = re.compile(r"\bdocker(?: |-)compose\s")


class _AnyTagLoader(yaml.SafeLoader):
    """A YAML loader that reads compose's `!reset` / `!override` values as None (only the
    service names matter here)."""


_AnyTagLoader.add_multi_constructor("!", lambda _loader, _suffix, _node: None)


def services_of(path: Path) -> set[str]:
    """The service names a compose file defines (or overrides)."""
    document = yaml.load(path.read_text(), Loader=_AnyTagLoader)  # noqa: S506 - SafeLoader
    return set((document or {}).get("services") or {})


def commands_in(text: str) -> list[str]:
    """Every `docker compose ...` command of a page's text, cut where the command ends.

    Inline code spans are read with their line breaks joined (a span may wrap); lines of
    code blocks one by one.
    """
    found: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.splitlines():
            match = _START.search(line)
            if match and not line.lstrip().startswith("#"):
                found.append(_END.sub("", line[match.start() :]).strip())
    prose = re.sub(r"\s*\n\s*", " ", re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S))
    for span in re.findall(r"`([^`]+)`", prose):
        match = _START.match(span)
        if match:
            found.append(_END.sub("", span).strip())
    return found


def commented_commands(text: str) -> list[str]:
    """Every comment of a file (a compose file, a script) that is a `docker compose ...`
    command: one that starts with it (prose that mentions docker compose is not one)."""
    found = []
    for line in text.splitlines():
        comment = line.partition("#")[2].strip()
        if _START.match(comment):
            found.append(_END.sub("", comment).strip())
    return found


def problems(command: str, services: set[str], root: Path) -> list[str]:
    """What is wrong with one command: unknown subcommand, option or service ([] if none).

    `services` are docker-compose.yml's; a command's `-f FILE` adds that file's (relative to
    `root`).
    """
    words = shlex.split(command)
    words = words[2:] if words[:2] == ["docker", "compose"] else words[1:]
    known = set(services)
    while words and words[0].startswith("-"):
        option = words.pop(0)
        name, _, inline = option.partition("=")
        if name in GLOBAL_FLAGS:
            continue
        if name not in GLOBAL_VALUE_OPTIONS:
            return [f"{command!r}: unknown global option {name}"]
        value = inline or (words.pop(0) if words else "")
        if name in ("-f", "--file"):
            if not (root / value).exists():
                return [f"{command!r}: no file {value}"]
            known |= services_of(root / value)
    if not words:
        return []  # `docker compose` alone, or its options only
    verb_name, *rest = words
    verb = VERBS.get(verb_name)
    if verb is None:
        return [f"{command!r}: subcommand {verb_name!r} not in tests/ops/compose_commands.py"]
    named, found = _named_services(verb, rest)
    if isinstance(found, str):
        return [f"{command!r}: {found}"]
    return [f"{command!r} names service {name!r}, not in the stack" for name in named - known]


def _named_services(verb: Verb, words: list[str]) -> tuple[set[str], str | None]:
    """(the services `words` name, None), or (set(), the problem)."""
    named: set[str] = set()
    positionals: list[str] = []
    words = list(words)
    while words:
        word = words.pop(0)
        if not word.startswith("-") or word == "-":
            positionals.append(word)
            if verb.positionals == "service-command":
                break  # the rest is the command run inside the container
            continue
        name, _, inline = word.partition("=")
        if name in verb.flags:
            continue
        if name not in verb.value_options:
            return set(), f"option {name} not in tests/ops/compose_commands.py"
        value = inline or (words.pop(0) if words else "")
        if name == "--scale":
            named.add(value.split("=", 1)[0])
    if verb.positionals == "services":
        named |= set(positionals)
    elif verb.positionals == "service-command":
        if not positionals:
            return set(), "no service named"
        named.add(positionals[0])
    elif verb.positionals == "cp":
        if len(positionals) != 2:
            return set(), "cp takes a source and a destination"
        sides = [side.split(":", 1)[0] for side in positionals if ":" in side]
        if len(sides) != 1:
            return set(), "cp copies between one SERVICE:PATH and a local path"
        named.add(sides[0])
    return named, None
