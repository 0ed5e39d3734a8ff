"""The measurements behind the benchmark suites and the guard, as setup + run pairs.

Each ``case_*`` function does the untimed setup (building sends, encoding
bytes, creating a core) and returns a zero-argument ``run`` that does only the
work being measured and returns a small dict about it (counts, phase times).
The pytest-benchmark suites hand ``run`` to ``benchmark.pedantic``; the guard
times it with ``timed``. Both therefore measure exactly the same code.

Method, for every figure: CPU time of this process (``time.process_time``),
because the machine is shared and wall time counts other people's work;
the best (minimum) of the rounds, after ``gc.collect()``, with the garbage
collector left on as in production. A throughput is sends / that time; a
ratio divides two such figures measured in the same process, one after the
other, round by round interleaved, so both see the same machine load.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import platform
import re
import time
import tracemalloc
from typing import Any, Callable

import msgspec

from sendcore.core import Core
from sendcore.provider import ProviderSpec
from sendcore.routes import Gcra
from sendcore.send import Accepted, Origin, Send
from sendcore.settings import Settings
from sendcore.testing.simulate import InstantProvider, drive

from sendcore.testing import ProvidersPlugin

from . import peers
from .workload import (
    SCENARIO_START,
    SHARED_BODY,
    SMS_BURST,
    SMS_RATE,
    all_policies_settings,
    iter_sends,
    make_scenario,
    make_sends,
    scenario_answer,
    scenario_answer_one,
    scenario_providers,
)

__all__ = [
    "CHUNK",
    "HOLD_START",
    "INSTANT_SPEC",
    "LIMITERS",
    "NO_POLICIES_TOML",
    "Timing",
    "case_decide",
    "case_e2e_core",
    "case_e2e_engine",
    "case_e2e_hand_rolled",
    "case_hold",
    "case_limiter",
    "case_pace",
    "case_submit",
    "clear_cache",
    "hold_sends",
    "holder_bytes",
    "core_bytes",
    "machine_info",
    "pace_sends",
    "pacing_accuracy",
    "peak_rss_reset",
    "peak_rss_bytes",
    "real_clock_instant",
    "real_clock_lateness",
    "rss_bytes",
    "scenario",
    "timed",
]

#: Hold workload start (2026-11-18T11:06:40Z); sends spread over the next day.
HOLD_START = 1_795_000_000.0
#: Submit in requests of this many sends, as a platform's API would receive them.
CHUNK = 10_000

#: The policy-free baseline for the Decide suite: smart sending, quiet hours
#: and the error segment off, no caps, spacing or packs. Suppression and
#: expiry cannot be switched off; with no suppressed address and no expiry
#: hit they cost a check each.
NO_POLICIES_TOML = """
max_pending = 20_000_000
[channels.sms]
smart_sending_window = "0s"
quiet_hours = false
[channels.email]
smart_sending_window = "0s"
[error_segment]
origins = []
[journal]
path = ""
"""

#: An in-process provider that takes any channel, unpaced.
INSTANT_SPEC = ProviderSpec(name="instant", channels=("sms", "email", "push"), max_batch=500,
                            max_concurrency=1_000_000)

_ACCEPTED = Accepted(provider_id="ok")
_JSON = msgspec.json.Decoder(list[Send])
_MSGPACK = msgspec.msgpack.Decoder(list[Send])
_JSON_ENC = msgspec.json.Encoder()
_MSGPACK_ENC = msgspec.msgpack.Encoder()


# ---------------------------------------------------------------------------
# timing, memory and machine helpers
# ---------------------------------------------------------------------------


class Timing(msgspec.Struct):
    """CPU and wall seconds of one run, and what the run returned."""

    cpu: float
    wall: float
    info: dict[str, Any]


def timed(run: Callable[[], dict[str, Any]]) -> Timing:
    """Run ``run`` once after a full collection; return its CPU and wall time."""
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    info = run() or {}
    c1, w1 = time.process_time(), time.perf_counter()
    return Timing(cpu=c1 - c0, wall=w1 - w0, info=info)


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else 0


def rss_bytes() -> int:
    """Current resident set size of this process (Linux ``VmRSS``)."""
    return _status_kib("VmRSS") * 1024


def peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) so the next peak is this run's; False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size since the last ``peak_rss_reset`` (Linux ``VmHWM``)."""
    return _status_kib("VmHWM") * 1024


