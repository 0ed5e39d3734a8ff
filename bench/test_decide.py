"""Decide: sends/s through the full policy chain, and the same sends with the policies off.

Method: ``bench.measure.case_decide``: the SCENARIOS workload (55% campaign,
25% flows, 20% OTP, ~20 zones, ~3 sends per recipient) all due at one
instant, so quiet hours, smart sending, caps, spacing, error segment,
suppression and expiry each have work; providers unpaced. Submit is setup;
the timed part is ``drive`` (admission, dispatch checks, batches, record).
Sizes 10k, 100k, 1M; rounds 5 / 3 / 1; CPU time; GC on.
"""

from __future__ import annotations

import time

import pytest

from bench import measure as M
from bench.conftest import best, rounds_for, sizes

pytestmark = pytest.mark.benchmark(timer=time.process_time)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    yield
    M.clear_cache()


@pytest.mark.parametrize("policies", [True, False], ids=["all_policies", "no_policies"])
@pytest.mark.parametrize("n", sizes(False))
def test_decide(benchmark, run_case, n: int, policies: bool) -> None:
    """Every policy on (bench.workload.ALL_POLICIES_TOML) vs off (bench.measure.NO_POLICIES_TOML)."""
    benchmark.group = f"decide n={n:,}"
    info = run_case(lambda: M.case_decide(n, policies), rounds_for(n))
    assert info["pending"] == 0
    if policies:
        assert info["reasons"].get("smart_sending", 0) > 0
    benchmark.extra_info.update(sends_per_s=n / best(benchmark), final=info["final"], reasons=info["reasons"])
