"""Frequency caps (R5): at most N sends per window per recipient, rolling or calendar."""

from __future__ import annotations

from ..history import History
from ..send import Reason
from .base import Policy, Stage, Verdicts

__all__ = ["FrequencyCaps"]


class FrequencyCaps(Policy):
    """Skip (or defer, if the rule says so) a send that would exceed a cap rule.

    Rolling windows count attempts in the last ``window`` seconds; calendar
    windows ("day", "week", "month") count attempts since the start of the
    period in the recipient's first zone. Jurisdiction packs add rules here
    with ``countries``/``regions`` set.
    """

    name = "frequency_cap"
    stages = Stage.DISPATCH

    def __init__(self, history: History) -> None:
        self.history = history

    def _window_start(self, i: int, now: float, zone: str) -> tuple[float, float]:
        """(start of counting, end of the current window) for rule ``i`` at ``now``."""
        cap = self.history.caps[i]
        cal = cap.calendar
        if cal is None:
            return now - float(cap.window), now + float(cap.window)
        from ..locale import period_bounds

        return period_bounds(now, zone, cal)

    def check(self, entries, now, stage, verdicts: Verdicts):
        """Keep entries under every applicable cap. O(n × rules in scope)."""
        h = self.history
        if not h.caps:
            return entries
        caps, logs = h.caps, h.cap_logs
        kept = []
        append = kept.append
        for e in entries:
            s = e.send
            rules = h.cap_rules_for(s.channel, s.origin)
            if not rules or e.reserved:
                append(e)
                continue
            loc = e.locale
            country = loc.country if loc is not None else None
            region = loc.region if loc is not None else None
            blocked = None
            for i in rules:
                cap = caps[i]
                log = logs[i].get(s.recipient)
                if not log or len(log) < cap.max or not h.cap_applies(cap, s, country, region):
                    continue
                start, end = self._window_start(i, now, loc.zones[0] if loc is not None else "UTC")
                # Drop attempts that no later window of this rule can count
                # (rolling windows count t > start, calendar periods t >= start).
                rolling = cap.calendar is None
                while log and (log[0] <= start if rolling else log[0] < start):
                    del log[0]
                counted = len(log)
                if counted >= cap.max:
                    if cap.action == "defer":
                        if cap.calendar is None:
                            # The cap frees when the oldest counted attempt leaves the window.
                            until = log[counted - cap.max] + float(cap.window)
                        else:
                            until = end
                        blocked = ("defer", until, cap)
                        break
                    blocked = ("skip", 0.0, cap)
                    break
            if blocked is None:
                append(e)
            elif blocked[0] == "skip":
                verdicts.skip(e, Reason.FREQUENCY_CAP, blocked[2].name or f"max {blocked[2].max} per {blocked[2].window}")
            else:
                verdicts.defer(e, blocked[1], Reason.FREQUENCY_CAP, blocked[2].name)
        return kept
