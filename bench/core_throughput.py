"""End-to-end throughput of the sans-I/O core with every policy on.

Measures submit + advance + record of N sends to N distinct recipients with an
in-process provider that accepts everything, on virtual time, and the memory
held per pending send. Run: ``python -m bench.core_throughput --sends 1000000``.
"""

from __future__ import annotations

import argparse
import gc
import time

from sendcore.core import Core
from sendcore.provider import ProviderSpec
from sendcore.testing.simulate import InstantProvider, drive

from .measure import core_bytes
from .workload import all_policies_settings, make_sends

START = 1_795_000_000.0  # 2026-11-18T...Z, a Wednesday


def measure(n: int, chunk: int = 100_000) -> dict[str, float]:
    """Run the workload once; return sends/s for each phase and bytes per pending send."""
    settings = all_policies_settings()
    spec = ProviderSpec(name="instant", channels=("sms", "email", "push"), max_batch=500, max_concurrency=1_000_000)
    sends = make_sends(n, START)
    core = Core(settings, [spec])
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for i in range(0, n, chunk):
            core.submit(sends[i : i + chunk], START)
        t1 = time.perf_counter()
        del sends
        provider = InstantProvider(keep=False)
        drive(core, START + 3 * 86400, provider, start=START)
        t2 = time.perf_counter()
    finally:
        gc.enable()
    stats = core.stats()
    total = sum(stats.final.values())
    return {
        "sends": n,
        "submit_per_s": n / (t1 - t0),
        "drive_per_s": n / (t2 - t1),
        "end_to_end_per_s": n / (t2 - t0),
        "final": total,
        "sent": stats.final.get("sent", 0),
        "pending_after": stats.pending,
        **{f"final_{k}": v for k, v in stats.final.items()},
    }


def bytes_per_pending(n: int) -> float:
    """Bytes per pending send the core holds, the send included (tracemalloc; the caller's objects dropped)."""
    return core_bytes(n)["total_bytes"]


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sends", type=int, default=1_000_000)
    ap.add_argument("--memory", type=int, default=200_000, help="sends for the tracemalloc measurement (0: skip)")
    args = ap.parse_args()
    r = measure(args.sends)
    for k, v in r.items():
        print(f"{k:>20}: {v:,.0f}")
    if args.memory:
        print(f"{'bytes/pending':>20}: {bytes_per_pending(args.memory):,.0f} (the send included)")


if __name__ == "__main__":
    main()
