"""The asyncio engine on the virtual clock and on the wall clock, under asyncio and uvloop.

Providers here are small real objects written for the test (no mocks): they
record when and what they were asked to send, and answer as scripted.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Union
from zoneinfo import ZoneInfo

import pytest

from sendcore.engine import Engine
from sendcore.errors import ConfigError, PendingLimitError
from sendcore.hookspecs import hookimpl
from sendcore.policies.base import Policy, Stage
from sendcore.plugins import PluginError
from sendcore.provider import Provider, ProviderContext, ProviderSpec
from sendcore.send import Accepted, Batch, Outcome, Reason, Result, Send, Status, TemporaryFailure
from sendcore.settings import Settings
from sendcore.testing import ProvidersPlugin, VirtualClock

START = datetime(2027, 1, 12, 12, tzinfo=timezone.utc).timestamp()

Answer = Callable[["Recorder", Batch, int], Awaitable[Any]]


def settings(**extra: Any) -> Settings:
    """Settings for tests: no journal, short retries unless said otherwise."""
    data: dict[str, Any] = {"journal": {"path": ""}, "retry": {"base_delay": "10s", "max_delay": "1m", "jitter": 0}}
    data.update(extra)
    return Settings.from_dict(data)


def sms(i: int, at: Union[float, None] = None, **kw: Any) -> Send:
    """Transactional SMS number ``i`` (transactional: no quiet hours or capping in the way)."""
    fields: dict[str, Any] = dict(
        id=f"s{i}", recipient=f"r{i}", channel="sms", to=f"+33612{i:04d}99", origin="transactional", send_at=at
    )
    fields.update(kw)
    return Send(**fields)


class Recorder(Provider):
    """A provider that records each call (clock time, batch) and answers as scripted.

    ``latency`` is slept on the engine's clock; ``answer(self, batch, call_no)``
    replaces the default all-Accepted answer.
    """

    def __init__(
        self,
        name: str = "rec",
        channels: tuple[str, ...] = ("sms",),
        *,
        latency: float = 0.0,
        max_batch: int = 100,
        max_concurrency: int = 8,
        timeout: float = 30.0,
        answer: Union[Answer, None] = None,
    ) -> None:
        self.name = name
        self.channels = channels
        self.latency = latency
        self.max_batch = max_batch
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.answer = answer
        self.calls: list[tuple[float, Batch]] = []
        self.active = 0
        self.peak = 0
        self.started: Union[ProviderContext, None] = None
        self.closed = False

    async def start(self, context: ProviderContext) -> None:
        self.started = context
        self.clock = context.clock

    async def send(self, batch: Batch) -> list[Result]:
        self.calls.append((self.clock.now(), batch))
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.latency:
                await self.clock.sleep(self.latency)
            if self.answer is not None:
                return await self.answer(self, batch, len(self.calls))
            return [Accepted(provider_id=f"p-{s.id}") for s in batch.sends]
        finally:
            self.active -= 1

    async def close(self) -> None:
        self.closed = True

    def call_times(self) -> list[float]:
        return [t - START for t, _ in self.calls]

    def ids(self) -> list[list[str]]:
        return [[s.id for s in b.sends] for _, b in self.calls]




def virtual_engine(*providers: Any, extra_plugins: tuple[Any, ...] = (), **kw: Any) -> Engine:
    return Engine(settings(**kw), clock=VirtualClock(START), plugins=[ProvidersPlugin(*providers), *extra_plugins])


async def collect(stream: Any) -> list[Outcome]:
    return [o async for o in stream]


def outcomes_of(run: Any, rec: Recorder, sends: list[Send]) -> list[Outcome]:
    """Submit ``sends`` to an engine on a VirtualClock with provider ``rec``, drain, and return every outcome."""

    async def main() -> list[Outcome]:
        async with virtual_engine(rec) as engine:
            stream = engine.outcomes()
            await engine.submit(sends)
            await engine.drain()
        return await collect(stream)

    return run(main())


# ---------------------------------------------------------------------- virtual clock


def test_submit_and_drain_dispatches_each_send_at_its_time(run: Any) -> None:
    """On the virtual clock every send leaves exactly at its send_at, and ends `sent`."""
    rec = Recorder(max_batch=10)

    async def main() -> list[Outcome]:
        async with virtual_engine(rec) as engine:
            stream = engine.outcomes()
            report = await engine.submit([sms(i, START + i) for i in range(25)])
            assert report.accepted == 25 and report.rejected == []
            await engine.drain()
            assert engine.pending == 0 and engine.in_flight == 0
            assert all(engine.outcome(f"s{i}").status is Status.SENT for i in range(25))
            assert engine.outcome("s3").provider_id == "p-s3"
        return await collect(stream)

    outcomes = run(main())
    assert rec.call_times() == [float(i) for i in range(25)]
    assert [o.send_id for o in outcomes] == [f"s{i}" for i in range(25)]
    assert {o.status for o in outcomes} == {Status.SENT}


def test_run_until_moves_time_through_wakeups_and_stops_at_t(run: Any) -> None:
    """run_until(t) fires what is due up to t, leaves the rest, and sets the clock to t."""
    rec = Recorder()

    async def main() -> None:
        async with virtual_engine(rec) as engine:
            await engine.submit([sms(1, START + 10), sms(2, START + 20), sms(3, START + 3600)])
            await engine.run_until(START + 15)
            assert engine.clock.now() == START + 15
            assert rec.call_times() == [10.0]
            assert engine.outcome("s1").status is Status.SENT and engine.outcome("s2") is None
            await engine.run_until(datetime(2027, 1, 12, 13, 0, 30, tzinfo=timezone.utc))
            assert rec.call_times() == [10.0, 20.0, 3600.0]

    run(main())


def test_provider_latency_interleaves_deterministically_with_core_wakeups(run: Any) -> None:
    """A provider sleeping 0.5 s on the clock, one call at a time: each batch leaves as the previous answers."""
    rec = Recorder(latency=0.5, max_concurrency=1, max_batch=1)

    async def main() -> list[tuple[str, Status, float]]:
        async with virtual_engine(rec) as engine:
            stream = engine.outcomes()
            await engine.submit([sms(i, START + 0.2 * i) for i in range(5)])
            await engine.drain()
        return [(o.send_id, o.status, round(o.at - START, 6)) for o in await collect(stream)]

    outcomes = run(main())
    # Due at 0, .2, .4, .6, .8 but only one call in flight: 0 -> answers at .5, next leaves at .5, ...
    assert [round(t, 6) for t in rec.call_times()] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert outcomes == [(f"s{i}", Status.SENT, 0.5 * (i + 1)) for i in range(5)]


def test_max_batch_and_max_concurrency_are_respected(run: Any) -> None:
    """R19: batches never exceed max_batch; no more than max_concurrency calls in flight."""
    rec = Recorder(max_batch=10, max_concurrency=2, latency=1.0)

    async def main() -> None:
        async with virtual_engine(rec) as engine:
            await engine.submit([sms(i, START) for i in range(55)])
            await engine.drain()

    run(main())
    sizes = [len(b.sends) for _, b in rec.calls]
    assert sizes == [10, 10, 10, 10, 10, 5]
    assert rec.peak == 2
    assert rec.call_times() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]


def test_cancel_pending_by_id_recipient_and_origin(run: Any) -> None:
    """R20: pending sends cancelled by id, recipient or origin id never leave."""
    rec = Recorder()

    async def main() -> None:
        async with virtual_engine(rec) as engine:
            await engine.submit(
                [
                    sms(1, START + 60),
                    sms(2, START + 60, recipient="alice"),
                    sms(3, START + 60, origin_id="cart-9", origin="flow"),
                    sms(4, START + 60),
                ]
            )
            report = await engine.cancel(ids=["s1", "nope"])
            assert report.cancelled == ["s1"] and report.unknown == ["nope"] and report.too_late == []
            assert (await engine.cancel(recipient="alice")).cancelled == ["s2"]
            assert (await engine.cancel(origin_id="cart-9")).cancelled == ["s3"]
            await engine.drain()
            for sid in ("s1", "s2", "s3"):
                assert engine.outcome(sid).status is Status.CANCELLED

    run(main())
    assert rec.ids() == [["s4"]]


def test_cancel_in_flight_is_too_late(run: Any) -> None:
    """R20: a send already handed to the provider is reported too_late and still ends sent."""
    rec = Recorder(latency=10.0)

    async def main() -> None:
        async with virtual_engine(rec) as engine:
            await engine.submit([sms(1, START)])
            await engine.run_until(START + 1)
            assert engine.in_flight == 1
            report = await engine.cancel(ids=["s1"])
            assert report.too_late == ["s1"] and report.cancelled == []
            await engine.drain()
            assert engine.outcome("s1").status is Status.SENT
            assert engine.clock.now() == START + 10

    run(main())


def test_shutdown_keeps_pending_sends_and_finishes_in_flight_calls(run: Any) -> None:
    """Closing stops dispatching: pending sends stay pending; an in-flight call finishes and is recorded."""
    rec = Recorder(latency=5.0)

    async def main() -> Engine:
        engine = virtual_engine(rec)
        async with engine:
            stream = engine.outcomes()
            await engine.submit([sms(1, START), sms(2, START + 3600)])
            await engine.run_until(START + 1)
            assert engine.in_flight == 1
        assert engine.closed and rec.closed
        assert engine.pending == 1 and engine.outcome("s2") is None
        assert engine.outcome("s1").status is Status.SENT  # the in-flight call was let finish
        assert engine.explain("s2").state == "scheduled"
        outcomes = await asyncio.wait_for(collect(stream), 1)  # the stream ended with the engine
        assert [o.send_id for o in outcomes] == ["s1"]
        with pytest.raises(RuntimeError, match="closed"):
            await engine.submit([sms(3)])
        return engine

    run(main())
    assert rec.ids() == [["s1"]]


def test_a_provider_that_raises_is_a_temporary_failure_then_retried(run: Any) -> None:
    """R18: an exception from the plugin fails the whole batch temporarily; the retry succeeds."""

    async def answer(p: Recorder, batch: Batch, call: int) -> list[Result]:
        if call == 1:
            raise RuntimeError("carrier socket reset")
        return [Accepted() for _ in batch.sends]

    rec = Recorder(answer=answer)

    async def main() -> list[Outcome]:
        async with virtual_engine(rec) as engine:
            stream = engine.outcomes()
            await engine.submit([sms(1, START), sms(2, START)])
            await engine.drain()
        return await collect(stream)

    outcomes = run(main())
    retrying = [o for o in outcomes if o.status is Status.RETRYING]
    assert [o.send_id for o in retrying] == ["s1", "s2"]
    assert "provider 'rec' raised RuntimeError: carrier socket reset" in retrying[0].detail
    assert [o.status for o in outcomes[2:]] == [Status.SENT, Status.SENT]
    assert rec.call_times() == [0.0, 10.0]  # retry.base_delay = 10s, no jitter


def test_a_hung_provider_times_out_on_the_wall_clock_while_virtual_time_stands_still(run: Any) -> None:
    """A call waiting on something other than the clock holds virtual time; its timeout runs on the wall clock."""

    async def answer(p: Recorder, batch: Batch, call: int) -> list[Result]:
        if call == 1:
            await asyncio.Event().wait()  # hangs forever, not on the clock
        return [Accepted() for _ in batch.sends]

    rec = Recorder(answer=answer, timeout=0.3)

    async def main() -> tuple[list[Outcome], float]:
        async with virtual_engine(rec) as engine:
            stream = engine.outcomes()
            t0 = time.monotonic()
            await engine.submit([sms(1, START)])
            await engine.drain()
            took = time.monotonic() - t0
        return await collect(stream), took

    outcomes, took = run(main())
    assert outcomes[0].status is Status.RETRYING
    assert outcomes[0].detail == "timeout: provider 'rec' did not answer within 0.3s"
    assert outcomes[0].at == START  # virtual time did not move while the call hung
    assert took >= 0.25  # the wall-clock timeout (timer granularity allows a hair early)
    assert outcomes[1].status is Status.SENT and outcomes[1].at == START + 10
    assert rec.active == 0  # the hung call was cancelled, not left behind


class Deriving(Recorder):
    """Derives its timeout in ``start`` from the batches the engine lets it have in flight."""

    async def start(self, context: ProviderContext) -> None:
        await super().start(context)
        self.limits = context.limits
        self.timeout = 0.1 * context.limits.max_concurrency


def test_a_timeout_the_provider_derives_in_start_is_the_one_the_engine_applies(run: Any) -> None:
    async def answer(p: Recorder, batch: Batch, call: int) -> list[Result]:
        await asyncio.sleep(0.4)  # not on the clock: virtual time stands still, the timeout runs on the wall clock
        return [Accepted() for _ in batch.sends]

    rec = Deriving(answer=answer, timeout=0.2, max_concurrency=2)

    async def main() -> tuple[ProviderSpec, list[Outcome]]:
        async with virtual_engine(rec, providers={"rec": {"max_concurrency": 8}}) as engine:
            stream = engine.outcomes()
            await engine.submit([sms(1, START)])
            await engine.drain()
            limits = engine.limits["rec"]
        return limits, await collect(stream)

    limits, outcomes = run(main())
    assert rec.limits.max_concurrency == 8  # the provider saw the setting, not its own declaration
    assert limits.timeout == pytest.approx(0.8) and limits.max_concurrency == 8
    assert [o.status for o in outcomes] == [Status.SENT]  # the 0.4 s call was not cut at the declared 0.2 s

    pinned = Deriving(max_concurrency=2)

    async def with_setting() -> float:
        async with virtual_engine(pinned, providers={"rec": {"max_concurrency": 8, "timeout": "3s"}}) as engine:
            return engine.limits["rec"].timeout

    assert run(with_setting()) == 3.0  # [providers.NAME] timeout, when set, wins


def test_a_timeout_derived_in_start_that_is_no_timeout_stops_the_start_naming_the_provider(run: Any) -> None:
    class Negative(Recorder):
        async def start(self, context: ProviderContext) -> None:
            await super().start(context)
            self.timeout = -1.0

    bad = Negative()

    async def main() -> Engine:
        engine = virtual_engine(bad)
        with pytest.raises(PluginError, match="provider 'rec': `timeout` after start must be a positive"):
            await engine.start()
        return engine

    engine = run(main())
    assert engine.closed and bad.closed  # the providers it had started were closed again


def test_a_call_sleeping_on_the_clock_times_out_in_virtual_time(run: Any) -> None:
    """A simulated provider sleeping on context.clock past its timeout is cut at the virtual deadline, at once."""

    async def answer(p: Recorder, batch: Batch, call: int) -> list[Result]:
        if call == 1:
            await p.clock.sleep(3600)  # simulated latency far beyond the timeout
        return [Accepted() for _ in batch.sends]

    rec = Recorder(answer=answer, timeout=2.0)

    async def main() -> tuple[list[Outcome], float]:
        async with virtual_engine(rec) as engine:
            stream = engine.outcomes()
            t0 = time.monotonic()
            await engine.submit([sms(1, START)])
            await engine.drain()
            took = time.monotonic() - t0
        return await collect(stream), took

    outcomes, took = run(main())
    assert outcomes[0].status is Status.RETRYING and outcomes[0].at == START + 2
    assert outcomes[1].status is Status.SENT and outcomes[1].at == START + 12
    assert took < 1.0


def test_fewer_results_than_sends_fails_the_batch_clearly_and_retries_it(run: Any) -> None:
    """A result count that differs from the batch is a temporary failure of the whole batch, with a clear error."""

    async def answer(p: Recorder, batch: Batch, call: int) -> list[Result]:
        results: list[Result] = [Accepted() for _ in batch.sends]
        return results[:-1] if call == 1 else results

    rec = Recorder(answer=answer)
    outcomes = outcomes_of(run, rec, [sms(i, START) for i in range(3)])
    retrying = [o for o in outcomes if o.status is Status.RETRYING]
    assert len(retrying) == 3
    assert retrying[0].detail == (
        "provider 'rec' returned 2 results for a batch of 3 sends; "
        "send() must return a list with exactly one result per send, in order"
    )
    assert rec.ids() == [["s0", "s1", "s2"], ["s0", "s1", "s2"]]  # the same ids again: idempotency keys
    assert [o.status for o in outcomes[3:]] == [Status.SENT] * 3


def test_outcome_streams_each_see_everything_and_the_hook_too(run: Any) -> None:
    """Several consumers iterate at once, each gets every outcome in order; sendcore_outcome sees the same."""
    seen_by_hook: list[Outcome] = []

    class Observer:
        @hookimpl
        def sendcore_outcome(self, outcome: Outcome) -> None:
            seen_by_hook.append(outcome)

    rec = Recorder(answer=None)

    async def main() -> tuple[list[Outcome], list[Outcome]]:
        async with virtual_engine(rec, extra_plugins=(Observer(),)) as engine:
            first = asyncio.ensure_future(collect(engine.outcomes()))
            second = asyncio.ensure_future(collect(engine.outcomes()))
            await engine.submit([sms(i, START + i) for i in range(4)])
            await engine.cancel(ids=["s3"])
            await engine.drain()
        return await first, await second

    first, second = run(main())
    assert first == second == seen_by_hook
    assert [(o.send_id, o.status) for o in first] == [
        ("s3", Status.CANCELLED),
        ("s0", Status.SENT),
        ("s1", Status.SENT),
        ("s2", Status.SENT),
    ]


def test_submit_beyond_max_pending_raises_or_waits(run: Any) -> None:
    """R24: back-pressure raises PendingLimitError; with wait=True submit waits for room instead."""
    rec = Recorder()

    async def main() -> None:
        async with virtual_engine(rec, max_pending=5) as engine:
            await engine.submit([sms(i, START + 1) for i in range(5)])
            with pytest.raises(PendingLimitError):
                await engine.submit([sms(i, START + 2) for i in range(5, 8)])
            waiting = asyncio.ensure_future(engine.submit([sms(i, START + 2) for i in range(5, 8)], wait=True))
            await asyncio.sleep(0)
            assert not waiting.done()
            await engine.run_until(START + 1.5)
            assert (await waiting).accepted == 3
            await engine.drain()
            assert engine.stats().final == {"sent": 8}

    run(main())


def test_provider_context_reports_delivery_and_opt_out(run: Any) -> None:
    """start(context) gives the options, the clock, delivery reports (R21) and opt-outs (R14)."""
    rec = Recorder(channels=("email",))

    async def main() -> list[Outcome]:
        async with Engine(
            settings(providers={"rec": {"options": {"region": "eu"}}}), clock=VirtualClock(START), plugins=[ProvidersPlugin(rec)]
        ) as engine:
            ctx = rec.started
            assert ctx is not None and ctx.settings == {"region": "eu"} and ctx.clock is engine.clock
            stream = engine.outcomes()
            await engine.submit([Send(id="e1", recipient="a", channel="email", to="a@example.com", origin="flow")])
            await engine.drain()
            ctx.report_delivery("e1", True, "250 OK")
            ctx.report_opt_out("email", "b@example.com")
            await engine.submit([Send(id="e2", recipient="b", channel="email", to="b@example.com", origin="flow")])
            await engine.drain()
        return await collect(stream)

    outcomes = run(main())
    assert [(o.send_id, o.status, o.reason) for o in outcomes] == [
        ("e1", Status.SENT, Reason.ACCEPTED),
        ("e1", Status.DELIVERED, Reason.DELIVERY_REPORT),
        ("e2", Status.SKIPPED, Reason.SUPPRESSED),
    ]
    assert rec.closed


def test_suppress_and_unsuppress(run: Any) -> None:
    """R14 through the engine: a suppressed address is skipped; unsuppressed, it is sent."""
    rec = Recorder(channels=("email",))

    def email(i: int) -> Send:
        return Send(id=f"e{i}", recipient="c", channel="email", to="c@example.com", origin="transactional")

    async def main() -> None:
        async with virtual_engine(rec) as engine:
            engine.suppress("email", "c@example.com", scope="all")
            await engine.submit([email(1)])
            await engine.drain()
            assert engine.outcome("e1").reason is Reason.SUPPRESSED
            engine.unsuppress("email", "c@example.com")
            await engine.submit([email(2)])
            await engine.drain()
            assert engine.outcome("e2").status is Status.SENT

    run(main())


def test_plugin_hooks_reach_the_core(run: Any) -> None:
    """lookup_carrier names the batch's carrier (R17); resolve_timezone places local_send_at (R10);
    a registered policy runs after the built-in ones."""

    class Hooks:
        @hookimpl
        def sendcore_lookup_carrier(self, send: Send) -> Union[str, None]:
            return "Carrier-From-Hook"

        @hookimpl
        def sendcore_resolve_timezone(self, send: Send) -> Union[str, None]:
            return "Asia/Tokyo" if send.recipient == "tokyo" else None

    class NoTagged(Policy):
        name = "no_tagged"
        stages = Stage.ADMIT

        def check(self, entries: list[Any], now: float, stage: Stage, verdicts: Any) -> list[Any]:
            out = []
            for e in entries:
                if "blocked" in e.send.tags:
                    verdicts.skip(e, Reason.POLICY, "tagged blocked")
                else:
                    out.append(e)
            return out

    class Policies:
        @hookimpl
        def sendcore_register_policies(self, register: Callable[[Any], None]) -> None:
            register(NoTagged())

    rec = Recorder()
    tokyo_ten = datetime(2027, 1, 13, 10, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp()

    async def main() -> None:
        async with virtual_engine(rec, extra_plugins=(Hooks(), Policies())) as engine:
            assert engine.policies[-1].name == "no_tagged"
            await engine.submit(
                [
                    sms(1, START),
                    sms(2, START, tags=("blocked",)),
                    sms(3, None, recipient="tokyo", local_send_at="2027-01-13T10:00"),
                ]
            )
            await engine.drain()
            assert engine.outcome("s2").reason is Reason.POLICY

    run(main())
    assert [b.carrier for _, b in rec.calls] == ["Carrier-From-Hook", "Carrier-From-Hook"]
    assert rec.calls[1][0] == tokyo_ten


def test_misuse_is_reported_clearly(run: Any) -> None:
    """run_until needs a virtual clock; the engine must be started; [providers.X] must exist."""

    async def main() -> None:
        engine = Engine(settings(), plugins=[ProvidersPlugin(Recorder())])
        with pytest.raises(RuntimeError, match="not started"):
            await engine.submit([sms(1)])
        async with engine:
            with pytest.raises(TypeError, match="virtual clock"):
                await engine.run_until(time.time() + 1)
            with pytest.raises(TypeError, match="iterable of sends"):
                await engine.submit(sms(1))  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="providers.nope"):
            async with Engine(settings(providers={"nope": {}}), plugins=[ProvidersPlugin(Recorder())]):
                pass

    run(main())


def test_virtual_runs_are_identical_across_loops() -> None:
    """The same workload gives the same outcomes, at the same instants, on asyncio and on uvloop."""
    uvloop = pytest.importorskip("uvloop")

    def workload() -> list[tuple[str, str, float]]:
        async def answer(p: Recorder, batch: Batch, call: int) -> list[Result]:
            return [TemporaryFailure("busy") if (call + i) % 3 == 0 else Accepted() for i in range(len(batch.sends))]

        rec = Recorder(latency=0.3, max_batch=4, max_concurrency=2, answer=answer)

        async def main() -> list[tuple[str, str, float]]:
            async with virtual_engine(rec) as engine:
                stream = engine.outcomes()
                await engine.submit([sms(i, START + (i % 7) * 0.1) for i in range(30)])
                await engine.drain()
            return [(o.send_id, o.status.value, o.at) for o in await collect(stream)]

        return main()  # type: ignore[return-value]

    assert asyncio.run(workload()) == uvloop.run(workload())  # type: ignore[arg-type]


# ---------------------------------------------------------------------- real clock


def test_real_clock_submit_drain_and_hang(run: Any) -> None:
    """On the wall clock: sends leave at their time; a hung call is cut at its timeout and retried."""

    async def answer(p: Recorder, batch: Batch, call: int) -> list[Result]:
        if call == 1:
            await asyncio.Event().wait()
        return [Accepted() for _ in batch.sends]

    rec = Recorder(answer=answer, timeout=0.2)

    async def main() -> tuple[float, list[Outcome]]:
        s = settings(retry={"base_delay": "0.1s", "jitter": 0})
        async with Engine(s, plugins=[ProvidersPlugin(rec)]) as engine:
            stream = engine.outcomes()
            due = time.time() + 0.3
            await engine.submit([sms(1, due)])
            await asyncio.wait_for(engine.drain(), 5)
        return due, await collect(stream)

    due, outcomes = run(main())
    first_call = rec.calls[0][0]
    assert 0 <= first_call - due < 1.0  # never early; generous upper bounds for a loaded CI machine
    assert outcomes[0].status is Status.RETRYING and outcomes[0].detail.startswith("timeout:")
    assert 0.2 <= outcomes[0].at - first_call < 1.5
    assert outcomes[1].status is Status.SENT


def test_real_clock_an_answer_that_frees_a_slot_or_retries_sooner_wakes_the_scheduler(run: Any) -> None:
    """The scheduler sleeps until its next wake-up; an answer that brings it forward must wake it.

    One call at a time (max_concurrency 1, max_batch 1): each freed slot lets the next
    queued send go at once, and a temporary failure retried after 0.1 s leaves then,
    not at the next send due a minute later.
    """
    async def answer(p: Recorder, batch: Batch, call: int) -> list[Result]:
        return [TemporaryFailure("busy") if call == 1 else Accepted() for _ in batch.sends]

    rec = Recorder(answer=answer, max_concurrency=1, max_batch=1)

    async def main() -> tuple[float, Engine]:
        s = settings(retry={"base_delay": "0.1s", "jitter": 0})
        engine = Engine(s, plugins=[ProvidersPlugin(rec)])
        async with engine:
            t0 = time.time()
            await engine.submit([sms(i) for i in range(1, 5)] + [sms(9, t0 + 60)])
            while sum(1 for i in range(1, 5) if engine.outcome(f"s{i}") is not None) < 4:
                assert time.time() - t0 < 5, f"sends left waiting: {engine.stats()}"
                await asyncio.sleep(0.005)
            return time.time() - t0, engine

    took, engine = run(main())
    assert all(engine.outcome(f"s{i}").status is Status.SENT for i in range(1, 5))
    assert len(rec.calls) == 5  # four first tries and one retry, one call at a time
    assert took < 5 and engine.pending == 1


def test_real_clock_shutdown_waits_for_in_flight_calls(run: Any) -> None:
    """Closing on the wall clock lets an in-flight call finish; later sends stay pending."""
    rec = Recorder(latency=0.2)

    async def main() -> Engine:
        engine = Engine(settings(), plugins=[ProvidersPlugin(rec)])
        async with engine:
            await engine.submit([sms(1), sms(2, time.time() + 60)])
            while not rec.calls:
                await asyncio.sleep(0.01)
        return engine

    engine = run(main())
    assert engine.outcome("s1").status is Status.SENT
    assert engine.pending == 1


class Instant(Provider):
    """Answers at once; records the wall-clock time of every call."""

    name = "instant"
    channels = ("sms",)
    max_batch = 1000
    max_concurrency = 64

    def __init__(self) -> None:
        self.calls: list[tuple[float, Batch]] = []

    async def send(self, batch: Batch) -> list[Result]:
        self.calls.append((time.time(), batch))
        # One shared result object: the provider's own work should not count as engine lateness.
        return [_ACCEPTED] * len(batch.sends)


_ACCEPTED = Accepted()


def test_real_clock_lateness_of_20000_sends_due_at_once(run: Any) -> None:
    """20,000 sends due in the same instant: every one leaves, none early; prints the lateness.

    Lateness = wall time when provider.send is called minus the send's send_at.
    The time spent inside ``core.advance`` is measured too (by wrapping the
    core's method on the instance), so a failure says whether the engine's
    own overhead (waking, starting calls) or the core's decision work is late.
    """
    provider = Instant()
    n = 20_000
    advance_took: list[float] = []

    async def main() -> float:
        async with Engine(settings(), plugins=[ProvidersPlugin(provider)]) as engine:
            core = engine.core
            advance = core.advance

            def timed(now: float) -> list[Batch]:
                t0 = time.perf_counter()
                batches = advance(now)
                if batches:
                    advance_took.append(time.perf_counter() - t0)
                return batches

            core.advance = timed  # type: ignore[method-assign]
            due = time.time() + 1.5
            sends = [
                Send(id=f"l{i}", recipient=f"r{i}", channel="sms", to=f"+3361{i:07d}", origin="transactional",
                     send_at=due, carrier="c")
                for i in range(n)
            ]
            report = await engine.submit(sends)
            assert report.accepted == n, report.rejected[:3]
            assert time.time() < due, "submitting took longer than the head start"
            await asyncio.wait_for(engine.drain(), 30)
        return due

    due = run(main())
    late = sorted(t - due for t, b in provider.calls for _ in b.sends)
    assert len(late) == n
    p50 = statistics.median(late)
    p99 = late[math.ceil(0.99 * n) - 1]
    in_core = sum(advance_took)
    print(
        f"\nreal-clock lateness ({run.loop_name}, {n} sends): p50={p50 * 1000:.1f} ms p99={p99 * 1000:.1f} ms "
        f"max={late[-1] * 1000:.1f} ms, of which core.advance {in_core * 1000:.1f} ms"
    )
    assert late[0] >= 0, "a send left early"
    # How late they are is measured by bench/test_real_clock.py and held by the
    # guard, in a process of its own: a bound here would only measure how busy
    # the machine running the suite is.


# ---------------------------------------------------------------------- the clocks


def test_virtual_clock_start_accepts_epoch_or_aware_datetime_only() -> None:
    assert VirtualClock(START).now() == START
    assert VirtualClock(datetime(2027, 1, 12, 12, tzinfo=timezone.utc)).now() == START
    with pytest.raises(ValueError, match="^start: naive datetime"):
        VirtualClock(datetime(2027, 1, 12, 12))
    with pytest.raises(TypeError, match="^start"):
        VirtualClock("2027-01-12")  # type: ignore[arg-type]


def test_virtual_sleeps_wake_in_time_order_ties_in_call_order(run: Any) -> None:
    """Sleepers wake at their instant; equal instants wake in the order they went to sleep, one at a time."""
    clock = VirtualClock(100.0)
    log: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float, then: float = 0.0) -> None:
        await clock.sleep(seconds)
        log.append((name, clock.now()))
        if then:
            await clock.sleep(then)
            log.append((name + "'", clock.now()))

    async def main() -> None:
        tasks = [asyncio.ensure_future(c) for c in (sleeper("c", 3), sleeper("a", 1, then=2), sleeper("b", 1))]
        fired: list[float] = []
        clock.call_at(103.0, lambda: fired.append(clock.now()))
        await clock.run_until(102.5)
        assert clock.now() == 102.5 and log == [("a", 101.0), ("b", 101.0)]
        await clock.run_until(110)
        await asyncio.gather(*tasks)
        assert fired == [103.0]

    run(main())
    # a' went to sleep (at 101, for 2 s) after c (at 100, for 3 s): c first at 103.
    assert log == [("a", 101.0), ("b", 101.0), ("c", 103.0), ("a'", 103.0)]


def test_virtual_clock_settles_before_moving_and_never_goes_back(run: Any) -> None:
    """Work made runnable by plain callbacks and task chains runs before time moves."""
    clock = VirtualClock(0.0)
    seen: list[float] = []

    async def chain(depth: int) -> None:
        if depth:
            await asyncio.ensure_future(chain(depth - 1))
        else:
            await clock.sleep(1)
            seen.append(clock.now())

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: loop.call_soon(lambda: asyncio.ensure_future(chain(20))))
        await clock.run_until(5)
        assert seen == [1.0] and clock.now() == 5.0
        await clock.run_until(3)  # the past: only settles
        assert clock.now() == 5.0
        with pytest.raises(ValueError, match="seconds"):
            await clock.advance(-1)

    run(main())


def test_virtual_clock_has_one_driver_at_a_time(run: Any) -> None:
    clock = VirtualClock(0.0)

    async def main() -> None:
        asyncio.ensure_future(clock.sleep(10))
        first = asyncio.ensure_future(clock.run_until(20))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already advancing"):
            await clock.run_until(30)
        await first
        assert clock.now() == 20.0 and not clock.advancing

    run(main())


def test_real_clock_sleeps_and_calls_at_wall_time(run: Any) -> None:
    from sendcore.clock import RealClock

    clock = RealClock()

    async def main() -> tuple[float, float]:
        t0 = clock.now()
        fired = asyncio.get_running_loop().create_future()
        clock.call_at(t0 + 0.05, lambda: fired.set_result(clock.now()))
        await clock.sleep(0.02)
        t1 = clock.now()
        return t1 - t0, await fired - t0

    slept, fired_after = run(main())
    assert 0.019 <= slept < 1.0 and 0.049 <= fired_after < 1.0  # upper bounds loose for a loaded machine


def test_a_failing_outcome_hook_does_not_stop_sending(run: Any) -> None:
    """An exception in a sendcore_outcome implementation goes to the loop's exception handler only."""
    reported: list[dict[str, Any]] = []

    class Broken:
        @hookimpl
        def sendcore_outcome(self, outcome: Outcome) -> None:
            raise KeyError("observer bug")

    rec = Recorder()

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reported.append(ctx))
        async with virtual_engine(rec, extra_plugins=(Broken(),)) as engine:
            await engine.submit([sms(1, START), sms(2, START + 1)])
            await engine.drain()
            assert engine.stats().final == {"sent": 2}

    run(main())
    assert [type(c["exception"]) for c in reported] == [KeyError, KeyError]
    assert reported[0]["outcome"].send_id == "s1"


