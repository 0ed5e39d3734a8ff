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


class _Item:
    """An item with a state the wheel's ``live``/``held`` views read (as the core's entries)."""

    def __init__(self, name: str, due: float) -> None:
        self.name, self.due, self.state = name, due, "waiting"


def _waiting(x: _Item) -> bool:
    return x.state == "waiting"


def _not_dead(x: _Item) -> bool:
    return x.state != "dead"


def test_the_wheel_counts_its_tombstones_drops_them_on_pop_and_compacts_when_they_pile_up():
    """Lazy cancels owned by the wheel: the pop limit counts dead items; compaction waits for >10k and >half."""
    w = PriorityWheel(operator.attrgetter("due"))
    items = [_Item(f"i{k}", 10.0 + k * 1e-6) for k in range(30_000)]
    for x in items:
        w.insert(0, x.due, x)
    for x in items[:9_000]:
        x.state = "dead"
    w.discarded(9_000)
    assert w.compact(21_000, _not_dead) == 0 and w.dead == 9_000  # not more than 10,000 yet
    for x in items[9_000:25_000]:
        x.state = "dead"
    w.discarded(16_000)
    assert w.compact(100_000, _not_dead) == 0  # more than 10,000 but not half of what is held
    got = w.pop_live(11.0, _waiting, limit=4096)
    assert got == [] and w.dead == 25_000 - 4096  # the limit counted the dead ones, which left the count
    assert w.compact(5_000, _not_dead) == 25_000 - 4096 and w.dead == 0
    assert len(w) == 5_000
    rest = w.pop_live(11.0, _waiting)
    assert [x.name for x in rest] == [f"i{k}" for k in range(25_000, 30_000)]


def test_a_wheel_pickled_before_it_counted_tombstones_loads_with_none():
    import pickle

    w = PriorityWheel(operator.attrgetter("due"))
    w.insert(0, 5.0, _Item("a", 5.0))
    old = pickle.loads(pickle.dumps(w))
    object.__delattr__(old, "dead")
    again = pickle.loads(pickle.dumps(old))
    assert again.dead == 0
    assert [x.name for x in again.pop_live(6.0, _waiting)] == ["a"]


def test_a_core_state_from_before_the_wheel_owned_its_tombstones_imports_and_skips_the_cancelled():
    """A snapshot's wheel without a tombstone count (older versions) imports, and cancelled entries stay out."""
    import pickle

    from sendcore.send import Accepted

    from .helpers import UTC, at, core, send

    t = at(UTC, 2026, 3, 2, 12, 0)
    a = core()
    a.submit([send(f"s{i}", origin="transactional", send_at=t + 60) for i in range(3)], t)
    assert a.cancel(t, ids=["s1"]).cancelled == ["s1"]
    state = pickle.loads(pickle.dumps(a.export_state()))
    object.__delattr__(state["_wheel"], "dead")
    old = pickle.loads(pickle.dumps(state))
    assert old["_dead_in_wheel"] == 1
    b = core()
    b.import_state(old)
    assert b._wheel.dead == 1
    batches = b.advance(t + 61)
    assert sorted(s.id for batch in batches for s in batch.sends) == ["s0", "s2"]
    for batch in batches:
        b.record(batch, [Accepted()] * len(batch.sends), t + 61)
    assert b.pending == 0 and b._wheel.dead == 0
