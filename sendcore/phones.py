"""Phone number facts (plausibility, country, US/CA region, zones, carrier) for E.164 numbers.

``phonenumbers`` costs ~36 µs per number; the answers it gives depend only on a
prefix of the number and its length, so they are computed once per prefix and
shared by every number that starts the same way.
"""

from __future__ import annotations

import json
import re
import re._constants as _sre
import re._parser as _sre_parse
from importlib import resources
from typing import Iterable, Union

import msgspec
import phonenumbers
from phonenumbers import carrier as _pn_carrier
from phonenumbers import timezone as _pn_timezone
from phonenumbers.carrierdata import CARRIER_DATA
from phonenumbers.tzdata import TIMEZONE_DATA

__all__ = [
    "PhoneFacts",
    "carrier_of",
    "check_number",
    "clear_caches",
    "country_of",
    "phone_facts",
    "region_of",
    "zones_of",
]

#: Clear a cache when it passes this many keys: bounded memory, simple, and a
#: rebuild costs one phonenumbers call per live prefix.
MAX_CACHE_KEYS = 200_000


class PhoneFacts(msgspec.Struct, frozen=True, gc=False):
    """What phonenumbers says about a number: ISO country ("FR"), IANA zones, carrier name.

    ``country`` is None for non-geographic codes (+800) and for numbers no
    region's patterns accept; ``zones`` is empty when phonenumbers answers
    "Etc/Unknown"; ``carrier`` is "" when it has no name.
    """

    country: Union[str, None]
    zones: tuple[str, ...]
    carrier: str


_NO_FACTS = PhoneFacts(country=None, zones=(), carrier="")


class _CallingCode(msgspec.Struct, frozen=True, gc=False):
    """What the hot path needs about one country calling code (computed once per code)."""

    code: str  # "33"
    label: str  # "FR", or "+800" for non-geographic codes, for error messages
    lengths: frozenset[int]  # allowed len(to), "+" included
    nsn_at: int  # index in ``to`` of the first national digit
    # First PREFIX_DIGITS national digits -> how many leading characters of
    # ``to`` decide every fact (FULL: the whole number).
    key_lens: dict[str, int]


#: National digits by which the deciding length is tabulated: three is a NANP
#: area code, where +1's regions and prefix tables split.
PREFIX_DIGITS = 3
#: A key length past any E.164 number: the whole number is the key.
FULL = 16


# How long a prefix decides the answer is computed once per country calling code
# (on its first use, 5-35 ms) from phonenumbers' own metadata, and tabulated by
# the first three national digits:
#
# - the number-type regexes of every region sharing the code (and their
#   ``leading_digits``): type (mobile, fixed line, ...) and, for shared codes like
#   +1, the region come from full-matching them, but past some position they only
#   ever test ``\d``. Each regex is split into its alternatives; for each, the
#   walk over the parsed regex finds the last position that tests anything else
#   and which three-digit starts it can match;
# - the longest key of the carrier and time zone prefix tables under that start.
#
# Worked example, +1: numbers starting "+1212" can only match the US patterns,
# which test the area code and the exchange's first digit ("[2-9]"), and the prefix
# tables have nothing longer than "1212"; so every "+12125" number of 11 digits
# has the same country, zones and carrier, and the key is "+12125" plus a letter
# for the length. Under "+1850" (Florida's panhandle, split between two zones)
# the zone table has 7-digit keys, so the key is "+1850xxx".
#
# One trap: ``phonenumbers.parse`` tries to strip a *national* prefix even after a
# "+", and with it the digits move. A number whose first national digit can start
# such a prefix (a "0" in France, a "1" in the US) is cached by its full text
# instead, so the prefix key never mixes numbers that phonenumbers reads
# differently. Valid numbers rarely start that way (Brazil's 9x area codes do:
# its national prefix "90" selects a carrier, so those are cached one by one).

# Regex analysis (runs once per calling code, never per number)

_DIGITS = frozenset("0123456789")
_INF = float("inf")
_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT)
_MAX_STARTS = 2000  # beyond this a prefix set is "anything": analysis stays cheap


class _Unsupported(Exception):
    """A regex construct the analysis does not model; the caller falls back to the full number."""


