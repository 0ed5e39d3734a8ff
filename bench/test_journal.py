"""The file journal: journaled submit, replay and restart through ``bench.journal``'s cases.

Method: ``bench.journal.SubmitCase`` (100,000 pre-built sends through
``Engine.submit`` in batches of 1,000 on a ``VirtualClock``, the journal in a
fresh temp dir on this machine's disk; ``fsync`` batch / always / interval,
1 or 8 submitters; ``memory`` = ``[journal] path = ""``), ``ReplayCase``
(``recover`` read-only over the journal of the 10k SCENARIOS day through the
engine, and over 100,000 small frames), ``RestartCase`` (``Engine.start`` on a
journal of N pending in a snapshot + a tail of 50,000 sends in 50 submits;
N = 200,000, 1M with ``--bench-full``). Disk-bound cases (submit, restart)
are timed in wall time (``time.perf_counter``), replay in CPU time; setup
(building sends, starting the engine, building the journal) is untimed, and
each round gets a fresh engine and directory. GC on.
The guard (``python -m bench.guard``, suite ``journal``) runs the same cases
interleaved and judges the figures.
"""

from __future__ import annotations

import shutil
import time
from typing import Any, Callable

import pytest

from bench import journal as J
from bench import measure as M
from bench.conftest import M1, K

pytestmark = pytest.mark.benchmark(timer=time.perf_counter)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    yield
    M.clear_cache()


def _pedantic(benchmark: Any, make: Callable[[], J.Case], rounds: int) -> dict[str, Any]:
    """Time ``case.run()`` of a fresh case each round; finish the previous case (untimed) before the next setup.

    Returns the last round's run + finish info.
    """
    live: list[J.Case] = []
    last: dict[str, Any] = {}

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        while live:
            last.update(live.pop().finish() or {})
        case = make()
        live.append(case)
        return (case,), {}

    def target(case: J.Case) -> None:
        last.clear()
        last.update(case.run() or {})

    try:
        benchmark.pedantic(target, setup=setup, rounds=rounds, iterations=1)
    finally:
        while live:
            last.update(live.pop().finish() or {})
    return last


@pytest.mark.parametrize("mode", ["memory", "batch", "always", "interval", "batch_8_tasks"])
def test_journaled_submit(benchmark, mode: str) -> None:
    """100,000 sends through ``Engine.submit`` in batches of 1,000 (wall time: batch submits wait for their fsync)."""
    n = 100_000
    M.hold_sends(n)
    if mode == "memory":
        make: Callable[[], J.Case] = lambda: J.SubmitCase(n, journal=False)
    elif mode == "batch_8_tasks":
        make = lambda: J.SubmitCase(n, "batch", tasks=J.TASKS)
    else:
        make = lambda: J.SubmitCase(n, mode)
    benchmark.group = f"journal.submit n={n:,}"
    info = _pedantic(benchmark, make, 3)
    assert info["pending"] == n
    benchmark.extra_info.update(sends_per_s=n / benchmark.stats.stats.min, batch=J.SUBMIT_BATCH,
                                filesystem=J.filesystem_of())
    if mode != "memory":
        assert info["submitted_sends"] == n
        benchmark.extra_info.update(fsyncs_per_submit=info["fsyncs_per_submit"],
                                    submit_bytes_per_send=info["submit_bytes_per_send"])


@pytest.fixture(scope="module")
def e2e_journal() -> Any:
    """The journal the 10k SCENARIOS day leaves (engine on a VirtualClock, journal on), kept for replay."""
    case = J.E2eCase(K, True, keep=True)
    J.timed(lambda: case)
    yield case.dir
    shutil.rmtree(case.dir, ignore_errors=True)
    M.clear_cache()


# CPU time: replay reads a file that is in the page cache and re-runs the core.
@pytest.mark.benchmark(timer=time.process_time)
def test_replay_e2e_journal(benchmark, e2e_journal) -> None:
    """``recover`` (read-only) over the 10k day's journal: advance, record, suppress frames and one submit."""
    benchmark.group = "journal.replay"
    info = _pedantic(benchmark, lambda: J.ReplayCase(e2e_journal), 5)
    assert info["pending"] == 0 and info["frames"] > K
    benchmark.extra_info.update(frames=info["frames"], frames_per_s=info["frames"] / benchmark.stats.stats.min,
                                timer="time.process_time")


@pytest.fixture(scope="module")
def small_frames_journal() -> Any:
    d = J.small_frames_journal(100_000)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.benchmark(timer=time.process_time)
def test_replay_small_frames(benchmark, small_frames_journal) -> None:
    """``recover`` over 100,000 small frames (a submit of one send, a 1 ms time step, alternately)."""
    benchmark.group = "journal.replay"
    info = _pedantic(benchmark, lambda: J.ReplayCase(small_frames_journal), 5)
    assert info["frames"] == 100_000 and info["pending"] == 50_000
    benchmark.extra_info.update(frames_per_s=100_000 / benchmark.stats.stats.min, timer="time.process_time")


@pytest.mark.parametrize("n", [200_000, M1])
def test_restart(benchmark, full, n: int) -> None:
    """``Engine.start`` on a journal of ``n`` pending in a snapshot + 50,000 in 50 submit frames after it (wall)."""
    if n > 200_000 and not full:
        pytest.skip("1M pending: run with --bench-full")
    j = J.RestartJournal(n)
    try:
        built = j.build()
        benchmark.group = "journal.restart"
        info = _pedantic(benchmark, lambda: J.RestartCase(j), 2)
    finally:
        j.cleanup()
    assert info["pending"] == n + J.TAIL
    assert info["snapshot_pending"] == n
    benchmark.extra_info.update(
        pending=info["pending"], replayed_frames=info["replayed_frames"], snapshot_load_s=info["snapshot_load_s"],
        snapshot_bytes_per_pending=built["snapshot_bytes"] / n,
        snapshot_pause_ms_per_100k=built["snapshot_pause_s"] * 1e3 * 100_000 / n,
        snapshot_call_ms_per_100k=built["snapshot_call_s"] * 1e3 * 100_000 / n,
    )
