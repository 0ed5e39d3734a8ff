"""R22 durability: every fault the journal documents, injected for real, and the behaviour it promises.

The faults and where they are documented:

* a torn write (a crash in the middle of a frame, a zero-filled tail, a
  segment cut inside its own header): ``files.py`` module docstring and
  ``recover()``: truncated (or removed) at start with a warning, nothing
  acknowledged before it lost;
* a flipped bit with frames after it, a missing segment, a journal that
  starts after frame 1 with no snapshot, a damaged snapshot, a file written
  by a newer format: start-up stops with a ``JournalError`` naming the file
  and what to do;
* the ``LOCK``: ``files.lock``: a SIGKILLed holder never blocks a restart,
  a live one is named with its pid;
* an unusable ``[journal] path``: ``Journal.open``;
* a full disk (``RLIMIT_FSIZE`` in a child process: writes past it fail with
  EFBIG): ``journal.py`` module docstring, "Disk faults", and ``writer.py``;
* two engines on one journal, and what a clean restart replays.

Engines run on a ``VirtualClock`` unless the fault needs the wall clock
(disk full, lock holders in other processes). Everything is local files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from sendcore.engine import Engine
from sendcore.errors import JournalError
from sendcore.journal import files
from sendcore.journal.files import FORMAT, FRAME_HEAD, SEGMENT_MAGIC, scan_segment, segment_name, write_prefix
from sendcore.journal.frames import SegmentHeader, Submit, decode_frame
from sendcore.testing import ProvidersPlugin, VirtualClock

from . import journal_fault_child
from .test_engine import START, Recorder, sms
from .test_engine import settings as engine_settings

CHILD = str(Path(__file__).with_name("journal_fault_child.py"))
LOGGER = "sendcore.journal"


# ---------------------------------------------------------------------- helpers


def journal_engine(path: Path, *, clock: Any = None, provider: Any = None, **journal: Any) -> Engine:
    """An engine with its journal in ``path`` (virtual clock at START unless told), a Recorder provider."""
    return Engine(
        engine_settings(journal={"path": str(path), **journal}),
        clock=clock if clock is not None else VirtualClock(START),
        plugins=[ProvidersPlugin(provider if provider is not None else Recorder())],
        load_entrypoints=False,
    )


def later(i: int, **kw: Any) -> Any:
    """SMS ``i`` due an hour after START: it stays pending on the virtual clock."""
    return sms(i, at=START + 3600, **kw)


async def build_journal(path: Path, chunks: int = 3, per_chunk: int = 2, **journal: Any) -> list[str]:
    """Submit ``chunks`` submits of ``per_chunk`` sends due later, close cleanly; return the ids in order."""
    ids: list[str] = []
    engine = journal_engine(path, **journal)
    async with engine:
        for c in range(chunks):
            report = await engine.submit([later(c * per_chunk + k) for k in range(per_chunk)])
            assert report.accepted == per_chunk, report
            ids.extend(report.accepted_ids)
    return ids


def known(engine: Engine, sid: str) -> bool:
    """The engine knows ``sid``: it is pending (explain) or has an outcome."""
    return engine.explain(sid) is not None or engine.outcome(sid) is not None


def last_segment(directory: Path) -> Path:
    return files.segment_files(directory)[-1][1]


def frames_of(path: Path) -> list[tuple[int, int, bytes]]:
    """(offset, seq, payload) of each frame of segment ``path``."""
    return [(o, s, bytes(p)) for o, s, p in scan_segment(path).frames]


def frame_end(frame: tuple[int, int, bytes]) -> int:
    return frame[0] + FRAME_HEAD + len(frame[2])


def flip(path: Path, offset: int, mask: int = 0x01) -> None:
    """Flip the bits of ``mask`` in the byte at ``offset`` of ``path``."""
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def restore(directory: Path, contents: dict[str, bytes]) -> None:
    """Make ``directory`` hold exactly ``contents`` (name -> bytes)."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir()
    for name, data in contents.items():
        (directory / name).write_bytes(data)


def contents_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != "LOCK"}


async def start_fails(path: Path, **journal: Any) -> JournalError:
    """Start an engine on ``path``; it must raise JournalError (returned)."""
    engine = journal_engine(path, **journal)
    with pytest.raises(JournalError) as info:
        await engine.start()
    await engine.close()
    return info.value


