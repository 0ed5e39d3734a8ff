"""The work behind ``sendcore journal check|stats|repair|compact``: read a journal without an engine.

``check`` and ``stats`` change no file and take no lock, so they may run
beside a live engine (whose newest segment may then end in a frame being
written). ``repair`` and ``compact`` take the lock, like an engine would.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional

import msgspec

from ..errors import JournalError
from . import files
from .files import read_snapshot, scan_segment, segment_files, snapshot_files
from .frames import decode_frame

__all__ = ["Repair", "check", "compact", "plan_repair", "apply_repair", "stats"]

Progress = Optional[Callable[[int, int], None]]

_KINDS = {"s": "submit", "c": "cancel", "a": "advance", "r": "record", "e": "record_error", "p": "suppress",
          "u": "unsuppress", "d": "delivery", "q": "requeue"}


def _build(settings: Any, specs: list[Any]) -> Any:
    """A core as an engine would build it, with the installed plugins' hooks (replay asks them again)."""
    from ..core import Core
    from ..plugins import PluginHost

    host = PluginHost(settings)
    return Core(settings, providers=specs, resolve_timezone=host.timezone_resolver(),
                lookup_carrier=host.carrier_lookup(), chain=host.policy_chain())


def _directory(path: str) -> Path:
    d = Path(path)
    if not d.is_dir():
        raise JournalError(f"{d}: no such journal directory")
    return d


def _vanished(exc: BaseException) -> bool:
    """A file a live engine deleted while we read (compaction), not damage."""
    return isinstance(exc, FileNotFoundError) or (
        isinstance(exc, JournalError) and "No such file or directory" in str(exc))


def _retrying(fn: Callable[[], Any]) -> Any:
    """``fn()``, again from the start when a live engine's compaction removed a file under it."""
    for attempt in range(5):
        try:
            return fn()
        except (FileNotFoundError, JournalError) as exc:
            if not _vanished(exc) or attempt == 4:
                raise
            time.sleep(0.05)


