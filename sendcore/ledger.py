"""The ledger: every pending send by id, and recently finished ids for idempotency (R1).

A pending send is an ``Entry``: the caller's ``Send`` plus the little state the
core needs (due time, priority, attempt, where it waits and why). Finished
sends keep their final ``Outcome`` for the retention window so a duplicate id is
refused and ``outcome(id)`` can answer.
"""

from __future__ import annotations

from collections import deque
from typing import Iterator, Union

import msgspec

from .locale_types import Locale
from .send import Outcome, Send

__all__ = ["Entry", "Ledger", "SCHEDULED", "QUEUED", "IN_FLIGHT"]

#: Where an entry waits.
SCHEDULED = 0  # in the timing wheel, until ``due``
QUEUED = 1  # in a route queue, waiting for pacing
IN_FLIGHT = 2  # handed to a provider, result not yet recorded

WHERE_NAMES = ("scheduled", "queued", "in_flight")


class Entry(msgspec.Struct, gc=False):
    """One pending send and its scheduling state (mutable, owned by the core).

    ``due`` is when it may next be considered; ``hold`` names the rule that
    last held it back (for ``explain``); ``reserved`` is True while its
    attempt is counted in the recipient's history (R7).
    """

    send: Send
    due: float
    prio: int
    attempt: int = 0
    where: int = SCHEDULED
    hold: Union[str, None] = None
    locale: Union[Locale, None] = None
    route: Union[tuple[str, str, str], None] = None
    reserved: bool = False
