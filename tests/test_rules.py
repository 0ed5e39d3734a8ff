"""Scenario tests, one or more per behaviour rule (R1–R24), on virtual time through the core."""

from __future__ import annotations

from datetime import datetime

import pytest

from sendcore.errors import PendingLimitError
from sendcore.provider import ProviderSpec
from sendcore.send import (
    Accepted,
    PermanentFailure,
    RateLimited,
    Reason,
    Status,
    TemporaryFailure,
)
from sendcore.testing.simulate import InstantProvider, drive

from .helpers import FR_MOBILE, NEW_YORK, PARIS, US_FL, US_NY, UTC, at, core, finals, send

# A Wednesday in January, 10:00 in Paris: inside every default SMS window.
T0 = at(PARIS, 2027, 1, 13, 12, 0)
DAY = 86400.0
HOUR = 3600.0


def run(c, until, provider=None, start=T0):
    outs = []
    drive(c, until, provider, start=start, outcomes=outs)
    return outs


# ---------------------------------------------------------------- R1, R2, R3


def test_r1_duplicate_ids_are_rejected_while_pending_and_within_retention():
    """R1: an id pending or finished within the retention window is never accepted twice."""
    c = core('retention = "2d"')
    assert c.submit([send("a", send_at=T0 + 60)], T0).accepted == 1
    rep = c.submit([send("a", send_at=T0 + 90), send("b"), send("b")], T0)
    assert rep.accepted == 1
    assert [(r.index, r.id) for r in rep.rejected] == [(0, "a"), (2, "b")]
    assert "duplicate" in rep.rejected[0].reason
    outs = run(c, T0 + 120)
    assert finals(outs)["a"].status is Status.SENT
    assert c.submit([send("a")], T0 + DAY).accepted == 0
    c.advance(T0 + 3 * DAY)  # retention passes
    assert c.submit([send("a", origin="transactional")], T0 + 3 * DAY).accepted == 1


def test_r2_transactional_bypasses_marketing_rules_but_not_suppression_all():
    """R2: transactional sends ignore smart sending, quiet hours and the error segment; obey `all` suppression."""
    c = core()
    night = at(PARIS, 2027, 1, 13, 23, 30)
    c.error_segment.note_error("sms", FR_MOBILE, T0)
    c.submit([send("m1", recipient="p", send_at=night)], T0)
    c.submit([send(f"otp{i}", recipient="p", origin="transactional", send_at=night + i) for i in range(3)], T0)
    outs = run(c, night + 10)
    f = finals(outs)
    assert [f[f"otp{i}"].status for i in range(3)] == [Status.SENT] * 3
    assert "m1" not in f  # the flow SMS waits for the morning
    c.suppress("sms", FR_MOBILE, "all")
    c.submit([send("otp9", recipient="p", origin="transactional", send_at=night + 20)], night)
    f = finals(run(c, night + 30, start=night))
    assert f["otp9"].status is Status.SKIPPED and f["otp9"].reason is Reason.SUPPRESSED


def test_r3_higher_priority_never_waits_behind_lower_on_a_route():
    """R3: an OTP queued behind a campaign backlog on a 1/s route leaves first."""
    c = core('[[routes]]\nprovider = "sandbox"\nrate = 1\nburst = 1')
    c.submit([send(f"c{i}", origin="campaign", to=f"+3361234{i:04d}", send_at=T0) for i in range(50)], T0)
    p = InstantProvider()
    drive(c, T0 + 5, p, start=T0)
    c.submit([send("otp", origin="transactional", send_at=T0 + 5)], T0 + 5)
    drive(c, T0 + 8, p, start=T0 + 5)
    order = [sid for _, sid in p.sent_at()]
    assert order.index("otp") == 6  # c0..c5 left at t=0..5, the OTP is next
    assert order[:6] == [f"c{i}" for i in range(6)]


# ---------------------------------------------------------------- R4–R7


def test_r4_smart_sending_skips_within_the_window_counting_attempts():
    """R4: a second marketing SMS within 24 h is skipped; after 24 h it leaves; per-send opt-out works."""
    c = core()
    c.submit([send("f1", recipient="p", send_at=T0),
              send("f2", recipient="p", send_at=T0 + 2 * HOUR),
              send("f3", recipient="p", send_at=T0 + 3 * HOUR, smart_sending=False),
              send("f4", recipient="p", send_at=T0 + 25 * HOUR)], T0)
    f = finals(run(c, T0 + 26 * HOUR))
    assert f["f1"].status is Status.SENT
    assert (f["f2"].status, f["f2"].reason) == (Status.SKIPPED, Reason.SMART_SENDING)
    assert f["f3"].status is Status.SENT
    # f4 is 25 h after f1 but 22 h after f3: f3's attempt counts too.
    assert f["f4"].reason is Reason.SMART_SENDING


