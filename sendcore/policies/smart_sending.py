"""Smart sending (R4): skip a message if the recipient got one on the channel recently."""

from __future__ import annotations

from ..history import History
from ..send import Origin, Reason
from ..settings import Settings
from .base import Policy, Stage, Verdicts

__all__ = ["SmartSending"]


class SmartSending(Policy):
    """Skip flow and campaign sends within the channel's window of the last attempt.

    Evaluated at dispatch, against attempts (sends handed to a provider), not
    deliveries. Off per channel with a "0s" window, per origin with
    ``smart_sending_origins`` and per send with ``smart_sending=False``. A
    retry of a send that already holds its reservation is not re-checked.
    """

    name = "smart_sending"
    stages = Stage.DISPATCH

    def __init__(self, settings: Settings, history: History) -> None:
        self.history = history
        self._windows: dict[str, tuple[float, frozenset[str]]] = {}
        self._settings = settings

    def window(self, channel: str) -> tuple[float, frozenset[str]]:
        """(window seconds, origins it applies to) for ``channel``."""
        got = self._windows.get(channel)
        if got is None:
            ch = self._settings.channel(channel)
            got = self._windows[channel] = (ch.smart_sending_window, ch.smart_sending_origins)
        return got

    def check(self, entries, now, stage, verdicts: Verdicts):
        """Keep entries whose recipient had no attempt on the channel within the window."""
        last = self.history.last_marketing
        kept = []
        append = kept.append
        transactional = Origin.TRANSACTIONAL
        windows = self._windows
        for e in entries:
            s = e.send
            if s.origin is transactional or not s.smart_sending or e.reserved:
                append(e)
                continue
            w = windows.get(s.channel) or self.window(s.channel)
            book = last.get(s.channel)
            if w[0] > 0 and book is not None and s.origin in w[1]:
                t = book.get(s.recipient)
                if t is not None and now - t < w[0]:
                    verdicts.skip(e, Reason.SMART_SENDING)
                    continue
            append(e)
        return kept
