"""Pace: route decisions/s over 1, 100 and 10,000 carrier routes, GCRA accuracy, and rate decisions vs peers.

Method: ``bench.measure.case_pace``: 100k transactional SMS (1M with
``--bench-full``) due at once, round-robin over the routes, each route
1,000 segments/s with a burst of 100; the timed part drives the core until
all left. ``pacing_accuracy`` then checks every 1 s window of every route
(over-rate must be 0) and the utilisation of backlogged routes. Rate
decisions: ``case_limiter``, 200,000 decisions on the wall clock against a
10,000/s limit, sendcore's ``Gcra`` and the peers in one group.
Rounds 3 (pace) / 5 (limiters); CPU time; GC on.
"""

from __future__ import annotations

import time

import pytest

from bench import measure as M
from bench.conftest import M1, best, rounds_for

pytestmark = pytest.mark.benchmark(timer=time.process_time)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    yield
    M.clear_cache()


@pytest.mark.parametrize("routes", [1, 100, 10_000])
def test_route_decisions(benchmark, run_case, full, routes: int) -> None:
    """Sends/s through pacing; every route stays within burst + rate in any 1 s window and never idles."""
    n = M1 if full else 100_000
    benchmark.group = f"pace n={n:,}"
    info = run_case(lambda: M.case_pace(n, routes), rounds_for(n))
    assert info["pending"] == 0 and info["sent"] == n
    acc = M.pacing_accuracy(info["provider"].batches, M.SMS_RATE, M.SMS_BURST)
    benchmark.extra_info.update(sends_per_s=n / best(benchmark), **acc)
    assert acc["over_rate"] == 0, f"a route sent {acc['over_rate']} units over its rate in a 1 s window"
    assert acc["utilisation"] > 0.99, f"a backlogged route idled: utilisation {acc['utilisation']:.4f}"


@pytest.mark.parametrize("limiter", M.LIMITERS)
def test_rate_decisions(benchmark, run_case, limiter: str) -> None:
    """200,000 "may one unit leave now?" decisions against 10,000/s (see ``case_limiter`` for each peer's idiom)."""
    n = 200_000
    benchmark.group = "pace.rate_decisions"
    info = run_case(lambda: M.case_limiter(limiter, n), 5)
    benchmark.extra_info.update(decisions_per_s=n / best(benchmark), allowed=info["allowed"])
    assert info["allowed"] > 0
