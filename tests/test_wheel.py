"""The timing wheel: never early, jumps between non-empty buckets, priority order, lazy cancels."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from sendcore.wheel import SPAN, TICK, PriorityWheel, TimingWheel, tick_of


def drain(w, start: float, end: float) -> list[tuple[float, object]]:
    """Pop everything by jumping from next_due to next_due, recording the release time."""
    out = []
    now = start
    while True:
        nd = w.next_due()
        if nd is None or nd > end:
            break
        now = max(now, nd)
        for item in w.pop_due(now):
            out.append((now, item))
    return out


def test_worked_example_from_the_header():
    w = TimingWheel()
    w.pop_due(1000.0)  # the clock enters slot 15
    for due in (1000.0005, 1010.2, 1030.0, 1000 + 30 * 86400):
        w.insert(due, due)
    assert w.next_due() == 1000.001
    assert w.pop_due(1000.001) == [1000.0005]
    assert w.next_due() == 1010.2
    assert w.pop_due(1010.2) == [1010.2]
    assert w.next_due() == 1024.0  # a cascade, not a send
    assert w.pop_due(1024.0) == []
    assert w.next_due() == 1030.0
    assert w.pop_due(1030.0) == [1030.0]
    assert w.next_due() == (1000 + 30 * 86400) // SPAN * SPAN


def test_past_due_sends_leave_on_the_next_pop():
    w = TimingWheel()
    w.pop_due(500.0)
    w.insert(10.0, "late")
    assert w.pop_due(500.0) == ["late"]


def test_equal_due_times_leave_in_submission_order():
    w = TimingWheel()
    for i in range(100):
        w.insert(42.0, i)
    assert w.pop_due(42.0) == list(range(100))


def test_limit_splits_a_bucket_without_losing_items():
    w = TimingWheel()
    for i in range(10):
        w.insert(5.0, i)
    assert w.pop_due(5.0, limit=4) == [0, 1, 2, 3]
    assert w.next_due() == 5.0
    assert w.pop_due(5.0, limit=4) == [4, 5, 6, 7]
    assert w.pop_due(5.0) == [8, 9]
    assert len(w) == 0


def test_priority_wheel_pops_higher_priority_first_across_due_times():
    w = PriorityWheel()
    w.insert(2, 1.0, "campaign-early")
    w.insert(0, 3.0, "otp-later")
    w.insert(1, 2.0, "flow")
    assert w.pop_due(5.0) == ["otp-later", "flow", "campaign-early"]


def test_prune_drops_dead_items_and_keeps_order():
    w = TimingWheel()
    for i in range(20):
        w.insert(1000.0 + i, i)
    assert w.prune(lambda x: x % 2 == 0) == 10
    assert [x for _, x in drain(w, 0.0, 2000.0)] == list(range(0, 20, 2))


@settings(max_examples=200, deadline=None)
@given(
    dues=st.lists(st.floats(min_value=0, max_value=60 * 86400, allow_nan=False), min_size=1, max_size=300),
    start=st.floats(min_value=0, max_value=1000),
)
def test_never_early_and_never_more_than_a_tick_late(dues, start):
    """Property: every item leaves at or after its due time, at most one tick after (when polled at next_due)."""
    w = TimingWheel()
    w.pop_due(start)
    for i, d in enumerate(dues):
        w.insert(d, (d, i))
    out = drain(w, start, 61 * 86400)
    assert len(out) == len(dues)
    for released, (due, _) in out:
        assert released >= due
        assert released <= max(due, start) + TICK + 1e-9
    # Release order is due order at tick resolution; equal due times keep insertion order.
    ticks = [tick_of(d) for _, (d, _) in out]
    assert ticks == sorted(ticks)
    for (_, (d1, i1)), (_, (d2, i2)) in zip(out, out[1:]):
        if d1 == d2:
            assert i1 < i2


def test_a_million_sends_spread_over_sixty_days_cost_few_buckets():
    rnd = random.Random(1)
    w = TimingWheel()
    w.pop_due(0.0)
    n = 200_000
    for i in range(n):
        w.insert(rnd.uniform(0, 60 * 86400), i)
    # Far sends share 64 s buckets instead of one bucket each.
    assert len(w._far) <= 60 * 86400 / SPAN + 1
    assert len(w) == n
