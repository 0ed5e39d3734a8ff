"""A provider doing real HTTP under a VirtualClock: no false timeouts, nothing sent twice.

The server is a real aiohttp server on 127.0.0.1 that answers after a real
delay. Sends are spread over virtual time, so the engine always has a timer
waiting; before virtual time stood still during provider calls, the clock
jumped to the next timer while a request was in flight, past the call's
virtual timeout, and the send came back ``retrying`` though the server had
taken it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientSession, web

from sendcore import Accepted, Engine, Provider, Send, Settings, Status
from sendcore.send import Batch, Result
from sendcore.testing import VirtualClock

START = 1_800_000_000.0


class HttpProvider(Provider):
    """Posts each batch to a local server and accepts what the server acknowledged."""

    name = "web"
    channels = ("sms",)
    max_batch = 10
    timeout = 2.0

    def __init__(self, url: str) -> None:
        self.url = url
        self.session: Any = None

    async def start(self, context: Any) -> None:
        self.session = ClientSession()

    async def send(self, batch: Batch) -> list[Result]:
        async with self.session.post(self.url, json=[s.id for s in batch.sends]) as resp:
            got = await resp.json()
        return [Accepted(provider_id=pid) for pid in got]

    async def close(self) -> None:
        await self.session.close()


async def serve(delay: float, seen: list[str]) -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        ids = await request.json()
        await asyncio.sleep(delay)  # real time: the server is slow
        seen.extend(ids)
        return web.json_response([f"m-{i}" for i in ids])

    app = web.Application()
    app.router.add_post("/send", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/send"


async def through_http(provider_class: type, count: int) -> tuple[list[Any], list[str], float]:
    """Send ``count`` SMS 0.5 virtual seconds apart through ``provider_class`` and a slow real server.

    Returns (every outcome, the ids the server took, the virtual time at the end). Fails within a
    minute rather than hang: a call that never let go of virtual time would hold it for ever.
    """
    seen: list[str] = []
    runner, url = await serve(0.03, seen)
    clock = VirtualClock(START)
    settings = Settings.from_dict({"journal": {"path": ""}})
    sends = [Send(id=f"s{i}", recipient=f"r{i}", channel="sms", to="+33612345678", origin="transactional",
                  body="code 1234", send_at=START + i * 0.5) for i in range(count)]
    try:
        async with asyncio.timeout(60):
            async with Engine(settings, clock=clock, plugins=[_Plugin(provider_class(url))],
                              load_entrypoints=False) as engine:
                stream = engine.outcomes()
                await engine.submit(sends)
                await engine.drain()
                end = clock.now()
            outcomes = [o async for o in stream]
    finally:
        await runner.cleanup()
    return outcomes, seen, end


def test_real_http_under_a_virtual_clock_has_no_false_timeouts(run: Any) -> None:
    outcomes, seen, end = run(through_http(HttpProvider, 40))
    retrying = [o for o in outcomes if o.status is Status.RETRYING]
    assert retrying == [], f"false timeouts: {retrying[:3]}"
    sent = [o for o in outcomes if o.status is Status.SENT]
    assert sorted(o.send_id for o in sent) == sorted(f"s{i}" for i in range(40))
    assert sorted(seen) == sorted(f"s{i}" for i in range(40))  # each reached the server exactly once
    assert all(o.provider_id == f"m-{o.send_id}" for o in sent)
    # Each send left at its own virtual instant: the clock did not run ahead during requests.
    assert all(o.at == START + int(o.send_id[1:]) * 0.5 for o in sent)
    assert end == START + 39 * 0.5


class _Plugin:
    """A plugin object registering one provider."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def sendcore_register_providers(self, register: Any) -> None:
        register(self.provider)


class SleepThenHttpProvider(HttpProvider):
    """Sleeps on the virtual clock first (a simulated queue), then posts to the real server."""

    async def start(self, context: Any) -> None:
        await super().start(context)
        self.clock = context.clock

    async def send(self, batch: Batch) -> list[Result]:
        await self.clock.sleep(0.2)
        return await super().send(batch)


def test_a_call_that_sleeps_on_the_clock_then_does_real_io_holds_time_for_the_real_part(run: Any) -> None:
    """After a virtual sleep, the same call's real request still holds virtual time, to the end of the call.

    Sends are 0.5 s apart and the request takes real time: if the clock ran on
    during it, the next sends would leave early and answers land late.
    """
    outcomes, seen, _ = run(through_http(SleepThenHttpProvider, 12))
    sent = [o for o in outcomes if o.status is Status.SENT]
    assert [o for o in outcomes if o.status is Status.RETRYING] == []
    assert sorted(seen) == sorted(f"s{i}" for i in range(12))
    # Answered exactly 0.2 virtual seconds after leaving: the real request took no virtual time.
    assert sorted((o.send_id, o.at) for o in sent) == sorted((f"s{i}", START + i * 0.5 + 0.2) for i in range(12))
