"""What finding a download's new items in a large Plex library costs: newest first vs all.

    python3 -m bench.plex_sync [--library 5000] [--new 20] [--repeat 3]

A loopback Plex (tests/downloads_plex/fake_plex.py, the XML a real server sends) holds
`--library` older movies and the `--new` files a download just added. Times, in the same run:
the Plex step's look (`PlexClient.items_for`: the library newest first, a page at a time,
stopping once every new file is found) against plexapi's plain `section.all()` filtered by
path (every item of the library, 100 per request); prints both and their ratio.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from pydantic import SecretStr

from medianest_workers.downloads.plex_client import PlexClient, normalize_path
from tests.downloads_plex.fake_plex import TOKEN, FakePlex, Item


def _best(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", type=int, default=5000)
    parser.add_argument("--new", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    fake = FakePlex()
    try:
        section = fake.add_section("YouTube", locations=["/downloads"])
        old = int(time.time()) - 86_400
        for number in range(args.library):
            key = fake.new_key()
            fake.items[key] = Item(key, section.key, f"old {number}", f"/old/{number}.mp4", 1, old)
        folder = "/downloads/u1/Mix [PL1]"
        new_files = {f"{folder}/entry {n:03}.mp4" for n in range(args.new)}
        for path in sorted(new_files):
            key = fake.new_key()
            fake.items[key] = Item(key, section.key, path, path, 1, int(time.time()))

        with PlexClient(fake.url, SecretStr(TOKEN), timeout=30) as client:
            plex_section = client.section("YouTube")

            def ours() -> None:
                assert len(client.items_for(plex_section, new_files)) == args.new

            def plain() -> None:
                found = [
                    item
                    for item in plex_section.all()
                    for part in item.iterParts()
                    if normalize_path(part.file) in new_files
                ]
                assert len(found) == args.new

            before = len(fake.calls)
            ours()
            ours_calls = len(fake.calls) - before
            before = len(fake.calls)
            plain()
            plain_calls = len(fake.calls) - before
            ours_time = _best(args.repeat, ours)
            plain_time = _best(args.repeat, plain)
    finally:
        fake.stop()

    total = args.library + args.new
    print(f"library of {total} items, {args.new} just added (best of {args.repeat})")
    print(f"  newest first, stop when found  {ours_time:8.3f} s  {ours_calls:4d} requests")
    print(f"  section.all() filtered         {plain_time:8.3f} s  {plain_calls:4d} requests")
    print(f"  ratio all / ours               {plain_time / ours_time:8.1f}x")


if __name__ == "__main__":
    main()
