"""``TwilioProvider``: SMS through Twilio's Messages REST API, one request per message, many at once.

A batch is up to ``max_batch`` messages posted concurrently over one shared
keep-alive session (``POST /2010-04-01/Accounts/{sid}/Messages.json``, form
encoded, HTTP basic auth, the send id as ``I-Twilio-Idempotency-Token``). Since
every message is its own request, every failure is per message: a timeout, a
refused or dropped connection or a 5xx is a ``TemporaryFailure`` of that
message only, and ``send`` never raises for them. Twilio's answers are mapped
through the table in ``codes.py``.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import time
from email.utils import parsedate_to_datetime
from typing import Any, Mapping, Union
from urllib.parse import quote, quote_plus

import aiohttp
import msgspec
from aiolimiter import AsyncLimiter
from yarl import URL

from sendcore.errors import ConfigError, DeliveryReportError
from sendcore.provider import DeliveryReport, Provider, ProviderContext, batch_timeout
from sendcore.send import Accepted, Batch, PermanentFailure, RateLimited, Result, Send, TemporaryFailure

from .codes import API_CODES, DELIVERY_CODES, RATE_LIMIT_CODES, STOP
from .options import TwilioOptions
from .signature import SIGNATURE_HEADER, find_header, form_pairs, signature_matches

__all__ = ["DEFAULT_RETRY_AFTER", "MAX_RETRY_AFTER", "MIN_RETRY_AFTER", "TwilioProvider", "retry_after_seconds"]

#: Seconds to back off after a 429 that gives no usable ``Retry-After``.
DEFAULT_RETRY_AFTER = 1.0
#: ``Retry-After`` is clamped to this range: positive (the engine needs it),
#: and at most five minutes, so a garbled or hostile header cannot park a route for days.
MIN_RETRY_AFTER = 0.05
MAX_RETRY_AFTER = 300.0

#: Callback statuses on the way to a final one: they report nothing yet.
#: ``read`` (WhatsApp) comes after ``delivered``, which was already final.
_INTERMEDIATE = frozenset({"accepted", "scheduled", "queued", "sending", "sent", "receiving", "received", "read"})
_UNDELIVERED = frozenset({"undelivered", "failed", "canceled"})


class _Created(msgspec.Struct):
    """The part of Twilio's 201 body that matters: the message SID."""

    sid: str


class _ApiError(msgspec.Struct):
    """Twilio's JSON error body: ``{"code", "message", "more_info", "status"}``."""

    code: Union[int, None] = None
    message: str = ""
    more_info: str = ""
    status: Union[int, None] = None


_created = msgspec.json.Decoder(_Created)
_api_error = msgspec.json.Decoder(_ApiError)


def _basic_auth(user: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP basic auth (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def retry_after_seconds(value: Union[str, None], now: Union[float, None] = None) -> float:
    """Seconds a ``Retry-After`` header asks for, clamped to [``MIN_RETRY_AFTER``, ``MAX_RETRY_AFTER``].

    Reads both forms of RFC 9110: delta-seconds (``"2"``) and an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``, measured from ``now``, the wall
    clock by default: the date is the server's wall-clock time). A missing
    or unreadable header gives ``DEFAULT_RETRY_AFTER``.
    """
    if value is None:
        return DEFAULT_RETRY_AFTER
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, MIN_RETRY_AFTER), MAX_RETRY_AFTER)