def test_r4_email_window_is_16_hours_and_channels_are_separate():
    """R4: email's window defaults to 16 h; an SMS does not cap an email."""
    c = core()
    c.submit([send("e1", channel="email", recipient="p", send_at=T0),
              send("s1", recipient="p", send_at=T0 + 60),
              send("e2", channel="email", recipient="p", send_at=T0 + 15 * HOUR),
              send("e3", channel="email", recipient="p", send_at=T0 + 17 * HOUR)], T0)
    f = finals(run(c, T0 + DAY))
    assert f["s1"].status is Status.SENT
    assert f["e2"].reason is Reason.SMART_SENDING
    assert f["e3"].status is Status.SENT


def test_r5_rolling_cap_skips_and_calendar_cap_defers():
    """R5: at most 2 per 30 d (skip); at most 1 email per local day (defer to the next day)."""
    toml = """
[channels.sms]
smart_sending_window = "0s"
[channels.email]
smart_sending_window = "0s"
[[frequency_caps]]
channel = "sms"
max = 2
window = "30d"
[[frequency_caps]]
channel = "email"
max = 1
window = "day"
action = "defer"
"""
    c = core(toml)
    c.submit([send(f"s{i}", recipient="p", send_at=T0 + i * DAY) for i in range(3)], T0)
    c.submit([send("e1", channel="email", recipient="q", send_at=T0),
              send("e2", channel="email", recipient="q", send_at=T0 + HOUR)], T0)
    p = InstantProvider()
    outs = []
    drive(c, T0 + 3 * DAY, p, start=T0, outcomes=outs)
    f = finals(outs)
    assert [f[f"s{i}"].status for i in range(3)] == [Status.SENT, Status.SENT, Status.SKIPPED]
    assert f["s2"].reason is Reason.FREQUENCY_CAP
    sent = dict((sid, t) for t, sid in p.sent_at())
    # default timezone is UTC: e2 waits for the next UTC midnight
    next_midnight = datetime.fromtimestamp(T0, UTC).replace(hour=0, minute=0, second=0).timestamp() + DAY
    assert sent["e2"] == pytest.approx(next_midnight, abs=0.01)
    assert any(o.send_id == "e2" and o.status is Status.DEFERRED and o.reason is Reason.FREQUENCY_CAP for o in outs)


def test_r6_cross_channel_spacing_defers_to_the_end_of_the_gap():
    """R6: no marketing SMS within 1 h after an email: the SMS is deferred, not skipped."""
    c = core('[[spacing]]\nafter = "email"\nbefore = "sms"\ngap = "1h"')
    c.submit([send("e", channel="email", recipient="p", send_at=T0),
              send("s", recipient="p", send_at=T0 + 600)], T0)
    p = InstantProvider()
    outs = []
    drive(c, T0 + 2 * HOUR, p, start=T0, outcomes=outs)
    sent = dict((sid, t) for t, sid in p.sent_at())
    assert sent["s"] == pytest.approx(T0 + HOUR, abs=0.01)
    assert any(o.status is Status.DEFERRED and o.reason is Reason.SPACING for o in outs)


def test_r7_same_instant_sends_decided_in_priority_order_and_released_on_permanent_failure():
    """R7: the first send reserves the recipient; a permanent rejection releases the reservation."""
    c = core()
    c.submit([send("lo", recipient="p", origin="campaign", send_at=T0),
              send("hi", recipient="p", origin="flow", send_at=T0)], T0)
    f = finals(run(c, T0 + 10))
    assert f["hi"].status is Status.SENT
    assert f["lo"].reason is Reason.SMART_SENDING

    c = core()
    answer = lambda s, a: PermanentFailure("21610", "blocked") if s.id == "x1" else Accepted(s.id)
    c.submit([send("x1", recipient="q", send_at=T0)], T0)
    c.submit([send("x2", recipient="q", send_at=T0 + 60)], T0)
    f = finals(run(c, T0 + 120, InstantProvider(answer)))
    assert f["x1"].status is Status.FAILED
    assert f["x2"].status is Status.SENT  # x1's attempt no longer counts


# ---------------------------------------------------------------- quiet hours R8–R12b


