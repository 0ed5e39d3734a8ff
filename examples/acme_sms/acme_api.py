"""A local imitation of the Acme SMS API, for testing the example provider against a real HTTP server.

Answers ``POST /messages`` like a Twilio-style API: 201 with a message id,
the same id again for a repeated ``Idempotency-Key``; numbers ending in 0000
are not mobile numbers (404); the first request to a number ending in 9 is
throttled (429, ``Retry-After: 1``) and the first to one ending in 8 meets a
busy carrier (503). It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from aiohttp import web


class AcmeApi:
    """The API's behaviour, and every request it saw as (monotonic time, idempotency key, to)."""

    def __init__(self) -> None:
        self.requests: list[tuple[float, str, str]] = []
        self.seen: dict[str, str] = {}

    async def messages(self, request: web.Request) -> web.Response:
        """``POST /messages``: one message per request."""
        body = await request.json()
        key = request.headers["Idempotency-Key"]
        to = body["to"]
        self.requests.append((time.monotonic(), key, to))
        first = sum(1 for _, k, _ in self.requests if k == key) == 1
        if to.endswith("0000"):
            return web.Response(status=404, text="not a mobile number")
        if to.endswith("9") and first:
            return web.Response(status=429, headers={"Retry-After": "1"}, text="slow down")
        if to.endswith("8") and first:
            return web.Response(status=503, text="carrier busy")
        sid = self.seen.setdefault(key, f"SM{len(self.seen):04d}")
        return web.json_response({"sid": sid}, status=201)


async def serve(api: AcmeApi) -> tuple[web.AppRunner, str]:
    """Start ``api`` on a free port of 127.0.0.1 in the running loop; return the runner and the base URL."""
    app = web.Application()
    app.router.add_post("/messages", api.messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@contextmanager
def running_api() -> Iterator[str]:
    """Run a fresh ``AcmeApi`` on a thread of its own for the duration of the block; yields its base URL.

    A thread, so tests that run their own event loops (the contract kit does,
    one per check) can all reach it.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner, url = asyncio.run_coroutine_threadsafe(serve(AcmeApi()), loop).result(10)
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
