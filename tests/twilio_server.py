"""A local server imitating Twilio's Messages API, on a real aiohttp server bound to 127.0.0.1 port 0.

It answers ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` as Twilio
does: HTTP basic auth with the account SID and auth token (else 401, code
20003), a form body with ``To``, ``Body`` and ``From`` or
``MessagingServiceSid`` (else 400, code 21602/21603), and 201 with a message
resource whose ``sid`` is new. ``I-Twilio-Idempotency-Token`` is honoured: a
token seen with a 201 gets the same message again, not a new one.

Faults are chosen per destination number, so one batch can mix them::

    server.script["+33612000001"] = [Status(503), Status(503)]  # twice, then 201
    server.always["+33612000002"] = twilio_error(21211)          # every time

Used by ``tests/test_provider_twilio.py`` in-process, and by
``bench/provider_twilio.py`` in a child process (``ServerProcess``), so the
server has its own core.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import multiprocessing
import time
from typing import Any, Union

import msgspec
from aiohttp import web

__all__ = [
    "Drop",
    "Malformed",
    "Seen",
    "ServerProcess",
    "Slow",
    "Status",
    "TwilioServer",
    "free_port",
    "twilio_error",
]


class Status(msgspec.Struct, frozen=True):
    """Answer with this HTTP status, body and headers as given."""

    http: int
    body: bytes = b""
    headers: dict[str, str] = {}


class Slow(msgspec.Struct, frozen=True):
    """Sleep ``seconds`` before answering as usual (201)."""

    seconds: float


class Malformed(msgspec.Struct, frozen=True):
    """Answer 201 with a body that is not JSON."""


class Drop(msgspec.Struct, frozen=True):
    """Close the connection: after the headers and part of the body (``partial``), or before any answer."""

    partial: bool = True


Answer = Union[Status, Slow, Malformed, Drop]


def twilio_error(code: int, http: int = 400, message: str = "", headers: Union[dict[str, str], None] = None) -> Status:
    """Twilio's JSON error answer for ``code``: ``{"code", "message", "more_info", "status"}``."""
    body = json.dumps({
        "code": code,
        "message": message or f"Twilio error {code}",
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": http,
    }).encode()
    return Status(http, body, {"Content-Type": "application/json", **(headers or {})})


