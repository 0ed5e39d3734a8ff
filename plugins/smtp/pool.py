"""A small pool of SMTP sessions kept open and reused across batches.

Invariant: the pool owns exactly ``size`` ``Connection`` slots; a slot is
either idle (in the pool) or lent to one worker of one batch, never to two.
A slot's session is opened on first use and again after it failed: a
session that timed out, was dropped or answered 421 is closed (``discard``)
and the next user of the slot connects afresh. Idle slots are handed out
last-in first-out, so traffic reuses the warmest sessions and the cold ones
are the ones a server's idle timeout closes.

Runtime complexity: ``acquire``/``release`` O(1); ``open`` one SMTP
connection setup (TCP, greeting, EHLO, STARTTLS and AUTH when configured).
"""

from __future__ import annotations

import asyncio
from typing import Union

import aiosmtplib

from .options import SmtpOptions

__all__ = ["Connection", "ConnectionPool"]


class Connection:
    """One slot of the pool: an SMTP session, or None while it is not connected."""

    __slots__ = ("smtp", "messages")

    def __init__(self) -> None:
        self.smtp: Union[aiosmtplib.SMTP, None] = None
        #: Messages this session carried (diagnostics).
        self.messages = 0

    @property
    def ready(self) -> bool:
        """True when the session is connected (the server did not close it while idle)."""
        smtp = self.smtp
        return smtp is not None and smtp.is_connected


class ConnectionPool:
    """``size`` reusable SMTP sessions to the relay described by ``options``; see the module doc."""

    def __init__(self, options: SmtpOptions, password: Union[str, None], local_hostname: str) -> None:
        """A pool of unconnected slots; nothing connects until a slot is used."""
        self.options = options
        self._password = password
        self._local_hostname = local_hostname
        self._idle: asyncio.LifoQueue[Connection] = asyncio.LifoQueue()
        self._slots = [Connection() for _ in range(options.pool_size)]
        for conn in self._slots:
            self._idle.put_nowait(conn)
        #: Sessions opened so far (diagnostics and tests: reuse means this stays small).
        self.connects = 0

    async def acquire(self) -> Connection:
        """Borrow a slot, waiting for one to be released when all are lent."""
        return await self._idle.get()

    def release(self, conn: Connection) -> None:
        """Give a slot back (connected or not)."""
        self._idle.put_nowait(conn)

    async def open(self, conn: Connection) -> aiosmtplib.SMTP:
        """Connect the slot's session; raise what aiosmtplib raises (or ``TimeoutError``) when it cannot.

        The whole setup is bounded by ``connect_timeout``, whatever step hangs.
        """
        self.discard(conn)
        opts = self.options
        smtp = aiosmtplib.SMTP(
            hostname=opts.host,
            port=opts.effective_port,
            username=opts.username,
            password=self._password,
            local_hostname=self._local_hostname,
            timeout=float(opts.timeout),
            use_tls=opts.use_tls,
            # Never None: aiosmtplib's None means "upgrade if offered", which a
            # man in the middle defeats by hiding the offer.
            start_tls=opts.starttls,
            validate_certs=opts.validate_certs,
            cert_bundle=opts.cert_bundle,
        )
        self.connects += 1
        try:
            async with asyncio.timeout(float(opts.connect_timeout)):
                await smtp.connect()
                if smtp.is_ehlo_or_helo_needed:
                    await smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        conn.smtp = smtp
        conn.messages = 0
        return smtp

    def discard(self, conn: Connection) -> None:
        """Close the slot's session, if any; the next use connects again."""
        smtp, conn.smtp = conn.smtp, None
        if smtp is not None:
            smtp.close()

    async def close(self) -> None:
        """Say QUIT on every connected slot (briefly: at most 2 s or ``timeout``), then close them all."""
        grace = min(2.0, float(self.options.timeout))

        async def quit(conn: Connection) -> None:
            if conn.ready:
                try:
                    await asyncio.wait_for(conn.smtp.quit(), grace)  # type: ignore[union-attr]
                except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                    pass
            self.discard(conn)

        await asyncio.gather(*(quit(c) for c in self._slots))
