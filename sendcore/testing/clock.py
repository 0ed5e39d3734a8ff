"""A virtual clock: time that moves only when told, in jumps, deterministically.

``VirtualClock`` keeps its own timers (a heap of ``(when, seq)``); nothing on it
ever waits real time. ``run_until(t)`` is the driver. It repeats:

1. **settle**: let the event loop run until every task is blocked, i.e. each
   live task is waiting on a future that is not done (a virtual sleep, the
   engine's wake event, a lock, a never-ending future ...) and no task has a
   step scheduled. On asyncio's own loop that is an empty ready queue and no
   loop timer due (one check per pass); on other loops (uvloop) it is checked
   through each task's ``_fut_waiter``, which every asyncio-compatible loop
   keeps;
2. take the earliest timer (ties in the order they were set), move time to its
   instant and fire it, alone;
3. until the earliest timer is later than ``t``; then time becomes ``t``.

Firing one timer at a time and settling in between is what makes a run
deterministic: a provider task sleeping a simulated carrier latency and the
engine's scheduler waking for the core's next due send never race, whatever
loop runs them, and a run of a simulated week gives the same outcomes, in the
same order, every time. Settling costs a loop iteration or two per fired timer.

Real I/O: the engine runs each provider call inside ``calling()``. While a
call is in flight and not sleeping on this clock (it waits on a socket, a
real sleep, anything else), virtual time stands still, so a provider talking
to a real server sees no false timeouts; the engine then measures the call's
timeout on the wall clock as well. A call that sleeps on the clock (simulated
latency, also from tasks it starts) lets time move as usual. Other real work
can hold time with ``hold(future)`` (the journal's fsync does).

Caveat: a task that never blocks (``while True: await asyncio.sleep(0)``) keeps
the loop from settling; real I/O outside a provider call (or ``hold``) is not
waited for.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import math
import weakref
from collections import deque
from datetime import datetime
from typing import Any, Callable, Union

__all__ = ["VirtualClock", "VirtualTimer"]


class VirtualTimer:
    """A callback due at a virtual instant; ``cancel()`` calls it off (lazily removed from the heap)."""

    __slots__ = ("when", "callback", "cancelled", "_handle", "_clock")

    def __init__(self, clock: VirtualClock, when: float, callback: Callable[[], Any]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self._handle: Union[asyncio.Handle, None] = None
        self._clock = clock

    def cancel(self) -> None:
        """Call the timer off; a no-op if it already fired."""
        if self.cancelled:
            return
        self.cancelled = True
        # The timer stays in the heap until its time comes; drop the callback now
        # so it does not keep finished tasks (and their timeout scopes) alive.
        self.callback = None
        if self._handle is not None:
            self._handle.cancel()
            self._clock._soon -= 1
            self._handle = None
        else:
            clock = self._clock
            clock._tombstones += 1
            if clock._tombstones > 1024 and clock._tombstones * 2 > len(clock._timers):
                clock._prune()

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<VirtualTimer at {self.when}{state}>"


def _epoch(value: Union[float, int, datetime], field: str) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{field}: expected epoch seconds or an aware datetime, got {value!r}")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{field}: naive datetime {value.isoformat()} has no timezone; "
                "give an aware datetime (e.g. tzinfo=timezone.utc) or epoch seconds"
            )
        return value.timestamp()
    if isinstance(value, (int, float)):
        if value != value:
            raise ValueError(f"{field}: NaN is not an instant")
        return float(value)
    raise TypeError(f"{field}: expected epoch seconds or an aware datetime, got {type(value).__name__}")


class _Call:
    """One provider call in flight: how many of its waits are sleeps on the clock right now."""

    __slots__ = ("sleeping", "live")

    def __init__(self) -> None:
        self.sleeping = 0
        self.live = True


# The provider call the current task (or the task that started it) belongs to.
_CALL: contextvars.ContextVar[Union[_Call, None]] = contextvars.ContextVar("sendcore_virtual_call", default=None)


def _release(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Calling:
    """The context of ``VirtualClock.calling``: a class, not a generator, as the engine enters one per batch."""

    __slots__ = ("_clock", "_call", "_token")

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock

    def __enter__(self) -> None:
        call = self._call = _Call()
        self._token = _CALL.set(call)
        self._clock._real_calls += 1

    def __exit__(self, *exc: Any) -> None:
        call = self._call
        if call.sleeping == 0:
            self._clock._real_calls -= 1
        call.live = False
        _CALL.reset(self._token)


class VirtualClock:
    """Virtual time for tests and simulations: moves only through ``run_until``/``advance``.

    ``start`` is epoch seconds or an aware datetime (a naive datetime is a
    ``ValueError`` naming ``start``). Pass it to ``Engine(settings, clock=clock)``;
    providers sleep on it through ``context.clock``.

    Example::

        clock = VirtualClock(datetime(2027, 1, 12, 9, tzinfo=timezone.utc))
        async with Engine(settings, clock=clock, plugins=[sandbox]) as engine:
            await engine.submit(sends)
            await engine.run_until(clock.now() + 7 * 86400)   # a week, in seconds
    """

    def __init__(self, start: Union[float, int, datetime] = 0.0) -> None:
        self._now = _epoch(start, "start")
        self._timers: list[tuple[float, int, VirtualTimer]] = []
        self._seq = 0
        self._tombstones = 0
        self._soon = 0  # timers handed to loop.call_soon (due when set) that have not run yet
        self._driving = False
        self._held = 0  # real work (a journal fsync) that time must wait for
        self._real_calls = 0  # provider calls in flight that are not sleeping on this clock

    # The Clock protocol

    def now(self) -> float:
        """Current virtual time in epoch seconds."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Suspend until virtual time reaches ``now() + seconds`` (a non-positive value just yields)."""
        if not seconds > 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_at(self._now + seconds, lambda: _release(fut))
        call = _CALL.get()
        if call is not None and call.live:
            if call.sleeping == 0:
                self._real_calls -= 1
            call.sleeping += 1
        try:
            await fut
        finally:
            timer.cancel()
            if call is not None and call.live:
                call.sleeping -= 1
                if call.sleeping == 0:
                    self._real_calls += 1

    def call_at(self, when: float, callback: Callable[[], Any]) -> VirtualTimer:
        """Run ``callback()`` when virtual time reaches ``when``.

        A ``when`` not after ``now()`` runs on the loop's next iteration, as a
        real timer would. Runtime complexity: O(log timers).
        """
        timer = VirtualTimer(self, when, callback)
        if when <= self._now:
            self._soon += 1
            timer._handle = asyncio.get_running_loop().call_soon(self._run_soon, timer)
        else:
            self._seq += 1
            heapq.heappush(self._timers, (when, self._seq, timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[], Any]) -> VirtualTimer:
        """Run ``callback()`` after ``delay`` seconds of virtual time."""
        return self.call_at(self._now + delay, callback)

    def _run_soon(self, timer: VirtualTimer) -> None:
        self._soon -= 1
        timer._handle = None
        timer.cancelled = True  # fired: a later cancel() is a no-op
        timer.callback()

    # Inspection

    def next_deadline(self) -> Union[float, None]:
        """The instant of the earliest pending timer, or None."""
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
            self._tombstones -= 1
        return timers[0][0] if timers else None

    def _prune(self) -> None:
        # Lazy deletion (as trio's deadlines): rebuild once cancelled timers are half the heap.
        self._timers = [item for item in self._timers if not item[2].cancelled]
        heapq.heapify(self._timers)
        self._tombstones = 0

    @property
    def advancing(self) -> bool:
        """True while some task is inside ``run_until``/``advance``."""
        return self._driving

    @property
    def pending_timers(self) -> int:
        """How many timers wait (cancelled ones excluded)."""
        return len(self._timers) - self._tombstones

    def hold(self, fut: asyncio.Future[Any]) -> None:
        """Keep virtual time still until ``fut`` is done.

        For real work a task waits on, such as the journal's fsync on another
        thread: without it the waiting task looks blocked and time would jump
        ahead while the disk is busy.
        """
        if fut.done():
            return
        self._held += 1
        fut.add_done_callback(self._unhold)

    def _unhold(self, fut: asyncio.Future[Any]) -> None:
        self._held -= 1

    def calling(self) -> _Calling:
        """Mark the current task's work as a provider call (see the module docstring); a context manager.

        Inside it, virtual time moves only while the call (or a task it
        started) sleeps on this clock; any other wait is taken for real I/O,
        and time waits for it.
        """
        return _Calling(self)

    @property
    def real_work(self) -> bool:
        """True while real work holds time still: a ``hold`` future or a provider call not sleeping on the clock."""
        return bool(self._held or self._real_calls)

    # Driving

    async def settle(self) -> None:
        """Return once every other task on the loop is blocked (see the module docstring).

        Two consecutive quiet checks, with a loop iteration in between, so a
        callback scheduled by the last task step (a future's done-callback, an
        ``asyncio.timeout`` expiry) also runs before time moves.
        """
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)
        if isinstance(ready, deque):
            await self._settle_by_queue(loop, ready)
            return
        me = asyncio.current_task()
        quiet = 0
        while quiet < 2:
            await asyncio.sleep(0)
            if self._soon or not _all_blocked(me):
                quiet = 0
            elif self._held or self._real_calls:
                # Every task waits, some on real work (another thread, a socket): wait real time for it.
                quiet = 0
                await asyncio.sleep(0.0002)
            else:
                quiet += 1

    async def _settle_by_queue(self, loop: asyncio.AbstractEventLoop, ready: deque[Any]) -> None:
        # asyncio's own loop: a task that can take a step, a future's done-callback
        # and any call_soon are all handles in the loop's ready queue, and a
        # handle due now on the loop's timer heap (an asyncio.timeout expiry)
        # joins it on the next iteration. Both empty means every task is
        # blocked: one O(1) check instead of a walk over every task, twice.
        scheduled = loop._scheduled  # type: ignore[attr-defined]
        while True:
            if ready or self._soon or (scheduled and scheduled[0]._when <= loop.time()):
                await asyncio.sleep(0)
            elif self._held or self._real_calls:
                # Every task waits, some on real work (another thread, a socket): wait real time for it.
                await asyncio.sleep(0.0002)
            else:
                return

    async def run_until(
        self,
        t: Union[float, int, datetime],
        *,
        stop: Union[Callable[[], bool], None] = None,
    ) -> bool:
        """Advance virtual time to ``t``, firing every timer due on the way, in order.

        Each timer fires alone, after the loop settled, at its own instant.
        ``t`` may be ``math.inf`` (run while timers are pending). With
        ``stop``, return as soon as ``stop()`` is true at a settled instant
        (time then stays there). Returns ``stop()`` (False without ``stop``).
        Time never moves backwards: a ``t`` in the past only settles.
        """
        target = _epoch(t, "t")
        if self._driving:
            raise RuntimeError("VirtualClock.run_until: another task is already advancing this clock")
        self._driving = True
        try:
            while True:
                await self.settle()
                if stop is not None and stop():
                    return True
                when = self.next_deadline()
                if when is None or when > target:
                    break
                _, _, timer = heapq.heappop(self._timers)
                if when > self._now:
                    self._now = when
                timer.cancelled = True  # fired: a later cancel() is a no-op
                try:
                    timer.callback()
                except Exception as exc:  # a broken callback must not wedge the clock
                    asyncio.get_running_loop().call_exception_handler(
                        {"message": "VirtualClock timer callback failed", "exception": exc, "timer": timer}
                    )
            if math.isfinite(target) and target > self._now:
                self._now = target
                await self.settle()
            return bool(stop()) if stop is not None else False
        finally:
            self._driving = False

    async def advance(self, seconds: float) -> None:
        """Advance virtual time by ``seconds``, firing every timer due on the way."""
        if seconds < 0:
            raise ValueError(f"seconds: cannot go back in time ({seconds!r})")
        await self.run_until(self._now + seconds)

    def __repr__(self) -> str:
        return f"VirtualClock({self._now!r})"


