"""The provider contract: what a provider plugin implements and what the engine gives it.

A provider is any object with these attributes and an ``async send(batch)``
returning one ``Result`` per send, in order. Subclassing ``Provider`` is
optional; it documents the surface and fills in defaults.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Protocol, Sequence, Union, runtime_checkable

import msgspec

from .send import Batch, Result

__all__ = ["Clock", "DeliveryReport", "Provider", "ProviderContext", "ProviderSpec", "batch_timeout", "spec_of"]


@runtime_checkable
class Clock(Protocol):
    """Time as the engine sees it: the wall clock, or a ``VirtualClock`` in tests."""

    def now(self) -> float:
        """Current time in epoch seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class ProviderContext(Protocol):
    """What the engine hands a provider in ``start(context)``.

    ``clock`` is the engine's clock: a provider that simulates latency or
    schedules delivery reports must sleep on it, so that it runs on virtual
    time in tests. ``settings`` is the ``[providers.NAME.options]`` table.
    ``limits`` is the provider's declaration as the engine applies it (with
    ``[providers.NAME]`` settings such as ``max_concurrency``); a provider
    whose ``timeout`` depends on them may set ``self.timeout`` in ``start``
    (see ``batch_timeout``), and the engine uses that unless
    ``[providers.NAME] timeout`` is set. ``report_delivery`` adds a
    ``delivered``/``undelivered`` event to a sent message (R21);
    ``report_opt_out`` records that an address replied STOP (R14, scope
    ``marketing``).
    """

    clock: Clock
    settings: dict[str, Any]
    limits: ProviderSpec

    def report_delivery(self, send_id: str, delivered: bool, detail: str = "") -> None:
        """Record a delivery report for a send this provider accepted."""
        ...

    def report_opt_out(self, channel: str, address: str) -> None:
        """Record that ``address`` opted out of marketing on ``channel``."""
        ...


class DeliveryReport(msgspec.Struct, kw_only=True, frozen=True):
    """What a provider's ``parse_delivery_report`` makes of one callback (R21).

    The report names its message by ``send_id`` (when the provider echoes the
    send's id) or by ``provider_id`` (the id the provider gave in
    ``Accepted.provider_id``, such as a Twilio message SID). An undelivered
    report may carry what the error means for the address and the route:
    ``temporary`` puts the address in the error segment (R13), ``suppress``
    suppresses it on the channel (R14), ``retry_after`` slows the route down
    as a ``RateLimited`` answer would.
    """

    delivered: bool
    send_id: str = ""
    provider_id: str = ""
    code: str = ""
    detail: str = ""
    temporary: bool = False
    suppress: Union[Literal["marketing", "all"], None] = None
    retry_after: Union[float, None] = None


class Provider:
    """Base class documenting the provider surface.

    Class attributes declare the provider: ``name`` (unique), ``channels`` it
    serves, ``max_batch`` (R19), default route limits ``rate`` (messages or
    SMS segments per second, None = unlimited), ``burst``, ``daily_cap``
    (0 = none), ``max_concurrency`` (batches in flight at once) and
    ``timeout`` (seconds a ``send`` call may take before it counts as a
    temporary failure of the whole batch). Optional ``total_rate`` and
    ``total_burst`` cap all of the provider's routes together.
    ``fallback = True`` marks a development provider (the bundled sandbox):
    it serves a channel only when a send or ``[channels.X] provider`` names
    it, or when no other provider serves that channel.
    """

    name: str = ""
    channels: Sequence[str] = ()
    max_batch: int = 100
    rate: Union[float, None] = None
    burst: Union[int, None] = None
    daily_cap: int = 0
    max_concurrency: int = 8
    timeout: float = 30.0
    fallback: bool = False

    async def start(self, context: ProviderContext) -> None:
        """Called once before the first batch, with the engine's context."""

    async def send(self, batch: Batch) -> list[Result]:
        """Send a batch; return exactly one result per send, in order.

        Use ``send.id`` as the idempotency key with the remote API: a send in
        flight during a crash is sent again with the same id (R22).
        """
        raise NotImplementedError

    async def close(self) -> None:
        """Called once at shutdown, after in-flight batches finished or timed out."""

    def parse_delivery_report(
        self, payload: Mapping[str, Any], *, url: Union[str, None] = None,
        headers: Union[Mapping[str, str], None] = None,
    ) -> Union[DeliveryReport, None]:
        """Turn one delivery-report callback into a ``DeliveryReport``, or None when it reports nothing final.

        ``payload`` is the callback's decoded fields (a form's fields, a JSON
        object); ``url`` and ``headers`` are the request's, for signature
        checks. Raise ``sendcore.errors.DeliveryReportError`` for a malformed
        payload or a bad signature. Intermediate statuses ("queued", "sent")
        return None. A ``(send_id, delivered, detail)`` tuple is accepted too.
        """
        return None


class ProviderSpec(msgspec.Struct, kw_only=True, frozen=True):
    """What the core needs to know of a provider: its name, channels and limits."""

    name: str
    channels: tuple[str, ...]
    max_batch: int = 100
    rate: Union[float, None] = None
    burst: Union[int, None] = None
    daily_cap: int = 0
    max_concurrency: int = 8
    timeout: float = 30.0
    total_rate: Union[float, None] = None
    total_burst: Union[int, None] = None
    fallback: bool = False


#: Every declared field of a provider with its default (the name and channels are required).
_DECLARED = {f: d for f, d in zip(ProviderSpec.__struct_fields__[-len(ProviderSpec.__struct_defaults__):],
                                  ProviderSpec.__struct_defaults__)}


def batch_timeout(in_flight: int, connections: int, request_timeout: float,
                  request_rate: Union[float, None] = None) -> float:
    """The longest a call can take when ``in_flight`` requests share ``connections`` connections.

    Each request waits its turn for a connection (each turn at most
    ``request_timeout``) and for ``request_rate`` requests per second, if
    set; one second of slack on top. A provider that queues its requests for
    a connection before it starts their timers sets this as its ``timeout``,
    so the engine never cuts off a request still within its own timeout.
    """
    turns = math.ceil(in_flight / connections)
    waiting = in_flight / request_rate if request_rate else 0.0
    return turns * float(request_timeout) + waiting + 1.0


def spec_of(provider: Any, overrides: Any = None) -> ProviderSpec:
    """Read a provider object's declaration (or a spec), applying ``[providers.NAME]`` settings.

    An attribute the provider does not declare takes ``ProviderSpec``'s
    default; every limit in ``PROVIDER_LIMITS`` that ``overrides`` sets wins.
    """
    from .settings import PROVIDER_LIMITS  # local: settings is heavy and imports nothing of ours back

    got = {f: getattr(provider, f, d) for f, d in _DECLARED.items()}
    if overrides is not None:
        for f in PROVIDER_LIMITS:
            v = getattr(overrides, f)
            if v is not None:
                got[f] = v
    return ProviderSpec(
        name=provider.name,
        channels=tuple(provider.channels),
        max_batch=int(got["max_batch"]),
        rate=got["rate"],
        burst=got["burst"],
        daily_cap=int(got["daily_cap"] or 0),
        max_concurrency=int(got["max_concurrency"]),
        timeout=float(got["timeout"]),
        total_rate=got["total_rate"],
        total_burst=got["total_burst"],
        fallback=bool(got["fallback"]),
    )
