"""Speed of the bundled ``smtp`` provider: the real ``Engine`` sending email through ``plugins/smtp`` to aiosmtpd.

Run ``python -m bench.provider_smtp`` (``--n``, ``--rounds``, ``--pool-size``,
``--loop``). ``run(n=...)`` returns the figures as a dict.

Method: the SMTP server (``tests.smtp_server.ServerProcess``: aiosmtpd on
127.0.0.1, always 250, on uvloop) runs in a child process, so it has its
own core of this 2-core machine. In this process the ``Engine`` runs with
its default policies and the ``smtp`` provider only (``pool_size``
sessions, its default ``max_batch`` 50 and 2 batches in flight, no route
rate). Each round starts a fresh engine, sends a warm-up of 200 messages
(sessions opened, caches warm), then submits ``n`` transactional emails to
``n`` distinct recipients at once (text body of 56 characters, a subject,
no HTML) and times ``submit`` + ``drain``: wall time, and this process's
CPU time (``time.process_time``: the engine, the MIME building and
aiosmtplib; the journal writer thread's CPU counts too). The best round of
``rounds`` is reported, journal off (``[journal] path = ""``) and on (a
fresh temporary directory, default fsync settings). The server's count of
accepted messages is checked against what the engine reports as sent.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Any

from sendcore import Engine, Send, Settings

import sendcore_smtp

from tests.smtp_server import ServerProcess

__all__ = ["WORKLOAD", "make_emails", "run"]

WARMUP = 200
BODY = "Your order has shipped: track it at https://ex.co/t/abc"
SUBJECT = "Your order has shipped"
#: The workload, named in the table's title.
WORKLOAD = ("transactional emails to distinct recipients, text body + subject, one message per SMTP "
            "transaction, Engine default policies, aiosmtpd in a child process on 127.0.0.1")


def make_emails(n: int, prefix: str) -> list[Send]:
    """``n`` transactional emails to ``n`` distinct recipients."""
    return [
        Send(id=f"{prefix}-{i:09d}", recipient=f"{prefix}-p-{i:09d}", channel="email", to=f"{prefix}{i}@example.com",
             origin="transactional", body=BODY, metadata={"subject": SUBJECT})
        for i in range(n)
    ]


async def _round(n: int, port: int, journal: str, pool_size: int, max_concurrency: int | None) -> dict[str, Any]:
    provider: dict[str, Any] = {"options": {"from": "Acme <news@acme.example>", "host": "127.0.0.1", "port": port,
                                            "pool_size": pool_size, "local_hostname": "bench.client"}}
    if max_concurrency is not None:
        provider["max_concurrency"] = max_concurrency
    settings = Settings.from_dict({"journal": {"path": journal}, "providers": {"smtp": provider}})
    async with Engine(settings, plugins=[sendcore_smtp], load_entrypoints=False) as engine:
        await engine.submit(make_emails(WARMUP, "w"))
        await engine.drain()
        sends = make_emails(n, "b")
        c0, t0 = time.process_time(), time.perf_counter()
        await engine.submit(sends)
        await engine.drain()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        stats = engine.stats()
    sent = stats.final.get("sent", 0)
    return {"wall_s": wall, "cpu_s": cpu, "sends_per_s": n / wall, "cpu_s_per_1k": cpu / n * 1000,
            "sent": sent, "expected_sent": n + WARMUP, "final": dict(stats.final)}


def _run_loop(coro: Any, loop: str) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def run(n: int = 5000, rounds: int = 3, pool_size: int = 4, loop: str = "uvloop",
        max_concurrency: int | None = None, journal: bool | None = None) -> dict[str, Any]:
    """Measure ``rounds`` rounds of ``n`` emails, journal off and on (or only one when ``journal`` is given).

    Returns ``{"off": best round, "on": best round, "server_messages": ..., ...}``;
    a round is the dict of ``_round`` (``sends_per_s`` wall, ``cpu_s_per_1k``).
    """
    modes = ["off", "on"] if journal is None else (["on"] if journal else ["off"])
    server = ServerProcess(use_uvloop=True).start()
    out: dict[str, Any] = {"n": n, "rounds": rounds, "pool_size": pool_size, "loop": loop,
                           "max_concurrency": max_concurrency or sendcore_smtp.SmtpProvider.max_concurrency}
    engine_sent = 0
    try:
        for mode in modes:
            best = None
            for _ in range(rounds):
                tmp = tempfile.mkdtemp(prefix="sendcore-bench-smtp-") if mode == "on" else ""
                try:
                    r = _run_loop(_round(n, server.port, tmp, pool_size, max_concurrency), loop)
                finally:
                    if tmp:
                        shutil.rmtree(tmp, ignore_errors=True)
                if r["sent"] != r["expected_sent"]:
                    raise RuntimeError(f"journal {mode}: only {r['sent']} of {r['expected_sent']} sent: {r['final']}")
                engine_sent += r["sent"]
                if best is None or r["wall_s"] < best["wall_s"]:
                    best = r
            out[mode] = best
    finally:
        messages, _ = server.stop()
    out["server_messages"] = messages
    out["engine_sent"] = engine_sent
    if messages != engine_sent:
        raise RuntimeError(f"the server accepted {messages} messages, the engine reports {engine_sent} sent")
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the figures as a rich table."""
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(prog="python -m bench.provider_smtp", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="emails per timed round (default 5000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per mode; the best is reported (default 3)")
    ap.add_argument("--pool-size", type=int, default=4, help="SMTP sessions in the pool (default 4)")
    ap.add_argument("--max-concurrency", type=int, default=None, help="batches in flight (default: the provider's)")
    ap.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help="the engine process's loop")
    args = ap.parse_args(argv)
    r = run(args.n, args.rounds, args.pool_size, args.loop, args.max_concurrency)
    table = Table(title=f"plugins/smtp -> aiosmtpd: {args.n:,} {WORKLOAD}; pool_size={r['pool_size']}, "
                        f"max_batch=50, max_concurrency={r['max_concurrency']}, {args.loop} loop, "
                        f"best of {args.rounds}")
    table.add_column("journal")
    table.add_column("sends/s (wall)", justify="right")
    table.add_column("engine CPU s / 1k sends", justify="right")
    table.add_column("wall s", justify="right")
    table.add_column("target", justify="right")
    for mode in ("off", "on"):
        b = r[mode]
        table.add_row(mode, f"{b['sends_per_s']:,.0f}", f"{b['cpu_s_per_1k']:.3f}", f"{b['wall_s']:.2f}", ">= 500/s")
    console = Console()
    console.print(table)
    console.print(f"server accepted {r['server_messages']:,} messages = engine sent (warm-ups included); "
                  f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
                  f"load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
