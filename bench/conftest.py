"""Shared fixtures of the pytest-benchmark suites (``python -m pytest bench -m benchmark``).

Sizes: 10k, 100k and 1M pending sends; ``--bench-full`` adds 10M where the
suite supports it (about 10 GB of RAM and many minutes: the guard's
``--full`` mode is the cheaper way to get those figures). Every benchmark
times with ``time.process_time`` (CPU of this process: the machine is
shared) and keeps the garbage collector on, as in production.

These suites give per-case timings and pytest-benchmark's comparison table
(peers share a group with sendcore). The guard (``python -m bench.guard``)
runs the same cases interleaved round by round and judges the ratios; use it
for anything that is compared across runs.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import pytest

K, M1, M10 = 10_000, 1_000_000, 10_000_000


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench-full", action="store_true", default=False,
                     help="sendcore benchmarks: add the 10M-pending sizes (slow, ~10 GB RAM)")


def pytest_configure(config: pytest.Config) -> None:
    # The engine benchmarks register their providers explicitly; no installed plugin leaks in.
    os.environ.setdefault("SENDCORE_LOAD_ENTRYPOINTS", "0")


def sizes(full: bool, *, big: bool = True) -> list[int]:
    """Pending sizes for a suite: 10k, 100k, 1M (``big``), and 10M with ``--bench-full``."""
    out = [K, 100_000]
    if big:
        out.append(M1)
        if full:
            out.append(M10)
    return out


def rounds_for(n: int) -> int:
    """Rounds per size: 5 for 10k, 3 for 100k, 1 from 1M (a single 1M run takes tens of seconds)."""
    return 5 if n <= K else (3 if n <= 100_000 else 1)


@pytest.fixture
def full(request: pytest.FixtureRequest) -> bool:
    """True under ``--bench-full``."""
    return bool(request.config.getoption("--bench-full"))


@pytest.fixture
def run_case(benchmark: Any) -> Callable[..., dict[str, Any]]:
    """Time a ``bench.measure`` case with ``benchmark.pedantic``: setup (the case maker) untimed, each round fresh.

    Returns the dict the last round's ``run`` returned.
    """

    def runner(make: Callable[[], Callable[[], dict[str, Any]]], rounds: int, warmup: int = 0) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            return (make(),), {}

        def target(run: Callable[[], dict[str, Any]]) -> None:
            last.clear()
            last.update(run() or {})

        benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)
        return last

    return runner


def best(benchmark: Any) -> float:
    """The fastest round's seconds of the benchmark just run."""
    return benchmark.stats.stats.min
