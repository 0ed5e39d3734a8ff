"""Delivery reports through ``Engine.report_delivery``: Twilio status callbacks after real sends (R21, R13, R14).

Each test sends real messages through ``plugins/twilio`` to the local
imitation of Twilio's API, then hands the engine signed status callbacks as
Twilio would post them, and checks the events and what they do to the
address (error segment, suppression) and to the route.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any, Union

import pytest

import sendcore_twilio
from sendcore import DeliveryReportError, Engine, Send, Settings, Status
from tests.twilio_server import TwilioServer

ACCOUNT = "AC" + "0" * 32
TOKEN = "test-token"
CALLBACK = "https://hooks.example.com/twilio/status"
NUMBER = "+33612345671"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)


def sign(fields: dict[str, str], url: str = CALLBACK) -> dict[str, str]:
    """The X-Twilio-Signature header Twilio would send: HMAC-SHA1 of the URL and the sorted fields."""
    data = url + "".join(name + fields[name] for name in sorted(fields))
    return {"X-Twilio-Signature": base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()}


def callback(sid: str, status: str, code: str = "", to: str = NUMBER) -> dict[str, str]:
    fields = {"MessageSid": sid, "MessageStatus": status, "To": to, "AccountSid": ACCOUNT,
              "From": "+15005550006", "ApiVersion": "2010-04-01"}
    if code:
        fields["ErrorCode"] = code
    return fields


def settings(url: str, journal: Union[Path, None] = None) -> Settings:
    return Settings.from_dict({
        "journal": {"path": str(journal) if journal else ""},
        "providers": {"twilio": {"options": {"account_sid": ACCOUNT, "from": "+15005550006", "base_url": url,
                                             "status_callback": CALLBACK}}},
        "channels": {"sms": {"quiet_hours": False}},
        "error_segment": {"origins": ["campaign"]},
    })


def sms(i: int, to: str = NUMBER, origin: str = "transactional") -> Send:
    return Send(id=f"m{i}", recipient=f"r{i}", channel="sms", to=to, origin=origin, body="Your code is 1234")


async def sent(engine: Engine, sends: list[Send]) -> dict[str, str]:
    """Submit, drain, and return the Twilio message SID of each send."""
    assert (await engine.submit(sends)).accepted == len(sends)
    await engine.drain()
    out = {}
    for s in sends:
        o = engine.outcome(s.id)
        assert o is not None and o.status is Status.SENT, o
        out[s.id] = o.provider_id
    return out


def test_a_signed_delivered_callback_adds_a_delivered_event_to_the_send(run: Any) -> None:
    async def main() -> Any:
        server = TwilioServer(account_sid=ACCOUNT, token=TOKEN)
        url = await server.start()
        try:
            async with Engine(settings(url), plugins=[sendcore_twilio], load_entrypoints=False) as engine:
                stream = engine.outcomes()
                sids = await sent(engine, [sms(1)])
                # "sent" is an intermediate status: nothing to record.
                fields = callback(sids["m1"], "sent")
                assert await engine.report_delivery("twilio", fields, url=CALLBACK, headers=sign(fields)) is None
                fields = callback(sids["m1"], "delivered")
                event = await engine.report_delivery("twilio", fields, url=CALLBACK, headers=sign(fields))
                await engine.close()
                return sids, event, [o async for o in stream]
        finally:
            await server.stop()

    sids, event, outcomes = run(main())
    assert event is not None and event.status is Status.DELIVERED and event.send_id == "m1"
    assert event.provider_id == sids["m1"] and event.provider == "twilio"
    assert [o.status for o in outcomes if o.send_id == "m1"] == [Status.SENT, Status.DELIVERED]


def test_undelivered_callbacks_feed_the_error_segment_suppression_and_route_pace(run: Any) -> None:
    """30003 puts the number in the error segment, 30005 suppresses it, 30022 slows the route down."""
    unreachable, unknown, throttled = "+33612345672", "+33612345673", "+33612345674"

    async def main() -> Any:
        server = TwilioServer(account_sid=ACCOUNT, token=TOKEN)
        url = await server.start()
        try:
            async with Engine(settings(url), plugins=[sendcore_twilio], load_entrypoints=False) as engine:
                sids = await sent(engine, [sms(1, unreachable), sms(2, unknown), sms(3, throttled)])
                events = {}
                for sid, to, code in ((sids["m1"], unreachable, "30003"), (sids["m2"], unknown, "30005"),
                                      (sids["m3"], throttled, "30022")):
                    fields = callback(sid, "undelivered", code, to)
                    events[code] = await engine.report_delivery("twilio", fields, url=CALLBACK, headers=sign(fields))
                now = engine.clock.now()
                # A campaign to the unreachable number is kept out (R13); anything to the unknown one is
                # suppressed (R14); the route the throttled message took waits before the next send.
                later = [sms(4, unreachable, "campaign"), sms(5, unknown), sms(6, "+33612345675")]
                await engine.submit(later)
                explain = engine.explain("m6")
                await engine.drain()
                return events, {s.id: engine.outcome(s.id) for s in later}, explain, now, engine.clock.now()
        finally:
            await server.stop()

    events, later, explain, before, after = run(main())
    assert all(e is not None and e.status is Status.UNDELIVERED for e in events.values())
    assert events["30003"].detail.startswith("30003")
    assert later["m4"].status is Status.SKIPPED and later["m4"].reason.value == "error_segment"
    assert later["m5"].status is Status.SKIPPED and later["m5"].reason.value == "suppressed"
    assert later["m6"].status is Status.SENT
    # 30022 held the route: m6 left only after the slowdown the report asked for.
    assert later["m6"].at >= before + 0.9, (later["m6"].at - before, explain)


def test_a_bad_signature_is_refused_and_an_unknown_message_is_counted(run: Any) -> None:
    async def main() -> Any:
        server = TwilioServer(account_sid=ACCOUNT, token=TOKEN)
        url = await server.start()
        try:
            async with Engine(settings(url), plugins=[sendcore_twilio], load_entrypoints=False) as engine:
                sids = await sent(engine, [sms(1)])
                fields = callback(sids["m1"], "delivered")
                forged = dict(fields, MessageStatus="undelivered", ErrorCode="30005")
                with pytest.raises(DeliveryReportError):
                    await engine.report_delivery("twilio", forged, url=CALLBACK, headers=sign(fields))
                with pytest.raises(DeliveryReportError):
                    await engine.report_delivery("twilio", fields, url=CALLBACK, headers={})
                with pytest.raises(KeyError, match="no provider is named 'twillio'"):
                    await engine.report_delivery("twillio", fields, url=CALLBACK, headers=sign(fields))
                stray = callback("SM" + "f" * 32, "delivered")
                got = await engine.report_delivery("twilio", stray, url=CALLBACK, headers=sign(stray))
                return got, engine.stats(), engine.outcome("m1"), engine.core.suppression.scope_of("sms", NUMBER)
        finally:
            await server.stop()

    got, stats, outcome, scope = run(main())
    assert got is None and stats.unknown_reports == 1
    assert outcome.status is Status.SENT and scope is None  # the forged report changed nothing
    assert stats.events.get("undelivered", 0) == 0


def test_delivery_reports_are_journaled_and_survive_a_restart(run: Any, tmp_path: Path) -> None:
    """A suppression from a 30005 report is still there after a restart from the journal (R22)."""

    async def main() -> Any:
        server = TwilioServer(account_sid=ACCOUNT, token=TOKEN)
        url = await server.start()
        try:
            async with Engine(settings(url, tmp_path / "j"), plugins=[sendcore_twilio],
                              load_entrypoints=False) as engine:
                sids = await sent(engine, [sms(1)])
                fields = callback(sids["m1"], "undelivered", "30005")
                assert await engine.report_delivery("twilio", fields, url=CALLBACK, headers=sign(fields))
            async with Engine(settings(url, tmp_path / "j"), plugins=[sendcore_twilio],
                              load_entrypoints=False) as engine:
                scope = engine.core.suppression.scope_of("sms", NUMBER)
                events = engine.stats().events
                await engine.submit([sms(2)])
                await engine.drain()
                return scope, events, engine.outcome("m2")
        finally:
            await server.stop()

    scope, events, second = run(main())
    assert scope == "all"
    assert events.get("undelivered") == 1
    assert second.status is Status.SKIPPED and second.reason.value == "suppressed"


@pytest.mark.parametrize("kept_as", ["key", "route object"])
def test_a_report_asking_for_a_slowdown_blocks_the_route_the_message_took(kept_as: str) -> None:
    """The core keeps a sent message's route by key; a state loaded from an older snapshot holds the Route itself.

    Either way an undelivered report with ``retry_after`` blocks that route.
    """
    from sendcore.provider import DeliveryReport
    from sendcore.send import Accepted

    from .helpers import UTC, at, core, send

    c = core()
    t = at(UTC, 2026, 3, 2, 12, 0)
    c.submit([send("a", origin="transactional")], t)
    (batch,) = c.advance(t)
    c.record(batch, [Accepted(provider_id="P1")], t)
    to, key = c.ledger.sent_meta["a"]
    assert type(key) is tuple, "kept by key: a tuple of strings the cycle collector does not track"
    route = c.dispatch.routes[key]
    if kept_as == "route object":
        c.ledger.sent_meta["a"] = (to, route)
    event = c.delivery(DeliveryReport(delivered=False, provider_id="P1", retry_after=30.0), "sandbox", t + 1)
    assert event is not None and event.status is Status.UNDELIVERED
    assert route.blocked_until == t + 31 and route.blocked_by == "rate_limited"
