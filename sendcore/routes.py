"""Route queues and GCRA pacing (R16, R3, R18 pushback).

A route is (provider, channel, sender, carrier): batches never mix them (R19).
Each route holds one FIFO per priority, so a higher-priority send never waits
behind a lower one (R3), and a GCRA bucket that paces it.

GCRA (the generic cell rate algorithm, virtual-scheduling form)
----------------------------------------------------------------
With rate r and burst b, the emission interval is T = 1/r and the bucket
depth is b·T. ``tat`` is the theoretical arrival time: the instant the bucket
would be empty again. Sending u units at t is allowed when

    max(tat, t) + u·T - t <= b·T        and then   tat = max(tat, t) + u·T

Worked example, r = 10/s, b = 3 (T = 0.1 s, depth 0.3 s), idle at t = 0:
3 units leave at once (tat 0.3); the 4th waits until tat + T - depth = 0.1;
after that one unit every 0.1 s. Over any window of length W the route sends
at most b + r·W units, and it never idles while units are waiting and the
bucket has room: the ready time it reports is exact, not polled.
SMS routes count segments, as carriers do; other channels count messages.

Complexity: ``available``, ``take`` and ``ready_at`` are O(1).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Iterable, Union

from .ledger import Entry
from .settings import RouteLimit

__all__ = ["Gcra", "Route", "RouteKey", "limits_for"]

RouteKey = tuple[str, str, str, str]  # provider, channel, sender, carrier

INF = math.inf


class Gcra:
    """A GCRA bucket. ``rate`` <= 0 means unlimited.

    ``tat`` is kept relative to ``base`` (the first instant seen), so adding
    the interval millions of times happens at small magnitudes and does not
    drift: at epoch magnitudes each addition would round to 2.4e-7 s.
    """

    __slots__ = ("interval", "depth", "tat", "base")

    def __init__(self, rate: float, burst: int) -> None:
        if rate and rate > 0:
            self.interval = 1.0 / rate
            self.depth = max(1, burst or 1) * self.interval
        else:
            self.interval = 0.0
            self.depth = INF
        self.tat = -INF
        self.base: Union[float, None] = None

    @property
    def unlimited(self) -> bool:
        """True when the bucket never holds anything back."""
        return self.interval == 0.0

    def available(self, now: float) -> float:
        """Units that may leave at ``now`` (inf when unlimited). O(1)."""
        if self.interval == 0.0:
            return INF
        if self.base is None:
            self.base = now
        r = now - self.base
        tat = self.tat if self.tat > r else r
        # ``ready_at`` returns base + x rounded to the ulp of epoch magnitudes
        # (2.4e-7 s at 1.8e9); ``now - base`` is exact (Sterbenz), so the only
        # error is that half-ulp. A slack of 1.4 ulps, in units, keeps a unit
        # that ``ready_at`` says is due from reading as 0.99999 here (which
        # would wake the route at the same instant forever) while letting
        # nothing out more than ~0.3 µs early.
        slack = 1e-12 + 3e-16 * abs(now) / self.interval
        return math.floor((r + self.depth - tat) / self.interval + slack)

    def take(self, now: float, units: float) -> None:
        """Spend ``units`` at ``now``. O(1)."""
        if self.interval:
            if self.base is None:
                self.base = now
            r = now - self.base
            tat = self.tat if self.tat > r else r
            self.tat = tat + units * self.interval

    def ready_at(self, units: float) -> float:
        """The earliest instant ``units`` may leave (may be in the past). O(1).

        A request larger than the burst waits for an empty bucket and then
        leaves whole, so one long SMS never blocks a route for good.
        """
        if self.interval == 0.0 or self.base is None:
            return -INF
        need = min(units * self.interval, self.depth)
        return self.base + (self.tat + need - self.depth)

    def eta(self, units: float) -> float:
        """When the last of ``units`` queued units would leave at this rate (for explain)."""
        if self.interval == 0.0 or self.base is None:
            return -INF
        return self.base + (self.tat + units * self.interval - self.depth)


class Route:
    """One (provider, channel, sender, carrier) queue with its pacing state."""

    __slots__ = (
        "key",
        "queues",
        "prios",
        "size",
        "gcra",
        "daily_cap",
        "daily_zone",
        "day_end",
        "day_count",
        "blocked_until",
        "blocked_by",
        "scheduled_at",
        "sent_units",
        "burst_units",
        "is_sms",
        "provider",
    )

    def __init__(self, key: RouteKey, limit: Union[RouteLimit, None], default_rate: Union[float, None],
                 default_burst: Union[int, None], default_daily_cap: int) -> None:
        self.key = key
        self.queues: dict[int, deque[Entry]] = {}
        self.prios: list[int] = []
        self.size = 0
        if limit is not None:
            rate, burst, cap, zone = limit.rate, limit.burst, limit.daily_cap, limit.daily_cap_timezone
        else:
            rate, burst, cap, zone = default_rate or 0.0, default_burst or 0, default_daily_cap, "UTC"
        if rate and not burst:
            burst = max(1, int(rate // 10) or 1)
        self.gcra = Gcra(rate or 0.0, burst or 1)
        self.daily_cap = cap or 0
        self.daily_zone = zone
        self.day_end = -INF
        self.day_count = 0
        #: Nothing leaves before this instant (daily cap reached or provider pushback).
        self.blocked_until = -INF
        #: Why it is blocked: "daily_cap" or "rate_limited" (provider pushback, R18).
        self.blocked_by = ""
        #: The wake-up time this route is filed under in the core's ready heap (None: not filed).
        self.scheduled_at: Union[float, None] = None
        self.sent_units = 0
        #: The bucket's depth in units (inf when unlimited).
        self.burst_units = self.gcra.depth / self.gcra.interval if self.gcra.interval else INF
        #: Whether the route counts SMS segments rather than messages.
        self.is_sms = key[1] == "sms"
        #: The core's per-provider state (in-flight count), set by the core.
        self.provider: object = None

    def __repr__(self) -> str:
        return f"<Route {'/'.join(self.key)} queued={self.size}>"

    @property
    def name(self) -> str:
        """"provider/channel/sender/carrier", for explain and reports."""
        return "/".join(p or "-" for p in self.key)

    def push(self, prio: int, entry: Entry) -> None:
        """Queue ``entry`` behind sends of the same priority. O(1)."""
        q = self.queues.get(prio)
        if q is None:
            q = self.queues[prio] = deque()
            self.prios = sorted(self.queues)
        q.append(entry)
        self.size += 1

    def push_front(self, prio: int, entries: Iterable[Entry]) -> None:
        """Put entries back at the head of their priority queue, keeping their order."""
        q = self.queues.get(prio)
        if q is None:
            q = self.queues[prio] = deque()
            self.prios = sorted(self.queues)
        items = list(entries)
        q.extendleft(reversed(items))
        self.size += len(items)

    def head_prio(self) -> Union[int, None]:
        """The priority of the next send to leave, or None if empty."""
        for p in self.prios:
            if self.queues[p]:
                return p
        return None


def limits_for(routes: list[RouteLimit], provider: str, sender: str, carrier: str) -> Union[RouteLimit, None]:
    """The most specific ``[[routes]]`` entry matching, or None (R16)."""
    best = None
    for r in routes:
        if (r.provider in ("*", provider)) and (r.sender in ("*", sender)) and (r.carrier in ("*", carrier)):
            if best is None or r.specificity > best.specificity:
                best = r
    return best
