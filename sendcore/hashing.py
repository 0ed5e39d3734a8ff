"""The one hash the core draws its deterministic numbers from (jitter, ramps).

Decisions must come out the same when the journal replays the inputs (R22),
so nothing draws from a shared random stream: each number is hashed from a
key such as the send id.
"""

from __future__ import annotations

import zlib

__all__ = ["unit"]


def unit(key: str) -> float:
    """A number in [0, 1) from ``key``, the same in every process and version (CRC-32 of its UTF-8)."""
    return zlib.crc32(key.encode()) / 4294967296.0
