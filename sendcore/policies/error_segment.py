"""Error segment (R13): addresses with a recent temporary delivery error skip campaigns."""

from __future__ import annotations

from ..send import Reason
from ..settings import ErrorSegmentSettings
from .base import Policy, Stage, Verdicts

__all__ = ["ErrorSegment"]


class ErrorSegment(Policy):
    """Skip sends of the configured origins (campaign by default) to erroring addresses.

    An address joins the segment on a channel when a provider answers a
    temporary failure for it, and stays for ``window`` (30 days by default).
    Flows and transactional sends are not excluded unless configured.
    """

    name = "error_segment"
    stages = Stage.ADMIT

    def __init__(self, settings: ErrorSegmentSettings) -> None:
        self.window = float(settings.window)
        self.origins = frozenset(settings.origins)
        self.channels = frozenset(settings.channels) if settings.channels is not None else None
        #: channel -> address -> time of the last temporary error
        self.errors: dict[str, dict[str, float]] = {}

    def note_error(self, channel: str, address: str, at: float) -> None:
        """Record a temporary delivery error for ``address`` on ``channel``."""
        book = self.errors.get(channel)
        if book is None:
            book = self.errors[channel] = {}
        book[address] = at

    def in_segment(self, channel: str, address: str, now: float) -> bool:
        """Whether ``address`` is in the error segment of ``channel`` at ``now``."""
        t = self.errors.get(channel, {}).get(address)
        return t is not None and now - t < self.window

    def check(self, entries, now, stage, verdicts: Verdicts):
        """Keep entries not in the segment, or of origins the segment does not exclude."""
        errors = self.errors
        if not errors or self.window <= 0:
            return entries
        kept = []
        append = kept.append
        origins, channels, window = self.origins, self.channels, self.window
        for e in entries:
            s = e.send
            book = errors.get(s.channel)
            # A retry is not excluded by the error its own earlier attempt recorded (R18 over R13).
            if book is not None and not e.attempt and s.origin in origins and (channels is None or s.channel in channels):
                t = book.get(s.to)
                if t is not None and now - t < window:
                    verdicts.skip(e, Reason.ERROR_SEGMENT)
                    continue
            append(e)
        return kept
