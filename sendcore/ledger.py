"""The pending-send record: the caller's ``Send`` plus the little state the core needs.

The core keeps entries by id (its ledger, R1) and finished sends' outcomes for
the retention window; this module defines the record and where it can wait.
"""

from __future__ import annotations

from typing import Union

import msgspec

from .locale_types import Locale
from .send import Send

__all__ = ["Entry", "SCHEDULED", "QUEUED", "IN_FLIGHT"]

#: Where an entry waits.
SCHEDULED = 0  # in the timing wheel, until ``due``
QUEUED = 1  # in a route queue, waiting for pacing
IN_FLIGHT = 2  # handed to a provider, result not yet recorded


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
