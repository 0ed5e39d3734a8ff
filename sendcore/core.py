"""The sans-I/O core: a synchronous state machine that decides whether and when each send leaves.

Time is always passed in; the core knows no clock, no event loop and no I/O.
Its inputs are ``submit``, ``cancel``, ``advance``, ``record``/``record_error``,
``suppress``/``unsuppress`` and ``delivery_report``, each with ``now``; replaying
the same inputs rebuilds the same state (jitter and ramps are hashed from send
ids, never drawn from a shared random stream).

Data flow (DESIGN §2)::

    submit -> ledger + timing wheel -> (due) admission policies -> route queues
           -> (paced by GCRA) dispatch policies -> batches -> record -> outcomes
"""

from __future__ import annotations

import heapq
import math
import operator
from collections import deque
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import msgspec

from .errors import InputError, PendingLimitError
from .hashing import unit
from .history import History
from .intake import PHONE_CHANNELS, Intake, zone_ok
from .ledger import IN_FLIGHT, QUEUED, SCHEDULED, Entry
from .locale import LocaleResolver, period_bounds
from .phones import carrier_of
from .policies.base import Policy, Stage
from .policies.error_segment import ErrorSegment
from .policies.expiry import Expiry
from .policies.frequency_caps import FrequencyCaps
from .policies.jurisdictions import load_packs
from .policies.quiet_hours import QuietHours
from .policies.smart_sending import SmartSending
from .policies.spacing import Spacing
from .policies.suppression import Suppression
from .provider import DeliveryReport, ProviderSpec, spec_of
from .routes import Gcra, Route, RouteKey, limits_for
from .segments import sms_segments
from .send import (
    ORIGIN_PRIORITY,
    Accepted,
    Batch,
    CancelReport,
    Explanation,
    InvalidResult,
    Origin,
    Outcome,
    PermanentFailure,
    RateLimited,
    Reason,
    Rejection,
    Send,
    Stats,
    Status,
    SubmitReport,
    TemporaryFailure,
)
from .settings import Settings
from .wheel import PriorityWheel

__all__ = ["Checked", "Core", "PHONE_CHANNELS"]  # PHONE_CHANNELS: from intake, kept importable here

#: At most this many sends come out of the wheel per ``advance`` call, so one
#: call stays short on a real clock and the first batches leave early; the
#: rest leave on the next call, at once. Measured (20k sends due together,
#: real clock): 4,096 halves p50 lateness against 50,000 and is no slower.
ADMIT_CHUNK = 4096

DEAD = -1  # cancelled or finished; skipped where it still sits (lazy deletion)

_TRANSACTIONAL = Origin.TRANSACTIONAL
_SENT = Status.SENT
#: The longest a delivery report's ``retry_after`` may hold a route.
_MAX_REPORT_SLOWDOWN = 3600.0


def _storable_id(value: Any) -> bool:
    """A provider id the outcome can carry: a str that encodes as UTF-8 (no lone surrogate). O(1) for ASCII."""
    if type(value) is not str:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True




def _slot_up(t: float, slot: float) -> float:
    """The first multiple of ``slot`` at or after ``t`` (never before it, whatever the rounding)."""
    r = math.ceil(t / slot) * slot
    return r if r >= t else r + slot


class Checked:
    """What ``Core.check`` found: the valid sends (normalised, with their due instants) and the rejections.

    ``skip`` lists the indexes in ``sends`` of sends whose ``local_send_at``
    was already past with ``late_local = "skip"``. ``recheck`` makes
    ``accept`` look for duplicates again (set for a check taken earlier or
    read back from the journal).
    """

    __slots__ = ("sends", "rejected", "skip", "recheck", "epoch")

    def __init__(self, sends: list[tuple[Send, float, Optional[str]]], rejected: list[Rejection],
                 skip: list[int], recheck: bool = False, epoch: int = -1) -> None:
        self.sends = sends
        self.rejected = rejected
        self.skip = skip
        self.recheck = recheck
        #: The core's count of accepts when the check was made (-1: unknown, e.g. read back from the journal).
        self.epoch = epoch