def _all_blocked(me: Union[asyncio.Task[Any], None]) -> bool:
    """True when no task but ``me`` can take a step: each waits on a future that is not done.

    A task with no ``_fut_waiter`` has a step scheduled (just created, or
    after a bare yield); one whose waiter is done is about to wake.
    """
    tasks = asyncio.all_tasks() if _ALL_TASKS is None else [t for r in _task_refs() if (t := r()) is not None]
    loop = None
    for task in tasks:
        if task is me or task.done():
            continue
        waiter = task._fut_waiter  # type: ignore[attr-defined]
        if waiter is None or waiter.done():
            # asyncio's registry holds every loop's tasks: only this loop's count.
            if loop is None:
                loop = asyncio.get_running_loop()
            if task.get_loop() is loop:
                return False
    return True


def _task_refs() -> list[weakref.ref[asyncio.Task[Any]]]:
    # A C-level copy of the registry's weak references; a task collected during
    # the copy changes the set, so copy again (as asyncio.all_tasks does).
    data = _ALL_TASKS.data  # type: ignore[union-attr]
    while True:
        try:
            return list(data)
        except RuntimeError:
            continue


# The registry asyncio.all_tasks() reads (3.11): reading its weak references
# directly skips building a set of every live task through a Python-level
# iterator per check, and the walk stops at the first runnable task.
_ALL_TASKS = getattr(asyncio.tasks, "_all_tasks", None)
if not (isinstance(_ALL_TASKS, weakref.WeakSet) and isinstance(getattr(_ALL_TASKS, "data", None), set)):
    _ALL_TASKS = None
