"""Timezone resolution (R10), local send times (R8b) and calendar periods, DST by R11."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendcore import locale as locale_mod
from sendcore.errors import InputError
from sendcore.locale import LocaleResolver, local_instant, local_to_epoch, period_bounds
from sendcore.locale_types import Locale
from sendcore.send import Origin, Send
from sendcore.settings import Settings


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def send(to: str = "+33612345678", channel: str = "sms", **kw) -> Send:
    return Send(id=kw.pop("id", "s-1"), recipient="p-1", channel=channel, to=to, origin=Origin.FLOW, **kw)


# R10


@pytest.fixture
def resolver() -> LocaleResolver:
    return LocaleResolver(Settings(default_timezone="Asia/Tokyo"))


def test_zones_country_and_region_from_the_number(resolver):
    assert resolver.resolve(send("+33612345678")) == Locale(zones=("Europe/Paris",), country="FR", region=None)
    assert resolver.resolve(send("+13055550123")) == Locale(zones=("America/New_York",), country="US", region="US-FL")
    assert resolver.resolve(send("+14055550123")) == Locale(zones=("America/Chicago",), country="US", region="US-OK")


def test_same_place_same_object(resolver):
    a = resolver.resolve(send("+33612345678"))
    assert resolver.resolve(send("+33612345678", id="s-2")) is a
    assert resolver.resolve(send("+33698765432")) is a  # another number, same place
    assert resolver.resolve(send("+33612345678", timezone="Europe/Paris")) is a
    b = resolver.resolve(send("+33612345678", timezone="America/Cayenne"))
    assert resolver.resolve(send("+33698765432", timezone="America/Cayenne")) is b


def test_send_timezone_wins_but_country_stays_the_numbers(resolver):
    loc = resolver.resolve(send("+13055550123", timezone="Europe/Paris"))
    assert loc == Locale(zones=("Europe/Paris",), country="US", region="US-FL")


def test_hook_comes_after_the_send_timezone_and_before_the_number():
    asked = []

    def hook(s: Send):
        asked.append(s.id)
        return {"a": "America/Los_Angeles", "b": None, "c": "Not/AZone"}[s.id]

    r = LocaleResolver(Settings(default_timezone="Asia/Tokyo"), resolve_timezone=hook)
    assert r.resolve(send("+33612345678", id="a")).zones == ("America/Los_Angeles",)
    assert r.resolve(send("+33612345678", id="a")).country == "FR"
    assert r.resolve(send("+33612345678", id="b")).zones == ("Europe/Paris",)
    assert r.resolve(send("+33612345678", id="c")).zones == ("Europe/Paris",)  # unknown zone ignored
    assert r.resolve(send("+33612345678", id="a", timezone="Europe/Berlin")).zones == ("Europe/Berlin",)
    assert asked == ["a", "a", "b", "c"]  # not asked when the send has a timezone


def test_default_zone_when_the_number_gives_none(resolver):
    assert resolver.resolve(send("jean@example.fr", channel="email")) == Locale(zones=("Asia/Tokyo",))
    assert resolver.resolve(send("+80012345678")) == Locale(zones=("Asia/Tokyo",))  # non-geographic
    assert resolver.resolve(send("0612345678")) == Locale(zones=("Asia/Tokyo",))  # not E.164


def test_channel_agnostic(resolver):
    """A push or WhatsApp send whose ``to`` is an E.164 number gets the number's zones."""
    assert resolver.resolve(send("+33612345678", channel="push")).zones == ("Europe/Paris",)


def test_several_zones(resolver):
    loc = resolver.resolve(send("+61412345678"))
    assert loc.country == "AU" and len(loc.zones) > 3


def test_resolver_caches_are_bounded(monkeypatch):
    monkeypatch.setattr(locale_mod, "MAX_CACHE_KEYS", 20)
    r = LocaleResolver(Settings())
    first = r.resolve(send("+33612345678"))
    for i in range(100):
        r.resolve(send(f"user{i}@example.com", channel="email"))
        assert len(r._by_to) <= 20 and len(r._shared) <= 20
    assert r.resolve(send("+33612345678")) == first


# local_to_epoch (R8b, R11)


@pytest.mark.parametrize(
    ("wall", "zone", "expected"),
    [
        ("2027-01-12T10:00", "Europe/Paris", utc(2027, 1, 12, 9)),
        ("2027-01-12T10:00:30", "Europe/Paris", utc(2027, 1, 12, 9, 0, 30)),
        # Paris springs forward 02:00 -> 03:00 on 2027-03-28: 02:30 does not exist.
        ("2027-03-28T02:30", "Europe/Paris", utc(2027, 3, 28, 1)),
        ("2027-03-28T01:59", "Europe/Paris", utc(2027, 3, 28, 0, 59)),
        ("2027-03-28T03:00", "Europe/Paris", utc(2027, 3, 28, 1)),
        # Paris falls back 03:00 -> 02:00 on 2027-10-31: 02:30 happens twice.
        ("2027-10-31T02:30", "Europe/Paris", utc(2027, 10, 31, 0, 30)),
        ("2027-10-31T03:00", "Europe/Paris", utc(2027, 10, 31, 2)),
        # New York springs forward 02:00 -> 03:00 on 2027-03-14, falls back on 2027-11-07.
        ("2027-03-14T02:30", "America/New_York", utc(2027, 3, 14, 7)),
        ("2027-11-07T01:30", "America/New_York", utc(2027, 11, 7, 5, 30)),
    ],
)
def test_local_to_epoch(wall, zone, expected):
    assert local_to_epoch(wall, (zone,)) == expected