def machine_info() -> dict[str, Any]:
    """What ran the measurement: CPU, cores, memory, Python, load (pytest-benchmark's keys where they exist)."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1).strip() if m else ""
    except OSError:
        pass
    try:
        mem = _meminfo_total()
    except OSError:
        mem = 0
    return {
        "node": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "system": platform.system(),
        "release": platform.release(),
        "cpu": {"brand_raw": cpu, "count": os.cpu_count()},
        "memory_bytes": mem,
        "loadavg": os.getloadavg(),
    }


def _meminfo_total() -> int:
    with open("/proc/meminfo") as f:
        m = re.search(r"MemTotal:\s+(\d+) kB", f.read())
    return int(m.group(1)) * 1024 if m else 0


# ---------------------------------------------------------------------------
# workload cache: building a million sends takes seconds; build once per size
# ---------------------------------------------------------------------------

_CACHE: dict[tuple[str, int], Any] = {}


def clear_cache() -> None:
    """Drop every cached workload (the guard calls it between suites to bound memory)."""
    _CACHE.clear()
    gc.collect()


def hold_sends(n: int) -> list[Send]:
    """``bench.workload.make_sends``: n distinct recipients over a day, one shared body (cached)."""
    got = _CACHE.get(("hold", n))
    if got is None:
        got = _CACHE[("hold", n)] = make_sends(n, HOLD_START)
    return got


def scenario(n: int) -> Any:
    """``bench.workload.make_scenario(n)`` (cached)."""
    got = _CACHE.get(("scenario", n))
    if got is None:
        got = _CACHE[("scenario", n)] = make_scenario(n)
    return got


# ---------------------------------------------------------------------------
# Hold: submit, memory, drain in order
# ---------------------------------------------------------------------------


def case_submit(n: int, source: str = "sends") -> Callable[[], dict[str, Any]]:
    """Submit ``n`` pending sends to a fresh all-policies core, in requests of ``CHUNK``.

    ``source``: ``sends`` (pre-built ``Send`` objects), ``json`` or ``msgpack``
    (each request's bytes decoded with one reused ``msgspec`` decoder of
    ``list[Send]``, then submitted). Encoding happens in setup, not timed.
    Every send is due later, so all of them stay pending.
    """
    sends = hold_sends(n)
    chunks: list[Any]
    if source == "sends":
        chunks = [sends[i:i + CHUNK] for i in range(0, n, CHUNK)]
        decode = None
    elif source == "json":
        chunks = [_JSON_ENC.encode(sends[i:i + CHUNK]) for i in range(0, n, CHUNK)]
        decode = _JSON.decode
    elif source == "msgpack":
        chunks = [_MSGPACK_ENC.encode(sends[i:i + CHUNK]) for i in range(0, n, CHUNK)]
        decode = _MSGPACK.decode
    else:
        raise ValueError(f"source: expected sends, json or msgpack, got {source!r}")
    core = Core(all_policies_settings(), [INSTANT_SPEC])
    now = HOLD_START - 10.0

    def run() -> dict[str, Any]:
        submit = core.submit
        if decode is None:
            for c in chunks:
                submit(c, now)
        else:
            for c in chunks:
                submit(decode(c), now)
        return {"pending": core.pending}

    return run


def case_submit_stream(n: int) -> Callable[[], dict[str, Any]]:
    """Submit ``make_sends(n)`` to a fresh all-policies core in requests of ``CHUNK``, each built just before
    and dropped after it is submitted: what stays is what the core holds (``bench.rss hold-stream``)."""
    core = Core(all_policies_settings(), [INSTANT_SPEC])
    now = HOLD_START - 10.0

    def run() -> dict[str, Any]:
        for chunk in iter_sends(n, HOLD_START, chunk=CHUNK):
            core.submit(chunk, now)
        return {"pending": core.pending, "core": core}

    return run


def core_bytes(n: int, source: str = "hold") -> dict[str, float]:
    """Bytes per pending send held by a core, by tracemalloc (deterministic for a given code and workload).

    The caller's ``Send`` objects are dropped after the submit: ``total_bytes``
    is everything the core holds per pending send, its own copies of the
    sends included (sends due past the current 64 s slot are held as rows,
    not as the caller's objects; the others keep the caller's object alive,
    and it is counted). ``core_bytes`` is the same figure, kept under its
    name of earlier versions, which counted only the core's structures
    beside the caller's objects. Sends share one body string. RSS is read
    in a fresh process instead (``bench.rss``): in this one, freed pages are
    reused.

    ``source="scenario"`` holds the SCENARIOS day's sends instead
    (``make_scenario``: every send names its timezone, campaigns a local send
    time, OTP bodies are distinct), submitted at the day's start.
    """
    settings = all_policies_settings()
    clear_cache()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    if source == "scenario":
        sc = make_scenario(n)
        sends, at, providers = sc.sends, sc.start, scenario_providers()
        del sc
    else:
        sends, at, providers = make_sends(n, HOLD_START), HOLD_START - 10, [INSTANT_SPEC]
    after_sends = tracemalloc.get_traced_memory()[0]
    core = Core(settings, providers)
    core.submit(sends, at)
    del sends
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert core.pending == n
    del core
    gc.collect()
    del after_sends
    return {"core_bytes": (held - base) / n, "total_bytes": (held - base) / n}


def case_hold(name: str, n: int, drain_cap: int = 0) -> Callable[[], dict[str, Any]]:
    """Hold ``n`` sends in holder ``name`` (see ``peers.HOLDERS``), then pop them as the clock moves.

    The clock moves in 1 s steps over the day the sends are spread on
    (86,401 pops for every holder). ``drain_cap`` > 0 stops the drain after
    that many sends (APScheduler's ``remove_job`` shifts a sorted list, so
    draining a million jobs would take hours); the drain rate is then over
    those sends. Returns the add and drain phase times (CPU) and counts.
    """
    sends = hold_sends(n)
    cls = peers.HOLDERS[name]

    def run() -> dict[str, Any]:
        h = cls()
        pt = time.process_time
        c0 = pt()
        h.add(sends)
        c1 = pt()
        t, end, got = HOLD_START, HOLD_START + 86401.0, 0
        pop = h.pop_due
        last = -math.inf
        ordered = True
        while t < end:
            t += 1.0
            out = pop(t)
            if out:
                got += len(out)
                # Spot-check the order (first and last of each pop) without a per-send cost.
                if out[0].send_at < last:
                    ordered = False
                last = out[-1].send_at
                if drain_cap and got >= drain_cap:
                    break
        c2 = pt()
        if hasattr(h, "close"):
            h.close()
        return {"add_cpu": c1 - c0, "drain_cpu": c2 - c1, "drained": got, "ordered": ordered}

    return run


def holder_bytes(name: str, n: int) -> float:
    """Bytes per pending send a holder adds, by tracemalloc (the sends themselves excluded)."""
    sends = hold_sends(n)
    cls = peers.HOLDERS[name]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    h = cls()
    h.add(sends)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    if hasattr(h, "close"):
        h.close()
    del h
    return (held - base) / n


# ---------------------------------------------------------------------------
# Decide: the policy chain
# ---------------------------------------------------------------------------


def case_decide(n: int, policies: bool = True) -> Callable[[], dict[str, Any]]:
    """Drive ``n`` scenario sends, all due at one instant, through the policy chain (submit untimed).

    The scenario's sends (55% campaign, 25% flow, 20% OTP over ~20 zones,
    about three per recipient) are re-timed to one instant, 2026-11-27
    14:00 UTC (afternoon in Europe, night in Asia-Pacific, morning in the
    Americas), so admission sees every policy verdict: pass, defer to the
    morning (quiet hours), skip (smart sending, suppression, error segment).
    Providers are unpaced, so the figure is the policies' cost, not pacing.
    ``policies=False`` runs the same sends with ``NO_POLICIES_TOML``.
    """
    sc = scenario(n)
    key = ("decide-sends", n)
    sends = _CACHE.get(key)
    at = SCENARIO_START + 26 * 3600.0
    if sends is None:
        replace = msgspec.structs.replace
        sends = _CACHE[key] = [
            replace(s, send_at=at, local_send_at=None,
                    expires_at=None if s.expires_at is None else at + (s.expires_at - s.send_at))
            for s in sc.sends
        ]
    settings = all_policies_settings() if policies else Settings.from_toml_bytes(NO_POLICIES_TOML)
    specs = [ProviderSpec(name="smsgw", channels=("sms",), max_batch=500, max_concurrency=1_000_000),
             ProviderSpec(name="esp", channels=("email",), max_batch=500, max_concurrency=1_000_000)]
    core = Core(settings, specs)
    for ch, addr in sc.suppressed:
        core.suppress(ch, addr, "marketing")
    core.submit(sends, SCENARIO_START)
    answer = scenario_answer(sc.bad)

    def run() -> dict[str, Any]:
        drive(core, sc.until, answer, start=at)
        st = core.stats()
        return {"final": st.final, "reasons": st.reasons, "pending": st.pending}

    return run


# ---------------------------------------------------------------------------
# Pace: routes, GCRA accuracy, utilisation
# ---------------------------------------------------------------------------


def pace_sends(n: int, routes: int) -> list[Send]:
    """``n`` transactional SMS due at once, spread round-robin over ``routes`` carriers (cached)."""
    key = ("pace", n * 100_003 + routes)
    got = _CACHE.get(key)
    if got is None:
        origin = Origin.TRANSACTIONAL
        got = _CACHE[key] = [
            Send(id=f"p-{i:09d}", recipient=f"r-{i:09d}", channel="sms", to=f"+336{i % 10**8:08d}",
                 origin=origin, send_at=HOLD_START, body=SHARED_BODY, carrier=f"c{i % routes:05d}")
            for i in range(n)
        ]
    return got


def case_pace(n: int, routes: int, rate: float = SMS_RATE, burst: int = SMS_BURST) -> Callable[[], dict[str, Any]]:
    """Pace ``n`` sends due at once over ``routes`` carrier routes at ``rate``/s, burst ``burst``, each.

    Setup submits; ``run`` drives the core until every send left (route
    decisions: GCRA checks, batch forming, wake-ups). The run returns the
    provider, which kept (time, batch) of every call, for ``pacing_accuracy``.
    """
    sends = pace_sends(n, routes)
    settings = Settings.from_toml_bytes(NO_POLICIES_TOML)
    spec = ProviderSpec(name="gw", channels=("sms",), max_batch=500, rate=rate, burst=burst,
                        max_concurrency=1_000_000)
    core = Core(settings, [spec])
    core.submit(sends, HOLD_START)
    until = HOLD_START + 2.0 * n / (rate * routes) + 3600.0

    def run() -> dict[str, Any]:
        provider = InstantProvider(keep=True)
        drive(core, until, provider, start=HOLD_START)
        return {"provider": provider, "pending": core.pending, "sent": provider.count}

    return run


def pacing_accuracy(batches: list[tuple[float, Any]], rate: float, burst: int, window: float = 1.0) -> dict[str, float]:
    """Over-rate and utilisation of paced routes, from the (time, batch) pairs a provider saw.

    Over-rate: for each route, the most units sent in any closed window of
    ``window`` seconds, minus what GCRA allows there (``burst + rate * window``,
    the carrier's contract); the max over routes, floored at 0. Must be 0.
    A window is shortened by 1 µs so float rounding of epoch instants
    cannot count a unit on the boundary twice.
    Utilisation: for each route with a backlog (more units than the burst),
    units sent / (burst + rate * (last - first send time)); the min over
    routes. 1.0 means the route never idled while sends waited.
    Units are messages here (pace sends are one SMS segment each).
    """
    per: dict[str, list[tuple[float, int]]] = {}
    for t, b in batches:
        per.setdefault(b.carrier, []).append((t, len(b.sends)))
    allowed = burst + rate * window
    worst = -math.inf
    util = math.inf
    span = window - 1e-6
    for evs in per.values():
        evs.sort()
        j = 0
        inside = 0
        for i, (t, u) in enumerate(evs):
            # Window [t, t + span]: extend the right end, then drop the left.
            while j < len(evs) and evs[j][0] <= t + span:
                inside += evs[j][1]
                j += 1
            worst = max(worst, inside - allowed)
            inside -= u
        units = sum(u for _, u in evs)
        if units > burst:
            dt = evs[-1][0] - evs[0][0]
            util = min(util, units / (burst + rate * dt))
    return {
        "over_rate": max(0.0, worst) if worst != -math.inf else 0.0,
        "utilisation": util if util != math.inf else 1.0,
        "routes": len(per),
    }


def case_limiter(name: str, n: int, rate: float = 10_000.0, burst: int = 1_000) -> Callable[[], dict[str, Any]]:
    """``n`` rate decisions on the wall clock, as fast as they come: "may one unit leave now? then take it".

    The limit is ``rate``/s with ``burst`` (10,000/s, burst 1,000: a fast
    carrier), so a stream of decisions mixes allowed and denied ones; the
    run reports how many were allowed. Each library is used per its docs:

    * ``gcra``: sendcore's ``Gcra``: ``available(now) >= 1`` then ``take(now, 1)``.
    * ``aiolimiter``: ``AsyncLimiter(burst, burst / rate)``: ``has_capacity()``
      then ``await acquire()`` (which does not wait when there is capacity).
    * ``limits-moving`` / ``limits-fixed``: ``MovingWindowRateLimiter`` /
      ``FixedWindowRateLimiter`` on ``MemoryStorage``, ``hit(item, key)`` with
      "10000 per 1 second" (no burst parameter: the window is the burst).
    * ``asyncio-throttle``: ``Throttler(rate, 1.0)`` has no non-blocking
      check; the decision reads its log after ``flush()``, then ``await
      acquire()`` (which does not wait under the limit). A sliding log.
    """
    if name == "gcra":
        g = Gcra(rate, burst)

        def run() -> dict[str, Any]:
            now_of, available, take = time.time, g.available, g.take
            ok = 0
            for _ in range(n):
                now = now_of()
                if available(now) >= 1:
                    take(now, 1)
                    ok += 1
            return {"allowed": ok}

        return run
    if name in ("limits-moving", "limits-fixed"):
        from limits import RateLimitItemPerSecond
        from limits.storage import MemoryStorage
        from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

        storage = MemoryStorage()
        strategy = (MovingWindowRateLimiter if name == "limits-moving" else FixedWindowRateLimiter)(storage)
        item = RateLimitItemPerSecond(int(rate), 1)

        def run() -> dict[str, Any]:
            hit = strategy.hit
            ok = 0
            for _ in range(n):
                if hit(item, "carrier"):
                    ok += 1
            return {"allowed": ok}

        return run
    if name == "aiolimiter":
        from aiolimiter import AsyncLimiter

        async def main() -> int:
            lim = AsyncLimiter(burst, burst / rate)
            has, acquire = lim.has_capacity, lim.acquire
            ok = 0
            for _ in range(n):
                if has():
                    await acquire()
                    ok += 1
            return ok

        return lambda: {"allowed": asyncio.run(main())}
    if name == "asyncio-throttle":
        from asyncio_throttle import Throttler

        async def main() -> int:
            th = Throttler(rate_limit=int(rate), period=1.0)
            ok = 0
            for _ in range(n):
                th.flush()
                if len(th._task_logs) < th.rate_limit:
                    await th.acquire()
                    ok += 1
            return ok

        return lambda: {"allowed": asyncio.run(main())}
    raise ValueError(f"unknown limiter {name!r}")


LIMITERS = ("gcra", "aiolimiter", "asyncio-throttle", "limits-moving", "limits-fixed")


# ---------------------------------------------------------------------------
# End to end on virtual time
# ---------------------------------------------------------------------------


def case_e2e_core(n: int) -> Callable[[], dict[str, Any]]:
    """The scenario through the sans-I/O core and ``drive``: submit at the start, then the whole day.

    Everything after setup is timed: submit, every wake-up, every policy,
    pacing (SMS 1,000/s burst 100 per carrier), batches of up to 500, the
    provider's answers (1% temporary failures, retried), outcomes collected.
    """
    sc = scenario(n)
    core = Core(all_policies_settings(), scenario_providers())
    for ch, addr in sc.suppressed:
        core.suppress(ch, addr, "marketing")
    answer = scenario_answer(sc.bad)

    def run() -> dict[str, Any]:
        outcomes: list[Any] = []
        core.submit(sc.sends, sc.start)
        drive(core, sc.until, answer, start=sc.start, outcomes=outcomes)
        st = core.stats()
        return {"final": st.final, "reasons": st.reasons, "pending": st.pending, "outcomes": len(outcomes)}

    return run


def case_e2e_hand_rolled(n: int) -> Callable[[], dict[str, Any]]:
    """The same scenario through ``peers.HandRolled`` on a virtual-time asyncio loop."""
    sc = scenario(n)
    answer = scenario_answer_one(sc.bad)

    def run() -> dict[str, Any]:
        peer = peers.run_hand_rolled(sc.sends, sc.start, answer, sms_rate=SMS_RATE, sms_burst=SMS_BURST,
                                     suppressed=sc.suppressed)
        return {"final": peer.final, "pending": peer.pending, "outcomes": len(peer.outcomes)}

    return run


class _ScenarioProvider:
    """An in-process provider object for the engine, answering like ``scenario_answer``."""

    def __init__(self, name: str, channels: tuple[str, ...], bad: frozenset[str], rate: Any = None,
                 burst: Any = None) -> None:
        self.name = name
        self.channels = channels
        self.max_batch = 500
        self.rate = rate
        self.burst = burst
        self.max_concurrency = 1_000_000
        self.timeout = 30.0
        self._answer = scenario_answer(bad)

    async def send(self, batch: Any) -> list[Any]:
        return self._answer(batch, 0.0)




def case_e2e_engine(n: int) -> Callable[[], dict[str, Any]]:
    """The scenario through ``sendcore.Engine`` on a ``VirtualClock`` (asyncio loop): the shell's overhead."""
    from sendcore.engine import Engine
    from sendcore.testing import VirtualClock

    sc = scenario(n)

    def run() -> dict[str, Any]:
        async def main() -> dict[str, Any]:
            sms = _ScenarioProvider("smsgw", ("sms",), sc.bad, SMS_RATE, SMS_BURST)
            esp = _ScenarioProvider("esp", ("email",), sc.bad)
            engine = Engine(all_policies_settings(), clock=VirtualClock(sc.start), plugins=[ProvidersPlugin(sms, esp)],
                            load_entrypoints=False)
            async with engine:
                for ch, addr in sc.suppressed:
                    engine.suppress(ch, addr, "marketing")
                await engine.submit(sc.sends)
                await engine.drain()
                st = engine.stats()
            return {"final": st.final, "pending": st.pending}

        return asyncio.run(main())

    return run


# ---------------------------------------------------------------------------
# Real clock: lateness through the Engine
# ---------------------------------------------------------------------------


def _loop_runner(loop_name: str) -> Callable[[Any], Any]:
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run


def _lateness_stats(late: list[float]) -> dict[str, float]:
    late.sort()
    k = len(late)
    if not k:
        return {"p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan, "n": 0}
    return {
        "p50_ms": late[k // 2] * 1e3,
        "p99_ms": late[min(k - 1, int(k * 0.99))] * 1e3,
        "max_ms": late[-1] * 1e3,
        "n": k,
    }


def real_clock_lateness(rate: float, seconds: float, loop_name: str = "asyncio", impl: str = "engine") -> dict[str, Any]:
    """Lateness of ``rate`` due sends per second for ``seconds``, on the wall clock.

    ``rate * seconds`` transactional SMS are submitted up front (before the
    first is due), due every 1/rate s from ``t0``; an in-process provider
    (max_batch 1,000, 64 calls in flight, unpaced) notes ``time.time()`` at
    each call. Lateness = that time minus the send's ``send_at`` (never
    negative for a correct engine). ``impl``: ``engine`` (``sendcore.Engine``
    on ``RealClock``) or ``hand_rolled`` (one ``loop.call_at`` per send, a
    task per send calling the provider; no limiter, no policies: the floor
    of what per-send timers cost). ``overran`` says the submit was still
    running when sends fell due (those early sends count as late).
    """
    n = int(rate * seconds)
    run = _loop_runner(loop_name)
    if impl == "engine":
        return run(_engine_lateness(n, rate))
    if impl == "hand_rolled":
        return run(_hand_rolled_lateness(n, rate))
    raise ValueError(f"impl: expected engine or hand_rolled, got {impl!r}")


def real_clock_instant(n: int, loop_name: str = "asyncio") -> dict[str, Any]:
    """Lateness of ``n`` transactional SMS all due at one instant, on the wall clock, through the Engine.

    The same provider and settings as ``real_clock_lateness``; the sends are
    submitted before the instant, so the figure is how long the engine takes
    to hand a burst to the provider (the last one's lateness is the drain time).
    """
    return _loop_runner(loop_name)(_engine_lateness(n, math.inf))


def _lateness_sends(n: int, t0: float, rate: float) -> list[Send]:
    origin = Origin.TRANSACTIONAL
    return [Send(id=f"l-{i:09d}", recipient=f"r-{i:09d}", channel="sms", to=f"+336{i % 10**8:08d}",
                 origin=origin, send_at=t0 + i / rate, body=SHARED_BODY) for i in range(n)]


async def _engine_lateness(n: int, rate: float) -> dict[str, Any]:
    from sendcore.engine import Engine

    calls: list[tuple[float, Any]] = []

    class Instant:
        name = "instant"
        channels = ("sms",)
        max_batch = 1000
        max_concurrency = 64
        rate = None
        burst = None
        timeout = 30.0

        async def send(self, batch: Any) -> list[Any]:
            calls.append((time.time(), batch))
            return [_ACCEPTED] * len(batch.sends)

    settings = Settings.from_toml_bytes(b'max_pending = 20_000_000\n[journal]\npath = ""\n')
    lead = 0.5 + n / 40_000.0
    t0 = time.time() + lead
    sends = _lateness_sends(n, t0, rate)
    async with Engine(settings, plugins=[ProvidersPlugin(Instant())], load_entrypoints=False) as engine:
        for i in range(0, n, CHUNK):
            await engine.submit(sends[i:i + CHUNK])
        submitted = time.time()
        await engine.drain()
    late = [t - s.send_at for t, b in calls for s in b.sends]
    early = sum(1 for x in late if x < 0)
    out: dict[str, Any] = _lateness_stats(late)
    out.update(overran=submitted > t0, early=early, batches=len(calls))
    return out


async def _hand_rolled_lateness(n: int, rate: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    late: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    done = loop.create_future()
    left = [n]

    async def provider_send(s: Send) -> Any:
        late.append(time.time() - s.send_at)
        return _ACCEPTED

    async def send_one(s: Send) -> None:
        await provider_send(s)
        left[0] -= 1
        if not left[0] and not done.done():
            done.set_result(None)

    def due(s: Send) -> None:
        t = loop.create_task(send_one(s))
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    lead = 0.5 + n / 40_000.0
    t0 = time.time() + lead
    sends = _lateness_sends(n, t0, rate)
    now, mono = time.time(), loop.time()
    for s in sends:
        # The idiom: convert the wall-clock instant to the loop's clock once per send.
        loop.call_at(mono + (s.send_at - now), due, s)
    submitted = time.time()
    await done
    out: dict[str, Any] = _lateness_stats(late)
    out.update(overran=submitted > t0, early=sum(1 for x in late if x < 0), batches=n)
    return out
