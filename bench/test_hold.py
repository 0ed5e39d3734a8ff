"""Hold: how fast sendcore takes pending sends, what each costs in memory, and how it drains them in order.

Method: ``bench.measure.case_submit`` / ``case_hold`` / ``core_bytes``;
sizes 10k, 100k, 1M (10M with ``--bench-full``); rounds 5 / 3 / 1 by size,
no warm-up round beyond the first size's (process-wide caches fill once);
CPU time of this process on the shared 2-core Xeon; GC on. Sends from
``bench.workload.make_sends`` (distinct recipients over a day, one shared
body). Peers (heapq, SortedList, APScheduler's MemoryJobStore) hold the same
``Send`` objects in the same group as sendcore's wheel.
"""

from __future__ import annotations

import time

import pytest

from bench import measure as M
from bench.conftest import M1, best, rounds_for, sizes

pytestmark = pytest.mark.benchmark(timer=time.process_time)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # Workloads of other sizes would otherwise stay cached (a 1M list is ~600 MB).
    yield
    M.clear_cache()


@pytest.mark.parametrize("source", ["sends", "json", "msgpack"])
@pytest.mark.parametrize("n", sizes(False) + [M1 * 10])
def test_submit(benchmark, run_case, full, n: int, source: str) -> None:
    """Submit ``n`` pending sends to an all-policies core in requests of 10,000: pre-built ``Send``s,
    or decoded from JSON / MessagePack bytes with one ``msgspec`` ``Decoder(list[Send])``."""
    if n > M1 and not full:
        pytest.skip("10M: run with --bench-full")
    if n > M1 and source != "sends":
        pytest.skip("10M: pre-built sends only (the encoded bytes alone would take ~5 GB)")
    benchmark.group = f"hold.submit n={n:,}"
    info = run_case(lambda: M.case_submit(n, source), rounds_for(n))
    assert info["pending"] == n
    benchmark.extra_info["sends_per_s"] = n / best(benchmark)


@pytest.mark.parametrize("n", [100_000, M1])
def test_bytes_per_pending(benchmark, n: int) -> None:
    """Bytes per pending send by tracemalloc (deterministic): the core only, and with the ``Send`` objects."""
    benchmark.group = "hold.memory"
    mem = benchmark.pedantic(M.core_bytes, args=(n,), rounds=1, iterations=1)
    benchmark.extra_info.update(mem)
    assert mem["core_bytes"] > 0


@pytest.mark.parametrize("holder", list(M.peers.HOLDERS))
@pytest.mark.parametrize("n", sizes(False) + [M1 * 10])
def test_hold_and_drain(benchmark, run_case, full, n: int, holder: str) -> None:
    """Hold ``n`` sends, then pop them in due order as a clock moves in 1 s steps over their day.

    APScheduler drains only its first 20,000 due jobs (``remove_job`` shifts a
    sorted list: draining a million would take hours) and holds at most 100k
    outside ``--bench-full``.
    """
    if n > M1 and not full:
        pytest.skip("10M: run with --bench-full")
    if holder == "apscheduler" and (n > M1 or (n > 100_000 and not full)):
        pytest.skip("APScheduler: add_job costs ~40 µs each; 1M with --bench-full only, never 10M")
    benchmark.group = f"hold.peers n={n:,}"
    cap = 20_000 if holder == "apscheduler" else 0
    info = run_case(lambda: M.case_hold(holder, n, cap), rounds_for(n))
    assert info["ordered"]
    assert info["drained"] == n or (cap and info["drained"] >= cap)
    benchmark.extra_info.update(add_per_s=n / info["add_cpu"], drain_per_s=info["drained"] / info["drain_cpu"],
                                drained=info["drained"])
    if n <= 100_000:
        benchmark.extra_info["bytes_per_pending"] = M.holder_bytes(holder, n)
