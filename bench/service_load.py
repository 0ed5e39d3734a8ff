"""Load generator for ``sendcore serve``: concurrent clients posting batches of sends over loopback.

Method: a ``sendcore serve`` child (uvloop, journal ``fsync = "batch"``, the
sandbox answering at once, no route limit, no token rate limit) on
127.0.0.1; this process runs N aiohttp clients, each posting one batch of
``--batch`` sends at a time (one body encoded per client before the clock
starts, its ids made unique per request by a byte replace) for ``--seconds``. Each row is one run on a fresh
journal: accepted sends per second of wall time, p50/p99 of the request
latency, and the 429 answers. Workloads:

- ``scheduled``: every send due in an hour (intake, journal fsync, answer);
- ``immediate``: due now, so the engine also dispatches them to the sandbox;
- ``overload``: ``max_pending`` far below the offered load: the service must
  answer 429 with Retry-After, and after the run the engine must hold
  exactly the sends acknowledged (nothing dropped, nothing extra).

Both processes share the machine's cores. Run: ``python -m bench.service_load``
(``--quick`` for a short run of one concurrency level).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import msgspec

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
max_pending = {max_pending}
[journal]
path = "{dir}/journal"
fsync = "batch"
[service]
state_dir = "{dir}/state"
tokens_file = "{dir}/tokens.json"
token_rate = 0
max_items = 10000
[providers.sandbox]
rate = 0
max_batch = 1000
[providers.sandbox.options]
latency_ms = {{ default = 0 }}
delivery_reports = false
temporary_error_rate = 0
permanent_error_rate = 0
stop_rate = 0
"""


def _template(worker: int, batch: int, send_at: float | None) -> bytes:
    """One batch body whose ids hold ``@@``, replaced by the request number: unique ids at little cost."""
    sends = []
    for i in range(batch):
        sid = f"w{worker}-@@-{i}"
        d = {"id": sid, "recipient": f"r{sid}", "channel": "email", "to": f"{sid}@example.com",
             "origin": "campaign" if send_at else "transactional", "body": "Black Friday: 30% off today"}
        if send_at:
            d["send_at"] = send_at
        sends.append(d)
    return msgspec.json.encode(sends)


class _Server:
    def __init__(self, directory: Path, max_pending: int) -> None:
        from sendcore.service.tokens import TokenStore

        config = directory / "sendcore.toml"
        config.write_text(CONFIG.format(dir=directory, max_pending=max_pending))
        self.token = TokenStore(directory / "tokens.json").create(["submit", "read"], "bench")[0]
        ready = directory / "ready"
        env = {k: v for k, v in os.environ.items() if k != "SENDCORE_LOAD_ENTRYPOINTS"}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, "-m", "sendcore.cli", "serve", "--config", str(config),
                                      "--port", "0", "--ready-file", str(ready), "--log-level", "warning"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=open(directory / "serve.log", "wb"))
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text().endswith("\n"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"sendcore serve did not start: {(directory / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.02)
        self.url = ready.read_text().strip()

    def stop(self) -> int:
        """SIGTERM the server; its exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


async def _client(url: str, token: str, template: bytes, until: float, lat: list[float],
                  counts: dict[str, int]) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        n = 0
        while time.perf_counter() < until:
            body = template.replace(b"@@", str(n).encode())
            n += 1
            t0 = time.perf_counter()
            async with session.post(url + "/v1/sends", data=body, headers=headers) as resp:
                data = await resp.read()
            lat.append(time.perf_counter() - t0)
            if resp.status == 200:
                answer = msgspec.json.decode(data)
                counts["accepted"] += answer["accepted"]
                counts["rejected"] += answer["rejected"] + answer["duplicates"]
            elif resp.status == 429:
                counts["429"] += 1
                assert resp.headers.get("Retry-After"), "429 without Retry-After"
                await asyncio.sleep(0.05)  # a polite client waits; the bench keeps the pressure on
            else:
                counts["errors"] += 1


async def _run(workload: str, clients: int, batch: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="sendcore-load-") as tmp:
        max_pending = 20 * batch if workload == "overload" else 50_000_000
        server = _Server(Path(tmp), max_pending)
        send_at = time.time() + 3600 if workload in ("scheduled", "overload") else None
        templates = [_template(w, batch, send_at) for w in range(clients)]
        lat: list[float] = []
        counts = {"accepted": 0, "rejected": 0, "429": 0, "errors": 0}
        try:
            t0 = time.perf_counter()
            until = t0 + seconds
            await asyncio.gather(*(_client(server.url, server.token, templates[w], until, lat, counts)
                                   for w in range(clients)))
            wall = time.perf_counter() - t0
            async with aiohttp.ClientSession() as s:
                async with s.get(server.url + "/v1/status", headers={"Authorization": f"Bearer {server.token}"}) as r:
                    status = msgspec.json.decode(await r.read())
        finally:
            code = server.stop()
        held = status["pending"]["total"] + sum(status["final"].values())
        ok = held == counts["accepted"] and code == 0 and counts["errors"] == 0
        lat.sort()
        return {"workload": workload, "clients": clients, "batch": batch, "requests": len(lat),
                "accepted": counts["accepted"], "per_s": counts["accepted"] / wall,
                "p50": statistics.median(lat) * 1000 if lat else 0.0,
                "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0,
                "429": counts["429"], "held": held, "ok": ok}


def main() -> None:
    """Run every workload and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one short run per workload, 8 clients")
    ap.add_argument("--seconds", type=float, default=None, help="length of each run (default 8, quick 3)")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--clients", type=str, default=None, help="comma-separated concurrency levels (default 1,4,8,16)")
    args = ap.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    levels = [int(x) for x in (args.clients or ("8" if args.quick else "1,4,8,16")).split(",")]
    rows = []
    for workload in ("scheduled", "immediate", "overload"):
        for clients in (levels if workload != "overload" else [max(levels)]):
            rows.append(asyncio.run(_run(workload, clients, args.batch, seconds)))
            r = rows[-1]
            print(f"  {r['workload']:>9} x{r['clients']}: {r['per_s']:,.0f} sends/s", file=sys.stderr)
    print(f"\nsendcore serve, batches of {args.batch:,} sends, {seconds:g} s per run, journal fsync=batch, "
          f"{os.cpu_count()} CPUs shared by server and clients")
    head = f"{'workload':>9} {'clients':>7} {'requests':>8} {'accepted':>9} {'sends/s':>9} {'p50 ms':>7} " \
           f"{'p99 ms':>7} {'429s':>5} {'held=acked':>10}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['workload']:>9} {r['clients']:>7} {r['requests']:>8,} {r['accepted']:>9,} {r['per_s']:>9,.0f} "
              f"{r['p50']:>7.1f} {r['p99']:>7.1f} {r['429']:>5,} {'yes' if r['ok'] else 'NO':>10}")
    if not all(r["ok"] for r in rows):
        raise SystemExit("a run lost or added sends, or the server did not exit 0")


if __name__ == "__main__":
    main()
