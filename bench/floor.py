"""The least a scheduled send can cost in CPython, against the hand-rolled peer and sendcore's core.

The *skeleton* takes the SCENARIOS day's sends and does only the steps any
engine written in Python takes for each one, with every rule left out: three
type checks, an entry, one heap of due instants, a pop per send (the spread
day wakes an engine once or twice a send), ten policy calls that let
everything through (as many as sendcore's four admission and six
dispatch-time checks), a token-bucket update, one ``Batch`` handed to a provider, the
provider's ``Accepted`` and one ``Outcome`` kept by id. No validation, no
routes, no pacing decision, no policy state, no retries.

It is a floor, not a peer: a real engine does all of this and its rules on
top. ``skeleton / hand-rolled`` bounds what any Python engine deciding per
send can reach against the peer on this workload; sendcore's own ratio is
printed beside it. CPU time, best of rounds, the three run interleaved.

Run: ``python -m bench.floor`` (10k and 100k, about a minute) or
``python -m bench.floor 10000 100000 1000000``.
"""

from __future__ import annotations

import argparse
import heapq
import time
from typing import Any, Callable

from sendcore.ledger import Entry
from sendcore.send import Accepted, Batch, Outcome, Reason, Send, Status

from . import measure as M
from .conftest import rounds_for


def _let_through(entries: list[Entry], now: float) -> list[Entry]:
    return entries


def case_skeleton(n: int) -> Callable[[], dict[str, Any]]:
    """The skeleton over the SCENARIOS day of ``n`` sends (module docstring); returns a ``run`` like the cases."""
    sends: list[Send] = M.scenario(n).sends
    admit = [_let_through] * 4
    dispatch = [_let_through] * 6
    sent, accepted = Status.SENT, Reason.ACCEPTED

    def run() -> dict[str, Any]:
        heap = []
        for i, s in enumerate(sends):
            if type(s.id) is not str or type(s.recipient) is not str or type(s.to) is not str:
                raise TypeError(f"send {i}: a field is no string")
            due = s.send_at or 0.0
            heap.append((due, i, Entry(send=s, due=due, prio=1)))
        heapq.heapify(heap)
        finished: dict[str, Outcome] = {}
        outcomes: list[Outcome] = []
        bucket = 0.0
        batch_id = 0
        while heap:
            due, _, e = heapq.heappop(heap)
            live = [e]
            for check in admit:
                live = check(live, due)
            for check in dispatch:
                live = check(live, due)
            bucket = max(bucket, due) + 0.001
            batch_id += 1
            s = e.send
            batch = Batch(id=batch_id, provider="p", channel=s.channel, sender="", carrier="", sends=[s], attempts=[1])
            answer = [Accepted(provider_id=s.id)]
            o = Outcome(send_id=s.id, status=sent if type(answer[0]) is Accepted else Status.FAILED, reason=accepted,
                        at=due, attempt=batch.attempts[0], provider=batch.provider, channel=s.channel,
                        recipient=s.recipient)
            finished[s.id] = o
            outcomes.append(o)
        return {"final": {sent.value: len(finished)}, "pending": len(heap), "outcomes": len(outcomes)}

    return run


CASES: dict[str, Callable[[int], Callable[[], dict[str, Any]]]] = {
    "skeleton": case_skeleton,
    "hand_rolled": M.case_e2e_hand_rolled,
    "sendcore": M.case_e2e_core,
}


def measure(n: int, rounds: int) -> dict[str, float]:
    """CPU seconds per send of each case at size ``n``, best of ``rounds``, the cases interleaved round by round."""
    best = dict.fromkeys(CASES, float("inf"))
    for _ in range(rounds):
        for name, make in CASES.items():
            run = make(n)
            t = time.process_time()
            info = run()
            spent = time.process_time() - t
            assert info["pending"] == 0, (name, info)
            best[name] = min(best[name], spent / n)
        M.clear_cache()
    return best


def main(argv: Any = None) -> None:
    """Print the table for the sizes given (default 10k and 100k)."""
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sizes", type=int, nargs="*", default=[10_000, 100_000], help="sends in the day")
    args = ap.parse_args(argv)
    table = Table(title="SCENARIOS day, CPU µs per send, best of rounds, interleaved; peer: the hand-rolled "
                        "asyncio scheduler (bench/peers.py)")
    for col in ("sends", "rounds", "skeleton", "peer", "sendcore", "peer / skeleton", "peer / sendcore"):
        table.add_column(col, justify="right")
    for n in args.sizes:
        k = rounds_for(n)
        r = measure(n, k)
        table.add_row(f"{n:,}", str(k), f"{1e6 * r['skeleton']:.2f}", f"{1e6 * r['hand_rolled']:.2f}",
                      f"{1e6 * r['sendcore']:.2f}", f"{r['hand_rolled'] / r['skeleton']:.2f}x",
                      f"{r['hand_rolled'] / r['sendcore']:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
