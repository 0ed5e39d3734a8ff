"""The peers sendcore is measured against, each written the way its documentation shows.

Every peer states what it does NOT do that sendcore does, so a ratio is read
for what it is: sendcore doing more work per send than most of its peers.

* ``HandRolled``: what a platform team writes today on asyncio: one
  ``loop.call_later`` timer per send, an ``aiolimiter.AsyncLimiter`` per carrier,
  a dict for the smart-sending window and ``zoneinfo`` for quiet hours.
* Holders of pending sends: ``heapq``, ``sortedcontainers.SortedList``,
  APScheduler 3's ``MemoryJobStore`` (``add_job`` with a date trigger), and
  sendcore's ``PriorityWheel`` with the same interface.
* Rate limiters: ``aiolimiter``, ``asyncio-throttle``, ``limits`` (moving and
  fixed window, memory storage) and sendcore's ``Gcra``.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

from sendcore.phones import carrier_of
from sendcore.send import Accepted, Origin, Send
from sendcore.wheel import PriorityWheel

from .vloop import VirtualTimeLoop

__all__ = [
    "HOLDERS",
    "HandRolled",
    "HeapHolder",
    "APSchedulerHolder",
    "SortedListHolder",
    "WheelHolder",
    "run_hand_rolled",
]

_TRANSACTIONAL = Origin.TRANSACTIONAL
_CAMPAIGN = Origin.CAMPAIGN


# ---------------------------------------------------------------------------
# (a) the hand-rolled scheduler
# ---------------------------------------------------------------------------


class HandRolled:
    """A per-send asyncio scheduler of the kind platform teams write by hand.

    For each send: ``loop.call_later`` until it is due; then, in the timer
    callback, expiry, suppression (a set), error segment (a dict of the last
    temporary error per address, campaigns only), quiet hours (``zoneinfo``:
    SMS between 21:00 and 08:00 local wait until 08:00 with a new timer) and
    smart sending (a dict of the last marketing send per recipient and
    channel); survivors get a task that waits on the carrier's
    ``AsyncLimiter`` (SMS) and awaits the provider for that one send. A
    temporary failure is retried once per backoff step with a new timer.

    What it does NOT do, that sendcore does (so it is cheaper per send):
    no frequency caps (rolling or calendar), no email-then-SMS spacing, no
    jurisdiction packs (FR Sundays and holidays, US state rules), one zone per
    recipient (``Send.timezone``) where sendcore requires every zone of a
    number to allow it, no re-check of quiet hours at dispatch (R12), no
    release ramp (R12b), no priority once in a limiter (an OTP waits behind
    the campaign), no batching (one provider call per send), no idempotency,
    no cancel index, no outcome events besides the final one, SMS segments
    not counted (the shared body is one segment, so pacing is the same here).
    Its carrier lookup is sendcore's prefix-cached ``carrier_of``, cheaper
    than the ``phonenumbers`` call a team would make: that favours the peer.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        answer: Callable[[Send, int], Any],
        *,
        epoch: Callable[[], float],
        sms_rate: float,
        sms_burst: int,
        suppressed: Iterable[tuple[str, str]] = (),
        smart_windows: dict[str, float] | None = None,
        quiet: tuple[int, int] = (21, 8),
        error_window: float = 30 * 86400.0,
        max_attempts: int = 5,
        base_delay: float = 30.0,
    ) -> None:
        from aiolimiter import AsyncLimiter

        self._limiter_cls = AsyncLimiter
        self.loop = loop
        self.answer = answer
        self.epoch = epoch
        self.sms_rate = sms_rate
        self.sms_burst = sms_burst
        self.suppressed = set(suppressed)
        self.smart_windows = smart_windows or {"sms": 86400.0, "email": 57600.0}
        self.quiet_start, self.quiet_end = quiet
        self.error_window = error_window
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.limiters: dict[str, Any] = {}
        self.zones: dict[str, ZoneInfo] = {}
        self.last_marketing: dict[tuple[str, str], float] = {}
        self.last_error: dict[str, float] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.final: dict[str, int] = {}
        self.outcomes: list[tuple[str, str, float]] = []
        self.pending = 0
        self.done: asyncio.Future[None] | None = None

    def _zone(self, name: str) -> ZoneInfo:
        # ZoneInfo's own cache keeps only 8 zones strongly; with ~20 zones in
        # turn it would re-read tzdata files. A dict is what a team adds once
        # it profiles this (favours the peer).
        z = self.zones.get(name)
        if z is None:
            z = self.zones[name] = ZoneInfo(name)
        return z

    def submit(self, sends: Iterable[Send]) -> None:
        """Set one timer per send at its ``send_at`` (``local_send_at`` resolved with zoneinfo)."""
        loop = self.loop
        now = self.epoch()
        for s in sends:
            if s.local_send_at is not None:
                due = datetime.fromisoformat(s.local_send_at).replace(tzinfo=self._zone(s.timezone)).timestamp()
            else:
                due = s.send_at if s.send_at is not None else now
            loop.call_later(due - now, self._due, s, 1)
            self.pending += 1

    def _finish(self, s: Send, status: str) -> None:
        self.outcomes.append((s.id, status, self.epoch()))
        self.final[status] = self.final.get(status, 0) + 1
        self.pending -= 1
        if self.pending == 0 and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def _due(self, s: Send, attempt: int) -> None:
        now = self.epoch()
        if s.expires_at is not None and now >= s.expires_at:
            self._finish(s, "skipped:expired")
            return
        if s.origin is not _TRANSACTIONAL:
            if (s.channel, s.to) in self.suppressed:
                self._finish(s, "skipped:suppressed")
                return
            if s.origin is _CAMPAIGN and now - self.last_error.get(s.to, -math.inf) < self.error_window:
                self._finish(s, "skipped:error_segment")
                return
            if s.channel == "sms":
                local = datetime.fromtimestamp(now, self._zone(s.timezone))
                if local.hour >= self.quiet_start or local.hour < self.quiet_end:
                    opens = local.replace(hour=self.quiet_end, minute=0, second=0, microsecond=0)
                    if local.hour >= self.quiet_start:
                        opens += timedelta(days=1)
                    self.loop.call_later(opens.timestamp() - now, self._due, s, attempt)
                    return
            last = self.last_marketing.get((s.recipient, s.channel))
            if last is not None and now - last < self.smart_windows[s.channel]:
                self._finish(s, "skipped:smart_sending")
                return
        task = self.loop.create_task(self._send(s, attempt))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, s: Send, attempt: int) -> None:
        if s.channel == "sms":
            carrier = carrier_of(s.to)
            limiter = self.limiters.get(carrier)
            if limiter is None:
                # AsyncLimiter's bucket holds max_rate units: burst units per burst/rate seconds.
                limiter = self.limiters[carrier] = self._limiter_cls(self.sms_burst, self.sms_burst / self.sms_rate)
            async with limiter:
                result = await self._call(s, attempt)
        else:
            result = await self._call(s, attempt)
        now = self.epoch()
        if type(result) is Accepted:
            if s.origin is not _TRANSACTIONAL:
                self.last_marketing[(s.recipient, s.channel)] = now
            self._finish(s, "sent")
            return
        self.last_error[s.to] = now
        if attempt >= self.max_attempts:
            self._finish(s, "failed")
            return
        self.loop.call_later(self.base_delay * 2 ** (attempt - 1), self._due, s, attempt + 1)

    async def _call(self, s: Send, attempt: int) -> Any:
        # The in-process provider: an awaited call per send, as with a REST client.
        return self.answer(s, attempt)

    async def run(self) -> None:
        """Wait until every submitted send is final."""
        self.done = self.loop.create_future()
        if self.pending:
            await self.done


