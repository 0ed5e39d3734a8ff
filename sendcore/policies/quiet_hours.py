"""Quiet hours (R8, R9, R11, R12, R12b): non-transactional sends wait for the recipient's allowed local time.

The channel's quiet window and every applicable jurisdiction rule are combined
into a daily plan; a send leaves only at an instant allowed in every zone of
its locale, and sends released together are spread over the channel's ramp.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any, Sequence, Union

import msgspec

from ..hashing import unit
from ..locale import local_instant, zone_info
from ..locale_types import Locale
from ..send import Origin, Reason
from ..settings import QuietWindow, Settings
from .base import Policy, Stage, Verdicts
from .jurisdictions import AllowedWindow, ForbiddenWeekdays, JurisdictionPack, NoPublicHolidays

__all__ = ["GIVE_UP_AFTER", "NOWHERE", "QuietHours", "allowed_minutes"]

#: How far ahead the search for an allowed instant looks. A plan that allows
#: no instant in all of a send's zones for 14 days never will (every rule
#: repeats within a week, holidays last days): such a send ends ``skipped``
#: with reason ``quiet_hours`` at once rather than waiting forever (R21 over R8).
GIVE_UP_AFTER = 14 * 86400.0
#: The detail of that outcome.
NOWHERE = ("no instant in the next 14 days is outside quiet hours in every one of the recipient's {n} zones; "
           "give the send a timezone (or a resolve_timezone hook) to choose one")
#: Clear a channel's interval cache when it passes this many locales.
MAX_CACHE_KEYS = 200_000

_DAY = 1440
_ONE_DAY = timedelta(days=1)
_TRANSACTIONAL = Origin.TRANSACTIONAL


def allowed_minutes(quiet: Union[QuietWindow, None]) -> list[tuple[int, int]]:
    """The allowed part of a day, as [start, end) minute intervals, around a quiet window.

    A window with start > end wraps past midnight: quiet 20:00-11:00 allows
    [11:00, 20:00). Start == end is an empty window (nothing quiet).
    """
    if quiet is None:
        return [(0, _DAY)]
    start, end = quiet.minutes
    if start == end:
        return [(0, _DAY)]
    if start > end:
        return [(end, start)]
    return [iv for iv in ((0, start), (end, _DAY)) if iv[0] < iv[1]]


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Intersection of two sorted lists of disjoint intervals."""
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            s, e = max(s1, s2), min(e1, e2)
            if s < e:
                out.append((s, e))
    return sorted(out)


class _Plan(msgspec.Struct, frozen=True, gc=False):
    """What one (channel, country, region, origin) allows each local day."""

    windows: tuple[tuple[int, int], ...]  # allowed minutes of an allowed day, sorted, disjoint
    weekdays: frozenset[int]  # forbidden days, Monday = 0
    holidays: tuple[NoPublicHolidays, ...]  # forbidden when any says the local date is a holiday

    def day_intervals(self, zone: str, day: date) -> list[tuple[float, float]]:
        """The allowed instants of local ``day`` in ``zone``; boundaries resolved by R11."""
        if day.weekday() in self.weekdays or any(h.is_holiday(day) for h in self.holidays):
            return []
        out = []
        for a, b in self.windows:
            s, e = local_instant(day, a, zone), local_instant(day, b, zone)
            if s < e:  # a window lying wholly in a skipped hour allows nothing that day
                out.append((s, e))
        return out


def _zone_interval(plan: _Plan, zone: str, c: float, limit: float) -> Union[tuple[float, float], None]:
    """In one zone, the allowed interval containing ``c``, else the next one; None if none starts by ``limit``.

    Intervals of consecutive days that touch (an allowed evening and the next
    early morning) are merged, so an interval is always maximal.
    """
    info = zone_info(zone)
    if info is None:
        raise ValueError(f"quiet hours: unknown timezone {zone!r}")
    day = datetime.fromtimestamp(math.floor(c), info).date() - _ONE_DAY
    current: Union[tuple[float, float], None] = None
    while True:
        if local_instant(day, 0, zone) > limit:
            return current if current is not None and current[1] > c else None
        for s, e in plan.day_intervals(zone, day):
            if current is not None and s <= current[1]:
                current = (current[0], max(current[1], e))
                continue
            if current is not None and current[1] > c:
                return current
            if s > limit:
                return None
            current = (s, e)
        day += _ONE_DAY


