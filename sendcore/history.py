"""Per-recipient send history: what smart sending, frequency caps and spacing count.

A send is written into the history when it is handed to a provider (an
attempt, R4), which *reserves* the recipient for the next decision (R7). The
reservation is released if the provider rejects the send permanently or it
finally fails, restoring the history as if the send had never been tried.
"""

from __future__ import annotations

from typing import Sequence, Union

from .send import Origin, Send
from .settings import FrequencyCap, Spacing

__all__ = ["History", "Reservation"]

_TRANSACTIONAL = Origin.TRANSACTIONAL

# (channel, previous last-marketing time, previous last-any time, cap rule indexes, time)
Reservation = tuple[str, Union[float, None], Union[float, None], tuple[int, ...], float]


class History:
    """Send times per recipient and channel, and per frequency-cap rule.

    ``last_marketing[channel][recipient]``: the last non-transactional attempt
    (smart sending). ``last_any[channel][recipient]``: the last attempt of any
    origin, kept only for channels that start a spacing rule. ``cap_logs[i]
    [recipient]``: attempt times counted by cap rule ``i``, oldest first.
    """

    __slots__ = ("last_marketing", "last_any", "cap_logs", "caps", "_any_channels", "_cap_scope")

    def __init__(self, caps: Sequence[FrequencyCap], spacing: Sequence[Spacing]) -> None:
        self.caps = list(caps)
        self.last_marketing: dict[str, dict[str, float]] = {}
        self.last_any: dict[str, dict[str, float]] = {}
        self.cap_logs: list[dict[str, list[float]]] = [{} for _ in self.caps]
        self._any_channels = frozenset(s.after for s in spacing)
        # Per (channel, origin): the rules that may count such a send (tags,
        # countries and regions are checked per send, rarely set).
        self._cap_scope: dict[tuple[str, str], tuple[int, ...]] = {}

    def cap_rules_for(self, channel: str, origin: str) -> tuple[int, ...]:
        """Indexes of the cap rules whose channel and origins cover this kind of send."""
        key = (channel, origin)
        got = self._cap_scope.get(key)
        if got is None:
            got = tuple(
                i
                for i, c in enumerate(self.caps)
                if (c.channel is None or c.channel == channel) and origin in c.origins
            )
            self._cap_scope[key] = got
        return got

    @staticmethod
    def cap_applies(cap: FrequencyCap, send: Send, country: Union[str, None], region: Union[str, None]) -> bool:
        """Whether ``cap``'s tag and place filters select this send."""
        if cap.tags and not any(t in cap.tags for t in send.tags):
            return False
        if cap.countries and country not in cap.countries:
            return False
        if cap.regions and region not in cap.regions:
            return False
        return True

    def reserve(self, send: Send, now: float, country: Union[str, None], region: Union[str, None]) -> Reservation:
        """Count ``send`` as attempted at ``now``; return what ``release`` needs to undo it."""
        channel = send.channel
        recipient = send.recipient
        prev_m = prev_a = None
        if send.origin is not _TRANSACTIONAL:
            lm = self.last_marketing.get(channel)
            if lm is None:
                lm = self.last_marketing[channel] = {}
            prev_m = lm.get(recipient)
            lm[recipient] = now
        if channel in self._any_channels:
            la = self.last_any.get(channel)
            if la is None:
                la = self.last_any[channel] = {}
            prev_a = la.get(recipient)
            la[recipient] = now
        rules = self.cap_rules_for(channel, send.origin)
        counted = self._count(rules, send, now, country, region) if rules else ()
        return (channel, prev_m, prev_a, counted, now)

    def _count(self, rules: tuple[int, ...], send: Send, now: float, country: Union[str, None],
               region: Union[str, None]) -> tuple[int, ...]:
        """Log the attempt in every cap rule of ``rules`` that selects ``send``; return their indexes."""
        hit = []
        caps, logs = self.caps, self.cap_logs
        recipient = send.recipient
        for i in rules:
            if self.cap_applies(caps[i], send, country, region):
                log = logs[i].get(recipient)
                if log is None:
                    logs[i][recipient] = [now]
                else:
                    log.append(now)
                hit.append(i)
        return tuple(hit)

    def reserve_many(self, entries: list, now: float, tokens: dict[str, Reservation]) -> None:
        """``reserve`` every entry not yet reserved, storing its token by send id.

        The batch form of ``reserve`` for the dispatch loop: a chunk shares one
        channel, so the per-channel books are looked up once.
        """
        if not entries:
            return
        channel = entries[0].send.channel
        lm = self.last_marketing.get(channel)
        if lm is None:
            lm = self.last_marketing[channel] = {}
        la = None
        if channel in self._any_channels:
            la = self.last_any.get(channel)
            if la is None:
                la = self.last_any[channel] = {}
        rules_for = self.cap_rules_for
        for e in entries:
            if e.reserved:
                continue
            send = e.send
            recipient = send.recipient
            prev_m = prev_a = None
            if send.channel != channel:  # not from one route: take the general path
                tokens[send.id] = self.reserve(send, now, e.locale.country if e.locale else None,
                                               e.locale.region if e.locale else None)
                e.reserved = True
                continue
            origin = send.origin
            if origin is not _TRANSACTIONAL:
                prev_m = lm.get(recipient)
                lm[recipient] = now
            if la is not None:
                prev_a = la.get(recipient)
                la[recipient] = now
            counted: tuple[int, ...] = ()
            rules = rules_for(channel, origin)
            if rules:
                loc = e.locale
                counted = self._count(rules, send, now, loc.country if loc is not None else None,
                                      loc.region if loc is not None else None)
            tokens[send.id] = (channel, prev_m, prev_a, counted, now)
            e.reserved = True

    def release(self, send: Send, token: Reservation) -> None:
        """Undo a reservation (permanent rejection or final failure, R7)."""
        channel, prev_m, prev_a, counted, at = token
        recipient = send.recipient
        if send.origin is not _TRANSACTIONAL:
            lm = self.last_marketing.get(channel, {})
            # Only roll back if no later attempt overwrote it meanwhile.
            if lm.get(recipient) == at:
                if prev_m is None:
                    del lm[recipient]
                else:
                    lm[recipient] = prev_m
        if channel in self._any_channels:
            la = self.last_any.get(channel, {})
            if la.get(recipient) == at:
                if prev_a is None:
                    del la[recipient]
                else:
                    la[recipient] = prev_a
        for i in counted:
            log = self.cap_logs[i].get(recipient)
            if log:
                for j in range(len(log) - 1, -1, -1):
                    if log[j] == at:
                        del log[j]
                        break
                if not log:
                    del self.cap_logs[i][recipient]