def run_hand_rolled(sends: list[Send], start: float, answer: Callable[[Send, int], Any], *,
                    sms_rate: float, sms_burst: int, suppressed: Iterable[tuple[str, str]] = ()) -> HandRolled:
    """Submit ``sends`` at ``start`` and run the hand-rolled peer on virtual time until all are final."""
    loop = VirtualTimeLoop(start)
    asyncio.set_event_loop(loop)
    try:
        peer = HandRolled(loop, answer, epoch=loop.epoch, sms_rate=sms_rate, sms_burst=sms_burst,
                          suppressed=suppressed)

        async def main() -> None:
            peer.submit(sends)
            await peer.run()

        loop.run_until_complete(main())
        return peer
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# ---------------------------------------------------------------------------
# (b), (c) holders of pending sends: hold, then pop what is due, in order
# ---------------------------------------------------------------------------


class WheelHolder:
    """sendcore's ``PriorityWheel`` (one priority), behind the holders' common interface."""

    name = "sendcore wheel"

    def __init__(self) -> None:
        self.w: PriorityWheel[Send] = PriorityWheel()

    def add(self, sends: list[Send]) -> None:
        """Hold every send until its ``send_at``."""
        insert = self.w.insert
        for s in sends:
            insert(0, s.send_at, s)

    def pop_due(self, now: float) -> list[Send]:
        """Remove and return the sends due at ``now``, in due order."""
        return self.w.pop_due(now)