def _search(plan: _Plan, zones: tuple[str, ...], t: float) -> tuple[float, float, float]:
    """(n, start, end): n is the first instant >= t allowed in every zone; [start, end) the allowed interval holding it.

    The earliest instant allowed in zone A may be forbidden in zone B, so the
    candidate moves forward to the next start in whichever zone refuses it,
    until all zones agree. Runtime: a few days of intervals per zone.
    """
    limit = t + GIVE_UP_AFTER
    c = t
    while c < limit:
        start, end = -math.inf, math.inf
        for zone in zones:
            interval = _zone_interval(plan, zone, c, limit)
            if interval is None:
                return limit, limit, limit
            s, e = interval
            if s > c:
                c = s
                break
            start, end = max(start, s), min(end, e)
        else:
            return c, start, end
    # Give up: the bound itself with an empty interval, which check() reads
    # as "never" (see GIVE_UP_AFTER).
    return limit, limit, limit


class _ChannelRules(msgspec.Struct, gc=False):
    """Per channel: its ramp, whether anything restricts it, and the interval cache."""

    ramp: float
    quiet: list[tuple[int, int]]
    restricted: bool
    origin_matters: bool
    packs: bool  # some jurisdiction pack restricts the channel (it applies even with quiet_hours=False)
    # origin key -> Locale -> (forbidden_from, start, end): instants in
    # [forbidden_from, start) wait until start; instants in [start, end) may leave.
    intervals: dict