def test_a_provider_failing_to_start_closes_the_others(run: Any) -> None:
    class NoStart(Recorder):
        async def start(self, context: ProviderContext) -> None:
            raise ConnectionError("SMPP bind refused")

    good = Recorder("good")
    bad = NoStart("bad", ("email",))

    async def main() -> None:
        engine = virtual_engine(good, bad)
        with pytest.raises(ConnectionError, match="SMPP bind refused"):
            async with engine:
                pass
        assert engine.closed

    run(main())
    assert good.started is not None and good.closed


def test_engine_run_uses_uvloop_when_installed() -> None:
    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    module = Engine.run(main())
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover
        assert module.startswith("asyncio")
    else:
        assert module.startswith("uvloop")


def test_started_and_failure_tell_an_operator_the_engine_state(run: Any) -> None:
    """``started`` once the core is recovered (still after close); ``failure`` None while healthy."""
    engine = Engine(settings(), clock=VirtualClock(START), plugins=[ProvidersPlugin(Recorder())],
                    load_entrypoints=False)
    assert not engine.started and engine.failure is None

    async def main() -> bool:
        async with engine:
            return engine.started

    assert run(main()) is True
    assert engine.started and engine.closed and engine.failure is None



def test_a_call_that_suspends_on_a_future_gets_its_answer_or_times_out_from_its_start(run: Any) -> None:
    """The engine steps a call once by hand; one that suspends gets the future's value, or its timeout.

    A future is not a sleep on the clock, so virtual time stands still while
    it waits and the deadline runs on the wall clock.
    """

    async def answer(p: Recorder, batch: Batch, call: int) -> list[Result]:
        fut = asyncio.get_running_loop().create_future()
        if call > 1:  # the first call never answers
            asyncio.get_running_loop().call_soon(fut.set_result, [Accepted(provider_id="f") for _ in batch.sends])
        return await fut

    rec = Recorder(answer=answer, timeout=0.3)

    async def main() -> list[Outcome]:
        async with virtual_engine(rec) as engine:
            stream = engine.outcomes()
            await engine.submit([sms(1, START)])
            await engine.drain()
        return await collect(stream)

    outcomes = run(main())
    assert outcomes[0].status is Status.RETRYING and outcomes[0].at == START
    assert outcomes[0].detail == "timeout: provider 'rec' did not answer within 0.3s"
    assert outcomes[1].status is Status.SENT and outcomes[1].at == rec.calls[1][0] > START
    assert outcomes[1].provider_id == "f"


