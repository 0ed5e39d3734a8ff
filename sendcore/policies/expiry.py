"""Expiry (R15): a send that cannot leave before its ``expires_at`` is skipped."""

from __future__ import annotations

from ..send import Reason
from .base import Policy, Stage, Verdicts

__all__ = ["Expiry"]


class Expiry(Policy):
    """Skip sends whose validity has passed, wherever they wait (R15).

    The core also skips a send at once when a deferral or retry would take it
    past ``expires_at``; this policy catches the ones that expire while due.
    """

    name = "expiry"
    stages = Stage.ADMIT | Stage.DISPATCH

    def check(self, entries, now, stage, verdicts: Verdicts):
        """Keep entries without ``expires_at`` or not yet expired. O(n)."""
        kept = []
        append = kept.append
        skip = verdicts.skip
        for e in entries:
            exp = e.send.expires_at
            if exp is not None and exp <= now:
                skip(e, Reason.EXPIRED)
            else:
                append(e)
        return kept
