"""Property tests (hypothesis) of the core's invariants on virtual time."""

from __future__ import annotations

from datetime import datetime

from hypothesis import HealthCheck, given, settings, strategies as st

from sendcore.ledger import IN_FLIGHT, QUEUED, SCHEDULED, STATE_NAMES
from sendcore.send import Accepted, PermanentFailure, RateLimited, Status, TemporaryFailure
from sendcore.testing.simulate import InstantProvider, drive

from .helpers import PARIS, at, core, send

T0 = at(PARIS, 2027, 1, 13, 12, 0)
DAY = 86400.0

ORIGINS = ("transactional", "flow", "campaign")


@st.composite
def workloads(draw, max_sends: int = 60):
    """Random sends over two days: recipients, origins, channels, times, expiries, bodies."""
    n = draw(st.integers(min_value=1, max_value=max_sends))
    sends = []
    for i in range(n):
        r = draw(st.integers(min_value=0, max_value=8))
        ch = draw(st.sampled_from(("sms", "sms", "email")))
        t = T0 + draw(st.floats(min_value=-3600, max_value=2 * DAY))
        exp = draw(st.one_of(st.none(), st.floats(min_value=60, max_value=DAY)))
        body = draw(st.sampled_from(("hi", "x" * 200, "café ☕", "")))
        sends.append(send(f"s{i}", channel=ch, recipient=f"r{r}", to=f"+3361234{r:04d}" if ch == "sms" else f"r{r}@x.io",
                          origin=draw(st.sampled_from(ORIGINS)), send_at=t, body=body,
                          expires_at=None if exp is None else t + exp,
                          smart_sending=draw(st.booleans())))
    return sends


RESULTS = st.sampled_from(("ok", "ok", "ok", "temp", "perm", "limited"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sends=workloads(), answers=st.lists(RESULTS, min_size=1, max_size=30).map(lambda a: a + ["ok"]), cancel=st.sets(st.integers(0, 59)))
def test_every_send_gets_exactly_one_final_outcome_and_cancelled_never_leave(sends, answers, cancel):
    """R21/R20: every accepted send ends exactly once; a cancelled send is never handed to a provider."""
    c = core('[[routes]]\nprovider = "sandbox"\nrate = 2\nburst = 2\n[retry]\nbase_delay = "30s"\nmax_attempts = 3')
    calls = iter(range(10**9))

    def answer(s, a):
        kind = answers[next(calls) % len(answers)]
        return {"ok": Accepted(s.id), "temp": TemporaryFailure("t", "busy"),
                "perm": PermanentFailure("p", "bad"), "limited": RateLimited(5.0)}[kind]

    rep = c.submit(sends, T0 - 3600)
    assert rep.accepted == len(sends)
    p = InstantProvider(answer)
    outs = []
    drive(c, T0 + 3600, p, start=T0 - 3600, outcomes=outs)
    ids = [s.id for s in sends if int(s.id[1:]) in cancel]
    rep = c.cancel(T0 + 3600, ids=ids)
    cancelled = set(rep.cancelled)
    drive(c, T0 + 10 * DAY, p, start=T0 + 3600, outcomes=outs)
    finals: dict[str, int] = {}
    for o in outs:
        if o.status.is_final:
            finals[o.send_id] = finals.get(o.send_id, 0) + 1
    assert finals == {s.id: 1 for s in sends}
    assert c.pending == 0
    handed_after = {sid for t, sid in p.sent_at() if t > T0 + 3600}
    assert not (handed_after & cancelled)
    for sid in cancelled:
        assert c.outcome(sid).status is Status.CANCELLED


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sends=workloads())
def test_nothing_leaves_before_send_at_and_no_marketing_sms_in_quiet_hours(sends):
    """R8/R12: no non-transactional SMS leaves in quiet hours (20:00–11:00 Paris); nothing leaves early."""
    c = core('default_timezone = "Europe/Paris"')
    c.submit(sends, T0 - 3600)
    p = InstantProvider()
    drive(c, T0 + 5 * DAY, p, start=T0 - 3600)
    by_id = {s.id: s for s in sends}
    for t, sid in p.sent_at():
        s = by_id[sid]
        assert t >= s.send_at
        if s.channel == "sms" and s.origin.value != "transactional":
            local = datetime.fromtimestamp(t, PARIS)
            assert 11 <= local.hour < 20, (sid, local)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.sampled_from((1.0, 3.0, 10.0, 25.0)),
    burst=st.integers(min_value=1, max_value=10),
    n=st.integers(min_value=20, max_value=300),
    arrivals=st.lists(st.floats(min_value=0, max_value=20), min_size=1, max_size=5),
)
def test_a_route_never_exceeds_its_rate_and_stays_busy_with_a_backlog(rate, burst, n, arrivals):
    """R16: in any window W the route sends at most burst + rate×W; with a backlog it stays ≥ 99% utilised."""
    c = core(f'[[routes]]\nprovider = "sandbox"\nrate = {rate}\nburst = {burst}')
    sends = [send(f"s{i}", origin="transactional", to=f"+336{i:08d}", send_at=T0 + arrivals[i % len(arrivals)])
             for i in range(n)]
    c.submit(sends, T0)
    p = InstantProvider()
    drive(c, T0 + 10 * DAY, p, start=T0)
    times = sorted(t for t, _ in p.sent_at())
    assert len(times) == n
    for i, a in enumerate(times):
        # every window [a, b] starting at a send
        for k in range(i, len(times)):
            # 1 µs of slack: float granularity of epoch seconds (~2.4e-7 s).
            assert k - i + 1 <= burst + rate * (times[k] - a + 1e-6)
    # Utilisation: once every send has arrived, the backlog drains at the full rate.
    last_arrival = T0 + max(arrivals)
    backlog = [t for t in times if t >= last_arrival]
    if len(backlog) > 2 * burst + 10:
        span = backlog[-1] - backlog[0]
        busy = (len(backlog) - 1) / rate  # the drain time of a route that never idles
        assert span <= busy / 0.99 + 1e-6


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sends=workloads(), answers=st.lists(RESULTS, min_size=1, max_size=30).map(lambda a: a + ["ok"]),
       cancel=st.sets(st.integers(0, 59)), steps=st.lists(st.floats(min_value=0.5, max_value=DAY / 4), max_size=12),
       latency=st.sampled_from((0.0, 2.0)))
