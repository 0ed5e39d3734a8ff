"""What an HTTP status or an error code means for the sends, the addresses and the route.

Two tables, both from the options:

- ``statuses`` (HTTP status → kind) for a non-2xx answer, which applies to
  every send of the batch. Over these defaults:

  ====================  ==================================================
  429                   ``rate_limited``: the route slows for Retry-After
  408, 425, 5xx         ``temporary``: retried (R18); the provider's or the
                        network's fault, so no error-segment entry (R13)
  any other non-2xx     ``permanent``: every send of the batch fails
  ====================  ==================================================

- ``codes`` (error code → kind) for one item of a 2xx answer, or one
  delivery report. ``temporary`` is the address's fault (handset off,
  mailbox full: the address joins the error segment, R13); ``permanent``
  fails the send; ``suppress_all``/``suppress_marketing`` fail it and
  suppress the address in that scope (R14); ``rate_limited`` puts the send
  back and slows the route. A code not in the table is ``unknown_code``.
"""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime
from typing import Any, Union

from sendcore.send import PermanentFailure, RateLimited, Result, TemporaryFailure

__all__ = ["MIN_RETRY_AFTER", "TEMPORARY_STATUSES", "norm", "retry_after_seconds", "status_kind", "item_failure"]

#: ``Retry-After`` is clamped up to this: the engine needs a positive delay.
MIN_RETRY_AFTER = 0.05
#: HTTP statuses that are temporary by default, besides every 5xx.
TEMPORARY_STATUSES = frozenset({408, 425})

_SUPPRESS = {"suppress_all": "all", "suppress_marketing": "marketing"}


def norm(value: Any) -> str:
    """A JSON code or status as the string the tables are keyed by: ``true``/``false`` for booleans, else ``str``."""
    if type(value) is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)


def status_kind(status: int, table: dict[str, str]) -> str:
    """The kind of a non-2xx HTTP ``status``: ``table`` (the ``statuses`` option) first, then the defaults."""
    kind = table.get(str(status))
    if kind is not None:
        return kind
    if status == 429:
        return "rate_limited"
    if status >= 500 or status in TEMPORARY_STATUSES or status < 400:
        # 1xx/3xx (no redirect is followed) say nothing about the sends either.
        return "temporary"
    return "permanent"


def retry_after_seconds(value: Union[str, float, int, None], default: float, maximum: float,
                        now: Union[float, None] = None) -> float:
    """Seconds a ``Retry-After`` value asks for, clamped to [``MIN_RETRY_AFTER``, ``maximum``].

    Reads both forms of RFC 9110: delta-seconds (``"2"``, or a JSON number
    on an item) and an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``,
    measured from ``now``, the wall clock by default: the date is the
    server's wall-clock time). A missing, unreadable, NaN or infinite value
    gives ``default``.
    """
    if value is None or isinstance(value, bool):
        return default
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return default
            seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return default
    return min(max(seconds, MIN_RETRY_AFTER), maximum)


def item_failure(kind: str, code: str, message: str, retry_after: float) -> Result:
    """The ``Result`` of one failed item of ``kind`` (see the module doc)."""
    if kind == "temporary":
        return TemporaryFailure(code, message, address_fault=True)
    if kind == "rate_limited":
        return RateLimited(retry_after)
    return PermanentFailure(code, message, _SUPPRESS.get(kind))  # type: ignore[arg-type]
