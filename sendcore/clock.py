"""The wall clock the engine runs on by default, and timers that work on any clock.

The engine needs three things of a clock: ``now()`` in epoch seconds, ``await
sleep(seconds)``, and "call this at instant t" so that it can wait for either
the core's next wake-up or new work without polling. ``RealClock`` and
``sendcore.testing.VirtualClock`` provide ``call_at`` themselves; for any other
object with ``now``/``sleep`` (the ``sendcore.provider.Clock`` protocol),
``call_at`` below falls back to a task that sleeps on that clock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Protocol

__all__ = ["Cancellable", "RealClock", "call_at"]


class Cancellable(Protocol):
    """A scheduled callback that can be called off (``asyncio.TimerHandle``, a task, a virtual timer)."""

    def cancel(self) -> Any:
        """Call the callback off; a no-op if it already ran."""
        ...


class RealClock:
    """Wall-clock time: ``time.time()`` and the event loop's timers.

    The loop's timers run on the monotonic clock, so an instant is converted to
    a delay when it is scheduled; a wall-clock step (NTP) after that shifts a
    timer by the step, and the engine, which re-reads ``now()`` whenever it
    wakes, never acts early because of it: the core refuses work not yet due.
    """

    def now(self) -> float:
        """Current time in epoch seconds."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of wall-clock time (a non-positive value just yields)."""
        await asyncio.sleep(seconds if seconds > 0 else 0)

    def call_at(self, when: float, callback: Callable[[], Any]) -> asyncio.TimerHandle:
        """Run ``callback()`` on the running loop at epoch instant ``when`` (at once if past)."""
        loop = asyncio.get_running_loop()
        delay = when - time.time()
        return loop.call_later(delay if delay > 0 else 0, callback)

    def __repr__(self) -> str:
        return "RealClock()"


def call_at(clock: Any, when: float, callback: Callable[[], Any]) -> Cancellable:
    """Run ``callback()`` when ``clock`` reaches ``when``; works with any ``now``/``sleep`` clock.

    Uses the clock's own ``call_at`` when it has one (one timer, no task);
    otherwise a task that sleeps on the clock.
    """
    own = getattr(clock, "call_at", None)
    if own is not None:
        return own(when, callback)

    async def fire() -> None:
        await clock.sleep(when - clock.now())
        callback()

    return asyncio.get_running_loop().create_task(fire())