def test_r8_sms_due_in_quiet_hours_is_deferred_to_the_first_allowed_instant():
    """R8: default SMS quiet hours 20:00–11:00 local; deferred (not skipped), never early."""
    c = core()
    due = at(PARIS, 2027, 1, 13, 22, 0)
    c.submit([send("q", send_at=due)], T0)
    p = InstantProvider()
    outs = []
    drive(c, due + DAY, p, start=T0, outcomes=outs)
    (t, _), = p.sent_at()
    opens = at(PARIS, 2027, 1, 14, 11, 0)
    assert opens <= t <= opens + 600  # within the 10-minute ramp (R12b)
    ev = [o for o in outs if o.status is Status.DEFERRED]
    assert ev[0].reason is Reason.QUIET_HOURS and ev[0].until == pytest.approx(t, abs=0.01)


def test_r8b_local_send_at_rolls_across_zones_and_late_local_skip():
    """R8b: "10:00 local" leaves at 10:00 in Paris, then New York; a past local time can be skipped."""
    c = core()
    c.submit([send("paris", local_send_at="2027-01-14T10:00", channel="email"),
              send("ny", local_send_at="2027-01-14T10:00", channel="email", timezone="America/New_York")], T0)
    p = InstantProvider()
    drive(c, T0 + 2 * DAY, p, start=T0)
    sent = dict((sid, t) for t, sid in p.sent_at())
    assert sent["ny"] == pytest.approx(at(NEW_YORK, 2027, 1, 14, 10, 0), abs=0.01)
    c2 = core('late_local = "skip"\ndefault_timezone = "Europe/Paris"')
    rep = c2.submit([send("late", channel="email", local_send_at="2027-01-13T09:00")], T0)
    assert rep.accepted == 1
    assert c2.outcome("late").reason is Reason.LATE_LOCAL
    c3 = core('default_timezone = "Europe/Paris"')
    c3.submit([send("p2", channel="email", local_send_at="2027-01-14T10:00")], T0)
    p3 = InstantProvider()
    drive(c3, T0 + 2 * DAY, p3, start=T0)
    assert p3.sent_at()[0][0] == pytest.approx(at(PARIS, 2027, 1, 14, 10, 0), abs=0.01)


def test_r9_fr_pack_defers_saturday_night_campaign_to_monday_morning():
    """R9: FR pack: no commercial SMS after 20:00, on Sundays or holidays: Sat 21:30 -> Mon 08:00."""
    c = core('jurisdictions = ["FR"]\n[channels.sms]\nquiet_hours = { start = "21:00", end = "08:00" }')
    sat = at(PARIS, 2027, 1, 16, 21, 30)
    c.submit([send(f"c{i}", origin="campaign", to=f"+3361234{i:04d}", send_at=sat) for i in range(20)], sat)
    p = InstantProvider()
    drive(c, sat + 3 * DAY, p, start=sat)
    mon = at(PARIS, 2027, 1, 18, 8, 0)
    times = [t for t, _ in p.sent_at()]
    assert len(times) == 20 and all(mon <= t <= mon + 600 for t in times)


def test_r9_default_window_wins_when_later_than_the_pack():
    """R9: packs only add restrictions: with the default 20:00–11:00 window the campaign waits until Mon 11:00."""
    c = core('jurisdictions = ["FR"]')
    sat = at(PARIS, 2027, 1, 16, 21, 30)
    c.submit([send("c", origin="campaign", send_at=sat)], sat)
    p = InstantProvider()
    drive(c, sat + 3 * DAY, p, start=sat)
    mon = at(PARIS, 2027, 1, 18, 11, 0)
    assert mon <= p.sent_at()[0][0] <= mon + 600


def test_r9_us_states_with_stricter_hours_and_three_per_day():
    """R9: FL numbers: 08:00–20:00 local and at most 3 marketing texts per rolling 24 h; NY until 21:00."""
    toml = 'jurisdictions = ["US"]\n[channels.sms]\nquiet_hours = false\nsmart_sending_window = "0s"'
    c = core(toml)
    eve = at(NEW_YORK, 2027, 1, 13, 20, 30)
    c.submit([send("fl", to=US_FL, send_at=eve), send("ny", to=US_NY, send_at=eve)], eve)
    p = InstantProvider()
    drive(c, eve + DAY, p, start=eve)
    sent = dict((sid, t) for t, sid in p.sent_at())
    assert sent["ny"] == pytest.approx(eve, abs=0.01)
    assert sent["fl"] >= at(NEW_YORK, 2027, 1, 14, 8, 0)
    c = core(toml)
    noon = at(NEW_YORK, 2027, 1, 13, 12, 0)
    c.submit([send(f"m{i}", recipient="fl", to=US_FL, send_at=noon + i * 60) for i in range(4)], noon)
    p = InstantProvider()
    outs = []
    drive(c, noon + 2 * DAY, p, start=noon, outcomes=outs)
    sent = dict((sid, t) for t, sid in p.sent_at())
    assert [sent[f"m{i}"] - noon for i in range(3)] == pytest.approx([0, 60, 120], abs=0.01)
    # The pack defers the 4th until the first of the three leaves the rolling 24 h.
    assert sent["m3"] == pytest.approx(noon + DAY, abs=0.01)
    assert any(o.send_id == "m3" and o.reason is Reason.FREQUENCY_CAP and o.status is Status.DEFERRED for o in outs)