class Seen(msgspec.Struct, frozen=True):
    """One request as the server received it."""

    at: float
    account_sid: str
    form: dict[str, str]
    auth: Union[tuple[str, str], None]
    idempotency_token: Union[str, None]
    content_type: str


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then closed), for connection-refused tests."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TwilioServer:
    """The imitation Messages API. ``script``/``always`` choose answers by ``To`` (see the module doc).

    ``record=False`` keeps no ``requests`` list (for the benchmark).
    """

    def __init__(self, account_sid: str = "AC" + "0" * 32, token: str = "test-token", record: bool = True) -> None:
        self.account_sid = account_sid
        self.token = token
        self.record = record
        self.script: dict[str, list[Answer]] = {}
        self.always: dict[str, Answer] = {}
        self.requests: list[Seen] = []
        self.count = 0
        self.messages: dict[str, bytes] = {}
        self._sids = itertools.count(1)
        self._runner: Union[web.AppRunner, None] = None
        self.url = ""

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1 (``port`` 0: any free port); return the base URL."""
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self.messages_handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self._runner = runner
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop listening and close connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TwilioServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def sent_to(self, to: str) -> list[Seen]:
        """Every recorded request to ``to``, in order."""
        return [r for r in self.requests if r.form.get("To") == to]

    async def messages_handler(self, request: web.Request) -> web.StreamResponse:
        """``POST .../Messages.json``: check auth and form, apply the chosen fault, else create the message."""
        self.count += 1
        form = {k: str(v) for k, v in (await request.post()).items()}
        account = request.match_info["account"]
        token = request.headers.get("I-Twilio-Idempotency-Token")
        auth = _basic_auth(request.headers.get("Authorization", ""))
        if self.record:
            self.requests.append(Seen(at=time.monotonic(), account_sid=account, form=form, auth=auth,
                                      idempotency_token=token, content_type=request.content_type))
        if auth != (self.account_sid, self.token) or account != self.account_sid:
            return _status(twilio_error(20003, 401, "Authenticate"))
        to = form.get("To", "")
        answer = self._answer_for(to)
        if answer is not None:
            if type(answer) is Slow:
                await asyncio.sleep(answer.seconds)
            elif type(answer) is Status:
                return _status(answer)
            elif type(answer) is Malformed:
                return web.Response(status=201, body=b'{"sid": "SM', content_type="application/json")
            elif type(answer) is Drop:
                return await _drop(request, answer.partial)
        if not to:
            return _status(twilio_error(21604, 400, "A 'To' phone number is required."))
        if "From" not in form and "MessagingServiceSid" not in form:
            return _status(twilio_error(21603, 400, "A 'From' or 'MessagingServiceSid' parameter is required"))
        if token is not None:
            body = self.messages.get(token)
            if body is not None:
                return web.Response(status=201, body=body, content_type="application/json")
        sid = f"SM{next(self._sids):032x}"
        body = json.dumps({
            "sid": sid, "account_sid": account, "to": to, "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"), "body": form.get("Body", ""),
            "status": "queued", "num_segments": "1", "direction": "outbound-api",
            "error_code": None, "error_message": None,
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        }).encode()
        if token is not None:
            self.messages[token] = body
        return web.Response(status=201, body=body, content_type="application/json")

    def _answer_for(self, to: str) -> Union[Answer, None]:
        answers = self.script.get(to)
        if answers:
            return answers.pop(0)
        return self.always.get(to)


def _basic_auth(header: str) -> Union[tuple[str, str], None]:
    """(user, password) of an ``Authorization: Basic`` header, or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _status(answer: Status) -> web.Response:
    return web.Response(status=answer.http, body=answer.body, headers=answer.headers)


async def _drop(request: web.Request, partial: bool) -> web.StreamResponse:
    transport = request.transport
    resp = web.StreamResponse(status=201, headers={"Content-Type": "application/json", "Content-Length": "200"})
    if partial:
        await resp.prepare(request)
        await resp.write(b'{"sid": "SM')
        await asyncio.sleep(0.01)  # let the partial body reach the client before the connection goes
    if transport is not None:
        transport.close()
    # Written to a closed transport, the rest of the answer goes nowhere.
    return resp


# ---------------------------------------------------------------------------
# In a child process, for the benchmark
# ---------------------------------------------------------------------------


def _child(conn: Any, account_sid: str, token: str) -> None:
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run

    async def main() -> None:
        server = TwilioServer(account_sid, token, record=False)
        url = await server.start()
        conn.send(url)
        loop = asyncio.get_running_loop()
        # Block in a thread until the parent says stop (or goes away).
        await loop.run_in_executor(None, conn.recv)
        conn.send(server.count)
        await server.stop()

    try:
        run(main())
    except EOFError:
        pass


class ServerProcess:
    """A ``TwilioServer`` in a child process (its own core): ``with ServerProcess() as url: ...``.

    ``requests`` holds the number of requests the server answered, once stopped.
    """

    def __init__(self, account_sid: str = "AC" + "0" * 32, token: str = "test-token") -> None:
        self.account_sid = account_sid
        self.token = token
        self.requests = 0
        self._proc: Any = None
        self._conn: Any = None

    def __enter__(self) -> str:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child, self.account_sid, self.token), daemon=True)
        self._proc.start()
        self._conn = parent
        if not parent.poll(30):
            self._proc.kill()
            raise RuntimeError("the imitation Twilio server did not start within 30 s")
        return parent.recv()

    def __exit__(self, *exc: Any) -> None:
        try:
            self._conn.send("stop")
            if self._conn.poll(10):
                self.requests = self._conn.recv()
        finally:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
