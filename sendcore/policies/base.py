"""The one small interface every policy implements, and the verdicts it can give.

A policy looks at a list of entries in priority order and returns the ones it
lets through. For every entry it holds back it calls exactly one of
``verdicts.skip`` (a final outcome) or ``verdicts.defer`` (back into the timing
wheel until an instant). Policies never mutate entries and never do I/O; they
run inside the core's hot path, so they bind what they need to locals and avoid
per-send exceptions and logging.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..ledger import Entry
    from ..send import Reason

__all__ = ["Policy", "Stage", "Verdicts"]


class Stage(enum.IntFlag):
    """When a policy runs: as a send comes due (ADMIT) or as it leaves its route queue (DISPATCH)."""

    ADMIT = 1
    DISPATCH = 2


class Verdicts(Protocol):
    """What a policy reports for each entry it does not let through."""

    def skip(self, entry: Entry, reason: Reason, detail: str = "") -> None:
        """End the send with outcome ``skipped`` and this reason."""

    def defer(self, entry: Entry, until: float, reason: Reason, detail: str = "") -> None:
        """Hold the send until ``until`` (epoch seconds), then admit it again."""


class Policy:
    """Base class of policies. Subclasses set ``name`` and ``stages`` and implement ``check``."""

    #: The rule family, used in ``explain`` and the policy list.
    name: str = "policy"
    #: The stages at which ``check`` runs.
    stages: Stage = Stage.ADMIT | Stage.DISPATCH

    def check(self, entries: list[Entry], now: float, stage: Stage, verdicts: Verdicts) -> list[Entry]:
        """Return the entries allowed to go on, in the order given.

        Every entry not returned must have had exactly one ``verdicts.skip`` or
        ``verdicts.defer`` call. Runtime complexity: O(len(entries)).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} stages={self.stages!r}>"
