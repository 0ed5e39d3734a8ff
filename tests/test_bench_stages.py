"""``python -m bench.stages``: the per-stage timing of the core must not change what the core does."""

from __future__ import annotations

from bench import measure as M
from bench import stages


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
