"""Sends per second through the bundled generic ``http`` provider to a local JSON batch server.

Run ``python -m bench.provider_http`` (``--n`` sends per run, default 50,000;
``--rounds``, default 3; ``--profile`` prints where the engine process's
time goes) or call ``run(n=...)``.

Method. The batch API (``tests/http_server.py``, aiohttp on uvloop) runs in
a **child process** so it has its own core on this 2-core machine; every
request is really parsed there (JSON body, bearer token) and answered 200
with one JSON result per item. The engine process runs a real ``Engine``
with every policy of ``bench.workload.ALL_POLICIES_TOML`` on (smart sending,
frequency caps, spacing, quiet hours with the FR and US packs, suppression,
error segment) and only the ``http`` plugin, on uvloop (``Engine.run``) and,
for comparison, on asyncio's loop. Workload: ``n`` transactional SMS, one per
distinct recipient, numbers from ``bench.workload.phone`` (FR, US, DE, AU
mobiles), due at once, one 40-character body; **100 sends per request**
(``max_batch = 100``), the provider's default 8 requests in flight, 100
connections, keep-alive, no request rate limit; the item shape is the
default ``{id, to, body}`` plus ``{metadata.subject}``-free literals, and
results are matched by id. Timed: ``engine.submit`` of all sends until
``engine.drain()`` returns (every send final), **wall** time, and the engine
process's CPU seconds (``time.process_time``) over the same span per 1,000
sends. One warm-up run of 5,000 sends per configuration first, then
``rounds`` measured runs of each, interleaved; the best wall time is
reported with its CPU. Each run checks that every send ended ``sent`` and
the server counts the items it answered, so nothing is counted that did
not happen. The journal-on row uses ``[journal] path = <fresh temp dir>``
with default fsync (``batch``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from typing import Any

import msgspec

from sendcore import Engine, Send, Settings

from .workload import ALL_POLICIES_TOML, phone

__all__ = ["WORKLOAD", "main", "run"]

TOKEN = "bench-token"
BODY = "Your code is 482913. It expires in 5 min"
MAX_BATCH = 100
WARMUP = 5000
#: The workload, named in the table's title.
WORKLOAD = (f"transactional SMS to distinct recipients, {MAX_BATCH} per JSON request, 8 requests in flight, "
            "all policies on (bench.workload.ALL_POLICIES_TOML), local aiohttp batch API in a child process")


def _sends(n: int, tag: str) -> list[Send]:
    rnd = random.Random(5)
    return [Send(id=f"{tag}-{i:08d}", recipient=f"{tag}-p-{i:08d}", channel="sms", to=phone(i, rnd),
                 origin="transactional", body=BODY) for i in range(n)]


def _settings(url: str, journal: str) -> Settings:
    data = msgspec.toml.decode(ALL_POLICIES_TOML)
    data["journal"] = {"path": journal}
    data["providers"] = {"http": {"options": {
        "url": url, "channels": ["sms"], "max_batch": MAX_BATCH, "auth_env": "HTTP_BENCH_TOKEN",
        "item": {"id": "{id}", "to": "{to}", "body": "{body}", "type": "transactional"},
    }}}
    return Settings.from_dict(data)


async def _one(url: str, n: int, journal: str, tag: str, profile: Any = None) -> dict[str, Any]:
    import sendcore_http

    sends = _sends(n, tag)
    async with Engine(_settings(url, journal), plugins=[sendcore_http], load_entrypoints=False) as engine:
        if profile is not None:
            profile.enable()
        c0, t0 = time.process_time(), time.perf_counter()
        report = await engine.submit(sends)
        await engine.drain()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if profile is not None:
            profile.disable()
        stats = engine.stats()
    sent = stats.final.get("sent", 0)
    if report.accepted != n or sent != n:
        raise RuntimeError(f"bench.provider_http: {n} sends, {report.accepted} accepted, {sent} sent: {stats}")
    return {"n": n, "wall_s": wall, "cpu_s": cpu, "sends_per_s": n / wall, "cpu_s_per_1k": 1000.0 * cpu / n}


_CONFIGS = (("uvloop_journal_off", "uvloop", False), ("uvloop_journal_on", "uvloop", True),
            ("asyncio_journal_off", "asyncio", False))


def _go(url: str, n: int, loop: str, journal: bool, tag: str, profile: Any = None) -> dict[str, Any]:
    path = tempfile.mkdtemp(prefix="sendcore-http-bench-") if journal else ""
    try:
        coro = _one(url, n, path, tag, profile)
        got = Engine.run(coro) if loop == "uvloop" else asyncio.run(coro)
    finally:
        if path:
            shutil.rmtree(path, ignore_errors=True)
    got.update(loop=loop, journal=journal)
    return got


def _server() -> Any:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.http_server import ServerProcess

    os.environ["HTTP_BENCH_TOKEN"] = TOKEN  # the local server's token; a real secret never appears here
    return ServerProcess(TOKEN)


def run(n: int = 50_000, rounds: int = 3) -> dict[str, Any]:
    """Measure uvloop journal off, uvloop journal on and asyncio journal off; return the figures.

    Each configuration gets one warm-up run; then the measured runs are
    interleaved (round 1 of each, round 2 of each, ...) so that every
    configuration sees the same machine load; the best wall time is kept.
    """
    server = _server()
    out: dict[str, Any] = {"n": n, "rounds": rounds}
    with server as url:
        for key, loop, journal in _CONFIGS:
            _go(url, WARMUP, loop, journal, f"{key}-warm")
        for r in range(rounds):
            for key, loop, journal in _CONFIGS:
                got = _go(url, n, loop, journal, f"{key}-{r}")
                if key not in out or got["wall_s"] < out[key]["wall_s"]:
                    out[key] = got
    expected = len(_CONFIGS) * (WARMUP + rounds * n)
    if server.items != expected:
        raise RuntimeError(f"bench.provider_http: the server answered {server.items} items, expected {expected}")
    out["server_requests"] = server.requests
    out["server_items"] = server.items
    return out


def profile(n: int = 50_000) -> str:
    """cProfile of one uvloop, journal-off run (after a warm-up): the top functions by own time."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    with _server() as url:
        _go(url, WARMUP, "uvloop", False, "prof-warm")
        _go(url, n, "uvloop", False, "prof", prof)
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Print the figures as a rich table (or a profile with ``--profile``)."""
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(prog="python -m bench.provider_http", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="sends per measured run")
    ap.add_argument("--rounds", type=int, default=3, help="measured runs per configuration (best wall kept)")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one run instead")
    args = ap.parse_args(argv)
    if args.profile:
        print(profile(args.n))
        return 0
    figures = run(args.n, args.rounds)
    table = Table(title=(f"http provider: {args.n:,} {WORKLOAD}; best of {args.rounds} "
                         f"(load {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores)"))
    for col in ("loop", "journal", "sends/s (wall)", "wall s", "engine CPU s / 1k sends"):
        table.add_column(col, justify="right")
    for key, _, _ in _CONFIGS:
        f = figures[key]
        table.add_row(f["loop"], "on" if f["journal"] else "off", f"{f['sends_per_s']:,.0f}", f"{f['wall_s']:.2f}",
                      f"{f['cpu_s_per_1k']:.3f}")
    Console().print(table)
    print(f"server answered {figures['server_requests']:,} requests with {figures['server_items']:,} items "
          "(warm-ups included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
