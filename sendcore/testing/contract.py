"""The provider contract kit: point it at your provider and it tells you whether the engine can drive it.

Two ways in, like trio's ``check_one_way_stream`` and fsspec's abstract tests:

- ``await check_provider(factory, ...)`` runs every check and raises
  ``ContractError`` listing what failed (it returns a ``ContractReport``);
- subclass ``ProviderContract`` in your test suite and override
  ``provider_factory`` (and, optionally, the class attributes); each check
  becomes one pytest test. ``provider_factory`` returns a callable building a
  fresh provider; write it as a plain method, or as a pytest fixture when it
  needs other fixtures (a local test server, say)::

      from sendcore.testing import ProviderContract

      class TestMyProvider(ProviderContract):
          failing_sends = [Send(id="bad", recipient="r", channel="sms", to="+33612000000", origin="flow")]
          rate_limit_options = {"capacity": 1}

          def provider_factory(self):
              return lambda: MyProvider(api_key="test")

Skipped checks are not passes. A check that needs something you did not give
(``failing_sends`` for ``error_mapping``, ``rate_limit_options`` or
``rate_limit_sends`` for ``rate_limit``, ``idempotent=False`` for
``idempotency``) is *skipped, with the reason*; with ``strict=True`` (the
default, in ``check_provider`` and in ``ProviderContract``) a skip fails the
run, so a partial check never looks like a pass. Set ``strict=False`` to see
skips reported instead (``ContractReport.skipped``, pytest's skip summary).

What is checked:

``declaration``
    ``name``, ``channels``, ``max_batch``, ``max_concurrency``, ``timeout``,
    ``rate``/``burst`` have usable values; ``send`` (and ``start``/``close``
    when present) are coroutine functions.
``results``
    ``send(batch)`` returns a list with exactly one ``Result`` per send
    (``Accepted``, ``TemporaryFailure``, ``PermanentFailure``, ``RateLimited``),
    for a batch of one and a larger batch on every channel.
``engine_batches``
    Driven by a real ``Engine``: batches never exceed ``max_batch`` nor mix
    channels, every submitted ``send.id`` reaches the provider unchanged (it
    is the idempotency key), and every send ends without a contract error
    (wrong result count, exception, timeout).
``idempotency``
    (``idempotent=True``) sending an accepted send again returns ``Accepted``
    with the same provider id.
``error_mapping``
    (needs ``failing_sends``) per-send errors come back as
    ``TemporaryFailure``/``PermanentFailure`` at the failing sends' positions,
    not as an exception, and the other sends still get their own result.
``timeout``
    a full batch (``max_batch`` sends, at most 1000) finishes within the
    declared ``timeout``.
``rate_limit``
    (needs ``rate_limit_options`` or ``rate_limit_sends``) overloading the
    provider yields ``RateLimited`` with a positive, finite ``retry_after``.
    Every ``RateLimited`` seen by any check must satisfy this too.

Time: by default calls run on the wall clock (``clock="real"``), which suits
providers doing real I/O against a test server. Providers that only sleep on
``context.clock`` (simulated latency) can use ``clock="virtual"``: the checks
then run on a ``VirtualClock`` and take no real time.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from typing import Any, Callable, Iterable, Literal, Sequence, Union

import msgspec

try:  # pytest is only needed for the ProviderContract base class
    import pytest
except ImportError:  # pragma: no cover - exercised only without pytest installed
    pytest = None  # type: ignore[assignment]

from ..clock import RealClock
from ..provider import ProviderSpec, spec_of
from ..results import RESULT_NAMES, RESULT_TYPES, shape_problem
from ..send import Accepted, Batch, Outcome, PermanentFailure, RateLimited, Send, Status, TemporaryFailure
from ..settings import Settings
from .clock import VirtualClock
from .plugins import ProvidersPlugin

__all__ = ["CHECKS", "ContractError", "ContractReport", "ProviderContract", "check_provider"]

_PHONE = frozenset({"sms", "mms", "whatsapp", "rcs", "voice"})

#: Every check, in the order ``check_provider`` runs them.
CHECKS = ("declaration", "results", "engine_batches", "idempotency", "error_mapping", "timeout", "rate_limit")

ClockKind = Literal["real", "virtual"]


class ContractError(AssertionError):
    """A provider broke the contract; the message names the check and what was wrong."""


class _Skip(Exception):
    """A check that cannot run with what the plugin author supplied."""


class ContractReport(msgspec.Struct, kw_only=True):
    """What ``check_provider`` found: the checks passed, skipped (with why) and failed (with why)."""

    provider: str
    passed: list[str] = []
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}

    @property
    def ok(self) -> bool:
        """True when every check ran and passed: nothing failed, nothing skipped."""
        return not self.failed and not self.skipped

    def summary(self) -> str:
        """One line per check: passed, skipped (with why) or failed (with why)."""
        lines = [f"passed  {name}" for name in self.passed]
        lines += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        lines += [f"FAILED  {name}: {why}" for name, why in self.failed.items()]
        return "\n".join(lines)


def default_send(i: int, channel: str) -> Send:
    """A valid transactional send number ``i`` (< 10000) on ``channel``, with a plausible address."""
    if channel in _PHONE:
        to = f"+33612{i % 10000:04d}99"  # a valid French mobile number, never ending in 0000
    elif channel == "email":
        to = f"contract{i}@example.com"
    else:
        to = f"contract-device-{i}"
    return Send(
        id=f"contract-{channel}-{i}",
        recipient=f"contract-recipient-{i}",
        channel=channel,
        to=to,
        origin="transactional",
        body="sendcore provider contract check",
    )


class _Context:
    """A ``ProviderContext`` that records what the provider reports."""

    def __init__(self, clock: Any, options: dict[str, Any], limits: ProviderSpec) -> None:
        self.clock = clock
        self.settings = dict(options)
        self.limits = limits
        self.deliveries: list[tuple[str, bool, str]] = []
        self.opt_outs: list[tuple[str, str]] = []

    def report_delivery(self, send_id: str, delivered: bool, detail: str = "") -> None:
        """Record a delivery report."""
        self.deliveries.append((send_id, delivered, detail))

    def report_opt_out(self, channel: str, address: str) -> None:
        """Record an opt-out."""
        self.opt_outs.append((channel, address))


class _Harness:
    """One started provider instance, its clock, and calls bounded by the declared timeout."""

    def __init__(self, provider: Any, clock: Any, context: _Context) -> None:
        self.provider = provider
        self.clock = clock
        self.context = context
        self.batch_id = 0

    def batch(self, sends: list[Send]) -> Batch:
        self.batch_id += 1
        first = sends[0]
        return Batch(
            id=self.batch_id,
            provider=self.provider.name,
            channel=first.channel,
            sender=first.sender or "",
            carrier="",
            sends=sends,
            attempts=[1] * len(sends),
        )

    async def call(self, sends: list[Send], check: str) -> list[Any]:
        """``provider.send`` on a batch of ``sends``; fail unless it answers in time with valid results."""
        provider = self.provider
        timeout = float(getattr(provider, "timeout", 30.0))
        batch = self.batch(sends)
        task = asyncio.ensure_future(provider.send(batch))
        clock = self.clock
        v0 = clock.now()
        try:
            if isinstance(clock, VirtualClock):
                await clock.run_until(v0 + timeout, stop=task.done)
                if not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    raise ContractError(
                        f"{check}: send() on a batch of {len(sends)} did not answer within its declared "
                        f"timeout of {timeout:g}s (virtual time)"
                    )
            else:
                done, _ = await asyncio.wait({task}, timeout=timeout)
                if not done:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    raise ContractError(
                        f"{check}: send() on a batch of {len(sends)} did not answer within its declared "
                        f"timeout of {timeout:g}s"
                    )
            results = task.result()
        except ContractError:
            raise
        except Exception as exc:
            raise ContractError(
                f"{check}: send() raised {type(exc).__name__}: {exc}; per-send errors must be returned as "
                "TemporaryFailure/PermanentFailure results (an exception fails the whole batch)"
            ) from exc
        _check_results(results, len(sends), check)
        return results


def _check_results(results: Any, n: int, check: str) -> None:
    problem = shape_problem(results, n, "under test")
    if problem is not None:
        raise ContractError(f"{check}: {problem}")
    for i, r in enumerate(results):
        if not isinstance(r, RESULT_TYPES):
            raise ContractError(f"{check}: result {i} is {r!r}; every result must be {RESULT_NAMES}")
        if isinstance(r, RateLimited):
            ra = r.retry_after
            if isinstance(ra, bool) or not isinstance(ra, (int, float)) or not (ra > 0 and math.isfinite(ra)):
                raise ContractError(
                    f"{check}: result {i} is RateLimited(retry_after={ra!r}); retry_after must be a positive, "
                    "finite number of seconds"
                )


async def _make(factory: Callable[[], Any]) -> Any:
    provider = factory()
    if inspect.isawaitable(provider):
        provider = await provider
    return provider


class _Kit:
    """Runs the checks against fresh provider instances from ``factory``."""

    def __init__(
        self,
        factory: Callable[[], Any],
        *,
        channels: Union[Sequence[str], None],
        make_send: Callable[[int, str], Send],
        failing_sends: Sequence[Send],
        rate_limit_sends: Union[Sequence[Send], None],
        rate_limit_options: Union[dict[str, Any], None],
        options: Union[dict[str, Any], None],
        idempotent: bool,
        clock: ClockKind,
        start: float,
    ) -> None:
        self.factory = factory
        self.channels = channels
        self.make_send = make_send
        self.failing_sends = list(failing_sends)
        self.rate_limit_sends = rate_limit_sends
        self.rate_limit_options = rate_limit_options
        self.options = dict(options or {})
        self.idempotent = idempotent
        self.clock_kind = clock
        self.start = start
        self.counter = 0

    def new_clock(self) -> Any:
        return VirtualClock(self.start) if self.clock_kind == "virtual" else RealClock()

    def sends(self, n: int, channel: str) -> list[Send]:
        out = []
        for _ in range(n):
            out.append(self.make_send(self.counter, channel))
            self.counter += 1
        return out

    def channels_of(self, provider: Any) -> list[str]:
        declared = list(getattr(provider, "channels", ()))
        if self.channels is None:
            return declared
        missing = [c for c in self.channels if c not in declared]
        if missing:
            raise ContractError(f"declaration: channels {missing} were asked for but the provider declares {declared}")
        return list(self.channels)

    async def harness(self, options: Union[dict[str, Any], None] = None) -> _Harness:
        provider = await _make(self.factory)
        clock = self.new_clock()
        context = _Context(clock, self.options if options is None else options, spec_of(provider))
        start = getattr(provider, "start", None)
        if start is not None:
            await start(context)
        return _Harness(provider, clock, context)

    async def closing(self, h: _Harness) -> None:
        close = getattr(h.provider, "close", None)
        if close is not None:
            await close()

    # The checks

    async def check_declaration(self) -> None:
        from ..plugins import PluginError, _validate_provider

        provider = await _make(self.factory)
        try:
            _validate_provider(provider, "contract")
        except PluginError as exc:
            raise ContractError(f"declaration: {exc}") from None
        burst = getattr(provider, "burst", None)
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 0):
            raise ContractError(f"declaration: `burst` must be None or an integer >= 0; got {burst!r}")
        self.channels_of(provider)

    async def check_results(self) -> None:
        h = await self.harness()
        try:
            size = min(int(getattr(h.provider, "max_batch", 100)), 7)
            for channel in self.channels_of(h.provider):
                for n in sorted({1, size}):
                    await h.call(self.sends(n, channel), "results")
        finally:
            await self.closing(h)

    async def check_engine_batches(self) -> None:
        from ..engine import Engine

        provider = await _make(self.factory)
        seen: list[Batch] = []
        spy = _Spy(provider, seen)
        max_batch = int(getattr(provider, "max_batch", 100))
        channels = self.channels_of(provider)

        name = provider.name
        # One attempt per send: a temporary failure ends the send instead of
        # waiting out a retry backoff; no journal files.
        settings = Settings.from_dict(
            {"retry": {"max_attempts": 1}, "providers": {name: {"options": self.options}}, "journal": {"path": ""}}
        )
        per_channel = min(2 * max_batch + 1, 1000)
        submitted: dict[str, Send] = {}
        outcomes: list[Outcome] = []
        engine = Engine(settings, clock=self.new_clock(), plugins=[ProvidersPlugin(spy)], load_entrypoints=False)
        async with engine:
            stream = engine.outcomes()
            for channel in channels:
                sends = [msgspec.structs.replace(s, provider=name) for s in self.sends(per_channel, channel)]
                report = await engine.submit(sends)
                if report.rejected:
                    raise ContractError(f"engine_batches: the engine rejected the kit's sends: {report.rejected[:3]}")
                submitted.update((s.id, s) for s in sends)
            timeout = float(getattr(provider, "timeout", 30.0))
            if isinstance(engine.clock, VirtualClock):
                await engine.drain()
            else:
                budget = timeout * (len(submitted) / max_batch + 2)
                try:
                    await asyncio.wait_for(engine.drain(), budget)
                except asyncio.TimeoutError:
                    raise ContractError(f"engine_batches: {engine.pending} sends still pending after {budget:g}s") from None
        async for o in stream:
            outcomes.append(o)
        got_ids: set[str] = set()
        for b in seen:
            if len(b.sends) > max_batch:
                raise ContractError(f"engine_batches: a batch of {len(b.sends)} exceeds max_batch={max_batch}")
            for s in b.sends:
                if s.channel != b.channel:
                    raise ContractError(f"engine_batches: batch {b.id} mixes channels {b.channel!r} and {s.channel!r}")
                if s.id not in submitted or submitted[s.id] != s:
                    raise ContractError(f"engine_batches: the provider received send {s.id!r}, which was not submitted as is")
                got_ids.add(s.id)
        missing = set(submitted) - got_ids
        if missing:
            raise ContractError(f"engine_batches: {len(missing)} sends never reached the provider, e.g. {sorted(missing)[:3]}")
        for o in outcomes:
            if o.status in (Status.FAILED, Status.RETRYING) and o.detail.startswith(
                (f"provider {name!r} returned", f"provider {name!r} raised", "timeout:")
            ):
                raise ContractError(f"engine_batches: send {o.send_id}: {o.detail}")
        unfinished = [sid for sid in submitted if engine.outcome(sid) is None]
        if unfinished:
            raise ContractError(f"engine_batches: {len(unfinished)} sends have no final outcome, e.g. {unfinished[:3]}")

    async def call_in_batches(self, h: Any, sends: list[Send], check: str) -> list[Any]:
        """Call the provider with ``sends`` split into batches no larger than its ``max_batch``."""
        size = max(1, int(getattr(h.provider, "max_batch", 100) or 1))
        results: list[Any] = []
        for i in range(0, len(sends), size):
            results.extend(await h.call(sends[i : i + size], check))
        return results

    async def check_idempotency(self) -> None:
        if not self.idempotent:
            raise _Skip("idempotent=False: the provider does not promise idempotent replays")
        h = await self.harness()
        try:
            channel = self.channels_of(h.provider)[0]
            sends = self.sends(3, channel)
            first = await self.call_in_batches(h, sends, "idempotency")
            again = await self.call_in_batches(h, sends, "idempotency")
            replayed = 0
            for s, a, b in zip(sends, first, again):
                if isinstance(a, Accepted):
                    replayed += 1
                    if not isinstance(b, Accepted) or b.provider_id != a.provider_id:
                        raise ContractError(
                            f"idempotency: send {s.id!r} was accepted as {a.provider_id!r}, then sent again with the "
                            f"same id it got {b!r}; a replay must return the same Accepted (R22)"
                        )
            if not replayed:
                raise _Skip("no send was accepted, nothing to replay")
        finally:
            await self.closing(h)

    async def check_error_mapping(self) -> None:
        if not self.failing_sends:
            raise _Skip("no failing_sends given: pass sends the provider must answer with a failure")
        h = await self.harness()
        try:
            for bad in self.failing_sends:
                ok = self.sends(2, bad.channel)
                batch = [ok[0], bad, ok[1]]
                results = await self.call_in_batches(h, batch, "error_mapping")
                if not isinstance(results[1], (TemporaryFailure, PermanentFailure)):
                    raise ContractError(
                        f"error_mapping: the failing send {bad.id!r} at position 1 of 3 got {results[1]!r}; "
                        "expected TemporaryFailure or PermanentFailure at its own position"
                    )
        finally:
            await self.closing(h)

    async def check_timeout(self) -> None:
        h = await self.harness()
        try:
            n = min(int(getattr(h.provider, "max_batch", 100)), 1000)
            channel = self.channels_of(h.provider)[0]
            await h.call(self.sends(n, channel), "timeout")
        finally:
            await self.closing(h)

    async def check_rate_limit(self) -> None:
        if self.rate_limit_options is None and self.rate_limit_sends is None:
            raise _Skip("no rate_limit_options or rate_limit_sends given: nothing is known to overload the provider")
        h = await self.harness(self.rate_limit_options)
        try:
            max_batch = int(getattr(h.provider, "max_batch", 100))
            if self.rate_limit_sends is not None:
                sends = list(self.rate_limit_sends)
            else:
                sends = self.sends(min(2 * max_batch, 1000), self.channels_of(h.provider)[0])
            limited: list[RateLimited] = []
            for i in range(0, len(sends), max_batch):
                results = await h.call(sends[i : i + max_batch], "rate_limit")
                limited.extend(r for r in results if isinstance(r, RateLimited))
            if not limited:
                raise ContractError(
                    f"rate_limit: {len(sends)} sends in quick succession got no RateLimited result; an overloaded "
                    "provider must push back with RateLimited(retry_after) so the engine slows the route"
                )
        finally:
            await self.closing(h)


class _Spy:
    """Delegates to a provider and records every batch the engine hands it."""

    def __init__(self, provider: Any, seen: list[Batch]) -> None:
        self._provider = provider
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)

    async def send(self, batch: Batch) -> Any:
        self._seen.append(batch)
        return await self._provider.send(batch)


async def check_provider(
    factory: Callable[[], Any],
    *,
    channels: Union[Sequence[str], None] = None,
    make_send: Callable[[int, str], Send] = default_send,
    failing_sends: Iterable[Send] = (),
    rate_limit_sends: Union[Sequence[Send], None] = None,
    rate_limit_options: Union[dict[str, Any], None] = None,
    options: Union[dict[str, Any], None] = None,
    idempotent: bool = True,
    clock: ClockKind = "real",
    start: float = 1_800_000_000.0,
    checks: Sequence[str] = CHECKS,
    strict: bool = True,
) -> ContractReport:
    """Run the provider contract checks against providers made by ``factory``; raise ``ContractError`` if any fails.

    Keyword arguments:

    - ``factory()``: returns a fresh provider (or an awaitable of one); each
      check builds its own instance and starts it with ``options``.
    - ``channels``: the channels exercised (default: every declared one).
    - ``make_send(i, channel)``: builds the ``i``-th valid send on a channel
      (default ``default_send``: transactional sends with plausible addresses).
    - ``failing_sends``: sends the provider must answer with a failure result
      (needed by ``error_mapping``).
    - ``rate_limit_sends``: sends the provider answers with ``RateLimited``;
      or ``rate_limit_options``: options that make it easy to overload (one of
      them is needed by ``rate_limit``).
    - ``options``: the ``context.settings`` every check starts the provider
      with (what ``[providers.NAME.options]`` would give it).
    - ``idempotent``: the provider promises that a resent ``send.id`` is
      answered as before (checked by ``idempotency``; False skips it).
    - ``clock``: "real" (wall clock, for providers doing real I/O) or
      "virtual" (for providers that only sleep on ``context.clock``).
    - ``start``: the virtual clock's first instant (epoch seconds).
    - ``checks``: which checks to run (default: all of ``CHECKS``).
    - ``strict``: a skipped check fails the run (default True); with False,
      skips are only reported in ``ContractReport.skipped``.

    Returns the ``ContractReport`` (``report.summary()`` prints it) when no
    check failed.
    """
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"checks: unknown check(s) {unknown}; known: {', '.join(CHECKS)}")
    kit = _Kit(
        factory,
        channels=channels,
        make_send=make_send,
        failing_sends=list(failing_sends),
        rate_limit_sends=rate_limit_sends,
        rate_limit_options=rate_limit_options,
        options=options,
        idempotent=idempotent,
        clock=clock,
        start=start,
    )
    probe = await _make(factory)
    report = ContractReport(provider=str(getattr(probe, "name", type(probe).__name__)))
    for name in checks:
        try:
            await getattr(kit, f"check_{name}")()
        except _Skip as why:
            report.skipped[name] = str(why)
            if strict:
                report.failed[name] = _skip_failure(name, str(why))
        except ContractError as exc:
            report.failed[name] = str(exc)
        else:
            report.passed.append(name)
    if report.failed:
        lines = "\n".join(f"- {msg}" for msg in report.failed.values())
        raise ContractError(f"provider {report.provider!r} breaks the sendcore provider contract:\n{lines}")
    return report


def _skip_failure(check: str, why: str) -> str:
    return (f"{check}: skipped ({why}); with strict=True a skipped check fails: give what it needs, "
            "or pass strict=False to accept the skip")


class ProviderContract:
    """A pytest base class: subclass it, override ``provider_factory``, and each check is a test.

    ``provider_factory`` returns a callable that builds a fresh provider: a
    plain method, or a pytest fixture of that name (when it needs other
    fixtures). Class attributes mirror ``check_provider``'s keyword
    arguments: ``channels``, ``failing_sends``, ``rate_limit_sends``,
    ``rate_limit_options``, ``options``, ``idempotent``, ``clock`` ("real" or
    "virtual"), ``make_send``, ``strict``. A check that needs something not
    given fails, saying what to give; with ``strict = False`` it is skipped
    with that reason instead.
    """

    channels: Union[Sequence[str], None] = None
    failing_sends: Sequence[Send] = ()
    rate_limit_sends: Union[Sequence[Send], None] = None
    rate_limit_options: Union[dict[str, Any], None] = None
    options: Union[dict[str, Any], None] = None
    idempotent: bool = True
    clock: ClockKind = "real"
    make_send: Callable[[int, str], Send] = staticmethod(default_send)  # type: ignore[assignment]
    strict: bool = True

    def provider_factory(self) -> Callable[[], Any]:
        """Override: return a callable that builds a fresh provider (a plain method or a pytest fixture)."""
        raise NotImplementedError("override provider_factory to return a callable building your provider")

    def _factory(self, request: Any) -> Callable[[], Any]:
        # A fixture named provider_factory wins; a plain method override is called directly.
        try:
            return request.getfixturevalue("provider_factory")
        except pytest.FixtureLookupError:  # type: ignore[union-attr]
            return self.provider_factory()

    def _run(self, request: Any, check: str) -> None:
        factory = self._factory(request)
        kit = _Kit(
            factory,
            channels=self.channels,
            make_send=type(self).make_send,
            failing_sends=list(self.failing_sends),
            rate_limit_sends=self.rate_limit_sends,
            rate_limit_options=self.rate_limit_options,
            options=self.options,
            idempotent=self.idempotent,
            clock=self.clock,
            start=1_800_000_000.0,
        )
        try:
            asyncio.run(getattr(kit, f"check_{check}")())
        except _Skip as why:
            if self.strict:
                pytest.fail(_skip_failure(check, str(why)), pytrace=False)  # type: ignore[union-attr]
            pytest.skip(str(why))  # type: ignore[union-attr]

    def test_declaration(self, request: Any) -> None:
        """The provider declares name, channels, limits and async methods correctly."""
        self._run(request, "declaration")

    def test_results(self, request: Any) -> None:
        """One valid Result per send, for a batch of one and a larger batch on every channel."""
        self._run(request, "results")

    def test_engine_batches(self, request: Any) -> None:
        """Driven by the engine: batches within max_batch, ids passed through, no contract errors."""
        self._run(request, "engine_batches")

    def test_idempotency(self, request: Any) -> None:
        """Sending an accepted send again returns the same Accepted."""
        self._run(request, "idempotency")

    def test_error_mapping(self, request: Any) -> None:
        """Per-send errors come back as failure results at their own positions."""
        self._run(request, "error_mapping")

    def test_timeout(self, request: Any) -> None:
        """A full batch finishes within the declared timeout."""
        self._run(request, "timeout")

    def test_rate_limit(self, request: Any) -> None:
        """Overload yields RateLimited with a positive retry_after."""
        self._run(request, "rate_limit")

