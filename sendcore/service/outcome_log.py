"""The outcome log: every outcome the engine emits, numbered, in append-only files that survive SIGKILL.

``GET /v1/outcomes?after=N`` serves the lines of ``<state_dir>/outcomes-*.ndjson``
(segments named by their first seq) whose ``seq`` is above ``N``. Three
rules make that cursor exact across crashes (docs/service.md, "The outcome
cursor"):

1. **Only durable state is logged.** Outcomes are taken from
   ``engine.outcomes()`` in chunks; before a chunk is written the recorder
   awaits ``engine.submit([])``, an empty submit, which returns once the
   journal has fsynced its frame and so every frame before it, among them
   the frames whose application produced the chunk. A logged outcome can
   therefore never be undone by a restart.
2. **Only fsynced lines are served.** A chunk is written with one
   ``write`` and ``fdatasync``-ed before readers see it; ``seq`` is the line
   number, so a line shown to a consumer keeps its number forever.
3. **What the log missed is appended at start.** Outcomes the engine
   journaled but the log had not written when the process died are final
   outcomes still held in the recovered core (``Ledger.finished_order``,
   in the order they happened). At start the log finds its last logged
   final outcome there and appends every final outcome after it, before
   anything new.

Worked example: seq 1-40 are logged, then sends a, b, c end ``sent`` and
the process is killed after the journal fsynced their record frame but
before the log wrote them. At start the last logged final outcome is seq 40
(send z); the recovered ledger's finished order ends ``... z a b c``, so a, b,
c are appended as 41-43. A consumer at cursor 40 gets 41-43 once; one at 43
gets nothing again.

Events that are not final (``deferred``, ``retrying``, ``delivered``,
``undelivered``) are not kept by the core, so the few emitted in the last
moments before a SIGKILL (at most one recorder cycle, a few milliseconds)
may be missing; final outcomes never are.

Index: a segment's ``marks[k]`` is the byte offset of its line
``first + k * 1024``, so finding a cursor is a bisection over the segments'
first seqs and at most 1,023 lines read past a mark. Opening scans the
active segment once, O(its lines); an older segment is indexed the first
time a reader needs it; appends and reads are O(bytes moved). Segments
rotate at ``[service] outcome_segment_bytes`` and are deleted once older
than ``outcome_retention``.
"""

from __future__ import annotations

import asyncio
import bisect
import fcntl
import logging
import os
from collections import deque
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Union

import msgspec

from ..errors import JournalError
from ..journal.files import fsync_dir
from ..send import Outcome

__all__ = ["CursorExpired", "OutcomeLog", "OutcomeRecorder"]

log = logging.getLogger("sendcore.service")

_MARK_EVERY = 1024
_FINAL_MARKS = (b'"status":"sent"', b'"status":"skipped"', b'"status":"failed"', b'"status":"cancelled"')
_FINAL = frozenset({"sent", "skipped", "failed", "cancelled"})


class _Key(msgspec.Struct):
    send_id: str
    status: str
    at: float


_decode_key = msgspec.json.Decoder(_Key).decode
_encode = msgspec.json.Encoder().encode


class CursorExpired(Exception):
    """A cursor older than the oldest outcome kept (segments past ``outcome_retention`` are deleted)."""

    def __init__(self, after: int, oldest: int) -> None:
        super().__init__(f"after: outcomes up to seq {oldest - 1} are no longer kept (outcome_retention); "
                         f"the oldest kept is {oldest}: resume from after={oldest - 1}")
        self.oldest = oldest


