"""The sandbox provider: a deterministic simulated carrier network (plugins/sandbox).

Unit tests drive ``SandboxProvider`` directly with a small recording
``ProviderContext`` on a ``VirtualClock``; the last tests run it inside the
real ``Engine``, as the demo does.
"""

from __future__ import annotations

import asyncio
import math
import random
from datetime import datetime, timezone
from typing import Any

import pytest

from sendcore.errors import ConfigError, DeliveryReportError
from sendcore.provider import DeliveryReport
from sendcore.hookspecs import hookimpl
from sendcore.send import Accepted, Batch, PermanentFailure, RateLimited, Send, TemporaryFailure
from sendcore.testing import ProviderContract, VirtualClock
from sendcore_sandbox import SandboxOptions, SandboxProvider

START = datetime(2026, 11, 27, 9, tzinfo=timezone.utc).timestamp()


class RecordingContext:
    """A ``ProviderContext`` that records what the provider reports, with the time it did."""

    def __init__(self, clock: Any, settings: dict[str, Any] | None = None) -> None:
        self.clock = clock
        self.settings = settings or {}
        self.deliveries: list[tuple[float, str, bool, str]] = []
        self.opt_outs: list[tuple[float, str, str]] = []

    def report_delivery(self, send_id: str, delivered: bool, detail: str = "") -> None:
        self.deliveries.append((self.clock.now(), send_id, delivered, detail))

    def report_opt_out(self, channel: str, address: str) -> None:
        self.opt_outs.append((self.clock.now(), channel, address))


def sms(i: int, *, origin: str = "campaign", to: str | None = None, channel: str = "sms") -> Send:
    if to is None:
        to = f"+3361{i:07d}" if channel == "sms" else f"r{i}@shop.example"
    return Send(id=f"s{i}", recipient=f"r{i}", channel=channel, to=to, origin=origin)


def batch(sends: list[Send], *, attempt: int = 1, carrier: str = "Orange France", channel: str = "sms",
          bid: int = 1) -> Batch:
    return Batch(id=bid, provider="sandbox", channel=channel, sender="SHOP", carrier=carrier,
                 sends=list(sends), attempts=[attempt] * len(sends))


QUIET_NET = {"latency_ms": {"default": 0}, "temporary_error_rate": 0.0, "permanent_error_rate": 0.0,
             "invalid_suffixes": [], "stop_rate": 0.0, "delivery_reports": False}


def drive(coro_fn, clock: VirtualClock | None = None, until: float | None = None):
    """Run ``coro_fn()`` while driving ``clock`` to ``until`` (virtual time), return its result."""

    async def main():
        task = asyncio.ensure_future(coro_fn())
        if clock is not None:
            await clock.run_until(until if until is not None else clock.now())
        return await task

    return asyncio.run(main())


def answer_key(r: Any) -> tuple:
    """What a result says, comparable across providers."""
    if isinstance(r, Accepted):
        return ("accepted", r.provider_id)
    if isinstance(r, TemporaryFailure):
        return ("temporary", r.code)
    if isinstance(r, PermanentFailure):
        return ("permanent", r.code, r.suppress)
    return ("rate_limited",)


async def started(options: dict[str, Any], clock: Any = None, settings: dict[str, Any] | None = None):
    provider = SandboxProvider.from_options(options)
    context = RecordingContext(clock or VirtualClock(START), settings)
    await provider.start(context)
    return provider, context


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_answers_whatever_the_batching_and_order():
    """Results derive from (seed, send id, attempt), not from call order."""
    sends = [sms(i) for i in range(3000)]
    opts = {"seed": 11, "latency_ms": {"default": 0}, "temporary_error_rate": 0.1, "permanent_error_rate": 0.02}

    async def answers(order: list[Send], size: int) -> dict[str, tuple]:
        provider, _ = await started(opts)
        got: dict[str, tuple] = {}
        for k in range(0, len(order), size):
            part = order[k:k + size]
            for s, r in zip(part, await provider.send(batch(part, bid=k))):
                got[s.id] = answer_key(r)
        return got

    shuffled = sends[:]
    random.Random(3).shuffle(shuffled)
    first = drive(lambda: answers(sends, 100))
    second = drive(lambda: answers(shuffled, 37))
    assert first == second
    kinds = {a[0] for a in first.values()}
    assert kinds == {"accepted", "temporary", "permanent"}

    other = dict(opts, seed=12)

    async def other_seed() -> dict[str, tuple]:
        provider, _ = await started(other)
        return {s.id: answer_key(r) for s, r in zip(sends, await provider.send(batch(sends)))}

    assert drive(other_seed) != first


