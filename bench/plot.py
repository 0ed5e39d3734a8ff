"""Plot the guard's results: sends/s and bytes per pending send against the pending count, sendcore and peers.

Run ``python -m bench.plot`` after ``python -m bench.guard [--full]``: reads
``bench/results/guard-full-latest.json`` (else the quick one, or ``--input``),
writes ``bench/results/plot-<mode>.png``; with ``--publish`` also writes
``bench/plot.png`` (committed, linked from the README). Matplotlib's Agg
backend: no display needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

__all__ = ["main", "plot"]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: Series styles: sendcore in strong colours and solid lines, peers in greys and dashes.
STYLE: dict[str, dict[str, Any]] = {
    "sendcore end to end (core + drive)": {"color": "#d62728", "marker": "o", "lw": 2.4},
    "hand-rolled asyncio (call_later + aiolimiter)": {"color": "#555555", "marker": "o", "ls": "--"},
    "sendcore submit": {"color": "#ff7f0e", "marker": "s", "lw": 2.0},
    "sendcore wheel (hold + drain)": {"color": "#1f77b4", "marker": "^", "lw": 2.0},
    "heapq (hold + drain)": {"color": "#888888", "marker": "^", "ls": "--"},
    "SortedList (hold + drain)": {"color": "#aaaaaa", "marker": "v", "ls": "-."},
    "APScheduler MemoryJobStore (hold + drain)": {"color": "#333333", "marker": "x", "ls": ":"},
    "sendcore, the send included (tracemalloc)": {"color": "#d62728", "marker": "o", "lw": 2.4},
    "sendcore, the send included, RSS (fresh process)": {"color": "#d62728", "marker": "D", "ls": "none",
                                                         "markerfacecolor": "none", "markeredgewidth": 2},
    "sendcore wheel": {"color": "#1f77b4", "marker": "^", "lw": 2.0},
    "heapq": {"color": "#888888", "marker": "^", "ls": "--"},
    "SortedList": {"color": "#aaaaaa", "marker": "v", "ls": "-."},
    "APScheduler MemoryJobStore": {"color": "#333333", "marker": "x", "ls": ":"},
}

_HOLDER_LABEL = {"wheel": "sendcore wheel", "heapq": "heapq", "sortedlist": "SortedList",
                 "apscheduler": "APScheduler MemoryJobStore"}


def _latest(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    for mode in ("full", "quick"):
        p = RESULTS / f"guard-{mode}-latest.json"
        if p.exists():
            return p
    raise FileNotFoundError("no bench/results/guard-*-latest.json: run `python -m bench.guard` first")


def series(doc: dict[str, Any]) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, float]]]:
    """(sends/s series, bytes-per-pending series), each label -> {pending count: value}."""
    speed: dict[str, dict[int, float]] = {}
    mem: dict[str, dict[int, float]] = {}
    for b in doc["benchmarks"]:
        g, e, n = b["group"], b["extra_info"], b["params"].get("n")
        if n is None:
            continue
        if g == "e2e" and b["name"].startswith("sendcore["):
            speed.setdefault("sendcore end to end (core + drive)", {})[n] = e["sends_per_s"]
        elif g == "e2e" and b["name"].startswith("hand_rolled["):
            speed.setdefault("hand-rolled asyncio (call_later + aiolimiter)", {})[n] = e["sends_per_s"]
        elif g == "hold.submit" and b["name"].startswith("submit_sends["):
            speed.setdefault("sendcore submit", {})[n] = e["sends_per_s"]
        elif g == "hold.peers":
            h = b["name"].split("[")[0]
            label = _HOLDER_LABEL.get(h, h)
            speed.setdefault(f"{label} (hold + drain)", {})[n] = e["hold_drain_per_s"]
            if "bytes_per_pending" in e:
                mem.setdefault(label, {})[n] = e["bytes_per_pending"]
        elif g == "hold.memory" and b["name"].startswith("rss_per_pending["):
            mem.setdefault("sendcore, the send included, RSS (fresh process)", {})[n] = e["total_bytes_per_pending"]
        elif g == "hold.memory" and b["name"].startswith("bytes_per_pending["):
            mem.setdefault("sendcore, the send included (tracemalloc)", {})[n] = e["total_bytes"]
    return speed, mem


def _count(x: float, _pos: Any) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:g}{suffix}"
    return f"{x:g}"


def _minor(x: float, _pos: Any) -> str:
    # Label only the 2x and 5x minor ticks of a decade, so log axes stay readable.
    lead = x / 10 ** int(f"{x:e}".split("e")[1])
    return _count(x, None) if round(lead) in (2, 5) else ""


def plot(doc: dict[str, Any], out: Path) -> Path:
    """Draw the two panels from one guard JSON document into ``out`` (PNG)."""
    speed, mem = series(doc)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 7.5), dpi=110)
    for ax, data, title, ylabel in (
        (ax1, speed, "Throughput vs pending sends (higher is better)", "sends / CPU second"),
        (ax2, mem, "Memory per pending send (lower is better)", "bytes per pending send"),
    ):
        for label, pts in data.items():
            xs = sorted(pts)
            style = dict(STYLE.get(label, {}))
            ax.plot(xs, [pts[x] for x in xs], label=label, markersize=6, **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("pending sends")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=11)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FuncFormatter(_count))
            axis.set_minor_formatter(FuncFormatter(_minor))
        ax.tick_params(axis="both", which="minor", labelsize=7, labelcolor="#666666")
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    m = doc.get("machine_info", {})
    c = doc.get("commit_info", {})
    mode = doc.get("guard", {}).get("mode", "?")
    fig.suptitle(
        f"sendcore benchmarks ({mode} mode, commit {str(c.get('id', ''))[:10]}): "
        f"{m.get('cpu', {}).get('brand_raw', '')}, {m.get('cpu', {}).get('count', '?')} shared cores, "
        f"Python {m.get('python_version', '')}; CPU time, best of rounds",
        fontsize=10,
    )
    fig.text(0.5, 0.012, "End to end: SCENARIOS workload on virtual time, every policy on. Hold + drain: the same "
             "sends held, then popped in 1 s steps over their day (86,401 pops at any size, which weighs on 10k;\n"
             "APScheduler: drain rate over its first 20k jobs). Memory: tracemalloc (lines) and RSS in a fresh process "
             "(hollow diamonds, largest size), sends sharing one body. "
             "Reproduce: python -m bench.guard --full && python -m bench.plot",
             ha="center", fontsize=8, color="#444444")
    fig.tight_layout(rect=(0, 0.045, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m bench.plot", description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=Path, default=None, help="a guard JSON file (default: the latest)")
    ap.add_argument("--publish", action="store_true", help="also write bench/plot.png (committed)")
    args = ap.parse_args(argv)
    try:
        src = _latest(args.input)
    except FileNotFoundError as exc:
        print(f"bench.plot: {exc}", file=sys.stderr)
        return 2
    doc = json.loads(src.read_text())
    mode = doc.get("guard", {}).get("mode", "quick")
    out = plot(doc, RESULTS / f"plot-{mode}.png")
    print(f"wrote {out} (from {src.name})")
    if args.publish:
        pub = plot(doc, HERE / "plot.png")
        print(f"wrote {pub}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