class _ProviderState:
    __slots__ = ("spec", "in_flight", "waiting", "gcra")

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        # The provider-wide limit shared by all its routes (R16); unlimited if unset.
        rate = spec.total_rate or 0.0
        self.gcra = Gcra(rate, spec.total_burst or max(1, int(rate // 10)))
        self.in_flight = 0
        self.waiting: list[Route] = []


class _InFlight:
    __slots__ = ("batch", "entries", "route")

    def __init__(self, batch: Batch, entries: list[Entry], route: Route) -> None:
        self.batch = batch
        self.entries = entries
        self.route = route


class Core:
    """The scheduling state machine. See the module docstring and DESIGN §2/§4.

    ``providers`` are the specs of the providers sends may go to.
    ``resolve_timezone(send)`` and ``lookup_carrier(send)`` are the plugin
    hooks (None when no plugin implements them). ``policies`` are extra
    policy objects, run after the built-in ones at the stages they declare.
    """

    def __init__(
        self,
        settings: Union[Settings, None] = None,
        providers: Sequence[ProviderSpec] = (),
        *,
        resolve_timezone: Optional[Callable[[Send], Optional[str]]] = None,
        lookup_carrier: Optional[Callable[[Send], Optional[str]]] = None,
        policies: Sequence[Policy] = (),
    ) -> None:
        self.settings = settings = settings or Settings()
        self._providers: dict[str, _ProviderState] = {}
        for spec in providers:
            overrides = settings.providers.get(spec.name)
            if overrides is not None:  # the engine applies the same; a bare core gets them here
                spec = spec_of(spec, overrides)
            if spec.name in self._providers:
                raise ValueError(f"providers: two providers are named {spec.name!r}")
            self._providers[spec.name] = _ProviderState(spec)
        self._errors = 0
        self._locale = LocaleResolver(settings, self._guarded(resolve_timezone, zone_ok))
        self._lookup_carrier = self._guarded(lookup_carrier, lambda v: bool(v))
        self._retention = float(settings.retention)
        self._retention_max = settings.limits.retention_max
        #: Validation and normalisation of submitted items (R23), and the provider each goes to.
        self.intake = Intake(settings, {n: p.spec for n, p in self._providers.items()}, self._locale)
        self._max_pending = settings.max_pending
        self._retry = settings.retry
        # Coalesced wake-ups: the wheel slot of each origin (0 = the instant as given).
        d = settings.dispatch
        self._slot = {o: r if r > 0.001 else 0.0 for o in Origin
                      for r in (d.resolution(o.value),)}

        packs = load_packs(list(settings.jurisdictions))
        caps = list(settings.frequency_caps)
        for pack in packs:
            caps.extend(pack.frequency_caps())
        self.history = History(caps, settings.spacing)
        self.suppression = Suppression()
        self.error_segment = ErrorSegment(settings.error_segment)
        self.quiet_hours = QuietHours(settings, packs)
        #: Every policy in the order it runs; built-ins first.
        self.policies: list[Policy] = [
            Expiry(),
            self.suppression,
            self.error_segment,
            self.quiet_hours,
            SmartSending(settings, self.history),
            FrequencyCaps(self.history),
            Spacing(list(settings.spacing), self.history),
            *policies,
        ]
        self._admit = [p for p in self.policies if p.stages & Stage.ADMIT]
        self._dispatch = [p for p in self.policies if p.stages & Stage.DISPATCH]

        self._pending: dict[str, Entry] = {}
        # An entry's ``due`` is the instant it is held until, so far buckets need not pair them.
        self._wheel: PriorityWheel[Entry] = PriorityWheel(operator.attrgetter("due"))
        self._dead_in_wheel = 0
        self._routes: dict[RouteKey, Route] = {}
        self._ready: list[tuple[float, int, Route]] = []
        self._ready_seq = 0
        self._inflight: dict[int, _InFlight] = {}
        self._batch_seq = 0
        self._reservations: dict[str, Any] = {}
        self._finished: dict[str, Outcome] = {}
        self._finished_order: deque[str] = deque()
        # Sent messages within retention: where they went (address, route key), for delivery
        # reports that feed the error segment, suppression or the route's pace; and the
        # provider's message ids, which reports may name instead of the send id.
        self._sent_meta: dict[str, tuple[str, Route]] = {}
        # Built on the first report that names a provider id (the sandbox reports by send id).
        self._by_provider_id: Optional[dict[tuple[str, str], str]] = None
        self._unknown_reports = 0
        self._pushbacks: dict[str, int] = {}  # send id -> times rate limited (only sends pushed back)
        self._outcomes: list[Outcome] = []
        self._by_recipient: dict[str, Union[Entry, list[Entry]]] = {}
        self._by_origin: dict[str, list[Entry]] = {}
        self._origin_live: dict[str, int] = {}
        self._now = -math.inf
        self._submitted = 0
        self._rejected = 0
        self._epoch = 0  # accepts so far: tells ``accept`` whether a check may have gone stale
        # Counters keyed by the enum members (their .value is slow on hot paths).
        self._final: dict[Status, int] = {}
        self._reasons: dict[Reason, int] = {}
        self._events: dict[Status, int] = {}

    # ------------------------------------------------------------------ queries

    @property
    def pending(self) -> int:
        """Sends accepted and not yet final (scheduled, queued or in flight)."""
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Batches handed to providers whose results are not recorded yet."""
        return len(self._inflight)

    @property
    def providers(self) -> dict[str, ProviderSpec]:
        """The provider specs by name."""
        return {n: p.spec for n, p in self._providers.items()}

    def batch(self, batch_id: int) -> Optional[Batch]:
        """The in-flight batch ``batch_id``, or None if it is unknown or already recorded."""
        fl = self._inflight.get(batch_id)
        return fl.batch if fl is not None else None

    def outcome(self, send_id: str) -> Optional[Outcome]:
        """The final outcome of ``send_id`` within the retention window, else None."""
        return self._finished.get(send_id)

    def drain_outcomes(self) -> list[Outcome]:
        """Every outcome and event since the last call, in the order they happened."""
        out = self._outcomes
        self._outcomes = []
        return out

    def next_wakeup(self) -> Optional[float]:
        """The earliest instant ``advance`` may have work, or None if nothing waits.

        In-flight batches do not count: their ``record`` call wakes the core.
        """
        best = self._wheel.next_due()
        ready = self._ready
        while ready and ready[0][2].scheduled_at != ready[0][0]:
            heapq.heappop(ready)
        if ready and (best is None or ready[0][0] < best):
            best = ready[0][0]
        return best

    def stats(self) -> Stats:
        """A frozen snapshot of counts. O(pending): meant for reports, not hot loops."""
        where = [0, 0, 0]
        for e in self._pending.values():
            where[e.where] += 1
        return Stats(
            pending=len(self._pending),
            scheduled=where[SCHEDULED],
            queued=where[QUEUED],
            in_flight=where[IN_FLIGHT],
            submitted=self._submitted,
            rejected=self._rejected,
            final={k.value: v for k, v in self._final.items()},
            reasons={k.value: v for k, v in self._reasons.items()},
            events={k.value: v for k, v in self._events.items()},
            unknown_reports=self._unknown_reports,
            errors=self._errors,
        )

    def explain(self, send_id: str) -> Optional[Explanation]:
        """Where a send waits, which rule holds it and when it may leave (R20b); None if unknown."""
        e = self._pending.get(send_id)
        if e is None:
            o = self._finished.get(send_id)
            if o is None:
                return None
            return Explanation(send_id=send_id, state="final", rule=o.reason.value, outcome=o,
                               attempt=o.attempt, detail=o.detail)
        route = self._routes.get(e.route) if e.route else None
        if e.where == SCHEDULED:
            rule = e.hold or ("retry" if e.attempt else "send_at")
            return Explanation(send_id=send_id, state="scheduled", rule=rule, earliest=e.due,
                               attempt=e.attempt, route=route.name if route else None)
        if e.where == QUEUED and route is not None:
            return Explanation(send_id=send_id, state="queued", rule=self._route_rule(route, e),
                               earliest=self._queued_eta(route, e), route=route.name, attempt=e.attempt)
        return Explanation(send_id=send_id, state="in_flight", rule="provider", attempt=e.attempt,
                           route=route.name if route else None)

    def _route_rule(self, route: Route, e: Entry) -> str:
        if route.blocked_until > self._now:
            return route.blocked_by
        if self._providers[route.key[0]].in_flight >= self._providers[route.key[0]].spec.max_concurrency:
            return "max_concurrency"
        return "rate_limit"

    def _queued_eta(self, route: Route, e: Entry) -> float:
        """Earliest instant ``e`` may leave its route, counting the sends ahead of it."""
        ahead = 0.0
        for p in route.prios:
            for x in route.queues[p]:
                if x is e:
                    # Every unit ahead leaves at the route's rate before this one.
                    return max(self._now, route.gcra.eta(ahead + self._cost(e)), route.blocked_until)
                if x.where == QUEUED:
                    ahead += self._cost(x)
        return self._now

    # ------------------------------------------------------------------ submit

    def _guarded(self, hook: Optional[Callable[[Send], Optional[str]]],
                 valid: Callable[[str], bool]) -> Optional[Callable[[Send], Optional[str]]]:
        """A plugin hook that cannot break a send: raising or answering nonsense counts as "no answer".

        The next source then decides (the number's zones, phonenumbers' carrier);
        each such failure is counted in ``stats().errors``.
        """
        if hook is None:
            return None

        def call(send: Send) -> Optional[str]:
            try:
                got = hook(send)
            except Exception:
                self._errors += 1
                return None
            if got is None:
                return None
            if type(got) is not str or not valid(got):
                self._errors += 1
                return None
            return got

        return call

    @property
    def channels(self) -> frozenset[str]:
        """Every channel sends may use: the settings' and the providers'."""
        return self.intake.channels

    def channel_provider(self, channel: str) -> Union[str, InputError]:
        """The provider that sends of ``channel`` naming none go to, or the error saying why there is none.

        ``[channels.X] provider`` decides when set; otherwise the one provider
        serving the channel, where fallback providers (the sandbox) count only
        when no other provider serves it.
        """
        return self.intake.channel_provider(channel)

    def channel_problems(self) -> list[str]:
        """What makes sends of some channel fail to find a provider: ambiguity or a bad ``provider`` setting."""
        return self.intake.channel_problems()


    def submit(self, sends: Iterable[Any], now: float) -> SubmitReport:
        """Accept valid sends; report each invalid item with the field at fault (R23).

        Duplicates of pending ids, or of ids finished within the retention
        window, are rejected (R1). Raises ``PendingLimitError`` and accepts
        nothing if the valid items would exceed ``max_pending`` (R24).
        The same as ``accept(check(sends, now), now)``. Runtime complexity: O(n).
        """
        return self.accept(self.check(sends, now), now)

    def check(self, sends: Iterable[Any], now: float) -> Checked:
        """Validate and normalise a batch without changing any state: the first half of ``submit``.

        The engine journals the valid sends of the result before it calls
        ``accept``, so the core never acts on a submit that is not on disk.
        Raises ``PendingLimitError`` like ``submit``.
        """
        pending, finished = self._pending, self._finished
        rejected: list[Rejection] = []
        ok: list[tuple[Send, float, Optional[str]]] = []
        seen: set[str] = set()
        normalise = self.intake.normalise
        now = max(now, self._now)
        for i, item in enumerate(sends):
            try:
                s, due, late = normalise(item, now)
            except InputError as exc:
                sid = getattr(item, "id", None) if not isinstance(item, dict) else item.get("id")
                rejected.append(Rejection(i, sid if isinstance(sid, str) else None, str(exc)))
                continue
            sid = s.id
            if sid in pending or sid in seen:
                rejected.append(Rejection(i, sid, "id: duplicate of a pending send"))
                continue
            if sid in finished:
                rejected.append(Rejection(i, sid, f"id: duplicate of a send finished as {finished[sid].status.value}"))
                continue
            seen.add(sid)
            ok.append((s, due, late))
        if len(pending) + len(ok) > self._max_pending:
            raise PendingLimitError(len(pending), len(ok), self._max_pending)
        return Checked(ok, rejected, [i for i, (_, _, late) in enumerate(ok) if late == "skip"], epoch=self._epoch)

    def accept(self, checked: Checked, now: float) -> SubmitReport:
        """Take the sends ``check`` found valid: the second half of ``submit``.

        Ids that became duplicates since ``check`` (another submit in between)
        are rejected here, and ``PendingLimitError`` is raised if the batch no
        longer fits; replaying the same calls gives the same answers.
        """
        if now > self._now:
            self._now = now
        now = self._now
        pending, finished = self._pending, self._finished
        rejected = list(checked.rejected)
        ok = checked.sends
        skip = set(checked.skip) if checked.skip else ()
        # Only an accept since the check can have made one of these ids a duplicate.
        if checked.recheck and checked.epoch != self._epoch:
            kept = []
            for i, item in enumerate(ok):
                sid = item[0].id
                if sid in pending or sid in finished:
                    what = "a pending send" if sid in pending else f"a send finished as {finished[sid].status.value}"
                    rejected.append(Rejection(-1, sid, f"id: duplicate of {what}"))
                elif i in skip:
                    kept.append((item[0], item[1], "skip"))
                else:
                    kept.append((item[0], item[1], None))
            ok = kept
        elif skip:
            ok = [(s, due, "skip" if i in skip else None) for i, (s, due, _) in enumerate(ok)]
        if len(pending) + len(ok) > self._max_pending:
            raise PendingLimitError(len(pending), len(ok), self._max_pending)
        checked.recheck = True  # a second accept of the same check must see its own sends as duplicates
        self._epoch += 1
        self._submitted += len(ok)
        self._rejected += len(rejected)
        resolve = self._locale.resolve
        insert = self._wheel.insert
        by_rec, by_origin, origin_live = self._by_recipient, self._by_origin, self._origin_live
        prio_of = ORIGIN_PRIORITY
        slots = self._slot
        for s, due, late in ok:
            prio = s.priority if s.priority is not None else prio_of[s.origin]
            slot = slots[s.origin]
            if slot and due > now:
                due = _slot_up(due, slot)
            e = Entry(send=s, due=due, prio=prio, locale=resolve(s))
            pending[s.id] = e
            rec = s.recipient
            got = by_rec.get(rec)
            if got is None:
                by_rec[rec] = e
            elif type(got) is list:
                got.append(e)
            else:
                by_rec[rec] = [got, e]
            oid = s.origin_id
            if oid:
                lst = by_origin.get(oid)
                if lst is None:
                    by_origin[oid] = [e]
                    origin_live[oid] = 1
                else:
                    lst.append(e)
                    origin_live[oid] += 1
            if late == "skip":
                self._finish(e, Status.SKIPPED, Reason.LATE_LOCAL, now, "local_send_at already past")
                continue
            insert(prio, due, e)
        return SubmitReport(accepted=len(ok), rejected=rejected, accepted_ids=[s.id for s, _, _ in ok])

    # ------------------------------------------------------------------ cancel

    def cancel(
        self,
        now: float,
        *,
        ids: Optional[Iterable[str]] = None,
        recipient: Optional[str] = None,
        origin_id: Optional[str] = None,
    ) -> CancelReport:
        """Cancel pending sends by id, or in bulk by recipient and/or origin id (R20).

        Sends already handed to a provider are reported ``too_late``.
        Runtime complexity: O(k) for the k sends named or indexed.
        """
        if now > self._now:
            self._now = now
        cancelled: list[str] = []
        too_late: list[str] = []
        unknown: list[str] = []
        targets: list[Entry] = []
        if ids is not None:
            if isinstance(ids, str):
                ids = [ids]
            for sid in ids:
                e = self._pending.get(sid)
                if e is None:
                    (too_late if sid in self._finished else unknown).append(sid)
                else:
                    targets.append(e)
        if recipient is not None or origin_id is not None:
            if recipient is not None:
                got = self._by_recipient.get(recipient)
                pool = [] if got is None else (got if type(got) is list else [got])
            else:
                pool = self._by_origin.get(origin_id, [])
            for e in pool:
                if e.where == DEAD:
                    continue
                s = e.send
                if recipient is not None and s.recipient != recipient:
                    continue
                if origin_id is not None and s.origin_id != origin_id:
                    continue
                targets.append(e)
        for e in targets:
            if e.where == IN_FLIGHT:
                too_late.append(e.send.id)
            elif e.where != DEAD:
                if e.where == SCHEDULED:
                    self._dead_in_wheel += 1
                cancelled.append(e.send.id)
                self._finish(e, Status.CANCELLED, Reason.CANCELLED, now)
        if self._dead_in_wheel > 10_000 and self._dead_in_wheel * 2 > len(self._pending):
            self._wheel.prune(lambda x: x.where != DEAD)
            self._dead_in_wheel = 0
        return CancelReport(cancelled=cancelled, too_late=too_late, unknown=unknown)

    # ------------------------------------------------------------------ suppression & reports

    def suppress(self, channel: str, address: str, scope: str = "marketing", now: float = 0.0) -> None:
        """Add ``address`` to the suppression list of ``channel`` (R14)."""
        self.suppression.add(channel, address, scope)  # type: ignore[arg-type]

    def unsuppress(self, channel: str, address: str, now: float = 0.0) -> bool:
        """Remove ``address`` from the suppression list of ``channel``."""
        return self.suppression.remove(channel, address)

    def delivery_report(self, send_id: str, delivered: bool, now: float, detail: str = "") -> bool:
        """Add a ``delivered``/``undelivered`` event to a sent message (R21); False if unknown."""
        return self.delivery(DeliveryReport(send_id=send_id, delivered=delivered, detail=detail), "", now) is not None

    def delivery_target(self, report: DeliveryReport, provider: str) -> Union[Outcome, None]:
        """The ``sent`` outcome ``report`` is about (by send id or by ``provider``'s message id), or None."""
        sid = report.send_id
        if not sid and report.provider_id:
            index = self._by_provider_id
            if index is None:
                index = self._by_provider_id = {
                    (o.provider, o.provider_id): k for k, o in self._finished.items()
                    if o.provider_id and o.status is _SENT and k in self._sent_meta}
            sid = index.get((provider, report.provider_id), "")
        o = self._finished.get(sid) if sid else None
        if o is None or o.status is not _SENT or (provider and o.provider != provider):
            return None
        return o

    def delivery(self, report: DeliveryReport, provider: str, now: float) -> Union[Outcome, None]:
        """Apply a delivery report of ``provider`` ("" = any) to the sent message it names (R21).

        Adds a ``delivered`` or ``undelivered`` event and returns it. An
        undelivered report may put the address in the error segment
        (``temporary``, R13), suppress it (``suppress``, R14) or slow the route
        the message took (``retry_after``). A report naming no sent message
        within retention is counted (``stats().unknown_reports``) and None is
        returned.
        """
        o = self.delivery_target(report, provider)
        if o is None:
            # A count for stats only: unknown reports are not journaled, so not part of the replayed state.
            self._unknown_reports += 1
            return None
        status = Status.DELIVERED if report.delivered else Status.UNDELIVERED
        detail = f"{report.code}: {report.detail}" if report.code and report.detail != report.code else \
            (report.detail or report.code)
        event = Outcome(send_id=o.send_id, status=status, reason=Reason.DELIVERY_REPORT, at=now, attempt=o.attempt,
                        provider=o.provider, provider_id=o.provider_id, detail=detail, channel=o.channel,
                        recipient=o.recipient)
        self._event(event)
        meta = self._sent_meta.get(o.send_id)
        if not report.delivered and meta is not None:
            to, route = meta
            if report.temporary:
                self.error_segment.note_error(o.channel, to, now)
            if report.suppress is not None:
                self.suppression.add(o.channel, to, report.suppress)
            wait = report.retry_after
            if wait is not None and wait == wait and wait > 0:
                until = now + min(float(wait), _MAX_REPORT_SLOWDOWN)
                if until > route.blocked_until:
                    route.blocked_until = until
                    route.blocked_by = "rate_limited"
        return event

    # ------------------------------------------------------------------ verdicts (called by policies)

    def skip(self, entry: Entry, reason: Reason, detail: str = "") -> None:
        """Policy verdict: end ``entry`` as skipped."""
        self._finish(entry, Status.SKIPPED, reason, self._now, detail)

    def defer(self, entry: Entry, until: float, reason: Reason, detail: str = "") -> None:
        """Policy verdict: hold ``entry`` until ``until``; expire it if that is too late (R15)."""
        slot = self._slot[entry.send.origin]
        if slot:
            until = _slot_up(until, slot)
        exp = entry.send.expires_at
        if exp is not None and until >= exp:
            self._finish(entry, Status.SKIPPED, Reason.EXPIRED, self._now, f"held by {reason.value} past expires_at")
            return
        entry.where = SCHEDULED
        entry.due = until
        entry.hold = reason.value
        self._wheel.insert(entry.prio, until, entry)
        s = entry.send
        self._event(Outcome(send_id=s.id, status=Status.DEFERRED, reason=reason, at=self._now,
                            attempt=entry.attempt, detail=detail, channel=s.channel,
                            recipient=s.recipient, until=until))

    # ------------------------------------------------------------------ advance

    def advance(self, now: float) -> list[Batch]:
        """Move time to ``now``: admit due sends, pace routes, return batches to send now.

        Runtime complexity: O(k) for the k sends that move, plus O(log R) per
        route woken.
        """
        if now > self._now:
            self._now = now
        now = self._now
        order = self._finished_order
        if order and (self._finished[order[0]].at <= now - self._retention
                      or len(self._finished) > self._retention_max):
            self._expire_retention(now)
        due = self._wheel.pop_due(now, ADMIT_CHUNK)
        if due:
            live = [e for e in due if e.where == SCHEDULED]
            self._dead_in_wheel -= len(due) - len(live)
            if self._dead_in_wheel < 0:
                self._dead_in_wheel = 0
            for p in self._admit:
                if not live:
                    break
                live = self._policy(p, live, now, Stage.ADMIT, SCHEDULED)
            if live:
                self._enqueue(live, now)
        return self._dispatch_ready(now)

    def _policy(self, p: Policy, entries: list[Entry], now: float, stage: Stage, where: int) -> list[Entry]:
        """``p.check`` on a chunk; if it raises, again send by send, so only the sends it fails on fail.

        A send on which the policy raises ends ``failed`` / ``error`` with the
        exception in ``detail``, counted in ``stats().errors``.
        """
        try:
            return p.check(entries, now, stage, self)
        except Exception:
            pass
        out: list[Entry] = []
        for e in entries:
            # Sends the failed call already decided (ended, deferred) are not decided again.
            if e.where != where or (where == SCHEDULED and e.due > now):
                continue
            try:
                out.extend(p.check([e], now, stage, self))
            except Exception as exc:
                self._errors += 1
                self._finish(e, Status.FAILED, Reason.ERROR, now,
                             f"policy {getattr(p, 'name', type(p).__name__)!r} raised {type(exc).__name__}: {exc}")
        return out

    def _route_of(self, e: Entry) -> Route:
        s = e.send
        key = e.route
        if key is None:
            provider = self.intake.provider_for(s)
            if s.channel in PHONE_CHANNELS:
                carrier = s.carrier
                if carrier is None and self._lookup_carrier is not None:
                    carrier = self._lookup_carrier(s)
                if carrier is None:
                    carrier = carrier_of(s.to) or "unknown"
            else:
                carrier = s.carrier or ""
            key = e.route = (provider, s.channel, s.sender or "", carrier)
        route = self._routes.get(key)
        if route is None:
            spec = self._providers[key[0]].spec
            limit = limits_for(self.settings.routes, key[0], key[2] or "*", key[3] or "*")
            route = self._routes[key] = Route(key, limit, spec.rate, spec.burst, spec.daily_cap)
            route.provider = self._providers[key[0]]
            route.is_sms = key[1] == "sms"
        return route

    def _enqueue(self, entries: list[Entry], now: float) -> None:
        route_of = self._route_of
        touched: dict[int, Route] = {}
        for e in entries:
            try:
                route = route_of(e)
            except Exception as exc:  # a carrier hook that raised: this send fails, not the engine
                self._errors += 1
                self._finish(e, Status.FAILED, Reason.ERROR, now, f"choosing the route raised "
                             f"{type(exc).__name__}: {exc}")
                continue
            route.push(e.prio, e)
            e.where = QUEUED
            e.hold = None
            touched[id(route)] = route
        for route in touched.values():
            self._schedule(route, now)

    def _schedule(self, route: Route, at: float) -> None:
        if route.scheduled_at is not None and route.scheduled_at <= at:
            return
        route.scheduled_at = at
        self._ready_seq += 1
        heapq.heappush(self._ready, (at, self._ready_seq, route))

    def _cost(self, e: Entry) -> int:
        return sms_segments(e.send.body) if e.send.channel == "sms" else 1

    def _dispatch_ready(self, now: float) -> list[Batch]:
        batches: list[Batch] = []
        ready = self._ready
        while ready and ready[0][0] <= now:
            at, _, route = heapq.heappop(ready)
            if route.scheduled_at != at:
                continue
            route.scheduled_at = None
            self._drain_route(route, now, batches)
        return batches

    def _drain_route(self, route: Route, now: float, batches: list[Batch]) -> None:
        """Form batches from ``route`` while pacing, concurrency and caps allow."""
        if not route.size:
            return
        pstate = route.provider
        spec = pstate.spec
        if pstate.in_flight >= spec.max_concurrency:
            if route not in pstate.waiting:
                pstate.waiting.append(route)
            return
        if route.blocked_until > now:
            self._schedule(route, route.blocked_until)
            return
        if route.daily_cap and now >= route.day_end:
            _, route.day_end = period_bounds(now, route.daily_zone, "day")
            route.day_count = 0
        gcra = route.gcra
        is_sms = route.is_sms
        max_batch = spec.max_batch
        dispatch = self._dispatch
        reserve_many = self.history.reserve_many
        reservations = self._reservations
        taken: list[Entry] = []
        shared = pstate.gcra if pstate.gcra.interval else None
        while route.size:
            budget = gcra.available(now)
            if shared is not None:
                budget = min(budget, shared.available(now))
            if route.daily_cap:
                budget = min(budget, route.daily_cap - route.day_count)
                if budget <= 0:
                    route.blocked_until = route.day_end
                    route.blocked_by = "daily_cap"
                    break
            if budget < 1:
                break
            for prio in route.prios:
                q = route.queues[prio]
                if q:
                    break
            else:
                break
            room = max_batch - len(taken)
            cands: list[Entry] = []
            costs: list[int] = []
            seen: set[str] = set()
            while q and len(cands) < room:
                e = q[0]
                if e.where != QUEUED:
                    q.popleft()
                    route.size -= 1
                    continue
                if is_sms:
                    cost = sms_segments(e.send.body)
                    if cost > budget and not (not cands and self._fits_whole(route, shared, cost, now)):
                        break
                    costs.append(cost)
                elif budget < 1:
                    break
                else:
                    cost = 1
                rec = e.send.recipient
                if rec in seen:
                    if is_sms:
                        costs.pop()
                    break  # R7: the second send to a recipient is decided after the first reserves
                seen.add(rec)
                q.popleft()
                cands.append(e)
                budget -= cost
            route.size -= len(cands)
            if not cands:
                break
            ok = cands
            for p in dispatch:
                if not ok:
                    break
                ok = self._policy(p, ok, now, Stage.DISPATCH, QUEUED)
            if ok:
                # Every send of the chunk leaves at ``now``: pace the chunk's units at once.
                if not is_sms:
                    units = len(ok)
                elif len(ok) == len(cands):
                    units = sum(costs)
                else:
                    kept = set(map(id, ok))
                    units = sum(c for x, c in zip(cands, costs) if id(x) in kept)
                gcra.take(now, units)
                if shared is not None:
                    shared.take(now, units)
                route.day_count += units
                route.sent_units += units
                for e in ok:
                    e.where = IN_FLIGHT
                    e.attempt += 1
                reserve_many(ok, now, reservations)
                taken.extend(ok)
                if len(taken) >= max_batch:
                    self._emit(route, taken, batches)
                    taken = []
                    if pstate.in_flight >= spec.max_concurrency:
                        if route.size and route not in pstate.waiting:
                            pstate.waiting.append(route)
                        return
        if taken:
            self._emit(route, taken, batches)
            if pstate.in_flight >= spec.max_concurrency:
                if route.size and route not in pstate.waiting:
                    pstate.waiting.append(route)
                return
        if route.size:
            self._schedule(route, self._next_ready(route, now))

    def _fits_whole(self, route: Route, shared: Optional[Gcra], cost: int, now: float) -> bool:
        """Whether an SMS of ``cost`` segments, more than the budget, may leave whole now (R16).

        A send larger than a bucket's burst leaves whole once that bucket is
        full (``Gcra.ready_at``), so one long SMS never blocks a route. Each
        bucket is asked on its own: the route's (with its daily cap, as
        before) and the provider-wide one. Asking only the route's burst let a
        long SMS on a route with a larger (or no) burst than the provider's
        ``total_burst`` never fit while ``_next_ready`` said "now", and
        ``advance`` looped on that route forever (found by the fuzz test, tests/fuzz_engine.py).
        """
        own = route.gcra.available(now)
        if route.daily_cap:
            own = min(own, route.daily_cap - route.day_count)
        if own < min(cost, route.burst_units):
            return False
        if shared is None:
            return True
        # +1e-9: depth / interval may land an ulp above the whole burst.
        return shared.available(now) + 1e-9 >= min(cost, shared.depth / shared.interval)

    def _next_ready(self, route: Route, now: float) -> float:
        """When ``route`` can next fill a batch without wasting bucket capacity."""
        if route.blocked_until > now:
            return route.blocked_until
        gcra = route.gcra
        shared = route.provider.gcra
        prio = route.head_prio()
        head = route.queues[prio][0] if prio is not None else None
        first = self._cost(head) if head is not None else 1
        # The provider-wide bucket, shared with other routes, is waited on unit by unit.
        at = shared.ready_at(first) if shared.interval else now
        if gcra.interval == 0.0:
            return max(now, at)
        # Wait for a full batch (or a full bucket, whichever is smaller) so a
        # fast route is not woken for every single unit; never past the
        # moment the bucket would overflow, so no capacity is lost.
        units = max(first, min(route.size, self._providers[route.key[0]].spec.max_batch,
                               int(gcra.depth / gcra.interval)))
        return max(now, at, gcra.ready_at(units), gcra.ready_at(first))

    def _emit(self, route: Route, entries: list[Entry], batches: list[Batch]) -> None:
        self._batch_seq += 1
        key = route.key
        batch = Batch(id=self._batch_seq, provider=key[0], channel=key[1], sender=key[2], carrier=key[3],
                      sends=[e.send for e in entries], attempts=[e.attempt for e in entries])
        self._inflight[batch.id] = _InFlight(batch, entries, route)
        self._providers[key[0]].in_flight += 1
        batches.append(batch)

    # ------------------------------------------------------------------ record

    def record(self, batch: Batch, results: Sequence[Any], now: float) -> None:
        """Apply a provider's answer to ``batch``: one result per send, in order (R18).

        A result count that differs from the batch size is a temporary failure
        of the whole batch. Runtime complexity: O(len(batch)).
        """
        if now > self._now:
            self._now = now
        fl = self._inflight.get(batch.id)
        if fl is None:
            raise ValueError(f"batch: unknown or already recorded batch id {batch.id}")
        try:
            count = len(results)
        except TypeError:
            self.record_error(batch, f"provider {batch.provider!r} returned {type(results).__name__}, "
                                     "not a list of results", now)
            return
        if count != len(fl.entries):
            self.record_error(batch, f"provider {batch.provider!r} returned {count} results for a batch of "
                                     f"{len(fl.entries)}; send() must return one result per send, in order", now)
            return
        del self._inflight[batch.id]
        self._release_slot(fl, now)
        now = self._now
        provider = batch.provider
        others = self._record_accepted(fl.entries, results, now, provider, fl.route)
        if others:
            self._record_others(fl, others, now, provider)
        elif fl.route.size:
            self._schedule(fl.route, self._next_ready(fl.route, now))

    def _record_accepted(self, entries: list[Entry], results: Sequence[Any], now: float,
                         provider: str, route: Route) -> list[tuple[Entry, Any]]:
        """Finish every accepted send of a batch in one tight loop; return the other (entry, result) pairs.

        The same bookkeeping as ``_finish`` for status ``sent``, inlined: this
        is the path almost every send takes.
        """
        others: list[tuple[Entry, Any]] = []
        pending, finished, order, outcomes = self._pending, self._finished, self._finished_order, self._outcomes
        by_rec, reservations = self._by_recipient, self._reservations
        sent, accepted_reason = _SENT, Reason.ACCEPTED
        sent_meta, by_pid, pushbacks = self._sent_meta, self._by_provider_id, self._pushbacks
        n = 0
        for e, r in zip(entries, results):
            # A provider_id that is no string (a provider bug) is not applied as sent: the outcome would
            # carry it, and with the journal on the same answer is retried (it cannot be stored), so it is
            # retried here too (found by the fuzz test, tests/fuzz_engine.py).
            if type(r) is not Accepted or e.where == DEAD or not _storable_id(r.provider_id):
                others.append((e, r))
                continue
            s = e.send
            sid = s.id
            e.where = DEAD
            del pending[sid]
            if e.reserved:
                reservations.pop(sid, None)
            if pushbacks:
                pushbacks.pop(sid, None)
            pid = r.provider_id
            o = Outcome(send_id=sid, status=sent, reason=accepted_reason, at=now, attempt=e.attempt,
                        provider=provider, provider_id=pid, channel=s.channel, recipient=s.recipient)
            outcomes.append(o)
            finished[sid] = o
            order.append(sid)
            sent_meta[sid] = (s.to, route)
            if pid and by_pid is not None:
                by_pid[(provider, pid)] = sid
            n += 1
            rec = s.recipient
            got = by_rec.get(rec)
            if got is e:
                del by_rec[rec]
            elif got is not None:
                self._unindex_recipient(rec, got, e)
            oid = s.origin_id
            if oid:
                self._unindex_origin(oid)
        if n:
            self._final[sent] = self._final.get(sent, 0) + n
        return others

    def _unindex_recipient(self, rec: str, got: Any, e: Entry) -> None:
        if type(got) is list:
            try:
                got.remove(e)
            except ValueError:
                pass
            if len(got) == 1:
                self._by_recipient[rec] = got[0]

    def _unindex_origin(self, oid: str) -> None:
        # Origin lists drop finished entries lazily, when they outnumber live ones.
        live = self._origin_live[oid] - 1
        if live == 0:
            del self._origin_live[oid], self._by_origin[oid]
        else:
            self._origin_live[oid] = live
            lst = self._by_origin[oid]
            if len(lst) > 2 * live + 16:
                lst[:] = [x for x in lst if x.where != DEAD]

    def _record_others(self, fl: _InFlight, pairs: list[tuple[Entry, Any]], now: float, provider: str) -> None:
        retry = self._retry_or_fail
        for e, r in pairs:
            if e.where == DEAD:
                continue
            try:
                self._record_other(fl, e, r, now, provider)
            except Exception as exc:  # an answer that cannot be applied: that send is retried
                self._errors += 1
                if e.where == IN_FLIGHT:
                    retry(e, now, f"invalid {type(r).__name__} from provider {provider!r}: "
                                  f"{type(exc).__name__}: {exc}")
        if fl.route.size:
            self._schedule(fl.route, self._next_ready(fl.route, now))

    def _record_other(self, fl: _InFlight, e: Entry, r: Any, now: float, provider: str) -> None:
        t = type(r)
        if t is TemporaryFailure:
            s = e.send
            detail = f"{r.code}: {r.message}" if r.code else r.message
            if type(detail) is not str:
                raise TypeError(f"code and message must be strings, got {r.code!r}, {r.message!r}")
            if r.address_fault:
                self.error_segment.note_error(s.channel, s.to, now)
            self._retry_or_fail(e, now, detail)
        elif t is PermanentFailure:
            detail = f"{r.code}: {r.message}" if r.code else r.message
            if r.suppress not in (None, "marketing", "all") or type(detail) is not str:
                raise ValueError(f"suppress must be None, 'marketing' or 'all' and code/message strings, "
                                 f"got suppress={r.suppress!r}")
            if r.suppress is not None:
                self.suppression.add(e.send.channel, e.send.to, r.suppress)
            self._finish(e, Status.FAILED, Reason.PERMANENT_FAILURE, now, detail, provider)
        elif t is RateLimited:
            self._pushed_back(fl.route, e, self._retry_after(r.retry_after), now)
        elif t is Accepted:
            self._retry_or_fail(e, now, f"invalid Accepted from provider {provider!r}: provider_id must be "
                                        f"valid text, got {type(r.provider_id).__name__} {r.provider_id!r:.80}")
        else:
            self._retry_or_fail(e, now, r.detail if t is InvalidResult else
                                f"invalid result {type(r).__name__} from provider {provider!r}")

    def record_error(self, batch: Batch, error: str, now: float) -> None:
        """The provider call raised or timed out: a temporary failure of every send (R18)."""
        if now > self._now:
            self._now = now
        fl = self._inflight.pop(batch.id, None)
        if fl is None:
            raise ValueError(f"batch: unknown or already recorded batch id {batch.id}")
        self._release_slot(fl, now)
        for e in fl.entries:
            self._retry_or_fail(e, self._now, error)

    def _release_slot(self, fl: _InFlight, now: float) -> None:
        pstate = self._providers[fl.batch.provider]
        pstate.in_flight -= 1
        if pstate.waiting:
            waiting, pstate.waiting = pstate.waiting, []
            for route in waiting:
                self._schedule(route, max(now, self._now))

    def _retry_after(self, value: Any) -> float:
        """A provider's ``retry_after``, clamped into the retry settings' bounds (NaN counts as the minimum)."""
        r = self._retry
        low, high = float(r.min_retry_after), float(r.max_retry_after)
        if type(value) is not float and type(value) is not int:
            raise TypeError(f"RateLimited.retry_after must be a number of seconds, got {value!r}")
        if not value >= low:  # also NaN
            return low
        return high if value > high else float(value)

    def _pushed_back(self, route: Route, e: Entry, retry_after: float, now: float) -> None:
        """``rate_limited``: slow the whole route and put the send back at its head (R18).

        A pushback is not an attempt, but pushbacks are counted: past
        ``retry.max_rate_limited`` the send fails, and one that would wait past
        its ``expires_at`` expires.
        """
        s = e.send
        count = self._pushbacks.get(s.id, 0) + 1
        if count > self._retry.max_rate_limited:
            self._finish(e, Status.FAILED, Reason.MAX_ATTEMPTS, now,
                         f"rate limited {count - 1} times (retry.max_rate_limited)")
            return
        until = now + retry_after
        if s.expires_at is not None and until >= s.expires_at:
            self._finish(e, Status.SKIPPED, Reason.EXPIRED, now, "rate limited past expires_at")
            return
        self._pushbacks[s.id] = count
        if until > route.blocked_until:
            route.blocked_until = until
            route.blocked_by = "rate_limited"
        e.attempt -= 1
        e.where = QUEUED
        route.push_front(e.prio, [e])
        self._event(Outcome(send_id=s.id, status=Status.DEFERRED, reason=Reason.RATE_LIMIT, at=now,
                            attempt=e.attempt, channel=s.channel, recipient=s.recipient,
                            until=now + retry_after))

    def backoff(self, send_id: str, attempt: int) -> float:
        """Delay before retry ``attempt`` + 1: exponential, capped, with hashed jitter (R18)."""
        r = self._retry
        delay = min(float(r.max_delay), float(r.base_delay) * (2 ** (attempt - 1)))
        return delay * (1.0 - r.jitter * unit(f"{send_id}:{attempt}"))

    def _retry_or_fail(self, e: Entry, now: float, detail: str) -> None:
        s = e.send
        if e.attempt >= self._retry.max_attempts:
            self._finish(e, Status.FAILED, Reason.MAX_ATTEMPTS, now, detail)
            return
        until = now + self.backoff(s.id, e.attempt)
        slot = self._slot[s.origin]
        if slot:
            until = _slot_up(until, slot)
        if s.expires_at is not None and until >= s.expires_at:
            self._finish(e, Status.SKIPPED, Reason.EXPIRED, now, f"retry would pass expires_at ({detail})")
            return
        e.where = SCHEDULED
        e.due = until
        e.hold = "retry"
        self._wheel.insert(e.prio, until, e)
        self._event(Outcome(send_id=s.id, status=Status.RETRYING, reason=Reason.TEMPORARY_FAILURE, at=now,
                            attempt=e.attempt, detail=detail, channel=s.channel, recipient=s.recipient,
                            until=until))

    # ------------------------------------------------------------------ outcomes

    def _event(self, o: Outcome) -> None:
        self._outcomes.append(o)
        k = o.status
        self._events[k] = self._events.get(k, 0) + 1

    def _finish(self, e: Entry, status: Status, reason: Reason, now: float, detail: str = "",
                provider: str = "", provider_id: str = "") -> None:
        s = e.send
        sid = s.id
        if e.where == DEAD:
            return
        e.where = DEAD
        if self._pushbacks:
            self._pushbacks.pop(sid, None)
        del self._pending[sid]
        if e.reserved:
            token = self._reservations.pop(sid, None)
            if status is not Status.SENT and token is not None:
                self.history.release(s, token)
        o = Outcome(send_id=sid, status=status, reason=reason, at=now, attempt=e.attempt, provider=provider,
                    provider_id=provider_id, detail=detail, channel=s.channel, recipient=s.recipient)
        self._outcomes.append(o)
        self._finished[sid] = o
        self._finished_order.append(sid)
        final = self._final
        final[status] = final.get(status, 0) + 1
        if status is not _SENT:
            self._reasons[reason] = self._reasons.get(reason, 0) + 1
        rec = s.recipient
        got = self._by_recipient.get(rec)
        if got is e:
            del self._by_recipient[rec]
        elif got is not None:
            self._unindex_recipient(rec, got, e)
        if s.origin_id:
            self._unindex_origin(s.origin_id)

    def _expire_retention(self, now: float) -> None:
        """Forget finished outcomes older than ``retention``, and the oldest beyond ``limits.retention_max``."""
        cutoff = now - self._retention
        order, finished, most = self._finished_order, self._finished, self._retention_max
        while order:
            sid = order[0]
            o = finished.get(sid)
            if o is not None and o.at > cutoff and len(finished) <= most:
                break
            order.popleft()
            if o is not None:
                del finished[sid]
                if self._sent_meta.pop(sid, None) is not None and o.provider_id and self._by_provider_id:
                    self._by_provider_id.pop((o.provider, o.provider_id), None)

    # ------------------------------------------------------------------ recovery (the journal, R22)

    def requeue_in_flight(self, now: float) -> int:
        """Put every batch handed to a provider but never answered back at the head of its route.

        Called once after recovery: those sends may or may not have reached
        the provider before the crash, so they leave again with the same id
        and attempt number (at-least-once; the id is the provider's
        idempotency key). Returns how many sends were put back.
        """
        if now > self._now:
            self._now = now
        now = self._now
        count = 0
        for bid in sorted(self._inflight):
            fl = self._inflight.pop(bid)
            self._release_slot(fl, now)
            back = [e for e in fl.entries if e.where == IN_FLIGHT]
            for e in back:
                e.attempt -= 1
                e.where = QUEUED
                s = e.send
                self._event(Outcome(send_id=s.id, status=Status.RETRYING, reason=Reason.TEMPORARY_FAILURE, at=now,
                                    attempt=e.attempt, channel=s.channel, recipient=s.recipient, until=now,
                                    detail="in flight when the engine stopped; sent again with the same id"))
            if back:
                for e in reversed(back):
                    fl.route.push_front(e.prio, [e])
                self._schedule(fl.route, now)
            count += len(back)
        return count

    #: Fields of the core that change as it runs; everything else derives from settings and providers.
    _STATE_FIELDS = (
        "_pending", "_wheel", "_dead_in_wheel", "_routes", "_ready", "_ready_seq", "_inflight", "_batch_seq",
        "_reservations", "_finished", "_finished_order", "_by_recipient", "_by_origin", "_origin_live",
        "_now", "_submitted", "_rejected", "_final", "_reasons", "_events", "_epoch", "_sent_meta",
        "_pushbacks",
    )

    def export_state(self) -> dict[str, Any]:
        """Every piece of state the core changes as it runs, by reference (no copy).

        The journal pickles it in a forked child for a snapshot; ``import_state``
        takes it back, also into a core built with other settings.
        """
        state: dict[str, Any] = {f: getattr(self, f) for f in self._STATE_FIELDS}
        state["providers"] = self._providers
        h = self.history
        state["history"] = (list(h.caps), h.last_marketing, h.last_any, h.cap_logs)
        state["suppression"] = self.suppression.entries
        state["error_segment"] = self.error_segment.errors
        state["outcomes"] = self._outcomes
        return state

    def import_state(self, state: dict[str, Any]) -> None:
        """Take over ``state`` from ``export_state`` (of this or an older core with other settings).

        Routes keep their queues and pacing state but take the limits the
        current settings give them; frequency-cap logs carry over for the cap
        rules that are unchanged; a provider that is gone while sends wait for
        it is a ``ValueError`` naming it.
        """
        for f in self._STATE_FIELDS:
            if f in state:
                setattr(self, f, state[f])
        self._outcomes = list(state.get("outcomes", ()))
        self._by_provider_id = None  # rebuilt from the finished outcomes when a report needs it
        old_providers: dict[str, _ProviderState] = state["providers"]
        for name, old in old_providers.items():
            new = self._providers.get(name)
            if new is None:
                if old.in_flight or any(r.size for r in self._routes.values() if r.key[0] == name):
                    raise ValueError(f"providers: sends wait for provider {name!r}, which is not registered")
                continue
            new.in_flight = old.in_flight
            new.waiting = old.waiting
            if (new.gcra.interval, new.gcra.depth) == (old.gcra.interval, old.gcra.depth):
                new.gcra = old.gcra
        for e in self._pending.values():
            if e.route is not None and e.route[0] not in self._providers:
                raise ValueError(f"providers: send {e.send.id!r} waits for provider {e.route[0]!r}, "
                                 "which is not registered")
        for key, route in self._routes.items():
            route.provider = self._providers.get(key[0], route.provider)
            pstate = self._providers.get(key[0])
            if pstate is None:
                continue
            spec = pstate.spec
            fresh = Route(key, limits_for(self.settings.routes, key[0], key[2] or "*", key[3] or "*"),
                          spec.rate, spec.burst, spec.daily_cap)
            g, f = route.gcra, fresh.gcra
            if (g.interval, g.depth) != (f.interval, f.depth):
                g.interval, g.depth = f.interval, f.depth
                route.burst_units = fresh.burst_units
            route.daily_cap, route.daily_zone = fresh.daily_cap, fresh.daily_zone
        caps, last_marketing, last_any, cap_logs = state["history"]
        h = self.history
        h.last_marketing, h.last_any = last_marketing, last_any
        by_cap = {msgspec.msgpack.encode(c): log for c, log in zip(caps, cap_logs)}
        h.cap_logs = [by_cap.get(msgspec.msgpack.encode(c), {}) for c in h.caps]
        self.suppression.entries = state["suppression"]
        self.error_segment.errors = state["error_segment"]
