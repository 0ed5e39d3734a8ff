"""The file journal's figures: journaled submit, end to end with the journal on / off, restart, replay, bytes, pause.

Run ``python -m bench.journal`` (quick sizes, about 30 s) or
``python -m bench.journal --full`` (1M pending for the restart and the
snapshot pause, 1M submits, the 100k end-to-end run). The guard
(``python -m bench.guard``, suite ``journal``) runs the same functions and
judges the figures against ``bench/floors.toml``.

Every journal lives in a fresh temporary directory (``tempfile.mkdtemp``
under ``$SENDCORE_BENCH_JOURNAL_DIR``, default ``/tmp``) on this machine's
disk, and is removed afterwards; the file system it sits on is printed, as a
tmpfs would make the fsync figures meaningless. The engine runs on a
``VirtualClock`` with in-process providers that answer at once (time never
moves during the submit and restart figures, so every send stays pending);
journal settings: ``snapshot_bytes = 2**40`` and ``snapshot_interval = "24h"``
(no automatic snapshot: the figures that need one force it), the rest default
(``segment_bytes`` 64 MiB, ``fsync_interval`` 10 ms).

Figures and what they time:

- *journaled submit*: ``await engine.submit(batch)`` of pre-built sends
  (``bench.workload.make_sends``, distinct recipients over a day, the
  all-policies settings) in batches of 1,000, one submitter awaiting each
  submit; ``fsync`` = ``batch`` / ``always`` / ``interval``, and 8 tasks
  submitting at once (``batch``) sharing fsyncs; the same submits with
  ``[journal] path = ""`` as the in-memory reference. Disk-bound (each
  ``batch`` submit waits for its fdatasync): **wall time**, CPU time noted.
- *end to end, journal on / off*: ``bench.measure.case_e2e_engine``'s
  workload (the SCENARIOS day through ``Engine`` on a ``VirtualClock``,
  start to close) with a temp-dir journal vs ``path = ""``, interleaved round
  by round; the ratio uses **CPU time** of the process (the writer thread's
  CPU counts; only the one submit waits for an fsync), wall reported too.
- *replay*: ``sendcore.journal.recover`` (read-only) over the journal that
  the largest end-to-end run left (no snapshot: its advance, record,
  suppress frames and the one submit frame); frames / **CPU** second, and
  interleaved with the bare core running the same day (``case_e2e_core``):
  replay re-runs every decision, so core CPU / replay CPU is the guarded,
  machine-independent figure. Also over 100k (full: 1M) *small frames*
  written straight in the journal format (a 1-send submit and a 1 ms time
  step, alternately): the journal's own cost per frame.
- *restart*: an engine builds N pending (submits of 10,000), a snapshot is
  forced and published, a tail of 50,000 more sends comes in 50 submits of
  1,000 without a snapshot, the engine closes; then ``Engine.start`` on that
  directory (lock, snapshot load, tail replay, new segment) is timed,
  **wall time** (the figure a restart waits for), CPU noted.
- *bytes*: segment bytes of the submit frames (frame header included) per
  send submitted; snapshot file bytes per pending send.
- *snapshot pause*: ``engine.journal.snapshot_pause_max`` (the ``fork``, as
  the journal measures it) after a forced snapshot at 100k pending (the
  submit figure's engine) and at the restart size; also the wall time of the
  whole ``await engine.snapshot()`` call, which is what the event loop
  really stops for (it includes ``export_state`` and the header). Wall time,
  in ms per 100k pending.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import shutil
import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import msgspec

from sendcore.core import Core
from sendcore.engine import Engine
from sendcore.journal import recover
from sendcore.journal.files import (
    FRAME_HEAD, SEGMENT_MAGIC, pack_frame, scan_segment, segment_files, segment_name, snapshot_files, write_prefix,
)
from sendcore.journal.frames import Advance, SegmentHeader, Submit, decode_frame, encode_frame
from sendcore.send import Accepted, Send
from sendcore.settings import Settings
from sendcore.testing import ProvidersPlugin, VirtualClock

from . import measure as M
from .workload import ALL_POLICIES_TOML, SMS_BURST, SMS_RATE, make_sends

__all__ = [
    "Collector", "E2eCase", "FnCase", "Harness", "JournalPlan", "ReplayCase", "RestartCase", "RestartJournal",
    "SubmitCase", "e2e_figures", "filesystem_of", "interleave", "journal_settings", "main", "replay_figures",
    "replay_small_figures", "restart_figures", "run_all", "small_frames_journal", "submit_figures", "timed",
]

K, M1 = 10_000, 1_000_000
#: Sends per ``Engine.submit`` for the journaled-submit figures (the issue's batches of 1,000).
SUBMIT_BATCH = 1_000
#: Sends per submit while building the restart's pending set.
BULK_BATCH = M.CHUNK
#: The restart's tail: sends submitted after the snapshot, in submits of ``TAIL_BATCH``.
TAIL, TAIL_BATCH = 50_000, 1_000
#: Concurrent submitters of the shared-fsync figure.
TASKS = 8

_OK = Accepted(provider_id="ok")


class JournalPlan:
    """Sizes and rounds of the journal figures in one mode (quick adds about 30 s to the guard)."""

    def __init__(self, full: bool) -> None:
        self.mode = "full" if full else "quick"
        self.submit_sizes = [100_000, M1] if full else [100_000]
        self.e2e_sizes = [K, 100_000] if full else [K]
        self.restart_size = M1 if full else 200_000
        self.restart_rounds = 2 if full else 1
        self.replay_rounds = 3
        self.small_frames = M1 if full else 100_000

    def rounds(self, n: int) -> int:
        """Best-of rounds for a size (as ``bench.guard.Plan.rounds``)."""
        return 5 if n <= K else (3 if n <= 100_000 else 1)


# ---------------------------------------------------------------------- setup helpers


def journal_root() -> Optional[str]:
    """Where the temporary journal directories go (``$SENDCORE_BENCH_JOURNAL_DIR``, else the temp dir)."""
    return os.environ.get("SENDCORE_BENCH_JOURNAL_DIR") or None


def new_dir() -> Path:
    """A fresh, empty directory for one journal."""
    return Path(tempfile.mkdtemp(prefix="sendcore-journal-bench-", dir=journal_root()))


def filesystem_of(path: Optional[str] = None) -> str:
    """``fstype device mountpoint`` of the file system holding ``path`` (default: where journals go)."""
    p = os.path.realpath(path or journal_root() or tempfile.gettempdir())
    best = ("?", "?", "")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[2]):
                    best = (fstype, dev, mnt)
    except OSError:
        pass
    return f"{best[0]} {best[1]} {best[2]}".strip()


def journal_settings(path: "str | Path", fsync: str = "batch") -> Settings:
    """The all-policies settings of the benchmarks with ``[journal] path = path`` (``""``: in memory)."""
    data = tomllib.loads(ALL_POLICIES_TOML)
    if path:
        data["journal"] = {"path": str(path), "fsync": fsync, "snapshot_bytes": 1 << 40, "snapshot_interval": "24h"}
    else:
        data["journal"] = {"path": ""}
    return Settings.from_dict(data)


class InstantProvider:
    """An in-process provider for every channel that accepts every send at once (one shared result)."""

    name = "instant"
    channels = ("sms", "email", "push")
    max_batch = 500
    max_concurrency = 1_000_000
    rate = None
    burst = None
    timeout = 30.0

    async def send(self, batch: Any) -> list[Any]:
        return [_OK] * len(batch.sends)


class Harness:
    """An engine on a ``VirtualClock`` driven from synchronous code on its own event loop."""

    def __init__(self, settings: Settings, providers: list[Any], start: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = VirtualClock(start)
        self.engine = Engine(settings, clock=self.clock, plugins=[ProvidersPlugin(*providers)], load_entrypoints=False)

    def run(self, aw: Any) -> Any:
        """Run the awaitable ``aw`` to completion on the harness's loop."""
        return self.loop.run_until_complete(aw)

    def start(self) -> None:
        self.run(self.engine.start())

    def close(self) -> None:
        """Close the engine (flushes the journal), then the loop."""
        try:
            self.run(self.engine.close())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()


