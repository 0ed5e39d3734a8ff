"""The journal as the engine sees it: recovery at start, ordered durable inputs, snapshots.

Every input the engine gives the core goes through ``Journal.run(frame,
apply, durable)``, on the event loop thread, in the order the engine calls
it. The frame gets the next sequence number and goes to the writer thread;
``apply`` (the core call) runs

- at once, for inputs nobody waits on (``advance``, ``record``, delivery
  reports) when no durable input is still waiting ahead of them;
- once the frame is on disk, for durable inputs (``submit``, ``cancel``,
  ``suppress``), and every input queued behind one waits for it too.

So the core applies inputs exactly in journal order, and never acts on a
submit before its frame is durable: a submit is acknowledged only after
``apply`` ran, and replaying the journal into a fresh core gives the state
the live one had.

Snapshots: once ``snapshot_bytes`` were written since the last one (or
``snapshot_interval`` passed), the journal starts a new segment and forks;
the child pickles the core's state (a copy-on-write view of the parent's
memory, so the engine pauses only for the ``fork``), writes it to a temporary
file and fsyncs it; the parent renames it into place, fsyncs the directory
and deletes the segments it covers. A crash at any step leaves either the old
snapshot with its segments or the new one with its own.

Disk faults: a failed write fails the submits waiting on it with a
``JournalError`` and puts the journal in *degraded* mode: submits and cancels
are refused, the engine goes on dispatching what it holds, and every second
the journal tries a snapshot; when one succeeds the journal is whole again
and accepts as before.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import pickle
import signal
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import msgspec

from ..core import Checked
from ..errors import JournalError, PendingLimitError
from ..provider import DeliveryReport, ProviderSpec
from ..send import Rejection
from ..settings import LEGACY_DISPATCH, Settings
from . import files
from .files import (
    SEGMENT_MAGIC, SNAPSHOT_MAGIC, fsync_dir, pack_frame, read_snapshot, scan_segment, segment_files,
    segment_name, snapshot_files, snapshot_name, write_prefix,
)
from .frames import (
    Advance, Cancel, Delivery, Frame, Record, RecordError, Requeue, SegmentHeader, SnapshotHeader, Submit,
    Suppress, Unsuppress, decode_frame,
)
from .writer import FRAME, ROTATE, STOP, SYNC, Writer

__all__ = ["Journal", "JournalStats", "Recovery", "batch_check", "recover"]

log = logging.getLogger("sendcore.journal")

BuildCore = Callable[[Settings, list[ProviderSpec]], Any]

_OK, _DEGRADED, _ATTEMPT = "ok", "degraded", "attempt"


def batch_check(batch: Any) -> int:
    """A CRC of a batch's send ids, kept in its record frames to catch a replay that diverged."""
    return zlib.crc32("\0".join([s.id for s in batch.sends]).encode("utf-8", "surrogatepass"))


def _settings_bytes(settings: Settings) -> bytes:
    return msgspec.json.encode(settings)


def _version() -> str:
    from .. import __version__

    return __version__


# ---------------------------------------------------------------------- recovery


@dataclass
class Recovery:
    """What start-up found in the journal and did with it."""

    snapshot: Optional[str] = None
    snapshot_pending: int = 0
    segments: int = 0
    frames: int = 0
    torn: list[str] = field(default_factory=list)
    requeued: int = 0
    settings_changed: bool = False
    seconds: float = 0.0
    load_seconds: float = 0.0
    next_seq: int = 1
    next_segment: int = 1


def _upgrade_hint(header: Any) -> str:
    """Why a replay may diverge when another sendcore wrote the segment, and what to do."""
    wrote, running = getattr(header, "sendcore", "") or "an unknown version", _version()
    if wrote == running:
        return ""
    return (f"; this segment was written by sendcore {wrote} and this is {running}: a journal's tail replays "
            f"only with the version that wrote it. Start sendcore {wrote} on it once and run "
            "`sendcore journal compact` (or stop it with `await engine.close(snapshot=True)`), then upgrade")


