"""Jurisdiction rule packs (R9): versioned, sourced restrictions by recipient country and US state.

The rules live in ``sendcore/data/jurisdictions.toml``; quiet hours apply their
time rules and the frequency-cap policy their caps. Packs only ever add
restrictions to the configured ones, and never touch transactional sends.
"""

from __future__ import annotations

import functools
from datetime import date
from importlib import resources
from typing import Literal, Union

import holidays
import msgspec

from ..errors import ConfigError
from ..settings import FrequencyCap, parse_clock, parse_duration

__all__ = [
    "AllowedWindow",
    "ForbiddenWeekdays",
    "FrequencyCapRule",
    "JurisdictionPack",
    "NoPublicHolidays",
    "Rule",
    "available_packs",
    "load_packs",
]

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
NON_TRANSACTIONAL = ("flow", "campaign")


class _Scope(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Who a rule restricts, and the law it comes from."""

    id: str
    source: str
    countries: tuple[str, ...]
    regions: tuple[str, ...] = ()
    channels: tuple[str, ...] = ("sms",)
    origins: tuple[Literal["flow", "campaign"], ...] = NON_TRANSACTIONAL
    note: str = ""

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise ValueError(f"rule {self.id}: every rule cites its source")
        if not self.countries:
            raise ValueError(f"rule {self.id}: countries must name at least one country")

    def applies(self, channel: str, country: Union[str, None], region: Union[str, None],
                origin: Union[str, None] = None) -> bool:
        """Whether the rule restricts this channel and place (and origin; None means any non-transactional)."""
        return (
            country in self.countries
            and (not self.regions or region in self.regions)
            and channel in self.channels
            and (origin is None or origin in self.origins)
        )


class AllowedWindow(_Scope, tag="window", tag_field="kind", frozen=True):
    """Sends allowed only from ``start`` to ``end`` ("08:00"-"20:00"), recipient's local time."""

    start: str
    end: str

    def __post_init__(self) -> None:
        super().__post_init__()
        start, end = parse_clock(self.start, f"{self.id}.start"), parse_clock(self.end, f"{self.id}.end")
        if start >= end:
            raise ValueError(f"rule {self.id}: an allowed window runs forward within a day ({self.start}-{self.end})")

    @property
    def minutes(self) -> tuple[int, int]:
        """(start, end) in minutes after local midnight."""
        return parse_clock(self.start, "start"), parse_clock(self.end, "end")


class ForbiddenWeekdays(_Scope, tag="weekdays", tag_field="kind", frozen=True):
    """No sends on these local weekdays ("sunday")."""

    forbidden: tuple[str, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [d for d in self.forbidden if d not in WEEKDAYS]
        if bad or not self.forbidden:
            raise ValueError(f"rule {self.id}: forbidden days must be among {', '.join(WEEKDAYS)}, got {bad or '[]'}")

    @property
    def weekday_numbers(self) -> frozenset[int]:
        """The forbidden days as ``date.weekday()`` numbers (Monday is 0)."""
        return frozenset(WEEKDAYS.index(d) for d in self.forbidden)


class NoPublicHolidays(_Scope, tag="holidays", tag_field="kind", frozen=True):
    """No sends on public holidays of ``calendar`` (a ``holidays`` country code) and ``subdivision``."""

    calendar: str
    subdivision: Union[str, None] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            _calendar(self.calendar, self.subdivision)
        except (NotImplementedError, KeyError, ValueError) as exc:
            raise ValueError(f"rule {self.id}: no holiday calendar {self.calendar!r}/{self.subdivision!r}: {exc}") from None

    def is_holiday(self, day: date) -> bool:
        """Whether ``day`` (a local date) is a public holiday of the calendar."""
        return day in _calendar(self.calendar, self.subdivision)


class FrequencyCapRule(_Scope, tag="frequency_cap", tag_field="kind", frozen=True):
    """At most ``max`` sends per rolling ``window`` per recipient; ``action`` "defer" holds the excess."""

    max: int
    window: str
    action: Literal["skip", "defer"] = "defer"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max < 1:
            raise ValueError(f"rule {self.id}: max must be at least 1")
        parse_duration(self.window, f"{self.id}.window")


Rule = Union[AllowedWindow, ForbiddenWeekdays, NoPublicHolidays, FrequencyCapRule]


@functools.lru_cache(maxsize=None)
def _calendar(code: str, subdivision: Union[str, None]) -> holidays.HolidayBase:
    # One calendar object per (country, subdivision); it fills years on demand.
    return holidays.country_holidays(code, subdiv=subdivision)


class JurisdictionPack(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A versioned set of rules for one jurisdiction ("FR" 2027.1)."""

    code: str
    version: str
    name: str
    rules: tuple[Rule, ...]
    note: str = ""

    def time_rules(self, channel: str, country: Union[str, None], region: Union[str, None],
                   origin: Union[str, None] = None) -> list[Rule]:
        """The window, weekday and holiday rules restricting this channel and place."""
        return [
            r for r in self.rules
            if not isinstance(r, FrequencyCapRule) and r.applies(channel, country, region, origin)
        ]

    def channels(self) -> frozenset[str]:
        """Every channel some time rule of the pack restricts."""
        return frozenset(c for r in self.rules if not isinstance(r, FrequencyCapRule) for c in r.channels)

    def frequency_caps(self) -> list[FrequencyCap]:
        """The pack's caps as settings objects for the core's frequency-cap policy (R5), one per channel."""
        return [
            FrequencyCap(
                max=r.max,
                window=r.window,
                channel=channel,
                origins=list(r.origins),
                action=r.action,
                countries=list(r.countries),
                regions=list(r.regions),
                name=f"{self.code}/{r.id}",
            )
            for r in self.rules
            if isinstance(r, FrequencyCapRule)
            for channel in r.channels
        ]


class _PackFile(msgspec.Struct, forbid_unknown_fields=True):
    packs: list[JurisdictionPack]


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in version.split("."))


@functools.lru_cache(maxsize=None)
def _all_packs() -> dict[str, list[JurisdictionPack]]:
    """Every pack in the data file by code, highest version first (read once)."""
    data = resources.files("sendcore.data").joinpath("jurisdictions.toml").read_bytes()
    try:
        packs = msgspec.toml.decode(data, type=_PackFile).packs
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"sendcore/data/jurisdictions.toml: {exc}") from None
    by_code: dict[str, list[JurisdictionPack]] = {}
    for pack in packs:
        by_code.setdefault(pack.code, []).append(pack)
    for versions in by_code.values():
        versions.sort(key=lambda p: _version_key(p.version), reverse=True)
    return by_code


def available_packs() -> dict[str, list[str]]:
    """Known pack codes and their versions, newest first."""
    return {code: [p.version for p in packs] for code, packs in sorted(_all_packs().items())}


def load_packs(codes: list[str]) -> list[JurisdictionPack]:
    """The packs named in ``settings.jurisdictions``: "FR" (newest version) or "FR@2027.1".

    Raises ConfigError naming the unknown code or version and the known ones.
    """
    known = _all_packs()
    out: list[JurisdictionPack] = []
    for entry in codes:
        code, _, version = str(entry).partition("@")
        versions = known.get(code)
        if not versions:
            raise ConfigError(
                f"jurisdictions: unknown rule pack {entry!r}; known packs: {', '.join(sorted(known))}"
            )
        if not version:
            out.append(versions[0])
            continue
        match = [p for p in versions if p.version == version]
        if not match:
            raise ConfigError(
                f"jurisdictions: rule pack {code!r} has no version {version!r}; "
                f"known versions: {', '.join(p.version for p in versions)}"
            )
        out.append(match[0])
    return out