class HeapHolder:
    """``heapq`` of (due, seq, send), the textbook scheduler queue.

    Does NOT do: priorities, lazy cancel by id, anything but ordering.
    """

    name = "heapq"

    def __init__(self) -> None:
        self.h: list[tuple[float, int, Send]] = []
        self.seq = 0

    def add(self, sends: list[Send]) -> None:
        """Push every send keyed by (send_at, submission order)."""
        h, push, seq = self.h, heapq.heappush, self.seq
        for s in sends:
            seq += 1
            push(h, (s.send_at, seq, s))
        self.seq = seq

    def pop_due(self, now: float) -> list[Send]:
        """Pop while the head is due."""
        h, pop = self.h, heapq.heappop
        out = []
        while h and h[0][0] <= now:
            out.append(pop(h)[2])
        return out


class SortedListHolder:
    """``sortedcontainers.SortedList`` of (due, seq, send); pops the due prefix with bisect and a slice delete.

    Does NOT do: priorities, lazy cancel (a cancel is an O(log n) remove).
    """

    name = "SortedList"

    def __init__(self) -> None:
        from sortedcontainers import SortedList

        self.sl = SortedList()
        self.seq = 0

    def add(self, sends: list[Send]) -> None:
        """Insert every send keyed by (send_at, submission order)."""
        add, seq = self.sl.add, self.seq
        for s in sends:
            seq += 1
            add((s.send_at, seq, s))
        self.seq = seq

    def pop_due(self, now: float) -> list[Send]:
        """Everything up to ``now``: one bisect, one slice, one slice delete."""
        sl = self.sl
        i = sl.bisect_left((now, math.inf))
        if not i:
            return []
        out = [x[2] for x in sl[:i]]
        del sl[:i]
        return out


def _deliver(send: Send) -> None:  # the job APScheduler would run
    pass


class APSchedulerHolder:
    """APScheduler 3 holding sends as jobs in its in-memory job store, as its user guide shows.

    ``scheduler.add_job(deliver, "date", run_date=..., args=[send], id=send.id)``
    on a started (paused) ``BackgroundScheduler`` with a ``MemoryJobStore``.
    Popping due jobs does what the scheduler's own loop does for a date job,
    minus running it: ``get_due_jobs(now)`` then ``remove_job`` for each.
    Does NOT do: priorities; it runs jobs in a thread pool (not measured here).
    """

    name = "APScheduler"

    def __init__(self) -> None:
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        self.store = MemoryJobStore()
        self.scheduler = BackgroundScheduler(jobstores={"default": self.store}, timezone=timezone.utc)
        self.scheduler.start(paused=True)

    def add(self, sends: list[Send]) -> None:
        """One date-triggered job per send."""
        add_job, fromts, utc = self.scheduler.add_job, datetime.fromtimestamp, timezone.utc
        for s in sends:
            add_job(_deliver, "date", run_date=fromts(s.send_at, utc), args=[s], id=s.id,
                    misfire_grace_time=None)

    def pop_due(self, now: float) -> list[Send]:
        """Due jobs at ``now``, removed from the store."""
        store = self.store
        jobs = store.get_due_jobs(datetime.fromtimestamp(now, timezone.utc))
        for job in jobs:
            store.remove_job(job.id)
        return [job.args[0] for job in jobs]

    def close(self) -> None:
        """Stop the scheduler's thread."""
        self.scheduler.shutdown(wait=False)


#: Holder classes by short name, sendcore first.
HOLDERS: dict[str, type] = {
    "wheel": WheelHolder,
    "heapq": HeapHolder,
    "sortedlist": SortedListHolder,
    "apscheduler": APSchedulerHolder,
}