class TwilioProvider(Provider):
    """The bundled ``twilio`` provider (channel ``sms``); see the module doc and ``TwilioOptions``.

    Declares batches of 50 messages, 4 batches in flight (200 requests over
    at most ``max_connections`` connections) and no default route rate: set
    ``[providers.twilio] rate`` or ``[[routes]]`` to your senders' throughput.
    ``timeout`` (the engine's limit on one batch) is derived from the options
    so that it never cuts off a request still within ``request_timeout``,
    including the wait for a free connection and for ``request_rate``; at
    ``start`` it is derived again for the ``max_batch`` and
    ``max_concurrency`` the engine applies (``[providers.twilio]``).
    """

    name = "twilio"
    channels = ("sms",)
    max_batch = 50
    rate = None
    burst = None
    max_concurrency = 4
    timeout = 21.0  # the default options': 200 requests over 100 connections, 10 s each

    def __init__(self, options: TwilioOptions) -> None:
        """A provider for these options; nothing connects until ``start``."""
        self._session: Union[aiohttp.ClientSession, None] = None
        self._limiter: Union[AsyncLimiter, None] = None
        self._slots: Union[asyncio.Semaphore, None] = None
        self._token: Union[str, None] = None
        self._in_flight = self.max_concurrency * self.max_batch
        self._apply(options)

    @classmethod
    def from_options(cls, options: Union[Mapping[str, Any], TwilioOptions, None],
                     source: str = "providers.twilio.options") -> TwilioProvider:
        """Build a provider from an options table (as in TOML) or a ``TwilioOptions``.

        Raises ``ConfigError`` naming the key, e.g.
        ``providers.twilio.options.account_sid: required option is missing``.
        """
        if isinstance(options, TwilioOptions):
            return cls(options)
        return cls(TwilioOptions.from_mapping(options, source))

    def _apply(self, options: TwilioOptions) -> None:
        self.options = options
        base = options.base_url.rstrip("/")
        self._url = URL(f"{base}/2010-04-01/Accounts/{quote(options.account_sid, safe='')}/Messages.json")
        # The form fields every message of this configuration shares, encoded once.
        tail = ""
        if options.messaging_service_sid is not None:
            tail += "&MessagingServiceSid=" + quote_plus(options.messaging_service_sid)
        if options.status_callback is not None:
            tail += "&StatusCallback=" + quote_plus(options.status_callback)
        self._tail = tail
        self._default_from = "" if options.from_ is None else "&From=" + quote_plus(options.from_)
        self.timeout = batch_timeout(self._in_flight, options.max_connections, float(options.request_timeout),
                                     options.request_rate)

    # Lifecycle

    def problems(self) -> list[str]:
        """What would stop ``start`` here: the auth token's environment variable unset (for ``check-config``)."""
        env = self.options.auth_token_env
        if self._token is None and not os.environ.get(env):
            return [f"the environment variable {env} (providers.twilio.options.auth_token_env) is not set; "
                    "the engine will refuse to start until it is"]
        return []

    async def start(self, context: ProviderContext) -> None:
        """Apply ``context.settings`` (when given), read the auth token, open the shared session.

        Raises ``ConfigError`` naming the environment variable when it is unset or empty.
        """
        limits = getattr(context, "limits", None)
        if limits is not None:
            self._in_flight = limits.max_concurrency * limits.max_batch
        overrides = getattr(context, "settings", None)
        self._apply(TwilioOptions.from_mapping(overrides) if overrides else self.options)
        opts = self.options
        token = self._auth_token()
        connector = aiohttp.TCPConnector(limit=opts.max_connections)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=float(opts.request_timeout)),
            headers={
                "Authorization": _basic_auth(opts.account_sid, token),
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        self._limiter = AsyncLimiter(opts.request_rate, 1.0) if opts.request_rate else None
        # Requests queue here rather than in aiohttp's pool, whose wait would
        # count against the request's own timeout.
        self._slots = asyncio.Semaphore(opts.max_connections)

    async def close(self) -> None:
        """Close the shared session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _auth_token(self) -> str:
        if self._token is None:
            env = self.options.auth_token_env
            token = os.environ.get(env)
            if not token:
                raise ConfigError(
                    f"providers.twilio.options.auth_token_env: the environment variable {env} is not set; "
                    "it must hold the Twilio account's auth token"
                )
            self._token = token
        return self._token

    # Sending

    async def send(self, batch: Batch) -> list[Result]:
        """Post every message of ``batch`` at once; one result per send, in order.

        Never raises for a message's failure (see the module doc). A send's
        ``sender`` (the batch's, since a batch never mixes senders) is sent as
        ``From`` instead of the configured one; with ``messaging_service_sid``
        it picks that number from the service's sender pool.
        Runtime complexity: O(len(batch)) requests, all in flight together.
        """
        if self._session is None:
            raise RuntimeError("TwilioProvider.send: the provider was not started (or is closed)")
        sender = batch.sender
        from_part = "&From=" + quote_plus(sender) if sender else self._default_from
        sends = batch.sends
        post = self._post
        if len(sends) == 1:
            return [await post(sends[0], from_part)]
        return list(await asyncio.gather(*[post(s, from_part) for s in sends]))

    async def _post(self, send: Send, from_part: str) -> Result:
        """One create-message request and its result. Transport errors become ``TemporaryFailure``."""
        body = ("To=" + quote_plus(send.to) + "&Body=" + quote_plus(send.body) + from_part + self._tail).encode()
        headers = {"I-Twilio-Idempotency-Token": send.id}
        session, slots = self._session, self._slots
        assert session is not None and slots is not None
        try:
            # A connection first, then the rate: a request that passed the
            # limiter leaves at once, so queued requests never leave in a burst.
            async with slots:
                if self._limiter is not None:
                    await self._limiter.acquire()
                async with session.post(self._url, data=body, headers=headers, allow_redirects=False) as resp:
                    raw = await resp.read()
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
        except asyncio.TimeoutError:
            return TemporaryFailure("timeout", f"Twilio did not answer within {self.options.request_timeout:g}s",
                                    address_fault=False)
        except aiohttp.ClientError as exc:
            return TemporaryFailure("connection", f"{type(exc).__name__}: {exc}".rstrip(": "), address_fault=False)
        return self._result(status, raw, retry_after)

    def _result(self, status: int, raw: bytes, retry_after: Union[str, None]) -> Result:
        """Map one HTTP answer to a ``Result`` (see ``codes.py``)."""
        if 200 <= status < 300:
            try:
                sid = _created.decode(raw).sid
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                sid, problem = "", str(exc)
            else:
                problem = "no message sid"
            if sid:
                return Accepted(sid)
            # Twilio may well have taken the message; the retry carries the same
            # idempotency token, so Twilio answers it with this message, not a second one.
            return TemporaryFailure("malformed_response", f"HTTP {status} with an unreadable body: {problem}",
                                    address_fault=False)
        try:
            error = _api_error.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            error = _ApiError(message=raw[:200].decode("utf-8", "replace").strip())
        code = error.code
        if status == 429 or code in RATE_LIMIT_CODES:
            return RateLimited(retry_after_seconds(retry_after))
        label = str(code) if code is not None else f"http_{status}"
        detail = f"HTTP {status}: {error.message}" if error.message else f"HTTP {status}"
        if status >= 500 or status < 400:
            # Twilio's or the network's trouble, not the number's: no error-segment entry (R13).
            return TemporaryFailure(label, detail, address_fault=False)
        known = API_CODES.get(code) if code is not None else None
        if known is None:
            return PermanentFailure(label, detail)
        suppress = self.options.stop_suppress if known.suppress == STOP else known.suppress
        return PermanentFailure(label, error.message or known.meaning, suppress)  # type: ignore[arg-type]

    # Delivery reports

    def parse_delivery_report(
        self, payload: Mapping[str, Any], *, url: Union[str, None] = None,
        headers: Union[Mapping[str, str], None] = None,
    ) -> Union[DeliveryReport, None]:
        """Read one status callback (its form fields) into a ``DeliveryReport``; None for intermediate statuses.

        With ``verify_signature`` (the default) the ``X-Twilio-Signature`` of
        ``headers`` must match ``url`` (the full URL Twilio called, query
        included) and the fields, else ``DeliveryReportError``. Carrier codes
        are read through ``codes.DELIVERY_CODES``: 30003 marks the address
        temporary (error segment), 30005/30006 suppress it, 30022 slows the
        route; other codes are a plain undelivered report naming the code.
        """
        if not isinstance(payload, Mapping) and not hasattr(payload, "items"):
            raise DeliveryReportError("twilio delivery report: expected the callback's form fields")
        pairs = form_pairs(payload)
        if self.options.verify_signature:
            self._verify(pairs, url, headers)
        fields = dict(pairs)
        sid = fields.get("MessageSid", "")
        status = fields.get("MessageStatus", "")
        if not sid or not status:
            raise DeliveryReportError("twilio delivery report: MessageSid and MessageStatus are required")
        account = fields.get("AccountSid")
        if account is not None and account != self.options.account_sid:
            raise DeliveryReportError(
                f"twilio delivery report: AccountSid {account!r} is not the configured account_sid"
            )
        if status in _INTERMEDIATE:
            return None
        if status == "delivered":
            return DeliveryReport(delivered=True, provider_id=sid, code="delivered", detail="delivered")
        if status not in _UNDELIVERED:
            raise DeliveryReportError(f"twilio delivery report: unknown MessageStatus {status!r}")
        raw_code = fields.get("ErrorCode", "").strip()
        if not raw_code:
            return DeliveryReport(delivered=False, provider_id=sid, code=status, detail=status)
        try:
            code = int(raw_code)
        except ValueError:
            raise DeliveryReportError(f"twilio delivery report: ErrorCode {raw_code!r} is not a number") from None
        known = DELIVERY_CODES.get(code)
        if known is None:
            return DeliveryReport(delivered=False, provider_id=sid, code=raw_code,
                                  detail=f"{status}: Twilio error {raw_code}")
        return DeliveryReport(delivered=False, provider_id=sid, code=raw_code,
                              detail=f"{status}: {raw_code} {known.meaning}", temporary=known.temporary,
                              suppress=known.suppress, retry_after=known.retry_after)

    def _verify(self, pairs: list[tuple[str, str]], url: Union[str, None],
                headers: Union[Mapping[str, str], None]) -> None:
        if not url:
            raise DeliveryReportError(
                "twilio delivery report: the request url is needed to check X-Twilio-Signature "
                "(pass url=, or set verify_signature = false)"
            )
        signature = find_header(headers, SIGNATURE_HEADER)
        if not signature:
            raise DeliveryReportError("twilio delivery report: no X-Twilio-Signature header")
        if not signature_matches(self._auth_token(), url, pairs, signature):
            raise DeliveryReportError("twilio delivery report: X-Twilio-Signature does not match the url and fields")