def _live_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segments after the newest snapshot (older ones are left-overs start-up deletes)."""
    snaps = snapshot_files(directory)
    base = snaps[-1][0] if snaps else 0
    return [(n, p) for n, p in segment_files(directory) if n >= base]


def _frames_by_kind(directory: Path, progress: Progress) -> tuple[Counter[str], list[dict[str, Any]], int]:
    """Frames by kind, one row per segment, total bytes; raises JournalError on damage."""
    kinds: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    segs = _live_segments(directory)
    total = sum(p.stat().st_size for _, p in segs)
    done = 0
    for n, p in segs:
        try:
            scan = scan_segment(p)
        except files.TornHeader as exc:
            rows.append({"segment": p.name, "bytes": p.stat().st_size, "first_seq": None, "frames": 0,
                         "torn": str(exc)})
            continue
        for offset, seq, payload in scan.frames:
            try:
                frame = decode_frame(payload)
            except msgspec.MsgspecError as exc:
                raise JournalError(f"{p}: frame {seq} at offset {offset} does not decode ({exc})") from None
            kinds[_KINDS[type(frame).__struct_config__.tag]] += 1
        rows.append({"segment": p.name, "bytes": scan.size, "first_seq": scan.header.first_seq,
                     "frames": len(scan.frames), "torn": scan.torn and f"{scan.torn} at offset {scan.end}"})
        done += scan.size
        if progress is not None:
            progress(done, total)
    return kinds, rows, total


def _snapshot_row(directory: Path) -> Optional[dict[str, Any]]:
    snaps = snapshot_files(directory)
    if not snaps:
        return None
    _, p = snaps[-1]
    header, _ = read_snapshot(p)
    return {"file": p.name, "bytes": p.stat().st_size, "pending": header.pending,
            "age_seconds": max(0.0, time.time() - header.created), "covers_segments_before": header.next_segment}


def _replayed(directory: Path, progress: Progress) -> dict[str, Any]:
    from .journal import recover

    core, info = recover(directory, _build, None, [], progress, readonly=True)
    st = core.stats()
    return {"pending": st.pending, "scheduled": st.scheduled, "queued": st.queued, "in_flight": st.in_flight,
            "submitted": st.submitted, "final": dict(st.final), "frames_replayed": info.frames,
            "torn": list(info.torn), "seconds": info.seconds}


def check(path: str, progress: Progress = None) -> dict[str, Any]:
    """Verify every frame and the snapshot, then replay read-only; return what was found.

    Raises ``JournalError`` (naming file and offset) if the journal is damaged.
    """
    directory = _directory(path)

    def run() -> dict[str, Any]:
        snapshot = _snapshot_row(directory)
        kinds, rows, total = _frames_by_kind(directory, None)
        state = _replayed(directory, progress)
        return {"path": str(directory), "snapshot": snapshot, "segments": rows, "frames": dict(kinds),
                "bytes": total + (snapshot["bytes"] if snapshot else 0), "state": state, "torn": state["torn"]}

    return _retrying(run)


def stats(path: str, replay: bool = True, progress: Progress = None) -> dict[str, Any]:
    """Segments, sizes, the snapshot and (with ``replay``) pending sends by state."""
    directory = _directory(path)

    def run() -> dict[str, Any]:
        snapshot = _snapshot_row(directory)
        kinds, rows, total = _frames_by_kind(directory, None if replay else progress)
        out: dict[str, Any] = {"path": str(directory), "snapshot": snapshot, "segments": rows,
                               "frames": dict(kinds), "bytes": total + (snapshot["bytes"] if snapshot else 0)}
        if replay:
            state = _replayed(directory, progress)
            out["state"] = state
            out["bytes_per_pending"] = out["bytes"] / state["pending"] if state["pending"] else None
        return out

    return _retrying(run)


class Repair(msgspec.Struct, kw_only=True):
    """What ``repair`` would do: truncate one segment, delete the ones after it."""

    reason: Optional[str] = None
    truncate: Optional[str] = None
    offset: int = 0
    bytes_cut: int = 0
    frames_lost: int = 0
    delete: list[str] = []

    @property
    def needed(self) -> bool:
        """False when the journal has no damage to cut."""
        return self.reason is not None


def plan_repair(path: str) -> Repair:
    """Find the last good frame: the first damage (bad checksum, sequence gap, missing segment) and what follows it."""
    directory = _directory(path)
    snaps = snapshot_files(directory)
    base = snaps[-1][0] if snaps else None
    try:
        expect_seq = read_snapshot(snaps[-1][1])[0].last_seq + 1 if snaps else None
    except JournalError as exc:
        raise JournalError(f"cannot repair: {exc}") from None
    segs = [(n, p) for n, p in segment_files(directory) if base is None or n >= base]
    expect_n = base if base is not None else (segs[0][0] if segs else 0)
    if base is None and segs:
        try:
            first = scan_segment(segs[0][1], strict=False).header.first_seq
        except JournalError:
            first = 1
        if first != 1:
            raise JournalError(f"cannot repair: the journal starts at frame {first} with no snapshot before it: "
                               "the start of the journal is missing; restore it from a backup")
    for i, (n, p) in enumerate(segs):
        later = [q.name for _, q in segs[i + 1:]]
        if n != expect_n:
            return Repair(reason=f"segment {expect_n} is missing", delete=[p.name, *later],
                          frames_lost=_count_frames([q for _, q in segs[i:]]))
        try:
            scan = scan_segment(p, expect_seq, strict=False)
        except files.TornHeader as exc:
            return Repair(reason=str(exc), delete=[p.name, *later], frames_lost=_count_frames([q for _, q in segs[i + 1:]]))
        except JournalError as exc:  # a damaged header or a segment that does not follow: drop it and what follows
            return Repair(reason=str(exc), delete=[p.name, *later], frames_lost=_count_frames([q for _, q in segs[i:]]))
        if scan.damage is not None or (scan.torn is not None and later):
            lost = _count_frames([q for _, q in segs[i + 1:]]) + _count_after(p, scan.end)
            return Repair(reason=scan.damage or f"{p}: {scan.torn} at offset {scan.end}", truncate=p.name,
                          offset=scan.end, bytes_cut=scan.size - scan.end, frames_lost=lost, delete=later)
        if scan.torn is not None:
            return Repair(reason=f"{p}: {scan.torn} at offset {scan.end}", truncate=p.name, offset=scan.end,
                          bytes_cut=scan.size - scan.end)
        expect_seq = (expect_seq if expect_seq is not None else scan.header.first_seq) + len(scan.frames)
        expect_n = n + 1
    return Repair()


def _count_frames(paths: list[Path]) -> int:
    n = 0
    for p in paths:
        try:
            n += len(scan_segment(p, strict=False).frames)
        except JournalError:
            pass
    return n


def _count_after(path: Path, offset: int) -> int:
    """Frames that can still be made out after a damaged point (a lower bound of what is lost)."""
    data = path.read_bytes()
    count, pos = 0, offset
    while pos + files.FRAME_HEAD <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "little")
        pos += files.FRAME_HEAD + length
        count += 1
    return count


def apply_repair(path: str, plan: Repair, lock_fd: Optional[int] = None) -> None:
    """Carry out ``plan`` under the journal's lock: truncate (fsynced), delete, fsync the directory.

    ``lock_fd`` is the lock already taken (``files.lock``) when the plan was
    made; without it the lock is taken here.
    """
    directory = _directory(path)
    fd = files.lock(directory) if lock_fd is None else lock_fd
    try:
        if plan.truncate is not None:
            with open(directory / plan.truncate, "r+b") as f:
                f.truncate(plan.offset)
                f.flush()
                os.fsync(f.fileno())
        for name in plan.delete:
            (directory / name).unlink(missing_ok=True)
        files.fsync_dir(directory)
    finally:
        if lock_fd is None:
            os.close(fd)


def compact(path: str, progress: Progress = None) -> dict[str, Any]:
    """Recover the journal at ``path`` and write a snapshot of it, so the next start replays nothing.

    Run it with the sendcore that wrote the journal, before an upgrade: a
    journal's tail replays only with that version, a snapshot loads in later
    ones. Takes the lock (fails beside a live engine), sends nothing, calls no
    provider; the settings and providers recorded in the journal are used.
    Returns the recovery counts and what the snapshot holds.
    """
    import asyncio

    import msgspec.structs

    from .journal import Journal, _load_settings

    directory = _directory(path)
    segs, snaps = _live_segments(directory), snapshot_files(directory)
    if segs:
        header: Any = files.read_segment_header(segs[-1][1])
    elif snaps:
        header, _ = read_snapshot(snaps[-1][1], payload=False)
    else:
        raise JournalError(f"{directory}: the journal is empty (no snapshot, no segment)")
    settings = _load_settings(header.settings, directory)
    settings = msgspec.structs.replace(settings, journal=msgspec.structs.replace(settings.journal, path=str(directory)))
    t0 = time.perf_counter()
    journal, core = Journal.open(settings, list(header.providers), _build, progress)

    async def run() -> None:
        journal.start(asyncio.get_running_loop(), core)
        await journal.close(snapshot=True)

    asyncio.run(run())
    r = journal.recovery
    after = snapshot_files(directory)
    return {"path": str(directory), "frames_replayed": r.frames, "segments_replayed": r.segments,
            "torn": list(r.torn), "pending": core.pending, "snapshot": after[-1][1].name if after else None,
            "written": journal.stats().snapshots > 0, "seconds": time.perf_counter() - t0}
