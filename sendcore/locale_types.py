"""Where a recipient is: the zones and jurisdiction used by time-based rules."""

from __future__ import annotations

from typing import Union

import msgspec

__all__ = ["Locale"]


class Locale(msgspec.Struct, frozen=True, gc=False):
    """A recipient's zones and jurisdiction, shared by every send to the same place.

    ``zones`` holds at least one IANA zone; a send may leave only when every
    zone allows it (R10). ``country`` is ISO 3166-1 alpha-2 ("FR"), ``region``
    ISO 3166-2 ("US-FL") when known.
    """

    zones: tuple[str, ...]
    country: Union[str, None] = None
    region: Union[str, None] = None
