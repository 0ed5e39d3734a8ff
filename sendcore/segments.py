"""How many SMS segments a body takes (R16): carriers rate-limit and bill segments, not messages.

GSM-7 bodies hold 160 septets alone or 153 per part of a concatenated message;
anything outside GSM-7 (one emoji is enough) turns the whole body into UCS-2:
70 UTF-16 code units alone, 67 per part.
"""

from __future__ import annotations

import re

__all__ = ["MAX_CACHE_KEYS", "sms_segments"]

# GSM 03.38 default alphabet (one septet each) and its extension table (an
# escape septet plus one: two each). "\x1b" (the escape itself) is not text.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

# ASCII fast path: the ASCII characters outside GSM-7 (the backtick, DEL and
# control characters other than LF, CR and FF) and the ASCII extension ones.
_ASCII_NOT_GSM = re.compile(r"[^\n\r\f\x20-\x5f\x61-\x7e]")
_ASCII_EXTENSION = re.compile(r"[\f^{}\\\[~\]|]")

SINGLE_GSM, PART_GSM = 160, 153
SINGLE_UCS2, PART_UCS2 = 70, 67

#: Bodies remembered; the cache is cleared when it passes this many (bounded
#: memory; personalised bodies would otherwise pile up).
MAX_CACHE_KEYS = 20_000
_CACHE: dict[str, int] = {}


def _parts(widths: list[int], total: int, single: int, per_part: int) -> int:
    """Parts needed when a character never straddles two parts (an escape pair, a surrogate pair)."""
    if total <= single:
        return 1
    if all(w == 1 for w in widths):
        return -(-total // per_part)
    parts, used = 1, 0
    for w in widths:
        if used + w > per_part:
            parts += 1
            used = 0
        used += w
    return parts


def _count(body: str) -> int:
    if not body:
        return 1
    if body.isascii() and not _ASCII_NOT_GSM.search(body):
        extension = len(_ASCII_EXTENSION.findall(body))
        septets = len(body) + extension
        if septets <= SINGLE_GSM or not extension:
            return 1 if septets <= SINGLE_GSM else -(-septets // PART_GSM)
        return _parts([2 if c in _GSM_EXTENSION else 1 for c in body], septets, SINGLE_GSM, PART_GSM)
    basic, extension_set = _GSM_BASIC, _GSM_EXTENSION
    widths: list[int] = []
    for c in body:
        if c in basic:
            widths.append(1)
        elif c in extension_set:
            widths.append(2)
        else:
            break
    else:
        return _parts(widths, sum(widths), SINGLE_GSM, PART_GSM)
    # UCS-2 (in practice UTF-16): characters beyond the BMP take two code units.
    units = [2 if ord(c) > 0xFFFF else 1 for c in body]
    return _parts(units, sum(units), SINGLE_UCS2, PART_UCS2)


def sms_segments(body: str) -> int:
    """Segments ``body`` takes as an SMS; an empty body still takes one.

    A character never straddles two parts: an extension character's escape
    pair, or a UTF-16 surrogate pair, moves whole to the next part, as
    handsets and carriers split them. Cached per distinct body; a cached body
    costs one dict lookup.
    """
    n = _CACHE.get(body)
    if n is None:
        n = _count(body)
        if len(_CACHE) >= MAX_CACHE_KEYS:
            _CACHE.clear()
        _CACHE[body] = n
    return n
