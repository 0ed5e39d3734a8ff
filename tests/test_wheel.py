"""The timing wheel: never early, jumps between non-empty buckets, priority order, lazy cancels."""

from __future__ import annotations

import operator
import random

import pytest
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
@pytest.mark.parametrize("due_of", [None, operator.itemgetter(0)], ids=["pairs", "due_of"])
def test_never_early_and_never_more_than_a_tick_late(dues, start, due_of):
    """Property: every item leaves at or after its due time, at most one tick after (when polled at next_due).

    The same with ``due_of`` (far buckets hold the items alone and read the due time back)."""
    w = TimingWheel(due_of)
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


@given(dues=st.lists(st.floats(min_value=0, max_value=10 * 86400, allow_nan=False), min_size=1, max_size=200),
       pops=st.lists(st.floats(min_value=0, max_value=11 * 86400), max_size=8), dead=st.sets(st.integers(0, 199)))
def test_due_of_pops_exactly_what_pairs_pop(dues, pops, dead):
    """A PriorityWheel with ``due_of`` and one with pairs give the same items in the same order, pruned or not."""
    a, b = PriorityWheel(), PriorityWheel(operator.itemgetter(0))
    for i, d in enumerate(dues):
        for w in (a, b):
            w.insert(i % 3, d, (d, i))
    for w in (a, b):
        w.prune(lambda x: x[1] not in dead)
    for t in sorted(pops) + [11 * 86400.0]:
        assert a.pop_due(t, 50) == b.pop_due(t, 50)
        assert a.next_due() == b.next_due()
    assert sorted(a.items()) == sorted(b.items()) == []


def test_a_wheel_pickled_before_due_of_existed_still_loads_and_pops():
    """Snapshots hold pickled wheels: one without ``_due_of`` (far buckets of pairs) loads as a pairs wheel."""
    import pickle

    w = PriorityWheel()
    w.insert(1, 100_000.0, "far")
    w.insert(1, 0.5, "near")
    w.pop_due(0.0)
    data = pickle.dumps(w)
    # Rewrite the pickle as the old classes wrote it: no _due_of in either state.
    old = pickle.loads(data)
    for x in (old, *old._wheels.values()):
        object.__delattr__(x, "_due_of")
    state = pickle.dumps(old)
    again = pickle.loads(state)
    assert again._due_of is None and all(x._due_of is None for x in again._wheels.values())
    assert again.pop_due(1.0) == ["near"] and again.pop_due(100_001.0) == ["far"]


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