async def _submit_all(engine: Engine, chunks: list[list[Send]], tasks: int = 1) -> None:
    if tasks == 1:
        for c in chunks:
            await engine.submit(c)
        return
    it = iter(chunks)

    async def worker() -> None:
        for c in it:
            await engine.submit(c)

    await asyncio.gather(*(worker() for _ in range(tasks)))


def take_snapshot(h: Harness, timeout: float = 1800.0) -> dict[str, Any]:
    """Force a snapshot on ``h``'s engine and wait until it is published; its pause and size.

    ``call_s``: wall time of ``await engine.snapshot()`` (the event loop is
    stopped for all of it: ``export_state``, the header, the ``fork``);
    ``pause_s``: the journal's own ``snapshot_pause_max`` (the ``fork``).
    """
    eng = h.engine
    journal = eng._journal
    before = eng.journal.snapshots

    async def go() -> tuple[float, float]:
        for _ in range(2000):
            t = time.perf_counter()
            started = await eng.snapshot()
            call = time.perf_counter() - t
            if started:
                break
            await asyncio.sleep(0.002)
        else:
            raise RuntimeError("the journal did not start a snapshot (inputs kept waiting)")
        t0 = time.perf_counter()
        while eng.journal.snapshots == before:
            if journal._snap is None:
                raise RuntimeError(f"the snapshot failed; see the sendcore.journal log ({eng.journal.degraded})")
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError("the snapshot did not finish in time")
            await asyncio.sleep(0.005)
        return call, time.perf_counter() - t0

    call, wait = h.run(go())
    st = eng.journal
    snaps = snapshot_files(journal.directory)
    return {"snapshot_call_s": call, "snapshot_pause_s": st.snapshot_pause_max, "snapshot_seconds": st.snapshot_seconds,
            "snapshot_wait_s": wait, "snapshot_pending": eng.pending,
            "snapshot_bytes": snaps[-1][1].stat().st_size if snaps else 0}