def test_r10_number_with_several_zones_leaves_only_when_all_allow():
    """R10: an Australian mobile maps to every Australian zone: it leaves when the last of them opens."""
    from zoneinfo import ZoneInfo

    from sendcore.phones import zones_of

    au = "+61412345678"
    zones = zones_of(au)
    assert {"Australia/Sydney", "Australia/Perth"} <= set(zones), zones
    c = core('[channels.sms]\nquiet_hours = { start = "20:00", end = "09:00" }')
    t = at(ZoneInfo("Australia/Sydney"), 2027, 1, 13, 9, 30)  # open in Sydney, 06:30 in Perth
    c.submit([send("au", to=au, send_at=t)], t)
    p = InstantProvider()
    drive(c, t + DAY, p, start=t)
    openings = []
    for z in zones:
        local = datetime.fromtimestamp(t, ZoneInfo(z))
        openings.append(local.replace(hour=9, minute=0, second=0).timestamp())
    last_open = max(openings)
    assert last_open > t
    assert last_open <= p.sent_at()[0][0] <= last_open + 600


@pytest.mark.parametrize(
    "zone,day,quiet_end,expect",
    [
        # Spring forward in Paris: 02:00 -> 03:00; a window ending 02:30 ends at 03:00.
        ("Europe/Paris", (2027, 3, 28), "02:30", (3, 0)),
        # Fall back in New York: 01:00-02:00 repeats; the end resolves to its first occurrence.
        ("America/New_York", (2027, 11, 7), "01:30", (1, 30)),
    ],
)
def test_r11_dst_days_resolve_window_boundaries(zone, day, quiet_end, expect):
    """R11: a boundary in the DST gap moves to the first valid instant; a repeated one to the earliest."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    c = core(f'default_timezone = "{zone}"\n[channels.email]\nquiet_hours = {{ start = "00:30", end = "{quiet_end}" }}\nramp = "0s"')
    t = at(tz, *day, 0, 45)
    c.submit([send("d", channel="email", send_at=t)], t)
    p = InstantProvider()
    drive(c, t + DAY, p, start=t)
    got = datetime.fromtimestamp(p.sent_at()[0][0], tz)
    assert (got.hour, got.minute) == expect
    if zone == "America/New_York":
        assert got.fold == 0


def test_r12_campaign_tail_behind_a_carrier_limit_is_deferred_at_quiet_hours():
    """R12: 10/s route from 19:55: 3,000 sends leave until 20:00, the tail waits for 11:00 next day."""
    c = core('[[routes]]\nprovider = "sandbox"\nrate = 10\nburst = 10')
    t = at(PARIS, 2027, 1, 13, 19, 55)
    c.submit([send(f"c{i}", origin="campaign", to=f"+336{i:08d}", send_at=t) for i in range(5000)], t)
    p = InstantProvider()
    drive(c, t + DAY, p, start=t)
    eight = at(PARIS, 2027, 1, 13, 20, 0)
    before = [x for x, _ in p.sent_at() if x < eight]
    after = [x for x, _ in p.sent_at() if x >= eight]
    assert 2990 <= len(before) <= 3010
    assert len(before) + len(after) == 5000
    assert min(after) >= at(PARIS, 2027, 1, 14, 11, 0)


def test_r12b_release_at_the_end_of_quiet_hours_is_ramped():
    """R12b: sends released at the end of quiet hours spread over the 10-minute ramp, deterministically."""
    def once():
        c = core()
        night = at(PARIS, 2027, 1, 13, 23, 0)
        c.submit([send(f"r{i}", to=f"+336{i:08d}", send_at=night) for i in range(600)], night)
        p = InstantProvider()
        drive(c, night + DAY, p, start=night)
        return [t for t, _ in p.sent_at()]

    times = once()
    opens = at(PARIS, 2027, 1, 14, 11, 0)
    assert min(times) >= opens and max(times) <= opens + 600
    minutes = {int((t - opens) // 60) for t in times}
    assert minutes == set(range(10))  # every minute of the ramp is used
    assert times == once()


# ---------------------------------------------------------------- R13–R15


@pytest.mark.parametrize("days,expect", [(29, Status.SKIPPED), (31, Status.SENT)])
def test_r13_error_segment_excludes_campaigns_for_30_days(days, expect):
    """R13: a temporary error 29 days ago excludes a campaign SMS; 31 days ago it does not; flows are not excluded."""
    c = core()
    c.error_segment.note_error("sms", FR_MOBILE, T0 - days * DAY)
    c.submit([send("camp", origin="campaign", send_at=T0), send("flow", recipient="other", send_at=T0)], T0)
    f = finals(run(c, T0 + 60))
    assert f["camp"].status is expect
    if expect is Status.SKIPPED:
        assert f["camp"].reason is Reason.ERROR_SEGMENT
    assert f["flow"].status is Status.SENT


def test_r13_error_segment_builds_from_temporary_failures():
    """R13: a provider's temporary failure puts the address in the error segment."""
    c = core()
    answer = lambda s, a: TemporaryFailure("30003", "unreachable") if a == 1 else Accepted(s.id)
    c.submit([send("f", send_at=T0)], T0)
    run(c, T0 + 10, InstantProvider(answer))
    assert c.error_segment.in_segment("sms", FR_MOBILE, T0 + 10)


