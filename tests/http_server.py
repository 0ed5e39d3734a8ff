"""A local JSON batch API on a real aiohttp server (127.0.0.1, port 0) whose answers tests choose.

It takes ``POST /v1/messages`` with ``{"messages": [{"id", "to", ...}, ...]}``
and answers 200 ``{"results": [{"id", "status": "queued", "message_id"}, ...]}``,
one result per item, in order. An item id seen before gets its first
``message_id`` again (the API deduplicates by item id, as the provider's
docs ask). With ``token`` set, ``Authorization: Bearer <token>`` is required
(else 401).

Whole-request answers are taken from ``script`` (one per request, in order)
and then from ``always``; per-item answers are chosen by the item's ``to``,
from ``item_script[to]`` (one per request) and then ``item_always[to]``::

    server.script = [Reply(503), Reply(429, headers={"Retry-After": "2"})]  # two requests, then normal
    server.always = Slow(1.0)                                               # every later request
    server.item_always["+33612000002"] = ItemError("invalid_number")        # every time
    server.item_script["+33612000003"] = [ItemError("handset_off")]         # once, then accepted

Used in-process by ``tests/test_provider_http.py``, and in a child process
(``ServerProcess``, so the server has its own core) by ``bench/provider_http.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import socket
import time
from typing import Any, Union

import msgspec
from aiohttp import web

__all__ = [
    "Drop", "Fewer", "HttpServer", "ItemError", "Malformed", "More", "Reply", "Reversed", "Seen", "ServerProcess",
    "Slow", "free_port",
]


class Reply(msgspec.Struct, frozen=True):
    """Answer with this HTTP status, body and headers as given (no per-item results unless in ``body``)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = {}


class Slow(msgspec.Struct, frozen=True):
    """Sleep ``seconds``, then answer as usual."""

    seconds: float


class Malformed(msgspec.Struct, frozen=True):
    """Answer 200 with this body (by default, JSON cut short)."""

    body: bytes = b'{"results": [{"id": "'


class Fewer(msgspec.Struct, frozen=True):
    """Answer as usual but leave out the last ``n`` results."""

    n: int = 1


class More(msgspec.Struct, frozen=True):
    """Answer as usual plus ``n`` results naming ids that were not sent."""

    n: int = 1


class Reversed(msgspec.Struct, frozen=True):
    """Answer as usual with the results in reverse order (only matching by id reads them right)."""


class Drop(msgspec.Struct, frozen=True):
    """Close the connection: after the headers and part of the body (``partial``), or before any answer."""

    partial: bool = True


Answer = Union[Reply, Slow, Malformed, Fewer, More, Reversed, Drop]


class ItemError(msgspec.Struct, frozen=True):
    """One item's error: ``{"id", "status", "error": {"code", "message"}}`` (``retry_after`` on the item if set)."""

    code: str
    message: str = ""
    status: str = "failed"
    retry_after: Union[float, None] = None


