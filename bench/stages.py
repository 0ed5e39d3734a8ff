"""Where the core's time goes on the SCENARIOS day, stage by stage.

Runs ``bench.measure.case_e2e_core``'s workload (submit at the start, then
``drive`` through the day) once, with ``time.perf_counter`` around each
stage's entry point, and prints a table: seconds, share of the drive, calls,
and microseconds per wake-up (``Core.advance`` call). The timers add about
half a microsecond per call they wrap, so the totals are a little above an
untimed run's; the split between stages is what the table is for.

Run: ``python -m bench.stages 100000`` (about 5 s; ``1000000``: about a minute).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import Any, Callable

from sendcore.admission import PolicyChain
from sendcore.core import Core
from sendcore.dispatch import Dispatch
from sendcore.ledger import Ledger
from sendcore.rows import PendingRows
from sendcore.testing.simulate import drive
from sendcore.wheel import PriorityWheel

from . import measure as M

#: (class, method, label): each stage's entry point, timed in place; indented rows run inside the row above.
#: A policy chain's label names its stage: "{stage}" is filled in per call.
STAGES: tuple[tuple[type, str, str], ...] = (
    (Core, "advance", "Core.advance"),
    (Ledger, "expire", "  ledger: outcomes past retention"),
    (PriorityWheel, "pop_live", "  wheel: pop the due entries"),
    (PendingRows, "pop_due", "  pending store: rows due"),
    (PendingRows, "pop_many", "  pending store: decode them"),
    (PolicyChain, "run", "  {stage} chain"),
    (Dispatch, "enqueue", "  queue on routes"),
    (Dispatch, "dispatch_ready", "  dispatch: pacing, batches"),
    (Core, "record", "Core.record (answers)"),
    (Core, "next_wakeup", "Core.next_wakeup"),
)
#: Where each chain's row goes: the dispatch chain runs inside dispatch.
_CHAIN_LABELS = {"admit": "  admit chain", "dispatch": "    dispatch chain"}


def _timed(fn: Callable[..., Any], label: str, spent: dict[str, float], calls: dict[str, int]) -> Callable[..., Any]:
    clock = time.perf_counter

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        t = clock()
        try:
            return fn(self, *args, **kwargs)
        finally:
            key = _CHAIN_LABELS[self.stage.name.lower()] if "{stage}" in label else label
            spent[key] += clock() - t
            calls[key] += 1

    return timed


def measure(n: int) -> dict[str, Any]:
    """Run the day of ``n`` sends once with every stage timed; return the totals per stage."""
    sc = M.scenario(n)
    core = Core(M.all_policies_settings(), M.scenario_providers())
    for ch, addr in sc.suppressed:
        core.suppress(ch, addr, "marketing")
    answer = M.scenario_answer(sc.bad)
    t = time.perf_counter()
    core.submit(sc.sends, sc.start)
    submit = time.perf_counter() - t
    spent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    saved = [(cls, name, cls.__dict__[name]) for cls, name, _ in STAGES]
    try:
        for cls, name, label in STAGES:
            setattr(cls, name, _timed(cls.__dict__[name], label, spent, calls))
        t = time.perf_counter()
        drive(core, sc.until, answer, start=sc.start)
        total = time.perf_counter() - t
    finally:
        for cls, name, fn in saved:
            setattr(cls, name, fn)
    st = core.stats()
    assert st.pending == 0, st
    return {"n": n, "submit": submit, "drive": total, "spent": dict(spent), "calls": dict(calls),
            "wakeups": calls[STAGES[0][2]], "final": st.final}


def main(argv: Any = None) -> None:
    """Print the table for the size given on the command line."""
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, nargs="?", default=100_000, help="sends in the day (default 100,000)")
    args = ap.parse_args(argv)
    r = measure(args.n)
    wakeups = max(1, r["wakeups"])
    table = Table(title=f"SCENARIOS day, {r['n']:,} sends through the core: submit {r['submit']:.2f} s, "
                        f"drive {r['drive']:.2f} s, {r['wakeups']:,} wake-ups (wall time, timers on)")
    for col in ("stage (indented: inside the row above)", "s", "of drive", "calls", "µs / wake-up"):
        table.add_column(col, justify="left" if col.startswith("stage") else "right")
    labels = [lab for _, _, label in STAGES
              for lab in ((_CHAIN_LABELS["admit"],) if "{stage}" in label else (label,))]
    labels.insert(labels.index("  dispatch: pacing, batches") + 1, _CHAIN_LABELS["dispatch"])
    for label in labels:
        s = r["spent"].get(label, 0.0)
        table.add_row(label, f"{s:.3f}", f"{100 * s / r['drive']:.0f}%", f"{r['calls'].get(label, 0):,}",
                      f"{1e6 * s / wakeups:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
