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

import math
import operator
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import msgspec

from .admission import PolicyChain
from .dispatch import Dispatch, InFlight, ProviderState
from .errors import InputError, PendingLimitError
from .explain import explain
from .feedback import Feedback, slot_up
from .history import History
from .intake import PHONE_CHANNELS, Intake, zone_ok
from .ledger import DEAD, IN_FLIGHT, QUEUED, SCHEDULED, Entry, Ledger
from .locale import LocaleResolver
from .policies import builtin
from .policies.base import Policy, PolicyContext, PolicyFactory, Stage, build_policy
from .policies.error_segment import ErrorSegment
from .policies.jurisdictions import load_packs
from .policies.suppression import Suppression
from .provider import DeliveryReport, ProviderSpec, spec_of
from .routes import Route, limits_for
from .rows import PendingRows
from .send import (
    ORIGIN_PRIORITY,
    Batch,
    CancelReport,
    Explanation,
    Origin,
    Outcome,
    Reason,
    Rejection,
    Send,
    Stats,
    Status,
    SubmitReport,
)
from .settings import Settings
from .wheel import SPAN, PriorityWheel

# Snapshots written before the stages had modules of their own pickled these by their old names.
_ProviderState, _InFlight = ProviderState, InFlight

__all__ = ["Checked", "Core", "PHONE_CHANNELS"]  # PHONE_CHANNELS: from intake, kept importable here

#: At most this many sends come out of the wheel per ``advance`` call, so one
#: call stays short on a real clock and the first batches leave early; the
#: rest leave on the next call, at once. Measured (20k sends due together,
#: real clock): 4,096 halves p50 lateness against 50,000 and is no slower.
ADMIT_CHUNK = 4096

#: The longest a delivery report's ``retry_after`` may hold a route.
_MAX_REPORT_SLOWDOWN = 3600.0


# How the wheel tells a live entry from a tombstone.
def _scheduled(e: Entry) -> bool:
    """Popped from the wheel, the entry is still waiting there (not cancelled, ended or moved on)."""
    return e.where == SCHEDULED


def _not_dead(e: Entry) -> bool:
    """The entry still belongs in the wheel when it is compacted."""
    return e.where != DEAD


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


class Verdicts:
    """What policies report their verdicts to: the two calls of ``policies.base.Verdicts``, nothing else of the core."""

    __slots__ = ("skip", "defer")

    def __init__(self, core: "Core") -> None:
        self.skip = core.skip
        self.defer = core.defer


