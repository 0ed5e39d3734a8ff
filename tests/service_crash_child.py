"""A child that dies between the journal and the outcome log, as `sendcore serve` may under SIGKILL.

It runs the engine on the service's journal (as ``sendcore serve`` does) but
never moves outcomes to the outcome log, submits ``N`` sends with ids
``PREFIX0``..., waits until all of them are final and their frames fsynced,
then SIGKILLs itself: the journal holds outcomes the log never wrote.

Usage: python tests/service_crash_child.py CONFIG PREFIX N
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from sendcore import Engine, Settings


async def main(config: str, prefix: str, n: int) -> None:
    engine = Engine(Settings.from_toml(config))
    await engine.start()
    sends = [{"id": f"{prefix}{i}", "recipient": f"r-{prefix}{i}", "channel": "email", "to": f"{prefix}{i}@example.com",
              "origin": "transactional", "body": "hello"} for i in range(n)]
    report = await engine.submit(sends)
    assert report.accepted == n, report
    while any(engine.outcome(s["id"]) is None for s in sends):
        await asyncio.sleep(0.01)
    await engine.submit([])  # every frame so far is fsynced
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
