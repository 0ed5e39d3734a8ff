"""Cross-channel spacing (R6): no <before> send within a gap after an <after> send."""

from __future__ import annotations

from ..history import History
from ..send import Reason
from ..settings import Spacing as SpacingRule
from .base import Policy, Stage, Verdicts

__all__ = ["Spacing"]


class Spacing(Policy):
    """Defer a send to the end of the gap after the recipient's last send on another channel.

    "No marketing SMS within 1 h of an email": the SMS waits, it is not
    skipped. Every origin of the earlier send counts; the rule applies to the
    origins it lists (flow and campaign by default).
    """

    name = "spacing"
    stages = Stage.DISPATCH

    def __init__(self, rules: list[SpacingRule], history: History) -> None:
        self.history = history
        self.by_channel: dict[str, list[SpacingRule]] = {}
        for r in rules:
            self.by_channel.setdefault(r.before, []).append(r)

    def check(self, entries, now, stage, verdicts: Verdicts):
        """Keep entries outside every applicable gap; defer the others to the gap's end."""
        by_channel = self.by_channel
        if not by_channel:
            return entries
        last_any = self.history.last_any
        kept = []
        append = kept.append
        for e in entries:
            s = e.send
            rules = by_channel.get(s.channel)
            if rules is None or e.reserved:
                append(e)
                continue
            until = 0.0
            for r in rules:
                if s.origin in r.origins:
                    t = last_any.get(r.after, {}).get(s.recipient)
                    if t is not None and now - t < r.gap and t + r.gap > until:
                        until = t + r.gap
            if until > now:
                verdicts.defer(e, until, Reason.SPACING)
            else:
                append(e)
        return kept