class QuietHours(Policy):
    """Defers non-transactional sends that are due while quiet hours hold in any of the recipient's zones.

    Built as ``QuietHours(settings, packs)``. Per channel the allowed time is
    the complement of ``settings.channel(name).quiet_hours`` intersected with
    every rule of ``packs`` that applies to the locale's country and region
    (windows, forbidden weekdays, public holidays). Runs at admission and again
    at dispatch (R12). Hot path: a dict lookup and two comparisons per send
    while its (channel, locale) stays inside the cached allowed interval.
    """

    name = "quiet_hours"
    stages = Stage.ADMIT | Stage.DISPATCH

    def __init__(self, settings: Settings, packs: Sequence[JurisdictionPack] = ()) -> None:
        self.settings = settings
        self.packs = tuple(packs)
        self._channels: dict[str, _ChannelRules] = {}
        self._plans: dict[tuple, Union[_Plan, None]] = {}
        self._default_locale = Locale(zones=(settings.default_timezone,))

    # Plans

    def _channel(self, channel: str) -> _ChannelRules:
        rules = self._channels.get(channel)
        if rules is None:
            resolved = self.settings.channel(channel)
            quiet = allowed_minutes(resolved.quiet_hours)
            pack_rules = [r for p in self.packs for r in p.rules if channel in r.channels
                          and isinstance(r, (AllowedWindow, ForbiddenWeekdays, NoPublicHolidays))]
            rules = self._channels[channel] = _ChannelRules(
                ramp=resolved.ramp,
                quiet=quiet,
                restricted=quiet != [(0, _DAY)] or bool(pack_rules),
                packs=bool(pack_rules),
                origin_matters=any(set(r.origins) != {"flow", "campaign"} for r in pack_rules),
                intervals={},
            )
        return rules

    def _plan(self, channel: str, locale: Locale, origin: Union[str, None],
              packs_only: bool = False) -> Union[_Plan, None]:
        key = (channel, locale.country, locale.region, origin, packs_only)
        if key in self._plans:
            return self._plans[key]
        # A send with quiet_hours=False lifts the channel's own window, never a jurisdiction's (R9).
        windows = [(0, _DAY)] if packs_only else list(self._channel(channel).quiet)
        weekdays: set[int] = set()
        holidays: list[NoPublicHolidays] = []
        for pack in self.packs:
            for rule in pack.time_rules(channel, locale.country, locale.region, origin):
                if isinstance(rule, AllowedWindow):
                    windows = _intersect(windows, [rule.minutes])
                elif isinstance(rule, ForbiddenWeekdays):
                    weekdays |= rule.weekday_numbers
                elif isinstance(rule, NoPublicHolidays):
                    holidays.append(rule)
        if windows == [(0, _DAY)] and not weekdays and not holidays:
            plan = None
        else:
            plan = _Plan(windows=tuple(windows), weekdays=frozenset(weekdays), holidays=tuple(holidays))
        self._plans[key] = plan
        return plan

    # The question

    def _interval(self, channel: str, locale: Locale, t: float, origin: Union[str, None],
                  packs_only: bool = False) -> tuple[float, float]:
        """(n, end): the first allowed instant >= t, and the end of the allowed interval holding it."""
        rules = self._channels.get(channel) or self._channel(channel)
        okey = origin if rules.origin_matters else None
        ckey = (okey, True) if packs_only else okey
        cache = rules.intervals.get(ckey)
        if cache is None:
            cache = rules.intervals[ckey] = {}
        entry = cache.get(locale)
        if entry is not None:
            if entry[1] <= t < entry[2]:
                return t, entry[2]
            if entry[0] <= t < entry[1]:
                return entry[1], entry[2]
        plan = self._plan(channel, locale, okey, packs_only)
        if plan is None:
            entry = (-math.inf, -math.inf, math.inf)
        else:
            n, start, end = _search(plan, locale.zones, t)
            entry = (t, n, end) if n > t else (start, start, end)
        if len(cache) >= MAX_CACHE_KEYS:
            cache.clear()
        cache[locale] = entry
        return (t, entry[2]) if entry[1] <= t else (entry[1], entry[2])

    def next_allowed(self, channel: str, locale: Locale, t: float, origin: Union[str, None] = None) -> float:
        """``t`` if a non-transactional send on ``channel`` may leave at ``t`` in every zone of ``locale``,
        else the first instant after ``t`` allowed in all of them at once.

        ``origin`` ("flow"/"campaign") selects the pack rules scoped to it;
        None applies every rule. Boundaries that a DST change skips or
        repeats resolve to the earliest valid instant after them (R11). Gives up
        after GIVE_UP_AFTER and returns that bound. Warm: one dict lookup and
        two comparisons.
        """
        return self._interval(channel, locale, t, origin)[0]

    def allowed_until(self, channel: str, locale: Locale, t: float, origin: Union[str, None] = None) -> float:
        """End of the allowed interval that ``next_allowed`` lands in (for explain and tests)."""
        return self._interval(channel, locale, t, origin)[1]

    def check(self, entries: list, now: float, stage: Stage, verdicts: Verdicts) -> list:
        """Keep the entries allowed now; defer the others to the next allowed instant plus their ramp offset.

        The offset (R12b) is ``ramp * u`` with ``u`` from the CRC-32 of the send
        id (deterministic per send), shrunk to the allowed interval when that is
        shorter than the ramp, so a deferred send never lands in quiet time.
        Runtime: O(len(entries)), a dict lookup per entry on a warm cache.
        """
        kept = []
        append = kept.append
        channels = self._channels
        interval = self._interval
        default = self._default_locale
        for e in entries:
            s = e.send
            if s.origin is _TRANSACTIONAL:
                append(e)
                continue
            rules = channels.get(s.channel) or self._channel(s.channel)
            if not s.quiet_hours:
                # The send lifts the channel's quiet hours; the jurisdiction packs still apply.
                if rules.packs:
                    self._packs_only(e, now, rules, verdicts, kept)
                else:
                    append(e)
                continue
            if not rules.restricted:
                append(e)
                continue
            loc = e.locale or default
            origin = s.origin.value if rules.origin_matters else None
            # Inline fast path of _interval: inside the cached allowed interval.
            cache = rules.intervals.get(origin)
            cached = cache.get(loc) if cache is not None else None
            if cached is not None and cached[1] <= now < cached[2]:
                append(e)
                continue
            n, end = interval(s.channel, loc, now, origin)
            if n <= now:
                append(e)
                continue
            if end <= n:
                verdicts.skip(e, Reason.QUIET_HOURS, NOWHERE.format(n=len(loc.zones)))
                continue
            u = unit(s.id)
            verdicts.defer(e, n + min(rules.ramp, end - n) * u, Reason.QUIET_HOURS)
        return kept

    def _packs_only(self, e: Any, now: float, rules: _ChannelRules, verdicts: Verdicts, kept: list) -> None:
        s = e.send
        loc = e.locale or self._default_locale
        origin = s.origin.value if rules.origin_matters else None
        n, end = self._interval(s.channel, loc, now, origin, packs_only=True)
        if n <= now:
            kept.append(e)
            return
        if end <= n:
            verdicts.skip(e, Reason.QUIET_HOURS, NOWHERE.format(n=len(loc.zones)))
            return
        u = unit(s.id)
        verdicts.defer(e, n + min(rules.ramp, end - n) * u, Reason.QUIET_HOURS)
