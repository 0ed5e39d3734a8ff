"""``SandboxProvider``: a simulated carrier network that answers like real SMS, email and push APIs.

Every decision about a send is drawn from a hash of (seed, send id, attempt),
or of (seed, address) for what belongs to an address (a number that does not
exist, a recipient who replies STOP), never from a shared random stream. So
the same seed gives the same answers whatever order the engine sends the
batches in, and a retried attempt draws afresh. Time is the engine's clock
(``context.clock``): latency, delivery reports and STOP replies all sleep on
it, so a week of traffic runs in seconds on a ``VirtualClock``.

What the network does, in the order a send meets it:

1. idempotency: an id this network already accepted gets the same provider
   id back and is not counted, reported or delivered a second time (R22);
2. invalid addresses (``invalid_suffixes``, ``permanent_error_rate``) answer
   ``PermanentFailure(suppress="all")``;
3. carrier capacity: past ``capacity`` messages in the current second of a
   carrier, ``RateLimited(retry_after)`` until the next second;
4. congestion: ``TemporaryFailure`` with ``temporary_error_rate`` per attempt;
5. otherwise ``Accepted``; a delivery report follows after a delay, and a
   STOP reply for the chosen fraction of marketing SMS recipients.
"""

from __future__ import annotations

import math
from functools import partial
from hashlib import blake2b
from statistics import NormalDist
from typing import Any, Callable, Mapping, Union

import msgspec

from sendcore.clock import Cancellable, RealClock, call_at
from sendcore.errors import DeliveryReportError
from sendcore.provider import DeliveryReport, Provider, ProviderContext
from sendcore.send import Accepted, Batch, PermanentFailure, RateLimited, Result, TemporaryFailure

from .options import SandboxOptions

__all__ = ["CarrierTraffic", "SandboxProvider", "SandboxTraffic", "StreamTraffic"]

_TWO64 = float(1 << 64)
_INV_CDF = NormalDist().inv_cdf
#: Origins whose SMS are marketing, the ones a recipient may answer with STOP.
_MARKETING = frozenset({"flow", "campaign"})
_PERMANENT_CODE = {"sms": "invalid_number", "email": "hard_bounce", "push": "invalid_token"}


class CarrierTraffic(msgspec.Struct, kw_only=True, frozen=True):
    """What one carrier of one channel saw: answers by kind and its busiest second."""

    channel: str
    carrier: str
    accepted: int
    temporary_failures: int
    permanent_failures: int
    rate_limited: int
    duplicates: int
    first_at: Union[float, None]
    last_at: Union[float, None]
    peak_per_second: int


class StreamTraffic(msgspec.Struct, kw_only=True, frozen=True):
    """Accepted sends of one ``origin_id`` on one carrier: how many, over what span.

    ``active_seconds`` counts the distinct clock seconds in which some of them
    were accepted, so ``accepted / active_seconds`` is the rate while sending,
    whatever pauses (quiet hours, zones) lie between ``first_at`` and ``last_at``.
    """

    channel: str
    carrier: str
    origin_id: str
    accepted: int
    first_at: float
    last_at: float
    active_seconds: int


class SandboxTraffic(msgspec.Struct, kw_only=True, frozen=True):
    """A frozen snapshot of the sandbox network's counters (see ``SandboxProvider.traffic``).

    ``report_errors`` counts delivery or opt-out reports the engine's context
    refused with an exception; ``first_report_error`` says what the first was.
    """

    carriers: list[CarrierTraffic]
    streams: list[StreamTraffic]
    delivery_reports: int
    opt_outs: int
    pending_reports: int
    report_errors: int = 0
    first_report_error: Union[str, None] = None


class _Counters:
    """Mutable per (channel, carrier) counters; ``second``/``in_second`` drive capacity."""

    __slots__ = ("accepted", "temporary", "permanent", "rate_limited", "duplicates", "first", "last",
                 "second", "in_second", "peak")

    def __init__(self) -> None:
        self.accepted = self.temporary = self.permanent = self.rate_limited = self.duplicates = 0
        self.first: Union[float, None] = None
        self.last: Union[float, None] = None
        self.second = -1
        self.in_second = 0
        self.peak = 0


def _uniforms(key: str) -> tuple[float, float, float, float]:
    """Four independent uniforms in [0, 1) from one hash of ``key``."""
    d = blake2b(key.encode(), digest_size=32).digest()
    f = int.from_bytes
    return (f(d[0:8], "little") / _TWO64, f(d[8:16], "little") / _TWO64,
            f(d[16:24], "little") / _TWO64, f(d[24:32], "little") / _TWO64)


def _lognormal(median: float, sigma: float, u: float) -> float:
    """A lognormal draw with this median and shape, from one uniform (inverse CDF)."""
    if median <= 0.0:
        return 0.0
    if sigma <= 0.0:
        return median
    u = min(max(u, 1e-12), 1.0 - 1e-12)
    return median * math.exp(sigma * _INV_CDF(u))


