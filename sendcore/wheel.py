"""The timing wheel: pending sends by due time, popped in (priority, due, submission) order.

Structure
---------
Two levels of buckets per priority, like a hierarchical wheel with the empty
slots indexed by a heap so the clock jumps instead of ticking:

* **near** buckets are 1 ms wide (``TICK``) and keyed by ``ceil(due / TICK)``:
  a send due at 12.0004 s lands in tick 12001 and leaves at 12.001 s, a tick
  late at most and never early (the round-up of Linux's ``calc_index``).
* **far** buckets are ``SPAN`` = 64 s wide and keyed by ``floor(due / SPAN)``.
  Sends due beyond the current 64 s slot wait there; when the clock enters
  their slot, the whole bucket cascades into near buckets once.

Worked example, clock at t = 1000.0 (slot 15 covers [960, 1024)):

    insert(due=1000.0005)  -> near tick 1000001 (leaves at 1000.001)
    insert(due=1010.2)     -> near tick 1010200 (same 64 s slot)
    insert(due=1030.0)     -> far slot 16 ([1024, 1088)); cascades at 1024.0
    insert(due=1000 + 30d) -> far slot 55_515; cascades 30 days later
    next_due()             -> 1000.001, then 1010.2, then 1024.0 (a cascade)

Each level keeps a heap of its non-empty bucket keys, so ``next_due`` is O(1)
and popping jumps straight to the next non-empty bucket (Kafka's
``advanceClock``, Netty's worker). A send is moved at most once (far to near).

Complexity: insert O(1) amortised (O(log B) when it opens a bucket, B the
number of non-empty buckets); pop O(1) amortised per send; next_due O(1).
Cancels are lazy (trio's ``Deadlines``): the caller marks its item dead and
tells the wheel (``PriorityWheel.discarded``); ``pop_live`` drops dead items as
they come out, and ``compact`` rebuilds the buckets once the dead pile up.

Items are opaque to the wheel; callers pass the due time alongside. Within a
bucket, items keep insertion order, so equal due times leave in submission
order. Far buckets must remember each item's due time for the cascade: as a
``(due, item)`` pair, or, when the wheel is built with ``due_of`` (a function
reading the due time back from the item, which must not change while the
item is held), as the item alone, which saves the pair (56 bytes) per item.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Callable, Generic, Iterator, TypeVar

__all__ = ["SPAN", "TICK", "PriorityWheel", "TimingWheel"]

T = TypeVar("T")

TICK = 0.001
TICKS_PER_SECOND = 1000
SPAN = 64.0
TICKS_PER_SLOT = 64_000


def tick_of(due: float) -> int:
    """The near-bucket key of ``due``: the first tick boundary at or after it."""
    k = math.ceil(due * TICKS_PER_SECOND)
    # Guard against float rounding putting the boundary a hair before ``due``.
    if k / TICKS_PER_SECOND < due:
        k += 1
    return k


class TimingWheel(Generic[T]):
    """Items of one priority by due time. See the module docstring for the layout."""

    __slots__ = ("_near", "_near_keys", "_far", "_far_keys", "_slot", "_size", "_due_of")

    def __init__(self, due_of: Callable[[T], float] | None = None) -> None:
        self._near: dict[int, list[T]] = {}
        self._near_keys: list[int] = []
        self._far: dict[int, list[Any]] = {}  # (due, item) pairs, or items when due_of is set
        self._far_keys: list[int] = []
        # The 64 s slot the clock is in; sends due inside it go to near buckets.
        self._slot = -(2**62)
        self._size = 0
        self._due_of = due_of

    def __setstate__(self, state: Any) -> None:
        # Wheels pickled before ``due_of`` existed hold pairs in their far buckets.
        self._due_of = None
        for key, value in (state[1] if isinstance(state, tuple) else state).items():
            setattr(self, key, value)

    def __len__(self) -> int:
        """Number of items held, dead ones included until popped or pruned."""
        return self._size

    def insert(self, due: float, item: T) -> None:
        """Hold ``item`` until ``due``. Runtime complexity: O(1) amortised."""
        self._size += 1
        slot = int(due // SPAN)
        if slot <= self._slot:
            k = tick_of(due)
            bucket = self._near.get(k)
            if bucket is None:
                self._near[k] = [item]
                heapq.heappush(self._near_keys, k)
            else:
                bucket.append(item)
        else:
            held = item if self._due_of is not None else (due, item)
            bucket = self._far.get(slot)
            if bucket is None:
                self._far[slot] = [held]
                heapq.heappush(self._far_keys, slot)
            else:
                bucket.append(held)

    def insert_many(self, due: float, items: list[T]) -> None:
        """Hold every item of ``items`` until the same ``due``. O(len(items))."""
        if not items:
            return
        self._size += len(items)
        slot = int(due // SPAN)
        if slot <= self._slot:
            k = tick_of(due)
            bucket = self._near.get(k)
            if bucket is None:
                self._near[k] = list(items)
                heapq.heappush(self._near_keys, k)
            else:
                bucket.extend(items)
        else:
            pairs = list(items) if self._due_of is not None else [(due, item) for item in items]
            bucket = self._far.get(slot)
            if bucket is None:
                self._far[slot] = pairs
                heapq.heappush(self._far_keys, slot)
            else:
                bucket.extend(pairs)

    def next_due(self) -> float | None:
        """The earliest instant a pop may return something, or None if empty. O(1)."""
        best = None
        if self._near_keys:
            best = self._near_keys[0] / TICKS_PER_SECOND
        if self._far_keys:
            f = self._far_keys[0] * SPAN
            if best is None or f < best:
                best = f
        return best

    def _cascade(self, now: float) -> None:
        slot = int(now // SPAN)
        if slot <= self._slot:
            return
        self._slot = slot
        far, far_keys, near, near_keys = self._far, self._far_keys, self._near, self._near_keys
        push = heapq.heappush
        due_of = self._due_of
        while far_keys and far_keys[0] <= slot:
            held = far.pop(heapq.heappop(far_keys))
            for due, item in ((due_of(x), x) for x in held) if due_of is not None else held:
                k = math.ceil(due * TICKS_PER_SECOND)
                if k / TICKS_PER_SECOND < due:
                    k += 1
                bucket = near.get(k)
                if bucket is None:
                    near[k] = [item]
                    push(near_keys, k)
                else:
                    bucket.append(item)

    def pop_due(self, now: float, limit: int = 0) -> list[T]:
        """Remove and return items due at or before ``now`` in due order.

        With ``limit`` > 0, return at most that many; the rest stay in place
        (a bucket may be split). Runtime complexity: O(k) for k items returned
        plus O(log B) per bucket emptied.
        """
        self._cascade(now)
        near, keys = self._near, self._near_keys
        out: list[T] = []
        pop = heapq.heappop
        # Same expression as next_due, so popping at next_due() always releases.
        while keys and keys[0] / TICKS_PER_SECOND <= now:
            k = keys[0]
            bucket = near[k]
            if limit and len(out) + len(bucket) > limit:
                room = limit - len(out)
                out.extend(bucket[:room])
                del bucket[:room]
                break
            pop(keys)
            del near[k]
            if out:
                out.extend(bucket)
            else:
                out = bucket
        self._size -= len(out)
        return out

    def items(self) -> Iterator[T]:
        """Every held item, in no particular order (for explain, snapshots and tests)."""
        for bucket in self._near.values():
            yield from bucket
        for bucket in self._far.values():
            if self._due_of is not None:
                yield from bucket
            else:
                for _, item in bucket:
                    yield item

    def prune(self, alive: Callable[[T], bool]) -> int:
        """Drop items for which ``alive`` is false; return how many. O(n)."""
        dropped = 0
        for k in list(self._near):
            bucket = self._near[k]
            kept = [x for x in bucket if alive(x)]
            dropped += len(bucket) - len(kept)
            if kept:
                self._near[k] = kept
            else:
                del self._near[k]
        for k in list(self._far):
            bucket = self._far[k]
            kept2 = [p for p in bucket if alive(p)] if self._due_of is not None else [p for p in bucket if alive(p[1])]
            dropped += len(bucket) - len(kept2)
            if kept2:
                self._far[k] = kept2
            else:
                del self._far[k]
        self._near_keys = list(self._near)
        heapq.heapify(self._near_keys)
        self._far_keys = list(self._far)
        heapq.heapify(self._far_keys)
        self._size -= dropped
        return dropped


class PriorityWheel(Generic[T]):
    """One ``TimingWheel`` per priority; pops in (priority, due, submission) order.

    Lower priority numbers leave first (transactional 0, flow 1, campaign 2 by
    default). Runtime complexity: as ``TimingWheel``, plus O(P) per pop and
    ``next_due`` for P distinct priorities in use (a handful).
    """

    __slots__ = ("_wheels", "_order", "_due_of", "dead")

    def __init__(self, due_of: Callable[[T], float] | None = None) -> None:
        self._wheels: dict[int, TimingWheel[T]] = {}
        self._order: list[int] = []
        self._due_of = due_of
        #: Items known dead but still held (tombstones), as counted by ``discarded``.
        self.dead = 0

    def __setstate__(self, state: Any) -> None:
        # Wheels pickled by older versions lack the later slots.
        self._due_of = None
        self.dead = 0
        for key, value in (state[1] if isinstance(state, tuple) else state).items():
            setattr(self, key, value)

    def __len__(self) -> int:
        """Number of items held, dead ones included until popped or pruned."""
        return sum(len(w) for w in self._wheels.values())

    def _wheel(self, prio: int) -> TimingWheel[T]:
        w = self._wheels.get(prio)
        if w is None:
            w = self._wheels[prio] = TimingWheel(self._due_of)
            self._order = sorted(self._wheels)
        return w

    def insert(self, prio: int, due: float, item: T) -> None:
        """Hold ``item`` at ``prio`` until ``due``. O(1) amortised."""
        w = self._wheels.get(prio)
        if w is None:
            w = self._wheel(prio)
        w.insert(due, item)

    def insert_many(self, prio: int, due: float, items: list[T]) -> None:
        """Hold several items of one priority until the same ``due``."""
        self._wheel(prio).insert_many(due, items)

    def next_due(self) -> float | None:
        """The earliest instant a pop may return something, or None if empty."""
        best = math.inf
        for w in self._wheels.values():
            if w._near_keys:
                d = w._near_keys[0] / TICKS_PER_SECOND
                if d < best:
                    best = d
            if w._far_keys:
                d = w._far_keys[0] * SPAN
                if d < best:
                    best = d
        return None if best == math.inf else best

    def pop_due(self, now: float, limit: int = 0) -> list[T]:
        """Items due at or before ``now``: all of priority 0 first, then 1, and so on."""
        out: list[T] = []
        wheels = self._wheels
        for prio in self._order:
            w = wheels[prio]
            # Skip wheels with nothing due without a call: most wake-ups touch one priority.
            nk, fk = w._near_keys, w._far_keys
            if not ((nk and nk[0] / TICKS_PER_SECOND <= now) or (fk and fk[0] * SPAN <= now)):
                continue
            room = limit - len(out) if limit else 0
            if limit and room <= 0:
                break
            got = w.pop_due(now, room)
            if got:
                if out:
                    out.extend(got)
                else:
                    out = got
        return out

    def pop_live(self, now: float, live: Callable[[T], bool], limit: int = 0) -> list[T]:
        """``pop_due``, keeping only the items ``live`` accepts; the others leave the tombstone count.

        ``limit`` counts every item taken out, dead ones too, exactly as
        ``pop_due`` does.
        """
        due = self.pop_due(now, limit)
        if not due:
            return due
        kept = [x for x in due if live(x)]
        if len(kept) != len(due):
            self.dead = max(0, self.dead - (len(due) - len(kept)))
        return kept

    def discarded(self, n: int = 1) -> None:
        """``n`` held items were ended by their owner: counted until popped or compacted."""
        self.dead += n

    def compact(self, alive_total: int, held: Callable[[T], bool]) -> int:
        """Keep only the items ``held`` accepts, once more than 10,000 are dead and more than half ``alive_total``.

        ``alive_total`` is how many items the owner still holds anywhere (the
        core passes its pending count). Returns how many were dropped (0 when
        not yet worth a pass over every bucket).
        """
        if self.dead > 10_000 and self.dead * 2 > alive_total:
            self.dead = 0
            return self.prune(held)
        return 0

    def items(self) -> Iterator[Any]:
        """Every held item, in no particular order."""
        for w in self._wheels.values():
            yield from w.items()

    def prune(self, alive: Callable[[T], bool]) -> int:
        """Drop dead items from every priority; return how many."""
        return sum(w.prune(alive) for w in self._wheels.values())