def _digits_in(items: list) -> frozenset[str]:
    """The digits a character class ``[...]`` accepts."""
    chars: set[str] = set()
    negate = False
    for op, av in items:
        if op is _sre.NEGATE:
            negate = True
        elif op is _sre.LITERAL:
            chars.add(chr(av))
        elif op is _sre.RANGE:
            chars.update(chr(c) for c in range(av[0], av[1] + 1) if chr(c) in _DIGITS)
        elif op is _sre.CATEGORY and av is _sre.CATEGORY_DIGIT:
            chars |= _DIGITS
        elif op is _sre.CATEGORY and av is _sre.CATEGORY_NOT_DIGIT:
            pass
        else:
            raise _Unsupported(op)
    accepted = _DIGITS & chars
    return _DIGITS - accepted if negate else frozenset(accepted)


def _atom_digits(op: object, av: object) -> Union[frozenset[str], None]:
    """Digits accepted by a one-character element, or None if ``op`` is not one."""
    if op is _sre.LITERAL:
        return _DIGITS & {chr(av)}  # type: ignore[arg-type]
    if op is _sre.NOT_LITERAL:
        return _DIGITS - {chr(av)}  # type: ignore[arg-type]
    if op is _sre.IN:
        return _digits_in(av)  # type: ignore[arg-type]
    if op is _sre.ANY:
        return _DIGITS
    return None


def _constrained_end(seq: list, lo: float, hi: float) -> tuple[float, float, float]:
    """Walk a parsed regex starting at offsets [lo, hi]; return (lo, hi, end).

    ``end`` is one past the last offset at which some element accepts fewer
    than all ten digits: on digit strings of equal length that agree before
    ``end``, the regex matches both or neither (every later element is ``\\d``).
    """
    end = 0.0
    for op, av in seq:
        digits = _atom_digits(op, av)
        if digits is not None:
            if digits != _DIGITS:
                end = max(end, hi + 1)
            lo += 1
            hi += 1
        elif op is _sre.SUBPATTERN:
            lo, hi, e = _constrained_end(av[3], lo, hi)
            end = max(end, e)
        elif op is _sre.ATOMIC_GROUP:
            lo, hi, e = _constrained_end(av, lo, hi)
            end = max(end, e)
        elif op is _sre.BRANCH:
            ends = [_constrained_end(alt, lo, hi) for alt in av[1]]
            lo = min(r[0] for r in ends)
            hi = max(r[1] for r in ends)
            end = max([end] + [r[2] for r in ends])
        elif op in _REPEATS:
            least, most, sub = av
            sub_lo, sub_hi, sub_end = _constrained_end(sub, 0, 0)
            unbounded = most is _sre.MAXREPEAT
            if sub_end:
                # A constrained element repeated: its last copy starts at most
                # (most - 1) widths in.
                end = max(end, _INF if unbounded else hi + (most - 1) * sub_hi + sub_end)
            lo += least * sub_lo
            hi = _INF if unbounded and sub_hi else hi + (0 if unbounded else most) * sub_hi
        elif op is _sre.AT:
            pass
        else:
            raise _Unsupported(op)
    return lo, hi, end


def _starts(seq: list, k: int) -> Union[set[str], None]:
    """Strings the regex can begin with, cut at ``k`` digits; None if too many to list.

    A string shorter than ``k`` is a complete match of ``seq``; one of length
    ``k`` is the beginning of a longer (or equal) one.
    """
    current = {""}
    for op, av in seq:
        grown: set[str] = set()
        for head in current:
            if len(head) == k:
                grown.add(head)
                continue
            tails = _item_starts(op, av, k - len(head))
            if tails is None:
                return None
            grown.update(head + t for t in tails)
        if len(grown) > _MAX_STARTS:
            return None
        current = grown
    return current