class SandboxProvider(Provider):
    """A deterministic simulated carrier network for sms, email and push (see the module doc).

    Declares a short code's default route limit (100 messages per second per
    carrier, burst 100) and batches of at most 100. Options come from the
    constructor and, at ``start``, from ``context.settings`` (the
    ``[providers.sandbox.options]`` table), which override them key by key.
    """

    name = "sandbox"
    channels = ("sms", "email", "push")
    # A development provider: it never makes a channel ambiguous for a real one.
    fallback = True
    max_batch = 100
    rate = 100.0
    burst = 100
    daily_cap = 0
    max_concurrency = 8
    timeout = 30.0

    def __init__(self, options: Union[SandboxOptions, None] = None) -> None:
        """Create a network with ``options`` (defaults if None); nothing runs until ``send``."""
        self._base = options if options is not None else SandboxOptions()
        self.options: SandboxOptions = self._base
        self._context: Union[ProviderContext, None] = None
        # The wall clock until ``start`` hands over the engine's (virtual in tests).
        self._clock: Any = RealClock()
        self._accepted: dict[str, str] = {}
        self._stop_sent: set[str] = set()
        self._counters: dict[tuple[str, str], _Counters] = {}
        self._streams: dict[tuple[str, str, str], list[Any]] = {}
        self._buckets: dict[float, list[tuple[Callable[..., None], tuple[Any, ...]]]] = {}
        self._timers: dict[float, Cancellable] = {}
        self._reports = 0
        self._opt_outs = 0
        self._report_errors = 0
        self._first_report_error: Union[str, None] = None

    @classmethod
    def from_options(cls, options: Union[Mapping[str, Any], SandboxOptions, None] = None) -> SandboxProvider:
        """Build a provider from an options table (as in TOML) or a ``SandboxOptions``.

        Raises ``ConfigError`` naming the key when the table is invalid.
        """
        if options is None or isinstance(options, SandboxOptions):
            return cls(options)
        return cls(SandboxOptions.from_mapping(options))

    # Lifecycle

    async def start(self, context: ProviderContext) -> None:
        """Take the engine's clock and reporting callbacks; apply ``context.settings`` options."""
        self._context = context
        self._clock = context.clock
        overrides = getattr(context, "settings", None) or {}
        if overrides:
            merged = msgspec.structs.asdict(self._base)
            merged.update(overrides)
            self.options = SandboxOptions.from_mapping(merged)

    async def close(self) -> None:
        """Stop the report timers; reports still pending are dropped, as a closed webhook would."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._buckets.clear()

    # Sending

    async def send(self, batch: Batch) -> list[Result]:
        """Answer each send of ``batch`` in order, after the carrier's latency (see the module doc).

        Runtime complexity: O(len(batch)), one hash per send and one per address.
        """
        opts = self.options
        channel = batch.channel
        carrier = batch.carrier or "unknown"
        # Email and push have no carrier: name the gateway in messages instead.
        where = batch.carrier or f"the {channel} gateway"
        sends = batch.sends
        if sends:
            median = opts.latency_median(carrier)
            if median > 0.0:
                u = _uniforms(f"{opts.seed}|latency|{sends[0].id}|{batch.attempts[0]}")[0]
                await self._clock.sleep(_lognormal(median, opts.latency_sigma, u))
        now = self._clock.now()
        counters = self._counters.get((channel, carrier))
        if counters is None:
            counters = self._counters[(channel, carrier)] = _Counters()
        second = int(now)
        if counters.second != second:
            counters.second = second
            counters.in_second = 0
        capacity = opts.capacity_of(carrier)
        retry_after = max(second + 1.0 - now, 0.001)
        seed = opts.seed
        temp_rate = opts.temporary_error_rate
        perm_rate = opts.permanent_error_rate
        suffixes = tuple(opts.invalid_suffixes)
        accepted = self._accepted
        results: list[Result] = []
        append = results.append
        for send, attempt in zip(sends, batch.attempts):
            sid = send.id
            pid = accepted.get(sid)
            if pid is not None:
                # Same id again (a retry after a crash or a lost answer): same answer, no second delivery.
                counters.duplicates += 1
                append(Accepted(pid))
                continue
            to = send.to
            a_perm, a_stop, a_stop_delay, _ = _uniforms(f"{seed}|addr|{to}")
            if (suffixes and to.endswith(suffixes)) or a_perm < perm_rate:
                counters.permanent += 1
                code = _PERMANENT_CODE.get(channel, "invalid_address")
                append(PermanentFailure(code, f"{to} does not exist on {where}", "all"))
                continue
            if capacity and counters.in_second >= capacity:
                counters.rate_limited += 1
                append(RateLimited(retry_after))
                continue
            counters.in_second += 1
            u_temp, u_dlr, u_dlr_delay, _ = _uniforms(f"{seed}|send|{sid}|{attempt}")
            if u_temp < temp_rate:
                counters.temporary += 1
                append(TemporaryFailure("carrier_congestion", f"{where} is congested, try again later"))
                continue
            pid = "sbx-" + blake2b(f"{seed}|pid|{sid}".encode(), digest_size=8).hexdigest()
            accepted[sid] = pid
            counters.accepted += 1
            if counters.first is None:
                counters.first = now
            counters.last = now
            self._stream(channel, carrier, send.origin_id, now)
            append(Accepted(pid))
            if opts.delivery_reports:
                delivered = u_dlr < opts.delivery_rate
                delay = _lognormal(opts.delivery_delay, opts.latency_sigma, u_dlr_delay)
                self._later(now + delay, self._report_delivery, (sid, delivered))
            if (channel == "sms" and a_stop < opts.stop_rate and send.origin in _MARKETING
                    and to not in self._stop_sent):
                self._stop_sent.add(to)
                delay = _lognormal(opts.stop_delay, opts.latency_sigma, a_stop_delay)
                self._later(now + delay, self._report_opt_out, (channel, to))
        if counters.in_second > counters.peak:
            counters.peak = counters.in_second
        return results

    def parse_delivery_report(
        self, payload: Any, *, url: Union[str, None] = None, headers: Union[Mapping[str, str], None] = None,
    ) -> Union[DeliveryReport, None]:
        """Read a sandbox webhook ``{"send_id": ..., "status": "DELIVRD"|"UNDELIV"}``."""
        if not isinstance(payload, Mapping) or "send_id" not in payload:
            raise DeliveryReportError("sandbox delivery report: expected an object with send_id and status")
        status = str(payload.get("status", ""))
        if status not in ("DELIVRD", "UNDELIV"):
            return None
        return DeliveryReport(send_id=str(payload["send_id"]), delivered=status == "DELIVRD",
                              code=status, detail=str(payload.get("detail", status)))

    # Introspection

    def provider_id(self, send_id: str) -> Union[str, None]:
        """The provider id this network gave ``send_id``, or None if it never accepted it."""
        return self._accepted.get(send_id)

    def accepted_total(self) -> int:
        """How many distinct sends the network accepted so far. O(1)."""
        return len(self._accepted)

    def traffic(self) -> SandboxTraffic:
        """A frozen snapshot of what the network saw, per (channel, carrier) and per stream."""
        carriers = [
            CarrierTraffic(channel=ch, carrier=ca, accepted=c.accepted, temporary_failures=c.temporary,
                           permanent_failures=c.permanent, rate_limited=c.rate_limited,
                           duplicates=c.duplicates, first_at=c.first, last_at=c.last,
                           peak_per_second=max(c.peak, c.in_second))
            for (ch, ca), c in sorted(self._counters.items())
        ]
        streams = [
            StreamTraffic(channel=ch, carrier=ca, origin_id=o, accepted=s[0], first_at=s[1], last_at=s[2],
                          active_seconds=s[3])
            for (ch, ca, o), s in sorted(self._streams.items())
        ]
        pending = sum(len(v) for v in self._buckets.values())
        return SandboxTraffic(carriers=carriers, streams=streams, delivery_reports=self._reports,
                              opt_outs=self._opt_outs, pending_reports=pending,
                              report_errors=self._report_errors, first_report_error=self._first_report_error)

    # Internals

    def _stream(self, channel: str, carrier: str, origin_id: str, now: float) -> None:
        key = (channel, carrier, origin_id)
        s = self._streams.get(key)
        if s is None:
            self._streams[key] = [1, now, now, 1]
        else:
            s[0] += 1
            if int(now) != int(s[2]):
                s[3] += 1
            s[2] = now

    def _later(self, due: float, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        """Run ``fn(*args)`` at ``due`` on the engine's clock, rounded up to the next tick.

        Reports due in the same tick share one timer, so a million accepted
        sends cost a timer per busy second, not one per send. Rounding up
        keeps a report from ever arriving before its send was answered, even
        with a zero delay on the real clock.
        """
        tick = self.options.report_tick
        key = (math.floor(due / tick) + 1) * tick
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.append((fn, args))
            return
        self._buckets[key] = [(fn, args)]
        self._timers[key] = call_at(self._clock, key, partial(self._fire, key))

    def _fire(self, key: float) -> None:
        self._timers.pop(key, None)
        for fn, args in self._buckets.pop(key, ()):
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - one bad report must not drop the rest of the tick
                self._report_errors += 1
                if self._first_report_error is None:
                    self._first_report_error = f"{type(exc).__name__}: {exc}"

    def _report_delivery(self, send_id: str, delivered: bool) -> None:
        if self._context is None:
            return
        self._reports += 1
        self._context.report_delivery(send_id, delivered, "DELIVRD" if delivered else "UNDELIV")

    def _report_opt_out(self, channel: str, address: str) -> None:
        if self._context is None:
            return
        self._opt_outs += 1
        self._context.report_opt_out(channel, address)