class _Segment:
    """One file of the log: the lines ``first`` .. ``first + count - 1``."""

    __slots__ = ("path", "first", "count", "size", "marks", "fd")

    def __init__(self, path: Path, first: int) -> None:
        self.path = path
        self.first = first
        self.count = 0
        self.size = 0
        self.marks: Union[list[int], None] = None  # offsets of lines first + k*1024; None until indexed
        self.fd = -1

    def scan(self) -> int:
        """Index the file (marks, count, size of its whole lines); the offset of its last final line, or -1."""
        marks: list[int] = []
        count = offset = 0
        last_final = -1
        with open(self.path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # a write cut by a crash: never fsynced, so never served
                if count % _MARK_EVERY == 0:
                    marks.append(offset)
                count += 1
                if any(m in line for m in _FINAL_MARKS):
                    last_final = offset
                offset += len(line)
        self.marks, self.count, self.size = marks, count, offset
        return last_final

    def reader(self) -> int:
        """A read-only descriptor of the segment file, opened on first use and kept."""
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDONLY)
        return self.fd

    def close(self) -> None:
        """Close the read descriptor, if open."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _segment_name(first: int) -> str:
    return f"outcomes-{first:020d}.ndjson"


class OutcomeLog:
    """The append-only, segmented file of numbered outcomes; see the module docstring for its guarantees.

    Segments (``outcomes-<first seq>.ndjson``) rotate at ``segment_bytes``;
    the oldest is deleted once the segment after it begins more than
    ``retention`` seconds ago (so all its outcomes are older; never the
    active one), and a cursor before the oldest kept line is refused with
    ``CursorExpired``. Opening scans the
    active segment only; an older one is indexed the first time a reader
    needs it.
    """

    def __init__(self, directory: Union[str, Path], *, segment_bytes: int = 64 * 1024 * 1024,
                 retention: float = 7 * 86400.0) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.retention = retention
        self._segments: list[_Segment] = []
        self._lock_fd = -1
        self._fd = -1  # the active segment, for appends
        self._seq = 0  # last seq written
        self.visible_seq = 0  # last seq fsynced: what readers may see
        self._visible: tuple[Union[_Segment, None], int] = (None, 0)  # the active segment and its bytes readers see
        self._last_final: Union[_Key, None] = None
        self._changed = asyncio.Event()
        self._closed = False

    @property
    def path(self) -> Path:
        """The active segment's file."""
        return self._segments[-1].path

    # ---------------------------------------------------------------- opening

    def open(self) -> None:
        """Lock the directory, cut a torn last line, index the active segment, find the last final outcome. Blocking."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = self.directory / "outcomes.lock"
        self._lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            # Two services appending to one log would interleave their seqs: one state_dir, one service.
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise JournalError(f"{lock}: the outcome log is in use by another service; give each service "
                               "its own [service] state_dir") from None
        firsts = sorted(int(p.name[9:-7]) for p in self.directory.glob("outcomes-*.ndjson")
                        if p.name[9:-7].isdigit())
        self._segments = [_Segment(self.directory / _segment_name(f), f) for f in firsts]
        for seg, nxt in zip(self._segments, self._segments[1:]):
            seg.count = nxt.first - seg.first
            seg.size = seg.path.stat().st_size
        if not self._segments:
            self._segments.append(_Segment(self.directory / _segment_name(1), 1))
        active = self._segments[-1]
        self._fd = os.open(active.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        fsync_dir(self.directory)
        size = os.fstat(self._fd).st_size
        last_final = active.scan()
        if active.size != size:
            log.warning("%s: a torn last line of %d bytes was cut (a crash during a write)", active.path,
                        size - active.size)
            os.ftruncate(self._fd, active.size)
            os.fsync(self._fd)
        seg_index = len(self._segments) - 1
        while last_final < 0 and seg_index > 0:  # the active segment holds no final outcome: look further back
            seg_index -= 1
            last_final = self._segments[seg_index].scan()
        if last_final >= 0:
            fd = self._segments[seg_index].reader()
            self._last_final = _decode_key(os.pread(fd, 1 << 20, last_final).split(b"\n", 1)[0])
        self._seq = active.first + active.count - 1
        self.visible_seq, self._visible = self._seq, (active, active.size)

    @property
    def last_seq(self) -> int:
        """The highest seq written (and, after ``append`` returned, fsynced)."""
        return self._seq

    @property
    def oldest_seq(self) -> int:
        """The oldest seq kept (1 until retention deletes a segment)."""
        return self._segments[0].first if self._segments else 1

    def missed(self, ledger: Any) -> list[Outcome]:
        """Final outcomes the recovered core holds that the log has not: those after its last logged final one.

        ``ledger`` is the core's ``Ledger`` (``finished`` and ``finished_order``,
        in the order the sends finished). O(outcomes missed).
        """
        finished, order = ledger.finished, ledger.finished_order
        last = self._last_final
        out: list[Outcome] = []
        seen: set[str] = set()
        for sid in reversed(order):
            o = finished.get(sid)
            if o is None or sid in seen:
                continue  # expired, or an id finished again after a resubmit (its newest outcome counts)
            if last is not None:
                # Finish times never go back (the core's clock is monotonic), so an outcome older than
                # the last logged one was logged; one of the same instant is told apart by its identity.
                if o.at < last.at or (sid == last.send_id and o.status.value == last.status and o.at == last.at):
                    break
            seen.add(sid)
            out.append(o)
        out.reverse()
        return out

    # ---------------------------------------------------------------- writing

    def _rotate(self) -> None:
        """Start a new segment after the active one. Blocking (runs with the write, off the loop)."""
        os.fsync(self._fd)
        os.close(self._fd)
        seg = _Segment(self.directory / _segment_name(self._seq + 1), self._seq + 1)
        seg.marks = []
        self._fd = os.open(seg.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        fsync_dir(self.directory)
        # A new list, not an append: a reader on the loop thread keeps the list it took, whole.
        self._segments = [*self._segments, seg]

    def _expire(self, now: float) -> None:
        """Delete the oldest segments past retention. On the loop thread, so no read has their file open."""
        removed = False
        while len(self._segments) > 1:
            # The oldest segment goes once the next one begins before the retention horizon: finish
            # times never go back, so every line of the oldest is older still.
            first_next = self._first_at(self._segments[1])
            if first_next is None or first_next > now - self.retention:
                break
            old = self._segments.pop(0)
            old.close()
            try:
                old.path.unlink()
            except FileNotFoundError:
                pass
            removed = True
        if removed:
            fsync_dir(self.directory)

    def _first_at(self, seg: _Segment) -> Union[float, None]:
        """The ``at`` of the segment's first line (None when it has none)."""
        line = os.pread(seg.reader(), 1 << 16, 0).split(b"\n", 1)[0]
        try:
            return _decode_key(line).at
        except msgspec.MsgspecError:
            return None

    def _write(self, outcomes: Iterable[Outcome]) -> tuple[int, _Segment, int, bool]:
        """Encode and write the lines, fdatasync them; (last seq, active segment, its size, rotated). Blocking."""
        active = self._segments[-1]
        rotated = active.size >= self.segment_bytes and active.count > 0
        if rotated:
            self._rotate()
            active = self._segments[-1]
        parts: list[bytes] = []
        seq, offset, marks, count = self._seq, active.size, active.marks, active.count
        assert marks is not None
        last_final = None
        for o in outcomes:
            body = _encode(o)
            line = b'{"seq":%d,%s\n' % (seq + 1, body[1:])
            if count % _MARK_EVERY == 0:
                marks.append(offset)
            seq += 1
            count += 1
            offset += len(line)
            parts.append(line)
            if o.status.value in _FINAL:
                last_final = o
        data = b"".join(parts)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fdatasync(self._fd)
        active.count, active.size = count, offset
        if last_final is not None:
            self._last_final = _Key(last_final.send_id, last_final.status.value, last_final.at)
        return seq, active, offset, rotated

    async def append(self, outcomes: list[Outcome]) -> None:
        """Write ``outcomes`` with the next seqs, fsync them, then show them to readers."""
        if not outcomes:
            return
        seq, active, size, rotated = await asyncio.get_running_loop().run_in_executor(None, self._write, outcomes)
        self._seq = seq
        self.visible_seq, self._visible = seq, (active, size)
        if rotated:
            self._expire(outcomes[-1].at)
        self._changed.set()
        self._changed = asyncio.Event()

    def close(self) -> None:
        """Close the files and wake every reader (a following stream ends)."""
        self._closed = True
        self._changed.set()
        for seg in self._segments:
            seg.close()
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._lock_fd = -1

    # ---------------------------------------------------------------- reading

    def read(self, after: int, max_bytes: int = 1 << 20) -> tuple[bytes, int]:
        """Whole lines with seq above ``after``, about ``max_bytes`` at most, from one segment; (lines, last seq).

        Returns (b"", after) when nothing visible lies past the cursor; raises
        ``CursorExpired`` for a cursor before the oldest kept line.
        """
        if after >= self.visible_seq or self._closed:
            return b"", after
        segments = self._segments
        if after + 1 < segments[0].first:
            raise CursorExpired(after, segments[0].first)
        k = bisect.bisect_right([s.first for s in segments], after + 1) - 1
        seg = segments[k]
        visible, visible_bytes = self._visible
        end = visible_bytes if seg is visible else seg.size
        if seg.marks is None:
            seg.scan()
            end = seg.size if seg is not visible else visible_bytes
        marks = seg.marks
        assert marks is not None
        fd = seg.reader()
        m = min((after + 1 - seg.first) // _MARK_EVERY, len(marks) - 1)
        offset, seq = marks[m], seg.first + m * _MARK_EVERY
        # Skip from the mark to the cursor, line by line.
        while seq <= after:
            chunk = os.pread(fd, min(1 << 20, end - offset), offset)
            if not chunk:
                return b"", after
            pos = 0
            while seq <= after:
                nl = chunk.find(b"\n", pos)
                if nl < 0:
                    break
                pos = nl + 1
                seq += 1
            offset += pos
        want = min(max_bytes, end - offset)
        if want <= 0:
            return b"", after
        data = os.pread(fd, want, offset)
        if offset + len(data) < end:
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than max_bytes: take it whole
                data = os.pread(fd, end - offset, offset)
                cut = data.find(b"\n") + 1
            data = data[:cut]
        return data, seq - 1 + data.count(b"\n")

    async def follow(self, after: int, *, limit: Union[int, None] = None, wait: bool = True,
                     stop: Union[asyncio.Event, None] = None) -> AsyncIterator[bytes]:
        """Chunks of whole lines past ``after`` as they become visible; ends at ``limit`` lines, or when
        caught up if not ``wait``, or when ``stop`` is set or the log closes."""
        left = limit
        while True:
            data, last = self.read(after)
            if data:
                if left is not None and last - after > left:
                    lines = data.split(b"\n")[:left]
                    data, last = b"\n".join(lines) + b"\n", after + left
                yield data
                if left is not None:
                    left -= last - after
                    if left <= 0:
                        return
                after = last
                continue
            if not wait or self._closed or (stop is not None and stop.is_set()):
                return
            changed = self._changed
            waiters = [asyncio.ensure_future(changed.wait())]
            if stop is not None:
                waiters.append(asyncio.ensure_future(stop.wait()))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()


class OutcomeRecorder:
    """Moves the engine's outcomes into the log, durable state only (rule 1 of the module docstring).

    Also keeps what the status page shows: sent outcomes per channel over
    the last minute and the latest outcomes.
    """

    def __init__(self, engine: Any, outcome_log: OutcomeLog) -> None:
        self.engine = engine
        self.log = outcome_log
        self.stream = engine.outcomes()  # before start: sees the outcomes of recovery too
        self.latest: deque[Outcome] = deque(maxlen=20)
        self._per_second: deque[tuple[int, dict[str, int]]] = deque()
        self._skip: set[tuple[str, float]] = set()
        self._task: Union[asyncio.Task[None], None] = None
        self.observers: list[Any] = []

    async def reconcile(self) -> int:
        """Append the final outcomes the log missed (rule 3); call right after ``engine.start()``."""
        missed = self.log.missed(self.engine.core.ledger)
        if missed:
            # Outcomes that start itself emitted are in the stream too: write them once.
            self._skip = {(o.send_id, o.at) for o in missed}
            await self.log.append(missed)
            log.info("outcome log: %d outcomes recovered from the journal", len(missed),
                     extra={"recovered": len(missed)})
        return len(missed)

    def start(self) -> None:
        """Start moving outcomes (a task on the running loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sendcore-outcome-log")

    async def wait_closed(self) -> None:
        """Wait until the stream ended (the engine closed) and every outcome is written."""
        if self._task is not None:
            await self._task

    def per_minute(self, now: float) -> dict[str, int]:
        """Sends that ended ``sent`` in the last 60 seconds, by channel."""
        cutoff = int(now) - 60
        out: dict[str, int] = {}
        for second, counts in self._per_second:
            if second > cutoff:
                for ch, n in counts.items():
                    out[ch] = out.get(ch, 0) + n
        return out

    def _note(self, chunk: list[Outcome]) -> None:
        per = self._per_second
        for o in chunk:
            if o.status.value == "sent":
                second = int(o.at)
                if not per or per[-1][0] != second:
                    per.append((second, {}))
                counts = per[-1][1]
                counts[o.channel] = counts.get(o.channel, 0) + 1
        if chunk:
            self.latest.extend(chunk[-20:])
            cutoff = int(chunk[-1].at) - 61
            while per and per[0][0] < cutoff:
                per.popleft()
        for observe in self.observers:
            observe(chunk)

    async def _take(self) -> Union[list[Outcome], None]:
        """The next chunk of outcomes (waits for the first), or None when the stream ended."""
        stream = self.stream
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            return None
        chunk = [first]
        for _ in range(stream.buffered()):
            chunk.append(await stream.__anext__())
        return chunk

    async def _run(self) -> None:
        from ..errors import JournalError, PendingLimitError

        engine = self.engine
        while True:
            chunk = await self._take()
            if chunk is None:
                return
            if self._skip:
                chunk = [o for o in chunk if (o.send_id, o.at) not in self._skip]
                self._skip = set()
            while True:
                try:
                    await engine.submit([])  # the durability barrier (rule 1)
                    break
                except (RuntimeError, PendingLimitError):
                    # Closing (or failed): the journal is fsynced when close ends, and the stream with it.
                    rest = [o async for o in self.stream]
                    chunk.extend(rest)
                    break
                except JournalError as exc:
                    log.error("outcome log: the journal cannot confirm durability (%s); retrying", exc)
                    await asyncio.sleep(0.5)
            self._note(chunk)
            await self.log.append(chunk)