def test_a_retry_draws_afresh():
    """A temporary failure on attempt 1 does not doom attempt 2: the attempt is part of the draw."""
    sends = [sms(i) for i in range(2000)]

    async def go():
        provider, _ = await started({"latency_ms": {"default": 0}, "temporary_error_rate": 0.3,
                                     "permanent_error_rate": 0.0, "invalid_suffixes": []})
        first = await provider.send(batch(sends, attempt=1))
        failed = [s for s, r in zip(sends, first) if isinstance(r, TemporaryFailure)]
        second = await provider.send(batch(failed, attempt=2))
        return len(failed), sum(isinstance(r, Accepted) for r in second)

    failed, recovered = drive(go)
    assert 0.25 * 2000 < failed < 0.35 * 2000
    # About 70 % of the retried sends now pass.
    assert 0.6 * failed < recovered < 0.8 * failed


def test_error_rates_within_tolerance():
    """Temporary and permanent failures come at the configured rates (within 5 sigma)."""
    n = 20_000
    sends = [sms(i) for i in range(n)]

    async def go():
        provider, _ = await started({"seed": 5, "latency_ms": {"default": 0}, "temporary_error_rate": 0.05,
                                     "permanent_error_rate": 0.01, "invalid_suffixes": []})
        results = []
        for k in range(0, n, 100):
            results += await provider.send(batch(sends[k:k + 100], bid=k))
        return results

    results = drive(go)
    perm = sum(isinstance(r, PermanentFailure) for r in results)
    temp = sum(isinstance(r, TemporaryFailure) for r in results)

    def near(count: int, p: float, trials: int) -> bool:
        return abs(count - p * trials) <= 5 * math.sqrt(trials * p * (1 - p))

    assert near(perm, 0.01, n), perm
    # Temporary failures are drawn for the sends that are not invalid.
    assert near(temp, 0.05, n - perm), temp
    assert all(r.suppress == "all" and r.code == "invalid_number" for r in results if isinstance(r, PermanentFailure))


def test_invalid_suffix_is_a_permanent_failure_that_suppresses_all():
    """Numbers ending in a configured pattern do not exist, on every attempt (R14 scope all)."""
    bad = sms(1, to="+33612340000")
    mail = sms(2, channel="email", to="x@invalid.test")

    async def go():
        provider, _ = await started({"latency_ms": {"default": 0}, "temporary_error_rate": 0.0,
                                     "permanent_error_rate": 0.0})
        a = await provider.send(batch([bad], attempt=1))
        b = await provider.send(batch([bad], attempt=3))
        c = await provider.send(batch([mail], channel="email", carrier=""))
        return a + b + c

    a, b, c = drive(go)
    assert isinstance(a, PermanentFailure) and a.suppress == "all" and a.code == "invalid_number"
    assert a == b
    assert isinstance(c, PermanentFailure) and c.code == "hard_bounce"


# --------------------------------------------------------------------------- idempotency, capacity, latency


def test_idempotent_resend_returns_the_same_provider_id_and_no_second_delivery():
    """R22: a send id already accepted is answered with the same id, counted and reported once."""
    sends = [sms(i) for i in range(50)]
    clock = VirtualClock(START)

    async def go():
        provider, context = await started(dict(QUIET_NET, delivery_reports=True, delivery_delay="5s"), clock)
        first = await provider.send(batch(sends, attempt=1))
        again = await provider.send(batch(sends, attempt=2, bid=2))
        return provider, context, first, again

    provider, context, first, again = drive(go, clock, START + 60)
    assert all(isinstance(r, Accepted) for r in first)
    assert [r.provider_id for r in again] == [r.provider_id for r in first]
    assert len({r.provider_id for r in first}) == 50
    traffic = provider.traffic()
    (carrier,) = traffic.carriers
    assert carrier.accepted == 50 and carrier.duplicates == 50
    assert sorted(d[1] for d in context.deliveries) == sorted(s.id for s in sends)