def test_r13_a_campaign_send_is_retried_despite_its_own_temporary_failure():
    """R13 with R18: the error segment excludes later campaign sends, not the retry of the send that failed."""
    c = core('[retry]\nbase_delay = "10s"')
    answer = lambda s, a: TemporaryFailure("30003", "unreachable") if a == 1 else Accepted(s.id)
    c.submit([send("camp", origin="campaign", send_at=T0),
              send("camp2", recipient="other", origin="campaign", send_at=T0 + 3600)], T0)
    f = finals(run(c, T0 + 2 * 3600, InstantProvider(answer)))
    assert (f["camp"].status, f["camp"].attempt) == (Status.SENT, 2)
    assert (f["camp2"].status, f["camp2"].reason) == (Status.SKIPPED, Reason.ERROR_SEGMENT)


@pytest.mark.parametrize("scope", ["marketing", "all"])
def test_r14_permanent_failure_suppresses_later_marketing_but_not_transactional(scope):
    """R14: a permanent failure with suppress adds the entry; marketing scope keeps transactional flowing."""
    c = core()
    answer = lambda s, a: PermanentFailure("21610", "STOP", suppress=scope) if s.id == "m1" else Accepted(s.id)
    c.submit([send("m1", send_at=T0),
              send("m2", recipient="b", origin="campaign", send_at=T0 + DAY + 60),
              send("otp", recipient="c", origin="transactional", send_at=T0 + DAY + 120)], T0)
    f = finals(run(c, T0 + 2 * DAY, InstantProvider(answer)))
    assert f["m1"].status is Status.FAILED
    assert (f["m2"].status, f["m2"].reason) == (Status.SKIPPED, Reason.SUPPRESSED)
    assert f["otp"].status is (Status.SENT if scope == "marketing" else Status.SKIPPED)
    assert c.unsuppress("sms", FR_MOBILE)
    c.submit([send("m3", recipient="d", origin="campaign", send_at=T0 + 3 * DAY)], T0 + 2 * DAY)
    assert finals(run(c, T0 + 4 * DAY, start=T0 + 2 * DAY))["m3"].status is Status.SENT


def test_r15_send_expiring_while_held_by_quiet_hours_is_skipped_expired():
    """R15: a send that cannot leave before expires_at is skipped as expired, not sent late."""
    c = core()
    night = at(PARIS, 2027, 1, 13, 22, 0)
    c.submit([send("x", send_at=night, expires_at=night + 2 * HOUR),
              send("y", recipient="y", send_at=T0, expires_at=T0 - 1)], T0)
    f = finals(run(c, night + DAY))
    assert (f["x"].status, f["x"].reason) == (Status.SKIPPED, Reason.EXPIRED)
    assert f["y"].reason is Reason.EXPIRED


# ---------------------------------------------------------------- R16–R19