def frame_census(directory: Path) -> dict[str, Any]:
    """Frames by kind in the segments of ``directory``; bytes (header included) and sends of the submit frames."""
    count: Counter[str] = Counter()
    size: Counter[str] = Counter()
    sends = 0
    segment_bytes = 0
    for _, path in segment_files(directory):
        scan = scan_segment(path)
        segment_bytes += scan.size
        for _, _, payload in scan.frames:
            frame = decode_frame(payload)
            kind = type(frame).__name__
            count[kind] += 1
            size[kind] += len(payload) + FRAME_HEAD
            if type(frame) is Submit:
                sends += len(frame.sends)
    return {"frames_by_kind": dict(count), "frame_bytes_by_kind": dict(size), "submitted_sends": sends,
            "submit_frame_bytes": size["Submit"], "segment_bytes": segment_bytes}


# ---------------------------------------------------------------------- cases: setup, run (timed), finish


class Case(Protocol):
    def run(self) -> dict[str, Any]: ...

    def finish(self) -> dict[str, Any]: ...


def timed(make: Callable[[], Case]) -> dict[str, Any]:
    """Build a case (untimed), time its ``run`` (CPU of the process and wall), then ``finish`` it (untimed)."""
    case = make()
    try:
        gc.collect()
        w0, c0 = time.perf_counter(), time.process_time()
        info = case.run() or {}
        c1, w1 = time.process_time(), time.perf_counter()
    except BaseException:
        try:
            case.finish()
        except Exception:
            pass
        raise
    info.update(case.finish() or {})
    info["cpu"], info["wall"] = c1 - c0, w1 - w0
    return info


def interleave(makers: dict[str, Callable[[], Case]], rounds: int,
               say: Callable[[str], None] = lambda s: None, label: str = "") -> dict[str, list[dict[str, Any]]]:
    """Time every case of ``makers`` ``rounds`` times, alternating cases every round (same machine load)."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in makers}
    for r in range(rounds):
        for name, make in makers.items():
            say(f"{label} {name} round {r + 1}/{rounds}")
            out[name].append(timed(make))
    return out


class SubmitCase:
    """``n`` pre-built sends through ``Engine.submit`` in batches of ``batch``, ``tasks`` submitters at once.

    Setup starts an engine (VirtualClock at the sends' day minus 10 s, so all
    stay pending) on a fresh journal directory (``journal=False``: in
    memory). ``run`` is the submits. ``finish`` reads the journal's counters,
    optionally forces a snapshot (``snapshot=True``: its pause at ``n``
    pending), closes the engine, counts the submit frames' bytes, removes the
    directory.
    """

    def __init__(self, n: int, fsync: str = "batch", batch: int = SUBMIT_BATCH, tasks: int = 1, journal: bool = True,
                 snapshot: bool = False) -> None:
        sends = M.hold_sends(n)
        self.n, self.fsync, self.tasks, self.snapshot = n, fsync, tasks, snapshot
        self.chunks = [sends[i:i + batch] for i in range(0, n, batch)]
        self.dir = new_dir() if journal else None
        self.h = Harness(journal_settings(self.dir or "", fsync), [InstantProvider()], M.HOLD_START - 10.0)
        try:
            self.h.start()
        except BaseException:
            self._remove()
            raise

    def run(self) -> dict[str, Any]:
        self.h.run(_submit_all(self.h.engine, self.chunks, self.tasks))
        return {"pending": self.h.engine.pending, "submits": len(self.chunks)}

    def finish(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            st = self.h.engine.journal
            if st is not None:
                out.update(frames=st.frames, bytes=st.bytes, fsyncs=st.fsyncs, fsync_seconds=st.fsync_seconds,
                           fsyncs_per_submit=st.fsyncs / len(self.chunks))
                # Count the frames before a snapshot deletes the segments it covers.
                self.h.run(self.h.engine._journal.flush())
                census = frame_census(self.dir)  # type: ignore[arg-type]
                out.update(census)
                out["submit_bytes_per_send"] = census["submit_frame_bytes"] / max(1, census["submitted_sends"])
                if self.snapshot:
                    out.update(take_snapshot(self.h))
        finally:
            try:
                self.h.close()
            finally:
                self._remove()
        return out

    def _remove(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


class E2eCase:
    """``bench.measure.case_e2e_engine``'s run with ``[journal] path`` a fresh temp dir (``journal=True``) or ``""``.

    ``run`` is the whole engine life, as there: start, the suppressions, one
    submit of the scenario's sends, ``drain`` through the simulated days,
    close. ``keep=True`` leaves the journal directory for a replay
    (``self.dir``; the caller removes it).
    """

    def __init__(self, n: int, journal: bool, keep: bool = False) -> None:
        self.sc = M.scenario(n)
        self.n, self.keep = n, keep
        self.dir = new_dir() if journal else None
        self.settings = journal_settings(self.dir or "")
        self.stats: Any = None

    def run(self) -> dict[str, Any]:
        sc = self.sc

        async def main() -> dict[str, Any]:
            sms = M._ScenarioProvider("smsgw", ("sms",), sc.bad, SMS_RATE, SMS_BURST)
            esp = M._ScenarioProvider("esp", ("email",), sc.bad)
            engine = Engine(self.settings, clock=VirtualClock(sc.start), plugins=[ProvidersPlugin(sms, esp)],
                            load_entrypoints=False)
            async with engine:
                for ch, addr in sc.suppressed:
                    engine.suppress(ch, addr, "marketing")
                await engine.submit(sc.sends)
                await engine.drain()
                st = engine.stats()
            self.stats = engine.journal
            return {"final": st.final, "pending": st.pending}

        return asyncio.run(main())

    def finish(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        j = self.stats
        if j is not None:
            out.update(frames=j.frames, bytes=j.bytes, fsyncs=j.fsyncs, fsync_seconds=j.fsync_seconds)
        if self.dir is not None and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return out


def _build_core(settings: Settings, specs: list[Any]) -> Core:
    return Core(settings, providers=specs)


class FnCase:
    """A case around a ``bench.measure`` ``run`` function (built in setup), with nothing to finish."""

    def __init__(self, run: Callable[[], dict[str, Any]]) -> None:
        self._run = run

    def run(self) -> dict[str, Any]:
        return self._run() or {}

    def finish(self) -> dict[str, Any]:
        return {}


class ReplayCase:
    """``recover(directory, ...)`` read-only, into a core built from the settings and providers the journal recorded."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def run(self) -> dict[str, Any]:
        core, info = recover(self.dir, _build_core, None, [], readonly=True)
        return {"frames": info.frames, "segments": info.segments, "recovery_s": info.seconds, "pending": core.pending,
                "snapshot": info.snapshot}

    def finish(self) -> dict[str, Any]:
        return {}


