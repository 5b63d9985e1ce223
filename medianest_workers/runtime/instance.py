"""One `up` per data folder, and where it listens, for the command line beside it.

`up` holds an exclusive `flock` on DATA_DIR/up.lock for its whole life: a second `up` on the
same folder is refused, and since the kernel drops the lock when its holder dies however it
dies, a crashed `up` never blocks the next one. While it runs, DATA_DIR/up.json (mode 0600:
the URLs may hold passwords) records its pid and the URLs of its database, Redis, API and
Flower; `adopt_running_up` lets `medianest-workers jobs list` and the other subcommands use
them when DATABASE_URL / REDIS_URL are not set.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from medianest_workers.errors import ConfigurationError
from medianest_workers.settings import get_settings, reset_settings_cache

LOCK_FILE = "up.lock"
RECORD_FILE = "up.json"


class AlreadyRunningError(ConfigurationError):
    """Another `up` holds the data folder's lock."""


@dataclass(frozen=True)
class UpRecord:
    """What a running `up` tells the command line: its pid and where its servers listen."""

    pid: int
    database_url: str
    redis_url: str
    api_url: str | None = None
    flower_url: str | None = None


@contextlib.contextmanager
def exclusive_lock(data_dir: Path) -> Iterator[None]:
    """Hold DATA_DIR/up.lock, or raise AlreadyRunningError naming the holder's pid."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / LOCK_FILE
    # Not inherited by children (O_CLOEXEC, Python's default): the lock dies with us alone.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise AlreadyRunningError(
                f"up: already running on {data_dir} (pid {holder}); stop it first,"
                " or give this one another DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # the lock itself goes with the descriptor
    finally:
        os.close(fd)


def write_record(data_dir: Path, record: UpRecord) -> Path:
    """Write DATA_DIR/up.json atomically, readable by its owner only; its path."""
    path = data_dir / RECORD_FILE
    temporary = path.with_name(f".{RECORD_FILE}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(asdict(record), file, indent=2)
        file.write("\n")
    temporary.replace(path)
    return path


def remove_record(data_dir: Path) -> None:
    (data_dir / RECORD_FILE).unlink(missing_ok=True)


def read_record(data_dir: Path) -> UpRecord | None:
    """The record of the `up` running on `data_dir`; None without one, or if its pid is gone."""
    try:
        fields = json.loads((data_dir / RECORD_FILE).read_text(encoding="utf-8"))
        record = UpRecord(**fields)
    except (OSError, ValueError, TypeError):
        return None
    return record if _alive(record.pid) else None


def adopt_running_up() -> UpRecord | None:
    """Fill an unset DATABASE_URL / REDIS_URL from the `up` running on DATA_DIR, if any.

    The environment is changed (so the settings, read again, see the URLs); the record used.
    """
    settings = get_settings()
    missing = {
        "DATABASE_URL": settings.database_url is None,
        "REDIS_URL": settings.redis_url is None,
    }
    if not any(missing.values()):
        return None
    record = read_record(settings.data_dir)
    if record is None:
        return None
    urls = {"DATABASE_URL": record.database_url, "REDIS_URL": record.redis_url}
    for name, unset in missing.items():
        if unset:
            os.environ[name] = urls[name]
    reset_settings_cache()
    return record


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
