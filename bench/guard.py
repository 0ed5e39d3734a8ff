"""The benchmark guard: measure in-process, print every ratio against its floor, fail below a floor.

Run ``python -m bench.guard`` (quick mode, a few minutes) or ``python -m
bench.guard --full`` (the README figures: sizes up to 10M pending, about
20 minutes on the shared 2-core machine). It runs the suites of ``bench/``
(Hold, Decide, Pace, rate limiters, End to end, Real clock, Journal) through the same
``bench.measure`` / ``bench.journal`` cases the pytest-benchmark files use, prints progress as it
goes, then a table of ratios with the floor each must meet (``bench/floors.toml``),
writes pytest-benchmark-style JSON to ``bench/results/`` and exits 1 naming
every ratio below its floor (2 on a setup error).

Method: CPU time of this process (``time.process_time``), best of the rounds,
GC on, caches warmed by a small run first. A ratio's two sides are measured
in the same process, round by round interleaved, so they share the load of
the machine. Absolute figures (sends/s) are printed too, for the README, but
only ratios (and the deterministic bytes per pending send, and pacing
accuracy, which do not depend on speed) are guarded, plus a few absolute
figures with a loose bound that catches a regression of several times, not
noise (real-clock lateness, the journal's submit rate, replay rate, restart
time and snapshot pause).

The Journal suite (``bench.journal``) writes real journals in temporary
directories on this machine's disk (``$SENDCORE_BENCH_JOURNAL_DIR``,
default ``/tmp``); its disk-bound figures (journaled submit, restart,
snapshot pause) are wall time, said so in their ``what``; the journal on /
off ratio and the replay rate are CPU time like the rest.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import measure as M

__all__ = ["Guard", "Plan", "main"]

HERE = Path(__file__).resolve().parent
FLOORS = HERE / "floors.toml"
RESULTS = HERE / "results"

K, M1, M10 = 10_000, 1_000_000, 10_000_000


class Plan:
    """Sizes and rounds of one mode. Quick keeps the guard under 5 minutes on 2 shared cores."""

    def __init__(self, full: bool) -> None:
        self.mode = "full" if full else "quick"
        #: Pending sizes for submit (pre-built sends); the largest is the "flat" ratio's numerator.
        self.submit_sizes = [K, 100_000, M1, M10] if full else [K, 100_000, M1]
        #: Sizes for submit from JSON / MessagePack bytes.
        self.decode_sizes = [K, 100_000, M1] if full else [K, 100_000]
        #: Sizes for the deterministic tracemalloc bytes-per-pending figures (the largest is guarded).
        self.memory_sizes = [K, 100_000, M1] if full else [K, 100_000]
        self.memory_size = self.memory_sizes[-1]
        self.holder_sizes = [K, 100_000, M1, M10] if full else [K, 100_000]
        #: Holders measured at 10M: SortedList's 10M adds take a minute and a half and tell nothing new.
        self.holders_10m = ("wheel", "heapq")
        self.aps_sizes = [K, 100_000, M1] if full else [K, 100_000]
        self.aps_drain_cap = 20_000
        self.decide_sizes = [K, 100_000, M1] if full else [K, 100_000]
        self.pace_size = M1 if full else 100_000
        self.pace_routes = [1, 100, 10_000]
        self.limiter_decisions = 200_000
        #: End to end: sendcore at every size, the hand-rolled peer up to peer_max.
        self.e2e_sizes = [K, 100_000, M1, M10] if full else [K, 100_000]
        self.e2e_peer_max = M1 if full else 100_000
        #: The engine on a VirtualClock settles the loop at every timer: slow, so 10k only.
        self.engine_sizes = [K]
        self.real_rates = [10_000, 50_000, 100_000] if full else [10_000, 50_000]
        self.real_instant_size = 100_000
        self.real_seconds = 2.0 if full else 1.0
        #: Sizes measured only in a child process (``bench.rss``): timing and RSS at once.
        #: They have no peer to interleave with, and would leave the guard's own
        #: process holding gigabytes of freed-but-kept pages.
        self.child_only = {M10}
        #: Sizes whose RSS is read in a child process (the timing stays in-process).
        self.hold_rss_size = M10 if full else M1
        self.e2e_rss_size = M1 if full else 100_000

    def rounds(self, n: int) -> int:
        """Best-of rounds for a size: more for small, noisy runs; one for the slow, large ones."""
        if n <= K:
            return 5
        if n <= 100_000:
            return 3
        return 1


def _stats(times: list[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` block for a list of round times (seconds)."""
    t = sorted(times)
    n = len(t)
    mean = statistics.fmean(t)
    sd = statistics.stdev(t) if n > 1 else 0.0
    q = statistics.quantiles(t, n=4) if n > 1 else [t[0], t[0], t[0]]
    iqr = q[2] - q[0]
    return {
        "min": t[0], "max": t[-1], "mean": mean, "stddev": sd, "rounds": n, "median": statistics.median(t),
        "iqr": iqr, "q1": q[0], "q3": q[2], "iqr_outliers": 0, "stddev_outliers": 0, "outliers": "0;0",
        "ld15iqr": t[0], "hd15iqr": t[-1], "ops": 1.0 / t[0] if t[0] else 0.0, "total": sum(t),
        "iterations": 1, "data": list(times),
    }