def test_latest_of_several_zones():
    t = local_to_epoch("2027-01-12T10:00", ("Europe/Paris", "America/New_York", "Asia/Tokyo"))
    assert t == utc(2027, 1, 12, 15)


@pytest.mark.parametrize(
    "wall",
    ["2027-01-12 10:00", "2027-01-12T10:00Z", "2027-01-12T10:00+01:00", "2027-01-12T10:00:00-0500",
     "2027-13-01T10:00", "2027-02-30T10:00", "2027-01-12T25:00", "10:00", "", "tomorrow", 1700000000],
)
def test_malformed_local_send_at(wall):
    with pytest.raises(InputError) as info:
        local_to_epoch(wall, ("Europe/Paris",))
    assert info.value.field == "local_send_at"
    assert isinstance(info.value, ValueError)


def test_a_zone_in_local_send_at_is_named_as_the_problem():
    with pytest.raises(InputError, match="no zone"):
        local_to_epoch("2027-01-12T10:00+01:00", ("Europe/Paris",))


ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "America/Havana",
         "Asia/Kolkata", "Pacific/Chatham", "America/St_Johns", "UTC", "Africa/Casablanca"]


def _wall(t: float, zone: str) -> datetime:
    # Floor: fromtimestamp rounds to the microsecond and could carry t into the next second.
    return datetime.fromtimestamp(math.floor(t), ZoneInfo(zone)).replace(tzinfo=None)


@settings(max_examples=150, deadline=None)
@given(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31)).map(lambda d: d.replace(second=0, microsecond=0)),
    st.sampled_from(ZONES),
)
def test_local_to_epoch_matches_a_minute_by_minute_search(wall, zone):
    """The earliest instant showing that wall time, else the first instant after it (R11)."""
    got = local_to_epoch(wall.strftime("%Y-%m-%dT%H:%M"), (zone,))
    approx = wall.replace(tzinfo=timezone.utc).timestamp()
    minutes = range(int(approx) - 15 * 3600, int(approx) + 15 * 3600, 60)
    showing = [x for x in minutes if _wall(x, zone) == wall]
    expected = showing[0] if showing else next(x for x in minutes if _wall(x, zone) > wall)
    assert got == expected


# period_bounds


@pytest.mark.parametrize(
    ("day", "zone", "hours"),
    [
        (date(2027, 3, 28), "Europe/Paris", 23),
        (date(2027, 10, 31), "Europe/Paris", 25),
        (date(2027, 3, 14), "America/New_York", 23),
        (date(2027, 11, 7), "America/New_York", 25),
        (date(2027, 1, 16), "Europe/Paris", 24),
    ],
)
def test_local_days_follow_dst(day, zone, hours):
    noon = local_instant(day, 12 * 60, zone)
    start, end = period_bounds(noon, zone, "day")
    assert end - start == hours * 3600
    assert _wall(start, zone) == datetime(day.year, day.month, day.day)


def test_weeks_start_on_monday_and_months_on_the_first():
    t = utc(2027, 1, 16, 20, 30)  # Saturday, 21:30 in Paris
    start, end = period_bounds(t, "Europe/Paris", "week")
    assert (start, end) == (utc(2027, 1, 10, 23), utc(2027, 1, 17, 23))
    start, end = period_bounds(t, "Europe/Paris", "month")
    assert (start, end) == (utc(2026, 12, 31, 23), utc(2027, 1, 31, 23))
    start, end = period_bounds(utc(2027, 12, 15), "Europe/Paris", "month")
    assert (start, end) == (utc(2027, 11, 30, 23), utc(2027, 12, 31, 23))


def test_a_boundary_belongs_to_the_next_period():
    midnight = utc(2027, 1, 16, 23)  # Sunday 00:00 in Paris
    assert period_bounds(midnight, "Europe/Paris", "day")[0] == midnight
    assert period_bounds(midnight - 1, "Europe/Paris", "day")[1] == midnight
    assert period_bounds(midnight, "Europe/Paris", "day")[0] == midnight  # from the cache too


def test_midnight_skipped_by_dst():
    # Santiago springs forward at 24:00 on 2027-09-04: the 5th starts at 01:00 local.
    start, _ = period_bounds(utc(2027, 9, 5, 15), "America/Santiago", "day")
    assert start == utc(2027, 9, 5, 4)
    assert _wall(start, "America/Santiago") == datetime(2027, 9, 5, 1)


def test_an_instant_a_hair_before_midnight_is_still_that_day():
    t = utc(2029, 1, 1) - 2e-7  # fromtimestamp alone would round it to midnight
    start, end = period_bounds(t, "UTC", "day")
    assert start <= t < end == utc(2029, 1, 1)


def test_unknown_period():
    with pytest.raises(ValueError, match="period"):
        period_bounds(utc(2027, 1, 1), "UTC", "year")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=utc(2026, 1, 1), max_value=utc(2028, 12, 31), allow_nan=False),
    st.sampled_from(ZONES),
    st.sampled_from(["day", "week", "month"]),
)
def test_period_bounds_property(t, zone, period):
    start, end = period_bounds(t, zone, period)
    assert start <= t < end
    first, after = _wall(start, zone).date(), _wall(end, zone).date()
    day = _wall(t, zone).date()
    assert _wall(start - 1, zone).date() < first <= day < after
    assert _wall(end - 1, zone).date() < after
    if period == "day":
        assert first == day and after == day + timedelta(days=1)
    elif period == "week":
        assert first.weekday() == 0 and (after - first).days == 7
    else:
        assert first.day == 1 and after.day == 1 and first.month != after.month
