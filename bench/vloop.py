"""A virtual-time asyncio event loop, so asyncio-based peers run the same simulated day as the core.

``VirtualTimeLoop`` is asyncio's own pure-Python selector loop with two
changes: ``time()`` returns a virtual clock, and the selector, instead of
sleeping for the timeout the loop asks for, moves that clock straight to the
earliest timer (it still polls real file descriptors, without waiting). All
of asyncio's machinery (the timer heap, ``call_later``, futures, tasks) runs
unchanged, so a peer written against the normal asyncio API, and libraries
that read ``loop.time()`` (aiolimiter), pay their real CPU cost while a
simulated day passes in seconds.

The clock starts at 0 (``loop.time()`` stays small, so timer arithmetic is
exact to the nanosecond); ``epoch()`` adds the simulated start instant.
uvloop keeps its clock in C and cannot be virtualised this way: peers on
virtual time run on asyncio's loop only.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

__all__ = ["MIN_STEP", "VirtualTimeLoop", "run_virtual"]

#: Virtual time a loop iteration takes when only already-due timers are left
#: (a real loop iteration takes about this long).
MIN_STEP = 1e-6


class _JumpingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Polls without blocking and moves the loop's virtual clock over the time it was asked to wait."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> Any:
        loop = self.loop
        assert loop is not None
        if timeout is None:
            # Nothing ready and no timer: on a real loop this would wait for I/O
            # forever. Nothing here does I/O, so it is a deadlock of the peer.
            raise RuntimeError("virtual-time loop: nothing is scheduled and nothing is ready (deadlock)")
        if timeout == 0 and not loop._ready and not loop._stopping:  # type: ignore[attr-defined]
            # Only timers due "now" remain. On a real clock time moves while
            # the loop runs; here it must be moved, or a library that re-arms
            # a timer for a rounding residue (aiolimiter's ``needed`` of
            # 1e-16 units) would fire at the same instant forever.
            loop._now += MIN_STEP
        elif timeout > 0:
            scheduled = loop._scheduled  # type: ignore[attr-defined]
            # Jump exactly to the head timer so it is due (adding the timeout
            # could land a rounding hair before it).
            target = loop._now + timeout
            if scheduled and scheduled[0]._when <= target:
                target = scheduled[0]._when
            if target > loop._now:
                loop._now = target
        return super().select(0)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop on a virtual clock that jumps from timer to timer.

    ``epoch()`` is the simulated wall clock: ``start`` plus the virtual time
    elapsed. Runtime cost per timer is asyncio's own (a heap push and pop).
    """

    def __init__(self, start: float = 0.0) -> None:
        selector = _JumpingSelector()
        self._now = 0.0
        self.start = start
        super().__init__(selector)
        selector.loop = self

    def time(self) -> float:
        """Virtual seconds since the loop was created."""
        return self._now

    def epoch(self) -> float:
        """The simulated wall clock, in epoch seconds."""
        return self.start + self._now


def run_virtual(main: Any, start: float = 0.0) -> Any:
    """Run coroutine ``main`` to completion on a fresh ``VirtualTimeLoop``; return its result."""
    loop = VirtualTimeLoop(start)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main if not callable(main) else main(loop))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