def test_every_call_of_one_wake_up_is_under_way_before_the_first_answer_is_recorded(run: Any) -> None:
    """Calls that answer at once are recorded after the last batch of the same wake-up has been handed over.

    Recording a large batch takes a while; the sends of later batches must not
    wait for it. Each call sees every send of that instant in flight.
    """
    states: list[list[str]] = []
    engine_of: list[Engine] = []

    async def answer(p: Recorder, batch: Batch, call: int) -> list[Result]:
        states.append([engine_of[0].explain(f"s{i}").state for i in range(30)])  # type: ignore[union-attr]
        return [Accepted(provider_id=f"p-{s.id}") for s in batch.sends]

    rec = Recorder(max_batch=10, answer=answer)

    async def main() -> list[Outcome]:
        async with virtual_engine(rec) as engine:
            engine_of.append(engine)
            stream = engine.outcomes()
            await engine.submit([sms(i, START) for i in range(30)])
            await engine.drain()
        return await collect(stream)

    outcomes = run(main())
    assert len(rec.calls) == 3 and all(t == START for t, _ in rec.calls)
    assert states == [["in_flight"] * 30] * 3
    assert sorted(o.send_id for o in outcomes if o.status is Status.SENT) == sorted(f"s{i}" for i in range(30))


def test_answers_at_once_raises_at_once_and_suspends_in_one_wake_up_each_end_right(run: Any) -> None:
    """One wake-up's calls: one answers without suspending, one raises before suspending, one sleeps then answers.

    Each ends as its own answer says, at its own instant; the one that raised
    is retried, and nothing else is disturbed.
    """

    async def answer(p: Recorder, batch: Batch, call: int) -> list[Result]:
        if call == 2:
            raise ValueError("bad batch")
        if call == 3:
            await p.clock.sleep(2.0)
        return [Accepted(provider_id=f"c{call}") for _ in batch.sends]

    rec = Recorder(max_batch=1, answer=answer)
    outcomes = outcomes_of(run, rec, [sms(i, START) for i in range(3)])
    by_id: dict[str, list[tuple[Status, float, str]]] = {}
    for o in outcomes:
        by_id.setdefault(o.send_id, []).append((o.status, o.at - START, o.provider_id or o.detail))
    first, second, third = (rec.ids()[i][0] for i in range(3))
    assert by_id[first] == [(Status.SENT, 0.0, "c1")]
    assert by_id[second][0] == (Status.RETRYING, 0.0, "provider 'rec' raised ValueError: bad batch")
    assert by_id[second][-1][0] is Status.SENT
    assert by_id[third] == [(Status.SENT, 2.0, "c3")]


