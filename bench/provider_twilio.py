"""Sends per second through the bundled ``twilio`` provider to a local server imitating Twilio.

Run ``python -m bench.provider_twilio`` (``--n`` sends per run, default 20,000;
``--rounds``, default 3; prints a rich table) or call ``run(n=...)``.

Method. The imitation Messages API (``tests/twilio_server.py``, aiohttp on
uvloop) runs in a **child process** so it has its own core on this 2-core
machine; every request is really parsed there (basic auth, form body,
idempotency token) and answered 201 with a JSON message resource. The engine
process runs a real ``Engine`` with its default policies (smart sending,
quiet hours, caps as configured by default, suppression, error segment) and
only the ``twilio`` plugin, on uvloop (``Engine.run``) and, for comparison, on
asyncio's loop. Workload: ``n`` transactional SMS, one per distinct recipient,
numbers from ``bench.workload.phone`` (FR, US, DE, AU mobiles), due at once,
one 40-character body; provider defaults (``max_batch`` 50, 4 batches in
flight, ``max_connections`` 100, keep-alive). Timed: ``engine.submit`` of all
sends until ``engine.drain()`` returns (every send final), **wall** time, and
the engine process's CPU seconds (``time.process_time``) over the same span
per 1,000 sends. One warm-up run of 2,000 sends per configuration first,
then ``rounds`` measured runs of each, interleaved; the best wall time is
reported with its CPU. Each run checks
that every send ended ``sent`` and that the server answered one request per
send, so nothing is counted that did not happen. The journal-on row uses
``[journal] path = <fresh temp dir>`` with default fsync (``batch``).
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

from sendcore import Engine, Send, Settings

from .workload import phone

__all__ = ["run", "main"]

ACCOUNT = "AC" + "b" * 32
TOKEN = "bench-token"
BODY = "Your code is 482913. It expires in 5 min"


def _sends(n: int, tag: str) -> list[Send]:
    rnd = random.Random(5)
    return [Send(id=f"{tag}-{i:08d}", recipient=f"p-{i:08d}", channel="sms", to=phone(i, rnd),
                 origin="transactional", body=BODY) for i in range(n)]


async def _one(url: str, n: int, journal: str, tag: str) -> dict[str, Any]:
    import sendcore_twilio

    settings = Settings.from_dict({
        "journal": {"path": journal},
        "providers": {"twilio": {"options": {"account_sid": ACCOUNT, "from": "+15005550006", "base_url": url}}},
    })
    sends = _sends(n, tag)
    async with Engine(settings, plugins=[sendcore_twilio], load_entrypoints=False) as engine:
        c0, t0 = time.process_time(), time.perf_counter()
        report = await engine.submit(sends)
        await engine.drain()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        stats = engine.stats()
    sent = stats.final.get("sent", 0)
    if report.accepted != n or sent != n:
        raise RuntimeError(f"bench.provider_twilio: {n} sends, {report.accepted} accepted, {sent} sent: {stats}")
    return {"n": n, "wall_s": wall, "cpu_s": cpu, "sends_per_s": n / wall, "cpu_s_per_1k": 1000.0 * cpu / n}


_CONFIGS = (("uvloop_journal_off", "uvloop", False), ("uvloop_journal_on", "uvloop", True),
            ("asyncio_journal_off", "asyncio", False))


def _go(url: str, n: int, loop: str, journal: bool, tag: str) -> dict[str, Any]:
    path = tempfile.mkdtemp(prefix="sendcore-twilio-bench-") if journal else ""
    try:
        coro = _one(url, n, path, tag)
        got = Engine.run(coro) if loop == "uvloop" else asyncio.run(coro)
    finally:
        if path:
            shutil.rmtree(path, ignore_errors=True)
    got.update(loop=loop, journal=journal)
    return got


def run(n: int = 20_000, rounds: int = 3) -> dict[str, Any]:
    """Measure uvloop journal off, uvloop journal on and asyncio journal off; return the figures.

    Each configuration gets one warm-up run of 2,000 sends; then the measured
    runs are interleaved (round 1 of each, round 2 of each, ...) so that every
    configuration sees the same machine load; the best wall time is kept.
    """
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.twilio_server import ServerProcess

    os.environ["TWILIO_AUTH_TOKEN"] = TOKEN  # the local server's token; a real token never appears here
    server = ServerProcess(ACCOUNT, TOKEN)
    out: dict[str, Any] = {"n": n, "rounds": rounds}
    with server as url:
        for key, loop, journal in _CONFIGS:
            _go(url, 2000, loop, journal, f"{key}-warm")
        for r in range(rounds):
            for key, loop, journal in _CONFIGS:
                got = _go(url, n, loop, journal, f"{key}-{r}")
                if key not in out or got["wall_s"] < out[key]["wall_s"]:
                    out[key] = got
    expected = len(_CONFIGS) * (2000 + rounds * n)
    if server.requests != expected:
        raise RuntimeError(f"bench.provider_twilio: the server answered {server.requests} requests, expected {expected}")
    out["server_requests"] = server.requests
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the figures as a rich table."""
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(prog="python -m bench.provider_twilio", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="sends per measured run")
    ap.add_argument("--rounds", type=int, default=3, help="measured runs per configuration (best wall kept)")
    args = ap.parse_args(argv)
    figures = run(args.n, args.rounds)
    table = Table(title=(f"twilio provider → imitation Twilio in a child process: {args.n:,} transactional SMS to "
                         f"distinct recipients, Engine default policies, max_batch 50 × 4 in flight, "
                         f"100 connections, best of {args.rounds} (load {os.getloadavg()[0]:.1f}, "
                         f"{os.cpu_count()} cores)"))
    for col in ("loop", "journal", "sends/s (wall)", "wall s", "engine CPU s / 1k sends"):
        table.add_column(col, justify="right")
    for key, _, _ in _CONFIGS:
        f = figures[key]
        table.add_row(f["loop"], "on" if f["journal"] else "off", f"{f['sends_per_s']:,.0f}", f"{f['wall_s']:.2f}",
                      f"{f['cpu_s_per_1k']:.3f}")
    Console().print(table)
    print(f"server answered {figures['server_requests']:,} requests (warm-ups included), one per send")
    return 0


if __name__ == "__main__":
    sys.exit(main())
