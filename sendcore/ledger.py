"""The ledger: every pending send by id with its indexes, and the outcomes of finished ones (R1, R20, R21).

An ``Entry`` is one pending send (the caller's ``Send``) plus the little
state the core needs: where it waits (``SCHEDULED`` in the wheel, ``QUEUED``
on a route, ``IN_FLIGHT`` at a provider, ``DEAD`` once final), when, and why.
The ``Ledger`` holds the entries by id, by recipient and by origin id (for
bulk cancels), ends them (``finish``: exactly one final outcome each, R21),
keeps finished outcomes for the retention window (R1) and counts everything
``stats()`` reports.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Optional, Sequence, Union

import msgspec

from .locale_types import Locale
from .rows import PendingRows
from .send import Accepted, Outcome, Reason, Send, Status

__all__ = ["DEAD", "Entry", "IN_FLIGHT", "Ledger", "QUEUED", "SCHEDULED", "STATE_NAMES", "StateError",
           "TRANSITIONS", "storable_id"]

#: Where an entry waits.
SCHEDULED = 0  # in the timing wheel (or the pending store's rows), until ``due``
QUEUED = 1  # in a route queue, waiting for pacing
IN_FLIGHT = 2  # handed to a provider, result not yet recorded
DEAD = -1  # cancelled or finished; skipped where it still sits (lazy deletion)

STATE_NAMES = {SCHEDULED: "scheduled", QUEUED: "queued", IN_FLIGHT: "in_flight", DEAD: "dead"}

#: Every move an entry may make, as h11 tables its connection states: the table is the lifecycle's
#: one description, and ``Ledger.move`` / ``move_all`` refuse any move it lacks. An entry starts
#: SCHEDULED (``add``). The hot paths that set ``where`` themselves take only these edges: admission
#: queueing (SCHEDULED -> QUEUED, ``Dispatch.enqueue``), dispatch (QUEUED -> IN_FLIGHT, ``move_all``)
#: and the finishes (any -> DEAD; finishing a DEAD entry does nothing).
TRANSITIONS: dict[int, frozenset[int]] = {
    # held again by admission (quiet hours, caps) | admitted onto its route | ended (cancelled, expired, skipped)
    SCHEDULED: frozenset({SCHEDULED, QUEUED, DEAD}),
    # held by a dispatch-time rule | handed to the provider | ended
    QUEUED: frozenset({SCHEDULED, IN_FLIGHT, DEAD}),
    # retried after its backoff | pushed back by a rate limit, or requeued at recovery | answered for good
    IN_FLIGHT: frozenset({SCHEDULED, QUEUED, DEAD}),
    DEAD: frozenset(),
}


class StateError(RuntimeError):
    """A move the lifecycle table (``TRANSITIONS``) does not allow: a bug in the core, never bad input."""


def _refused(what: str, src: int, dst: int) -> StateError:
    """The error for a refused move of ``what`` (one send, or a batch)."""
    return StateError(f"{what}: {STATE_NAMES.get(src, src)} -> {STATE_NAMES.get(dst, dst)} "
                      "is not a move of the lifecycle table")


_SENT = Status.SENT


class Entry(msgspec.Struct, gc=False):
    """One pending send and its scheduling state (mutable, owned by the core).

    ``due`` is when it may next be considered; ``hold`` names the rule that
    last held it back (for ``explain``); ``reserved`` is True while its
    attempt is counted in the recipient's history (R7).
    """

    send: Send
    due: float
    prio: int
    attempt: int = 0
    where: int = SCHEDULED
    hold: Union[str, None] = None
    locale: Union[Locale, None] = None
    route: Union[tuple[str, str, str, str], None] = None
    reserved: bool = False


def storable_id(value: Any) -> bool:
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


class Ledger:
    """Pending entries and their indexes, finished outcomes within retention, and the counts.

    ``history`` is released when a send holding a reservation (R7) ends
    without being sent. ``retention`` (seconds) and ``retention_max`` bound
    the finished outcomes kept. The attributes are the core's state (the
    journal's snapshots carry them); only the core changes them.
    """

    def __init__(self, history: Any, retention: float, retention_max: int) -> None:
        self.history = history
        self.retention = retention
        self.retention_max = retention_max
        self.pending: dict[str, Entry] = {}
        #: Sends due past the current 64 s slot, held as rows of columns until their slot comes (rows.py);
        #: not in ``pending`` nor the indexes, and counted as scheduled.
        self.rows = PendingRows()
        self.by_recipient: dict[str, Union[Entry, list[Entry]]] = {}
        self.by_origin: dict[str, list[Entry]] = {}
        self.origin_live: dict[str, int] = {}
        self.reservations: dict[str, Any] = {}  # send id -> its history reservation (R7)
        self.pushbacks: dict[str, int] = {}  # send id -> times rate limited (only sends pushed back)
        self.finished: dict[str, Outcome] = {}
        self.finished_order: deque[str] = deque()
        # Sent messages within retention: where they went (address, route key), for delivery
        # reports that feed the error segment, suppression or the route's pace. The key, not
        # the Route: a tuple of strings is untracked by the cycle collector, while one
        # holding a Route stays tracked for the retention period, one per sent message,
        # and makes every full collection walk them all.
        self.sent_meta: dict[str, tuple[str, Any]] = {}
        # The provider's message ids, which reports may name instead of the send id; built on the
        # first report that names one (the sandbox reports by send id).
        self.by_provider_id: Optional[dict[tuple[str, str], str]] = None
        self.outcomes: list[Outcome] = []
        # Counters keyed by the enum members (their .value is slow on hot paths).
        self.final: dict[Status, int] = {}
        self.reasons: dict[Reason, int] = {}
        self.events: dict[Status, int] = {}
        self.errors = 0  # policies, hooks and answers that raised (stats().errors)
        self.unknown_reports = 0
        #: Pending entries by where they wait (indexed by SCHEDULED, QUEUED, IN_FLIGHT), kept by
        #: ``add``, ``move`` and the finishes: stats without a walk.
        self.by_where = [0, 0, 0]

    # States: every move is an edge of TRANSITIONS, made by ``move``, ``move_all`` or a finish.

    def move(self, e: Entry, where: int) -> None:
        """Move pending ``e`` to ``where`` (SCHEDULED, QUEUED or IN_FLIGHT), keeping the counts.

        Raises ``StateError`` for a move ``TRANSITIONS`` lacks, before changing anything.
        """
        if where not in TRANSITIONS[e.where]:
            raise _refused(f"send {e.send.id!r}", e.where, where)
        c = self.by_where
        c[e.where] -= 1
        c[where] += 1
        e.where = where

    def move_all(self, entries: list[Entry], src: int, where: int) -> None:
        """Move every entry of ``entries``, each waiting at ``src``, to ``where`` (one table check for the batch)."""
        if where not in TRANSITIONS[src]:
            raise _refused(f"{len(entries)} sends", src, where)
        for e in entries:
            e.where = where
        c = self.by_where
        c[src] -= len(entries)
        c[where] += len(entries)

    def recount(self) -> list[int]:
        """Count the pending entries by where they wait, by walking them (for import and for tests)."""
        c = [0, 0, 0]
        for e in self.pending.values():
            c[e.where] += 1
        c[SCHEDULED] += sum(1 for _ in self.rows.rows())
        return c

    # Entries

    def add(self, e: Entry) -> None:
        """Take a new pending entry: by id, recipient and origin id."""
        s = e.send
        self.pending[s.id] = e
        self.by_where[e.where] += 1
        rec = s.recipient
        by_rec = self.by_recipient
        got = by_rec.get(rec)
        if got is None:
            by_rec[rec] = e
        elif type(got) is list:
            got.append(e)
        else:
            by_rec[rec] = [got, e]
        oid = s.origin_id
        if oid:
            lst = self.by_origin.get(oid)
            if lst is None:
                self.by_origin[oid] = [e]
                self.origin_live[oid] = 1
            else:
                lst.append(e)
                self.origin_live[oid] += 1

    def drop(self, e: Entry) -> None:
        """Forget pending ``e`` without an outcome: it moved to the pending store (``rows``), which holds it now.

        It leaves ``pending`` and the indexes, and is marked ``DEAD`` so the
        lists that may still name it skip it.
        """
        s = e.send
        self.by_where[e.where] -= 1
        e.where = DEAD
        del self.pending[s.id]
        self._unindex(e)

    def of_recipient(self, recipient: str) -> list[Entry]:
        """The entries indexed under ``recipient`` (finished ones may linger until unindexed)."""
        got = self.by_recipient.get(recipient)
        return [] if got is None else (got if type(got) is list else [got])

    def event(self, o: Outcome) -> None:
        """Emit an outcome event that is not final (deferred, retrying, delivered...)."""
        self.outcomes.append(o)
        k = o.status
        self.events[k] = self.events.get(k, 0) + 1

    def finish(self, e: Entry, status: Status, reason: Reason, now: float, detail: str = "",
               provider: str = "", provider_id: str = "") -> None:
        """End ``e`` with its one final outcome (R21); nothing if it already ended."""
        s = e.send
        sid = s.id
        if e.where == DEAD:
            return
        self.by_where[e.where] -= 1
        e.where = DEAD
        if self.pushbacks:
            self.pushbacks.pop(sid, None)
        del self.pending[sid]
        if e.reserved:
            token = self.reservations.pop(sid, None)
            if status is not _SENT and token is not None:
                self.history.release(s, token)
        o = Outcome(send_id=sid, status=status, reason=reason, at=now, attempt=e.attempt, provider=provider,
                    provider_id=provider_id, detail=detail, channel=s.channel, recipient=s.recipient)
        self.outcomes.append(o)
        self.finished[sid] = o
        self.finished_order.append(sid)
        final = self.final
        final[status] = final.get(status, 0) + 1
        if status is not _SENT:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self._unindex(e)

    def finish_accepted(self, entries: list[Entry], results: Sequence[Any], now: float,
                        provider: str, route: Any) -> list[tuple[Entry, Any]]:
        """End every accepted send of a batch as ``sent`` in one tight loop; return the other (entry, result) pairs.

        The same bookkeeping as ``finish`` for status ``sent``, inlined: this
        is the path almost every send takes.
        """
        others: list[tuple[Entry, Any]] = []
        pending, finished, order, outcomes = self.pending, self.finished, self.finished_order, self.outcomes
        by_rec, reservations = self.by_recipient, self.reservations
        sent, accepted_reason = _SENT, Reason.ACCEPTED
        sent_meta, by_pid, pushbacks = self.sent_meta, self.by_provider_id, self.pushbacks
        by_where = self.by_where
        key = route.key if route is not None else None
        n = 0
        for e, r in zip(entries, results):
            # A provider_id that is no string (a provider bug) is not applied as sent: the outcome would
            # carry it, and with the journal on the same answer is retried (it cannot be stored), so it is
            # retried here too (found by the fuzz test, tests/test_fuzz.py).
            if type(r) is not Accepted or e.where == DEAD:
                others.append((e, r))
                continue
            pid = r.provider_id
            if type(pid) is not str or not (pid.isascii() or storable_id(pid)):  # (storable_id, its ASCII case inlined)
                others.append((e, r))
                continue
            s = e.send
            sid = s.id
            by_where[e.where] -= 1
            e.where = DEAD
            del pending[sid]
            if e.reserved:
                reservations.pop(sid, None)
            if pushbacks:
                pushbacks.pop(sid, None)
            o = Outcome(send_id=sid, status=sent, reason=accepted_reason, at=now, attempt=e.attempt,
                        provider=provider, provider_id=pid, channel=s.channel, recipient=s.recipient)
            outcomes.append(o)
            finished[sid] = o
            order.append(sid)
            sent_meta[sid] = (s.to, key)
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
            self.final[sent] = self.final.get(sent, 0) + n
        return others

    def _unindex(self, e: Entry) -> None:
        """Take ``e`` out of the recipient and origin indexes."""
        s = e.send
        rec = s.recipient
        got = self.by_recipient.get(rec)
        if got is e:
            del self.by_recipient[rec]
        elif got is not None:
            self._unindex_recipient(rec, got, e)
        if s.origin_id:
            self._unindex_origin(s.origin_id)

    def _unindex_recipient(self, rec: str, got: Any, e: Entry) -> None:
        if type(got) is list:
            try:
                got.remove(e)
            except ValueError:
                pass
            if len(got) == 1:
                self.by_recipient[rec] = got[0]

    def _unindex_origin(self, oid: str) -> None:
        # Origin lists drop finished entries lazily, when they outnumber live ones.
        live = self.origin_live[oid] - 1
        if live == 0:
            del self.origin_live[oid], self.by_origin[oid]
        else:
            self.origin_live[oid] = live
            lst = self.by_origin[oid]
            if len(lst) > 2 * live + 16:
                lst[:] = [x for x in lst if x.where != DEAD]

    # Finished outcomes

    def expire(self, now: float) -> None:
        """Forget finished outcomes older than ``retention``, and the oldest beyond ``retention_max``. O(1) when none."""
        order = self.finished_order
        if not order or (self.finished[order[0]].at > now - self.retention
                         and len(self.finished) <= self.retention_max):
            return
        cutoff = now - self.retention
        finished, most = self.finished, self.retention_max
        while order:
            sid = order[0]
            o = finished.get(sid)
            if o is not None and o.at > cutoff and len(finished) <= most:
                break
            order.popleft()
            if o is not None:
                del finished[sid]
                if self.sent_meta.pop(sid, None) is not None and o.provider_id and self.by_provider_id:
                    self.by_provider_id.pop((o.provider, o.provider_id), None)

    def sent_outcome(self, send_id: str, provider_id: str, provider: str) -> Union[Outcome, None]:
        """The ``sent`` outcome a delivery report names (by send id, or by ``provider``'s message id), or None."""
        sid = send_id
        if not sid and provider_id:
            index = self.by_provider_id
            if index is None:
                index = self.by_provider_id = {
                    (o.provider, o.provider_id): k for k, o in self.finished.items()
                    if o.provider_id and o.status is _SENT and k in self.sent_meta}
            sid = index.get((provider, provider_id), "")
        o = self.finished.get(sid) if sid else None
        if o is None or o.status is not _SENT or (provider and o.provider != provider):
            return None
        return o