def test_a_providers_own_timeout_scope_cuts_its_own_call_and_nothing_else(run: Any) -> None:
    """A ``send()`` that enters ``asyncio.timeout`` before it first waits: that scope belongs to the call's task.

    Its expiry ends the call with the provider's TimeoutError (a temporary
    failure, retried); the engine's scheduler is not touched and later sends
    still go out.
    """

    async def answer(p: Recorder, batch: Batch, call: int) -> list[Result]:
        async with asyncio.timeout(0.05):
            if call == 1:
                await asyncio.sleep(10)  # a real wait, longer than the provider's own timeout
        return [Accepted(provider_id=f"c{call}") for _ in batch.sends]

    rec = Recorder(answer=answer)

    async def main() -> list[Outcome]:
        async with asyncio.timeout(30):  # a broken scope would stop the scheduler: fail, do not hang
            async with virtual_engine(rec) as engine:
                stream = engine.outcomes()
                await engine.submit([sms(1, START)])
                await engine.drain()
                await engine.submit([sms(2, START + 3600)])
                await engine.drain()
            return await collect(stream)

    outcomes = run(main())
    assert [(o.send_id, o.status) for o in outcomes] == [("s1", Status.RETRYING), ("s1", Status.SENT),
                                                         ("s2", Status.SENT)]
    assert outcomes[0].detail.startswith("provider 'rec' raised TimeoutError")
    assert outcomes[2].at == START + 3600