def test_r16_sms_segments_count_against_the_route_rate():
    """R16: a 3-segment SMS costs 3 units of a 3/s route: one such message per second."""
    c = core('[[routes]]\nprovider = "sandbox"\nrate = 3\nburst = 3')
    long_body = "x" * 400  # GSM-7: 3 parts of 153
    c.submit([send(f"l{i}", to=f"+336{i:08d}", body=long_body, send_at=T0) for i in range(5)], T0)
    p = InstantProvider()
    drive(c, T0 + 10, p, start=T0)
    times = [t - T0 for t, _ in p.sent_at()]
    assert times == pytest.approx([0, 1, 2, 3, 4], abs=0.01)


def test_r16_provider_defaults_apply_without_a_route_entry_and_daily_cap_blocks():
    """R16: a provider's declared rate applies when no [[routes]] matches; a daily cap stops the route until local midnight."""
    spec = ProviderSpec(name="slow", channels=("sms",), rate=2, burst=1, max_concurrency=10)
    c = core("", specs=(spec,))
    c.submit([send(f"s{i}", to=f"+336{i:08d}", send_at=T0) for i in range(4)], T0)
    p = InstantProvider()
    drive(c, T0 + 10, p, start=T0)
    assert [t - T0 for t, _ in p.sent_at()] == pytest.approx([0, 0.5, 1.0, 1.5], abs=0.01)
    c = core('[[routes]]\nprovider = "sandbox"\ndaily_cap = 3\ndaily_cap_timezone = "Europe/Paris"')
    c.submit([send(f"d{i}", origin="transactional", to=f"+336{i:08d}", send_at=T0) for i in range(5)], T0)
    p = InstantProvider()
    drive(c, T0 + 2 * DAY, p, start=T0)
    times = [t for t, _ in p.sent_at()]
    assert len(times) == 5
    assert times[3] == pytest.approx(at(PARIS, 2027, 1, 14, 0, 0), abs=0.01)


def test_r16_provider_wide_limit_caps_all_routes_together():
    """R16: [providers.X] total_rate caps the provider's routes together; each route alone is unlimited."""
    c = core('[providers.sandbox]\ntotal_rate = 5\ntotal_burst = 5')
    sends = [send(f"s{i}", origin="transactional", to=f"+336{i:08d}", carrier=("A", "B", "C")[i % 3], send_at=T0)
             for i in range(60)]
    c.submit(sends, T0)
    p = InstantProvider()
    drive(c, T0 + 60, p, start=T0)
    times = sorted(t for t, _ in p.sent_at())
    assert len(times) == 60 and len({b.carrier for _, b in p.batches}) == 3
    for i, a in enumerate(times):
        for k in range(i, len(times)):
            assert k - i + 1 <= 5 + 5 * (times[k] - a + 1e-6)
    assert times[-1] - T0 == pytest.approx((60 - 5) / 5, abs=0.01)  # and it never idles


def test_r17_carrier_from_send_then_hook_then_phonenumbers():
    """R17: the carrier is send.carrier, else the hook's answer, else phonenumbers' carrier name, else unknown."""
    from sendcore.phones import carrier_of

    c = core(lookup_carrier=lambda s: "HookTel" if s.recipient == "hooked" else None)
    c.submit([send("a", carrier="Given", send_at=T0), send("b", recipient="hooked", send_at=T0),
              send("c", recipient="pn", send_at=T0)], T0)
    p = InstantProvider()
    drive(c, T0 + 1, p, start=T0)
    carriers = {s.id: b.carrier for _, b in p.batches for s in b.sends}
    assert carriers["a"] == "Given" and carriers["b"] == "HookTel"
    assert carriers["c"] == (carrier_of(FR_MOBILE) or "unknown")


def test_r18_temporary_failures_retry_with_backoff_then_fail():
    """R18: temporary failures retry with growing, jittered delays up to max_attempts, then fail."""
    c = core('[retry]\nmax_attempts = 4\nbase_delay = "10s"\nmax_delay = "1h"\njitter = 0.5')
    c.submit([send("t", send_at=T0)], T0)
    p = InstantProvider(lambda s, a: TemporaryFailure("503", "busy"))
    outs = []
    drive(c, T0 + DAY, p, start=T0, outcomes=outs)
    times = [t - T0 for t, _ in p.sent_at()]
    assert len(times) == 4
    gaps = [b - a for a, b in zip(times, times[1:])]
    for i, g in enumerate(gaps):
        assert 10 * 2**i * 0.5 <= g <= 10 * 2**i + 0.01
    f = finals(outs)["t"]
    assert (f.status, f.reason, f.attempt) == (Status.FAILED, Reason.MAX_ATTEMPTS, 4)
    assert sum(o.status is Status.RETRYING for o in outs) == 3