class Seen(msgspec.Struct, frozen=True):
    """One request as the server received it."""

    at: float
    method: str
    headers: dict[str, str]
    body: Any


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then closed), for connection-refused tests."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class HttpServer:
    """The configurable batch API (see the module doc). ``record=False`` keeps no ``requests`` (benchmark)."""

    def __init__(self, token: Union[str, None] = None, record: bool = True) -> None:
        self.token = token
        self.record = record
        self.script: list[Answer] = []
        self.always: Union[Answer, None] = None
        self.item_script: dict[str, list[ItemError]] = {}
        self.item_always: dict[str, ItemError] = {}
        self.requests: list[Seen] = []
        self.count = 0
        self.items = 0
        self.message_ids: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._runner: Union[web.AppRunner, None] = None
        self.url = ""

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1 (``port`` 0: any free port); return the endpoint's URL."""
        app = web.Application()
        for method in ("POST", "PUT", "PATCH"):
            app.router.add_route(method, "/v1/messages", self.handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self._runner = runner
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1/messages"
        return self.url

    async def stop(self) -> None:
        """Stop listening and close connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def sent_to(self, to: str) -> list[Seen]:
        """Every recorded request with an item to ``to``, in order."""
        return [r for r in self.requests if any(i.get("to") == to for i in _items(r.body))]

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """Check auth, apply the chosen whole-request answer, else answer each item."""
        self.count += 1
        raw = await request.read()
        try:
            body = _decode(raw)
        except msgspec.DecodeError:
            body = None
        if self.record:
            self.requests.append(Seen(at=time.monotonic(), method=request.method, headers=dict(request.headers),
                                      body=body))
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": {"code": "unauthorized", "message": "bad credentials"}}, status=401)
        answer = self.script.pop(0) if self.script else self.always
        t = type(answer)
        if t is Slow:
            await asyncio.sleep(answer.seconds)  # type: ignore[union-attr]
        elif t is Reply:
            return web.Response(status=answer.status, body=answer.body, headers=answer.headers)  # type: ignore
        elif t is Malformed:
            return web.Response(status=200, body=answer.body, content_type="application/json")  # type: ignore
        elif t is Drop:
            return await _drop(request, answer.partial)  # type: ignore[union-attr]
        items = _items(body)
        if body is None or items is None:
            return web.json_response({"error": {"code": "bad_request", "message": "expected {messages: [...]}"}},
                                     status=400)
        self.items += len(items)
        results = [self._result(item) for item in items]
        if t is Fewer:
            results = results[: max(0, len(results) - answer.n)]  # type: ignore[union-attr]
        elif t is More:
            results += [{"id": f"stranger-{i}", "status": "queued", "message_id": f"x{i}"}
                        for i in range(answer.n)]  # type: ignore[union-attr]
        elif t is Reversed:
            results.reverse()
        return web.Response(status=200, body=_encode({"results": results}), content_type="application/json")

    def _result(self, item: Any) -> dict[str, Any]:
        ident = item.get("id") if type(item) is dict else None
        to = item.get("to", "") if type(item) is dict else ""
        queue = self.item_script.get(to)
        error = queue.pop(0) if queue else self.item_always.get(to)
        if error is not None:
            out: dict[str, Any] = {"id": ident, "status": error.status,
                                   "error": {"code": error.code, "message": error.message}}
            if error.retry_after is not None:
                out["retry_after"] = error.retry_after
            return out
        mid = self.message_ids.get(ident) if ident is not None else None
        if mid is None:
            mid = f"msg-{next(self._ids):08d}"
            if ident is not None:
                self.message_ids[ident] = mid
        return {"id": ident, "status": "queued", "message_id": mid}


def _items(body: Any) -> Any:
    if type(body) is dict and type(body.get("messages")) is list:
        return body["messages"]
    return None


async def _drop(request: web.Request, partial: bool) -> web.StreamResponse:
    transport = request.transport
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json", "Content-Length": "500"})
    if partial:
        await resp.prepare(request)
        await resp.write(b'{"results": [{"id": "')
        await asyncio.sleep(0.01)  # let the partial body reach the client before the connection goes
    if transport is not None:
        transport.close()
    return resp


# ---------------------------------------------------------------------------
# In a child process, for the benchmark
# ---------------------------------------------------------------------------


def _child(conn: Any, token: Union[str, None]) -> None:
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run

    async def main() -> None:
        server = HttpServer(token, record=False)
        url = await server.start()
        conn.send(url)
        # Block in a thread until the parent says stop (or goes away).
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send((server.count, server.items))
        await server.stop()

    try:
        run(main())
    except EOFError:
        pass


class ServerProcess:
    """An ``HttpServer`` in a child process (its own core): ``with ServerProcess(token) as url: ...``.

    ``requests`` and ``items`` hold what the server answered, once stopped.
    """

    def __init__(self, token: Union[str, None] = None) -> None:
        self.token = token
        self.requests = 0
        self.items = 0
        self._proc: Any = None
        self._conn: Any = None

    def __enter__(self) -> str:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child, self.token), daemon=True)
        self._proc.start()
        self._conn = parent
        if not parent.poll(30):
            self._proc.kill()
            raise RuntimeError("the local HTTP batch server did not start within 30 s")
        return parent.recv()

    def __exit__(self, *exc: Any) -> None:
        try:
            self._conn.send("stop")
            if self._conn.poll(10):
                self.requests, self.items = self._conn.recv()
        finally:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
