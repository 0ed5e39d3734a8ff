"""A real local SMTP server for the smtp provider's tests and benchmark: aiosmtpd on 127.0.0.1, port 0.

``SmtpServer`` runs aiosmtpd's ``Controller`` (its own thread and loop) and
answers each transaction by its recipient, so one batch can mix faults::

    server.script["a@example.com"] = [reply(451, "4.3.0 try again"), OK]   # per attempt, then 250
    server.always["gone@example.com"] = reply(550, "5.1.1 No such user")  # every time
    server.always["cut@example.com"] = Drop()                             # drop the connection mid-DATA

An answer is a ``Reply`` (a code and text, given at RCPT or at the end of
DATA, ``at``), ``Drop`` (close the connection after the message arrived,
before the final reply), or ``Slow`` (wait before answering). A 421 reply
closes the connection afterwards, as RFC 5321 says a server does.
Accepted messages are kept in ``received`` with their envelope and the
parsed message; ``attempts`` counts transactions per recipient and
``sessions`` the EHLOs (one per connection).

``SilentServer`` accepts TCP connections and never greets (a server too
slow to connect to); ``refused_port()`` is a port with nothing listening.
``ServerProcess`` runs a plain always-250 aiosmtpd in a child process
(``multiprocessing``), so the benchmark's server has its own core.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import multiprocessing
import socket
import threading
import warnings
from collections import Counter
from email.message import EmailMessage
from typing import Any, Literal, Union

import msgspec
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = [
    "OK",
    "Drop",
    "Received",
    "Reply",
    "ServerProcess",
    "SilentServer",
    "Slow",
    "SmtpServer",
    "refused_port",
    "reply",
]


class Reply(msgspec.Struct, frozen=True):
    """Answer ``code text`` at RCPT TO (``at="rcpt"``) or to the end of the message data (``at="data"``).

    ``hang_up``: close the connection after the reply; by default only after
    a 421, as RFC 5321 says. ``Reply(421, ..., hang_up=False)`` is a server
    that says it closes the session but keeps it open.
    """

    code: int
    text: str = ""
    at: Literal["rcpt", "data"] = "rcpt"
    hang_up: Union[bool, None] = None

    @property
    def closes(self) -> bool:
        """True when the server closes the connection after this reply."""
        return self.code == 421 if self.hang_up is None else self.hang_up

    def line(self) -> str:
        return f"{self.code} {self.text}".rstrip()


class Drop(msgspec.Struct, frozen=True):
    """Receive the whole message, then abort the connection instead of the final reply (mid-DATA)."""


class Slow(msgspec.Struct, frozen=True):
    """Wait ``seconds`` before the final reply to DATA (then 250), or before the RCPT reply."""

    seconds: float
    at: Literal["rcpt", "data"] = "data"


Answer = Union[Reply, Drop, Slow]

#: The plain 250.
OK = Reply(250, "2.0.0 OK", at="data")


def reply(code: int, text: str = "", at: Literal["rcpt", "data"] = "rcpt", hang_up: Union[bool, None] = None) -> Reply:
    """A ``Reply``; shorthand for tests."""
    return Reply(code, text, at, hang_up)


class Received(msgspec.Struct, frozen=True):
    """One accepted message: the envelope and the raw and parsed content."""

    mail_from: str
    rcpt_to: str
    raw: bytes
    mail_options: list[str]

    @property
    def message(self) -> EmailMessage:
        """The message, parsed with the ``default`` policy."""
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]


class _Handler:
    """aiosmtpd hooks choosing each transaction's answer by its recipient."""

    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    def _answer(self, rcpt: str) -> Answer:
        o = self.owner
        with o.lock:
            o.attempts[rcpt] += 1
            script = o.script.get(rcpt)
            if script:
                return script.pop(0)
            return o.always.get(rcpt, OK)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        with self.owner.lock:
            self.owner.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        answer = self._answer(address)
        if type(answer) is Slow and answer.at == "rcpt":
            await asyncio.sleep(answer.seconds)
        elif type(answer) is Reply and answer.at == "rcpt":
            if answer.closes:
                _close_after_reply(server)
            if answer.code >= 300:
                return answer.line()
        envelope.rcpt_tos.append(address)
        # The DATA-time answer of this transaction, one recipient per transaction.
        envelope.sendcore_answer = answer  # type: ignore[attr-defined]
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = getattr(envelope, "sendcore_answer", OK)
        if type(answer) is Drop:
            server.transport.abort()  # type: ignore[union-attr]
            return "451 never sent: the connection is gone"
        if type(answer) is Slow and answer.at == "data":
            await asyncio.sleep(answer.seconds)
        elif type(answer) is Reply and answer.at == "data":
            if answer.closes:
                _close_after_reply(server)
            if answer.code >= 300:
                return answer.line()
        o = self.owner
        got = Received(mail_from=envelope.mail_from or "", rcpt_to=envelope.rcpt_tos[0],
                       raw=bytes(envelope.original_content or b""), mail_options=list(envelope.mail_options))
        with o.lock:
            o.received.append(got)
        return "250 2.0.0 OK queued"