def test_the_counts_by_state_always_match_the_pending_sends(sends, answers, cancel, steps, latency):
    """stats() reads counts the ledger keeps at every move; they equal a walk of the pending sends at every step.

    Quiet hours, smart sending, caps and expiry defer and end sends; answers retry,
    push back and fail them; cancels end them in the wheel and in route queues;
    answers after a latency keep sends in flight between steps.
    """
    c = core('[[routes]]\nprovider = "sandbox"\nrate = 2\nburst = 2\n[retry]\nbase_delay = "30s"\nmax_attempts = 3\n'
             '[[frequency_caps]]\nchannel = "sms"\nmax = 2\nwindow = "1d"\naction = "defer"\n'
             '[[spacing]]\nafter = "sms"\nbefore = "email"\ngap = "1h"\n')
    calls = iter(range(10**9))

    def answer(s, a):
        kind = answers[next(calls) % len(answers)]
        return {"ok": Accepted(s.id), "temp": TemporaryFailure("t", "busy"),
                "perm": PermanentFailure("p", "bad"), "limited": RateLimited(5.0)}[kind]

    def check() -> None:
        walked = c.ledger.recount()
        st_ = c.stats()
        assert [st_.scheduled, st_.queued, st_.in_flight] == walked
        assert st_.scheduled + st_.queued + st_.in_flight == st_.pending == c.pending
        # Each send's state says where it really waits: in the wheel, in its route's queue, or in a batch.
        in_wheel = {id(e) for e in c._wheel.items()}
        in_queue = {id(e) for r in c.dispatch.routes.values() for q in r.queues.values() for e in q}
        in_batch = {id(e) for fl in c.dispatch.inflight.values() for e in fl.entries}
        held = {SCHEDULED: in_wheel, QUEUED: in_queue, IN_FLIGHT: in_batch}
        for e in c.ledger.pending.values():
            assert id(e) in held[e.where], f"{e.send.id} is {STATE_NAMES[e.where]} but not held there"

    c.submit(sends, T0 - 3600)
    check()
    p = InstantProvider(answer)
    t = T0 - 3600
    for i, dt in enumerate(steps):
        end = drive(c, t + dt, p, start=t, latency=latency)
        t = max(t + dt, end)
        check()
        ids = [s.id for s in sends if int(s.id[1:]) in cancel and int(s.id[1:]) % len(steps) == i]
        c.cancel(t, ids=ids)
        check()
    drive(c, T0 + 10 * DAY, p, start=t)
    check()
    if latency == 0:
        assert c.pending == 0
    else:  # batches still answering when a step's drive ended are never answered: they stay in flight
        assert c.pending == c.stats().in_flight
