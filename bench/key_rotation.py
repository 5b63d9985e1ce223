"""What re-running a key rotation costs, with and without the checkpoints.

    python3 -m bench.key_rotation [--rows 200]

Seeds `--rows` users.plex_token values under an old key in a database of its own (on the
DATABASE_URL server), then times: a full rotation; a complete rerun without checkpoints
(security/rotation.py alone: every row decrypted again); a rotation stopped halfway and resumed
(maintenance/key_rotation.py: the resumed run reads only the rows left); a rerun of a complete
rotation with its checkpoints. Drops the database at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from medianest_workers.db import admin, migrate
from medianest_workers.db.models import User
from medianest_workers.db.session import sqlalchemy_url
from medianest_workers.maintenance.key_rotation import Progress, rotate_key
from medianest_workers.security.crypto import encrypt_with
from medianest_workers.security.rotation import rotate_encryption_key

OLD = "bench-old-key-0123456789abcdef0123456789"
NEW = "bench-new-key-fedcba9876543210fedcba9876"


class Stop(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200)
    rows = parser.parse_args().rows
    server = os.environ["DATABASE_URL"]
    name = f"mnw_bench_rotation_{uuid.uuid4().hex[:6]}"
    url = admin.create_database(server, name)
    engine = create_engine(sqlalchemy_url(url))
    try:
        migrate.upgrade(url)
        factory = sessionmaker(engine)
        with factory() as session, session.begin():
            for n in range(rows):
                token = encrypt_with(f"plex-{n}", secret=OLD)
                session.add(User(email=f"{uuid.uuid4().hex}@bench", plex_token=token))
        with tempfile.TemporaryDirectory() as folder:
            old_file, new_file = Path(folder, "old"), Path(folder, "new")
            old_file.write_text(OLD)
            new_file.write_text(NEW)
            files = {"old_key_file": old_file, "new_key_file": new_file}

            def timed(label: str, call: Callable[[], object]) -> None:
                start = time.perf_counter()
                with contextlib.suppress(Stop):
                    call()
                took = time.perf_counter() - start
                print(f"{label:<58} {took:7.2f} s  {1000 * took / rows:6.1f} ms per row")

            timed("full rotation", lambda: rotate_key(factory, **files))
            timed(
                "complete rerun, no checkpoints (rotation.py alone)",
                lambda: rotate_encryption_key(factory, old_secret=OLD, new_secret=NEW),
            )
            timed("complete rerun with checkpoints", lambda: rotate_key(factory, **files))

            back = {"old_key_file": new_file, "new_key_file": old_file}

            def stop_halfway(step: Progress) -> None:
                if step.rows_done >= rows // 2:
                    raise Stop

            timed(
                "rotation back, stopped halfway",
                lambda: rotate_key(factory, **back, batch_size=20, on_progress=stop_halfway),
            )
            timed("  its resume (reads only the rows left)", lambda: rotate_key(factory, **back))
    finally:
        engine.dispose()
        admin.drop_database(server, name)


if __name__ == "__main__":
    main()
