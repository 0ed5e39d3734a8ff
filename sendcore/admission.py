"""Admission: the policy chains a send passes as it comes due (ADMIT) and as it leaves its route (DISPATCH).

Each stage runs its policies in order over a chunk of entries; a policy keeps
the entries it lets through and gives every other one exactly one verdict
(skip or defer). A policy that raises is isolated: the chunk is decided again
send by send, and only the sends it fails on end ``failed`` / ``error``.
"""

from __future__ import annotations

from typing import Any, Sequence

from .ledger import SCHEDULED, Entry, Ledger
from .policies.base import Policy, Stage, Verdicts
from .send import Reason, Status

__all__ = ["PolicyChain"]


class PolicyChain:
    """The policies of one stage, in order, with the verdicts they report to.

    ``where`` is where the entries of this stage wait (``SCHEDULED`` for
    admission, ``QUEUED`` for dispatch): after a policy raised, an entry no
    longer there (ended or deferred by the failed call) is not decided again.
    """

    __slots__ = ("policies", "stage", "where", "verdicts", "ledger")

    def __init__(self, policies: Sequence[Policy], stage: Stage, where: int, verdicts: Verdicts,
                 ledger: Ledger) -> None:
        self.policies = [p for p in policies if p.stages & stage]
        self.stage = stage
        self.where = where
        self.verdicts = verdicts
        self.ledger = ledger

    def run(self, entries: list[Entry], now: float) -> list[Entry]:
        """The entries every policy lets through, in the order given. O(len(entries)) per policy."""
        for p in self.policies:
            if not entries:
                break
            try:
                entries = p.check(entries, now, self.stage, self.verdicts)
            except Exception:
                entries = self._one_by_one(p, entries, now)
        return entries

    def _one_by_one(self, p: Policy, entries: list[Entry], now: float) -> list[Entry]:
        out: list[Entry] = []
        where, stage, verdicts = self.where, self.stage, self.verdicts
        for e in entries:
            # Sends the failed call already decided (ended, deferred) are not decided again.
            if e.where != where or (where == SCHEDULED and e.due > now):
                continue
            try:
                out.extend(p.check([e], now, stage, verdicts))
            except Exception as exc:
                self.ledger.errors += 1
                self.ledger.finish(e, Status.FAILED, Reason.ERROR, now,
                                   f"policy {getattr(p, 'name', type(p).__name__)!r} raised "
                                   f"{type(exc).__name__}: {exc}")
        return out

    def __repr__(self) -> str:
        names: list[Any] = [getattr(p, "name", type(p).__name__) for p in self.policies]
        return f"<PolicyChain {self.stage.name}: {', '.join(names)}>"