def apply_frame(core: Any, frame: Frame) -> None:
    """Give ``core`` the input ``frame`` records, as the live engine did."""
    t = type(frame)
    if t is Advance:
        core.advance(frame.now)
    elif t is Record or t is RecordError:
        batch = core.batch(frame.batch)
        if batch is None or batch_check(batch) != frame.check:
            raise JournalError(
                f"replay diverged: batch {frame.batch} is {'unknown' if batch is None else 'different'} "
                "in the replayed core"
            )
        if t is Record:
            core.record(batch, frame.results, frame.now)
        else:
            core.record_error(batch, frame.error, frame.now)
    elif t is Submit:
        checked = Checked([(s, d, None) for s, d in zip(frame.sends, frame.dues)],
                          [Rejection(-1, None, "")] * frame.rejected, frame.skip, recheck=True)
        try:
            core.accept(checked, frame.now)
        except PendingLimitError:
            pass  # the live engine got the same answer and accepted nothing
    elif t is Cancel:
        core.cancel(frame.now, ids=frame.ids, recipient=frame.recipient, origin_id=frame.origin_id)
    elif t is Suppress:
        core.suppress(frame.channel, frame.address, frame.scope, frame.now)
    elif t is Unsuppress:
        core.unsuppress(frame.channel, frame.address, frame.now)
    elif t is Delivery:
        core.delivery(DeliveryReport(send_id=frame.send_id, delivered=frame.delivered, detail=frame.detail,
                                     provider_id=frame.provider_id, code=frame.code, temporary=frame.temporary,
                                     suppress=frame.suppress, retry_after=frame.retry_after),  # type: ignore[arg-type]
                      frame.provider, frame.now)
    elif t is Requeue:
        core.requeue_in_flight(frame.now)


def _same_rules(a: tuple[bytes, list[ProviderSpec]], b: tuple[bytes, list[ProviderSpec]]) -> bool:
    """Whether two (settings, providers) pairs make the same core: ``[journal]`` and ``[service]`` do not count."""
    if a == b:
        return True
    if a[1] != b[1]:
        return False
    da, db = msgspec.json.decode(a[0]), msgspec.json.decode(b[0])
    for section in ("journal", "service"):
        da.pop(section, None)
        db.pop(section, None)
    return da == db


def _load_settings(data: bytes, where: Path) -> Settings:
    try:
        raw = msgspec.json.decode(data)
        # Written before [dispatch] existed: replay must decide as that core did.
        raw.setdefault("dispatch", LEGACY_DISPATCH)
        return Settings.from_dict(raw)
    except Exception as exc:
        raise JournalError(f"{where}: the settings recorded in it no longer load ({exc})") from None


def recover(directory: Path, build: BuildCore, settings: Optional[Settings], providers: list[ProviderSpec],
            progress: Optional[Callable[[int, int], None]] = None, *, readonly: bool = False) -> tuple[Any, Recovery]:
    """Rebuild the core from ``directory``: newest snapshot, then every frame after it.

    ``build(settings, providers)`` makes a core; replay uses the settings and
    providers recorded in the journal, then hands the state to a core built
    with ``settings``/``providers`` if they differ. A torn final frame is
    truncated (with a warning); other damage raises ``JournalError``.
    ``progress(done_bytes, total_bytes)`` is called as segments are read.
    ``readonly`` changes no file (for ``sendcore journal check``): a torn
    tail is reported, not truncated; with ``settings=None`` the core keeps
    the settings recorded in the journal.
    """
    # Millions of objects come back at once: the cycle collector would walk them again and again
    # (a 1M-pending snapshot loads in half the time without it).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _recover(directory, build, settings, providers, progress, readonly)
    finally:
        if collecting:
            gc.enable()


