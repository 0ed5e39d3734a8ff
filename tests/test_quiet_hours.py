"""Quiet hours (R8, R9, R10, R11, R12b) on real zones, real holidays and real phone numbers."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendcore.ledger import Entry
from sendcore.locale import LocaleResolver, local_instant
from sendcore.locale_types import Locale
from sendcore.policies.base import Stage
from sendcore.policies.jurisdictions import ForbiddenWeekdays, JurisdictionPack, load_packs
from sendcore.policies.quiet_hours import GIVE_UP_AFTER, QuietHours, allowed_minutes
from sendcore.send import Origin, Reason, Send
from sendcore.errors import ConfigError
from sendcore.settings import QuietWindow, Settings

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
UTC = timezone.utc


def at(zone: ZoneInfo, *args: int) -> float:
    """Epoch seconds of an unambiguous wall time in ``zone``."""
    return datetime(*args, tzinfo=zone).timestamp()


def wall(t: float, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(t, zone).replace(tzinfo=None)


def make_settings(sms_quiet=None, **channels) -> Settings:
    """Settings with the SMS quiet window given ({start, end}, False for none, None for the default)."""
    data: dict = {"channels": {name: {"quiet_hours": q} for name, q in channels.items()}}
    if sms_quiet is not None:
        data["channels"]["sms"] = {"quiet_hours": sms_quiet}
    return Settings.from_dict(data)


NO_SMS_QUIET = make_settings(False)
RESOLVER = LocaleResolver(Settings())


def locale_of(to: str) -> Locale:
    return RESOLVER.resolve(Send(id="x", recipient="r", channel="sms", to=to, origin=Origin.FLOW))


FR = Locale(zones=("Europe/Paris",), country="FR")
NY = Locale(zones=("America/New_York",), country="US", region="US-NY")


class Recorder:
    """A Verdicts that writes down what the policy decided."""

    def __init__(self):
        self.deferred: list[tuple[str, float, Reason]] = []
        self.skipped: list[tuple[str, Reason]] = []

    def skip(self, entry, reason, detail=""):
        self.skipped.append((entry.send.id, reason))

    def defer(self, entry, until, reason, detail=""):
        self.deferred.append((entry.send.id, until, reason))


def entry(id: str = "s-1", channel: str = "sms", origin: Origin = Origin.CAMPAIGN, locale: Locale = FR, **kw) -> Entry:
    s = Send(id=id, recipient="p-" + id, channel=channel, to="+33612345678", origin=origin, **kw)
    return Entry(send=s, due=0.0, prio=2, locale=locale)


# The default window and allowed_minutes


def test_allowed_minutes():
    assert allowed_minutes(None) == [(0, 1440)]
    assert allowed_minutes(QuietWindow(start="20:00", end="11:00")) == [(660, 1200)]
    assert allowed_minutes(QuietWindow(start="01:00", end="05:00")) == [(0, 60), (300, 1440)]
    assert allowed_minutes(QuietWindow(start="00:00", end="08:00")) == [(480, 1440)]



def test_quiet_hours_start_equal_to_end_is_refused_as_ambiguous():
    """Issue 8, row 10: "20:00" to "20:00" could mean none or all day; it is a ConfigError naming the key."""
    with pytest.raises(ValueError, match="quiet_hours.end: equals start"):
        QuietWindow(start="20:00", end="20:00")
    with pytest.raises(ConfigError, match=r"channels\.sms\.quiet_hours\.end: equals start \('20:00'\)"):
        Settings.from_toml_bytes(b'[channels.sms]\nquiet_hours = {start = "20:00", end = "20:00"}\n')


def test_default_sms_window_is_20_to_11():
    q = QuietHours(Settings())
    assert q.next_allowed("sms", FR, at(PARIS, 2027, 1, 12, 10, 59)) == at(PARIS, 2027, 1, 12, 11)
    assert q.next_allowed("sms", FR, at(PARIS, 2027, 1, 12, 11)) == at(PARIS, 2027, 1, 12, 11)
    assert q.next_allowed("sms", FR, at(PARIS, 2027, 1, 12, 19, 59)) == at(PARIS, 2027, 1, 12, 19, 59)
    assert q.next_allowed("sms", FR, at(PARIS, 2027, 1, 12, 20)) == at(PARIS, 2027, 1, 13, 11)
    assert q.next_allowed("email", FR, at(PARIS, 2027, 1, 12, 23)) == at(PARIS, 2027, 1, 12, 23)


# France (R9)


def test_fr_saturday_night_waits_for_monday_8():
    """An SMS at 21:30 on Saturday 2027-01-16: not after 20:00, not on Sunday -> Monday 08:00."""
    q = QuietHours(NO_SMS_QUIET, load_packs(["FR"]))
    assert q.next_allowed("sms", FR, at(PARIS, 2027, 1, 16, 21, 30)) == at(PARIS, 2027, 1, 18, 8)
    assert q.next_allowed("sms", FR, at(PARIS, 2027, 1, 17, 12)) == at(PARIS, 2027, 1, 18, 8)


def test_fr_pack_and_default_window_take_the_later():
    """With the default SMS window (20:00-11:00) as well, Monday 11:00: packs only add restrictions."""
    q = QuietHours(Settings(), load_packs(["FR"]))
    assert q.next_allowed("sms", FR, at(PARIS, 2027, 1, 16, 21, 30)) == at(PARIS, 2027, 1, 18, 11)


def test_fr_public_holiday_is_skipped():
    """2027-07-14 (a Wednesday) is a French public holiday."""
    assert date(2027, 7, 14) in holidays.country_holidays("FR") and date(2027, 7, 14).weekday() == 2
    q = QuietHours(NO_SMS_QUIET, load_packs(["FR"]))
    assert q.next_allowed("sms", FR, at(PARIS, 2027, 7, 13, 21, 30)) == at(PARIS, 2027, 7, 15, 8)
    assert q.next_allowed("sms", FR, at(PARIS, 2027, 7, 14, 10)) == at(PARIS, 2027, 7, 15, 8)
    assert q.next_allowed("sms", FR, at(PARIS, 2027, 7, 13, 19)) == at(PARIS, 2027, 7, 13, 19)


def test_fr_pack_leaves_other_countries_and_channels_alone():
    q = QuietHours(NO_SMS_QUIET, load_packs(["FR"]))
    t = at(PARIS, 2027, 1, 17, 12)  # a Sunday
    assert q.next_allowed("sms", Locale(zones=("Europe/Paris",), country="BE"), t) == t
    assert q.next_allowed("email", FR, t) == t


# United States (R9): TCPA and the states with 08:00-20:00


@pytest.mark.parametrize(
    ("to", "zone", "end_hour"),
    [
        ("+13055550123", "America/New_York", 20),  # Miami, FL
        ("+14055550123", "America/Chicago", 20),  # Oklahoma City, OK
        ("+14105550123", "America/New_York", 20),  # Baltimore, MD
        ("+12125550123", "America/New_York", 21),  # New York, NY: TCPA only
    ],
)
def test_us_calling_hours_by_state(to, zone, end_hour):
    loc = locale_of(to)
    z = ZoneInfo(zone)
    assert loc.zones == (zone,)
    q = QuietHours(NO_SMS_QUIET, load_packs(["US"]))
    day = (2027, 1, 12)
    assert q.next_allowed("sms", loc, at(z, *day, 7, 59)) == at(z, *day, 8)
    assert q.next_allowed("sms", loc, at(z, *day, 8)) == at(z, *day, 8)
    assert q.next_allowed("sms", loc, at(z, *day, end_hour - 1, 59)) == at(z, *day, end_hour - 1, 59)
    assert q.next_allowed("sms", loc, at(z, *day, end_hour)) == at(z, 2027, 1, 13, 8)
    assert q.allowed_until("sms", loc, at(z, *day, 9)) == at(z, *day, end_hour)


# DST (R11)


def test_paris_spring_forward_window_end_in_the_gap():
    """Quiet 22:00-02:30; on 2027-03-28 02:30 does not exist: quiet ends at 03:00 CEST."""
    q = QuietHours(make_settings({"start": "22:00", "end": "02:30"}))
    t = at(UTC, 2027, 3, 28, 0, 30)  # 01:30 CET
    n = q.next_allowed("sms", FR, t)
    assert n == at(UTC, 2027, 3, 28, 1)
    assert wall(n, PARIS) == datetime(2027, 3, 28, 3, 0)


def test_paris_spring_forward_window_start_in_the_gap():
    """Quiet 02:30-06:00: allowed until the clock jumps (02:00 CET -> 03:00 CEST), then quiet to 06:00 CEST."""
    q = QuietHours(make_settings({"start": "02:30", "end": "06:00"}))
    t = at(UTC, 2027, 3, 28, 0, 59)  # 01:59 CET
    assert q.next_allowed("sms", FR, t) == t
    assert q.allowed_until("sms", FR, t) == at(UTC, 2027, 3, 28, 1)
    assert q.next_allowed("sms", FR, at(UTC, 2027, 3, 28, 1)) == at(UTC, 2027, 3, 28, 4)


def test_paris_fall_back_window_end_in_the_repeated_hour():
    """Quiet 22:00-02:30; on 2027-10-31 02:30 happens twice: quiet ends at the first (CEST)."""
    q = QuietHours(make_settings({"start": "22:00", "end": "02:30"}))
    n = q.next_allowed("sms", FR, at(UTC, 2027, 10, 30, 23, 30))  # 01:30 CEST
    assert n == at(UTC, 2027, 10, 31, 0, 30)
    # The second pass through 02:10 (CET) lies inside the allowed interval.
    second = at(UTC, 2027, 10, 31, 1, 10)
    assert wall(second, PARIS) == datetime(2027, 10, 31, 2, 10)
    assert q.next_allowed("sms", FR, second) == second
    # That local day lasts 25 hours: quiet again at 22:00 CET.
    assert q.allowed_until("sms", FR, second) == at(UTC, 2027, 10, 31, 21)


def test_new_york_spring_forward_and_fall_back():
    q = QuietHours(make_settings({"start": "22:00", "end": "02:30"}))
    # 2027-03-14: 02:00 EST -> 03:00 EDT, 02:30 does not exist.
    assert q.next_allowed("sms", NY, at(UTC, 2027, 3, 14, 6, 30)) == at(UTC, 2027, 3, 14, 7)
    q = QuietHours(make_settings({"start": "22:00", "end": "01:30"}))
    # 2027-11-07: 02:00 EDT -> 01:00 EST, 01:30 happens twice: the first (EDT).
    assert q.next_allowed("sms", NY, at(UTC, 2027, 11, 7, 5)) == at(UTC, 2027, 11, 7, 5, 30)
    assert wall(at(UTC, 2027, 11, 7, 5, 30), NEW_YORK) == datetime(2027, 11, 7, 1, 30)


def test_tcpa_hours_across_dst():
    """08:00 local on the spring-forward Sunday is 12:00 UTC, a day after it was 13:00 UTC."""
    q = QuietHours(NO_SMS_QUIET, load_packs(["US"]))
    assert q.next_allowed("sms", NY, at(UTC, 2027, 3, 13, 2)) == at(UTC, 2027, 3, 13, 13)
    assert q.next_allowed("sms", NY, at(UTC, 2027, 3, 14, 2)) == at(UTC, 2027, 3, 14, 12)


# Several zones (R10)


def test_australian_mobile_is_allowed_only_when_every_zone_allows():
    loc = locale_of("+61412345678")
    assert len(loc.zones) > 3
    q = QuietHours(Settings())
    t = at(UTC, 2027, 1, 12, 0)
    n = q.next_allowed("sms", loc, t)
    end = q.allowed_until("sms", loc, t)
    for name in loc.zones:
        local = wall(n, ZoneInfo(name))
        assert 11 <= local.hour < 20, name
        assert wall(end, ZoneInfo(name)).hour <= 20
    # The westernmost zone opens last, the easternmost closes first.
    assert wall(n, ZoneInfo("Indian/Cocos")) == datetime(2027, 1, 12, 11)
    assert wall(end, ZoneInfo("Australia/Lord_Howe")) == datetime(2027, 1, 12, 20)
    # One zone alone would open earlier: the answer really waits for all.
    assert q.next_allowed("sms", Locale(zones=("Australia/Sydney",), country="AU"), t) < n


# check(): deferral, ramp, who is exempt (R2, R8, R12b)


def test_check_defers_with_a_deterministic_ramp():
    q = QuietHours(Settings())
    now = at(PARIS, 2027, 1, 12, 22)
    n = at(PARIS, 2027, 1, 13, 11)
    entries = [entry(id=f"c-{i}") for i in range(200)]
    rec = Recorder()
    assert q.check(entries, now, Stage.ADMIT, rec) == []
    untils = [u for _, u, _ in rec.deferred]
    assert all(reason is Reason.QUIET_HOURS for _, _, reason in rec.deferred)
    assert all(n <= u < n + 600 for u in untils)
    assert max(untils) - min(untils) > 500  # spread over the 10-minute ramp
    again = Recorder()
    q.check(entries, now, Stage.DISPATCH, again)
    assert again.deferred == rec.deferred  # deterministic per send id


def test_check_keeps_what_may_leave():
    q = QuietHours(Settings())
    night = at(PARIS, 2027, 1, 12, 22)
    kept = [
        entry(id="otp", origin=Origin.TRANSACTIONAL),
        entry(id="welcome", quiet_hours=False),
        entry(id="mail", channel="email"),
    ]
    rec = Recorder()
    assert q.check(kept + [entry(id="promo")], night, Stage.ADMIT, rec) == kept
    assert [d[0] for d in rec.deferred] == ["promo"]
    rec = Recorder()
    day = at(PARIS, 2027, 1, 12, 15)
    assert q.check([entry(id="promo")], day, Stage.DISPATCH, rec) == [entry(id="promo")]
    assert rec.deferred == []


def test_ramp_stays_inside_a_short_allowed_interval():
    q = QuietHours(make_settings({"start": "10:05", "end": "10:00"}))  # allowed 10:00-10:05 only
    now = at(PARIS, 2027, 1, 12, 9)
    rec = Recorder()
    q.check([entry(id=f"c-{i}") for i in range(50)], now, Stage.ADMIT, rec)
    opens, closes = at(PARIS, 2027, 1, 12, 10), at(PARIS, 2027, 1, 12, 10, 5)
    assert all(opens <= u < closes for _, u, _ in rec.deferred)


def test_dispatch_at_the_edge_of_quiet_hours():
    """R12: admitted at 19:58, still queued at 20:00 -> deferred, not sent late."""
    q = QuietHours(Settings())
    e = entry()
    assert q.check([e], at(PARIS, 2027, 1, 12, 19, 58), Stage.ADMIT, Recorder()) == [e]
    rec = Recorder()
    assert q.check([e], at(PARIS, 2027, 1, 12, 20), Stage.DISPATCH, rec) == []
    assert at(PARIS, 2027, 1, 13, 11) <= rec.deferred[0][1] < at(PARIS, 2027, 1, 13, 11, 10)


def test_origin_scoped_pack_rule():
    pack = JurisdictionPack(
        code="XX", version="1", name="test",
        rules=(ForbiddenWeekdays(id="no-campaign-sunday", source="test", countries=("FR",),
                                 origins=("campaign",), forbidden=("sunday",)),),
    )
    q = QuietHours(NO_SMS_QUIET, [pack])
    sunday = at(PARIS, 2027, 1, 17, 12)
    assert q.next_allowed("sms", FR, sunday, "flow") == sunday
    assert q.next_allowed("sms", FR, sunday, "campaign") == at(PARIS, 2027, 1, 18, 0)
    rec = Recorder()
    flow = entry(id="f", origin=Origin.FLOW)
    assert q.check([flow, entry(id="c")], sunday, Stage.ADMIT, rec) == [flow]


def test_gives_up_after_14_days():
    pack = JurisdictionPack(
        code="XX", version="1", name="never",
        rules=(ForbiddenWeekdays(id="never", source="test", countries=("FR",),
                                 forbidden=("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")),),
    )
    q = QuietHours(Settings(), [pack])
    t = at(PARIS, 2027, 1, 12, 12)
    assert q.next_allowed("sms", FR, t) == t + GIVE_UP_AFTER
    rec = Recorder()
    assert q.check([entry(id="c")], t, Stage.ADMIT, rec) == []
    assert rec.skipped == [("c", Reason.QUIET_HOURS)] and rec.deferred == []


@pytest.mark.parametrize("origin", [Origin.FLOW, Origin.CAMPAIGN])
def test_a_window_no_instant_of_which_is_allowed_in_every_zone_skips_instead_of_waiting_forever(origin):
    """R21 over R8: quiet 00:01-00:00 allows one minute a day; an Australian number spans 8 zones, so
    no minute is allowed in all of them. The send ends skipped/quiet_hours, a French one with the
    same window leaves in its minute, and a transactional Australian one is not held at all."""
    q = QuietHours(make_settings({"start": "00:01", "end": "00:00"}))
    au = locale_of("+61412345678")
    t = at(UTC, 2027, 1, 12, 12)
    rec = Recorder()
    au_e, fr_e = entry(id="au", origin=origin, locale=au), entry(id="fr", origin=origin)
    tx = entry(id="tx", origin=Origin.TRANSACTIONAL, locale=au)
    for stage in (Stage.ADMIT, Stage.DISPATCH):
        assert q.check([au_e, fr_e, tx], t, stage, rec) == [tx]
    assert rec.skipped == [("au", Reason.QUIET_HOURS)] * 2
    # The French send waits for its one allowed minute, 00:00-00:01 in Paris.
    assert [(sid, wall(u, PARIS).strftime("%d %H:%M")) for sid, u, _ in rec.deferred] == [("fr", "13 00:00")] * 2


def test_an_unreachable_window_ends_the_send_through_the_core_with_its_detail():
    """Through the core on virtual time: the Australian send gets one final outcome at once."""
    from sendcore.testing.simulate import drive

    from .helpers import core, finals, send

    c = core('[channels.sms]\nquiet_hours = { start = "00:01", end = "00:00" }\n')
    t = at(UTC, 2027, 1, 12, 12)
    assert c.submit([send("au", to="+61412345678", send_at=t), send("fr", send_at=t)], t).accepted == 2
    outs: list = []
    drive(c, t + 2 * 86400, None, start=t, outcomes=outs)
    got = finals(outs)
    assert got["au"].status.value == "skipped" and got["au"].reason is Reason.QUIET_HOURS
    assert "8 zones" in got["au"].detail and got["au"].at == t
    assert got["fr"].status.value == "sent" and wall(got["fr"].at, PARIS).strftime("%H:%M") == "00:00"
    assert c.pending == 0


def test_cache_follows_time_both_ways():
    q = QuietHours(Settings(), load_packs(["FR"]))
    fresh = lambda t: QuietHours(Settings(), load_packs(["FR"])).next_allowed("sms", FR, t)  # noqa: E731
    times = [at(PARIS, 2027, 1, 12, h) for h in (12, 13, 21, 23, 10, 19, 20)] + [at(PARIS, 2027, 1, 16, 21)]
    for t in times:
        assert q.next_allowed("sms", FR, t) == fresh(t)


# Property: the answer is allowed, and nothing earlier after t is


CASES = {
    # name: (settings, packs, locale, daily allowed windows, forbidden weekdays, holiday country)
    "fr-default": (Settings(), ["FR"], FR, [(660, 1200)], {6}, "FR"),
    "fr-pack-only": (NO_SMS_QUIET, ["FR"], FR, [(480, 1200)], {6}, "FR"),
    "fl": (NO_SMS_QUIET, ["US"], locale_of("+13055550123"), [(480, 1200)], set(), None),
    "ny-night-window": (make_settings({"start": "22:00", "end": "02:30"}), ["US"], NY, [(480, 1260)], set(), None),
    "paris-gap-window": (make_settings({"start": "22:00", "end": "02:30"}), [], FR, [(150, 1320)], set(), None),
    "paris-split": (make_settings({"start": "01:00", "end": "05:00"}), [], FR, [(0, 60), (300, 1440)], set(), None),
    "au-all-zones": (Settings(), [], locale_of("+61412345678"), [(660, 1200)], set(), None),
    "chatham": (Settings(), [], Locale(zones=("Pacific/Chatham", "America/St_Johns")), [(660, 1200)], set(), None),
}


def allowed_ref(x: float, zones, windows, weekdays, holiday_country) -> bool:
    """Allowed in every zone: some window of a permitted local day holds x (windows resolved by R11)."""
    cal = holidays.country_holidays(holiday_country) if holiday_country else {}
    for name in zones:
        day = datetime.fromtimestamp(x, ZoneInfo(name)).date()
        inside = False
        for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
            if d.weekday() in weekdays or d in cal:
                continue
            if any(local_instant(d, a, name) <= x < local_instant(d, b, name) for a, b in windows):
                inside = True
                break
        if not inside:
            return False
    return True


DST_ANCHORS = [at(UTC, 2027, 3, 28, 1), at(UTC, 2027, 10, 31, 1), at(UTC, 2027, 3, 14, 7), at(UTC, 2027, 11, 7, 6),
               at(UTC, 2027, 4, 4, 3), at(UTC, 2027, 10, 3, 2)]
instants = st.one_of(
    st.floats(min_value=at(UTC, 2027, 1, 1), max_value=at(UTC, 2027, 12, 20), allow_nan=False),
    st.tuples(st.sampled_from(DST_ANCHORS), st.floats(min_value=-30 * 3600, max_value=30 * 3600)).map(sum),
)


@settings(max_examples=250, deadline=None)
@given(st.sampled_from(sorted(CASES)), st.lists(instants, min_size=1, max_size=4), st.randoms(use_true_random=False))
def test_next_allowed_property(case, times, rnd):
    conf, codes, loc, windows, weekdays, hol = CASES[case]
    q = QuietHours(conf, load_packs(codes))
    for t in times:  # one instance across several instants: the cache is exercised too
        n = q.next_allowed("sms", loc, t)
        assert n >= t
        assert allowed_ref(n, loc.zones, windows, weekdays, hol)
        if n > t:
            assert not allowed_ref(n - 1, loc.zones, windows, weekdays, hol)
            minutes = int((n - t) // 60)
            sample = range(1, minutes + 1) if minutes <= 300 else rnd.sample(range(1, minutes + 1), 300)
            for k in sample:
                assert not allowed_ref(t + 60 * k - 0.5, loc.zones, windows, weekdays, hol)
        end = q.allowed_until("sms", loc, t)
        assert end > n
        mid = n + (end - n) / 2
        if mid < end:  # floats near 1.8e9 are 2.4e-7 apart: n may sit a hair before end
            assert allowed_ref(mid, loc.zones, windows, weekdays, hol)
        if end - 1 > n:
            assert allowed_ref(end - 1, loc.zones, windows, weekdays, hol)
        assert not allowed_ref(end, loc.zones, windows, weekdays, hol)


def test_allowed_interval_runs_across_midnight():
    """Quiet 01:00-05:00: allowed from 05:00 to 01:00 the next day, one interval (cached as one)."""
    q = QuietHours(make_settings({"start": "01:00", "end": "05:00"}))
    t = at(PARIS, 2027, 1, 12, 23)
    assert q.next_allowed("sms", FR, t) == t
    assert q.allowed_until("sms", FR, t) == at(PARIS, 2027, 1, 13, 1)


def test_a_send_lifting_quiet_hours_still_obeys_the_jurisdiction_pack():
    """R9: packs only ever add restrictions. quiet_hours=False lifts the channel's window (20:00-11:00 here),
    not France's: a campaign SMS on Sunday 2027-01-17 at 22:00 Paris waits for Monday 08:00."""
    from sendcore.core import Core
    from sendcore.provider import ProviderSpec
    from sendcore.send import Status

    settings = Settings.from_dict({"jurisdictions": ["FR"], "journal": {"path": ""}})
    core = Core(settings, [ProviderSpec(name="p", channels=("sms",))])
    sunday_22 = at(PARIS, 2027, 1, 17, 22)
    core.submit([Send(id="sun", recipient="r1", channel="sms", to="+33612345678", origin="campaign",
                      quiet_hours=False, send_at=sunday_22),
                 Send(id="wed", recipient="r2", channel="sms", to="+33612345679", origin="campaign",
                      quiet_hours=False, send_at=at(PARIS, 2027, 1, 13, 9))], sunday_22 - 5 * 86400)
    t = at(PARIS, 2027, 1, 13, 9)
    sent = {b.sends[0].id: t for b in core.advance(t)}
    assert "wed" in sent  # Wednesday 09:00: the channel's quiet hours are lifted, France allows 08:00-20:00
    for b in core.advance(sunday_22):
        sent[b.sends[0].id] = sunday_22
    assert "sun" not in sent
    explain = core.explain("sun")
    assert explain.rule == "quiet_hours" and explain.earliest >= at(PARIS, 2027, 1, 18, 8)


def test_a_russian_mobile_number_spans_ten_hours_so_the_default_window_skips_it_unless_a_timezone_is_given():
    """R10 with the default SMS window (11:00-20:00, nine hours): a +7 9xx number maps to 16 zones
    from Europe/Bucharest to Asia/Anadyr, ten hours apart, so no instant is allowed in all of them.
    With the send's own timezone it waits for 11:00 Moscow time as usual."""
    q = QuietHours(Settings())
    ru = locale_of("+79161234567")
    assert len(ru.zones) == 16
    t = at(UTC, 2027, 1, 12, 22)
    rec = Recorder()
    moscow = Locale(zones=("Europe/Moscow",), country="RU")
    assert q.check([entry(id="ru", locale=ru), entry(id="msk", locale=moscow)], t, Stage.ADMIT, rec) == []
    assert rec.skipped == [("ru", Reason.QUIET_HOURS)]
    [(sid, until, _)] = rec.deferred
    assert sid == "msk" and wall(until, ZoneInfo("Europe/Moscow")).strftime("%d %H") == "13 11"
