"""Feedback: what the providers answered, applied (R13, R14, R18).

A batch's results end its sent sends in bulk; the rest are retried with
exponential, hashed-jitter backoff until ``max_attempts`` or ``expires_at``,
pushed back on a rate limit (the whole route slows, pushbacks are counted),
or failed for good (with suppression when the provider says so). Temporary
failures of the address feed the error segment.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .dispatch import Dispatch, InFlight
from .hashing import unit
from .ledger import DEAD, IN_FLIGHT, QUEUED, SCHEDULED, Entry, Ledger
from .results import shape_problem
from .routes import Route
from .send import (
    Accepted, Batch, InvalidResult, Outcome, PermanentFailure, RateLimited, Reason, Status, TemporaryFailure,
)
from .wheel import PriorityWheel

__all__ = ["Feedback", "slot_up"]


def slot_up(t: float, slot: float) -> float:
    """The first multiple of ``slot`` at or after ``t`` (never before it, whatever the rounding)."""
    r = math.ceil(t / slot) * slot
    return r if r >= t else r + slot


class Feedback:
    """Applies provider answers to the ledger, the wheel (retries) and the routes (pushbacks).

    ``slots`` maps each origin to its wake-up resolution (``[dispatch]``,
    0 = the instant as given); ``retry`` is ``settings.retry``; the error
    segment and suppression list are the policies' stores.
    """

    def __init__(self, ledger: Ledger, dispatch: Dispatch, wheel: PriorityWheel[Entry], slots: dict[Any, float],
                 retry: Any, error_segment: Any, suppression: Any) -> None:
        self.ledger = ledger
        self.dispatch = dispatch
        self.wheel = wheel
        self.slots = slots
        self.retry = retry
        self.error_segment = error_segment
        self.suppression = suppression

    def record(self, batch: Batch, results: Sequence[Any], now: float) -> None:
        """Apply a provider's answer to ``batch``: one result per send, in order (R18).

        A result count that differs from the batch size is a temporary failure
        of the whole batch. Runtime complexity: O(len(batch)).
        """
        fl = self.dispatch.inflight.get(batch.id)
        if fl is None:
            raise ValueError(f"batch: unknown or already recorded batch id {batch.id}")
        problem = shape_problem(results, len(fl.entries), batch.provider)
        if problem is not None:
            self.record_error(batch, problem, now)
            return
        del self.dispatch.inflight[batch.id]
        self.dispatch.release_slot(fl, now)
        provider = batch.provider
        others = self.ledger.finish_accepted(fl.entries, results, now, provider, fl.route)
        if others:
            self._record_others(fl, others, now, provider)
        elif fl.route.size:
            self.dispatch.schedule(fl.route, self.dispatch.next_ready(fl.route, now))

    def _record_others(self, fl: InFlight, pairs: list[tuple[Entry, Any]], now: float, provider: str) -> None:
        retry = self.retry_or_fail
        for e, r in pairs:
            if e.where == DEAD:
                continue
            try:
                self._record_other(fl, e, r, now, provider)
            except Exception as exc:  # an answer that cannot be applied: that send is retried
                self.ledger.errors += 1
                if e.where == IN_FLIGHT:
                    retry(e, now, f"invalid {type(r).__name__} from provider {provider!r}: "
                                  f"{type(exc).__name__}: {exc}")
        if fl.route.size:
            self.dispatch.schedule(fl.route, self.dispatch.next_ready(fl.route, now))

    def _record_other(self, fl: InFlight, e: Entry, r: Any, now: float, provider: str) -> None:
        t = type(r)
        if t is TemporaryFailure:
            s = e.send
            detail = f"{r.code}: {r.message}" if r.code else r.message
            if type(detail) is not str:
                raise TypeError(f"code and message must be strings, got {r.code!r}, {r.message!r}")
            if r.address_fault:
                self.error_segment.note_error(s.channel, s.to, now)
            self.retry_or_fail(e, now, detail)
        elif t is PermanentFailure:
            detail = f"{r.code}: {r.message}" if r.code else r.message
            if r.suppress not in (None, "marketing", "all") or type(detail) is not str:
                raise ValueError(f"suppress must be None, 'marketing' or 'all' and code/message strings, "
                                 f"got suppress={r.suppress!r}")
            if r.suppress is not None:
                self.suppression.add(e.send.channel, e.send.to, r.suppress)
            self.ledger.finish(e, Status.FAILED, Reason.PERMANENT_FAILURE, now, detail, provider)
        elif t is RateLimited:
            self._pushed_back(fl.route, e, self._retry_after(r.retry_after), now)
        elif t is Accepted:
            self.retry_or_fail(e, now, f"invalid Accepted from provider {provider!r}: provider_id must be "
                                        f"valid text, got {type(r.provider_id).__name__} {r.provider_id!r:.80}")
        else:
            self.retry_or_fail(e, now, r.detail if t is InvalidResult else
                                f"invalid result {type(r).__name__} from provider {provider!r}")

    def record_error(self, batch: Batch, error: str, now: float) -> None:
        """The provider call raised or timed out: a temporary failure of every send (R18)."""
        fl = self.dispatch.inflight.pop(batch.id, None)
        if fl is None:
            raise ValueError(f"batch: unknown or already recorded batch id {batch.id}")
        self.dispatch.release_slot(fl, now)
        for e in fl.entries:
            self.retry_or_fail(e, now, error)

    def _retry_after(self, value: Any) -> float:
        """A provider's ``retry_after``, clamped into the retry settings' bounds (NaN counts as the minimum)."""
        r = self.retry
        low, high = float(r.min_retry_after), float(r.max_retry_after)
        if type(value) is not float and type(value) is not int:
            raise TypeError(f"RateLimited.retry_after must be a number of seconds, got {value!r}")
        if not value >= low:  # also NaN
            return low
        return high if value > high else float(value)

    def _pushed_back(self, route: Route, e: Entry, retry_after: float, now: float) -> None:
        """``rate_limited``: slow the whole route and put the send back at its head (R18).

        A pushback is not an attempt, but pushbacks are counted: past
        ``retry.max_rate_limited`` the send fails, and one that would wait past
        its ``expires_at`` expires.
        """
        s = e.send
        count = self.ledger.pushbacks.get(s.id, 0) + 1
        if count > self.retry.max_rate_limited:
            self.ledger.finish(e, Status.FAILED, Reason.MAX_ATTEMPTS, now,
                         f"rate limited {count - 1} times (retry.max_rate_limited)")
            return
        until = now + retry_after
        if s.expires_at is not None and until >= s.expires_at:
            self.ledger.finish(e, Status.SKIPPED, Reason.EXPIRED, now, "rate limited past expires_at")
            return
        self.ledger.pushbacks[s.id] = count
        if until > route.blocked_until:
            route.blocked_until = until
            route.blocked_by = "rate_limited"
        e.attempt -= 1
        self.ledger.move(e, QUEUED)
        route.push_front(e.prio, [e])
        self.ledger.event(Outcome(send_id=s.id, status=Status.DEFERRED, reason=Reason.RATE_LIMIT, at=now,
                            attempt=e.attempt, channel=s.channel, recipient=s.recipient,
                            until=now + retry_after))

    def backoff(self, send_id: str, attempt: int) -> float:
        """Delay before retry ``attempt`` + 1: exponential, capped, with hashed jitter (R18)."""
        r = self.retry
        delay = min(float(r.max_delay), float(r.base_delay) * (2 ** (attempt - 1)))
        return delay * (1.0 - r.jitter * unit(f"{send_id}:{attempt}"))

    def retry_or_fail(self, e: Entry, now: float, detail: str) -> None:
        """A temporary failure of ``e``: back into the wheel after its backoff, or final when out of attempts or time."""
        s = e.send
        if e.attempt >= self.retry.max_attempts:
            self.ledger.finish(e, Status.FAILED, Reason.MAX_ATTEMPTS, now, detail)
            return
        until = now + self.backoff(s.id, e.attempt)
        slot = self.slots[s.origin]
        if slot:
            until = slot_up(until, slot)
        if s.expires_at is not None and until >= s.expires_at:
            self.ledger.finish(e, Status.SKIPPED, Reason.EXPIRED, now, f"retry would pass expires_at ({detail})")
            return
        self.ledger.move(e, SCHEDULED)
        e.due = until
        e.hold = "retry"
        self.wheel.insert(e.prio, until, e)
        self.ledger.event(Outcome(send_id=s.id, status=Status.RETRYING, reason=Reason.TEMPORARY_FAILURE, at=now,
                            attempt=e.attempt, detail=detail, channel=s.channel, recipient=s.recipient,
                            until=until))
