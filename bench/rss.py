"""Resident memory of one measurement, in a fresh process: ``python -m bench.rss MODE N``.

RSS can only be read honestly in a process that did nothing before: once a
process has freed a large structure, CPython keeps most of those pages and
the next measurement reuses them, so its RSS grows by almost nothing. The
guard therefore runs each RSS figure here, in a child, and reads the JSON
line this prints. The child also times its run (CPU seconds), so the 10M
sizes, which have no peer to interleave with, are measured once, here.

Modes:
  hold N        build N pending sends (bench.workload.make_sends, one shared
                body), submit them to an all-policies core; RSS before, after
                building, after submitting.
  hold-stream N the same sends built and submitted 10,000 at a time, each
                request dropped once submitted (as a service's decoded request
                is): ``held_growth`` is everything the core holds for N pending
                sends, their own copies of the sends included.
  e2e-core N    the SCENARIOS workload of N sends through core + drive.
  e2e-peer N    the same through the hand-rolled asyncio peer.
  instant-asyncio N, instant-uvloop N
                N sends due at one instant through the Engine on the real
                clock (``measure.real_clock_instant``); the lateness figures
                are in ``info``. Run here so the guard's own heap (its other
                suites' caches) does not slow the cycle collector of the run.

Peak RSS is the kernel's ``VmHWM``, reset after the workload is built, so
it is the run's own peak over the process as it stood before the run.
"""

from __future__ import annotations

import json
import sys
import time

from . import measure as M

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Measure one MODE at size N; print a JSON object on the last line of stdout."""
    args = sys.argv[1:] if argv is None else argv
    modes = ("hold", "hold-stream", "e2e-core", "e2e-peer", "instant-asyncio", "instant-uvloop")
    if len(args) != 2 or args[0] not in modes:
        print(f"usage: python -m bench.rss {{{'|'.join(modes)}}} N", file=sys.stderr)
        return 2
    mode, n = args[0], int(args[1])
    rss0 = M.rss_bytes()
    if mode.startswith("instant-"):
        loop = mode.split("-", 1)[1]
        make = lambda: lambda: M.real_clock_instant(n, loop)  # noqa: E731
    elif mode == "hold":
        M.hold_sends(n)
        make = lambda: M.case_submit(n, "sends")  # noqa: E731
    elif mode == "hold-stream":
        make = lambda: M.case_submit_stream(n)  # noqa: E731
    elif mode == "e2e-core":
        M.scenario(n)
        make = lambda: M.case_e2e_core(n)  # noqa: E731
    else:
        M.scenario(n)
        make = lambda: M.case_e2e_hand_rolled(n)  # noqa: E731
    rss1 = M.rss_bytes()
    run = make()
    rss2 = M.rss_bytes()
    M.peak_rss_reset()
    t = M.timed(run)
    rss3 = M.rss_bytes()
    peak = M.peak_rss_bytes()
    out = {
        "mode": mode, "n": n, "cpu": t.cpu, "wall": t.wall,
        "rss_start": rss0, "rss_built": rss1, "rss_setup": rss2, "rss_after": rss3, "peak_rss": peak,
        # What the run itself added at its peak, over the process before it.
        "peak_growth": peak - rss2,
        # Held after the run: for ``hold``, the core's pending sends (the Send objects were built before and
        # stay counted in ``workload_bytes``); for ``hold-stream``, everything, the sends included.
        "held_growth": rss3 - rss2,
        "workload_bytes": rss1 - rss0,
        "info": {k: v for k, v in t.info.items() if isinstance(v, (int, float, str, dict))},
        "time": time.time(),
    }
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