def _item_starts(op: object, av: object, k: int) -> Union[set[str], None]:
    digits = _atom_digits(op, av)
    if digits is not None:
        return set(digits)
    if op is _sre.SUBPATTERN:
        return _starts(av[3], k)  # type: ignore[index]
    if op is _sre.ATOMIC_GROUP:
        return _starts(av, k)  # type: ignore[arg-type]
    if op is _sre.BRANCH:
        out: set[str] = set()
        for alt in av[1]:  # type: ignore[index]
            part = _starts(alt, k)
            if part is None:
                return None
            out |= part
        return out
    if op in _REPEATS:
        least, most, sub = av  # type: ignore[misc]
        out, current, count = set(), {""}, 0
        while current:
            if count >= least:
                out |= current
            if most is not _sre.MAXREPEAT and count == most:
                break
            grown: set[str] = set()
            for head in current:
                if len(head) == k:
                    out.add(head)
                    continue
                tails = _starts(sub, k - len(head))
                if tails is None or "" in tails:
                    return None  # a repeat that can match nothing: not modelled
                grown.update(head + t for t in tails)
            if len(grown) > _MAX_STARTS:
                return None
            current, count = grown, count + 1
        return out
    if op is _sre.AT:
        return {""}
    raise _Unsupported(op)


def _alternatives(seq: list, depth: int = 0) -> list[list]:
    """Split a regex into alternatives that each start at offset 0.

    ``A|B`` and ``(?:A|B)rest`` become ``[A]``/``[B]`` and ``[A rest]``/``[B rest]``,
    so a prefix only pays for the alternatives it can start.
    """
    seq = list(seq)
    if seq and depth < 4:
        op, av = seq[0]
        if op is _sre.BRANCH:
            return [alt for branch in av[1] for alt in _alternatives(list(branch) + seq[1:], depth + 1)]
        if op is _sre.SUBPATTERN and len(av[3]) == 1 and av[3][0][0] is _sre.BRANCH:
            return _alternatives(list(av[3]) + seq[1:], depth + 1)
    return [seq]


def _first_digits(seq: list) -> tuple[frozenset[str], bool]:
    """(digits a non-empty match can start with, whether the regex can match empty)."""
    firsts: set[str] = set()
    for op, av in seq:
        digits = _atom_digits(op, av)
        if digits is not None:
            return frozenset(firsts | digits), False
        if op is _sre.SUBPATTERN or op is _sre.ATOMIC_GROUP:
            sub_first, nullable = _first_digits(av[3] if op is _sre.SUBPATTERN else av)
        elif op is _sre.BRANCH:
            parts = [_first_digits(alt) for alt in av[1]]
            sub_first = frozenset().union(*(p[0] for p in parts))
            nullable = any(p[1] for p in parts)
        elif op in _REPEATS:
            sub_first, nullable = _first_digits(av[2])
            nullable = nullable or av[0] == 0
        elif op is _sre.AT:
            sub_first, nullable = frozenset(), True
        else:
            raise _Unsupported(op)
        firsts |= sub_first
        if not nullable:
            return frozenset(firsts), False
    return frozenset(firsts), True


_DESCS = (
    "general_desc", "fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost",
    "personal_number", "voip", "pager", "uan", "voicemail", "no_international_dialling",
)