def test_every_call_runs_in_a_task_of_its_own_and_none_is_kept_once_it_ended(run: Any) -> None:
    """Calls that answer at once, suspend first, or raise at once each run ``send()`` inside a task that is
    neither the scheduler nor another call's; once drained, the engine holds no task of any call.

    (On Python 3.12+ calls start as eager tasks and one that answers at once ends inside ``create``: it
    must not be left in the engine's set of running calls.)
    """
    tasks: list[Any] = []
    raised: set[str] = set()

    async def answer(p: Recorder, batch: Batch, call: int) -> list[Result]:
        tasks.append(asyncio.current_task())
        sid = batch.sends[0].id
        if call % 3 == 0 and sid not in raised:
            raised.add(sid)
            raise RuntimeError("refused at once")
        if call % 3 == 1:
            await asyncio.sleep(0)
        return [Accepted(provider_id=f"c{call}") for _ in batch.sends]

    rec = Recorder(answer=answer, max_batch=1, max_concurrency=8)

    async def main() -> tuple[list[Outcome], Any, int, int]:
        async with asyncio.timeout(30):
            async with virtual_engine(rec) as engine:
                stream = engine.outcomes()
                await engine.submit([sms(i, START) for i in range(24)])
                await engine.drain()
                kept = len(engine._tasks) + len(engine._task_batch)
                scheduler = engine._scheduler
            return await collect(stream), scheduler, kept, len(rec.calls)

    outcomes, scheduler, kept, calls = run(main())
    assert kept == 0
    assert calls == len(tasks) == 24 + len(raised) and raised
    assert all(t is not None and t is not scheduler for t in tasks)
    assert len({id(t) for t in tasks}) == len(tasks)  # one task per call, none shared
    sent = [o.send_id for o in outcomes if o.status is Status.SENT]
    assert sorted(sent) == sorted(f"s{i}" for i in range(24))
