"""Where a recipient is and what their wall clock says: timezone resolution (R10) and local-time helpers.

All instants are epoch seconds (UTC), all zones IANA names; every wall-clock
time that a DST transition skips or repeats resolves by R11.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta
from typing import Callable, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InputError
from .locale_types import Locale
from .phones import phone_facts, region_of
from .send import Send
from .settings import Settings

__all__ = [
    "LocaleResolver",
    "local_instant",
    "local_to_epoch",
    "period_bounds",
    "zone_info",
]

#: Clear a cache when it passes this many keys (bounded memory).
MAX_CACHE_KEYS = 200_000

_ZONES: dict[str, Union[ZoneInfo, None]] = {}


def zone_info(name: str) -> Union[ZoneInfo, None]:
    """The ``ZoneInfo`` for an IANA name, or None if the name is unknown (cached, no exception per call)."""
    try:
        return _ZONES[name]
    except KeyError:
        pass
    try:
        zone: Union[ZoneInfo, None] = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        zone = None
    _ZONES[name] = zone
    return zone


# Wall clock -> instant (R11)

def _resolve(wall: datetime, zone: ZoneInfo) -> float:
    """The instant a naive wall-clock time names in ``zone``, by R11.

    A time that exists once is that instant; one that repeats (fall back)
    resolves to the earliest of its instants; one that does not exist (spring
    forward) to the earliest valid instant after it, which is the transition
    itself.
    """
    first = wall.replace(tzinfo=zone, fold=0).timestamp()
    second = wall.replace(tzinfo=zone, fold=1).timestamp()
    if first == second:
        return first
    lo, hi = min(first, second), max(first, second)
    if datetime.fromtimestamp(lo, zone).replace(tzinfo=None) == wall:
        return lo  # repeated: the earlier instant
    # Skipped. ``lo`` lies before the transition and ``hi`` after it (each
    # computed with the other side's offset): find the first instant whose
    # offset is the later one, to the second (transitions fall on seconds).
    after = datetime.fromtimestamp(hi, zone).utcoffset()
    a, b = int(lo), int(hi)
    while b - a > 1:
        mid = (a + b) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == after:
            b = mid
        else:
            a = mid
    return float(b)


_INSTANTS: dict[tuple[date, int, str], float] = {}


def local_instant(day: date, minute: int, zone: str) -> float:
    """The instant of wall time ``minute`` minutes after midnight of ``day`` in ``zone`` (R11).

    ``minute`` may be 1440 (the next midnight). Cached: quiet hours and
    calendar periods ask for the same boundaries again and again.
    """
    key = (day, minute, zone)
    t = _INSTANTS.get(key)
    if t is None:
        info = zone_info(zone)
        if info is None:
            raise ValueError(f"unknown timezone {zone!r}")
        wall = datetime(day.year, day.month, day.day) + timedelta(minutes=minute)
        t = _resolve(wall, info)
        if len(_INSTANTS) >= MAX_CACHE_KEYS:
            _INSTANTS.clear()
        _INSTANTS[key] = t
    return t


_WALL = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$")
_LOCAL_SEND_AT: dict[tuple[str, tuple[str, ...]], float] = {}


def _parse_wall(wall: str) -> datetime:
    m = _WALL.match(wall) if isinstance(wall, str) else None
    if m is None:
        shown = wall if isinstance(wall, str) else type(wall).__name__
        if isinstance(wall, str) and re.search(r"(Z|[+-]\d{2}:?\d{2})$", wall):
            raise InputError("local_send_at", f"a local time carries no zone (it is the recipient's), got {shown!r}")
        raise InputError("local_send_at", f"expected a local time like '2027-01-12T10:00', got {shown!r}")
    try:
        return datetime(*(int(g) for g in m.groups(default="0")))
    except ValueError as exc:
        raise InputError("local_send_at", f"{exc} in {wall!r}") from None


def local_to_epoch(wall: str, zones: tuple[str, ...]) -> float:
    """Resolve a zone-less wall time ("2027-01-12T10:00") in each zone; return the latest instant (R8b).

    A skipped wall time resolves to the first valid instant after it, a
    repeated one to the earliest of its instants (R11). Raises ``InputError``
    (a ``ValueError``) naming ``local_send_at`` for a malformed string or one
    that carries a zone. Cached per (wall, zones): a campaign "at 10:00 local"
    asks the same question for every recipient of a zone.
    """
    key = (wall, zones)
    t = _LOCAL_SEND_AT.get(key)
    if t is None:
        naive = _parse_wall(wall)
        instants = []
        for name in zones:
            info = zone_info(name)
            if info is None:
                raise ValueError(f"unknown timezone {name!r}")
            instants.append(_resolve(naive, info))
        if not instants:
            raise ValueError("local_to_epoch: no zone given")
        t = max(instants)
        if len(_LOCAL_SEND_AT) >= MAX_CACHE_KEYS:
            _LOCAL_SEND_AT.clear()
        _LOCAL_SEND_AT[key] = t
    return t


# Calendar periods

Period = Literal["day", "week", "month"]
_PERIODS: dict[tuple[str, str], tuple[float, float]] = {}


def _period_days(day: date, period: str) -> tuple[date, date]:
    """First day of the period containing ``day`` and first day of the next one."""
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())  # weeks start on Monday
        return start, start + timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        return start, (start + timedelta(days=32)).replace(day=1)
    raise ValueError(f"period: expected 'day', 'week' or 'month', got {period!r}")


def period_bounds(t: float, zone: str, period: Period) -> tuple[float, float]:
    """(start, end) instants of the local calendar period containing ``t``; end is exclusive.

    Periods start at local midnight (weeks on Monday), resolved by R11, so a
    local day lasts 23 or 25 hours across a DST change. The last answer per
    (zone, period) is kept: a ``t`` inside it costs a dict lookup and two
    comparisons.
    """
    key = (zone, period)
    bounds = _PERIODS.get(key)
    if bounds is not None and bounds[0] <= t < bounds[1]:
        return bounds
    info = zone_info(zone)
    if info is None:
        raise ValueError(f"unknown timezone {zone!r}")
    # Floor first: fromtimestamp rounds to the microsecond, which could carry an
    # instant a hair before midnight into the next day. Boundaries are whole seconds.
    first, after = _period_days(datetime.fromtimestamp(math.floor(t), info).date(), period)
    bounds = (local_instant(first, 0, zone), local_instant(after, 0, zone))
    if len(_PERIODS) >= MAX_CACHE_KEYS:
        _PERIODS.clear()
    _PERIODS[key] = bounds
    return bounds


# Timezone resolution (R10)


class LocaleResolver:
    """Resolves each send's ``Locale`` by R10 and hands out one shared object per distinct place.

    The zone comes from the send's ``timezone``, else the ``resolve_timezone``
    hook (a zone name or None), else the zones of the phone number in
    ``send.to`` (whatever the channel, if ``to`` is an E.164 number), else
    ``settings.default_timezone``. Country and region always come from the
    number when ``to`` is one. An unknown zone name from the hook is ignored.

    Warm cost for a send with neither ``timezone`` nor a hook: one dict lookup
    by ``to``. Memory: the caches are cleared when they pass MAX_CACHE_KEYS.
    """

    def __init__(self, settings: Settings, resolve_timezone: Union[Callable[[Send], Union[str, None]], None] = None):
        self._default = settings.default_timezone
        self._hook = resolve_timezone
        # to -> Locale from the number alone (its zones, else the default zone)
        self._by_to: dict[str, Locale] = {}
        # (zones, country, region) -> the one shared Locale
        self._shared: dict[tuple[tuple[str, ...], Union[str, None], Union[str, None]], Locale] = {}

    def _intern(self, zones: tuple[str, ...], country: Union[str, None], region: Union[str, None]) -> Locale:
        key = (zones, country, region)
        loc = self._shared.get(key)
        if loc is None:
            if len(self._shared) >= MAX_CACHE_KEYS:
                self._shared.clear()
            loc = self._shared[key] = Locale(zones=zones, country=country, region=region)
        return loc

    def _of_number(self, to: str) -> Locale:
        loc = self._by_to.get(to)
        if loc is None:
            if to[:1] == "+":
                facts = phone_facts(to)
                zones = facts.zones or (self._default,)
                loc = self._intern(zones, facts.country, region_of(to))
            else:
                # Not a phone number (email, push token): the default zone, and no
                # per-address cache entry, which would cost memory per recipient.
                return self._intern((self._default,), None, None)
            if len(self._by_to) >= MAX_CACHE_KEYS:
                self._by_to.clear()
            self._by_to[to] = loc
        return loc

    def resolve(self, send: Send) -> Locale:
        """The send's ``Locale`` (R10); the same object for the same place."""
        zone = send.timezone
        if zone is None:
            if self._hook is None:
                loc = self._by_to.get(send.to)
                return loc if loc is not None else self._of_number(send.to)
            zone = self._hook(send)
            if zone is not None and zone_info(zone) is None:
                zone = None  # a hook's unknown zone: fall through to the number
            if zone is None:
                return self._of_number(send.to)
        base = self._of_number(send.to)
        if base.zones == (zone,):
            return base
        return self._intern((zone,), base.country, base.region)
