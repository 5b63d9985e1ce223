"""RELIABILITY 10: latency, jitter and connection resets between the platform and Redis."""

from __future__ import annotations

import time

from tests.reliability.checker import database_now, not_terminal, running_ids
from tests.reliability.conftest import (
    Scenario,
    check_mixed,
    mixed_jobs,
)
from tests.reliability.tcp_proxy import TcpProxy
from tests.reliability.test_worker_kill import expected_states

FAULT_SECONDS = 15.0
RESET_EVERY = 3.0


def test_latency_and_resets_toward_redis_degrade_throughput_but_lose_nothing(
    scenario: Scenario,
) -> None:
    """Every worker, rescuer and enqueue talks to Redis through a proxy that adds 50-150 ms
    per chunk and resets every connection every few seconds: the workers reconnect, messages
    of cut connections come back (Redis's unacked restore, or the rescuer), every job ends
    once."""
    redis_host, redis_port = scenario.redis_url.removeprefix("redis://").split(":")
    proxy = TcpProxy(redis_host, int(redis_port.split("/")[0])).start()
    try:
        scenario.redis_url = f"redis://127.0.0.1:{proxy.port}/0"
        specs = mixed_jobs(300, seed=23)
        worker = scenario.start_worker(concurrency=4, REDIS_SOCKET_TIMEOUT_SECONDS="5")
        rescuer = scenario.start_rescuer(queued_after=10)
        ids = scenario.enqueue(specs)
        clean_started = time.monotonic()
        while len(not_terminal(scenario.engine, ids)) > 250:
            time.sleep(0.1)
        clean_rate = (len(ids) - len(not_terminal(scenario.engine, ids))) / (
            time.monotonic() - clean_started
        )

        hit = running_ids(scenario.engine, ids)
        fault_at = database_now(scenario.engine)
        before = len(not_terminal(scenario.engine, ids))
        proxy.latency, proxy.jitter = 0.05, 0.1
        cut = 0
        started = time.monotonic()
        while time.monotonic() - started < FAULT_SECONDS:
            time.sleep(RESET_EVERY)
            cut += proxy.reset()
        degraded_rate = (before - len(not_terminal(scenario.engine, ids))) / (
            time.monotonic() - started
        )
        proxy.latency = proxy.jitter = 0.0

        report = check_mixed(scenario.engine, ids, specs, deadline=150, fault_at=fault_at, hit=hit)
        print(
            f"\nRedis latency 50-150 ms + resets every {RESET_EVERY} s for {FAULT_SECONDS} s:"
            f" faults={proxy.resets} resets ({cut} connections cut)"
            f" jobs/s clean={clean_rate:.1f} degraded={degraded_rate:.1f}"
            f" rescuer_requeued={rescuer.total('requeued_running')}"
            f" rescuer_republished={rescuer.total('republished_queued')} {report.summary()}"
        )
        report.assert_ok()
        assert report.lost == [] and report.duplicate_effects == []
        assert report.states == expected_states(specs)
        assert cut > 0
        assert worker.process.poll() is None, "the worker must survive the resets"
    finally:
        scenario.stop()  # its processes first: then the proxy they talk through
        proxy.stop()
