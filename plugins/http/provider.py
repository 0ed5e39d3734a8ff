"""``HttpProvider``: a batch of sends as one JSON request to a configured API, its answer read item by item.

One request per batch over one shared keep-alive session. Failures of the
whole request (refused or dropped connection, timeout, a 5xx, a body that is
not the expected JSON) come back as one ``TemporaryFailure`` per send with
``address_fault=False``; ``send`` never raises for them, so the engine
retries them per R18 and the error segment (R13) is left alone. Other
whole-response statuses map through ``codes.status_kind``; per-item errors
through the ``codes`` option (see ``codes.py``). Whatever the server answers,
each send gets exactly one result: items that do not name a send of the
batch are ignored, sends with no (or a doubtful) item get a
``TemporaryFailure("malformed_response", ...)`` saying what was wrong.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any, Mapping, Union

import aiohttp
import msgspec
from aiolimiter import AsyncLimiter
from yarl import URL

from sendcore.errors import ConfigError
from sendcore.provider import DeliveryReport, Provider, ProviderContext, batch_timeout
from sendcore.send import Accepted, Batch, PermanentFailure, RateLimited, Result, Send, TemporaryFailure

from .codes import item_failure, norm, retry_after_seconds, status_kind
from .options import HttpOptions
from .reports import ReportReader
from .shape import compile_shape, getter, split_path

__all__ = ["HttpProvider", "idempotency_key"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_SNIPPET = 200


def idempotency_key(sends: list[Send]) -> str:
    """The ``Idempotency-Key`` of a request: the send id for one send, else ``batch-`` + a hash of the ids.

    The same sends in the same order give the same key, so a retried batch
    is recognisable as a replay; the per-item ids in the body are what
    deduplicates sends the engine regrouped into another batch.
    """
    if len(sends) == 1:
        return sends[0].id
    h = hashlib.sha256()
    for s in sends:
        h.update(s.id.encode())
        h.update(b"\x00")
    return "batch-" + h.hexdigest()[:32]


def _snippet(raw: bytes) -> str:
    text = raw[:_SNIPPET].decode("utf-8", "replace").strip()
    return text + ("..." if len(raw) > _SNIPPET else "")


class HttpProvider(Provider):
    """The bundled generic ``http`` provider; see the package doc and ``HttpOptions``.

    ``channels`` and ``max_batch`` come from the options. 8 batches (so 8
    requests) in flight by default; no default route rate (set
    ``[providers.http] rate`` to the API's messages per second).
    ``timeout`` (the engine's limit on one batch) is derived from the options
    so that it never cuts off a request within ``request_timeout``, the waits
    for a free connection and for ``request_rate`` included; at ``start`` it
    is derived again for the ``max_concurrency`` the engine applies
    (``[providers.http]``).
    """

    name = "http"
    channels: tuple[str, ...] = ()
    max_batch = 100
    rate = None
    burst = None
    max_concurrency = 8
    timeout = 11.0

    def __init__(self, options: HttpOptions) -> None:
        """A provider for these options; nothing connects until ``start``."""
        self._session: Union[aiohttp.ClientSession, None] = None
        self._limiter: Union[AsyncLimiter, None] = None
        self._slots: Union[asyncio.Semaphore, None] = None
        self._secret: Union[str, None] = None
        self._report_secret: Union[str, None] = None
        self._in_flight = self.max_concurrency  # one request per batch
        self._apply(options)

    @classmethod
    def from_options(cls, options: Union[Mapping[str, Any], HttpOptions, None],
                     source: str = "providers.http.options") -> HttpProvider:
        """Build a provider from an options table (as in TOML) or an ``HttpOptions``.

        Raises ``ConfigError`` naming the key, e.g.
        ``providers.http.options.url: required option is missing``.
        """
        if isinstance(options, HttpOptions):
            return cls(options)
        return cls(HttpOptions.from_mapping(options, source))

    def _apply(self, options: HttpOptions) -> None:
        """Compile what every request of this configuration shares."""
        self.options = options
        self.channels = tuple(options.channels)
        self.max_batch = options.max_batch
        self.timeout = batch_timeout(self._in_flight, options.max_connections,
                                     float(options.request_timeout), options.request_rate)  # type: ignore[arg-type]
        self._url = URL(options.url)
        self._item = compile_shape(options.item, "item")
        self._envelope = compile_shape(options.envelope, "envelope", batch=True) if options.envelope else None
        self._body_keys = split_path(options.body_path)
        self._results = getter(options.results_path)
        self._result_id = getter(options.result_id_field)
        self._result_status = getter(options.result_status_field) if options.result_status_field else None
        self._result_pid = getter(options.result_provider_id_field) if options.result_provider_id_field else None
        none = lambda d: None  # noqa: E731 - an absent field
        self._result_code = getter(options.result_code_field) if options.result_code_field else none
        self._result_message = getter(options.result_message_field) if options.result_message_field else none
        self._result_retry = getter(options.result_retry_after_field) if options.result_retry_after_field else none
        self._accepted = frozenset(options.accepted_values)
        self._default_retry = float(options.default_retry_after)  # type: ignore[arg-type]
        self._max_retry = float(options.max_retry_after)  # type: ignore[arg-type]
        self._reports = ReportReader(options)

    # Lifecycle

    def problems(self) -> list[str]:
        """What would stop ``start`` here: an unset environment variable (for ``check-config``)."""
        out = []
        for key, env in (("auth_env", self.options.auth_env), ("report_secret_env", self.options.report_secret_env)):
            if env and not os.environ.get(env):
                out.append(f"the environment variable {env} (providers.http.options.{key}) is not set; "
                           "the engine will refuse to start until it is")
        return out

    async def start(self, context: ProviderContext) -> None:
        """Apply ``context.settings`` (when given), read the secrets, open the shared session.

        Raises ``ConfigError`` naming the environment variable when one is unset or empty.
        """
        limits = getattr(context, "limits", None)
        if limits is not None:
            self._in_flight = limits.max_concurrency
        overrides = getattr(context, "settings", None)
        self._apply(HttpOptions.from_mapping(overrides) if overrides else self.options)
        opts = self.options
        headers = {"Content-Type": "application/json", "Accept": "application/json", **opts.headers}
        if opts.auth_env is not None:
            secret = self._env("auth_env", opts.auth_env, "the API credential")
            headers[opts.auth_header] = f"{opts.auth_scheme} {secret}" if opts.auth_scheme else secret
        if opts.report_secret_env:
            self._report_secret = self._env("report_secret_env", opts.report_secret_env,
                                            "the delivery reports' signing secret")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=opts.max_connections),
            timeout=aiohttp.ClientTimeout(total=float(opts.request_timeout)),  # type: ignore[arg-type]
            headers=headers,
        )
        rate = opts.request_rate
        # A bucket of request_burst that refills at request_rate: bursts of at most
        # request_burst requests, then one every 1/request_rate seconds.
        self._limiter = AsyncLimiter(opts.request_burst, opts.request_burst / rate) if rate else None
        # Requests queue here rather than in aiohttp's pool, whose wait would
        # count against the request's own timeout.
        self._slots = asyncio.Semaphore(opts.max_connections)

    async def close(self) -> None:
        """Close the shared session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @staticmethod
    def _env(key: str, env: str, what: str) -> str:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"providers.http.options.{key}: the environment variable {env} is not set; "
                              f"it must hold {what}")
        return value

    # Sending

    def body(self, batch: Batch) -> bytes:
        """The JSON request body of ``batch``: every item's shape, placed at ``body_path`` in the envelope."""
        sender = batch.sender or self.options.sender or ""
        build = self._item
        items = [build(s, sender) for s in batch.sends]
        keys = self._body_keys
        if not keys:
            return _encode(items)
        doc: dict[str, Any] = self._envelope(batch.channel, sender) if self._envelope is not None else {}
        node = doc
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = items
        return _encode(doc)

    async def send(self, batch: Batch) -> list[Result]:
        """One request for ``batch``; one result per send, in order. Never raises for failures (module doc).

        Runtime complexity: O(len(batch)) to build the body and read the answer.
        """
        session = self._session
        if session is None:
            raise RuntimeError("HttpProvider.send: the provider was not started (or is closed)")
        sends = batch.sends
        n = len(sends)
        opts = self.options
        data = self.body(batch)
        headers = {opts.idempotency_header: idempotency_key(sends)} if opts.idempotency_header else None
        slots = self._slots
        assert slots is not None
        try:
            # A connection first, then the rate, so queued requests never leave in a burst.
            async with slots:
                if self._limiter is not None:
                    await self._limiter.acquire()
                async with session.request(opts.method, self._url, data=data, headers=headers,
                                           allow_redirects=False) as resp:
                    raw = await resp.read()
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
        except asyncio.TimeoutError:
            return [TemporaryFailure("timeout", f"no answer within {opts.request_timeout:g}s",
                                     address_fault=False)] * n
        except aiohttp.ClientError as exc:
            return [TemporaryFailure("connection", f"{type(exc).__name__}: {exc}".rstrip(": "),
                                     address_fault=False)] * n
        if 200 <= status < 300:
            return self._read(sends, status, raw, retry_after)
        kind = status_kind(status, opts.statuses)  # type: ignore[arg-type]
        if kind == "rate_limited":
            return [RateLimited(retry_after_seconds(retry_after, self._default_retry, self._max_retry))] * n
        detail = f"HTTP {status}: {_snippet(raw)}" if raw else f"HTTP {status}"
        if kind == "temporary":
            return [TemporaryFailure(f"http_{status}", detail, address_fault=False)] * n
        return [PermanentFailure(f"http_{status}", detail)] * n

    def _read(self, sends: list[Send], status: int, raw: bytes, retry_after: Union[str, None]) -> list[Result]:
        """The per-item results of a 2xx answer, one per send, whatever the body holds."""
        n = len(sends)
        match = self.options.result_match
        if match == "none":
            return [Accepted("")] * n

        def malformed(why: str) -> list[Result]:
            # The API may have taken some sends; the retry carries the same ids, so it can deduplicate.
            return [TemporaryFailure("malformed_response", f"HTTP {status}: {why}", address_fault=False)] * n

        try:
            doc = _decode(raw)
        except msgspec.DecodeError as exc:
            return malformed(f"the body is not JSON ({exc}): {_snippet(raw)}")
        items = self._results(doc)
        if type(items) is not list:
            where = self.options.results_path or "the body"
            return malformed(f"no list of results at {where!r} (results_path)")
        one = self._item_result
        if match == "position":
            if len(items) != n:
                return malformed(f"{len(items)} results for a batch of {n} sends (result_match = \"position\")")
            return [one(item, retry_after) for item in items]
        # By id: an id seen twice is doubtful, so neither answer is used for that send.
        by_id: dict[str, Any] = {}
        twice: set[str] = set()
        read_id = self._result_id
        for item in items:
            ident = norm(read_id(item))
            if ident in by_id:
                twice.add(ident)
            by_id[ident] = item
        out: list[Result] = []
        get = by_id.get
        for s in sends:
            item = get(s.id)
            if item is None or s.id in twice:
                why = self._missing(s.id, sends, by_id, twice)
                out.append(TemporaryFailure("malformed_response", f"HTTP {status}: {why}", address_fault=False))
            else:
                out.append(one(item, retry_after))
        return out

    def _missing(self, ident: str, sends: list[Send], by_id: dict[str, Any], twice: set[str]) -> str:
        """Why send ``ident`` has no usable result (rare: computed only then)."""
        if ident in twice:
            return f"the result for send {ident!r} appears more than once"
        ours = {s.id for s in sends}
        strangers = sum(1 for k in by_id if k not in ours)
        extra = f"; {strangers} results name ids not in this batch" if strangers else ""
        return f"no result names send {ident!r} in {self.options.result_id_field!r}{extra}"

    def _item_result(self, item: Any, retry_after: Union[str, None]) -> Result:
        """One item of the answer as a ``Result``, through ``accepted_values`` and ``codes``."""
        if type(item) is not dict:
            return TemporaryFailure("malformed_response", f"a result is {type(item).__name__}, not an object",
                                    address_fault=False)
        code = norm(self._result_code(item))
        read_status = self._result_status
        if read_status is None:
            ok = not code
            state = ""
        else:
            state = norm(read_status(item))
            ok = state in self._accepted
        if ok:
            read_pid = self._result_pid
            return Accepted(norm(read_pid(item)) if read_pid is not None else "")
        key = code or state or "rejected"
        opts = self.options
        kind = opts.codes.get(key, opts.unknown_code)
        ra = 0.0
        if kind == "rate_limited":
            own = self._result_retry(item)
            ra = retry_after_seconds(own if own is not None else retry_after, self._default_retry, self._max_retry)
        return item_failure(kind, key, norm(self._result_message(item)), ra)

    # Delivery reports

    def parse_delivery_report(
        self, payload: Any, *, url: Union[str, None] = None,
        headers: Union[Mapping[str, str], None] = None,
    ) -> Union[DeliveryReport, None]:
        """Read one delivery-report callback into a ``DeliveryReport``; None for an intermediate status.

        ``payload`` is the decoded JSON object, or the raw body (bytes or
        str), which is required when ``report_signature_header`` is set: the
        HMAC-SHA256 is checked on the raw body (``reports.py``). Raises
        ``DeliveryReportError`` for a bad or missing signature, a body that
        is not a JSON object, or a missing id or status. ``url`` is unused.
        """
        secret = None
        if self.options.report_secret_env:
            secret = self._report_secret
            if secret is None:  # not started (a webhook process that only parses reports)
                secret = self._report_secret = self._env("report_secret_env", self.options.report_secret_env,
                                                         "the delivery reports' signing secret")
        return self._reports.read(payload, headers, secret)