class Core:
    """The scheduling state machine. See the module docstring and DESIGN §2/§4.

    ``providers`` are the specs of the providers sends may go to.
    ``resolve_timezone(send)`` and ``lookup_carrier(send)`` are the plugin
    hooks (None when no plugin implements them). ``policies`` are extra
    policies (or policy factories, ``factory(PolicyContext) -> Policy``), run
    after the built-in ones at the stages they declare. ``chain``, when
    given, is the whole chain instead, built-ins included (the engine passes
    what its plugins registered: ``sendcore.policies.builtin`` first unless
    blocked).
    """

    def __init__(
        self,
        settings: Union[Settings, None] = None,
        providers: Sequence[ProviderSpec] = (),
        *,
        resolve_timezone: Optional[Callable[[Send], Optional[str]]] = None,
        lookup_carrier: Optional[Callable[[Send], Optional[str]]] = None,
        policies: Sequence[Union[Policy, PolicyFactory]] = (),
        chain: Optional[Sequence[Union[Policy, PolicyFactory]]] = None,
    ) -> None:
        self.settings = settings = settings or Settings()
        providers_by_name: dict[str, ProviderState] = {}
        for spec in providers:
            overrides = settings.providers.get(spec.name)
            if overrides is not None:  # the engine applies the same; a bare core gets them here
                spec = spec_of(spec, overrides)
            if spec.name in providers_by_name:
                raise ValueError(f"providers: two providers are named {spec.name!r}")
            providers_by_name[spec.name] = ProviderState(spec)
        packs = load_packs(list(settings.jurisdictions))
        caps = list(settings.frequency_caps)
        for pack in packs:
            caps.extend(pack.frequency_caps())
        self.history = History(caps, settings.spacing)
        #: Pending entries, their indexes, finished outcomes within retention, the counts.
        self.ledger = ledger = Ledger(self.history, float(settings.retention), settings.limits.retention_max)
        self._locale = LocaleResolver(settings, self._guarded(resolve_timezone, zone_ok))
        #: Validation and normalisation of submitted items (R23), and the provider each goes to.
        self.intake = Intake(settings, {n: p.spec for n, p in providers_by_name.items()}, self._locale)
        self._max_pending = settings.max_pending
        # Coalesced wake-ups: the wheel slot of each origin (0 = the instant as given).
        d = settings.dispatch
        self._slot = {o: r if r > 0.001 else 0.0 for o in Origin
                      for r in (d.resolution(o.value),)}

        #: The suppression list and the error segment: the core's state, whichever policies read them.
        self.suppression = Suppression()
        self.error_segment = ErrorSegment(settings.error_segment)
        context = PolicyContext(settings, self.history, packs, self.suppression, self.error_segment)
        items = [*builtin.FACTORIES, *policies] if chain is None else list(chain)
        #: Every policy in the order it runs; built-ins first.
        self.policies: list[Policy] = [build_policy(item, context) for item in items]
        verdicts = Verdicts(self)
        self._admit = PolicyChain(self.policies, Stage.ADMIT, SCHEDULED, verdicts, ledger)
        #: Routes, pacing, provider slots and batches.
        self.dispatch = Dispatch(providers_by_name, settings.routes, self.intake,
                                 self._guarded(lookup_carrier, lambda v: bool(v)), ledger, self.history,
                                 PolicyChain(self.policies, Stage.DISPATCH, QUEUED, verdicts, ledger))
        # An entry's ``due`` is the instant it is held until, so far buckets need not pair them.
        self._wheel: PriorityWheel[Entry] = PriorityWheel(operator.attrgetter("due"))
        #: What providers answered, applied: sent, retries, pushbacks, failures (R18).
        self.feedback = Feedback(ledger, self.dispatch, self._wheel, self._slot, settings.retry,
                                 self.error_segment, self.suppression)
        self._now = -math.inf
        self._submitted = 0
        self._rejected = 0
        self._epoch = 0  # accepts so far: tells ``accept`` whether a check may have gone stale

    # Names the tests and tools of earlier versions read (the state lives in the stages).

    @property
    def _rows(self) -> PendingRows:
        return self.ledger.rows

    @property
    def _pending(self) -> dict[str, Entry]:
        """Every pending entry by id; sends held as rows appear as entries decoded afresh (for tests and tools)."""
        rows = self._rows
        if not rows.live:
            return self.ledger.pending
        out = dict(self.ledger.pending)
        for row in rows.rows():
            s = rows.send_of(row)
            out[s.id] = Entry(send=s, due=rows.due[row], prio=rows.prio[row], locale=rows.locale_of(row),
                              hold=rows.hold_of(row))
        return out

    @property
    def _finished(self) -> dict[str, Outcome]:
        return self.ledger.finished

    @property
    def _reservations(self) -> dict[str, Any]:
        return self.ledger.reservations

    @property
    def _routes(self) -> dict[Any, Route]:
        return self.dispatch.routes

    @property
    def _batch_seq(self) -> int:
        return self.dispatch.batch_seq

    # The wheel's tombstone count under its snapshot key of earlier versions (see _STATE_FIELDS).
    @property
    def _dead_in_wheel(self) -> int:
        return self._wheel.dead

    @_dead_in_wheel.setter
    def _dead_in_wheel(self, value: int) -> None:
        self._wheel.dead = value

    # ------------------------------------------------------------------ queries

    @property
    def pending(self) -> int:
        """Sends accepted and not yet final (scheduled, queued or in flight)."""
        return len(self.ledger.pending) + self._rows.live

    @property
    def in_flight(self) -> int:
        """Batches handed to providers whose results are not recorded yet."""
        return len(self.dispatch.inflight)

    @property
    def providers(self) -> dict[str, ProviderSpec]:
        """The provider specs by name."""
        return {n: p.spec for n, p in self.dispatch.providers.items()}

    def batch(self, batch_id: int) -> Optional[Batch]:
        """The in-flight batch ``batch_id``, or None if it is unknown or already recorded."""
        fl = self.dispatch.inflight.get(batch_id)
        return fl.batch if fl is not None else None

    def outcome(self, send_id: str) -> Optional[Outcome]:
        """The final outcome of ``send_id`` within the retention window, else None."""
        return self.ledger.finished.get(send_id)

    def drain_outcomes(self) -> list[Outcome]:
        """Every outcome and event since the last call, in the order they happened."""
        out = self.ledger.outcomes
        self.ledger.outcomes = []
        return out

    def next_wakeup(self) -> Optional[float]:
        """The earliest instant ``advance`` may have work, or None if nothing waits.

        In-flight batches do not count: their ``record`` call wakes the core.
        """
        best = self._wheel.next_due()
        held = self._rows.next_due()
        if held is not None and (best is None or held < best):
            best = held
        ready = self.dispatch.next_ready_at()
        if ready is not None and (best is None or ready < best):
            best = ready
        return best

    def stats(self) -> Stats:
        """A frozen snapshot of counts. O(1) in the pending sends (the ledger keeps their counts by state)."""
        where = self.ledger.by_where
        return Stats(
            pending=len(self.ledger.pending) + self._rows.live,
            scheduled=where[SCHEDULED] + self._rows.live,
            queued=where[QUEUED],
            in_flight=where[IN_FLIGHT],
            submitted=self._submitted,
            rejected=self._rejected,
            final={k.value: v for k, v in self.ledger.final.items()},
            reasons={k.value: v for k, v in self.ledger.reasons.items()},
            events={k.value: v for k, v in self.ledger.events.items()},
            unknown_reports=self.ledger.unknown_reports,
            errors=self.ledger.errors,
        )

    def explain(self, send_id: str) -> Optional[Explanation]:
        """Where a send waits, which rule holds it and when it may leave (R20b); None if unknown."""
        rows = self._rows
        if rows.live and send_id not in self.ledger.pending:
            row = rows.find(send_id)
            if row >= 0:
                return Explanation(send_id=send_id, state="scheduled", rule=rows.hold_of(row) or "send_at",
                                   earliest=rows.due[row])
        return explain(self.ledger, self.dispatch, send_id, self._now)

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
                self.ledger.errors += 1
                return None
            if got is None:
                return None
            if type(got) is not str or not valid(got):
                self.ledger.errors += 1
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
        pending, finished, rows = self.ledger.pending, self.ledger.finished, self._rows
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
            if sid in pending or sid in seen or sid in rows:
                rejected.append(Rejection(i, sid, "id: duplicate of a pending send"))
                continue
            if sid in finished:
                rejected.append(Rejection(i, sid, f"id: duplicate of a send finished as {finished[sid].status.value}"))
                continue
            seen.add(sid)
            ok.append((s, due, late))
        held = len(pending) + rows.live
        if held + len(ok) > self._max_pending:
            raise PendingLimitError(held, len(ok), self._max_pending)
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
        pending, finished, rows = self.ledger.pending, self.ledger.finished, self._rows
        rejected = list(checked.rejected)
        ok = checked.sends
        skip = set(checked.skip) if checked.skip else ()
        # Only an accept since the check can have made one of these ids a duplicate.
        if checked.recheck and checked.epoch != self._epoch:
            kept = []
            for i, item in enumerate(ok):
                sid = item[0].id
                if sid in pending or sid in finished or sid in rows:
                    what = "a pending send" if sid not in finished else f"a send finished as {finished[sid].status.value}"
                    rejected.append(Rejection(-1, sid, f"id: duplicate of {what}"))
                elif i in skip:
                    kept.append((item[0], item[1], "skip"))
                else:
                    kept.append((item[0], item[1], None))
            ok = kept
        elif skip:
            ok = [(s, due, "skip" if i in skip else None) for i, (s, due, _) in enumerate(ok)]
        held = len(pending) + rows.live
        if held + len(ok) > self._max_pending:
            raise PendingLimitError(held, len(ok), self._max_pending)
        checked.recheck = True  # a second accept of the same check must see its own sends as duplicates
        self._epoch += 1
        self._submitted += len(ok)
        self._rejected += len(rejected)
        resolve = self._locale.resolve
        insert = self._wheel.insert
        add = self.ledger.add
        prio_of = ORIGIN_PRIORITY
        slots = self._slot
        # Sends due past the 64 s slot the clock is in wait as rows (rows.py) until their slot comes.
        current = max(rows.slot, int(now // SPAN))
        hold = rows.add
        for s, due, late in ok:
            prio = s.priority if s.priority is not None else prio_of[s.origin]
            slot = slots[s.origin]
            if slot and due > now:
                due = slot_up(due, slot)
            if due // SPAN > current and late is None:
                loc = resolve(s)
                if hold(s, due, prio, loc) >= 0:
                    continue
                e = Entry(send=s, due=due, prio=prio, locale=loc)
            else:
                e = Entry(send=s, due=due, prio=prio, locale=resolve(s))
            add(e)
            if late == "skip":
                self.ledger.finish(e, Status.SKIPPED, Reason.LATE_LOCAL, now, "local_send_at already past")
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
        targets: list[Union[Entry, int]] = []  # entries, and rows of the pending store (rows.py)
        rows = self._rows
        if ids is not None:
            if isinstance(ids, str):
                ids = [ids]
            for sid in ids:
                e = self.ledger.pending.get(sid)
                if e is not None:
                    targets.append(e)
                    continue
                row = rows.find(sid) if rows.live and type(sid) is str else -1
                if row >= 0:
                    targets.append(row)
                else:
                    (too_late if sid in self.ledger.finished else unknown).append(sid)
        if recipient is not None or origin_id is not None:
            if recipient is not None:
                pool = self.ledger.of_recipient(recipient)
            else:
                pool = self.ledger.by_origin.get(origin_id, [])
            for e in pool:
                if e.where == DEAD:
                    continue
                s = e.send
                if recipient is not None and s.recipient != recipient:
                    continue
                if origin_id is not None and s.origin_id != origin_id:
                    continue
                targets.append(e)
            if rows.live:
                if recipient is not None:
                    found = rows.of_recipient(recipient)
                    if origin_id is not None:
                        found = [r for r in found if rows.send_of(r).origin_id == origin_id]
                else:
                    found = rows.of_origin(origin_id)  # type: ignore[arg-type]
                targets.extend(found)
        taken: set[int] = set()
        for e in targets:
            if type(e) is int:
                if e in taken:
                    continue
                taken.add(e)
                # Out of the store and into the ledger, to end there like any entry; the row's number
                # stays a tombstone in the store (rows.py), not in the wheel's count.
                s, due, prio, loc = rows.take(e)
                e = Entry(send=s, due=due, prio=prio, locale=loc)
                self.ledger.add(e)
                cancelled.append(s.id)
                self.ledger.finish(e, Status.CANCELLED, Reason.CANCELLED, now)
                continue
            if e.where == IN_FLIGHT:
                too_late.append(e.send.id)
            elif e.where != DEAD:
                if e.where == SCHEDULED:
                    self._wheel.discarded()
                cancelled.append(e.send.id)
                self.ledger.finish(e, Status.CANCELLED, Reason.CANCELLED, now)
        self._wheel.compact(len(self.ledger.pending), _not_dead)
        rows.compact()
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
        return self.ledger.sent_outcome(report.send_id, report.provider_id, provider)

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
            self.ledger.unknown_reports += 1
            return None
        status = Status.DELIVERED if report.delivered else Status.UNDELIVERED
        detail = f"{report.code}: {report.detail}" if report.code and report.detail != report.code else \
            (report.detail or report.code)
        event = Outcome(send_id=o.send_id, status=status, reason=Reason.DELIVERY_REPORT, at=now, attempt=o.attempt,
                        provider=o.provider, provider_id=o.provider_id, detail=detail, channel=o.channel,
                        recipient=o.recipient)
        self.ledger.event(event)
        meta = self.ledger.sent_meta.get(o.send_id)
        if not report.delivered and meta is not None:
            to, route = meta
            if report.temporary:
                self.error_segment.note_error(o.channel, to, now)
            if report.suppress is not None:
                self.suppression.add(o.channel, to, report.suppress)
            wait = report.retry_after
            if type(route) is tuple:  # a route key; snapshots written before keys held the Route
                route = self.dispatch.routes.get(route)
            if route is not None and wait is not None and wait == wait and wait > 0:
                until = now + min(float(wait), _MAX_REPORT_SLOWDOWN)
                if until > route.blocked_until:
                    route.blocked_until = until
                    route.blocked_by = "rate_limited"
        return event

    # ------------------------------------------------------------------ verdicts (called by policies)

    def skip(self, entry: Entry, reason: Reason, detail: str = "") -> None:
        """Policy verdict: end ``entry`` as skipped."""
        self.ledger.finish(entry, Status.SKIPPED, reason, self._now, detail)

    def defer(self, entry: Entry, until: float, reason: Reason, detail: str = "") -> None:
        """Policy verdict: hold ``entry`` until ``until``; expire it if that is too late (R15)."""
        slot = self._slot[entry.send.origin]
        if slot:
            until = slot_up(until, slot)
        exp = entry.send.expires_at
        if exp is not None and until >= exp:
            self.ledger.finish(entry, Status.SKIPPED, Reason.EXPIRED, self._now,
                               f"held by {reason.value} past expires_at")
            return
        self.ledger.move(entry, SCHEDULED)
        entry.due = until
        entry.hold = reason.value
        s = entry.send
        # Held past the current slot (quiet hours until the morning, say), a send that never left goes back
        # to the pending store, so a campaign held overnight costs what it did before its first due time.
        rows = self._rows
        if (entry.route is None and entry.attempt == 0 and not entry.reserved
                and rows.holds(until, self._now)
                and rows.add(s, until, entry.prio, entry.locale, entry.hold) >= 0):
            self.ledger.drop(entry)
        else:
            self._wheel.insert(entry.prio, until, entry)
        self.ledger.event(Outcome(send_id=s.id, status=Status.DEFERRED, reason=reason, at=self._now,
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
        self.ledger.expire(now)
        live = self._wheel.pop_live(now, _scheduled, ADMIT_CHUNK)
        rows = self._rows
        # Sends held as rows leave after those of the wheel, within the same bound per call.
        if (rows.far_keys or rows.current) and len(live) < ADMIT_CHUNK:
            due = rows.pop_due(now, ADMIT_CHUNK - len(live))
            if due:
                got = rows.pop_many(due, Entry, self.ledger.add)
                if live:
                    live.extend(got)
                else:
                    live = got
        if live:
            live = self._admit.run(live, now)
            if live:
                self.dispatch.enqueue(live, now)
        return self.dispatch.dispatch_ready(now)

    # ------------------------------------------------------------------ record

    def record(self, batch: Batch, results: Sequence[Any], now: float) -> None:
        """Apply a provider's answer to ``batch``: one result per send, in order (R18).

        A result count that differs from the batch size is a temporary failure
        of the whole batch. Runtime complexity: O(len(batch)).
        """
        if now > self._now:
            self._now = now
        self.feedback.record(batch, results, self._now)

    def record_error(self, batch: Batch, error: str, now: float) -> None:
        """The provider call raised or timed out: a temporary failure of every send (R18)."""
        if now > self._now:
            self._now = now
        self.feedback.record_error(batch, error, self._now)

    def backoff(self, send_id: str, attempt: int) -> float:
        """Delay before retry ``attempt`` + 1: exponential, capped, with hashed jitter (R18)."""
        return self.feedback.backoff(send_id, attempt)

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
        for bid in sorted(self.dispatch.inflight):
            fl = self.dispatch.inflight.pop(bid)
            self.dispatch.release_slot(fl, now)
            back = [e for e in fl.entries if e.where == IN_FLIGHT]
            for e in back:
                e.attempt -= 1
                self.ledger.move(e, QUEUED)
                s = e.send
                self.ledger.event(Outcome(
                    send_id=s.id, status=Status.RETRYING, reason=Reason.TEMPORARY_FAILURE, at=now, attempt=e.attempt,
                    channel=s.channel, recipient=s.recipient, until=now,
                    detail="in flight when the engine stopped; sent again with the same id"))
            if back:
                for e in reversed(back):
                    fl.route.push_front(e.prio, [e])
                self.dispatch.schedule(fl.route, now)
            count += len(back)
        return count

    #: The state that changes as the core runs, by its key in a snapshot: (stage, attribute). The keys are
    #: those of the single-class core, so snapshots of every version load; the rest derives from settings.
    _STATE_FIELDS: dict[str, tuple[str, str]] = {
        "_pending": ("ledger", "pending"), "_wheel": ("", "_wheel"), "_dead_in_wheel": ("", "_dead_in_wheel"),
        "_routes": ("dispatch", "routes"), "_ready": ("dispatch", "ready"), "_ready_seq": ("dispatch", "ready_seq"),
        "_inflight": ("dispatch", "inflight"), "_batch_seq": ("dispatch", "batch_seq"),
        "_reservations": ("ledger", "reservations"), "_finished": ("ledger", "finished"),
        "_finished_order": ("ledger", "finished_order"), "_by_recipient": ("ledger", "by_recipient"),
        "_by_origin": ("ledger", "by_origin"), "_origin_live": ("ledger", "origin_live"), "_now": ("", "_now"),
        "_submitted": ("", "_submitted"), "_rejected": ("", "_rejected"), "_final": ("ledger", "final"),
        "_reasons": ("ledger", "reasons"), "_events": ("ledger", "events"), "_epoch": ("", "_epoch"),
        "_sent_meta": ("ledger", "sent_meta"), "_pushbacks": ("ledger", "pushbacks"), "_rows": ("ledger", "rows"),
    }

    def export_state(self) -> dict[str, Any]:
        """Every piece of state the core changes as it runs, by reference (no copy).

        The journal pickles it in a forked child for a snapshot; ``import_state``
        takes it back, also into a core built with other settings.
        """
        state: dict[str, Any] = {key: getattr(getattr(self, stage) if stage else self, attr)
                                 for key, (stage, attr) in self._STATE_FIELDS.items()}
        state["providers"] = self.dispatch.providers
        h = self.history
        state["history"] = (list(h.caps), h.last_marketing, h.last_any, h.cap_logs)
        state["suppression"] = self.suppression.entries
        state["error_segment"] = self.error_segment.errors
        state["outcomes"] = self.ledger.outcomes
        return state

    def import_state(self, state: dict[str, Any]) -> None:
        """Take over ``state`` from ``export_state`` (of this or an older core with other settings).

        Routes keep their queues and pacing state but take the limits the
        current settings give them; frequency-cap logs carry over for the cap
        rules that are unchanged; a provider that is gone while sends wait for
        it is a ``ValueError`` naming it.
        """
        for key, (stage, attr) in self._STATE_FIELDS.items():
            if key in state:
                setattr(getattr(self, stage) if stage else self, attr, state[key])
        # The wheel and the feedback stage share the wheel object: point feedback at the imported one.
        self.feedback.wheel = self._wheel
        counts = self.ledger.recount()  # derived, so not in snapshots
        counts[SCHEDULED] -= self.ledger.rows.live  # the rows are counted apart (stats adds them)
        self.ledger.by_where = counts
        self.ledger.outcomes = list(state.get("outcomes", ()))
        self.ledger.by_provider_id = None  # rebuilt from the finished outcomes when a report needs it
        old_providers: dict[str, ProviderState] = state["providers"]
        for name, old in old_providers.items():
            new = self.dispatch.providers.get(name)
            if new is None:
                if old.in_flight or any(r.size for r in self.dispatch.routes.values() if r.key[0] == name):
                    raise ValueError(f"providers: sends wait for provider {name!r}, which is not registered")
                continue
            new.in_flight = old.in_flight
            new.waiting = old.waiting
            if (new.gcra.interval, new.gcra.depth) == (old.gcra.interval, old.gcra.depth):
                new.gcra = old.gcra
        for e in self.ledger.pending.values():
            if e.route is not None and e.route[0] not in self.dispatch.providers:
                raise ValueError(f"providers: send {e.send.id!r} waits for provider {e.route[0]!r}, "
                                 "which is not registered")
        for key, route in self.dispatch.routes.items():
            route.provider = self.dispatch.providers.get(key[0], route.provider)
            pstate = self.dispatch.providers.get(key[0])
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
