"""Drive the sans-I/O core on virtual time with an in-process provider, for tests and benchmarks."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from ..core import Core
from ..send import Accepted, Batch, Outcome, Result

__all__ = ["InstantProvider", "drive"]


class InstantProvider:
    """A provider function that accepts every send at once, remembering each batch.

    Pass ``answer`` to decide per send: ``answer(send, attempt) -> Result``.
    """

    def __init__(self, answer: Optional[Callable[..., Result]] = None, keep: bool = True) -> None:
        self.answer = answer
        self.keep = keep
        #: (time, batch) for every batch handed over, when ``keep``.
        self.batches: list[tuple[float, Batch]] = []
        self.count = 0

    def __call__(self, batch: Batch, now: float) -> list[Result]:
        """Answer one batch."""
        if self.keep:
            self.batches.append((now, batch))
        self.count += len(batch.sends)
        if self.answer is None:
            return [Accepted(provider_id=s.id) for s in batch.sends]
        return [self.answer(s, a) for s, a in zip(batch.sends, batch.attempts)]

    def sent_at(self) -> list[tuple[float, str]]:
        """(time, send id) for every send handed over, in order."""
        return [(t, s.id) for t, b in self.batches for s in b.sends]


def drive(
    core: Core,
    until: float,
    provider: Optional[Callable[[Batch, float], Sequence[Result]]] = None,
    *,
    start: Optional[float] = None,
    latency: float = 0.0,
    outcomes: Optional[list[Outcome]] = None,
) -> float:
    """Advance ``core`` through every wake-up up to ``until``, answering batches with ``provider``.

    Batches are answered ``latency`` seconds after they leave (0: at once).
    Outcomes are appended to ``outcomes`` if given. Returns the last instant
    reached. Jumps from wake-up to wake-up; never polls.
    """
    provider = provider or InstantProvider(keep=False)
    now = start if start is not None else core._now
    if now == float("-inf"):
        now = core.next_wakeup() or until
    waiting: list[tuple[float, int, Batch]] = []
    import heapq

    seq = 0
    while True:
        w = core.next_wakeup()
        if waiting and (w is None or waiting[0][0] <= w):
            w = waiting[0][0]
        if w is None or w > until:
            break
        now = max(now, w)
        while waiting and waiting[0][0] <= now:
            _, _, b = heapq.heappop(waiting)
            core.record(b, provider(b, now), now)
        for b in core.advance(now):
            if latency > 0:
                seq += 1
                heapq.heappush(waiting, (now + latency, seq, b))
            else:
                core.record(b, provider(b, now), now)
        if outcomes is not None:
            outcomes.extend(core.drain_outcomes())
    if outcomes is not None:
        outcomes.extend(core.drain_outcomes())
    return now
