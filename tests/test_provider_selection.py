"""Which provider a send goes to: the sandbox never makes a channel ambiguous, real providers register only when configured."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import sendcore_sandbox
import sendcore_twilio
from sendcore import Accepted, Engine, Provider, Send, Settings, Status
from sendcore.send import Batch, Result
from sendcore.testing import VirtualClock

START = 1_800_000_000.0


class Carrier(Provider):
    """An embedding's own SMS provider: accepts everything and remembers what it saw."""

    channels = ("sms",)

    def __init__(self, name: str = "carrier") -> None:
        self.name = name
        self.seen: list[str] = []

    async def send(self, batch: Batch) -> list[Result]:
        self.seen.extend(s.id for s in batch.sends)
        return [Accepted(provider_id=f"{self.name}-{s.id}") for s in batch.sends]


class Registering:
    def __init__(self, *providers: Any) -> None:
        self.providers = providers

    def sendcore_register_providers(self, register: Any) -> None:
        for p in self.providers:
            register(p)


def otp(i: int, channel: str = "sms", to: str = "+33612345678") -> Send:
    return Send(id=f"o{i}", recipient=f"r{i}", channel=channel, to=to, origin="transactional", body="1234",
                send_at=START)


SETTINGS = Settings.from_dict({"journal": {"path": ""}})


def test_an_embedding_provider_serves_sms_beside_the_bundled_sandbox(run: Any) -> None:
    """The newcomer case: the sandbox is installed, the embedding registers its own SMS provider; SMS go to it."""
    mine = Carrier()

    async def main() -> Any:
        async with Engine(SETTINGS, clock=VirtualClock(START), plugins=[sendcore_sandbox, Registering(mine)],
                          load_entrypoints=False) as engine:
            report = await engine.submit([otp(1), otp(2, "email", "a@example.com")])
            await engine.drain()
            return report, engine.outcome("o1"), engine.outcome("o2")

    report, sms, email = run(main())
    assert report.rejected == [] and report.accepted == 2
    assert sms.status is Status.SENT and sms.provider == "carrier" and mine.seen == ["o1"]
    assert email.status is Status.SENT and email.provider == "sandbox"  # nothing else serves email


def test_the_sandbox_still_serves_a_channel_it_is_named_for(run: Any) -> None:
    mine = Carrier()
    settings = Settings.from_dict({"journal": {"path": ""}, "channels": {"sms": {"provider": "sandbox"}}})

    async def main() -> Any:
        async with Engine(settings, clock=VirtualClock(START), plugins=[sendcore_sandbox, Registering(mine)],
                          load_entrypoints=False) as engine:
            await engine.submit([otp(1), otp(2).__class__(**{**_fields(otp(2)), "provider": "carrier"})])
            await engine.drain()
            return engine.outcome("o1"), engine.outcome("o2")

    first, second = run(main())
    assert first.provider == "sandbox" and second.provider == "carrier" and mine.seen == ["o2"]


def _fields(send: Send) -> dict[str, Any]:
    return {f: getattr(send, f) for f in send.__struct_fields__}


def test_two_real_providers_for_a_channel_log_a_warning_at_start_naming_the_fix(
        run: Any, caplog: pytest.LogCaptureFixture) -> None:
    a, b = Carrier("a"), Carrier("b")

    async def main() -> Any:
        async with Engine(SETTINGS, clock=VirtualClock(START), plugins=[Registering(a, b)],
                          load_entrypoints=False) as engine:
            return await engine.submit([otp(1)])

    with caplog.at_level(logging.WARNING, logger="sendcore"):
        report = run(main())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("channel 'sms': several providers serve 'sms' (a, b)" in w and "[channels.sms] provider" in w
               for w in warnings), warnings
    assert report.accepted == 0 and "several providers serve 'sms'" in report.rejected[0].reason


def test_bundled_real_providers_register_only_when_configured(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installing sendcore never makes a channel ambiguous: http, twilio and smtp stay out until configured."""
    monkeypatch.setenv("SENDCORE_LOAD_ENTRYPOINTS", "1")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "t")

    async def providers(settings: Settings) -> list[str]:
        async with Engine(settings, clock=VirtualClock(START)) as engine:
            return sorted(engine.providers)

    assert run(providers(SETTINGS)) == ["sandbox"]
    configured = Settings.from_dict({"journal": {"path": ""}, "providers": {"twilio": {"options": {
        "account_sid": "AC" + "0" * 32, "from": "+15005550006", "base_url": "http://127.0.0.1:9"}}}})
    assert run(providers(configured)) == ["sandbox", "twilio"]


def test_the_registration_hook_sees_the_settings() -> None:
    """A plugin's hook may take ``settings``; the bundled Twilio plugin registers from its options."""
    from sendcore.plugins import PluginHost

    configured = Settings.from_dict({"providers": {"twilio": {"options": {
        "account_sid": "AC" + "0" * 32, "messaging_service_sid": "MG" + "1" * 32}}}})
    host = PluginHost(configured, plugins=[sendcore_twilio], load_entrypoints=False)
    [provider] = host.providers()
    assert provider.name == "twilio" and provider.options.messaging_service_sid == "MG" + "1" * 32
    assert PluginHost(Settings(), plugins=[sendcore_twilio], load_entrypoints=False).providers() == []
