"""The asyncio runtime: drives the sans-I/O core on a clock and runs provider calls.

One scheduler task asks the core for batches (``core.advance(now)``), starts
one task per batch, then sleeps until ``core.next_wakeup()`` or until new
work arrives (an ``asyncio.Event`` set by ``submit``, ``cancel`` and every
finished batch); it never polls. Each batch task calls ``provider.send(batch)``
under the provider's timeout, measured on the engine's clock, and feeds the
answer back with ``core.record`` (or ``core.record_error`` for an exception, a
timeout or a malformed answer). Every outcome the core emits goes to the
``sendcore_outcome`` hook and to each ``outcomes()`` stream.

The same code runs on the wall clock (``RealClock``) and on a
``sendcore.testing.VirtualClock``, where ``run_until(t)`` and ``drain()`` move
time in jumps from one wake-up to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import types
import weakref
from functools import partial
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any, Awaitable, Coroutine, Iterable, Mapping, TypeVar, Union

import msgspec

from .clock import RealClock, call_at
from .assembly import assemble
from .core import Checked, Core
from .errors import DeliveryReportError, PendingLimitError
from .ledger import storable_id
from .plugins import PluginError, PluginHost
from .provider import DeliveryReport, ProviderSpec
from .results import shape_problem, storable
from .send import Batch, CancelReport, Explanation, Outcome, Rejection, Send, Stats, SubmitReport
from .settings import Settings, limit_problem

if TYPE_CHECKING:
    from .journal import Journal, JournalStats

if TYPE_CHECKING:
    from .provider import Clock

__all__ = ["Engine", "OutcomeStream"]

T = TypeVar("T")

log = logging.getLogger("sendcore")

_NEW, _RUNNING, _CLOSING, _CLOSED = "new", "running", "closing", "closed"

#: Scheduler passes in a row that dispatch nothing while the core says work is
#: already due; past this the core is stuck in a loop and the engine says so
#: instead of spinning a CPU forever.
_MAX_IDLE_PASSES = 10_000


class _ProviderContext:
    """What one provider receives in ``start(context)`` (``sendcore.provider.ProviderContext``)."""

    __slots__ = ("clock", "settings", "limits", "_engine", "provider")

    def __init__(self, engine: Engine, provider: str, settings: dict[str, Any], limits: ProviderSpec) -> None:
        self.clock = engine.clock
        self.settings = settings
        self.limits = limits
        self._engine = engine
        self.provider = provider

    def report_delivery(self, send_id: str, delivered: bool, detail: str = "") -> None:
        """Record a delivery report for a send this provider accepted (R21)."""
        self._engine.delivery_report(send_id, delivered, detail)

    def report_opt_out(self, channel: str, address: str) -> None:
        """Record that ``address`` replied STOP on ``channel`` (R14, scope ``marketing``)."""
        self._engine.suppress(channel, address, "marketing")

    def __repr__(self) -> str:
        return f"<ProviderContext {self.provider}>"


class OutcomeStream:
    """An async iterator over the outcomes an engine emits from the moment it was created.

    Each stream sees every outcome, in order; it ends when the engine closes.
    Outcomes not yet consumed are buffered (shared between streams, so a
    second stream costs little), so a stream that is kept but not read grows
    without bound: iterate it, or drop it (``aclose()``, ``async with``, or
    letting it be garbage collected all unsubscribe).
    """

    __slots__ = ("_chunks", "_pos", "_waiter", "_ended", "__weakref__")

    def __init__(self) -> None:
        self._chunks: deque[list[Outcome]] = deque()
        self._pos = 0
        self._waiter: Union[asyncio.Future[None], None] = None
        self._ended = False

    def _push(self, chunk: list[Outcome]) -> None:
        self._chunks.append(chunk)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _end(self) -> None:
        self._ended = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> OutcomeStream:
        return self

    async def __anext__(self) -> Outcome:
        while True:
            chunks = self._chunks
            if chunks:
                chunk = chunks[0]
                item = chunk[self._pos]
                self._pos += 1
                if self._pos == len(chunk):
                    chunks.popleft()
                    self._pos = 0
                return item
            if self._ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def buffered(self) -> int:
        """Outcomes received and not yet consumed."""
        return sum(len(c) for c in self._chunks) - self._pos

    async def aclose(self) -> None:
        """Stop receiving outcomes; a pending ``__anext__`` ends the iteration."""
        self._chunks.clear()
        self._pos = 0
        self._end()

    async def __aenter__(self) -> OutcomeStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class Engine:
    """The send engine: an asyncio shell around the sans-I/O ``Core`` (DESIGN §2, §4).

    ``settings`` defaults to ``Settings()``. ``clock`` defaults to the wall
    clock; give a ``sendcore.testing.VirtualClock`` to run on virtual time.
    ``plugins`` are plugin objects registered besides the installed ones (see
    ``sendcore.plugins``); ``load_entrypoints=False`` loads no installed plugin.

    Use it as an async context manager (or call ``start()``/``close()``)::

        async with Engine(settings) as engine:
            report = await engine.submit(sends)
            async for outcome in engine.outcomes(): ...

    One engine belongs to one event loop; its methods are not thread-safe.
    """

    def __init__(
        self,
        settings: Union[Settings, None] = None,
        clock: Union[Clock, None] = None,
        plugins: Union[Iterable[Any], None] = None,
        *,
        load_entrypoints: Union[bool, None] = None,
    ) -> None:
        self._settings = settings if settings is not None else Settings()
        self._clock: Any = clock if clock is not None else RealClock()
        self._host = PluginHost(self._settings, plugins=plugins or (), load_entrypoints=load_entrypoints)
        self._state = _NEW
        self._core: Union[Core, None] = None
        self._providers: dict[str, Any] = {}
        self._specs: dict[str, ProviderSpec] = {}
        self._started: list[Any] = []
        self._outcome_hook: Any = None
        self._streams: weakref.WeakSet[OutcomeStream] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[None]] = set()
        self._task_batch: dict[asyncio.Task[None], Batch] = {}
        self._wake: Union[asyncio.Event, None] = None
        # The instant the sleeping scheduler's timer is set for (inf: no timer;
        # -inf while it runs, when it recomputes its next wake-up anyway).
        self._armed = -math.inf
        # While the scheduler starts a wake-up's batches (Python 3.12+), the answers of calls that
        # came back without suspending wait here, to be recorded after the last batch has left.
        self._answered: Union[list[tuple[Batch, Any, Union[str, None]]], None] = None
        self._scheduler: Union[asyncio.Task[None], None] = None
        self._progress: Union[asyncio.Future[None], None] = None
        self._failure: Union[BaseException, None] = None
        self._loop: Union[asyncio.AbstractEventLoop, None] = None
        self._journal: Union[Journal, None] = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.close()
        if exc is None and self._failure is not None:
            raise RuntimeError(f"sendcore engine failed: {self._failure!r}") from self._failure

    async def start(self) -> None:
        """Load plugins, build the core, start providers and the scheduler.

        Raises ``PluginError`` for a broken plugin and ``ConfigError`` naming
        the key for a bad setting or provider option, or a ``[providers.NAME]``
        section naming no registered provider (``sendcore check-config`` runs
        the same checks without starting anything).
        """
        if self._state is not _NEW:
            raise RuntimeError(f"Engine.start: the engine is {self._state}; an engine starts once")
        self._loop = asyncio.get_running_loop()
        host = self._host
        parts = assemble(self._settings, host)
        configured = self._settings.providers
        providers = list(parts.providers.values())
        self._providers, self._specs, build = parts.providers, parts.specs, parts.build
        if self._settings.journal.path:
            from .journal import Journal

            # Recovery reads files and replays frames: off the loop, with virtual time held still.
            opening = self._loop.run_in_executor(None, Journal.open, self._settings, list(self._specs.values()), build)
            self._hold(opening)
            self._journal, self._core = await opening
            self._journal.start(self._loop, self._core)
        else:
            self._core = build(self._settings, list(self._specs.values()))
        self._outcome_hook = host.outcome_caller()
        for problem in self._core.channel_problems():
            log.warning("sendcore: %s", problem)
        try:
            for p in providers:
                start = getattr(p, "start", None)
                if start is not None:
                    options = configured[p.name].options if p.name in configured else {}
                    await start(_ProviderContext(self, p.name, dict(options), self._specs[p.name]))
                self._started.append(p)
                self._adopt_timeout(p, configured.get(p.name))
        except BaseException:
            await self._close_providers()
            if self._journal is not None:
                await self._journal.close()
            self._state = _CLOSED
            raise
        self._wake = asyncio.Event()
        self._state = _RUNNING
        core = self._core
        if self._journal is not None and core.in_flight:
            # Batches handed to providers but never answered before the last stop leave again (R22).
            from .journal.frames import Requeue, encode_frame

            now = self._clock.now()
            n = core.in_flight
            await self._journaled(encode_frame(Requeue(now=now)), lambda: core.requeue_in_flight(now), False)
            self._journal.recovery.requeued = n
            self._flush()
        self._scheduler = self._loop.create_task(self._schedule(), name="sendcore-scheduler")

    def _adopt_timeout(self, provider: Any, overrides: Any) -> None:
        """Use the ``timeout`` a provider derived in ``start`` (from its options and ``context.limits``).

        ``[providers.NAME] timeout``, when set, still wins. Raises
        ``PluginError`` naming the provider when the derived value is no
        valid timeout.
        """
        if overrides is not None and overrides.timeout is not None:
            return
        name = provider.name
        spec = self._specs[name]
        derived = getattr(provider, "timeout", spec.timeout)
        if derived == spec.timeout:
            return
        problem = limit_problem("timeout", derived)
        if problem is not None:
            raise PluginError(f"provider {name!r}: `timeout` after start {problem}")
        self._specs[name] = msgspec.structs.replace(spec, timeout=float(derived))

    async def close(self, *, grace: float = 5.0, snapshot: bool = False) -> None:
        """Stop dispatching, let in-flight calls finish or time out, close providers, end streams.

        ``snapshot=True`` (journal on) writes a snapshot of the final state
        before the journal closes, so the next start loads it and replays
        nothing: do this before upgrading sendcore, because a journal's tail
        replays only with the version that wrote it.

        Pending sends stay pending in the core (``engine.core``); ``outcome``,
        ``explain`` and ``stats`` keep answering. On a virtual clock, time
        moves forward as far as in-flight calls need (their sleeps and
        timeouts). A provider call that has not ended ``grace`` seconds (wall
        clock) after the longest provider timeout, because it ignores its
        cancellation, is abandoned: its sends go back to be retried (and are
        journaled so) and a warning is logged. Each provider's ``close`` gets
        ``grace`` seconds; one that raises or hangs is reported and the
        others still close. Idempotent.
        """
        if self._state in (_CLOSING, _CLOSED):
            return
        if self._state is _NEW:
            self._state = _CLOSED
            self._end_streams()
            return
        self._state = _CLOSING
        assert self._wake is not None
        self._wake.set()
        if self._scheduler is not None:
            await asyncio.gather(self._scheduler, return_exceptions=True)
        if self._tasks:
            await self._finish_calls(grace)
        self._flush()
        await self._close_providers(grace)
        if self._journal is not None:
            await self._journal.close(snapshot=snapshot)
        self._state = _CLOSED
        self._end_streams()
        self._notify()

    async def _finish_calls(self, grace: float) -> None:
        """Wait for in-flight provider calls, at most the longest timeout plus ``grace`` of wall time."""
        loop = asyncio.get_running_loop()
        limit = max((spec.timeout for spec in self._specs.values()), default=0.0) + grace
        deadline = loop.time() + limit
        clock = self._clock
        if hasattr(clock, "run_until") and not getattr(clock, "advancing", False):
            try:
                await asyncio.wait_for(clock.run_until(math.inf, stop=lambda: not self._tasks), limit)
            except TimeoutError:
                pass
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=max(0.0, deadline - loop.time()))
        for task in list(self._tasks):
            # Still running: the call ignored its cancellation. Its sends are retried later.
            batch = self._task_batch.pop(task, None)
            self._tasks.discard(task)
            task.cancel()
            if batch is not None:
                log.warning("sendcore: provider %r did not end a call of %d sends within %gs at close; "
                            "its sends go back to be retried", batch.provider, len(batch.sends), limit)
                self._record_error(batch, f"provider {batch.provider!r} did not end the call at close "
                                          f"(cancellation ignored for {limit:g}s)")

    async def _close_providers(self, grace: float = 5.0) -> None:
        started, self._started = self._started, []
        for p in reversed(started):
            close = getattr(p, "close", None)
            if close is None:
                continue
            try:
                await asyncio.wait_for(close(), grace)
            except (Exception, asyncio.CancelledError) as exc:
                # One provider's bad close (raising, even CancelledError, or hanging) must not keep
                # the others open or the engine closing forever; our own cancellation still propagates.
                current = asyncio.current_task()
                if isinstance(exc, asyncio.CancelledError) and current is not None and current.cancelling():
                    raise
                what = "did not close within {:g}s".format(grace) if isinstance(exc, TimeoutError) else \
                    f"failed to close: {type(exc).__name__}: {exc}"
                log.error("sendcore: provider %r %s", p.name, what)
                asyncio.get_running_loop().call_exception_handler(
                    {"message": f"sendcore: provider {p.name!r} {what}", "exception": exc}
                )

    def _end_streams(self) -> None:
        for stream in list(self._streams):
            stream._end()

    @staticmethod
    def run(main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` to completion on uvloop when installed, else on asyncio's loop.

        A convenience for scripts (``Engine.run(main())``); the engine itself
        works under any running asyncio loop.
        """
        try:
            import uvloop
        except ImportError:
            return asyncio.run(main)
        return uvloop.run(main)

    # ------------------------------------------------------------------ accessors

    @property
    def settings(self) -> Settings:
        """The settings the engine runs with."""
        return self._settings

    @property
    def clock(self) -> Any:
        """The engine's clock (``RealClock`` or a ``VirtualClock``)."""
        return self._clock

    @property
    def core(self) -> Core:
        """The sans-I/O core (for inspection; drive the engine through its own methods)."""
        return self._require_core()

    @property
    def plugins(self) -> PluginHost:
        """The plugin host: which plugins loaded, and their hooks."""
        return self._host

    @property
    def providers(self) -> dict[str, Any]:
        """The provider objects by name (after ``start``)."""
        return dict(self._providers)

    @property
    def limits(self) -> dict[str, ProviderSpec]:
        """Each provider's declaration as the engine applies it, by name (after ``start``).

        The provider's own values, with ``[providers.NAME]`` settings applied
        and the ``timeout`` the provider derived in ``start`` (unless
        ``[providers.NAME] timeout`` is set).
        """
        return dict(self._specs)

    @property
    def policies(self) -> list[Any]:
        """Every policy in the order it runs, built-ins first."""
        return list(self._require_core().policies)

    @property
    def pending(self) -> int:
        """Sends accepted and not yet final."""
        return self._require_core().pending

    @property
    def in_flight(self) -> int:
        """Batches handed to providers and not answered yet."""
        return self._require_core().in_flight

    @property
    def closed(self) -> bool:
        """True once ``close()`` finished."""
        return self._state is _CLOSED

    @property
    def started(self) -> bool:
        """True once ``start()`` recovered the core (also after ``close()``: the core keeps answering)."""
        return self._core is not None

    @property
    def failure(self) -> Union[BaseException, None]:
        """The error that stopped the engine's scheduler or a batch's bookkeeping, or None while healthy."""
        return self._failure

    def _require_core(self) -> Core:
        if self._core is None:
            raise RuntimeError("the engine is not started: use `async with Engine(...)` or `await engine.start()`")
        return self._core

    def _require_running(self, what: str) -> Core:
        if self._failure is not None:
            raise RuntimeError(f"Engine.{what}: the engine failed: {self._failure!r}") from self._failure
        if self._state is not _RUNNING:
            if self._state is _NEW:
                raise RuntimeError(f"Engine.{what}: the engine is not started; use `async with Engine(...)`")
            raise RuntimeError(f"Engine.{what}: the engine is {self._state}")
        assert self._core is not None
        return self._core

    # ------------------------------------------------------------------ the public API

    async def submit(self, sends: Iterable[Any], wait: bool = False) -> SubmitReport:
        """Hand sends to the engine; return the core's report (accepted, per-item rejections; R23).

        Raises ``PendingLimitError`` when the valid items do not fit under
        ``max_pending`` (R24); with ``wait=True`` waits for room instead (on a
        virtual clock, time must then be moved by another task).
        """
        core = self._require_running("submit")
        if isinstance(sends, Send):
            raise TypeError("Engine.submit takes an iterable of sends; wrap a single send in a list")
        items = sends if isinstance(sends, list) else list(sends)
        while True:
            try:
                now = self._clock.now()
                checked = core.check(items, now)
                if self._journal is None:
                    report = core.accept(checked, now)
                else:
                    payload = self._submit_frame(checked, items, now)
                    report = await self._journaled(payload, lambda: core.accept(checked, now), True)
                break
            except PendingLimitError as exc:
                if not wait or exc.requested > exc.limit:
                    raise
                await self._changed()
                core = self._require_running("submit")
        self._flush()
        self._wake.set()  # type: ignore[union-attr]
        return report

    def _submit_frame(self, checked: Checked, items: list[Any], now: float) -> bytes:
        """The journal frame of a submit; sends that cannot be stored become rejections naming the field."""
        from .journal.frames import Submit, encode_frame

        checked.recheck = True  # other inputs may run while the frame is written
        ok = checked.sends

        def frame() -> bytes:
            return encode_frame(Submit(now=now, sends=[s for s, _, _ in ok], dues=[d for _, d, _ in ok],
                                       skip=checked.skip, rejected=len(checked.rejected)))

        try:
            return frame()
        except (msgspec.EncodeError, TypeError, ValueError, OverflowError):
            pass
        kept, skip = [], []
        for i, item in enumerate(ok):
            field = _unstorable_field(item[0])
            if field is None:
                if i in checked.skip:
                    skip.append(len(kept))
                kept.append(item)
                continue
            sid = item[0].id
            index = next((k for k, it in enumerate(items)
                          if (it.get("id") if isinstance(it, dict) else getattr(it, "id", None)) == sid), -1)
            checked.rejected.append(Rejection(index, sid, f"{field}: cannot be stored in the journal "
                                              "(not encodable as MessagePack: lone surrogate or unsupported type)"))
        checked.sends, checked.skip = kept, skip
        ok = kept
        return frame()

    async def _journaled(self, payload: bytes, apply: Any, durable: bool) -> Any:
        """Run ``apply`` in journal order (see ``sendcore.journal``); wait when the journal says so."""
        result = self._journal.run(payload, apply, durable)  # type: ignore[union-attr]
        if asyncio.isfuture(result):
            self._hold(result)
            result = await result
        return result

    def _hold(self, fut: Any) -> None:
        hold = getattr(self._clock, "hold", None)
        if hold is not None:
            hold(fut)

    async def cancel(
        self,
        *,
        ids: Union[Iterable[str], None] = None,
        recipient: Union[str, None] = None,
        origin_id: Union[str, None] = None,
    ) -> CancelReport:
        """Cancel pending sends by id, or in bulk by recipient and/or origin id (R20).

        Sends already handed to a provider come back in ``too_late``.
        """
        core = self._require_running("cancel")
        now = self._clock.now()
        unnamed: list[str] = []
        if ids is not None:
            ids = [ids] if isinstance(ids, str) else list(ids)
            for i, sid in enumerate(ids):
                if type(sid) is not str:
                    raise ValueError(f"ids[{i}]: expected a string, got {type(sid).__name__}")
            # Text no send can carry (a lone surrogate: submit refuses it) names no send:
            # unknown, and kept out of the journal, which stores text as UTF-8.
            unnamed = [sid for sid in ids if not storable_id(sid)]
            if unnamed:
                ids = [sid for sid in ids if storable_id(sid)]
        for name, value in (("recipient", recipient), ("origin_id", origin_id)):
            if value is not None and type(value) is not str:
                raise ValueError(f"{name}: expected a string, got {type(value).__name__}")
        if not all(v is None or storable_id(v) for v in (recipient, origin_id)):
            # A bulk cancel matches sends with that recipient and origin id: none can carry such text.
            recipient = origin_id = None
            if not ids:
                return CancelReport(cancelled=[], too_late=[], unknown=unnamed)
        if self._journal is None:
            report = core.cancel(now, ids=ids, recipient=recipient, origin_id=origin_id)
        else:
            from .journal.frames import Cancel, encode_frame

            payload = encode_frame(Cancel(now=now, ids=ids, recipient=recipient, origin_id=origin_id))
            report = await self._journaled(
                payload, lambda: core.cancel(now, ids=ids, recipient=recipient, origin_id=origin_id), True)
        self._flush()
        self._wake.set()  # type: ignore[union-attr]
        if unnamed:
            report = CancelReport(cancelled=report.cancelled, too_late=report.too_late,
                                  unknown=report.unknown + unnamed)
        return report

    def outcomes(self) -> OutcomeStream:
        """A new stream of every outcome emitted from now on; it ends when the engine closes.

        Several streams may be iterated at once, each sees every outcome::

            async for outcome in engine.outcomes():
                ...
        """
        stream = OutcomeStream()
        if self._state is _CLOSED:
            stream._end()
        else:
            self._streams.add(stream)
        return stream

    async def drain(self) -> None:
        """Wait until nothing is pending or in flight.

        On a virtual clock this moves time forward through every wake-up
        until then, and raises ``RuntimeError`` if sends stay pending with
        nothing left that could ever wake them.
        """
        self._require_running("drain")
        clock = self._clock
        if hasattr(clock, "run_until"):
            done = await clock.run_until(math.inf, stop=self._idle_or_failed)
            self._require_running("drain")
            if not done:
                core = self._require_core()
                raise RuntimeError(
                    f"Engine.drain: {core.pending} sends are pending but nothing will wake them "
                    f"(no wake-up, no batch in flight, no timer on the virtual clock)"
                )
            return
        while not self._idle():
            await self._changed()
            self._require_running("drain")

    async def run_until(self, t: Union[float, datetime]) -> None:
        """Virtual clock only: move time to ``t`` through every wake-up on the way, deterministically.

        Each wake-up of the core or of a provider sleeping on the clock fires
        at its own instant, once everything runnable has settled; see
        ``sendcore.testing.clock``.
        """
        self._require_running("run_until")
        clock = self._clock
        if not hasattr(clock, "run_until"):
            raise TypeError(
                "Engine.run_until needs a virtual clock: Engine(settings, clock=VirtualClock(start)); "
                "on the wall clock, await engine.drain() or sleep instead"
            )
        await clock.run_until(t)
        self._require_running("run_until")

    def stats(self) -> Stats:
        """A frozen snapshot of counts by state, status and reason."""
        return self._require_core().stats()

    def explain(self, send_id: str) -> Union[Explanation, None]:
        """Where a send waits and why, or how it ended (R20b); None if unknown."""
        return self._require_core().explain(send_id)

    def outcome(self, send_id: str) -> Union[Outcome, None]:
        """The final outcome of ``send_id``, or None while pending (or unknown)."""
        return self._require_core().outcome(send_id)

    def suppress(self, channel: str, address: str, scope: str = "marketing") -> None:
        """Suppress ``address`` on ``channel`` (R14): scope ``marketing`` or ``all``."""
        core = self._require_core()
        if scope not in ("marketing", "all"):
            raise ValueError(f"scope: expected 'marketing' or 'all', got {scope!r}")
        now = self._clock.now()
        if self._journal is None:
            core.suppress(channel, address, scope, now)
        else:
            from .journal.frames import Suppress, encode_frame

            self._journal.run(encode_frame(Suppress(now=now, channel=channel, address=address, scope=scope)),
                              lambda: core.suppress(channel, address, scope, now), False)
        self._flush()

    def unsuppress(self, channel: str, address: str) -> None:
        """Lift the suppression of ``address`` on ``channel``."""
        core = self._require_core()
        now = self._clock.now()
        if self._journal is None:
            core.unsuppress(channel, address, now)
        else:
            from .journal.frames import Unsuppress, encode_frame

            self._journal.run(encode_frame(Unsuppress(now=now, channel=channel, address=address)),
                              lambda: core.unsuppress(channel, address, now), False)
        self._flush()

    def delivery_report(self, send_id: str, delivered: bool, detail: str = "") -> bool:
        """Add a ``delivered``/``undelivered`` event to a sent message (R21); False if unknown."""
        return self._apply_delivery(DeliveryReport(send_id=send_id, delivered=delivered, detail=detail), "") is not None

    async def report_delivery(
        self, provider: str, payload: Any, *, url: Union[str, None] = None,
        headers: Union[Mapping[str, str], None] = None,
    ) -> Union[Outcome, None]:
        """Hand one delivery-report callback to ``provider``'s ``parse_delivery_report`` and apply it (R21).

        ``payload`` is the callback's decoded fields (for Twilio, its form
        fields); ``url`` and ``headers`` are the request's, for providers that
        check a signature. Returns the ``delivered``/``undelivered`` event
        added, or None when the callback reports no final status (such as
        Twilio's "sent") or names no message sent within retention (counted in
        ``stats().unknown_reports``). An undelivered report can put the
        address in the error segment (R13), suppress it (R14) or slow its
        route down. Raises ``DeliveryReportError`` for a payload the provider
        rejects (a bad signature, missing fields) and ``KeyError`` for an
        unknown provider name.
        """
        self._require_core()
        p = self._providers.get(provider)
        if p is None:
            raise KeyError(f"report_delivery: no provider is named {provider!r} "
                           f"(providers: {', '.join(sorted(self._providers)) or 'none'})")
        parse = getattr(p, "parse_delivery_report", None)
        if parse is None:
            raise DeliveryReportError(f"provider {provider!r} does not parse delivery reports")
        try:
            got = parse(payload, url=url, headers=headers)
        except TypeError:
            got = parse(payload)  # a provider written for the one-argument form
        except DeliveryReportError:
            raise
        if got is None:
            return None
        if isinstance(got, tuple) and len(got) == 3:
            got = DeliveryReport(send_id=str(got[0]), delivered=bool(got[1]), detail=str(got[2]))
        if not isinstance(got, DeliveryReport):
            raise DeliveryReportError(f"provider {provider!r}: parse_delivery_report returned "
                                      f"{type(got).__name__}, not a DeliveryReport or None")
        event = self._apply_delivery(got, provider)
        if isinstance(event, asyncio.Future):
            event = await event
        return event if isinstance(event, Outcome) else None

    def _apply_delivery(self, report: DeliveryReport, provider: str) -> Any:
        """Apply ``report`` now, or once the inputs queued before it are durable; the event, None or a future."""
        core = self._require_core()
        now = self._clock.now()
        if self._journal is None:
            event = core.delivery(report, provider, now)
        else:
            from .journal.frames import Delivery, encode_frame

            target = core.delivery_target(report, provider)
            if target is None:
                return core.delivery(report, provider, now)  # counts it; nothing to journal
            # Journaled by send id, so replay does not depend on the provider-id index.
            frame = Delivery(now=now, send_id=target.send_id, delivered=report.delivered, detail=report.detail,
                             provider=provider, code=report.code, temporary=report.temporary,
                             suppress=report.suppress, retry_after=report.retry_after)
            resolved = msgspec.structs.replace(report, send_id=target.send_id)
            event = self._journal.run(encode_frame(frame), lambda: core.delivery(resolved, provider, now), False)
        self._flush()
        return event

    @property
    def journal(self) -> Union[JournalStats, None]:
        """What the journal wrote and cost (None when ``[journal] path = ""``)."""
        return self._journal.stats() if self._journal is not None else None

    async def snapshot(self) -> bool:
        """Start a journal snapshot now (normally taken by size and time); False if none could start."""
        self._require_running("snapshot")
        return self._journal.snapshot() if self._journal is not None else False

    # ------------------------------------------------------------------ internals

    def _idle(self) -> bool:
        core = self._core
        return core is not None and not self._tasks and core.pending == 0 and core.in_flight == 0

    def _idle_or_failed(self) -> bool:
        return self._failure is not None or self._idle()

    def _changed(self) -> Awaitable[None]:
        """A future resolved at the next change of state (outcomes, batch finished, close)."""
        fut = self._progress
        if fut is None or fut.done():
            fut = self._progress = asyncio.get_running_loop().create_future()
        return fut

    def _notify(self) -> None:
        fut = self._progress
        if fut is not None:
            self._progress = None
            if not fut.done():
                fut.set_result(None)

    def _flush(self) -> None:
        """Hand the core's new outcomes to the hook and the streams."""
        core = self._core
        if core is None:
            return
        outcomes = core.drain_outcomes()
        if not outcomes:
            return
        hook = self._outcome_hook
        if hook is not None:
            for o in outcomes:
                try:
                    hook(o)
                except Exception as exc:  # an observer's bug must not stop sending
                    asyncio.get_running_loop().call_exception_handler(
                        {"message": "sendcore: a sendcore_outcome hook raised", "exception": exc, "outcome": o}
                    )
        if self._streams:  # (iterating an empty WeakSet still costs a guard and a generator)
            for stream in self._streams:
                stream._push(outcomes)
        self._notify()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._notify()

    async def _schedule(self) -> None:
        """The scheduler: dispatch what is due, then sleep until the next wake-up or new work."""
        core = self._core
        clock = self._clock
        wake = self._wake
        assert core is not None and wake is not None
        journal = self._journal
        if journal is not None:
            from .journal.frames import Advance, encode_frame
        idle_passes = 0
        try:
            while self._state is _RUNNING:
                wake.clear()
                now = clock.now()
                if journal is None:
                    batches = core.advance(now)
                else:
                    batches = await self._journaled(encode_frame(Advance(now=now)), partial(core.advance, now), False)
                answered = self._answered = [] if _EAGER else None
                try:
                    for batch in batches:
                        self._dispatch(batch)
                finally:
                    self._answered = None
                for batch, results, error in answered or ():
                    try:
                        await self._settle(batch, results, error)
                    except Exception as exc:
                        self._fail(exc)
                self._flush()
                if self._state is not _RUNNING:
                    break
                when = core.next_wakeup()
                if when is None:
                    idle_passes = 0
                    self._armed = math.inf
                    try:
                        await wake.wait()
                    finally:
                        self._armed = -math.inf
                    continue
                if when <= now and not batches:
                    idle_passes += 1
                    if idle_passes > _MAX_IDLE_PASSES:
                        raise RuntimeError(
                            f"core.next_wakeup() keeps returning a due instant ({when}) while advance({now}) "
                            "returns no batch: the core is stuck"
                        )
                else:
                    idle_passes = 0
                timer = call_at(clock, when, wake.set)
                self._armed = when
                try:
                    await wake.wait()
                finally:
                    self._armed = -math.inf
                    timer.cancel()
        except Exception as exc:
            self._fail(exc)
            raise

    def _dispatch(self, batch: Batch) -> None:
        name = batch.provider
        coro = self._run_batch(batch, self._providers[name], self._specs[name].timeout)
        if _EAGER:
            # The call's first step runs now, inside its own task (so a scope the provider opens
            # before its first wait belongs to that task); one that answers at once ends here.
            task = asyncio.Task(coro, loop=self._loop, eager_start=True)  # type: ignore[call-arg]
            if task.done():
                return
        else:
            task = self._loop.create_task(coro)  # type: ignore[union-attr]
        self._tasks.add(task)
        self._task_batch[task] = batch

    async def _run_batch(self, batch: Batch, provider: Any, timeout: float) -> None:
        """One batch's task: the call, then its bookkeeping (a done-callback would cost a loop pass a batch)."""
        try:
            await self._call(batch, provider, timeout)
        except Exception as exc:
            self._fail(exc)
        finally:
            task = asyncio.current_task()
            self._tasks.discard(task)  # type: ignore[arg-type]
            self._task_batch.pop(task, None)  # type: ignore[arg-type]
            self._notify()

    async def _call(self, batch: Batch, provider: Any, timeout: float) -> None:
        """One provider call under its timeout; the answer (or the failure) goes back to the core."""
        clock = self._clock
        loop = self._loop
        assert loop is not None
        error: Union[str, None] = None
        results: Any = None
        scope: Union[asyncio.Timeout, None] = None
        suspended = False
        calling = getattr(clock, "calling", None)
        try:
            with calling() if calling is not None else _NO_CALL:
                # The call's first step runs by hand: an in-process provider that
                # answers without suspending then costs no deadline timers and
                # no timeout scope. Only a call that suspends can time out, so
                # the deadline is armed when it does, measured from the start.
                started, wall_started = clock.now(), loop.time()
                pending: Any = provider.send(batch)
                if type(pending) is _CoroutineType:
                    try:
                        pending = _resume(pending, pending.send(None))
                    except StopIteration as stop:
                        results, pending = stop.value, None
                if pending is not None:
                    suspended = True
                    async with asyncio.timeout(None) as scope:
                        # The deadline is set on the engine's clock, so it is virtual on a
                        # VirtualClock; at expiry it moves the asyncio timeout to "now",
                        # which cancels the call the standard way.
                        expire = scope.reschedule
                        timer = call_at(clock, started + timeout, lambda: expire(loop.time()))
                        # On a VirtualClock, time stands still while the call does real I/O,
                        # so the deadline is also kept on the wall clock.
                        wall = loop.call_at(wall_started + timeout, expire, loop.time()) if calling is not None else None
                        try:
                            results = await pending
                        finally:
                            timer.cancel()
                            if wall is not None:
                                wall.cancel()
                # Yield once before recording: when the scheduler just started many
                # batches, every provider call gets under way before the first
                # answer is recorded (recording a large batch takes a while).
                # On Python 3.12+ the scheduler records the answers that came back
                # at once itself, after its last batch, so no yield is needed.
                if suspended or self._answered is None:
                    await asyncio.sleep(0)
        except TimeoutError as exc:
            if scope is not None and scope.expired():
                error = f"timeout: provider {batch.provider!r} did not answer within {timeout:g}s"
            else:
                error = f"provider {batch.provider!r} raised TimeoutError: {_text_of(exc)}"
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # Torn down from outside (the loop is closing): the sends go back to be retried.
                self._record_error(batch, f"provider {batch.provider!r} call cancelled")
                raise
            # The provider raised CancelledError itself (nobody cancelled the call): a failure of the batch.
            error = f"provider {batch.provider!r} raised CancelledError {_text_of(exc)}".rstrip()
        except Exception as exc:
            error = f"provider {batch.provider!r} raised {type(exc).__name__}: {_text_of(exc)}"
        if error is None:
            error = shape_problem(results, len(batch.sends), batch.provider)
        if not suspended and self._answered is not None:
            self._answered.append((batch, results, error))
            return
        if not await self._settle(batch, results, error):
            return
        self._flush()
        # Wake the scheduler only if the answer brought its next wake-up forward
        # (a retry due sooner, a provider slot freed for a waiting route): most
        # answers change nothing it is waiting for.
        when = self._core.next_wakeup()  # type: ignore[union-attr]
        if when is not None and when < self._armed:
            self._wake.set()  # type: ignore[union-attr]

    async def _settle(self, batch: Batch, results: Any, error: Union[str, None]) -> bool:
        """Hand a call's answer (or its failure) to the core, through the journal when there is one.

        False if the batch was already given up on (at close, and recorded then). The caller flushes
        the outcomes: the scheduler once per wake-up, a call's own task at once.
        """
        clock = self._clock
        core = self._core
        assert core is not None
        if core.batch(batch.id) is None:
            return False  # a late answer changes nothing
        now = clock.now()
        if self._journal is None:
            if error is None:
                core.record(batch, results, now)
            else:
                core.record_error(batch, error, now)
        else:
            from .journal import batch_check
            from .journal.frames import Record, RecordError, encode_frame

            if error is None:
                results = storable(results)
                payload = encode_frame(Record(now=now, batch=batch.id, check=batch_check(batch), results=results))
                await self._journaled(payload, partial(core.record, batch, results, now), False)
            else:
                payload = encode_frame(RecordError(now=now, batch=batch.id, check=batch_check(batch), error=error))
                await self._journaled(payload, partial(core.record_error, batch, error, now), False)
        return True

    def _record_error(self, batch: Batch, error: str) -> None:
        core = self._core
        if core is None or core.batch(batch.id) is None:  # unknown or already recorded
            return
        now = self._clock.now()
        if self._journal is None:
            core.record_error(batch, error, now)
        else:
            from .journal import batch_check
            from .journal.frames import RecordError, encode_frame

            self._journal.run(encode_frame(RecordError(now=now, batch=batch.id, check=batch_check(batch), error=error)),
                              partial(core.record_error, batch, error, now), False)
        self._flush()


_CoroutineType = types.CoroutineType
# Eager tasks (Python 3.12+) run a call's first step at once inside its own task.
_EAGER = sys.version_info >= (3, 12)
_NO_CALL = contextlib.nullcontext()


@types.coroutine
def _resume(coro: Any, yielded: Any) -> Any:
    """Drive ``coro``, already stepped once by hand (it yielded ``yielded``), to its end.

    What the awaiting task sends or throws in (a future's result, a
    cancellation) is passed on, so the call behaves as if it had been
    awaited from its start.
    """
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


def _text_of(exc: BaseException) -> str:
    """An exception's message, safe to store: its ``str()`` may raise or hold lone surrogates."""
    try:
        text = str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose str() raised>"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


_results_encoder = msgspec.msgpack.Encoder()


def _unstorable_field(send: Send) -> Union[str, None]:
    """The first field of ``send`` the journal cannot encode, or None."""
    for f in send.__struct_fields__:
        try:
            _results_encoder.encode(getattr(send, f))
        except (msgspec.EncodeError, TypeError, ValueError, OverflowError):
            return f
    return None
