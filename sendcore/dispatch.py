"""Dispatch: routes, their pacing, provider slots and the batches that leave (R3, R16, R19).

Admitted sends wait on their route (provider, channel, sender, carrier) in
priority queues. A heap of ready instants says which route may form a batch
next; a route drains while its GCRA bucket, the provider-wide bucket, its
daily cap and the provider's ``max_concurrency`` allow, running the DISPATCH
policies on each chunk (R12), and hands the survivors over as batches of at
most ``max_batch``.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, Optional, Sequence

from .admission import PolicyChain
from .intake import PHONE_CHANNELS, Intake
from .ledger import IN_FLIGHT, QUEUED, Entry, Ledger
from .locale import period_bounds
from .phones import carrier_of
from .provider import ProviderSpec
from .routes import Gcra, Route, RouteKey, limits_for
from .segments import sms_segments
from .send import Batch, Reason, Send, Status

__all__ = ["Dispatch", "InFlight", "ProviderState"]


class ProviderState:
    """One provider as dispatch sees it: its spec, the batches it has in flight, who waits for a slot."""

    __slots__ = ("spec", "in_flight", "waiting", "gcra")

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        # The provider-wide limit shared by all its routes (R16); unlimited if unset.
        rate = spec.total_rate or 0.0
        self.gcra = Gcra(rate, spec.total_burst or max(1, int(rate // 10)))
        self.in_flight = 0
        self.waiting: list[Route] = []


class InFlight:
    """A batch handed to a provider, its entries and the route it left."""

    __slots__ = ("batch", "entries", "route")

    def __init__(self, batch: Batch, entries: list[Entry], route: Route) -> None:
        self.batch = batch
        self.entries = entries
        self.route = route


class Dispatch:
    """The routes and the batches leaving them.

    Built with the providers' states, the ``[[routes]]`` limits, the intake
    (which provider a send goes to), the carrier hook, the ledger, the
    history (attempts reserve their place, R7) and the DISPATCH chain.
    """

    def __init__(self, providers: dict[str, ProviderState], route_limits: Sequence[Any], intake: Intake,
                 lookup_carrier: Optional[Callable[[Send], Optional[str]]], ledger: Ledger, history: Any,
                 chain: PolicyChain) -> None:
        self.providers = providers
        self.route_limits = route_limits
        self.intake = intake
        self.lookup_carrier = lookup_carrier
        self.ledger = ledger
        self.history = history
        self.chain = chain
        self.routes: dict[RouteKey, Route] = {}
        self.ready: list[tuple[float, int, Route]] = []
        self.ready_seq = 0
        self.inflight: dict[int, InFlight] = {}
        self.batch_seq = 0

    def next_ready_at(self) -> Optional[float]:
        """The earliest instant some route may form a batch, or None."""
        ready = self.ready
        while ready and ready[0][2].scheduled_at != ready[0][0]:
            heapq.heappop(ready)
        return ready[0][0] if ready else None

    def route_of(self, e: Entry) -> Route:
        """The route ``e`` leaves by, made on first use; its key is cached on the entry (R16, R17)."""
        s = e.send
        key = e.route
        if key is None:
            provider = self.intake.provider_for(s)
            if s.channel in PHONE_CHANNELS:
                carrier = s.carrier
                if carrier is None and self.lookup_carrier is not None:
                    carrier = self.lookup_carrier(s)
                if carrier is None:
                    carrier = carrier_of(s.to) or "unknown"
            else:
                carrier = s.carrier or ""
            key = e.route = (provider, s.channel, s.sender or "", carrier)
        route = self.routes.get(key)
        if route is None:
            spec = self.providers[key[0]].spec
            limit = limits_for(self.route_limits, key[0], key[2] or "*", key[3] or "*")
            route = self.routes[key] = Route(key, limit, spec.rate, spec.burst, spec.daily_cap)
            route.provider = self.providers[key[0]]
            route.is_sms = key[1] == "sms"
        return route

    def enqueue(self, entries: list[Entry], now: float) -> None:
        """Put admitted entries on their routes and mark the routes ready now; a failing hook fails only its send."""
        route_of, routes = self.route_of, self.routes
        by_where = self.ledger.by_where
        touched: dict[int, Route] = {}
        queued = 0
        for e in entries:
            # A send back on its route (a retry, a deferral) has its key: one lookup, not route_of.
            key = e.route
            route = routes.get(key) if key is not None else None
            if route is None:
                try:
                    route = route_of(e)
                except Exception as exc:  # a carrier hook that raised: this send fails, not the engine
                    self.ledger.errors += 1
                    self.ledger.finish(e, Status.FAILED, Reason.ERROR, now, f"choosing the route raised "
                                 f"{type(exc).__name__}: {exc}")
                    continue
            q = route.queues.get(e.prio)
            if q is None:
                route.push(e.prio, e)
            else:  # (Route.push, inlined: every admitted send takes this path)
                q.append(e)
                route.size += 1
            by_where[e.where] -= 1  # (Ledger.move, inlined)
            e.where = QUEUED
            queued += 1
            e.hold = None
            touched[id(route)] = route
        by_where[QUEUED] += queued
        for route in touched.values():
            self.schedule(route, now)

    def schedule(self, route: Route, at: float) -> None:
        """Make ``route`` ready at ``at`` unless it already is by then."""
        if route.scheduled_at is not None and route.scheduled_at <= at:
            return
        route.scheduled_at = at
        self.ready_seq += 1
        heapq.heappush(self.ready, (at, self.ready_seq, route))

    def cost(self, e: Entry) -> int:
        """Units ``e`` takes from its route's bucket: SMS segments, else 1."""
        return sms_segments(e.send.body) if e.send.channel == "sms" else 1

    def dispatch_ready(self, now: float) -> list[Batch]:
        """Drain every route ready at ``now``; return the batches formed."""
        batches: list[Batch] = []
        ready = self.ready
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
            self.schedule(route, route.blocked_until)
            return
        if route.daily_cap and now >= route.day_end:
            _, route.day_end = period_bounds(now, route.daily_zone, "day")
            route.day_count = 0
        gcra = route.gcra
        is_sms = route.is_sms
        max_batch = spec.max_batch
        reserve_many = self.history.reserve_many
        reservations = self.ledger.reservations
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
            ok = self.chain.run(cands, now)
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
                self.ledger.move_all(ok, QUEUED, IN_FLIGHT)
                for e in ok:
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
            self.schedule(route, self.next_ready(route, now))

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

    def next_ready(self, route: Route, now: float) -> float:
        """When ``route`` can next fill a batch without wasting bucket capacity."""
        if route.blocked_until > now:
            return route.blocked_until
        gcra = route.gcra
        shared = route.provider.gcra
        prio = route.head_prio()
        head = route.queues[prio][0] if prio is not None else None
        first = self.cost(head) if head is not None else 1
        # The provider-wide bucket, shared with other routes, is waited on unit by unit.
        at = shared.ready_at(first) if shared.interval else now
        if gcra.interval == 0.0:
            return max(now, at)
        # Wait for a full batch (or a full bucket, whichever is smaller) so a
        # fast route is not woken for every single unit; never past the
        # moment the bucket would overflow, so no capacity is lost.
        units = max(first, min(route.size, self.providers[route.key[0]].spec.max_batch,
                               int(gcra.depth / gcra.interval)))
        return max(now, at, gcra.ready_at(units), gcra.ready_at(first))

    def _emit(self, route: Route, entries: list[Entry], batches: list[Batch]) -> None:
        """Hand ``entries`` to the provider as one batch: it is in flight until recorded."""
        self.batch_seq += 1
        key = route.key
        batch = Batch(id=self.batch_seq, provider=key[0], channel=key[1], sender=key[2], carrier=key[3],
                      sends=[e.send for e in entries], attempts=[e.attempt for e in entries])
        self.inflight[batch.id] = InFlight(batch, entries, route)
        self.providers[key[0]].in_flight += 1
        batches.append(batch)

    def release_slot(self, fl: InFlight, now: float) -> None:
        """A batch of ``fl``'s provider ended: free its slot and wake the routes that waited for one."""
        pstate = self.providers[fl.batch.provider]
        pstate.in_flight -= 1
        if pstate.waiting:
            waiting, pstate.waiting = pstate.waiting, []
            for route in waiting:
                self.schedule(route, now)