def _recover(directory: Path, build: BuildCore, settings: Optional[Settings], providers: list[ProviderSpec],
             progress: Optional[Callable[[int, int], None]], readonly: bool) -> tuple[Any, Recovery]:
    t0 = time.perf_counter()
    info = Recovery()
    for p in [] if readonly else directory.iterdir():
        if ".tmp" in p.name:
            p.unlink(missing_ok=True)  # an unfinished snapshot of an engine that died
    snaps = snapshot_files(directory)
    segs = segment_files(directory)
    core = None
    recorded: tuple[bytes, list[ProviderSpec]] = (b"", [])
    seq = 1
    base = segs[0][0] if segs else 1
    if snaps:
        base, path = snaps[-1]
        header, payload = read_snapshot(path)
        core = build(_load_settings(header.settings, path), list(header.providers))
        try:
            state = pickle.loads(payload)  # noqa: S301 - our own file, checksummed, in our own directory
        except Exception as exc:
            raise JournalError(f"{path}: the snapshot does not load ({exc}); it was written by an "
                               "incompatible sendcore: restore the version that wrote it") from None
        core.import_state(state)
        recorded = (header.settings, list(header.providers))
        seq = header.last_seq + 1
        info.snapshot = path.name
        info.snapshot_pending = header.pending
        info.load_seconds = time.perf_counter() - t0
        for n, old in [] if readonly else snaps[:-1]:
            old.unlink(missing_ok=True)
        for n, old in [] if readonly else segs:
            if n < base:
                old.unlink(missing_ok=True)  # covered by the snapshot: a compaction cut short
        segs = [(n, p) for n, p in segs if n >= base]
    total = sum(p.stat().st_size for _, p in segs)
    done_bytes = 0
    expect = base
    for i, (n, path) in enumerate(segs):
        if n != expect:
            raise JournalError(
                f"{directory / segment_name(expect)}: segment {expect} is missing (the journal goes on with "
                f"{path.name}); restore it from a backup, or move the later segments away to start from "
                "what is before the gap"
            )
        expect = n + 1
        try:
            scan = scan_segment(path, seq if (core is not None or i > 0) else None)
        except files.TornHeader as exc:
            if i != len(segs) - 1:
                raise
            # The newest segment was being created at the crash: it holds no frame yet.
            info.torn.append(f"{exc}: removed")
            if not readonly:
                log.warning("%s: removed (created at the crash, no frame in it)", exc)
                path.unlink(missing_ok=True)
            expect = n
            break
        if core is None and scan.header.first_seq != 1:
            raise JournalError(
                f"{path}: the journal starts at frame {scan.header.first_seq} and there is no snapshot "
                "covering the frames before it; restore the snapshot or the earlier segments"
            )
        if scan.torn is not None:
            if i != len(segs) - 1:
                raise JournalError(f"{path}: {scan.torn} at offset {scan.end}, but later segments follow; "
                                   f"the journal is damaged: restore {path.name} from a backup")
            info.torn.append(f"{path}: {scan.torn} at offset {scan.end}")
            if not readonly:
                log.warning("%s: %s at offset %d: truncated (a crash during a write; the frame was never "
                            "acknowledged)", path, scan.torn, scan.end)
                with open(path, "r+b") as f:
                    f.truncate(scan.end)
                    f.flush()
                    os.fsync(f.fileno())
        h = scan.header
        if core is None or not _same_rules((h.settings, list(h.providers)), recorded):
            fresh = build(_load_settings(h.settings, path), list(h.providers))
            if core is not None:
                fresh.import_state(core.export_state())
            core = fresh
            recorded = (h.settings, list(h.providers))
        for offset, fseq, payload in scan.frames:
            try:
                frame = decode_frame(payload)
            except msgspec.MsgspecError as exc:
                raise JournalError(f"{path}: frame {fseq} at offset {offset} does not decode ({exc}); "
                                   "it was written by an incompatible sendcore") from None
            try:
                apply_frame(core, frame)
            except JournalError as exc:
                raise JournalError(f"{path}: frame {fseq} at offset {offset}: {exc}{_upgrade_hint(h)}") from None
            except Exception:  # the live call raised the same to its caller; the state matches
                log.debug("%s: frame %d raised on replay, as it did live", path, fseq, exc_info=True)
            if fseq & 1023 == 0:
                core.drain_outcomes()
        seq += len(scan.frames)
        info.frames += len(scan.frames)
        info.segments += 1
        done_bytes += scan.size
        if progress is not None:
            progress(done_bytes, total)
    if settings is None:
        if core is None:
            raise JournalError(f"{directory}: the journal is empty (no snapshot, no segment)")
    elif core is None:
        core = build(settings, providers)
    elif not _same_rules(recorded, (_settings_bytes(settings), list(providers))):
        info.settings_changed = True
        fresh = build(settings, providers)
        fresh.import_state(core.export_state())
        core = fresh
    core.drain_outcomes()
    info.next_seq = seq
    info.next_segment = expect
    info.seconds = time.perf_counter() - t0
    return core, info


# ---------------------------------------------------------------------- the live journal


class JournalStats(msgspec.Struct, kw_only=True, frozen=True):
    """What the journal cost so far (a frozen snapshot)."""

    path: str
    fsync: str
    frames: int
    bytes: int
    fsyncs: int
    fsync_seconds: float
    snapshots: int
    snapshot_pause_max: float
    snapshot_seconds: float
    segments: int
    degraded: Union[str, None]
    recovery: dict[str, Any]


