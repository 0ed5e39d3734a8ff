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
from typing import TYPE_CHECKING, Any, Callable, Protocol, Union

if TYPE_CHECKING:
    from ..history import History
    from ..ledger import Entry
    from ..send import Reason
    from ..settings import Settings
    from .error_segment import ErrorSegment
    from .jurisdictions import JurisdictionPack
    from .suppression import Suppression

__all__ = ["Policy", "PolicyContext", "PolicyFactory", "Stage", "Verdicts", "build_policy", "check_policy", "is_factory"]


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


class PolicyContext:
    """What a policy factory builds its policy from: one core's settings and the state it shares with it.

    A core is built from its own settings (at start, and again from the
    journal's recorded settings at recovery), so a policy that depends on
    settings is registered as a factory and built once per core.
    """

    __slots__ = ("settings", "history", "packs", "suppression", "error_segment")

    def __init__(self, settings: Settings, history: History, packs: list[JurisdictionPack],
                 suppression: Suppression, error_segment: ErrorSegment) -> None:
        #: The core's settings.
        self.settings = settings
        #: What was sent to whom and when (frequency caps, smart sending, spacing).
        self.history = history
        #: The jurisdiction packs the settings name, loaded.
        self.packs = packs
        #: The core's suppression list (``Core.suppress`` and provider answers write to it).
        self.suppression = suppression
        #: The core's error segment (R13; provider answers write to it).
        self.error_segment = error_segment


#: A callable that builds a policy for one core: ``factory(context) -> Policy``.
PolicyFactory = Callable[[PolicyContext], Policy]


def is_factory(obj: Any) -> bool:
    """True if ``obj`` is a policy factory (a callable without ``check``), not a policy."""
    return callable(obj) and not hasattr(obj, "check")


def check_policy(obj: Any) -> Union[str, None]:
    """What keeps ``obj`` from being a policy the core can call, or None if nothing does."""
    if not isinstance(getattr(obj, "name", None), str) or not obj.name:
        return "without a `name` (a non-empty str)"
    if not callable(getattr(obj, "check", None)):
        return "without a `check(entries, now, stage, verdicts)` method"
    if getattr(obj, "stages", None) is None:
        return "without `stages` (sendcore.policies.base.Stage flags)"
    return None


def build_policy(item: Any, context: PolicyContext) -> Policy:
    """``item`` if it is a policy, else the policy its factory builds for ``context``; TypeError if neither."""
    if is_factory(item):
        label = getattr(item, "__qualname__", repr(item))
        got = item(context)
        problem = check_policy(got)
        if problem:
            raise TypeError(f"policy factory {label} returned {type(got).__name__} {problem}")
        return got  # type: ignore[no-any-return]
    problem = check_policy(item)
    if problem:
        raise TypeError(f"policy {type(item).__name__} {problem}")
    return item  # type: ignore[no-any-return]
