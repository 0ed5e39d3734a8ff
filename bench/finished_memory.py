"""Memory held per finished outcome kept for retention (R1): ``python -m bench.finished_memory [N]``.

Workload: N transactional SMS with distinct 13-character ids and recipients
and distinct numbers, each accepted by the provider with a distinct provider
id (so the delivery-report indexes hold an entry too), through the core on
virtual time; the figure is the Python heap (tracemalloc) still held once
every send finished and the caller dropped its objects, divided by N.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc

from sendcore import Accepted, Send, Settings
from sendcore.core import Core
from sendcore.provider import ProviderSpec


def bytes_per_finished(n: int = 100_000) -> float:
    """Heap bytes held per finished outcome after ``n`` sends were accepted."""
    settings = Settings.from_dict({"journal": {"path": ""}, "channels": {"sms": {"quiet_hours": False}}})
    core = Core(settings, [ProviderSpec(name="p", channels=("sms",), max_batch=1000, max_concurrency=10**6)])
    now = 1_800_000_000.0
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    core.submit([Send(id=f"send-{i:08d}", recipient=f"rcpt-{i:08d}", channel="sms", to=f"+3361{i:07d}",
                      origin="transactional", body="hi") for i in range(n)], now)
    while core.pending:
        for batch in core.advance(now):
            core.record(batch, [Accepted(provider_id=f"SM{batch.id}-{k:05d}") for k in range(len(batch.sends))], now)
        now += 1
    core.drain_outcomes()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used / n


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(f"{bytes_per_finished(n):.0f} bytes per finished outcome ({n:,} sends)")