class Guard:
    """Runs a plan, collects benchmarks (pytest-benchmark JSON shape) and the ratios."""

    def __init__(self, plan: Plan, floors: dict[str, Any], skip: set[str]) -> None:
        self.plan = plan
        self.floors = floors
        self.skip = skip
        self.benchmarks: list[dict[str, Any]] = []
        self.values: dict[str, float] = {}
        self.t0 = time.perf_counter()
        self.notes: list[str] = []

    # ------------------------------------------------------------------ plumbing

    def say(self, what: str) -> None:
        """Progress line with the elapsed wall time."""
        print(f"[{time.perf_counter() - self.t0:7.1f}s] {what}", flush=True)

    def record(self, group: str, name: str, params: dict[str, Any], times: list[float],
               extra: dict[str, Any]) -> dict[str, Any]:
        """Add one benchmark entry; return it."""
        param = "-".join(f"{v}" for v in params.values())
        b = {
            "group": group, "name": f"{name}[{param}]" if param else name,
            "fullname": f"bench/guard.py::{group}::{name}[{param}]", "params": params, "param": param,
            "extra_info": extra, "options": {"timer": extra.get("timer", "time.process_time"), "min_rounds": len(times),
                                             "warmup": True, "disable_gc": False},
            "stats": _stats(times),
        }
        self.benchmarks.append(b)
        return b

    def interleaved(self, label: str, n: int, makers: dict[str, Callable[[], Callable[[], dict[str, Any]]]],
                    rounds: int) -> dict[str, tuple[list[float], dict[str, Any]]]:
        """Time each case of ``makers`` ``rounds`` times, alternating cases every round.

        Setup (``makers[name]()``) is untimed and redone every round.
        """
        out: dict[str, tuple[list[float], dict[str, Any]]] = {k: ([], {}) for k in makers}
        for r in range(rounds):
            for name, make in makers.items():
                self.say(f"{label} {name} n={n:,} round {r + 1}/{rounds}")
                run = make()
                t = M.timed(run)
                times, info = out[name]
                times.append(t.cpu)
                info.update(t.info)
                info["wall_s"] = min(info.get("wall_s", math.inf), t.wall)
                del run, t
        return out

    def value(self, key: str, v: float) -> None:
        """A guarded (or reported) figure, by its floors.toml name."""
        self.values[key] = v

    # ------------------------------------------------------------------ suites

    def warm_up(self) -> None:
        """Fill the process-wide caches (phone prefixes, zones, quiet-hour intervals) as a running service has them.

        Also imports every sendcore module measured now: others edit the tree
        while the guard runs, and a module first imported half an hour in
        would mix two versions of the code in one run.
        """
        try:
            import sendcore.engine  # noqa: F401
            import sendcore.testing  # noqa: F401
        except Exception as exc:  # the engine is landing; the suites that need it say so and skip
            self.note(f"sendcore.engine is not importable ({exc!r})")
        self.say("warm-up: scenario n=3,000 through core and hand-rolled peer; submit n=3,000")
        M.timed(M.case_e2e_core(3000))
        M.timed(M.case_e2e_hand_rolled(3000))
        M.timed(M.case_submit(3000))
        M.clear_cache()

    def child(self, mode: str, n: int) -> dict[str, Any]:
        """Run ``python -m bench.rss MODE N`` in a fresh process; return its JSON (RSS and CPU time)."""
        self.say(f"{mode} n={n:,} in a child process (RSS)")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(x for x in (str(HERE.parent), str(HERE.parent / "plugins"),
                                                        env.get("PYTHONPATH", "")) if x)
        proc = subprocess.run([sys.executable, "-m", "bench.rss", mode, str(n)], cwd=HERE.parent, env=env,
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"bench.rss {mode} {n} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def hold(self) -> None:
        """Hold: submit throughput (pre-built, JSON, MessagePack), bytes per pending, RSS."""
        p = self.plan
        rates: dict[int, float] = {}
        for n in p.submit_sizes:
            M.clear_cache()
            if n in p.child_only:
                c = self.child("hold", n)
                rates[n] = n / c["cpu"]
                self.record("hold.submit", "submit_sends", {"n": n}, [c["cpu"]],
                            {"sends_per_s": rates[n], "rss": c, "process": "child"})
                self.say(f"  submit {'sends':8} n={n:>10,}: {rates[n]:>10,.0f} sends/s (child process)")
                continue
            self.say(f"hold.submit building {n:,} sends")
            M.hold_sends(n)
            sources = ["sends"] + (["json", "msgpack"] if n in p.decode_sizes else [])
            res = self.interleaved("hold.submit", n, {s: (lambda s=s: M.case_submit(n, s)) for s in sources},
                                   p.rounds(n))
            for s, (times, info) in res.items():
                if s == "sends":
                    rates[n] = n / min(times)
                self.record("hold.submit", f"submit_{s}", {"n": n}, times,
                            {"sends_per_s": n / min(times), "pending": info.get("pending")})
                self.say(f"  submit {s:8} n={n:>10,}: {n / min(times):>10,.0f} sends/s")
        M.clear_cache()
        small, big = p.submit_sizes[0], p.submit_sizes[-1]
        self.value("submit_flat", rates[big] / rates[small])
        n = p.hold_rss_size
        # RSS in a fresh process that builds each request just before submitting it and drops it after
        # (bench.rss hold-stream): the growth is everything the core holds, its copies of the sends included.
        self.say(f"hold.memory RSS, {n:,} pending sends submitted 10,000 at a time (fresh process)")
        c = self.child("hold-stream", n)
        rss = {"n": n, "core_bytes_per_pending": c["held_growth"] / n, "send_bytes_per_pending": 0.0,
               "total_bytes_per_pending": c["held_growth"] / n,
               "process_rss_bytes": c["rss_after"], "process_peak_rss_bytes": c["peak_rss"]}
        self.record("hold.memory", "rss_per_pending", {"n": n}, [c["cpu"]], rss)
        self.value("rss_bytes_per_pending", rss["total_bytes_per_pending"])
        self.value("rss_process_gib", c["rss_after"] / 2**30)
        self.say(f"  RSS at {n:,} pending: {rss['total_bytes_per_pending']:.0f} B per pending send, the send "
                 f"included; process {c['rss_after'] / 2**30:.2f} GiB")
        for n in p.memory_sizes:
            self.say(f"hold.memory tracemalloc n={n:,}")
            mem = M.core_bytes(n)
            self.record("hold.memory", "bytes_per_pending", {"n": n}, [0.0], mem)
            self.say(f"  {mem['total_bytes']:.0f} B per pending send held by the core, the send included")
        self.value("core_bytes_per_pending", mem["core_bytes"])
        self.value("total_bytes_per_pending", mem["total_bytes"])
        n = p.memory_sizes[-1]
        self.say(f"hold.memory tracemalloc, SCENARIOS sends (zones, local send times, distinct OTP bodies) n={n:,}")
        mem = M.core_bytes(n, "scenario")
        self.record("hold.memory", "bytes_per_pending_scenario", {"n": n}, [0.0], mem)
        self.say(f"  {mem['total_bytes']:.0f} B per pending send held by the core, the send included")
        self.value("scenario_bytes_per_pending", mem["total_bytes"])
        M.clear_cache()

    def holders(self) -> None:
        """Hold vs peers: sendcore's wheel, heapq, SortedList, APScheduler hold the same sends, then drain in order."""
        p = self.plan
        rates: dict[tuple[str, int], float] = {}
        for n in p.holder_sizes:
            M.clear_cache()
            M.hold_sends(n)
            names = ["wheel", "heapq", "sortedlist"] + (["apscheduler"] if n in p.aps_sizes else [])
            if n >= M10:
                names = [h for h in names if h in p.holders_10m]
            makers = {h: (lambda h=h: M.case_hold(h, n, p.aps_drain_cap if h == "apscheduler" else 0))
                      for h in names}
            res = self.interleaved("hold.peers", n, makers, p.rounds(n))
            for h, (times, info) in res.items():
                drained = info["drained"]
                extra = {"hold_drain_per_s": n / min(times), "add_per_s": n / max(info["add_cpu"], 1e-9),
                         "drain_per_s": drained / max(info["drain_cpu"], 1e-9), "drained": drained,
                         "ordered": info["ordered"]}
                if h == "apscheduler" and drained < n:
                    # Hold + drain of all n is extrapolated from the drain rate over the first jobs.
                    extra["hold_drain_per_s"] = n / (info["add_cpu"] + n / extra["drain_per_s"])
                    extra["drain_note"] = f"drain rate over the first {drained:,} due jobs"
                if n in p.memory_sizes and (h != "apscheduler" or n <= 100_000):
                    self.say(f"hold.peers bytes {h} n={n:,}")
                    extra["bytes_per_pending"] = M.holder_bytes(h, n)
                rates[(h, n)] = extra["hold_drain_per_s"]
                self.record("hold.peers", h, {"n": n}, times, extra)
                self.say(f"  {h:12} n={n:>10,}: hold+drain {extra['hold_drain_per_s']:>10,.0f}/s "
                         f"(add {extra['add_per_s']:,.0f}/s, drain {extra['drain_per_s']:,.0f}/s)")
        M.clear_cache()
        n = max(x for x in p.holder_sizes if ("apscheduler", x) in rates)
        self.value("wheel_vs_heapq", rates[("wheel", n)] / rates[("heapq", n)])
        self.value("wheel_vs_sortedlist", rates[("wheel", n)] / rates[("sortedlist", n)])
        self.value("wheel_vs_apscheduler", rates[("wheel", n)] / rates[("apscheduler", n)])

    def decide(self) -> None:
        """Decide: the full policy chain vs the same sends with policies off."""
        p = self.plan
        ratio = math.nan
        for n in p.decide_sizes:
            makers = {"all_policies": lambda: M.case_decide(n, True), "no_policies": lambda: M.case_decide(n, False)}
            res = self.interleaved("decide", n, makers, p.rounds(n))
            per = {}
            for k, (times, info) in res.items():
                per[k] = n / min(times)
                self.record("decide", k, {"n": n}, times, {"sends_per_s": per[k], "final": info.get("final"),
                                                          "reasons": info.get("reasons")})
                self.say(f"  decide {k:13} n={n:>10,}: {per[k]:>10,.0f} sends/s")
            ratio = per["all_policies"] / per["no_policies"]
            self.value("decide_all_policies_per_s", per["all_policies"])
            M.clear_cache()
        self.value("policies_vs_none", ratio)

    def pace(self) -> None:
        """Pace: route decisions/s for 1, 100, 10,000 routes; over-rate and utilisation."""
        p = self.plan
        n = p.pace_size
        worst_over, worst_util = 0.0, math.inf
        per: dict[int, float] = {}
        for routes in p.pace_routes:
            res = self.interleaved("pace", n, {f"routes={routes}": lambda r=routes: M.case_pace(n, r)},
                                   p.rounds(n))
            times, info = next(iter(res.values()))
            acc = M.pacing_accuracy(info["provider"].batches, M.SMS_RATE, M.SMS_BURST)
            per[routes] = n / min(times)
            worst_over = max(worst_over, acc["over_rate"])
            worst_util = min(worst_util, acc["utilisation"])
            self.record("pace", "route_decisions", {"routes": routes, "n": n}, times,
                        {"sends_per_s": per[routes], **acc, "sent": info["sent"], "pending": info["pending"]})
            self.say(f"  pace routes={routes:>6,}: {per[routes]:>10,.0f} sends/s, over-rate {acc['over_rate']:g}, "
                     f"utilisation {acc['utilisation']:.4f}")
            M.clear_cache()
        self.value("pacing_over_rate", worst_over)
        self.value("pacing_utilisation", worst_util)
        self.value("pace_10k_routes_vs_1", per[p.pace_routes[-1]] / per[p.pace_routes[0]])

    def limiters(self) -> None:
        """Rate decisions/s: sendcore's Gcra vs aiolimiter, asyncio-throttle, limits (moving, fixed window)."""
        p = self.plan
        n = p.limiter_decisions
        res = self.interleaved("limiters", n, {k: (lambda k=k: M.case_limiter(k, n)) for k in M.LIMITERS}, 5)
        per = {}
        for k, (times, info) in res.items():
            per[k] = n / min(times)
            self.record("limiters", k, {"decisions": n}, times, {"decisions_per_s": per[k], "allowed": info["allowed"]})
            self.say(f"  {k:16}: {per[k]:>12,.0f} decisions/s")
        self.value("gcra_vs_aiolimiter", per["gcra"] / per["aiolimiter"])
        self.value("gcra_vs_asyncio_throttle", per["gcra"] / per["asyncio-throttle"])
        self.value("gcra_vs_limits_moving", per["gcra"] / per["limits-moving"])
        self.value("gcra_vs_limits_fixed", per["gcra"] / per["limits-fixed"])

    def end_to_end(self) -> None:
        """End to end on virtual time: sendcore's core + drive vs the hand-rolled peer; the engine's overhead."""
        p = self.plan
        core_rate: dict[int, float] = {}
        peer_rate: dict[int, float] = {}
        for n in p.e2e_sizes:
            M.clear_cache()
            if n in p.child_only:
                c = self.child("e2e-core", n)
                core_rate[n] = n / c["cpu"]
                self.record("e2e", "sendcore", {"n": n}, [c["cpu"]],
                            {"sends_per_s": core_rate[n], "peak_rss_growth": c["peak_growth"],
                             "process_peak_rss": c["peak_rss"], "rss": c, "process": "child"})
                self.say(f"  e2e {'sendcore':11} n={n:>10,}: {core_rate[n]:>10,.0f} sends/s, "
                         f"peak RSS +{c['peak_growth'] / 2**20:,.0f} MiB (child process)")
                continue
            self.say(f"e2e building scenario n={n:,}")
            M.scenario(n)
            makers = {"sendcore": lambda: M.case_e2e_core(n)}
            if n <= p.e2e_peer_max:
                makers["hand_rolled"] = lambda: M.case_e2e_hand_rolled(n)
            res = self.interleaved("e2e", n, makers, p.rounds(n))
            for k, (times, info) in res.items():
                rate = n / min(times)
                (core_rate if k == "sendcore" else peer_rate)[n] = rate
                extra = {"sends_per_s": rate, "final": info.get("final"), "reasons": info.get("reasons"),
                         "pending": info.get("pending")}
                if n == p.e2e_rss_size:
                    M.clear_cache()
                    c = self.child("e2e-core" if k == "sendcore" else "e2e-peer", n)
                    extra.update(peak_rss_growth=c["peak_growth"], process_peak_rss=c["peak_rss"], rss=c)
                    self.value(f"e2e_peak_rss_bytes_per_send_{k}", c["peak_growth"] / n)
                self.record("e2e", k, {"n": n}, times, extra)
                rss = f", peak RSS +{extra['peak_rss_growth'] / 2**20:,.0f} MiB" if "peak_rss_growth" in extra else ""
                self.say(f"  e2e {k:11} n={n:>10,}: {rate:>10,.0f} sends/s{rss}")
        M.clear_cache()
        big_peer = max(peer_rate)
        self.value("e2e_vs_hand_rolled", core_rate[big_peer] / peer_rate[big_peer])
        small = min(core_rate)
        self.value("e2e_flat", core_rate[max(core_rate)] / core_rate[small])
        self.value("e2e_per_s_at_largest", core_rate[max(core_rate)])
        if M1 in core_rate:
            self.value("e2e_per_s_1m", core_rate[M1])
        if M1 in peer_rate:
            self.value("e2e_vs_hand_rolled_1m", core_rate[M1] / peer_rate[M1])
        for n in p.engine_sizes:
            try:
                import sendcore.engine  # noqa: F401
            except Exception as exc:  # the engine is landing; say so and go on
                self.note(f"engine not importable ({exc!r}): skipped the engine-on-virtual-clock figure")
                return
            res = self.interleaved("e2e", n, {"engine_virtual": lambda: M.case_e2e_engine(n),
                                              "sendcore": lambda: M.case_e2e_core(n)}, p.rounds(n))
            per = {k: n / min(t) for k, (t, _) in res.items()}
            self.record("e2e", "engine_virtual", {"n": n}, res["engine_virtual"][0],
                        {"sends_per_s": per["engine_virtual"], "final": res["engine_virtual"][1].get("final")})
            self.say(f"  e2e engine on VirtualClock n={n:>10,}: {per['engine_virtual']:>10,.0f} sends/s "
                     f"({per['engine_virtual'] / per['sendcore']:.2f}x the bare core)")
            self.value("engine_vs_core", per["engine_virtual"] / per["sendcore"])
            M.clear_cache()

    def real_clock(self) -> None:
        """Real clock: lateness through the Engine (asyncio, uvloop) and the hand-rolled timers, same rates."""
        p = self.plan
        try:
            import sendcore.engine  # noqa: F401
        except Exception as exc:
            self.note(f"real clock: sendcore.engine is not importable yet ({exc!r}); skipped")
            return
        loops = ["asyncio"]
        try:
            import uvloop  # noqa: F401

            loops.append("uvloop")
        except ImportError:
            self.note("real clock: uvloop is not installed; asyncio only")
        for rate in p.real_rates:
            for loop in loops:
                for impl in ("engine", "hand_rolled"):
                    self.say(f"real_clock {impl} {loop} {rate:,} due/s for {p.real_seconds:g}s")
                    gc.collect()
                    w0 = time.perf_counter()
                    r = M.real_clock_lateness(rate, p.real_seconds, loop, impl)
                    wall = time.perf_counter() - w0
                    self.record("real_clock", f"{impl}_{loop}", {"due_per_s": rate}, [wall], r)
                    self.say(f"  lateness p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms  max {r['max_ms']:8.2f} ms"
                             f"  early {r['early']}{'  (submit overran t0)' if r['overran'] else ''}")
                    if impl == "engine":
                        self.value(f"real_p99_ms_{loop}_{rate // 1000}k", r["p99_ms"])
        n = p.real_instant_size
        for loop in loops:
            self.say(f"real_clock engine {loop}: {n:,} sends due at one instant")
            # In a fresh process: the guard's heap (other suites' caches) would slow the run's collector.
            c = self.child(f"instant-{loop}", n)
            r = c["info"]
            self.record("real_clock", f"instant_{loop}", {"n": n}, [c["wall"]], {**r, "process": "child"})
            self.say(f"  lateness p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms  max {r['max_ms']:8.2f} ms"
                     f"  early {r['early']}  batches {r['batches']}")
            self.value(f"real_instant_p99_ms_{loop}", r["p99_ms"])
            self.value(f"real_instant_early_{loop}", r["early"])

    def journal(self) -> None:
        """Journal: journaled submit (wall), e2e journal on / off (CPU), replay, restart (wall), bytes, snapshot pause.

        Sizes and rounds: ``bench.journal.JournalPlan`` (quick: 100k submits,
        10k e2e, 200k pending restart; full: 1M submits and restart, e2e 100k too).
        """
        try:
            from . import journal as J
        except Exception as exc:  # the journal is landing; say so and go on
            self.note(f"journal: bench.journal is not importable ({exc!r}); skipped")
            return
        self.say(f"journal: journals under {J.journal_root() or 'the temp dir'} ({J.filesystem_of()})")
        J.run_all(self, J.JournalPlan(self.plan.mode == "full"))

    def note(self, text: str) -> None:
        """A message printed with the summary (skipped parts)."""
        self.notes.append(text)
        self.say("NOTE: " + text)

    # ------------------------------------------------------------------ run and judge

    SUITES = ("hold", "holders", "decide", "pace", "limiters", "end_to_end", "real_clock", "journal")

    def run(self) -> None:
        """Warm up, then every suite not skipped."""
        self.say(f"bench.guard {self.plan.mode} mode; pid {os.getpid()}; load {os.getloadavg()[0]:.1f}")
        self.warm_up()
        for name in self.SUITES:
            if name in self.skip:
                self.note(f"suite {name} skipped (--skip)")
                continue
            getattr(self, name)()

    def judge(self) -> list[dict[str, Any]]:
        """Every figure of floors.toml with its floor/ceiling and verdict, in file order."""
        rows = []
        for key, spec in self.floors.items():
            if not isinstance(spec, dict):
                continue
            v = self.values.get(key)
            # A [figure.py312] table holds the bounds that replace the figure's own on Python 3.12+.
            newer = spec.get("py312") if sys.version_info >= (3, 12) else None
            if isinstance(newer, dict):
                spec = {**spec, **newer}
            lo, hi = spec.get(f"min_{self.plan.mode}", spec.get("min")), spec.get(f"max_{self.plan.mode}", spec.get("max"))
            if v is None:
                verdict = "n/a"
            elif (lo is not None and not v >= lo) or (hi is not None and not v <= hi):
                verdict = "FAIL"
            else:
                verdict = "ok" if (lo is not None or hi is not None) else "info"
            rows.append({"key": key, "value": v, "min": lo, "max": hi, "target": spec.get("target"),
                         "unit": spec.get("unit", ""), "verdict": verdict, "what": spec.get("what", "")})
        return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def print_table(rows: list[dict[str, Any]]) -> None:
    """The ratio table: name, measured, floor (min) or ceiling (max), the issue's target, verdict."""
    print()
    shown = [r for r in rows if r["value"] is not None]
    head = f"{'figure':40} {'measured':>10} {'floor/ceil':>11} {'target':>9}  verdict  what"
    print(head)
    print("-" * len(head))
    for r in shown:
        bound = f">= {_fmt(r['min'])}" if r["min"] is not None else (f"<= {_fmt(r['max'])}" if r["max"] is not None else "")
        target = r["target"]
        t = "" if target is None else (target if isinstance(target, str) else _fmt(target))
        print(f"{r['key']:40} {_fmt(r['value']):>10} {bound:>11} {t:>9}  {r['verdict']:7}  {r['what']}")
    if len(shown) < len(rows):
        print(f"({len(rows) - len(shown)} more figures are measured in --full mode only: "
              f"{', '.join(r['key'] for r in rows if r['value'] is None)})")


def _commit_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"id": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--", "sendcore")), "project": "sendcore"}


def save(guard: Guard, rows: list[dict[str, Any]], out_dir: Path) -> Path:
    """Write pytest-benchmark-style JSON (plus the guard's table) under ``out_dir``; return the path."""
    try:
        from importlib.metadata import version

        pb_version = version("pytest-benchmark")
    except Exception:
        pb_version = ""
    out_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    doc = {
        "machine_info": M.machine_info(), "commit_info": _commit_info(), "benchmarks": guard.benchmarks,
        "datetime": now.isoformat(), "version": pb_version,
        "guard": {"mode": guard.plan.mode, "rows": rows, "values": guard.values, "notes": guard.notes,
                  "elapsed_s": time.perf_counter() - guard.t0},
    }
    path = out_dir / f"guard-{guard.plan.mode}-{now:%Y%m%dT%H%M%S}.json"
    text = json.dumps(doc, indent=1, default=str)
    path.write_text(text)
    (out_dir / f"guard-{guard.plan.mode}-latest.json").write_text(text)
    return path


def load_floors(path: Path = FLOORS) -> dict[str, Any]:
    """The floors file as a dict of figure name -> {min|max, target, what, ...}."""
    with open(path, "rb") as f:
        return tomllib.load(f)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m bench.guard", description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="README figures: sizes to 10M (about 25 minutes, ~10 GB RAM)")
    ap.add_argument("--skip", default="", help=f"comma-separated suites to skip: {', '.join(Guard.SUITES)}")
    ap.add_argument("--floors", type=Path, default=FLOORS, help="floors file (default bench/floors.toml)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes (default bench/results/)")
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(Guard.SUITES)
    if unknown:
        print(f"bench.guard: unknown suite(s) in --skip: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    try:
        floors = load_floors(args.floors)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"bench.guard: cannot read floors file {args.floors}: {exc}", file=sys.stderr)
        return 2
    guard = Guard(Plan(args.full), floors, skip)
    guard.run()
    rows = guard.judge()
    print_table(rows)
    path = save(guard, rows, args.out)
    for n in guard.notes:
        print(f"note: {n}")
    print(f"\nresults: {path}  ({time.perf_counter() - guard.t0:.0f}s)")
    failed = [r for r in rows if r["verdict"] == "FAIL"]
    if failed:
        for r in failed:
            bound = f">= {_fmt(r['min'])}" if r["min"] is not None and not r["value"] >= r["min"] else f"<= {_fmt(r['max'])}"
            print(f"FAIL: {r['key']} = {_fmt(r['value'])} {r['unit']} is not {bound} ({r['what']})", file=sys.stderr)
        return 1
    print("all guarded figures meet their floors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
