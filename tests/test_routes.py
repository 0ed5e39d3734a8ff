"""GCRA pacing: exact rate, burst, pushback (R16, R18)."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from sendcore.routes import Gcra, limits_for
from sendcore.settings import RouteLimit


def test_worked_example_from_the_header():
    g = Gcra(10, 3)
    assert g.available(0.0) == 3
    g.take(0.0, 3)
    assert g.available(0.0) == 0
    assert abs(g.ready_at(1) - 0.1) < 1e-12
    assert g.available(0.1) == 1


def test_unlimited_bucket_never_holds_back():
    g = Gcra(0, 0)
    assert g.unlimited and g.available(5.0) == float("inf")


def test_oversize_request_waits_for_an_empty_bucket_then_leaves():
    g = Gcra(1, 2)
    g.take(0.0, 2)
    assert g.ready_at(5) == 2.0  # bucket empty at t=2, then the 5-unit message leaves whole


def test_most_specific_route_limit_wins():
    routes = [
        RouteLimit(provider="sandbox", rate=100),
        RouteLimit(provider="sandbox", carrier="Orange", rate=10),
        RouteLimit(provider="sandbox", sender="SHOP", rate=50),
        RouteLimit(provider="other", rate=1),
    ]
    assert limits_for(routes, "sandbox", "SHOP", "Orange").rate == 10
    assert limits_for(routes, "sandbox", "SHOP", "SFR").rate == 50
    assert limits_for(routes, "sandbox", "X", "SFR").rate == 100
    assert limits_for(routes, "nobody", "X", "SFR") is None


@settings(max_examples=150, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=500),
    burst=st.integers(min_value=1, max_value=50),
    asks=st.lists(st.tuples(st.floats(min_value=0, max_value=2), st.integers(min_value=1, max_value=3)), max_size=200),
)
def test_greedy_sender_never_exceeds_rate_in_any_window(rate, burst, asks):
    """Property: sending whenever allowed, units in any window W stay <= burst + rate*W."""
    g = Gcra(rate, burst)
    t = 0.0
    sent: list[tuple[float, int]] = []
    for gap, units in asks:
        t += gap
        units = min(units, burst)
        at = max(t, g.ready_at(units))
        assert g.available(at) >= units
        g.take(at, units)
        sent.append((at, units))
        t = at
    for i, (a, _) in enumerate(sent):
        total = 0
        for b, u in sent[i:]:
            total += u
            assert total <= burst + rate * (b - a) + 1e-6


@settings(max_examples=300, deadline=None)
@given(
    base=st.floats(min_value=1.7e9, max_value=2.1e9),
    rate=st.floats(min_value=0.01, max_value=100_000),
    burst=st.integers(min_value=1, max_value=200),
    units=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=60),
)
def test_ready_at_is_honoured_by_available_at_epoch_magnitudes(base, rate, burst, units):
    """A route woken at ready_at(u) always finds u units: no wake-up loop at the same instant."""
    g = Gcra(rate, burst)
    now = base
    g.take(now, 1)
    for u in units:
        u = min(u, burst)
        t = max(now, g.ready_at(u))
        assert g.available(t) >= u, (t, u)
        g.take(t, u)
        now = t
