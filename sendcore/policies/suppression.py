"""Suppression (R14): addresses that opted out (``marketing``) or cannot receive (``all``)."""

from __future__ import annotations

from typing import Literal

from ..send import Origin, Reason
from .base import Policy, Stage, Verdicts

__all__ = ["Suppression"]

Scope = Literal["marketing", "all"]


class Suppression(Policy):
    """The suppression list per channel and address, and the policy that applies it.

    ``marketing`` stops flow and campaign sends; ``all`` (invalid number,
    landline, hard bounce) stops every send, transactional included. Checked
    as a send comes due and again as it leaves, so an opt-out counts at once.
    """

    name = "suppression"
    stages = Stage.ADMIT | Stage.DISPATCH

    def __init__(self) -> None:
        #: channel -> address -> scope
        self.entries: dict[str, dict[str, str]] = {}

    def add(self, channel: str, address: str, scope: Scope) -> None:
        """Suppress ``address`` on ``channel``; ``all`` is never narrowed to ``marketing``."""
        if scope not in ("marketing", "all"):
            raise ValueError(f"scope: expected 'marketing' or 'all', got {scope!r}")
        book = self.entries.setdefault(channel, {})
        if book.get(address) != "all":
            book[address] = scope

    def remove(self, channel: str, address: str) -> bool:
        """Lift any suppression of ``address`` on ``channel``; True if there was one."""
        return self.entries.get(channel, {}).pop(address, None) is not None

    def scope_of(self, channel: str, address: str) -> str | None:
        """The scope suppressing ``address`` on ``channel``, or None."""
        return self.entries.get(channel, {}).get(address)

    def check(self, entries, now, stage, verdicts: Verdicts):
        """Keep entries whose address is not suppressed for their origin. O(n)."""
        books = self.entries
        if not books:
            return entries
        kept = []
        append = kept.append
        transactional = Origin.TRANSACTIONAL
        for e in entries:
            s = e.send
            book = books.get(s.channel)
            scope = book.get(s.to) if book else None
            if scope is None or (scope == "marketing" and s.origin is transactional):
                append(e)
            else:
                verdicts.skip(e, Reason.SUPPRESSED, scope)
        return kept