class _Waiting:
    __slots__ = ("ticket", "durable", "apply", "future")

    def __init__(self, ticket: int, durable: bool, apply: Callable[[], Any], future: asyncio.Future[Any]) -> None:
        self.ticket = ticket
        self.durable = durable
        self.apply = apply
        self.future = future


class Journal:
    """The open journal of one engine. Build it with ``Journal.open`` (see the module docstring)."""

    def __init__(self, directory: Path, settings: Settings, providers: list[ProviderSpec], lock_fd: int,
                 recovery: Recovery) -> None:
        self.directory = directory
        self._settings = settings
        self._providers = providers
        self._lock_fd = lock_fd
        self.recovery = recovery
        js = settings.journal
        self._mode = js.fsync
        self._snapshot_bytes = js.snapshot_bytes
        self._snapshot_interval = float(js.snapshot_interval)
        self._segment_bytes = js.segment_bytes
        self._seq = recovery.next_seq
        self._segment = recovery.next_segment
        self._ticket = 0
        self._segment_written = 0
        self._since_snapshot = 0
        self._last_snapshot = time.monotonic()
        self._frames = 0
        self._waiting: deque[_Waiting] = deque()
        self._failed: dict[int, OSError] = {}
        self._state = _OK
        self._why: Optional[str] = None
        self._buffer: list[bytes] = []
        self._snap: Optional[dict[str, Any]] = None
        self._snapshots = 0
        self._pause_max = 0.0
        self._snap_seconds = 0.0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._writer: Optional[Writer] = None
        self._core: Any = None
        self._notified = False
        self._timer: Optional[asyncio.TimerHandle] = None
        self._closed = False

    # -------------------------------------------------------------- opening

    @classmethod
    def open(cls, settings: Settings, providers: list[ProviderSpec], build: BuildCore,
             progress: Optional[Callable[[int, int], None]] = None) -> tuple[Journal, Any]:
        """Lock ``[journal] path``, recover the core from it and start a new segment. Blocking: run it off the loop."""
        directory = Path(settings.journal.path)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"{directory}: cannot create the journal directory: {exc.strerror}; "
                               "check [journal] path and its permissions") from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise JournalError(f"{directory}: the journal directory is not writable; "
                               "check [journal] path and its permissions")
        lock_fd = files.lock(directory)
        try:
            core, info = recover(directory, build, settings, providers, progress)
            journal = cls(directory, settings, providers, lock_fd, info)
            fd = journal._create_segment(journal._segment)
        except BaseException:
            os.close(lock_fd)
            raise
        journal._fd = fd
        journal._core = core
        return journal, core

    def _prefix(self, number: int) -> bytes:
        return write_prefix(SEGMENT_MAGIC, SegmentHeader(
            number=number, first_seq=self._seq, created=time.time(), settings=_settings_bytes(self._settings),
            providers=self._providers, sendcore=_version()))

    def _create_segment(self, number: int) -> int:
        path = self.directory / segment_name(number)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
            os.write(fd, self._prefix(number))
            os.fdatasync(fd)
            fsync_dir(self.directory)
        except OSError as exc:
            raise JournalError(f"{path}: cannot write the journal: {exc.strerror}") from None
        return fd

    def start(self, loop: asyncio.AbstractEventLoop, core: Any) -> None:
        """Start the writer thread on behalf of the engine running on ``loop``."""
        self._loop = loop
        self._core = core
        self._writer = Writer(self._fd, self.directory, self._mode, float(self._settings.journal.fsync_interval),
                              self._notify_threadsafe)
        self._writer.start()
        self._schedule_timer()
        r = self.recovery
        if r.segments > 1 or r.frames > 10_000 or r.settings_changed:
            # Compact what this start had to replay, so the next one does not replay it again.
            loop.call_soon(self.snapshot)

    # -------------------------------------------------------------- inputs

    def run(self, payload: bytes, apply: Callable[[], Any], durable: bool) -> Any:
        """Journal the encoded frame ``payload`` and run ``apply`` in journal order; return its result or a future of it.

        ``durable`` inputs (their caller is told it is done) run once the frame
        is on disk and raise ``JournalError`` when it cannot be written.
        """
        if durable and self._state is not _OK:
            raise JournalError(self._why or "the journal cannot write")
        ticket = self._append(payload, durable)
        if not durable and not self._waiting:
            result = apply()
            if self._snap is None and self._state is _OK and self._since_snapshot >= self._snapshot_bytes:
                self.snapshot()
            return result
        fut = self._loop.create_future()  # type: ignore[union-attr]
        self._waiting.append(_Waiting(ticket, durable, apply, fut))
        return fut

    def _append(self, payload: bytes, durable: bool) -> int:
        self._ticket += 1
        ticket = self._ticket
        if self._state is not _OK:
            if self._state is _ATTEMPT:
                self._buffer.append(payload)  # written once the snapshot that covers the gap is out
            return ticket
        data = pack_frame(self._seq, payload)
        self._seq += 1
        self._frames += 1
        self._writer.put((FRAME, ticket, data, durable))  # type: ignore[union-attr]
        n = len(data)
        self._segment_written += n
        self._since_snapshot += n
        if self._segment_written >= self._segment_bytes:
            self._rotate()
        return ticket

    def _rotate(self) -> int:
        self._segment += 1
        self._ticket += 1
        self._segment_written = 0
        path = self.directory / segment_name(self._segment)
        self._writer.put((ROTATE, self._ticket, (path, self._prefix(self._segment)), False))  # type: ignore[union-attr]
        return self._ticket

    def _notify_threadsafe(self) -> None:
        # Called on the writer thread: one wake-up of the loop per group of progress.
        if not self._notified and self._loop is not None and not self._loop.is_closed():
            self._notified = True
            try:
                self._loop.call_soon_threadsafe(self._progress)
            except RuntimeError:
                pass

    def _progress(self) -> None:
        """On the loop: apply the inputs whose frames are done, in order; fail those that failed."""
        self._notified = False
        w = self._writer
        if w is None:
            return
        with w._cond:
            failed, w.failed = w.failed, []
        for ticket, exc in failed:
            self._failed[ticket] = exc
        done = w.done
        if failed:
            self._degrade(failed[0][1])
        waiting = self._waiting
        while waiting:
            item = waiting[0]
            if item.durable:
                exc = self._failed.pop(item.ticket, None)
                if exc is None and item.ticket > done and self._state is _OK:
                    break
                if exc is not None or item.ticket > done:
                    waiting.popleft()
                    if not item.future.done():
                        item.future.set_exception(JournalError(self._why or f"the journal cannot write: {exc}"))
                    continue
            waiting.popleft()
            try:
                result = item.apply()
            except Exception as exc:  # the caller gets the core's own error (PendingLimitError ...)
                if not item.future.done():
                    item.future.set_exception(exc)
                continue
            if not item.future.done():
                item.future.set_result(result)
        self._failed = {t: e for t, e in self._failed.items() if t > done}
        if self._snap is not None:
            self._snapshot_progress()
        elif not waiting and self._state is _OK and self._since_snapshot >= self._snapshot_bytes:
            self.snapshot()

    def _degrade(self, exc: OSError) -> None:
        if self._state is not _OK:
            return
        self._state = _DEGRADED
        self._why = (f"{self.directory}: the journal cannot write ({exc.strerror or exc}); submits are refused "
                     "until it can: the engine goes on sending what it holds and accepts again once the disk "
                     "has room and a snapshot is written")
        log.error("%s", self._why)
        if self._timer is not None:  # retry a snapshot every second from now on
            self._timer.cancel()
            self._schedule_timer()

    # -------------------------------------------------------------- snapshots

    def _schedule_timer(self) -> None:
        if self._closed or self._loop is None:
            return
        period = 1.0 if self._state is not _OK else max(0.05, min(self._snapshot_interval, 60.0))
        self._timer = self._loop.call_later(period, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._closed:
            return
        due = (time.monotonic() - self._last_snapshot >= self._snapshot_interval and self._since_snapshot > 0)
        if self._snap is None and not self._waiting and (self._state is _DEGRADED or due):
            self.snapshot()
        self._schedule_timer()

    def snapshot(self) -> bool:
        """Start a snapshot now (in a forked child) unless one runs or inputs are still waiting; True if started."""
        if self._snap is not None or self._waiting or self._closed or self._writer is None:
            return False
        degraded = self._state is not _OK
        if degraded:
            self._state = _ATTEMPT
            self._buffer = []
            next_segment = self._segment + 1
            rotate_ticket = None
        else:
            rotate_ticket = self._rotate()
            next_segment = self._segment
        header_fields = dict(next_segment=next_segment, last_seq=self._seq - 1, created=time.time(),
                             settings=_settings_bytes(self._settings), providers=self._providers,
                             pending=self._core.pending, sendcore=_version())
        tmp = self.directory / f"{snapshot_name(next_segment)}.tmp-{os.getpid()}"
        state = self._core.export_state()
        prctl = _prctl()
        t = time.perf_counter()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: write the state as it was at the fork, then leave at once
            code = 1
            try:
                code = _write_snapshot_child(tmp, header_fields, state, self._lock_fd, parent, prctl)
            finally:
                os._exit(code)
        pause = time.perf_counter() - t
        self._pause_max = max(self._pause_max, pause)
        self._since_snapshot = 0
        self._last_snapshot = time.monotonic()
        self._snap = {"pid": pid, "tmp": tmp, "next": next_segment, "rotate": rotate_ticket, "exit": None,
                      "degraded": degraded, "t": t, "phase": "child"}
        waiter = self._loop.run_in_executor(None, os.waitpid, pid, 0)  # type: ignore[union-attr]
        waiter.add_done_callback(self._child_done)
        return True

    def _child_done(self, fut: asyncio.Future[Any]) -> None:
        snap = self._snap
        if snap is None:
            return
        try:
            _, status = fut.result()
            snap["exit"] = os.waitstatus_to_exitcode(status)
        except Exception:
            snap["exit"] = -1
        self._snapshot_progress()

    def _snapshot_progress(self) -> None:
        """Move the running snapshot on: publish it once the child is done and its segment exists."""
        snap = self._snap
        if snap is None or snap["exit"] is None or snap["phase"] != "child":
            return
        w = self._writer
        if snap["exit"] != 0:
            log.error("%s: the snapshot was not written (the writer process exited with %s); will retry",
                      self.directory, snap["exit"])
            snap["tmp"].unlink(missing_ok=True)
            self._snap = None
            if snap["degraded"]:
                self._state = _DEGRADED
                self._buffer = []
            return
        if not snap["degraded"]:
            if snap["rotate"] > w.done:  # type: ignore[union-attr]
                rotate_failed = snap["rotate"] in self._failed
                if not rotate_failed:
                    return  # the new segment is not out yet: wait for the writer
            if snap["rotate"] in self._failed:
                self._failed.pop(snap["rotate"], None)
                log.error("%s: could not start a new segment for the snapshot; will retry", self.directory)
                snap["tmp"].unlink(missing_ok=True)
                self._snap = None
                return
        snap["phase"] = "publish"
        self._loop.run_in_executor(None, self._publish, snap).add_done_callback(  # type: ignore[union-attr]
            lambda f: self._published(snap, f))

    def _publish(self, snap: dict[str, Any]) -> None:
        """Off the loop: rename the snapshot into place, then drop what it covers."""
        final = self.directory / snapshot_name(snap["next"])
        os.rename(snap["tmp"], final)
        fsync_dir(self.directory)
        for n, p in snapshot_files(self.directory):
            if n < snap["next"]:
                p.unlink(missing_ok=True)
        for n, p in segment_files(self.directory):
            if n < snap["next"]:
                p.unlink(missing_ok=True)
        fsync_dir(self.directory)

    def _published(self, snap: dict[str, Any], fut: asyncio.Future[None]) -> None:
        self._snap = None
        exc = fut.exception()
        if exc is not None:
            log.error("%s: could not publish the snapshot (%s); will retry", self.directory, exc)
            snap["tmp"].unlink(missing_ok=True)
            if snap["degraded"]:
                self._state = _DEGRADED
                self._buffer = []
            return
        self._snapshots += 1
        self._snap_seconds = time.perf_counter() - snap["t"]
        if snap["degraded"]:
            # The snapshot covers everything up to the fork; what came after was kept in memory.
            buffered, self._buffer = self._buffer, []
            self._segment = snap["next"]
            self._segment_written = 0
            self._ticket += 1
            # No frame was numbered since the fork, so the new segment starts right after the snapshot.
            self._writer.put((ROTATE, self._ticket, (self.directory / segment_name(self._segment),  # type: ignore[union-attr]
                                                     self._prefix(self._segment)), False))
            self._state = _OK
            self._why = None
            for payload in buffered:
                self._append(payload, False)
            log.warning("%s: the journal can write again; submits are accepted", self.directory)
        if not self._waiting and self._since_snapshot >= self._snapshot_bytes:
            self.snapshot()

    # -------------------------------------------------------------- queries and closing

    def _since_snapshot_frames(self) -> bool:
        """Whether the state has frames no snapshot covers (in this run or replayed at start)."""
        if self._since_snapshot > 0:
            return True
        r = self.recovery
        return self._snapshots == 0 and (r.frames > 0 or r.snapshot is None)

    @property
    def degraded(self) -> Optional[str]:
        """Why submits are refused now, or None when the journal writes."""
        return self._why

    def stats(self) -> JournalStats:
        """A frozen snapshot of what the journal wrote and what it cost."""
        w = self._writer
        r = self.recovery
        return JournalStats(
            path=str(self.directory), fsync=self._mode, frames=self._frames, bytes=w.bytes if w else 0,
            fsyncs=w.fsyncs if w else 0, fsync_seconds=w.fsync_seconds if w else 0.0, snapshots=self._snapshots,
            snapshot_pause_max=self._pause_max, snapshot_seconds=self._snap_seconds, segments=self._segment,
            degraded=self._why,
            recovery={"snapshot": r.snapshot, "snapshot_pending": r.snapshot_pending, "frames": r.frames,
                      "segments": r.segments, "torn": list(r.torn), "requeued": r.requeued, "seconds": r.seconds,
                      "load_seconds": r.load_seconds, "settings_changed": r.settings_changed},
        )

    async def flush(self) -> None:
        """Wait until every frame appended so far is written and fsynced."""
        if self._writer is None or self._closed:
            return
        self._ticket += 1
        ticket = self._ticket
        self._writer.put((SYNC, ticket, None, True))
        fut = self._loop.create_future()  # type: ignore[union-attr]
        self._waiting.append(_Waiting(ticket, True, lambda: None, fut))
        try:
            await fut
        except JournalError:
            pass

    async def close(self, *, snapshot: bool = False) -> None:
        """Write and fsync what is left, wait for a running snapshot, stop the writer, release the lock.

        With ``snapshot``, take a snapshot of the final state first, so the next
        start replays no frame: the way to stop before an upgrade (a journal's
        tail replays only with the sendcore that wrote it). If the snapshot
        cannot be written, the journal closes as without it (nothing is lost;
        the next start replays the tail) and the error is logged.
        """
        if self._closed:
            return
        loop = self._loop or asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        while self._waiting:  # inputs still waiting on the disk: let them finish (or fail)
            await asyncio.gather(*[w.future for w in list(self._waiting)], return_exceptions=True)
        while self._snap is not None:
            await asyncio.sleep(0.005)
        if snapshot and self._since_snapshot_frames():
            before = self._snapshots
            if self.snapshot():
                while self._snap is not None:
                    await asyncio.sleep(0.005)
            if self._snapshots == before:
                log.error("%s: the snapshot at close was not written; the next start replays the tail",
                          self.directory)
        self._closed = True
        w = self._writer
        if w is not None:
            self._ticket += 1
            w.put((STOP, self._ticket, None, True))
            await loop.run_in_executor(None, w.join)
            try:
                os.close(w.fd)
            except OSError:
                pass
        else:
            os.close(self._fd)
        os.close(self._lock_fd)


@functools.cache
def _prctl() -> Any:
    """libc's ``prctl``, or None where there is none; looked up in the parent, before it forks.

    A process forked while other threads run (the executor's, here) must not
    load a library: a thread may have held the loader's lock at the fork.
    """
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except Exception:
        return None


def _write_snapshot_child(tmp: Path, header_fields: dict[str, Any], state: dict[str, Any], lock_fd: int,
                          parent: int, prctl: Any) -> int:
    """In the forked child: pickle ``state``, write and fsync the snapshot to ``tmp``; return the exit code."""
    try:
        os.close(lock_fd)  # the parent keeps the lock; this process must not outlive it holding it
        gc.disable()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        if prctl is not None:
            try:
                prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the parent
            except Exception:
                pass
        if os.getppid() != parent:  # the parent died before the line above: its snapshot is moot
            return 1
        payload = pickle.dumps(state, protocol=5)
        header = SnapshotHeader(payload_bytes=len(payload), payload_crc=zlib.crc32(payload), **header_fields)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(write_prefix(SNAPSHOT_MAGIC, header) + payload)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        return 0
    except BaseException:
        return 1
