"""A health round over many services of which half hang, against one timeout.

    python3 -m bench.health [--services 100] [--timeout 2.0] [--rounds 3]

Serves, on loopback, `--services` HTTP services: half answer at once, half accept the
connection and never answer. Each round probes them all with the health family's probe
(health/probe.py, the code `health.check_all` runs), and prints the round's wall time beside
one timeout and beside the sum of the timeouts (what a sequential loop over the hanging half
costs), and checks every hanging service was recorded `down` with a Timeout and every other
one `up`. Target: a round within 1.2x one timeout. Needs no database.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from medianest_workers.health import probe
from medianest_workers.health.platform_checks import PLATFORM_PROBES
from medianest_workers.health.probe import ProbeConfig
from medianest_workers.health.targets import CheckOptions, CheckTarget, Kind

TARGET_RATIO = 1.2


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a probe that gave up closes its connection: expected here, not news


def serve(release: threading.Event) -> _Server:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/hang"):
                release.wait(120)
                return
            body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def targets(base: str, count: int) -> list[CheckTarget]:
    return [
        CheckTarget(
            name=f"service-{n:03d}",
            kind=Kind.HTTP,
            url=f"{base}/{'hang' if n % 2 else 'ok'}/{n}",
            options=CheckOptions(),
        )
        for n in range(count)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    release = threading.Event()
    server = serve(release)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    config = ProbeConfig(
        timeout=args.timeout,
        degraded_ms=int(args.timeout * 1000),
        max_body_bytes=65536,
        concurrency=max(args.services, 1),
    )
    checked = targets(base, args.services)
    hanging = sum(1 for target in checked if "/hang/" in target.url)
    walls: list[float] = []
    wrong: list[str] = []
    try:
        for _ in range(args.rounds):
            started = time.perf_counter()
            results = probe.run_round(checked, config, PLATFORM_PROBES)
            walls.append(time.perf_counter() - started)
            for target in checked:
                result = results[target.name]
                expected = "down" if "/hang/" in target.url else "up"
                if result.result != expected or (
                    expected == "down" and result.error_class != "Timeout"
                ):
                    wrong.append(f"{target.name}: {result.result} {result.error_class}")
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    wall = statistics.median(walls)
    sequential = hanging * args.timeout
    print(
        f"services: {args.services} ({hanging} hang), timeout {args.timeout:.2f} s,"
        f" rounds {args.rounds}"
    )
    print(
        f"round wall time (median): {wall:.3f} s  (each: "
        + ", ".join(f"{one:.3f}" for one in walls)
        + ")"
    )
    print(
        f"one timeout:              {args.timeout:.3f} s  -> ratio {wall / args.timeout:.2f}x"
        f" (target <= {TARGET_RATIO}x)"
    )
    print(
        f"sum of timeouts:          {sequential:.3f} s  -> the round is"
        f" {sequential / wall:.1f}x faster than a sequential loop"
    )
    print(f"misrecorded checks: {len(wrong)}" + (f" (first: {wrong[0]})" if wrong else ""))
    return 0 if wall <= TARGET_RATIO * args.timeout and not wrong else 1


if __name__ == "__main__":
    raise SystemExit(main())