def small_frames_journal(frames: int) -> Path:
    """A journal of ``frames`` small frames, written straight in the journal's format (no engine, no snapshot).

    Alternately a submit of one send (checked by a core as ``Engine.submit``
    does, due the next day, so it stays pending) and a time step of 1 ms
    (nothing falls due): the journal's own cost per frame (read, checksum,
    decode, apply) with the least core work behind each frame.
    """
    from sendcore import __version__

    d = new_dir()
    settings = journal_settings(d)
    core = Core(settings, providers=[M.INSTANT_SPEC])
    sends = make_sends(frames // 2 + 1, M.HOLD_START)
    now = M.HOLD_START - 3600.0
    header = SegmentHeader(number=1, first_seq=1, created=time.time(), settings=msgspec.json.encode(settings),
                           providers=[M.INSTANT_SPEC], sendcore=__version__)
    out = [write_prefix(SEGMENT_MAGIC, header)]
    seq = 1
    for i in range(frames):
        if i % 2 == 0:
            checked = core.check([sends[i // 2]], now)
            ok = checked.sends
            frame: Any = Submit(now=now, sends=[x for x, _, _ in ok], dues=[due for _, due, _ in ok], skip=checked.skip,
                                rejected=len(checked.rejected))
        else:
            now += 0.001
            frame = Advance(now=now)
        out.append(pack_frame(seq, encode_frame(frame)))
        seq += 1
    (d / segment_name(1)).write_bytes(b"".join(out))
    return d


class RestartJournal:
    """A journal directory holding ``n + tail`` pending sends: a snapshot at ``n``, then ``tail`` in submits of ``tail_batch``."""

    def __init__(self, n: int, tail: int = TAIL, tail_batch: int = TAIL_BATCH) -> None:
        self.n, self.tail, self.tail_batch = n, tail, tail_batch
        self.dir = new_dir()
        self.settings = journal_settings(self.dir)
        self.info: dict[str, Any] = {}

    def build(self) -> dict[str, Any]:
        """Submit, snapshot, submit the tail, close; what the journal holds (sizes, the snapshot's pause)."""
        sends = make_sends(self.n + self.tail, M.HOLD_START)
        h = Harness(self.settings, [InstantProvider()], M.HOLD_START - 10.0)
        t0 = time.perf_counter()
        try:
            h.start()
            bulk = [sends[i:i + BULK_BATCH] for i in range(0, self.n, BULK_BATCH)]
            h.run(_submit_all(h.engine, bulk))
            info = take_snapshot(h)
            tail = [sends[i:i + self.tail_batch] for i in range(self.n, self.n + self.tail, self.tail_batch)]
            h.run(_submit_all(h.engine, tail))
            info["pending"] = h.engine.pending
        finally:
            h.close()
        del sends, h
        gc.collect()
        census = frame_census(self.dir)
        info.update(tail_frames=sum(census["frames_by_kind"].values()), tail_segment_bytes=census["segment_bytes"],
                    tail_frames_by_kind=census["frames_by_kind"], build_wall_s=time.perf_counter() - t0)
        self.info = info
        return info

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class RestartCase:
    """``Engine.start`` on a ``RestartJournal``'s directory (the timed part); ``finish`` closes it again."""

    def __init__(self, journal: RestartJournal) -> None:
        self.j = journal
        self.h = Harness(journal.settings, [InstantProvider()], M.HOLD_START - 10.0)

    def run(self) -> dict[str, Any]:
        self.h.start()
        eng = self.h.engine
        r = eng._journal.recovery
        return {"pending": eng.pending, "recovery_s": r.seconds, "snapshot_load_s": r.load_seconds,
                "replayed_frames": r.frames, "segments": r.segments, "snapshot": r.snapshot,
                "snapshot_pending": r.snapshot_pending}

    def finish(self) -> dict[str, Any]:
        self.h.close()
        del self.h
        gc.collect()
        return {}


# ---------------------------------------------------------------------- figures


class Sink(Protocol):
    """Where figures go: the guard, or the ``Collector`` of ``python -m bench.journal``."""

    def say(self, what: str) -> None: ...

    def record(self, group: str, name: str, params: dict[str, Any], times: list[float],
               extra: dict[str, Any]) -> Any: ...

    def value(self, key: str, v: float) -> None: ...


def _workload(sink: Sink, key: str, text: str) -> None:
    w = getattr(sink, "workloads", None)
    if w is not None:
        w[key] = text


def _best(rounds: list[dict[str, Any]], key: str) -> float:
    return min(r[key] for r in rounds)


def submit_figures(sink: Sink, plan: JournalPlan) -> None:
    """Journaled submit: fsync batch / always / interval, 8 submitters, in memory; bytes per send; pause at 100k."""
    for n in plan.submit_sizes:
        M.clear_cache()
        sink.say(f"journal.submit building {n:,} sends")
        M.hold_sends(n)
        makers: dict[str, Callable[[], Case]] = {
            "memory": lambda: SubmitCase(n, journal=False),
            "batch": lambda: SubmitCase(n, "batch", snapshot=True),
            "always": lambda: SubmitCase(n, "always"),
            "interval": lambda: SubmitCase(n, "interval"),
            f"batch_{TASKS}_tasks": lambda: SubmitCase(n, "batch", tasks=TASKS),
        }
        res = interleave(makers, plan.rounds(n), sink.say, f"journal.submit n={n:,}")
        rate: dict[str, float] = {}
        for name, rounds in res.items():
            wall = [r["wall"] for r in rounds]
            rate[name] = n / min(wall)
            last = rounds[-1]
            extra = {"sends_per_s_wall": rate[name], "sends_per_s_cpu": n / _best(rounds, "cpu"),
                     "batch": SUBMIT_BATCH, "timer": "time.perf_counter", "pending": last["pending"],
                     "submits": last["submits"], "filesystem": filesystem_of()}
            for k in ("frames", "fsyncs", "fsyncs_per_submit", "fsync_seconds", "submit_bytes_per_send",
                      "frames_by_kind", "segment_bytes"):
                if k in last:
                    extra[k] = last[k]
            if "snapshot_pause_s" in last:
                extra.update(snapshot_pause_ms=[r["snapshot_pause_s"] * 1e3 for r in rounds],
                             snapshot_call_ms=[r["snapshot_call_s"] * 1e3 for r in rounds],
                             snapshot_bytes=last["snapshot_bytes"], snapshot_seconds=last["snapshot_seconds"])
            sink.record("journal.submit", name, {"n": n}, wall, extra)
            fs = f", {last['fsyncs_per_submit']:.2f} fsyncs/submit" if "fsyncs_per_submit" in last else ""
            sink.say(f"  submit {name:14} n={n:>9,}: {rate[name]:>9,.0f} sends/s wall, "
                     f"{extra['sends_per_s_cpu']:>9,.0f} sends/s CPU{fs}")
        work = (f"{n:,} pre-built sends (make_sends, all-policies settings) through Engine.submit in {n // SUBMIT_BATCH:,} "
                f"batches of {SUBMIT_BATCH:,}, VirtualClock, journal in a temp dir ({filesystem_of()}); wall, best of "
                f"{plan.rounds(n)}, the cases interleaved")
        if n == plan.submit_sizes[0]:
            sink.value("journal_submit_per_s", rate["batch"])
            sink.value("journal_submit_always_per_s", rate["always"])
            sink.value("journal_submit_interval_per_s", rate["interval"])
            sink.value(f"journal_submit_{TASKS}_tasks_per_s", rate[f"batch_{TASKS}_tasks"])
            sink.value(f"journal_fsyncs_per_submit_{TASKS}_tasks", res[f"batch_{TASKS}_tasks"][-1]["fsyncs_per_submit"])
            sink.value("journal_submit_vs_memory", rate["batch"] / rate["memory"])
            b = res["batch"]
            sink.value("journal_submit_bytes_per_send", b[-1]["submit_bytes_per_send"])
            pause = min(r["snapshot_pause_s"] for r in b)
            call = min(r["snapshot_call_s"] for r in b)
            sink.value("journal_snapshot_pause_ms_per_100k", pause * 1e3 * 100_000 / n)
            sink.value("journal_snapshot_call_ms_per_100k", call * 1e3 * 100_000 / n)
            for key in ("journal_submit_per_s", "journal_submit_always_per_s", "journal_submit_interval_per_s",
                        f"journal_submit_{TASKS}_tasks_per_s", "journal_submit_vs_memory"):
                _workload(sink, key, work)
            _workload(sink, f"journal_fsyncs_per_submit_{TASKS}_tasks",
                      f"fdatasyncs / submits with {TASKS} tasks submitting batches of {SUBMIT_BATCH:,} at once, "
                      f"fsync = batch, {n:,} sends")
            _workload(sink, "journal_submit_bytes_per_send",
                      f"segment bytes of the {n // SUBMIT_BATCH:,} submit frames (20 B frame header included) / {n:,} sends")
            _workload(sink, "journal_snapshot_pause_ms_per_100k",
                      f"engine.journal.snapshot_pause_max (the fork) after a forced snapshot at {n:,} pending, "
                      f"best of {len(b)}, wall, scaled to 100k")
            _workload(sink, "journal_snapshot_call_ms_per_100k",
                      f"wall time of `await engine.snapshot()` (export_state + header + fork) at {n:,} pending, "
                      f"best of {len(b)}, scaled to 100k")
        else:
            key = "journal_submit_per_s_1m" if n == M1 else f"journal_submit_per_s_{n}"
            sink.value(key, rate["batch"])
            _workload(sink, key, work)
        del res
        M.clear_cache()


def e2e_figures(sink: Sink, plan: JournalPlan) -> Optional[Path]:
    """End to end, journal on / off (CPU ratio, wall too); returns the last journal of the largest size (for replay)."""
    kept: Optional[Path] = None
    for n in plan.e2e_sizes:
        M.clear_cache()
        sink.say(f"journal.e2e building scenario n={n:,}")
        M.scenario(n)
        # The 10k runs last under a second each and the disk's fsyncs count as CPU: more rounds, so a
        # slow stretch of the shared disk does not decide the guarded ratio.
        rounds = 7 if n <= K else plan.rounds(n)
        last = n == plan.e2e_sizes[-1]
        made: list[E2eCase] = []

        def on() -> E2eCase:
            c = E2eCase(n, True, keep=last)
            made.append(c)
            return c

        res = interleave({"journal_off": lambda: E2eCase(n, False), "journal_on": on}, rounds, sink.say,
                         f"journal.e2e n={n:,}")
        for c in made[:-1]:
            if c.dir is not None:
                shutil.rmtree(c.dir, ignore_errors=True)
        if last:
            kept = made[-1].dir
        cpu = {k: n / _best(v, "cpu") for k, v in res.items()}
        wall = {k: n / _best(v, "wall") for k, v in res.items()}
        for k, v in res.items():
            extra = {"sends_per_s": cpu[k], "sends_per_s_wall": wall[k], "final": v[-1].get("final"),
                     "pending": v[-1].get("pending"), "timer": "time.process_time"}
            for f in ("frames", "bytes", "fsyncs"):
                if f in v[-1]:
                    extra[f] = v[-1][f]
            sink.record("journal.e2e", k, {"n": n}, [r["cpu"] for r in v], extra)
            sink.say(f"  e2e {k:11} n={n:>9,}: {cpu[k]:>9,.0f} sends/s CPU, {wall[k]:>9,.0f} sends/s wall")
        ratio, ratio_wall = cpu["journal_on"] / cpu["journal_off"], wall["journal_on"] / wall["journal_off"]
        sink.say(f"  journal on / off: {ratio:.2f} CPU, {ratio_wall:.2f} wall")
        work = (f"SCENARIOS day, {n:,} sends, Engine on VirtualClock (start, 1 submit, drain, close), journal in a temp "
                f"dir vs path = \"\"; best of {rounds}, interleaved")
        if n == plan.e2e_sizes[0]:
            sink.value("journal_e2e_on_vs_off", ratio)
            sink.value("journal_e2e_on_vs_off_wall", ratio_wall)
            _workload(sink, "journal_e2e_on_vs_off", work + "; CPU time")
            _workload(sink, "journal_e2e_on_vs_off_wall", work + "; wall time")
        else:
            key = f"journal_e2e_on_vs_off_{n // 1000}k"
            sink.value(key, ratio)
            _workload(sink, key, work + "; CPU time")
    M.clear_cache()
    return kept


def replay_figures(sink: Sink, plan: JournalPlan, directory: Path) -> None:
    """Replay rate: ``recover`` (read-only) over an end-to-end run's journal, no snapshot.

    Interleaved with the bare core running the same day (``bench.measure.case_e2e_core``):
    replay re-runs the core's decisions frame by frame, so the ratio of the
    two says what the journal adds to that work, independent of the machine's speed.
    """
    census = frame_census(directory)
    n = census["submitted_sends"]
    res = interleave({"recover": lambda: ReplayCase(directory), "bare_core": lambda: FnCase(M.case_e2e_core(n))},
                     plan.replay_rounds, sink.say, "journal.replay")
    rounds = res["recover"]
    frames = rounds[-1]["frames"]
    rate_cpu = frames / _best(rounds, "cpu")
    rate_wall = frames / _best(rounds, "wall")
    vs_core = _best(res["bare_core"], "cpu") / _best(rounds, "cpu")
    sink.record("journal.replay", "recover", {"frames": frames}, [r["cpu"] for r in rounds],
                {"frames_per_s": rate_cpu, "frames_per_s_wall": rate_wall, "frames_by_kind": census["frames_by_kind"],
                 "segment_bytes": census["segment_bytes"], "submitted_sends": n, "timer": "time.process_time",
                 "bare_core_cpu_s": _best(res["bare_core"], "cpu"), "replay_vs_bare_core": vs_core})
    sink.say(f"  replay {frames:,} frames: {rate_cpu:,.0f} frames/s CPU, {rate_wall:,.0f} frames/s wall; "
             f"the bare core runs the same day in {vs_core:.2f}x the replay's CPU time")
    sink.value("journal_replay_frames_per_s", rate_cpu)
    sink.value("journal_replay_vs_core", vs_core)
    _workload(sink, "journal_replay_vs_core",
              f"CPU time of the bare core running the e2e day of {n:,} sends (case_e2e_core) / of recover() over that "
              f"day's journal, best of {len(rounds)}, interleaved")
    kinds = ", ".join(f"{v:,} {k}" for k, v in sorted(census["frames_by_kind"].items(), key=lambda kv: -kv[1]))
    _workload(sink, "journal_replay_frames_per_s",
              f"recover() read-only over the journal of the e2e run with {census['submitted_sends']:,} sends "
              f"({kinds}; {census['segment_bytes'] / 2**20:.1f} MiB, no snapshot); CPU, best of {len(rounds)}")


def replay_small_figures(sink: Sink, plan: JournalPlan) -> None:
    """Replay rate over many small frames (``small_frames_journal``): the journal's own cost per frame."""
    n = plan.small_frames
    sink.say(f"journal.replay writing {n:,} small frames")
    d = small_frames_journal(n)
    try:
        size = sum(p.stat().st_size for _, p in segment_files(d))
        res = interleave({"recover": lambda: ReplayCase(d)}, plan.replay_rounds, sink.say, "journal.replay_small")
        rounds = res["recover"]
        if rounds[-1]["frames"] != n or rounds[-1]["pending"] != (n + 1) // 2:
            raise RuntimeError(f"small-frame replay: {rounds[-1]['frames']:,} frames, {rounds[-1]['pending']:,} pending")
        rate = n / _best(rounds, "cpu")
        sink.record("journal.replay", "recover_small_frames", {"frames": n}, [r["cpu"] for r in rounds],
                    {"frames_per_s": rate, "frames_per_s_wall": n / _best(rounds, "wall"), "segment_bytes": size,
                     "timer": "time.process_time"})
        sink.say(f"  replay {n:,} small frames: {rate:,.0f} frames/s CPU ({size / n:.0f} B per frame)")
        sink.value("journal_replay_small_frames_per_s", rate)
        _workload(sink, "journal_replay_small_frames_per_s",
                  f"recover() read-only over {n:,} frames written directly: alternately a submit of 1 send and a 1 ms "
                  f"time step with nothing due ({size / n:.0f} B/frame, no snapshot); CPU, best of {len(rounds)}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def restart_figures(sink: Sink, plan: JournalPlan) -> None:
    """Restart with N pending (snapshot + tail); snapshot bytes and pause at N."""
    n = plan.restart_size
    M.clear_cache()
    sink.say(f"journal.restart building {n:,} pending + snapshot + tail of {TAIL:,} in {TAIL // TAIL_BATCH} submits")
    j = RestartJournal(n)
    try:
        info = j.build()
        sink.say(f"  built in {info['build_wall_s']:.1f}s: snapshot {info['snapshot_bytes'] / 2**20:,.1f} MiB, "
                 f"fork {info['snapshot_pause_s'] * 1e3:.1f} ms, snapshot() call {info['snapshot_call_s'] * 1e3:.1f} ms, "
                 f"child {info['snapshot_seconds']:.2f}s; tail {info['tail_frames']:,} frames "
                 f"{info['tail_segment_bytes'] / 2**20:.1f} MiB")
        res = interleave({"engine_start": lambda: RestartCase(j)}, plan.restart_rounds, sink.say,
                         f"journal.restart n={n:,}+{TAIL:,}")
        rounds = res["engine_start"]
        for r in rounds:
            if r["pending"] != n + TAIL:
                raise RuntimeError(f"restart recovered {r['pending']:,} pending, expected {n + TAIL:,}")
        wall = _best(rounds, "wall")
        last = min(rounds, key=lambda r: r["wall"])  # the best round's own breakdown
        sink.record("journal.restart", "engine_start", {"n": n, "tail": TAIL}, [r["wall"] for r in rounds],
                    {"seconds_wall": wall, "seconds_cpu": _best(rounds, "cpu"), "recovery_s": last["recovery_s"],
                     "snapshot_load_s": last["snapshot_load_s"], "replayed_frames": last["replayed_frames"],
                     "pending": last["pending"], "timer": "time.perf_counter", "build": info,
                     "filesystem": filesystem_of()})
        sink.say(f"  Engine.start with {n + TAIL:,} pending: {wall:.2f}s wall ({_best(rounds, 'cpu'):.2f}s CPU; snapshot "
                 f"load {last['snapshot_load_s']:.2f}s, {last['replayed_frames']:,} frames replayed)")
        sink.value("journal_restart_seconds", wall)
        sink.value("journal_snapshot_bytes_per_pending", info["snapshot_bytes"] / info["snapshot_pending"])
        sink.value("journal_snapshot_pause_ms_per_100k_at_restart_size",
                   info["snapshot_pause_s"] * 1e3 * 100_000 / info["snapshot_pending"])
        sink.value("journal_snapshot_call_ms_per_100k_at_restart_size",
                   info["snapshot_call_s"] * 1e3 * 100_000 / info["snapshot_pending"])
        _workload(sink, "journal_restart_seconds",
                  f"Engine.start on a journal of {n:,} pending in a snapshot + a tail of {TAIL:,} sends in "
                  f"{TAIL // TAIL_BATCH} submit frames (plus their advance frames), wall, best of {len(rounds)}")
        _workload(sink, "journal_snapshot_bytes_per_pending",
                  f"snapshot file bytes / {info['snapshot_pending']:,} pending sends (make_sends, one shared body)")
        _workload(sink, "journal_snapshot_pause_ms_per_100k_at_restart_size",
                  f"snapshot_pause_max (the fork) at {info['snapshot_pending']:,} pending, one snapshot, scaled to 100k")
        _workload(sink, "journal_snapshot_call_ms_per_100k_at_restart_size",
                  f"`await engine.snapshot()` wall at {info['snapshot_pending']:,} pending, one snapshot, scaled to 100k")
    finally:
        j.cleanup()
        M.clear_cache()


def run_all(sink: Sink, plan: JournalPlan, only: Optional[set[str]] = None) -> None:
    """Every journal figure (or the groups in ``only``: submit, e2e, replay, restart), in the guard's order."""
    def wanted(group: str) -> bool:
        return not only or group in only

    if wanted("submit"):
        submit_figures(sink, plan)
    if wanted("e2e"):
        kept = e2e_figures(sink, plan)
        try:
            if kept is not None:
                replay_figures(sink, plan, kept)
        finally:
            if kept is not None:
                shutil.rmtree(kept, ignore_errors=True)
    if wanted("replay"):
        replay_small_figures(sink, plan)
    if wanted("restart"):
        restart_figures(sink, plan)


# ---------------------------------------------------------------------- command line


class Collector:
    """A ``Sink`` that keeps everything for the table of ``python -m bench.journal``."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.values: dict[str, float] = {}
        self.workloads: dict[str, str] = {}
        self.benchmarks: list[dict[str, Any]] = []

    def say(self, what: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.1f}s] {what}", flush=True)

    def record(self, group: str, name: str, params: dict[str, Any], times: list[float], extra: dict[str, Any]) -> None:
        self.benchmarks.append({"group": group, "name": name, "params": params, "times": times, "extra_info": extra})

    def value(self, key: str, v: float) -> None:
        self.values[key] = v


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def print_table(c: Collector, floors: Optional[dict[str, Any]] = None, mode: str = "quick") -> None:
    """Figure, measured value, the issue's target and floor (from floors.toml when given), workload."""
    floors = floors or {}
    print()
    head = f"{'figure':48} {'measured':>10} {'target':>9} {'floor/ceil':>11}  workload"
    print(head)
    print("-" * len(head))
    for key, v in c.values.items():
        spec = floors.get(key, {})
        lo = spec.get(f"min_{mode}", spec.get("min"))
        hi = spec.get(f"max_{mode}", spec.get("max"))
        bound = f">= {_fmt(lo)}" if lo is not None else (f"<= {_fmt(hi)}" if hi is not None else "reported")
        t = spec.get("target", "")
        t = t if isinstance(t, str) else _fmt(t)
        unit = spec.get("unit", "")
        print(f"{key:48} {_fmt(v):>10} {t:>9} {bound:>11}  {c.workloads.get(key, '')}{f' [{unit}]' if unit else ''}")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="1M pending for restart and pause, 1M submits, e2e at 100k")
    ap.add_argument("--only", default="", help="comma-separated: submit, e2e (with its replay), replay (small frames), restart")
    ap.add_argument("--restart-size", type=int, default=0, help="pending sends for the restart figure (default 200k / 1M)")
    ap.add_argument("--json", type=Path, default=None, help="write the values and benchmarks as JSON here")
    args = ap.parse_args(argv)
    plan = JournalPlan(args.full)
    if args.restart_size:
        plan.restart_size = args.restart_size
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    c = Collector()
    c.say(f"bench.journal {plan.mode}; journals under {journal_root() or tempfile.gettempdir()} ({filesystem_of()}); "
          f"load {os.getloadavg()[0]:.1f}")
    M.timed(M.case_submit(3000))  # warm the process-wide caches (phones, zones) as the guard's warm-up does
    M.clear_cache()
    run_all(c, plan, only)
    floors: dict[str, Any] = {}
    try:
        with open(Path(__file__).resolve().parent / "floors.toml", "rb") as f:
            floors = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        pass
    print_table(c, floors, plan.mode)
    if args.json is not None:
        args.json.write_text(json.dumps({"mode": plan.mode, "values": c.values, "workloads": c.workloads,
                                         "benchmarks": c.benchmarks}, indent=1, default=str))
    print(f"\n({time.perf_counter() - c.t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
