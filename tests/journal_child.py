"""The child process of the journal kill-loop test (R22): an engine on the real clock that is SIGKILLed.

Run as ``python tests/journal_child.py WORKDIR PHASE`` with PHASE ``run`` or
``final``. Everything it needs and everything it leaves is a file in WORKDIR:

``config.json`` (written by the parent, optional)
    The plan size and timing; see ``DEFAULTS``.
``start``
    The epoch second the plan's due times count from, written on the first run
    so that every restart keeps the same schedule.
``generation``
    A counter bumped (and fsynced) at each child start: the child's number.
``journal/``
    The engine's ``[journal] path``.
``delivered.log``
    One line ``"{generation} {send_id} {recipient} {epoch seconds}"`` per send the
    provider was handed, appended with O_APPEND and fsynced before the provider answers.
``acked.log``
    One send id a line: ids the engine acknowledged, i.e. in a returned
    ``SubmitReport``'s ``accepted_ids`` or rejected as ``"id: duplicate..."``
    (the engine already had them). Appended and fsynced after ``submit``
    returns; ids in it are never submitted again.
``rejected.log``
    Any other rejection (the plan is meant to be valid: should stay empty).
``recovery-{generation}.json``
    Written right after the engine started: how many acked ids the recovered
    engine knows (pending or final), which it lost, and ``engine.journal``'s
    recovery report (snapshot used, frames replayed, torn tails, requeued).
``probe.log``
    Each child resubmits a sample of acked ids after recovery; each line says
    whether the engine rejected it as a duplicate (``ok``) or not (``BAD``).
``final.json``
    Phase ``final`` only: every planned id mapped to its final outcome
    ``{"status", "reason", "attempt"}``, or null if pending or unknown.

On stdout the child prints ``MARK <name> ...`` lines (``boot``, ``opening``,
``recovered``, ``probing``, ``submitting``, ``submitted``, ``drained``, ``final``) so that
the parent can aim its kills at a stage and say where each one landed.

The child must survive being killed at any point: ``start`` and
``generation`` are replaced atomically (write, fsync, rename), and a torn last
line of a log (a kill in the middle of a write) is cut off at start-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Union

from sendcore.engine import Engine
from sendcore.provider import Provider
from sendcore.send import Accepted, Batch, Result, Send
from sendcore.settings import Settings, parse_duration
from sendcore.testing import ProvidersPlugin

#: Plan and engine parameters; ``config.json`` in WORKDIR overrides any of them.
DEFAULTS: dict[str, Any] = {
    "sends": 4000,  # total planned sends: pairs of marketing sends plus one transactional per 10
    "spread": 6.0,  # seconds over which the pairs' first due times are spread
    "offset": 0.5,  # seconds from the start time to the first due time
    "gap": 0.7,  # seconds between the two sends of a pair (plus 0-0.2 s by pair)
    "tick": 0.25,  # first due times are rounded down to a multiple of this: bursts of due sends
    "chunk": 100,  # sends per submit call
    "lead": 1.0,  # a chunk is submitted this long before its first due time (phase run)
    "max_batch": 50,
    "max_concurrency": 8,
    "latency": 0.01,  # provider latency, half before and half after the fsynced log write
    "fsync": "batch",
    "fsync_interval": "10ms",
    "segment_bytes": 32768,
    "snapshot_bytes": 65536,
    "snapshot_interval": "1s",
    "loop": "asyncio",  # or "uvloop"
    "max_life": 300.0,  # a run child exits by itself after this long (never an orphan forever)
}

PROVIDER = "killlog"


def load_config(workdir: Path) -> dict[str, Any]:
    """DEFAULTS updated with WORKDIR/config.json when present."""
    cfg = dict(DEFAULTS)
    p = workdir / "config.json"
    if p.exists():
        cfg.update(json.loads(p.read_text()))
    return cfg


def make_settings(workdir: Path, cfg: dict[str, Any]) -> Settings:
    """The engine settings every child (and the parent's lock test) uses: journal in WORKDIR/journal."""
    return Settings.from_dict(
        {
            "journal": {
                "path": str(workdir / "journal"),
                "fsync": cfg["fsync"],
                "fsync_interval": cfg["fsync_interval"],
                "segment_bytes": int(cfg["segment_bytes"]),
                "snapshot_bytes": int(cfg["snapshot_bytes"]),
                "snapshot_interval": cfg["snapshot_interval"],
            },
            "retry": {"base_delay": "1s", "max_delay": "5s", "jitter": 0},
            # Nothing waits for the night; smart sending keeps sms's default 24 h window.
            "channels": {"sms": {"quiet_hours": False}},
        }
    )


def parse_seconds(value: Any) -> float:
    """Seconds in a duration setting ("10ms", "1s" or a number)."""
    return parse_duration(value, "duration")


# ---------------------------------------------------------------------- the plan


def plan_shape(cfg: dict[str, Any]) -> tuple[int, int]:
    """(pairs, transactional sends) for ``cfg["sends"]`` sends."""
    n = int(cfg["sends"])
    transactional = n // 10
    return (n - transactional) // 2, transactional


def build_plan(cfg: dict[str, Any], start: float) -> list[Send]:
    """The deterministic plan, sorted by due time.

    Pair ``k`` (recipient ``r{k}``, number ``+3361{k:07d}``): ``s{2k}`` is a
    ``flow`` send due at ``start + offset + k * spread / pairs`` (rounded down to
    a multiple of ``tick``); ``s{2k+1}``
    (``campaign`` for every fourth pair, else ``flow``) is due ``gap`` to
    ``gap + 0.2`` s later, so smart sending (R4, 24 h) must skip one of the
    two. Transactional sends ``s{2*pairs + j}`` go to the recipient of pair
    ``j * pairs // transactional``, 50 ms before its first send: they bypass
    smart sending and must not count for it.
    """
    pairs, transactional = plan_shape(cfg)
    spread, offset, gap = float(cfg["spread"]), float(cfg["offset"]), float(cfg["gap"])
    tick = float(cfg["tick"])
    sends: list[Send] = []
    step = spread / max(pairs, 1)

    def first_due(k: int) -> float:
        # Quantised to ``tick``: sends fall due in bursts, so several full batches are in flight at once.
        t = k * step
        return start + offset + (t - t % tick if tick > 0 else t)

    for k in range(pairs):
        to = f"+3361{k:07d}"
        due = first_due(k)
        sends.append(Send(id=f"s{2 * k}", recipient=f"r{k}", channel="sms", to=to, origin="flow",
                          send_at=due, body=f"flow a {k}"))
        sends.append(Send(id=f"s{2 * k + 1}", recipient=f"r{k}", channel="sms", to=to,
                          origin="campaign" if k % 4 == 3 else "flow",
                          send_at=due + gap + (k % 5) * 0.05, body=f"flow b {k}"))
    for j in range(transactional):
        k = j * pairs // transactional
        sends.append(Send(id=f"s{2 * pairs + j}", recipient=f"r{k}", channel="sms", to=f"+3361{k:07d}",
                          origin="transactional", send_at=first_due(k) - 0.05, body=f"code {j}"))
    sends.sort(key=lambda s: (s.send_at, s.id))
    return sends


def chunks(plan: list[Send], size: int) -> list[list[Send]]:
    return [plan[i : i + size] for i in range(0, len(plan), size)]


# ---------------------------------------------------------------------- crash-safe files


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: a kill leaves the old content or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def append_lines(path: Path, lines: Iterable[str]) -> None:
    """Append lines with O_APPEND in one write, then fsync."""
    data = "".join(f"{line}\n" for line in lines).encode()
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline (the previous child was killed inside a write)."""
    if not path.exists():
        return
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, keep)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[str]:
    """Complete lines of a log (a torn last line is ignored)."""
    if not path.exists():
        return []
    data = path.read_text()
    lines = data.split("\n")
    return [line for line in lines[:-1] if line]


def bump_generation(workdir: Path) -> int:
    p = workdir / "generation"
    gen = int(p.read_text()) + 1 if p.exists() else 1
    write_atomic(p, str(gen))
    return gen


def start_time(workdir: Path) -> float:
    """The plan's start time, fixed at the first run."""
    p = workdir / "start"
    if p.exists():
        return float(p.read_text())
    t = time.time()
    write_atomic(p, repr(t))
    return t


def mark(name: str, **info: Any) -> None:
    extra = " ".join(f"{k}={v}" for k, v in info.items())
    sys.stdout.write(f"MARK {name} {extra}\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------- the provider


class LogProvider(Provider):
    """Serves ``sms``: logs each send it is handed to delivered.log (O_APPEND + fsync), then accepts it."""

    name = PROVIDER
    channels = ("sms",)

    def __init__(self, log: Path, generation: Union[int, str], *, max_batch: int = 50,
                 max_concurrency: int = 8, latency: float = 0.005) -> None:
        self.log = log
        self.generation = generation
        self.max_batch = max_batch
        self.max_concurrency = max_concurrency
        self.latency = latency
        self.fd = -1

    async def start(self, context: Any) -> None:
        self.fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def send(self, batch: Batch) -> list[Result]:
        half = self.latency / 2
        if half:
            await asyncio.sleep(half)
        now = time.time()
        data = "".join(f"{self.generation} {s.id} {s.recipient} {now:.6f}\n" for s in batch.sends).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        os.fsync(self.fd)
        if half:
            await asyncio.sleep(half)
        return [Accepted(provider_id=f"k{self.generation}-{s.id}") for s in batch.sends]

    async def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# ---------------------------------------------------------------------- the run


def outcome_json(engine: Engine, send_id: str) -> Union[dict[str, Any], None]:
    o = engine.outcome(send_id)
    if o is None:
        return None
    return {"status": o.status.value, "reason": o.reason.value, "attempt": o.attempt, "detail": o.detail}


async def probe_duplicates(engine: Engine, workdir: Path, generation: int, plan: list[Send],
                           acked: set[str]) -> None:
    """Resubmit up to 20 ids the engine acknowledged before (the newest ones and a seeded sample):
    each must be rejected as "id: duplicate" (R22 keeps the ids, R1 rejects them). probe.log gets
    ``"{generation} {id} ok"`` or ``"{generation} {id} BAD {what happened}"``."""
    if not acked:
        return
    by_id = {s.id: s for s in plan}
    order = [i for i in read_lines(workdir / "acked.log") if i in by_id]
    sample = list(dict.fromkeys(order[-10:] + random.Random(generation).sample(order, min(10, len(order)))))
    report = await engine.submit([by_id[i] for i in sample])
    reasons = {sid: reason for _index, sid, reason in report.rejected}
    lines = []
    for sid in sample:
        reason = reasons.get(sid)
        if reason is not None and reason.startswith("id: duplicate"):
            lines.append(f"{generation} {sid} ok")
        elif reason is not None:
            lines.append(f"{generation} {sid} BAD rejected: {reason}")
        else:
            lines.append(f"{generation} {sid} BAD accepted again")
    append_lines(workdir / "probe.log", lines)


async def amain(workdir: Path, phase: str, generation: int, cfg: dict[str, Any]) -> int:
    began = time.monotonic()
    start = start_time(workdir)
    plan = build_plan(cfg, start)
    acked_path = workdir / "acked.log"
    acked = set(read_lines(acked_path))
    provider = LogProvider(workdir / "delivered.log", generation, max_batch=int(cfg["max_batch"]),
                           max_concurrency=int(cfg["max_concurrency"]), latency=float(cfg["latency"]))
    engine = Engine(make_settings(workdir, cfg), plugins=[ProvidersPlugin(provider)], load_entrypoints=False)
    mark("opening", gen=generation)
    t0 = time.monotonic()
    async with engine:
        mark("recovered", gen=generation, pending=engine.pending, secs=f"{time.monotonic() - t0:.3f}")
        secs = time.monotonic() - t0
        lost = sorted(i for i in acked if engine.outcome(i) is None and engine.explain(i) is None)
        stats = engine.journal
        write_atomic(workdir / f"recovery-{generation}.json", json.dumps(
            {"generation": generation, "acked": len(acked), "lost": lost, "pending": engine.pending,
             "secs": secs, "journal": stats.recovery if stats is not None else None}))
        mark("probing", gen=generation, acked=len(acked), lost=len(lost))
        await probe_duplicates(engine, workdir, generation, plan, acked)
        mark("submitting", gen=generation, acked=len(acked), lost=len(lost))
        lead = float(cfg["lead"])
        for chunk in chunks(plan, int(cfg["chunk"])):
            todo = [s for s in chunk if s.id not in acked]
            if not todo:
                continue
            if phase == "run":
                wait = float(chunk[0].send_at) - lead - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            report = await engine.submit(todo)
            ids = list(report.accepted_ids)
            other = []
            for _index, sid, reason in report.rejected:
                if reason.startswith("id: duplicate"):
                    ids.append(sid)
                else:
                    other.append(f"{generation} {sid} {reason}")
            append_lines(acked_path, ids)
            acked.update(ids)
            if other:
                append_lines(workdir / "rejected.log", other)
                sys.stderr.write("unexpected rejections:\n" + "\n".join(other) + "\n")
        mark("submitted", gen=generation, acked=len(acked))
        await engine.drain()
        stats = engine.stats()
        mark("drained", gen=generation, pending=engine.pending, final=json.dumps(stats.final, separators=(",", ":")))
        if phase == "run":
            # Idle until killed (a run child never ends on its own before max_life).
            await asyncio.sleep(max(0.0, float(cfg["max_life"]) - (time.monotonic() - began)))
            return 3
        final = {s.id: outcome_json(engine, s.id) for s in plan}
        result = {"generation": generation, "outcomes": final,
                  "stats": {"final": dict(stats.final), "reasons": dict(stats.reasons),
                            "submitted": stats.submitted, "rejected": stats.rejected}}
        write_atomic(workdir / "final.json", json.dumps(result, indent=0, sort_keys=True))
    mark("final", gen=generation)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[2] not in ("run", "final"):
        sys.stderr.write("usage: journal_child.py WORKDIR run|final\n")
        return 2
    workdir = Path(argv[1])
    phase = argv[2]
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(workdir)
    for name in ("acked.log", "delivered.log", "rejected.log"):
        cut_torn_tail(workdir / name)
    generation = bump_generation(workdir)
    mark("boot", gen=generation, phase=phase)
    coro = amain(workdir, phase, generation, cfg)
    if cfg["loop"] == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