async def wait_snapshot(engine: Engine, count: int = 1, timeout: float = 10.0) -> None:
    """Force a snapshot and wait (short real sleeps) until ``count`` were published."""
    assert await engine.snapshot(), "engine.snapshot() did not start one"
    deadline = time.monotonic() + timeout
    while engine.journal.snapshots < count:
        assert time.monotonic() < deadline, f"no snapshot within {timeout}s: {engine.journal}"
        await asyncio.sleep(0.005)


def torn_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


# ---------------------------------------------------------------------- 1. torn writes


def test_torn_last_frame_at_every_offset_is_truncated(run: Any, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """R22, torn write: a crash cut the last frame (a submit) at any byte; start truncates it, keeps the rest.

    The journal holds three submits (s0..s5); it is cut right after the
    third submit's frame, which makes that frame the last of the file. For
    every length from the frame's start + 1 to its end - 1 (each cut falls
    strictly inside the frame: in its header, its header CRC or its
    payload), start must succeed, report the torn frame in
    ``engine.journal.recovery["torn"]`` and in a warning naming the file and
    the frame's offset, truncate the file to the frame's start, and keep
    s0..s3 pending while s4, s5 (never acknowledged) are unknown. A cut at the
    frame's start or end is a clean end of file: nothing torn.
    """
    caplog.set_level(logging.WARNING, logger=LOGGER)
    # Built in the directory every start below uses: the same [journal] path, so the same settings as the
    # engine that wrote it (no settings change to hand over, nothing else recovery would do).
    work = tmp_path / "work"
    ids = run(build_journal(work))
    seg = last_segment(work)
    frames = frames_of(seg)
    submits = [f for f in frames if isinstance(decode_frame(f[2]), Submit)]
    assert len(submits) == 3
    last = submits[-1]
    assert set(decode_frame(last[2]).sends[i].id for i in range(2)) == {"s4", "s5"}
    start, end = last[0], frame_end(last)
    whole = seg.read_bytes()[:end]  # the frames after the last submit (advances) are cut off: a clean journal
    path = seg

    async def check(length: int) -> None:
        restore(work, {seg.name: whole[:length]})
        caplog.clear()
        engine = journal_engine(work)
        await engine.start()
        try:
            rec = engine.journal.recovery
            if length in (start, end):
                assert rec["torn"] == [], (length, rec)
                assert torn_warnings(caplog) == []
                assert engine.pending == (4 if length == start else 6)
                return
            where = f"cut at {length} (frame {start}..{end})"
            assert len(rec["torn"]) == 1, (where, rec)
            assert str(path) in rec["torn"][0] and f"offset {start}" in rec["torn"][0], (where, rec["torn"])
            warnings = torn_warnings(caplog)
            assert len(warnings) == 1, (where, warnings)
            assert str(path) in warnings[0] and f"offset {start}" in warnings[0], (where, warnings)
            assert "truncated" in warnings[0]
            assert engine.pending == 4, where
            assert all(known(engine, i) for i in ids[:4]), where
            assert not any(known(engine, i) for i in ids[4:]), where
            assert rec["frames"] == len(frames_of_bytes(whole[:start])), where
        finally:
            await engine.close()
        # Truncated to the frame start; the engine then wrote its own frames in a new segment.
        assert path.read_bytes() == whole[:start], where

    def frames_of_bytes(data: bytes) -> list[Any]:
        probe = tmp_path / "probe" / seg.name
        probe.parent.mkdir(exist_ok=True)
        probe.write_bytes(data)
        return scan_segment(probe).frames

    async def main() -> None:
        for length in range(start, end + 1):
            await check(length)

    run(main())


@pytest.mark.parametrize("zeros", [1, FRAME_HEAD - 1, FRAME_HEAD, FRAME_HEAD + 1, 4096])
def test_zero_filled_tail_is_torn_and_truncated(run: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                zeros: int) -> None:
    """R22, torn write: a zero-filled tail (the file grew, its data never hit the disk): truncated, warned."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    directory = tmp_path / "j"
    ids = run(build_journal(directory))
    seg = last_segment(directory)
    clean = seg.read_bytes()
    seg.write_bytes(clean + bytes(zeros))

    async def main() -> None:
        engine = journal_engine(directory)
        async with engine:
            torn = engine.journal.recovery["torn"]
            assert len(torn) == 1 and str(seg) in torn[0] and f"offset {len(clean)}" in torn[0], torn
            warnings = torn_warnings(caplog)
            assert len(warnings) == 1 and str(seg) in warnings[0] and f"offset {len(clean)}" in warnings[0]
            assert engine.pending == 6 and all(known(engine, i) for i in ids)
        assert seg.read_bytes() == clean

    run(main())


def test_damaged_payload_of_the_last_frame_is_torn(run: Any, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """R22, torn write: the last frame of the file with a bad payload (a crash mid-write) is truncated, not fatal."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    directory = tmp_path / "j"
    ids = run(build_journal(directory))
    seg = last_segment(directory)
    frames = frames_of(seg)
    last_submit = [f for f in frames if isinstance(decode_frame(f[2]), Submit)][-1]
    data = seg.read_bytes()[: frame_end(last_submit)]
    seg.write_bytes(data)
    flip(seg, last_submit[0] + FRAME_HEAD + len(last_submit[2]) // 2, 0x10)

    async def main() -> None:
        engine = journal_engine(directory)
        async with engine:
            torn = engine.journal.recovery["torn"]
            assert len(torn) == 1 and str(seg) in torn[0] and f"offset {last_submit[0]}" in torn[0], torn
            assert any(str(seg) in w and f"offset {last_submit[0]}" in w for w in torn_warnings(caplog))
            assert engine.pending == 4
            assert all(known(engine, i) for i in ids[:4]) and not any(known(engine, i) for i in ids[4:])
        assert seg.read_bytes() == data[: last_submit[0]]

    run(main())


def test_newest_segment_cut_inside_its_header_is_removed(run: Any, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """R22, torn write: the newest segment, being created at the crash, cut inside its own header: removed at start.

    Its header (magic, format, length, MessagePack header, CRC) is cut at
    lengths covering every part of it; start must succeed, report and log it
    as removed, replay everything of the segment before, and start the
    journal again with a whole segment of that number.
    """
    caplog.set_level(logging.WARNING, logger=LOGGER)
    work = tmp_path / "work"  # built where it is restarted: same settings (see the test above)
    ids = run(build_journal(work))
    seg1 = last_segment(work)
    scan = scan_segment(seg1)
    next_seq = scan.frames[-1][1] + 1
    h = scan.header
    prefix = write_prefix(SEGMENT_MAGIC, SegmentHeader(number=2, first_seq=next_seq, created=h.created,
                                                      settings=h.settings, providers=h.providers,
                                                      sendcore=h.sendcore))
    magic = len(SEGMENT_MAGIC)
    cuts = sorted({0, 1, magic - 1, magic, magic + 1, magic + 4, magic + 7, magic + 8, magic + 9,
                   (magic + 8 + len(prefix)) // 2, len(prefix) - 5, len(prefix) - 4, len(prefix) - 1})
    base_files = contents_of(work)
    seg2 = work / segment_name(2)

    async def main() -> None:
        for cut in cuts:
            restore(work, {**base_files, seg2.name: prefix[:cut]})
            caplog.clear()
            engine = journal_engine(work)
            async with engine:
                torn = engine.journal.recovery["torn"]
                assert len(torn) == 1 and str(seg2) in torn[0] and "removed" in torn[0], (cut, torn)
                warnings = torn_warnings(caplog)
                assert len(warnings) == 1 and str(seg2) in warnings[0] and "removed" in warnings[0], (cut, warnings)
                assert engine.pending == 6 and all(known(engine, i) for i in ids), cut
            # Segment 2 was made anew by this engine: a whole header, starting where segment 1 ends.
            again = scan_segment(seg2)
            assert again.header.number == 2 and again.header.first_seq == next_seq, cut

    run(main())


# ---------------------------------------------------------------------- 2. flipped bits


def test_flipped_bit_in_a_middle_frame_stops_start_up(run: Any, tmp_path: Path) -> None:
    """R22, corrupt frame: a flipped bit in a frame with frames after it (each header byte, payload bytes) is fatal.

    Start raises ``JournalError`` naming the segment, the frame's offset, and
    what to do (``sendcore journal repair`` or a backup); a crash cannot
    explain damage with data after it.
    """
    work = tmp_path / "work"
    run(build_journal(work))
    seg = last_segment(work)
    frames = frames_of(seg)
    assert len(frames) >= 4
    target = frames[2]  # a submit or an advance, with frames after it
    offset, _, payload = target
    positions = [offset + i for i in range(FRAME_HEAD)]  # length, seq, payload CRC, header CRC
    positions += [offset + FRAME_HEAD, offset + FRAME_HEAD + len(payload) // 2, offset + FRAME_HEAD + len(payload) - 1]
    base_files = contents_of(work)
    path = seg

    async def main() -> None:
        for i, pos in enumerate(positions):
            restore(work, base_files)
            flip(path, pos, 1 << (i % 8))
            before = path.read_bytes()
            msg = str(await start_fails(work))
            where = f"bit flipped at {pos} (frame at {offset}): {msg}"
            assert str(path) in msg, where
            assert f"offset {offset}" in msg, where
            assert "sendcore journal repair" in msg or "backup" in msg, where
            assert path.read_bytes() == before, "a failed start must not change the damaged file"

    run(main())


# ---------------------------------------------------------------------- 3. missing segments


def test_missing_middle_segment_stops_start_up(run: Any, tmp_path: Path) -> None:
    """R22, missing segment: with several segments, deleting a middle one makes start raise JournalError naming it."""
    directory = tmp_path / "j"
    run(build_journal(directory, chunks=16, per_chunk=10, segment_bytes=4096))
    segs = files.segment_files(directory)
    assert len(segs) >= 3, segs
    number, victim = segs[1]
    victim.unlink()
    msg = str(run(start_fails(directory, segment_bytes=4096)))
    assert str(victim) in msg and f"segment {number} is missing" in msg, msg
    assert "restore" in msg


def test_journal_starting_after_frame_one_without_snapshot_stops_start_up(run: Any, tmp_path: Path) -> None:
    """R22, missing segment: segments left over that start at frame > 1, with no snapshot: JournalError."""
    directory = tmp_path / "j"
    run(build_journal(directory, chunks=16, per_chunk=10, segment_bytes=4096))
    segs = files.segment_files(directory)
    assert len(segs) >= 3
    segs[0][1].unlink()
    first = scan_segment(segs[1][1]).header.first_seq
    assert first > 1
    msg = str(run(start_fails(directory, segment_bytes=4096)))
    assert str(segs[1][1]) in msg and f"starts at frame {first}" in msg and "no snapshot" in msg, msg


def test_missing_segment_right_after_the_snapshot_stops_start_up(run: Any, tmp_path: Path) -> None:
    """R22, missing segment: the segment a snapshot leads to is gone, later ones remain: JournalError naming it."""
    directory = tmp_path / "j"

    async def build() -> None:
        engine = journal_engine(directory, segment_bytes=4096)
        async with engine:
            await engine.submit([later(i) for i in range(10)])
            await wait_snapshot(engine)
            for c in range(12):
                await engine.submit([later(100 + c * 10 + k) for k in range(10)])

    run(build())
    (snap_next, _), = files.snapshot_files(directory)
    segs = files.segment_files(directory)
    assert segs[0][0] == snap_next and len(segs) >= 2, segs
    segs[0][1].unlink()
    msg = str(run(start_fails(directory, segment_bytes=4096)))
    assert str(directory / segment_name(snap_next)) in msg and "missing" in msg, msg


# ---------------------------------------------------------------------- 4. the lock


class LockHolder:
    """A child process holding the journal's LOCK (``lock``: a bare flock; ``engine``: a running engine)."""

    def __init__(self, mode: str, directory: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, CHILD, mode, str(directory)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("READY "):
            self.proc.kill()
            err = self.proc.stderr.read()  # type: ignore[union-attr]
            raise AssertionError(f"lock holder did not start: {line!r} {err}")
        self.pid = int(line.split()[1])
        self.line = line

    def sigkill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc.stdout.close()  # type: ignore[union-attr]
        self.proc.stderr.close()  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["lock", "engine"])
def test_lock_held_by_a_live_process_then_left_by_a_sigkilled_one(run: Any, tmp_path: Path, mode: str) -> None:
    """R22, lock: a live holder makes start raise JournalError naming the directory and its pid; once the
    holder is SIGKILLed, its LOCK file (still naming the dead pid) blocks nothing and start works.

    ``lock``: the child only takes ``flock`` on LOCK and writes its pid;
    ``engine``: the child runs an engine on the journal and acknowledged
    five submits before it was killed: they are there after the restart.
    """
    directory = tmp_path / "j"
    holder = LockHolder(mode, directory)
    try:
        msg = str(run(start_fails(directory)))
        assert str(directory) in msg and f"pid {holder.pid}" in msg, msg
    finally:
        holder.sigkill()
    assert (directory / "LOCK").read_text().strip() == str(holder.pid)  # stale: the dead holder's pid

    async def main() -> None:
        engine = journal_engine(directory)
        async with engine:
            assert (directory / "LOCK").read_text().strip() == str(os.getpid())
            if mode == "engine":
                assert all(known(engine, f"live{i}") for i in range(5))

    run(main())


def _process_state(pid: int) -> str:
    """The state letter of ``pid`` in /proc (``R``, ``S``, ``T`` stopped, ``Z`` zombie), or ``""`` once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def test_a_snapshot_writer_dies_with_its_engine_and_the_restart_loses_nothing(run: Any, tmp_path: Path) -> None:
    """R22, snapshots: the forked writer of a snapshot in progress does not outlive an engine that is SIGKILLed.

    The writer's file is a FIFO this test holds open and never reads, so the
    writer is alive, blocked in its write, when the engine dies; the kernel
    must kill it then (the parent-death signal, set up without loading a
    library in the forked child). The restart drops the snapshot it never
    finished and knows every acknowledged send.
    """
    directory = tmp_path / "j"
    holder = LockHolder("snapshot", directory)
    _, _, writer_pid, fifo = holder.line.split()
    writer = int(writer_pid)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        try:
            deadline = time.monotonic() + 10
            while not _has_open(writer, fifo) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _has_open(writer, fifo), "the snapshot writer never opened its file"
            assert _process_state(writer) not in ("", "Z")
        finally:
            holder.sigkill()
        deadline = time.monotonic() + 10
        while _process_state(writer) not in ("", "Z") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _process_state(writer) in ("", "Z"), f"the snapshot writer {writer} outlived its engine"
    finally:
        os.close(reader)
    assert not files.snapshot_files(directory)

    async def main() -> None:
        engine = journal_engine(directory)
        async with engine:
            assert all(known(engine, f"snap{i}") for i in range(0, 20_000, 997))
            assert engine.stats().pending == 20_000
        assert not [p for p in directory.iterdir() if ".tmp" in p.name]

    run(main())


def _has_open(pid: int, path: str) -> bool:
    """True if process ``pid`` has ``path`` open."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    for fd in fds:
        try:
            if os.readlink(fd) == path:
                return True
        except OSError:
            continue
    return False


def test_two_engines_on_one_journal_in_one_process(run: Any, tmp_path: Path) -> None:
    """R22, lock: a second engine on the same journal in the same process fails to start; after the first
    closes, a new one opens and has everything the first acknowledged."""
    directory = tmp_path / "j"

    async def main() -> None:
        first = journal_engine(directory)
        async with first:
            await first.submit([later(1), later(2)])
            msg = str(await start_fails(directory))
            assert str(directory) in msg and f"pid {os.getpid()}" in msg, msg
            await first.submit([later(3)])  # the first engine is unharmed
        third = journal_engine(directory)
        async with third:
            assert third.pending == 3 and all(known(third, f"s{i}") for i in (1, 2, 3))

    run(main())


# ---------------------------------------------------------------------- 5. unusable paths


def test_journal_path_under_a_regular_file(run: Any, tmp_path: Path) -> None:
    """R22, unwritable directory: a path under a regular file (NotADirectoryError, even as root): JournalError."""
    (tmp_path / "plain").write_text("not a directory")
    path = tmp_path / "plain" / "journal"
    msg = str(run(start_fails(path)))
    assert str(path) in msg and "cannot create the journal directory" in msg, msg


def test_journal_path_that_is_an_existing_file(run: Any, tmp_path: Path) -> None:
    """R22, unwritable directory: a path that is an existing regular file: JournalError naming it."""
    path = tmp_path / "journal"
    path.write_text("not a directory")
    msg = str(run(start_fails(path)))
    assert str(path) in msg and "journal directory" in msg, msg
    assert path.read_text() == "not a directory"


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory an unprivileged user can reach (pytest's tmp_path sits under a 0o700 directory of root)."""
    d = Path(tempfile.mkdtemp(prefix="sendcore-faults-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def open_unprivileged(directory: Path) -> dict[str, Any]:
    """Start an engine on ``directory`` as uid 65534 in a child; its JSON answer."""
    proc = subprocess.run([sys.executable, CHILD, "open-as-nobody", str(directory)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, cwd="/")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    return json.loads(lines[-1])


def test_read_only_journal_directory_and_parent(run: Any, tmp_path: Path, shared_tmp: Path) -> None:
    """R22, unwritable directory: a journal directory with mode 0o500, and a journal path whose parent has
    mode 0o500: JournalError at start naming the path.

    Tests run as root, and root ignores permission bits (``os.access`` says
    yes and writes succeed), so as root the engine runs in a child process
    that first drops to uid/gid 65534 (nobody), on directories owned by
    nobody with mode 0o500; as another user, the directories are made here.
    """
    ro = shared_tmp / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        os.chown(ro, 65534, 65534)
    ro.chmod(0o500)
    for path, expect in [(ro, "the journal directory is not writable"),
                         (ro / "journal", "cannot create the journal directory")]:
        if os.geteuid() == 0:
            answer = open_unprivileged(path)
            assert answer["type"] == "JournalError", answer
            msg = answer["error"]
        else:
            msg = str(run(start_fails(path)))
        assert str(path) in msg and expect in msg and "permissions" in msg, msg
    assert list(ro.iterdir()) == []


# ---------------------------------------------------------------------- 6. disk full


def run_disk_full(directory: Path, loop: str, journal: dict[str, Any]) -> list[dict[str, Any]]:
    env = dict(os.environ, FAULT_JOURNAL=json.dumps(journal), FAULT_LIMIT="65536", FAULT_DEGRADED="1.5",
               FAULT_HEAL="4")
    # stdout and stderr are pipes: RLIMIT_FSIZE applies to regular files only, so the child can always report.
    proc = subprocess.run([sys.executable, CHILD, "diskfull", str(directory), loop], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=90, env=env)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and events and events[-1]["event"] == "closed", \
        (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return events


@pytest.mark.parametrize("loop,journal", [("asyncio", {}), ("uvloop", {"snapshot_interval": "1s"})],
                         ids=["default-settings-asyncio", "snapshot-interval-1s-uvloop"])
# Not the ``run`` fixture: the child process runs one loop per case (each case takes a few seconds).
def test_disk_full_degrades_keeps_dispatching_and_heals(tmp_path: Path, loop: str,
                                                        journal: dict[str, Any]) -> None:
    """R22, disk full (``journal.py``, "Disk faults"): in a child process with RLIMIT_FSIZE (SIGXFSZ ignored,
    so writes past the limit fail with EFBIG) and the engine on the wall clock:

    * submits are acknowledged until one raises ``JournalError``; that one
      accepted nothing (none of its ids known after a restart), every earlier
      acknowledged id is known;
    * while the disk stays full (soft limit 0: the journal's snapshot retry
      cannot write either), submits are refused with a ``JournalError`` that
      names the directory and says why, and the provider keeps getting sends
      accepted before the failure;
    * once there is room again (soft limit back to the hard limit), submits
      are accepted within a few seconds (the journal retries a snapshot each
      second);
    * a restart on the directory has every acknowledged id, pending or with
      an outcome, and none of the refused ones; the failed write left no
      torn tail (the writer cut its partial group out).

    Run with the default ``[journal]`` settings (asyncio) and with
    ``snapshot_interval = "1s"`` (uvloop).
    """
    directory = tmp_path / "j"
    events = run_disk_full(directory, loop, journal)
    by = {}
    for e in events:
        by.setdefault(e["event"], []).append(e)
    acked_before = [i for e in events[: events.index(by["failed"][0])] if e["event"] == "acked" for i in e["ids"]]
    failed = by["failed"][0]
    assert len(acked_before) >= 100, "the limit was hit too early to test anything"
    assert str(directory) in failed["error"] and "File too large" in failed["error"], failed["error"]
    refused = by.get("refused", [])
    assert len(refused) >= 5 and not by.get("acked_while_full"), [e["event"] for e in events]
    for e in refused:
        msg = e["error"]
        assert str(directory) in msg and "cannot write" in msg and "refused" in msg, msg
        assert e["degraded"] == msg
    calls = by["calls"][0]
    failed_at, raised_at = calls["failed_at"], calls["raised_at"]
    while_full = [ids for t, ids in calls["calls"] if failed_at < t < raised_at]
    assert while_full, "the provider got nothing while the journal was degraded"
    assert {i for ids in while_full for i in ids} <= set(acked_before)
    never = list(failed["ids"]) + [i for e in refused + by.get("refused_after_raise", []) for i in e["ids"]]
    acked_all = [i for e in by.get("acked", []) for i in e["ids"]]

    # A restart has every acknowledged id and none of the refused ones.
    async def main() -> dict[str, Any]:
        engine = Engine(journal_fault_child.settings(str(directory), segment_bytes=64 * 1024 * 1024, **journal),
                        plugins=[ProvidersPlugin(journal_fault_child.Log())], load_entrypoints=False)
        async with engine:
            lost = [i for i in acked_all if not known(engine, i)]
            ghosts = [i for i in never if known(engine, i)]
            return {"lost": lost, "ghosts": ghosts, "recovery": engine.journal.recovery}

    if loop == "uvloop":
        import uvloop

        after = uvloop.run(main())
    else:
        after = asyncio.run(main())
    assert after["lost"] == [], f"acknowledged ids lost after the restart: {after['lost'][:10]}"
    assert after["ghosts"] == [], f"ids of refused submits known after the restart: {after['ghosts'][:10]}"
    assert after["recovery"]["torn"] == [], after["recovery"]

    healed = by.get("healed") or by.get("not_healed")
    assert by.get("healed"), (
        f"submits still refused {healed[0]['seconds']:.1f}s after the disk had room again "
        f"(journal.degraded = {healed[0]['degraded']!r}); the journal promises a snapshot retry every second")
    assert healed[0]["seconds"] < 3.0
    assert calls["snapshots"] >= 1
    assert len(acked_all) > len(acked_before)  # submits acknowledged after the heal, durable (checked above)


# ---------------------------------------------------------------------- 7. format and damaged snapshots


async def build_with_snapshot(directory: Path) -> tuple[Path, Path]:
    """A journal with one snapshot (of s0..s3) and a segment after it (s4, s5); (snapshot, segment)."""
    engine = journal_engine(directory)
    async with engine:
        await engine.submit([later(0), later(1)])
        await engine.submit([later(2), later(3)])
        await wait_snapshot(engine)
        await engine.submit([later(4), later(5)])
    (_, snap), = files.snapshot_files(directory)
    return snap, last_segment(directory)


def patch_format(path: Path, version: int) -> None:
    data = bytearray(path.read_bytes())
    data[16:20] = version.to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("which", ["snapshot", "segment"])
def test_file_written_by_a_newer_format(run: Any, tmp_path: Path, which: str) -> None:
    """R22, newer format: a snapshot or segment of format FORMAT + 1: JournalError saying a newer sendcore wrote it."""
    directory = tmp_path / "j"
    snap, seg = run(build_with_snapshot(directory))
    target = snap if which == "snapshot" else seg
    patch_format(target, FORMAT + 1)
    msg = str(run(start_fails(directory)))
    assert str(target) in msg and "newer sendcore" in msg and f"format {FORMAT + 1}" in msg, msg
    assert "upgrade" in msg


@pytest.mark.parametrize("where", ["payload-middle", "payload-last", "cut-short", "header"])
def test_damaged_snapshot_stops_start_up(run: Any, tmp_path: Path, where: str) -> None:
    """R22, damaged snapshot: a flipped byte in its payload or header, or its payload cut short: JournalError."""
    directory = tmp_path / "j"
    snap, _ = run(build_with_snapshot(directory))
    data = snap.read_bytes()
    header, _ = files.read_snapshot(snap)
    payload_at = len(data) - header.payload_bytes
    if where == "payload-middle":
        flip(snap, payload_at + header.payload_bytes // 2, 0x04)
    elif where == "payload-last":
        flip(snap, len(data) - 1, 0x80)
    elif where == "cut-short":
        snap.write_bytes(data[:-7])
    else:
        flip(snap, len(SEGMENT_MAGIC) + 8 + 2, 0x01)  # inside the MessagePack header
    msg = str(run(start_fails(directory)))
    assert str(snap) in msg and "damaged" in msg, msg
    if where != "header":
        assert "restore it from a backup" in msg, msg


# ---------------------------------------------------------------------- 9. clean restart


def test_clean_restart_replays_only_the_frames_after_the_newest_snapshot(run: Any, tmp_path: Path) -> None:
    """R22, restart: after ``close()``, recovery loads the newest snapshot and replays only the frames after it.

    Two snapshots are taken (the older one and the segments it covered are
    deleted); the restart names the newest snapshot, replays exactly the
    frames in the segments left, and has every send.
    """
    directory = tmp_path / "j"

    async def first() -> tuple[int, int]:
        engine = journal_engine(directory)
        async with engine:
            for c in range(4):
                await engine.submit([later(c * 3 + k) for k in range(3)])
            await wait_snapshot(engine, 1)
            await engine.submit([later(20), later(21)])
            await wait_snapshot(engine, 2)
            await engine.submit([later(22), later(23)])
            await engine.submit([later(24)])
            written = engine.journal.frames
            pending = engine.pending
        return written, pending

    written, pending = run(first())
    (snap_next, snap), = files.snapshot_files(directory)
    segs = files.segment_files(directory)
    assert all(n >= snap_next for n, _ in segs), (snap.name, segs)
    tail = sum(len(scan_segment(p).frames) for _, p in segs)
    header, _ = files.read_snapshot(snap, payload=False)
    assert 0 < tail < written
    assert scan_segment(segs[0][1]).header.first_seq == header.last_seq + 1

    async def second() -> None:
        engine = journal_engine(directory)
        async with engine:
            rec = engine.journal.recovery
            assert rec["snapshot"] == snap.name, rec
            assert rec["frames"] == tail, (rec, tail)
            assert rec["torn"] == []
            assert engine.pending == pending == 17
            assert all(known(engine, f"s{i}") for i in [*range(12), 20, 21, 22, 23, 24])

    run(second())


@pytest.mark.parametrize("into", [10, 20, 30])
def test_partly_written_frame_followed_by_zeros_is_torn(run: Any, tmp_path: Path, into: int) -> None:
    """R22, torn write: a frame written only in part, the rest of the extended file zeros: truncated, not corrupt."""
    base = tmp_path / "j"
    ids = run(build_journal(base))
    seg = last_segment(base)
    from sendcore.journal.frames import Submit, decode_frame

    offset = [o for o, _, payload in scan_segment(seg).frames if type(decode_frame(payload)) is Submit][-1]
    data = bytearray(seg.read_bytes())
    data[offset + into:] = bytes(len(data) - offset - into + 64)
    seg.write_bytes(bytes(data))

    async def main() -> None:
        async with journal_engine(base) as engine:
            torn = engine.journal.recovery["torn"]
            assert len(torn) == 1 and f"at offset {offset}" in torn[0], torn
            assert all(known(engine, i) for i in ids[:-2]) and not any(known(engine, i) for i in ids[-2:])

    run(main())
    assert seg.stat().st_size == offset  # cut back to where the partly written frame began


def test_a_send_the_journal_cannot_store_is_rejected_naming_the_field(run: Any, tmp_path: Path) -> None:
    """R23 with the journal: a lone surrogate in the id, or metadata msgpack cannot hold, rejects that item only."""

    class Opaque:
        pass

    async def main() -> None:
        async with journal_engine(tmp_path / "j") as engine:
            report = await engine.submit([later(0), later(1, id="x\ud800"), later(2, metadata={"k": Opaque()}),
                                          later(3)])
            assert report.accepted_ids == ["s0", "s3"]
            reasons = {r.index: r.reason for r in report.rejected}
            # The core's intake refuses both before the journal would have to (issue 8, row 1).
            assert reasons[1].startswith("id: contains a lone surrogate"), reasons
            assert reasons[2].startswith("metadata: must be JSON-like values"), reasons
        async with journal_engine(tmp_path / "j") as engine:
            assert engine.pending == 2 and known(engine, "s0") and known(engine, "s3")

    run(main())
