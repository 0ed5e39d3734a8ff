"""The built-in policies are a plugin (``sendcore.policies.builtin``) registered like a third party's.

Its factories lead the chain; a block list removes the plugin, and a plugin
of one's own can then keep some built-ins next to its replacements. A factory
is built once per core, from that core's settings, the journal's recorded
settings at recovery included.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest

from sendcore import Engine, Send, hookimpl
from sendcore.core import Core
from sendcore.plugins import PluginError
from sendcore.plugins import PluginHost
from sendcore.policies import builtin
from sendcore.policies.base import Policy, PolicyContext, Stage
from sendcore.send import Reason, Status
from sendcore.testing import ProvidersPlugin, VirtualClock

from .test_engine import Recorder, settings

BUILT_IN = ["expiry", "suppression", "error_segment", "quiet_hours", "smart_sending", "frequency_cap", "spacing"]
PARIS = ZoneInfo("Europe/Paris")
NIGHT = datetime(2027, 1, 13, 23, 0, tzinfo=PARIS).timestamp()  # a Wednesday, 23:00 in Paris


class NightOwl(Policy):
    """A replacement for quiet hours: lets everything through except sends tagged ``never``."""

    name = "night_owl"
    stages = Stage.ADMIT

    def check(self, entries: list[Any], now: float, stage: Stage, verdicts: Any) -> list[Any]:
        out = []
        for e in entries:
            if "never" in e.send.tags:
                verdicts.skip(e, Reason.POLICY, "tagged never")
            else:
                out.append(e)
        return out


class KeepSome:
    """Keeps expiry and suppression from the built-ins, then its own policy."""

    @hookimpl
    def sendcore_register_policies(self, register: Callable[[Any], None]) -> None:
        register(builtin.expiry)
        register(builtin.suppression)
        register(NightOwl())


def campaign_sms(i: int, **kw: Any) -> Send:
    return Send(id=f"m{i}", recipient=f"r{i}", channel="sms", to=f"+33612{i:04d}99", origin="campaign",
                origin_id="sale", timezone="Europe/Paris", **kw)


def test_the_built_in_policies_come_from_their_plugin_first_in_the_chain() -> None:
    host = PluginHost(plugins=[KeepSome()], load_entrypoints=False)
    chain = host.policy_chain()
    assert chain[:7] == list(builtin.FACTORIES)
    assert chain[7:9] == [builtin.expiry, builtin.suppression] and chain[9].name == "night_owl"
    assert host.policies() == chain[7:]  # what plugins add besides the built-ins, as before
    assert [p.name for p in Core().policies] == BUILT_IN
    assert [p.name for p in Core(policies=[NightOwl()]).policies] == [*BUILT_IN, "night_owl"]
    assert [p.name for p in Core(chain=[builtin.spacing, NightOwl()]).policies] == ["spacing", "night_owl"]


def _night_run(**kw: Any) -> tuple[list[float], Engine]:
    rec = Recorder()
    engine = Engine(settings(**kw), clock=VirtualClock(NIGHT), plugins=[ProvidersPlugin(rec), KeepSome()])
    import asyncio

    async def main() -> None:
        async with engine:
            await engine.submit([campaign_sms(1), campaign_sms(2, tags=("never",))])
            await engine.drain()
            assert engine.outcome("m2").reason is Reason.POLICY
            assert engine.outcome("m1").status is Status.SENT

    asyncio.run(main())
    return [t for t, _ in rec.calls], engine


def test_blocking_the_built_in_plugin_replaces_the_chain_with_what_plugins_register() -> None:
    """With the plugin blocked, quiet hours are gone: a campaign SMS at 23:00 in Paris leaves at once.
    Without the block, the same send waits for the morning."""
    times, engine = _night_run(plugins={"block": [builtin.NAME]})
    assert [p.name for p in engine.policies] == ["expiry", "suppression", "night_owl"]
    assert times == [NIGHT]
    times, engine = _night_run()
    assert [p.name for p in engine.policies] == [*BUILT_IN, "expiry", "suppression", "night_owl"]
    assert len(times) == 1 and times[0] >= datetime(2027, 1, 14, 8, 0, tzinfo=PARIS).timestamp()


def test_the_block_also_comes_from_the_environment() -> None:
    host = PluginHost(plugins=[KeepSome()], load_entrypoints=False, environ={"SENDCORE_BLOCK_PLUGINS": builtin.NAME})
    assert [getattr(p, "name", None) for p in host.policy_chain()] == [None, None, "night_owl"]
    assert builtin.NAME in host.blocked


def test_a_policy_factory_is_built_for_each_core_from_that_cores_settings(tmp_path: Any) -> None:
    """At recovery the journal's recorded settings build the replayed core; the new settings build the next."""
    seen: list[int] = []

    def counting(context: PolicyContext) -> Policy:
        seen.append(context.settings.max_pending)
        return NightOwl()

    class Factory:
        @hookimpl
        def sendcore_register_policies(self, register: Callable[[Any], None]) -> None:
            register(counting)

    import asyncio

    def start(max_pending: int) -> None:
        conf = settings(journal={"path": str(tmp_path / "j")}, max_pending=max_pending)

        async def main() -> None:
            engine = Engine(conf, clock=VirtualClock(NIGHT), plugins=[ProvidersPlugin(Recorder()), Factory()])
            async with engine:
                await engine.submit([campaign_sms(max_pending, send_at=NIGHT + 86400.0)])
                assert engine.policies[-1].name == "night_owl"

        asyncio.run(main())

    start(1000)
    assert seen == [1000]
    start(2000)
    assert seen == [1000, 1000, 2000]  # the first run; the replayed core (recorded settings); the new one


def test_a_factory_that_builds_no_policy_is_refused_by_name() -> None:
    def broken(context: PolicyContext) -> Any:
        return object()

    with pytest.raises(TypeError, match="policy factory .*broken returned object without a `name`"):
        Core(policies=[broken])

    class Bad:
        @hookimpl
        def sendcore_register_policies(self, register: Callable[[Any], None]) -> None:
            register(42)

    with pytest.raises(PluginError, match="registered a policy int without a `name`"):
        PluginHost(plugins=[Bad()], load_entrypoints=False).policy_chain()