def _close_after_reply(server: SMTP) -> None:
    # The reply is written before the next loop turn; close() flushes it, then hangs up.
    transport = server.transport
    if transport is not None:
        asyncio.get_running_loop().call_soon(transport.close)


class _PortZeroController(Controller):
    """aiosmtpd's Controller bound to port 0; ``port`` is the one the OS chose."""

    def factory(self) -> SMTP:
        with warnings.catch_warnings():
            # aiosmtpd warns that AUTH without TLS is unsafe: true, and fine on loopback in a test.
            warnings.simplefilter("ignore", UserWarning)
            return super().factory()

    def _create_server(self) -> Any:
        async def create() -> asyncio.AbstractServer:
            srv = await self.loop.create_server(self._factory_invoker, host=self.hostname, port=0,
                                                ssl=self.ssl_context)
            self.port = srv.sockets[0].getsockname()[1]
            return srv

        return create()


class SmtpServer:
    """aiosmtpd on 127.0.0.1 (port 0) answering per recipient; see the module doc.

    ``auth=(user, password)`` requires AUTH (PLAIN/LOGIN, over plain TCP:
    loopback only) before MAIL; ``idle_timeout`` (seconds) closes idle sessions.
    """

    host = "127.0.0.1"

    def __init__(self, auth: Union[tuple[str, str], None] = None, idle_timeout: Union[float, None] = None) -> None:
        self.script: dict[str, list[Answer]] = {}
        self.always: dict[str, Answer] = {}
        self.received: list[Received] = []
        self.attempts: Counter[str] = Counter()
        self.sessions = 0
        self.lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if auth is not None:
            user, password = auth

            def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == password
                return AuthResult(success=ok, handled=False)

            kwargs = {"authenticator": check, "auth_required": True, "auth_require_tls": False}
        if idle_timeout is not None:
            # aiosmtpd answers "421 Timeout" and hangs up on a session idle this long.
            kwargs["timeout"] = idle_timeout
        self._controller = _PortZeroController(_Handler(self), hostname=self.host, port=0, **kwargs)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._controller.port

    def start(self) -> SmtpServer:
        """Start listening (in aiosmtpd's thread)."""
        self._controller.start()
        # The Controller's own readiness probe opened (and closed) one connection.
        return self

    def stop(self) -> None:
        """Stop listening and close every connection."""
        self._controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def to(self, rcpt: str) -> list[Received]:
        """The messages accepted for ``rcpt``."""
        with self.lock:
            return [r for r in self.received if r.rcpt_to == rcpt]


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word (no SMTP greeting)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]

    def close(self) -> None:
        """Stop listening; connections in the backlog are reset."""
        self._sock.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def refused_port() -> int:
    """A port on 127.0.0.1 with nothing listening: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# A server in a child process, for the benchmark
# ---------------------------------------------------------------------------


class _CountingHandler:
    """Always 250; counts messages and bytes."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages += 1
        self.bytes += len(envelope.original_content or b"")
        return "250 2.0.0 OK queued"


def _serve(conn: Any, use_uvloop: bool) -> None:
    """Child process: serve SMTP on a free port, send the port up ``conn``, then the counts when told to stop."""
    if use_uvloop:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = _CountingHandler()
    server = loop.run_until_complete(loop.create_server(
        lambda: SMTP(handler, hostname="bench.local", enable_SMTPUTF8=True), host="127.0.0.1", port=0))
    conn.send(server.sockets[0].getsockname()[1])

    async def wait_for_stop() -> None:
        await loop.run_in_executor(None, conn.recv)

    loop.run_until_complete(wait_for_stop())
    conn.send((handler.messages, handler.bytes))
    server.close()
    loop.close()


class ServerProcess:
    """An always-250 aiosmtpd in a child process (its own core); ``stop()`` returns (messages, bytes) it took."""

    def __init__(self, use_uvloop: bool = True) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, use_uvloop), daemon=True)
        self.port = 0

    def start(self) -> ServerProcess:
        """Start the child and wait until it listens."""
        self._proc.start()
        if not self._conn.poll(30):
            raise RuntimeError("the SMTP server process did not start within 30 s")
        try:
            self.port = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"the SMTP server process exited before listening (exit code {self._proc.exitcode})") from None
        return self

    def stop(self) -> tuple[int, int]:
        """Stop the child; the messages and bytes it accepted."""
        self._conn.send("stop")
        counts = self._conn.recv() if self._conn.poll(30) else (-1, -1)
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
        return counts
