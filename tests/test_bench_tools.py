"""The bench tools that explain the figures: ``bench.stages`` (time per stage) and ``bench.floor`` (the skeleton)."""

from __future__ import annotations

from bench import measure as M
from bench import floor, stages


def test_timing_the_stages_leaves_the_outcomes_and_the_classes_as_they_were():
    originals = [(cls, name, cls.__dict__[name]) for cls, name, _ in stages.STAGES]
    timed = stages.measure(3_000)
    # The same day untimed ends every send the same way.
    plain = M.case_e2e_core(3_000)()
    assert timed["final"] == plain["final"] and sum(plain["final"].values()) == 3_000
    for cls, name, fn in originals:
        assert cls.__dict__[name] is fn, f"{cls.__name__}.{name} was left wrapped"
    spent, calls = timed["spent"], timed["calls"]
    advance = spent["Core.advance"]
    assert timed["wakeups"] == calls["Core.advance"] > 0
    # Every stage ran, and the rows directly inside Core.advance add up to no more than it.
    inside = [label for label in spent if label.startswith("  ") and not label.startswith("    ")]
    assert {"  admit chain", "  dispatch: pacing, batches", "  pending store: decode them"} <= set(inside)
    assert sum(spent[label] for label in inside) <= advance
    assert spent["    dispatch chain"] <= spent["  dispatch: pacing, batches"]
    assert calls["Core.record (answers)"] > 0


def test_the_skeleton_hands_every_send_of_the_day_to_the_provider_once():
    n = 2_000
    day = M.scenario(n)
    got = floor.case_skeleton(n)()
    assert got == {"final": {"sent": n}, "pending": 0, "outcomes": n}
    assert len({s.id for s in day.sends}) == n  # one outcome per distinct send, none merged


def test_floor_measure_reports_each_case_per_send_and_checks_that_each_drained():
    got = floor.measure(1_000, rounds=1)
    assert set(got) == {"skeleton", "hand_rolled", "sendcore"}
    assert all(0 < v < 1e-3 for v in got.values()), got  # CPU seconds per send: microseconds, not seconds