def test_r18_rate_limited_slows_the_route_and_retries_without_spending_an_attempt():
    """R18: rate_limited pushes the whole route back by retry_after; the send goes again with the same id."""
    c = core()
    calls = []

    def answer(s, a):
        calls.append(s.id)
        return RateLimited(30.0) if len(calls) == 1 else Accepted(s.id)

    c.submit([send("r", send_at=T0), send("r2", recipient="z", send_at=T0 + 1)], T0)
    p = InstantProvider(answer)
    outs = []
    drive(c, T0 + 100, p, start=T0, outcomes=outs)
    times = dict((sid, t - T0) for t, sid in p.sent_at())
    assert times["r"] == pytest.approx(30, abs=0.01)
    assert times["r2"] >= 30  # the route was slowed, not just the send
    assert finals(outs)["r"].attempt == 1


def test_r19_batches_never_mix_and_never_exceed_max_batch():
    """R19: batches are per provider, sender and channel, at most max_batch, in priority order."""
    spec = ProviderSpec(name="sandbox", channels=("sms", "email"), max_batch=7, max_concurrency=100)
    c = core("", specs=(spec,))
    sends = [send(f"s{i}", channel="sms" if i % 2 else "email", to=f"+336{i:08d}" if i % 2 else f"{i}@x.io",
                  sender="A" if i % 3 else "B", origin=("campaign", "flow", "transactional")[i % 3], send_at=T0)
             for i in range(60)]
    c.submit(sends, T0)
    p = InstantProvider()
    drive(c, T0 + 5, p, start=T0)
    assert sum(len(b.sends) for _, b in p.batches) == 60
    for _, b in p.batches:
        assert len(b.sends) <= 7
        assert {s.channel for s in b.sends} == {b.channel}
        assert {s.sender or "" for s in b.sends} == {b.sender}


# ---------------------------------------------------------------- R20–R24


def test_r20_abandoned_cart_flow_stopped_by_conversion():
    """R20: SMS at +1 h, +24 h, +48 h after abandonment; the order at +30 h cancels the rest of the flow."""
    c = core()
    t = T0
    flow = [send(f"cart-{k}", recipient="alice", origin_id="abandoned-cart", send_at=t + h * HOUR,
                 smart_sending=False) for k, h in ((1, 1), (2, 24), (3, 48))]
    other = send("news", recipient="alice", origin="campaign", origin_id="bf", send_at=t + 60 * HOUR, channel="email")
    c.submit([*flow, other], t)
    p = InstantProvider()
    drive(c, t + 30 * HOUR, p, start=t)
    rep = c.cancel(t + 30 * HOUR, recipient="alice", origin_id="abandoned-cart")
    assert rep.cancelled == ["cart-3"]
    drive(c, t + 80 * HOUR, p, start=t + 30 * HOUR)
    assert [sid for _, sid in p.sent_at()] == ["cart-1", "cart-2", "news"]
    assert c.outcome("cart-3").status is Status.CANCELLED
    assert c.cancel(t + 80 * HOUR, ids=["cart-1", "nope"]).too_late == ["cart-1"]


def test_r20_cancel_of_a_send_in_flight_is_too_late():
    """R20: once handed to a provider, cancel reports too_late and the send completes."""
    c = core()
    c.submit([send("a", send_at=T0)], T0)
    (b,) = c.advance(T0)
    rep = c.cancel(T0, ids=["a"])
    assert rep.too_late == ["a"] and not rep.cancelled
    c.record(b, [Accepted("pa")], T0 + 1)
    assert c.outcome("a").status is Status.SENT


def test_r20b_explain_tells_where_a_send_waits_and_why():
    """R20b: explain names the state, the rule holding the send and the earliest instant."""
    c = core('[[routes]]\nprovider = "sandbox"\nrate = 1\nburst = 1')
    night = at(PARIS, 2027, 1, 13, 22, 0)
    c.submit([send("q", send_at=night), *[send(f"b{i}", to=f"+336{i:08d}", send_at=T0) for i in range(10)]], T0)
    c.advance(T0)
    ex = c.explain("b5")
    assert ex.state == "queued" and ex.rule == "rate_limit"
    assert ex.earliest == pytest.approx(T0 + 5, abs=0.01)
    c.advance(night)
    ex = c.explain("q")
    assert ex.state == "scheduled" and ex.rule == "quiet_hours"
    assert ex.earliest >= at(PARIS, 2027, 1, 14, 11, 0)
    drive(c, night + DAY, start=night)
    ex = c.explain("q")
    assert ex.state == "final" and ex.outcome.status is Status.SENT
    assert c.explain("nope") is None