def _metadata(code: int) -> list:
    """Metadata of every region using the calling code (the non-geographic entity for +800 and the like)."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
    return [
        phonenumbers.PhoneMetadata.metadata_for_nongeo_region(code)
        if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY
        else phonenumbers.PhoneMetadata.metadata_for_region(region)
        for region in regions
    ]


def _suffixes(k: int) -> list[str]:
    """Every string of ``k`` digits."""
    return [str(i).zfill(k) for i in range(10**k)] if k else [""]


def _decided_digits(metas: list, prefixes: list[str], m: int) -> dict[str, float]:
    """National digits that decide every regex match, per ``m``-digit national prefix."""
    decided = dict.fromkeys(prefixes, float(m))
    for md in metas:
        regexes = [getattr(md, name, None) for name in _DESCS]
        patterns = [d.national_number_pattern for d in regexes if d is not None and d.national_number_pattern]
        if md.leading_digits:
            patterns.append(md.leading_digits)
        for pattern in patterns:
            for alt in _alternatives(_sre_parse.parse(pattern)):
                end = _constrained_end(alt, 0, 0)[2]
                starts = _starts(alt, m)
                if starts is None:
                    hit: Iterable[str] = prefixes  # cannot tell which prefixes: all of them
                else:
                    hit = {s + t for s in starts for t in _suffixes(m - len(s))}
                for p in hit:
                    if end > decided[p]:
                        decided[p] = end
    return decided


def _analyse(code: int) -> _CallingCode:
    """Compute a calling code's lengths and deciding prefix lengths from phonenumbers' data."""
    cc = str(code)
    metas = _metadata(code)
    main = metas[0]  # COUNTRY_CODE_TO_REGION_CODE lists the main country first
    general = main.general_desc
    # Mirror is_possible_number: the main region's lengths, minus "local only" ones.
    national = {n for n in set(general.possible_length or ()) - set(general.possible_length_local_only or ()) if n > 0}
    lengths = frozenset(1 + len(cc) + n for n in national if len(cc) + n <= 15)
    region = phonenumbers.region_code_for_country_code(code)
    label = f"+{cc}" if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY else region
    m = min([PREFIX_DIGITS, *national])
    prefixes = [str(i).zfill(m) for i in range(10**m)]
    try:
        decided = _decided_digits(metas, prefixes, m)
        npfp = main.national_prefix_for_parsing
        if npfp:
            strip_first, nullable = _first_digits(_sre_parse.parse(npfp))
            empty = re.match(npfp, "") if nullable else None
            groups = empty.groups() if empty is not None else ()
            if main.national_prefix_transform_rule and groups and groups[-1] is not None:
                strip_first = _DIGITS  # an empty match would still transform the number
        else:
            strip_first = frozenset()
    except _Unsupported:
        decided, strip_first = dict.fromkeys(prefixes, _INF), _DIGITS
    # The prefix tables: the longest key that starts with the code and prefix.
    longest: dict[str, int] = {}
    for table in (TIMEZONE_DATA, CARRIER_DATA):
        for key in table:
            if key.startswith(cc):
                p = key[len(cc) : len(cc) + m]
                longest[p] = max(longest.get(p, 0), len(key) - len(cc))
    key_lens: dict[str, int] = {}
    for p in prefixes:
        nat = max(decided[p], longest.get(p, 0))
        if p[0] in strip_first or nat == _INF:
            key_lens[p] = FULL
        else:
            key_lens[p] = 1 + len(cc) + int(nat)
    return _CallingCode(
        code=cc,
        label=label,
        lengths=lengths,
        nsn_at=1 + len(cc),
        key_lens=key_lens,
    )


# Calling code lookup by the first three digits after "+": E.164 codes are a
# prefix code, so three digits always decide it. Filled lazily, one entry per
# distinct head; _UNKNOWN marks heads with no code.

_UNKNOWN = _CallingCode(code="", label="", lengths=frozenset(), nsn_at=0, key_lens={})
_BY_HEAD: dict[str, _CallingCode] = {}
_BY_CODE: dict[int, _CallingCode] = {}


def _calling_code(head: str) -> _CallingCode:
    for n in (1, 2, 3):
        if len(head) >= n and head[:n].isascii() and head[:n].isdigit():
            code = int(head[:n])
            if head[0] != "0" and code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                info = _BY_CODE.get(code)
                if info is None:
                    info = _BY_CODE[code] = _analyse(code)
                break
    else:
        info = _UNKNOWN
    if len(head) == 3:  # shorter heads come from too-short input; not worth keeping
        _BY_HEAD[head] = info
    return info


def check_number(to: str) -> Union[str, None]:
    """None if ``to`` is a plausible E.164 number, else a short reason.

    Plausible: "+", then only digits (at most 15), a known country calling
    code, and a national number length that phonenumbers' metadata lists as
    possible for the code's main region ("+33" and 9 digits). No
    ``phonenumbers.parse`` happens here; a code's metadata is read once.

    Countries with short numbers (Niue, "+683" and 4 digits) are accepted
    although they give fewer than 8 digits in all: E.164 sets no minimum and
    the per-country lengths decide.
    """
    if not isinstance(to, str) or to[:1] != "+":
        return "not an E.164 phone number: it must start with '+' and the country calling code"
    digits = to[1:]
    if not digits or len(digits) > 15 or not (digits.isascii() and digits.isdigit()):
        return "not an E.164 phone number: expected '+' then up to 15 digits"
    info = _BY_HEAD.get(to[1:4]) or _calling_code(to[1:4])
    if info is _UNKNOWN:
        return f"unknown country calling code +{digits[:3]}"
    if len(to) not in info.lengths:
        return f"wrong length for {info.label}"
    return None


# Facts cache: key -> PhoneFacts. The key is the deciding prefix plus a letter
# for the length ("+3367000" + "L"), or the whole number when a national prefix
# could be stripped. Letters never collide with digits, so the two kinds of key
# cannot meet.

_FACTS: dict[str, PhoneFacts] = {}
# In front of it, the same answers by full number: sends to one recipient repeat.
_BY_NUMBER: dict[str, PhoneFacts] = {}
_LENGTH_TAG = [chr(0x41 + n) for n in range(17)]  # len(to) -> "A".."Q"


def _compute(to: str) -> PhoneFacts:
    """Ask phonenumbers about one number (the slow path, once per key)."""
    try:
        number = phonenumbers.parse(to)
    except phonenumbers.NumberParseException:
        return _NO_FACTS
    country = phonenumbers.region_code_for_number(number)
    if country == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
        country = None
    zones = tuple(z for z in _pn_timezone.time_zones_for_number(number) if z != _pn_timezone.UNKNOWN_TIMEZONE)
    name = _pn_carrier.name_for_number(number, "en") or ""
    return PhoneFacts(country=country, zones=zones, carrier=name)


def phone_facts(to: str) -> PhoneFacts:
    """Country, zones and carrier of ``to`` in one cached lookup.

    Exactly what phonenumbers answers for the full number; a number that
    ``check_number`` rejects gets empty facts. Warm cost: one dict lookup for
    a number seen before, a few for a new number of a known prefix.
    """
    facts = _BY_NUMBER.get(to)
    if facts is None:
        facts = _facts_by_prefix(to)
        if len(_BY_NUMBER) >= MAX_CACHE_KEYS:
            _BY_NUMBER.clear()
        _BY_NUMBER[to] = facts
    return facts


def _facts_by_prefix(to: str) -> PhoneFacts:
    if to[:1] != "+":
        return _NO_FACTS
    info = _BY_HEAD.get(to[1:4]) or _calling_code(to[1:4])
    n = len(to)
    if n not in info.lengths:  # also rejects unknown codes: _UNKNOWN has no lengths
        return _NO_FACTS
    digits = to[1:]
    if not (digits.isascii() and digits.isdigit()):
        return _NO_FACTS
    at = info.nsn_at
    key = to[: info.key_lens.get(to[at : at + PREFIX_DIGITS], FULL)] + _LENGTH_TAG[n]
    facts = _FACTS.get(key)
    if facts is None:
        facts = _compute(to)
        if len(_FACTS) >= MAX_CACHE_KEYS:
            _FACTS.clear()
        _FACTS[key] = facts
    return facts


def country_of(to: str) -> Union[str, None]:
    """ISO 3166-1 alpha-2 country of an E.164 number ("FR"); shared codes (+1, +44, +7) resolved by prefix."""
    return phone_facts(to).country


def zones_of(to: str) -> tuple[str, ...]:
    """IANA zones phonenumbers gives for the number; empty when it does not know."""
    return phone_facts(to).zones


def carrier_of(to: str) -> str:
    """The number's original carrier name in English per phonenumbers, or "" (R17)."""
    return phone_facts(to).carrier


def _load_area_codes() -> dict[str, str]:
    text = resources.files("sendcore.data").joinpath("area_codes.json").read_text(encoding="utf-8")
    return json.loads(text)["area_codes"]


_AREA_CODES: dict[str, str] = _load_area_codes()
_NANP_REGIONS = ("US", "CA")


def region_of(to: str) -> Union[str, None]:
    """ISO 3166-2 region of a US or Canadian number from its area code ("+13055550100" -> "US-FL").

    None for other countries and for the few area codes shared by several
    provinces (902/782, 867).
    """
    if phone_facts(to).country in _NANP_REGIONS:
        return _AREA_CODES.get(to[2:5])
    return None


def clear_caches() -> None:
    """Forget every cached answer (tests use it to start cold)."""
    _FACTS.clear()
    _BY_NUMBER.clear()
    _BY_HEAD.clear()
    _BY_CODE.clear()
