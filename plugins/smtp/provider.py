"""``SmtpProvider``: email through an SMTP relay, one message per recipient, over a pool of reused sessions.

A batch (at most ``max_batch`` sends) is first turned into messages
(``message.prepare``: a send whose address or subject could inject a header
fails permanently there, never reaching the server). Then up to
``pool_size`` workers each borrow one pooled session and take messages from
the batch's shared queue, one SMTP transaction each (MAIL FROM, RCPT TO,
DATA), so the batch goes out over the sessions concurrently.

Every failure is per message, and ``send`` never raises for one:

- a refusal is mapped by ``codes.classify`` (421 and 4.7.x throttle the
  route with ``RateLimited``; other 4xx are ``TemporaryFailure``; 5xx are
  ``PermanentFailure``, suppressing the address for 5.1.x, 5.2.1 and a
  plain 550/551/553 at RCPT);
- a refused or timed-out connection, a session dropped mid-transaction and
  a reply that does not come within ``timeout`` are ``TemporaryFailure``
  of the message concerned (a drop after the message was sent may hide a
  delivery: the retry carries the same Message-ID, see ``message.py``).

A worker stops taking messages after an answer that says this session or
server should not be pushed now (a failed connect, a timeout, a
``RateLimited``); a dropped session is reconnected for the next message.
Messages that no worker took get the last stopping worker's answer
(``RateLimited`` as is, otherwise ``TemporaryFailure`` saying they were not
attempted). Messages still unfinished at ``batch_timeout`` are
``TemporaryFailure("timeout")`` and their sessions are closed, so a batch
always ends within ``batch_timeout`` plus a little, below the ``timeout``
the provider declares to the engine. If the engine cancels ``send`` (a
lower ``[providers.smtp] timeout``), the workers are cancelled with it and
their sessions closed, never handed back mid-transaction.

Connection failures are therefore never raised for the whole batch: each
message gets its own ``TemporaryFailure`` (refused or timed-out connect:
code ``connect``/``connect_timeout``; the messages behind it in the batch:
the same code, "not attempted"), so the engine retries each per R18.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from typing import Any, Mapping, Union

import aiosmtplib

from sendcore.clock import RealClock
from sendcore.errors import ConfigError
from sendcore.provider import DeliveryReport, Provider, ProviderContext
from sendcore.send import Accepted, Batch, PermanentFailure, RateLimited, Result, TemporaryFailure

from .codes import classify
from .message import Prepared, prepare
from .options import SmtpOptions
from .pool import Connection, ConnectionPool

__all__ = ["SmtpProvider"]

#: What a worker does after a transaction: take the next message (reconnecting
#: first if the session was dropped), or stop taking messages.
_KEEP, _STOP = 0, 1


class SmtpProvider(Provider):
    """The bundled ``smtp`` provider (channel ``email``); see the module doc and ``SmtpOptions``.

    Declares batches of 50 messages and 2 batches in flight (enough for the
    next batch to take a session the moment one frees up), no default route
    rate (set ``[providers.smtp] rate`` to what the relay allows), and a
    ``timeout`` one second over ``batch_timeout``, which the provider itself
    enforces.
    """

    name = "smtp"
    channels = ("email",)
    max_batch = 50
    rate = None
    burst = None
    max_concurrency = 2
    timeout = 61.0

    def __init__(self, options: SmtpOptions) -> None:
        """A provider for these options; nothing connects until the first batch."""
        self._pool: Union[ConnectionPool, None] = None
        self._clock: Any = RealClock()
        self._apply(options)

    @classmethod
    def from_options(cls, options: Union[Mapping[str, Any], SmtpOptions, None],
                     source: str = "providers.smtp.options") -> SmtpProvider:
        """Build a provider from an options table (as in TOML) or an ``SmtpOptions``.

        Raises ``ConfigError`` naming the key, e.g. ``providers.smtp.options.from: required option is missing``.
        """
        if isinstance(options, SmtpOptions):
            return cls(options)
        return cls(SmtpOptions.from_mapping(options, source))

    def _apply(self, options: SmtpOptions) -> None:
        self.options = options
        self.timeout = float(options.batch_timeout) + 1.0

    # Lifecycle

    def problems(self) -> list[str]:
        """What would stop ``start`` here: the password's environment variable unset (for ``check-config``)."""
        opts = self.options
        if opts.username and not os.environ.get(opts.password_env):
            return [f"the environment variable {opts.password_env} (providers.smtp.options.password_env) is not "
                    "set; the engine will refuse to start until it is"]
        return []

    async def start(self, context: ProviderContext) -> None:
        """Apply ``context.settings`` (when given), read the password, set up the (unconnected) pool.

        Raises ``ConfigError`` naming the environment variable when ``username``
        is set and ``password_env`` names an unset or empty variable.
        """
        overrides = getattr(context, "settings", None)
        if overrides:
            self._apply(SmtpOptions.from_mapping(overrides))
        self._clock = getattr(context, "clock", None) or RealClock()
        opts = self.options
        password = None
        if opts.username is not None:
            password = os.environ.get(opts.password_env)
            if not password:
                raise ConfigError(
                    f"providers.smtp.options.password_env: the environment variable {opts.password_env} is not set; "
                    f"it must hold the SMTP password of {opts.username!r}"
                )
        # socket.getfqdn may query DNS: once here, not on every connect.
        local = opts.local_hostname or await asyncio.to_thread(socket.getfqdn)
        self._pool = ConnectionPool(opts, password, local)

    async def close(self) -> None:
        """QUIT and close the pooled sessions."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def pool(self) -> Union[ConnectionPool, None]:
        """The connection pool (None before ``start`` and after ``close``)."""
        return self._pool

    # Sending

    async def send(self, batch: Batch) -> list[Result]:
        """Send every message of ``batch`` over the pool; one result per send, in order.

        Never raises for a message's failure (see the module doc).
        Runtime complexity: O(len(batch)) transactions over at most
        ``pool_size`` sessions at once.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError("SmtpProvider.send: the provider was not started (or is closed)")
        opts = self.options
        now = self._clock.now()
        sends = batch.sends
        results: list[Union[Result, None]] = [None] * len(sends)
        queue: deque[tuple[int, Prepared]] = deque()
        default_from, envelope_from = opts.from_, opts.envelope_from
        for i, s in enumerate(sends):
            p = prepare(s, default_from, envelope_from, now)
            if type(p) is PermanentFailure:
                results[i] = p
            else:
                queue.append((i, p))  # type: ignore[arg-type]
        if queue:
            stops: list[Result] = []
            workers = [asyncio.ensure_future(self._worker(pool, queue, results, stops))
                       for _ in range(min(opts.pool_size, len(queue)))]
            try:
                done, late = await asyncio.wait(workers, timeout=float(opts.batch_timeout))
            except asyncio.CancelledError:
                # The engine gave up on the batch: stop the workers too (they close busy sessions).
                for task in workers:
                    task.cancel()
                raise
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)
                cut = TemporaryFailure("timeout", f"not finished within batch_timeout={float(opts.batch_timeout):g}s "
                                                  "(a message cut off in DATA may have been delivered; a retry "
                                                  "carries the same Message-ID)", address_fault=False)
                results = [cut if r is None else r for r in results]
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise exc
            if any(r is None for r in results):
                left = _leftover(stops[-1] if stops else None)
                results = [left if r is None else r for r in results]
        return results  # type: ignore[return-value]

    async def _worker(self, pool: ConnectionPool, queue: deque[tuple[int, Prepared]],
                      results: list[Union[Result, None]], stops: list[Result]) -> None:
        """Borrow one session and send messages from ``queue`` until it is empty or the session must stop."""
        conn = await pool.acquire()
        busy = False
        try:
            while queue:
                i, p = queue.popleft()
                busy = True
                if not conn.ready:
                    failure = await self._connect(pool, conn)
                    if failure is not None:
                        results[i] = failure
                        stops.append(failure)
                        busy = False
                        return
                result, then = await self._transact(pool, conn, p)
                busy = False
                results[i] = result
                if then == _STOP:
                    stops.append(result)
                    return
        finally:
            if busy:
                # Cancelled mid-transaction (batch_timeout): the session's state is unknown.
                pool.discard(conn)
            pool.release(conn)

    async def _connect(self, pool: ConnectionPool, conn: Connection) -> Union[Result, None]:
        """Open the slot's session; None when connected, else what the message waiting for it gets."""
        opts = self.options
        where = f"{opts.host}:{opts.effective_port}"
        try:
            await pool.open(conn)
        except (aiosmtplib.SMTPConnectTimeoutError, TimeoutError) as exc:
            return TemporaryFailure("connect_timeout", f"no SMTP session with {where} within "
                                    f"connect_timeout={float(opts.connect_timeout):g}s ({exc or 'timed out'})",
                                    address_fault=False)
        except aiosmtplib.SMTPResponseException as exc:
            # Greeting, EHLO, STARTTLS or AUTH refused: 421 throttles, the rest is temporary.
            return classify(exc.code, exc.message, "connect", float(opts.rate_limit_retry_after))
        except (aiosmtplib.SMTPException, OSError) as exc:
            return TemporaryFailure("connect", f"cannot open an SMTP session with {where}: {exc}", address_fault=False)
        return None

    async def _transact(self, pool: ConnectionPool, conn: Connection, p: Prepared) -> tuple[Result, int]:
        """One MAIL/RCPT/DATA transaction; the result and what the worker does next."""
        smtp = conn.smtp
        assert smtp is not None
        opts = self.options
        encoding = "utf-8" if p.utf8 else "ascii"
        mail_options = []
        if smtp.supports_extension("size"):
            mail_options.append(f"SIZE={len(p.data)}")
        if p.utf8:
            mail_options.append("SMTPUTF8")
        stage = "mail"
        try:
            await smtp.mail(p.envelope_from, options=mail_options, encoding=encoding)
            stage = "rcpt"
            await smtp.rcpt(p.to, encoding=encoding)
            stage = "data"
            await smtp.data(p.data)
        except aiosmtplib.SMTPResponseException as exc:
            result = classify(exc.code, exc.message, stage, float(opts.rate_limit_retry_after))  # type: ignore[arg-type]
            if exc.code == 421 or not conn.ready:
                # 421 means the server is closing this session: replace it.
                pool.discard(conn)
            else:
                await self._reset(pool, conn)
            return result, _STOP if type(result) is RateLimited else _KEEP
        except aiosmtplib.SMTPTimeoutError:
            pool.discard(conn)
            return TemporaryFailure("timeout", f"{_STAGE[stage]}: no reply within timeout="
                                    f"{float(opts.timeout):g}s", address_fault=False), _STOP
        except (aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            pool.discard(conn)
            if stage == "data":
                detail = ("DATA: the connection was lost before the server's final reply; the message may have "
                          "been delivered (a retry carries the same Message-ID)")
            else:
                detail = f"{_STAGE[stage]}: the connection was lost ({exc})"
            return TemporaryFailure("connection_lost", detail, address_fault=False), _KEEP
        conn.messages += 1
        return Accepted(p.message_id), _KEEP

    async def _reset(self, pool: ConnectionPool, conn: Connection) -> None:
        """RSET after a refusal so the next transaction starts clean; a session that cannot is dropped."""
        smtp = conn.smtp
        try:
            await smtp.rset()  # type: ignore[union-attr]
        except (aiosmtplib.SMTPException, OSError):
            pool.discard(conn)

    # Delivery reports

    def parse_delivery_report(
        self, payload: Mapping[str, Any], *, url: Union[str, None] = None,
        headers: Union[Mapping[str, str], None] = None,
    ) -> Union[DeliveryReport, None]:
        """Always None: SMTP has no delivery-report callback.

        The relay's 250 is the last word this provider gets. Bounces and DSNs
        arrive later as mail to the envelope sender; reading that mailbox is
        out of scope here (a platform can feed what it learns from them to
        ``Engine.report_delivery`` through a provider of its own).
        """
        return None


_STAGE = {"mail": "MAIL FROM", "rcpt": "RCPT TO", "data": "DATA"}


def _leftover(stop: Union[Result, None]) -> Result:
    """What a message no worker took gets, from the answer that stopped the last worker."""
    if type(stop) is RateLimited:
        return stop
    if stop is None:
        return TemporaryFailure("not_sent", "not attempted", address_fault=False)
    code = getattr(stop, "code", "") or "not_sent"
    message = getattr(stop, "message", "")
    return TemporaryFailure(code, f"not attempted: the batch's sessions stopped after {message}",
                            address_fault=False)

