"""The journal's writer thread: appends frames to the current segment and fsyncs, off the event loop.

The event loop hands it items in order (``put``); it takes everything queued
at once, writes it with one ``write`` and, in ``batch`` mode, one
``fdatasync`` when the group holds a frame someone waits on (group commit:
concurrent submits share the fsync). ``always`` fsyncs each such frame on its
own; ``interval`` counts a frame done once written and fsyncs every
``interval`` seconds. In every mode, frames nobody waits on (advance,
record) are fsynced at most ``interval`` after they were written. Progress goes back to the loop through ``notify``
(called from this thread; the journal wraps ``call_soon_threadsafe``).

A failed write (disk full, I/O error, file too large) truncates the segment
back to where the group began, fails every item of the group and every frame
after it until the next rotation: the journal never holds a frame after a gap.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Union

from .files import fsync_dir

__all__ = ["Item", "Writer"]

# Item kinds
FRAME, ROTATE, SYNC, STOP = 0, 1, 2, 3

#: (kind, ticket, bytes, durable): a frame's bytes, or a new segment's path and prefix.
Item = tuple[int, int, Union[bytes, tuple[Path, bytes], None], bool]


class Writer(threading.Thread):
    """Writes journal items in order on its own thread; see the module docstring."""

    def __init__(self, fd: int, directory: Path, mode: str, interval: float,
                 notify: Callable[[], None]) -> None:
        super().__init__(name="sendcore-journal", daemon=True)
        self.fd = fd
        self.directory = directory
        self.mode = mode
        self.interval = interval
        self._notify = notify
        self._cond = threading.Condition()
        self._items: list[Item] = []
        #: Highest ticket whose item is done (written, and fsynced as the mode asks).
        self.done = 0
        #: Tickets that failed, with the error, not yet collected by the journal.
        self.failed: list[tuple[int, OSError]] = []
        self.error: Optional[OSError] = None
        self.fsyncs = 0
        self.bytes = 0
        self.fsync_seconds = 0.0
        self._dirty = False
        self._last_sync = time.monotonic()
        self._first = 0.0
        self._urgent = False

    def put(self, item: Item) -> None:
        """Queue ``item`` (called on the loop thread).

        An item someone waits on (a durable frame, a rotation, a sync, the
        stop) is written at once; other frames wait for one, or at most
        ``interval`` after the first of them, so the thread wakes twice per
        group, not once per frame.
        """
        with self._cond:
            first = not self._items
            if first:
                self._first = time.monotonic()
            self._items.append(item)
            if item[3] or item[0] != FRAME:
                self._urgent = True
                self._cond.notify()
            elif first:
                self._cond.notify()  # the thread starts its interval timer for this group

    def run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._urgent:
                    if self._items:
                        left = self.interval - (time.monotonic() - self._first)
                    elif self._dirty:
                        left = self.interval - (time.monotonic() - self._last_sync)
                    else:
                        cond.wait()
                        continue
                    if left <= 0:
                        break
                    cond.wait(left)
                items, self._items = self._items, []
                self._urgent = False
            if not items:
                self._sync_quietly()
                continue
            if not self._process(items):
                return

    def _sync_quietly(self) -> None:
        try:
            self._sync()
        except OSError as exc:
            self.error = exc

    def _sync(self) -> None:
        t = time.perf_counter()
        os.fdatasync(self.fd)
        self.fsync_seconds += time.perf_counter() - t
        self.fsyncs += 1
        self._dirty = False
        self._last_sync = time.monotonic()

    def _process(self, items: list[Item]) -> bool:
        """Write one group; return False after the STOP item."""
        buf: list[bytes] = []
        tickets: list[int] = []
        want_sync = False
        keep_going = True
        for kind, ticket, data, durable in items:
            if kind == FRAME:
                if self.error is not None:
                    self.failed.append((ticket, self.error))
                    continue
                buf.append(data)  # type: ignore[arg-type]
                tickets.append(ticket)
                if durable:
                    want_sync = True
                    if self.mode == "always":
                        self._flush(buf, tickets, True)
                        buf, tickets, want_sync = [], [], False
                continue
            # A rotation, a sync or the stop: everything before it first, fsynced.
            self._flush(buf, tickets, self.error is None)
            buf, tickets, want_sync = [], [], False
            if kind == ROTATE:
                self._rotate(ticket, data)  # type: ignore[arg-type]
            elif self.error is None:
                self.done = ticket
            else:
                self.failed.append((ticket, self.error))
            if kind == STOP:
                keep_going = False
                break
        self._flush(buf, tickets, want_sync)
        if keep_going and self._dirty and self.error is None and time.monotonic() - self._last_sync >= self.interval:
            try:  # a steady stream of frames nobody waits on still reaches the disk every interval
                self._sync()
            except OSError as exc:
                self._fail(exc, None)
        if self.failed or any(item[3] or item[0] != FRAME for item in items):
            self._notify()  # someone waits on this group (or must hear of a failure); else the loop sleeps on
        return keep_going

    def _flush(self, buf: list[bytes], tickets: list[int], sync: bool) -> None:
        if self.error is not None:
            self.failed.extend((t, self.error) for t in tickets)
            return
        if buf:
            data = b"".join(buf) if len(buf) > 1 else buf[0]
            start = os.lseek(self.fd, 0, os.SEEK_CUR)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(self.fd, view)
                    view = view[n:]
                self.bytes += len(data)
                self._dirty = True
                if sync and self.mode != "interval":
                    self._sync()
            except OSError as exc:
                self._fail(exc, start)
                self.failed.extend((t, exc) for t in tickets)
                return
        elif sync and self._dirty and self.mode != "interval":
            try:
                self._sync()
            except OSError as exc:
                self._fail(exc, None)
                return
        if tickets:
            self.done = tickets[-1]

    def _fail(self, exc: OSError, start: Optional[int]) -> None:
        self.error = exc
        if start is not None:
            try:  # take the partial group out, so no frame sits after a gap
                os.ftruncate(self.fd, start)
                os.lseek(self.fd, start, os.SEEK_SET)
            except OSError:
                pass

    def _rotate(self, ticket: int, data: tuple[Path, bytes]) -> None:
        """Close the current segment (fsynced) and start the next one with its header."""
        path, prefix = data
        try:
            if self.error is None and self._dirty:
                self._sync()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
            try:
                os.write(fd, prefix)
                os.fdatasync(fd)
                fsync_dir(self.directory)
            except OSError:
                os.close(fd)
                try:
                    os.unlink(path)
                except OSError:
                    pass
                raise
        except OSError as exc:
            self.failed.append((ticket, exc))
            return
        os.close(self.fd)
        self.fd = fd
        self.error = None  # a fresh segment after a snapshot: writing may go on
        self._dirty = False
        self.done = ticket
        self.fsyncs += 1