def test_r21_every_send_gets_exactly_one_final_outcome_and_delivery_events():
    """R21: one final outcome per send; delivery reports add delivered/undelivered events."""
    c = core()
    c.submit([send(f"s{i}", recipient=f"r{i % 3}", to=f"+336{i:08d}", send_at=T0 + i) for i in range(30)], T0)
    outs = run(c, T0 + DAY)
    per = {}
    for o in outs:
        if o.status.is_final:
            per[o.send_id] = per.get(o.send_id, 0) + 1
    assert per == {f"s{i}": 1 for i in range(30)}
    assert c.delivery_report("s0", True, T0 + DAY)
    assert not c.delivery_report("nope", True, T0 + DAY)
    (ev,) = c.drain_outcomes()
    assert ev.status is Status.DELIVERED


def test_r22_replaying_the_same_inputs_rebuilds_the_same_decisions():
    """R22 (design for the journal): the core is deterministic: replaying its inputs yields identical outcomes."""
    def once():
        c = core('[[routes]]\nprovider = "sandbox"\nrate = 5\nburst = 2')
        night = at(PARIS, 2027, 1, 13, 23, 0)
        c.submit([send(f"s{i}", recipient=f"r{i % 7}", to=f"+336{i:08d}", send_at=night + i,
                       origin=("flow", "campaign")[i % 2]) for i in range(200)], T0)
        answer = lambda s, a: TemporaryFailure("x", "y") if s.id.endswith("3") and a < 2 else Accepted(s.id)
        return run(c, night + 2 * DAY, InstantProvider(answer))

    first = once()
    assert any(o.status is Status.RETRYING for o in first) and any(o.status is Status.DEFERRED for o in first)
    assert first == once()


def test_r23_bad_items_are_rejected_with_the_field_and_good_ones_accepted():
    """R23: each invalid item is reported with the field at fault; valid items beside it are accepted."""
    c = core()
    items = [
        send("ok1", send_at=T0),
        {"id": "d1", "recipient": "r", "channel": "sms", "to": FR_MOBILE, "origin": "flow", "send_at": "soon"},
        send("bad-ch", channel="fax", send_at=T0),
        send("bad-to", to="06 12 34", send_at=T0),
        send("bad-tz", timezone="Mars/Olympus", send_at=T0),
        send("naive", send_at=datetime(2027, 1, 13, 10, 0)),
        send("bad-origin", send_at=T0).__class__(id="o", recipient="r", channel="sms", to=FR_MOBILE, origin="spam"),
        send("both", send_at=T0, local_send_at="2027-01-14T10:00"),
        send("bad-local", local_send_at="tomorrow"),
        send("", send_at=T0),
        42,
        send("wt", send_at=T0).__class__(id="wt", recipient=123, channel="sms", to=FR_MOBILE, origin="flow"),
        {"id": "ok2", "recipient": "r2", "channel": "email", "to": "a@b.c", "origin": "campaign", "send_at": T0},
    ]
    rep = c.submit(items, T0)
    assert rep.accepted == 2 and set(rep.accepted_ids) == {"ok1", "ok2"}
    reasons = {r.index: r.reason for r in rep.rejected}
    assert reasons[1].startswith("send_at")
    assert reasons[2].startswith("channel:") and "fax" in reasons[2]
    assert reasons[3].startswith("to:")
    assert reasons[4].startswith("timezone:")
    assert reasons[5].startswith("send_at:") and "naive" in reasons[5]
    assert reasons[6].startswith("origin:")
    assert reasons[7].startswith("local_send_at:")
    assert reasons[8].startswith("local_send_at:")
    assert reasons[9].startswith("id:")
    assert reasons[10].startswith("send:")
    assert reasons[11].startswith("recipient:") and "int" in reasons[11]


def test_r24_max_pending_is_back_pressure_and_nothing_is_lost():
    """R24: a submit that would exceed max_pending raises a clear error and accepts nothing of that batch."""
    c = core("max_pending = 10")
    assert c.submit([send(f"a{i}", send_at=T0 + 60) for i in range(8)], T0).accepted == 8
    with pytest.raises(PendingLimitError, match="max_pending"):
        c.submit([send(f"b{i}", send_at=T0 + 60) for i in range(3)], T0)
    assert c.pending == 8
    assert c.submit([send("b0", send_at=T0 + 60), send("b1", send_at=T0 + 60)], T0).accepted == 2