def test_rate_limited_over_capacity_until_the_next_second():
    """Past a carrier's capacity in the current second the network answers rate_limited."""
    clock = VirtualClock(START + 0.25)
    sends = [sms(i) for i in range(100)]

    async def go():
        provider, _ = await started(dict(QUIET_NET, capacity={"Orange France": 30}), clock)
        first = await provider.send(batch(sends[:60]))
        other = await provider.send(batch(sends[:10], carrier="SFR", bid=2))
        await clock.sleep(1.0)
        later = await provider.send(batch(sends[60:], bid=3))
        return provider, first, other, later

    provider, first, other, later = drive(go, clock, START + 5)
    assert [type(r) for r in first] == [Accepted] * 30 + [RateLimited] * 30
    assert all(r.retry_after == pytest.approx(0.75) for r in first[30:])
    assert all(isinstance(r, Accepted) for r in other), "capacity is per carrier"
    assert [type(r) for r in later] == [Accepted] * 30 + [RateLimited] * 10
    orange = next(c for c in provider.traffic().carriers if c.carrier == "Orange France")
    assert orange.rate_limited == 40 and orange.peak_per_second == 30


def test_latency_runs_on_the_engine_clock():
    """A call sleeps a lognormal latency around the carrier's median, on virtual time."""
    clock = VirtualClock(START)
    opts = dict(QUIET_NET, latency_ms={"default": 100, "Telstra": 2000}, latency_sigma=0.3)

    async def go():
        provider, _ = await started(opts, clock)
        spans = []
        for k in range(40):
            for carrier in ("Telstra", "Optus"):
                t0 = clock.now()
                await provider.send(batch([sms(k)], carrier=carrier, bid=k))
                spans.append((carrier, clock.now() - t0))
        return spans

    spans = drive(go, clock, START + 3600)
    telstra = sorted(s for c, s in spans if c == "Telstra")
    optus = sorted(s for c, s in spans if c == "Optus")
    assert min(telstra) > 0.5 and 1.2 < telstra[len(telstra) // 2] < 3.3
    assert max(optus) < 0.5 and 0.05 < optus[len(optus) // 2] < 0.2


def test_zero_latency_works_on_the_real_clock():
    """With latency 0 the provider answers at once, without a virtual clock (real-clock tests)."""

    async def go():
        provider = SandboxProvider.from_options(QUIET_NET)
        from sendcore.clock import RealClock

        await provider.start(RecordingContext(RealClock()))
        return await asyncio.wait_for(provider.send(batch([sms(1), sms(2)])), timeout=1.0)

    assert [type(r) for r in asyncio.run(go())] == [Accepted, Accepted]


# --------------------------------------------------------------------------- reports and STOP


def test_delivery_reports_after_a_delay_and_stop_for_marketing_sms_only():
    """Delivery reports follow accepted sends; STOP comes from marketing SMS recipients only."""
    clock = VirtualClock(START)
    n = 400
    marketing = [sms(i) for i in range(n)]
    otp = [Send(id=f"o{i}", recipient=f"r{i}", channel="sms", to=f"+3362{i:07d}", origin="transactional")
           for i in range(n)]
    mails = [sms(10_000 + i, channel="email") for i in range(n)]
    opts = dict(QUIET_NET, delivery_reports=True, delivery_rate=0.9, delivery_delay="10s",
                stop_rate=0.25, stop_delay="20m")

    async def go():
        provider, context = await started(opts, clock)
        for k in range(0, n, 100):
            await provider.send(batch(marketing[k:k + 100], bid=k))
            await provider.send(batch(otp[k:k + 100], bid=1000 + k))
            await provider.send(batch(mails[k:k + 100], channel="email", carrier="", bid=2000 + k))
        early = (len(context.deliveries), len(context.opt_outs))
        await clock.sleep(5 * 3600)
        return provider, context, early

    provider, context, early = drive(go, clock, START + 6 * 3600)
    assert early == (0, 0), "reports never arrive with the answer"
    assert len(context.deliveries) == 3 * n
    assert all(t > START for t, *_ in context.deliveries)
    delivered = sum(d[2] for d in context.deliveries)
    assert 0.85 * 3 * n < delivered < 0.95 * 3 * n
    assert {d[3] for d in context.deliveries} == {"DELIVRD", "UNDELIV"}
    stopped = {a for _, ch, a in context.opt_outs}
    assert {ch for _, ch, _ in context.opt_outs} == {"sms"}
    assert stopped <= {s.to for s in marketing}
    assert 0.15 * n < len(stopped) < 0.35 * n
    # STOP comes minutes after the message, not with the delivery report.
    assert min(t for t, *_ in context.opt_outs) > START + 60
    assert provider.traffic().opt_outs == len(stopped)


def test_close_drops_pending_reports():
    """After close no report arrives: the timers are called off."""
    clock = VirtualClock(START)

    async def go():
        provider, context = await started(dict(QUIET_NET, delivery_reports=True, delivery_delay="30s"), clock)
        await provider.send(batch([sms(1)]))
        pending = provider.traffic().pending_reports
        await provider.close()
        await clock.sleep(120)
        return pending, context

    pending, context = drive(go, clock, START + 300)
    assert pending == 1
    assert context.deliveries == []


# --------------------------------------------------------------------------- options


def test_options_are_checked_and_errors_name_the_key():
    with pytest.raises(ConfigError, match="stop_rate"):
        SandboxProvider.from_options({"stop_rate": 2})
    with pytest.raises(ConfigError, match="stop_rat"):
        SandboxProvider.from_options({"stop_rat": 0.1})
    with pytest.raises(ConfigError, match="capacity"):
        SandboxProvider.from_options({"capacity": {"Telstra": -1}})
    with pytest.raises(ConfigError, match="delivery_delay"):
        SandboxProvider.from_options({"delivery_delay": "soon"})
    opts = SandboxOptions.from_mapping({"stop_delay": "2m", "latency_ms": {"default": 50, "Telstra": 200}})
    assert opts.stop_delay == 120.0
    assert opts.latency_median("Telstra") == 0.2 and opts.latency_median("SFR") == 0.05


def test_context_settings_override_constructor_options_key_by_key():
    """The ``[providers.sandbox.options]`` table reaches the provider through ``context.settings``."""

    async def go():
        provider, _ = await started({"seed": 4, "stop_rate": 0.5}, settings={"seed": 9})
        return provider.options

    opts = drive(go)
    assert opts.seed == 9 and opts.stop_rate == 0.5


def test_provider_declaration():
    p = SandboxProvider()
    assert p.name == "sandbox" and tuple(p.channels) == ("sms", "email", "push")
    assert p.max_batch == 100 and p.rate == 100.0
    assert p.fallback is True
    assert p.parse_delivery_report({"send_id": "a", "status": "DELIVRD"}) == DeliveryReport(
        send_id="a", delivered=True, code="DELIVRD", detail="DELIVRD")
    assert p.parse_delivery_report({"send_id": "a", "status": "??"}) is None
    with pytest.raises(DeliveryReportError, match="send_id"):
        p.parse_delivery_report({"status": "DELIVRD"})


# --------------------------------------------------------------------------- the contract kit


class TestSandboxProviderContract(ProviderContract):
    """The sandbox passes the provider contract kit it ships with, on the virtual clock."""

    clock = "virtual"
    options = {"seed": 1, "temporary_error_rate": 0.0, "permanent_error_rate": 0.0, "stop_rate": 0.0}
    failing_sends = [Send(id="bad-1", recipient="rb", channel="sms", to="+33612340000", origin="flow")]
    rate_limit_options = dict(options, capacity={"default": 5})

    @pytest.fixture
    def provider_factory(self):
        return SandboxProvider


# --------------------------------------------------------------------------- inside the engine

NOON_PARIS = datetime(2026, 11, 24, 11, tzinfo=timezone.utc).timestamp()  # a Tuesday, 12:00 in Paris


def engine_settings(**options: Any):
    from sendcore.settings import Settings

    return Settings.from_dict({
        "journal": {"path": ""},
        "routes": [{"provider": "sandbox", "carrier": "*", "rate": 1000, "burst": 100}],
        "providers": {"sandbox": {"options": dict(QUIET_NET, **options)}},
    })


def run_engine(run, settings, scenario, start: float = NOON_PARIS):
    """Run ``scenario(engine, clock, outcomes)`` with the sandbox registered by its own hook, on ``run``'s loop."""
    import sendcore_sandbox
    from sendcore.engine import Engine

    class Tap:
        def __init__(self) -> None:
            self.outcomes: list[Any] = []

        @hookimpl
        def sendcore_outcome(self, outcome):
            self.outcomes.append(outcome)

    async def main():
        clock = VirtualClock(start)
        tap = Tap()
        async with Engine(settings, clock=clock, plugins=[sendcore_sandbox, tap], load_entrypoints=False) as engine:
            result = await scenario(engine, clock, tap.outcomes)
            provider = engine.providers["sandbox"]
        return result, tap.outcomes, provider

    return run(main())


def test_engine_gets_delivery_reports_and_stop_suppresses_marketing_only(run):
    """R21 delivery events and R14 STOP: after the reply, marketing is skipped, transactional still leaves."""
    settings = engine_settings(delivery_reports=True, delivery_rate=1.0, delivery_delay="5s",
                               stop_rate=1.0, stop_delay="10m")
    numbers = [f"+3361{i:07d}" for i in range(10)]

    async def scenario(engine, clock, outcomes):
        await engine.submit([Send(id=f"c1-{i}", recipient=f"r{i}", channel="sms", to=n, origin="campaign",
                                  body="Sale! STOP 36111") for i, n in enumerate(numbers)])
        await engine.run_until(clock.now() + 3600)
        await engine.submit([Send(id=f"c2-{i}", recipient=f"r{i}", channel="sms", to=n, origin="campaign",
                                  smart_sending=False, body="Sale again") for i, n in enumerate(numbers)]
                            + [Send(id=f"otp-{i}", recipient=f"r{i}", channel="sms", to=n,
                                    origin="transactional", body="code 123456") for i, n in enumerate(numbers)])
        await engine.drain()

    _, outcomes, provider = run_engine(run, settings, scenario)
    final = {o.send_id: o for o in outcomes if o.status.is_final}
    delivered = [o for o in outcomes if o.status == "delivered"]
    assert all(final[f"c1-{i}"].status == "sent" for i in range(10))
    assert {o.send_id for o in delivered} >= {f"c1-{i}" for i in range(10)}
    assert all(o.at >= final[o.send_id].at + 1 for o in delivered)
    assert all(final[f"c2-{i}"].status == "skipped" and final[f"c2-{i}"].reason == "suppressed" for i in range(10))
    assert all(final[f"otp-{i}"].status == "sent" for i in range(10))
    assert provider.traffic().opt_outs == 10, "one STOP per address, not per message"


def test_engine_slows_a_route_on_rate_limited_and_everything_still_leaves(run):
    """R18: the carrier's capacity pushes back; the engine retries after retry_after, nothing is lost."""
    settings = engine_settings(capacity={"default": 20}, latency_ms={"default": 50})
    sends = [sms(i) for i in range(200)]

    async def scenario(engine, clock, outcomes):
        report = await engine.submit(sends)
        assert report.accepted == 200
        t0 = clock.now()
        await engine.drain()
        return clock.now() - t0

    took, outcomes, provider = run_engine(run, settings, scenario)
    final = [o for o in outcomes if o.status.is_final]
    assert len(final) == 200 and all(o.status == "sent" for o in final)
    assert any(o.status == "deferred" and o.reason == "rate_limit" for o in outcomes)
    (carrier,) = provider.traffic().carriers
    assert carrier.peak_per_second <= 20 and carrier.accepted == 200
    assert took >= 9.0, "200 sends at 20 per second take at least 9 seconds"


def test_installed_entry_point_registers_the_sandbox():
    """The bundled plugin is found through the `sendcore` entry point, like a third-party one."""
    from importlib.metadata import entry_points

    if not [ep for ep in entry_points(group="sendcore") if ep.name == "sandbox"]:
        pytest.skip("sendcore is not installed (pip install -e .): no entry points to load")
    from sendcore.plugins import PluginHost
    from sendcore.settings import Settings

    host = PluginHost(Settings.from_dict({"plugins": {"allow": ["sandbox"]}}), load_entrypoints=True)
    (provider,) = host.providers()
    assert isinstance(provider, SandboxProvider) and host.provider_plugin("sandbox") == "sandbox"
