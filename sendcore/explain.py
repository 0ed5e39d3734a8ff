"""Explain (R20b): where a pending send waits, which rule holds it, and when it may leave."""

from __future__ import annotations

from typing import Optional

from .dispatch import Dispatch
from .ledger import QUEUED, SCHEDULED, Entry, Ledger
from .routes import Route
from .send import Explanation

__all__ = ["explain"]


def explain(ledger: Ledger, dispatch: Dispatch, send_id: str, now: float) -> Optional[Explanation]:
    """Where a send waits, which rule holds it and when it may leave (R20b); None if unknown."""
    e = ledger.pending.get(send_id)
    if e is None:
        o = ledger.finished.get(send_id)
        if o is None:
            return None
        return Explanation(send_id=send_id, state="final", rule=o.reason.value, outcome=o,
                           attempt=o.attempt, detail=o.detail)
    route = dispatch.routes.get(e.route) if e.route else None
    if e.where == SCHEDULED:
        rule = e.hold or ("retry" if e.attempt else "send_at")
        return Explanation(send_id=send_id, state="scheduled", rule=rule, earliest=e.due,
                           attempt=e.attempt, route=route.name if route else None)
    if e.where == QUEUED and route is not None:
        return Explanation(send_id=send_id, state="queued", rule=_route_rule(dispatch, route, now),
                           earliest=_queued_eta(dispatch, route, e, now), route=route.name, attempt=e.attempt)
    return Explanation(send_id=send_id, state="in_flight", rule="provider", attempt=e.attempt,
                       route=route.name if route else None)

def _route_rule(dispatch: Dispatch, route: Route, now: float) -> str:
    if route.blocked_until > now:
        return route.blocked_by
    if dispatch.providers[route.key[0]].in_flight >= dispatch.providers[route.key[0]].spec.max_concurrency:
        return "max_concurrency"
    return "rate_limit"

def _queued_eta(dispatch: Dispatch, route: Route, e: Entry, now: float) -> float:
    """Earliest instant ``e`` may leave its route, counting the sends ahead of it."""
    ahead = 0.0
    for p in route.prios:
        for x in route.queues[p]:
            if x is e:
                # Every unit ahead leaves at the route's rate before this one.
                return max(now, route.gcra.eta(ahead + dispatch.cost(e)), route.blocked_until)
            if x.where == QUEUED:
                ahead += dispatch.cost(x)
    return now
