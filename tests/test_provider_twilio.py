"""The bundled ``twilio`` provider against a real local server imitating Twilio's Messages API.

Every fault is produced by the server (``tests/twilio_server.py``) on
127.0.0.1: refused connections, timeouts, 5xx, 429 in each ``Retry-After``
form, malformed and truncated answers, and each mapped Twilio error code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from email.utils import formatdate
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

import sendcore_twilio
from sendcore import Engine, Send, Settings, Status
from sendcore.errors import ConfigError, DeliveryReportError
from sendcore.provider import DeliveryReport
from sendcore.send import Accepted, Batch, PermanentFailure, RateLimited, Reason, TemporaryFailure
from sendcore.testing import check_provider
from sendcore.testing.contract import CHECKS
from sendcore_twilio import TwilioProvider, compute_signature, retry_after_seconds
from sendcore_twilio.provider import MAX_RETRY_AFTER, MIN_RETRY_AFTER

from .twilio_server import Drop, Malformed, Slow, Status as Answer, TwilioServer, free_port, twilio_error

ACCOUNT = "AC" + "1" * 32
TOKEN = "twilio-test-token"
SERVICE = "MG" + "2" * 32
CALLBACK = "https://hooks.example.com/twilio/status?tenant=7"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)


class _Context:
    """What the engine hands ``start``: a clock and the options table (empty: keep the constructor's)."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.clock = None
        self.settings = settings or {}

    def report_delivery(self, send_id: str, delivered: bool, detail: str = "") -> None:
        raise AssertionError("the twilio provider reports nothing by itself")

    def report_opt_out(self, channel: str, address: str) -> None:
        raise AssertionError("the twilio provider reports nothing by itself")


def options(url: str, **extra: Any) -> dict[str, Any]:
    base = {"account_sid": ACCOUNT, "from": "+15005550006", "base_url": url, "request_timeout": 0.3}
    base.update(extra)
    return base


def sms(i: Any, to: str, **kw: Any) -> Send:
    return Send(id=f"m{i}", recipient=f"r{i}", channel="sms", to=to, origin="transactional",
                body=kw.pop("body", "Your code is 1234"), **kw)


def batch(sends: list[Send], sender: str = "") -> Batch:
    return Batch(id=1, provider="twilio", channel="sms", sender=sender, carrier="", sends=sends,
                 attempts=[1] * len(sends))


async def started(url: str, **extra: Any) -> TwilioProvider:
    provider = TwilioProvider.from_options(options(url, **extra))
    await provider.start(_Context())
    return provider


async def send_to(server: TwilioServer, answers: dict[str, Any], **extra: Any) -> list[Any]:
    """Answer each number of ``answers`` that way every time; send one message to each, in one batch."""
    server.always.update(answers)
    provider = await started(server.url, **extra)
    try:
        return await provider.send(batch([sms(i, to) for i, to in enumerate(answers)]))
    finally:
        await provider.close()


# --------------------------------------------------------------------------- options and registration


@pytest.mark.parametrize("table, key, words", [
    ({"from": "+1500"}, "account_sid", "required"),
    ({"account_sid": 5, "from": "+1500"}, "account_sid", "Expected `str`"),
    ({"account_sid": ACCOUNT}, "from", "exactly one"),
    ({"account_sid": ACCOUNT, "from": "+1500", "messaging_service_sid": SERVICE}, "from", "both are set"),
    ({"account_sid": ACCOUNT, "from": "+1500", "fromm": "x"}, "fromm", "unknown option"),
    ({"account_sid": ACCOUNT, "from": "+1500", "request_timeout": "soon"}, "request_timeout", "duration"),
    ({"account_sid": ACCOUNT, "from": "+1500", "request_rate": 0}, "request_rate", "positive"),
    ({"account_sid": ACCOUNT, "from": "+1500", "max_connections": 0}, "max_connections", "at least 1"),
    ({"account_sid": ACCOUNT, "from": "+1500", "stop_suppress": "some"}, "stop_suppress", "Invalid enum value"),
    ({"account_sid": ACCOUNT, "from": "+1500", "status_callback": "hooks.example.com"}, "status_callback", "URL"),
])
def test_an_invalid_option_is_a_config_error_naming_its_full_key(table, key, words):
    with pytest.raises(ConfigError) as err:
        TwilioProvider.from_options(table)
    message = str(err.value)
    assert message.startswith(f"providers.twilio.options.{key}: "), message
    assert words in message


def test_options_accept_durations_and_derive_the_batch_timeout():
    p = TwilioProvider.from_options({"account_sid": ACCOUNT, "messaging_service_sid": SERVICE,
                                     "request_timeout": "2s", "request_rate": 100})
    assert p.options.request_timeout == 2.0
    # 4 batches of 50 over 100 connections: two turns of 2 s each, plus 2 s
    # of waiting on 100 requests/s, plus a second's slack.
    assert p.timeout == pytest.approx(2 * 2.0 + 200 / 100 + 1.0)
    few = TwilioProvider.from_options({"account_sid": ACCOUNT, "messaging_service_sid": SERVICE,
                                       "request_timeout": 2, "max_connections": 30})
    assert few.timeout == pytest.approx(7 * 2.0 + 1.0)  # 200 requests, 30 at a time


def test_the_provider_registers_only_when_configured(run):
    async def main():
        bare = Settings.from_dict({"journal": {"path": ""}})
        async with Engine(bare, plugins=[sendcore_twilio], load_entrypoints=False) as engine:
            without = set(engine.providers)
        conf = Settings.from_dict({"journal": {"path": ""},
                                   "providers": {"twilio": {"options": options("http://127.0.0.1:9")}}})
        async with Engine(conf, plugins=[sendcore_twilio], load_entrypoints=False) as engine:
            return without, engine.providers["twilio"]

    without, provider = run(main())
    assert "twilio" not in without
    assert isinstance(provider, TwilioProvider) and provider.options.base_url == "http://127.0.0.1:9"


def test_the_batch_timeout_is_derived_again_for_the_limits_the_engine_applies(run):
    async def main():
        opts = options("http://127.0.0.1:9", request_timeout=2, max_connections=100)
        own = Settings.from_dict({"journal": {"path": ""}, "providers": {"twilio": {"options": opts}}})
        more = Settings.from_dict({"journal": {"path": ""},
                                   "providers": {"twilio": {"max_concurrency": 8, "options": opts}}})
        pinned = Settings.from_dict({"journal": {"path": ""},
                                     "providers": {"twilio": {"max_concurrency": 8, "timeout": "3s", "options": opts}}})
        got = []
        for s in (own, more, pinned):
            async with Engine(s, plugins=[sendcore_twilio], load_entrypoints=False) as engine:
                got.append(engine.limits["twilio"].timeout)
        return got

    own, more, pinned = run(main())
    assert own == pytest.approx(2 * 2.0 + 1.0)  # 4 batches of 50 over 100 connections: two turns
    assert more == pytest.approx(4 * 2.0 + 1.0)  # 8 batches of 50: four turns
    assert pinned == 3.0  # [providers.twilio] timeout, when set, wins


def test_start_without_the_token_variable_is_a_config_error_naming_it(monkeypatch):
    monkeypatch.delenv("MY_TWILIO_TOKEN", raising=False)
    provider = TwilioProvider.from_options(options("http://127.0.0.1:9", auth_token_env="MY_TWILIO_TOKEN"))
    with pytest.raises(ConfigError, match="MY_TWILIO_TOKEN is not set"):
        asyncio.run(provider.start(_Context()))


# --------------------------------------------------------------------------- the request


def test_the_request_carries_form_body_basic_auth_idempotency_token_and_status_callback():
    async def main():
        async with TwilioServer(ACCOUNT, TOKEN) as server:
            provider = await started(server.url, status_callback=CALLBACK)
            try:
                first = await provider.send(batch([sms(1, "+33612345671", body="Café & crème = 100%+")]))
                # A send naming a sender: that number goes out as From instead of the configured one.
                second = await provider.send(batch([sms(2, "+33612345672", sender="+15005550009")],
                                                   sender="+15005550009"))
            finally:
                await provider.close()
            service = await started(server.url, **{"from": None, "messaging_service_sid": SERVICE})
            try:
                third = await service.send(batch([sms(3, "+33612345673")]))
            finally:
                await service.close()
            return first + second + third, server.requests

    results, seen = asyncio.run(main())
    assert all(type(r) is Accepted and r.provider_id.startswith("SM") for r in results)
    assert len({r.provider_id for r in results}) == 3
    one, two, three = seen
    assert one.account_sid == ACCOUNT
    assert one.auth == (ACCOUNT, TOKEN)
    assert one.content_type == "application/x-www-form-urlencoded"
    assert one.idempotency_token == "m1"
    assert one.form == {"To": "+33612345671", "Body": "Café & crème = 100%+", "From": "+15005550006",
                        "StatusCallback": CALLBACK}
    assert two.form["From"] == "+15005550009" and two.idempotency_token == "m2"
    assert three.form == {"To": "+33612345673", "Body": "Your code is 1234", "MessagingServiceSid": SERVICE}


def test_the_same_send_id_gets_the_same_message_back():
    async def main():
        async with TwilioServer(ACCOUNT, TOKEN) as server:
            provider = await started(server.url)
            try:
                a = await provider.send(batch([sms(1, "+33612345671")]))
                b = await provider.send(batch([sms(1, "+33612345671")]))
            finally:
                await provider.close()
            return a[0], b[0], server.requests

    a, b, seen = asyncio.run(main())
    assert type(a) is Accepted and a == b
    assert [r.idempotency_token for r in seen] == ["m1", "m1"]


def slow_batch(n: int, answer_in: float, **extra: Any) -> tuple[list[Any], float, TwilioProvider, int]:
    """Send ``n`` messages in one batch to a server that answers each after ``answer_in`` seconds.

    Returns the results, the wall time of the batch, the provider (closed)
    and how many connections its pool held open after the batch.
    """
    async def main() -> tuple[list[Any], float, TwilioProvider, int]:
        async with TwilioServer(ACCOUNT, TOKEN) as server:
            for i in range(n):
                server.always[f"+336123456{i:02d}"] = Slow(answer_in)
            provider = await started(server.url, **extra)
            try:
                t0 = time.perf_counter()
                results = await provider.send(batch([sms(i, f"+336123456{i:02d}") for i in range(n)]))
                elapsed = time.perf_counter() - t0
                connector = provider._session.connector  # type: ignore[union-attr]
                pooled = sum(len(v) for v in connector._conns.values())
            finally:
                await provider.close()
            return results, elapsed, provider, pooled

    return asyncio.run(main())


def test_a_batch_is_sent_concurrently_over_reused_connections():
    # Each answer takes 0.1 s; 50 in sequence would take 5 s. A generous
    # timeout: this test is about concurrency, not timeouts.
    results, elapsed, _, pooled = slow_batch(50, 0.1, max_connections=25, request_timeout=2.0)
    assert all(type(r) is Accepted for r in results), [r for r in results if type(r) is not Accepted][:3]
    # 25 connections at once: two rounds of 0.1 s, far from 50 rounds.
    assert elapsed < 1.5
    assert 0 < pooled <= 25  # the connections stay open for the next batch


def test_the_wait_for_a_free_connection_does_not_count_against_request_timeout():
    # 12 requests over 2 connections: six turns of 0.25 s. The last turns end
    # 1.25 s and 1.5 s in, past the 1 s timeout, yet each request gets its
    # answer within 0.25 s of leaving.
    results, elapsed, provider, _ = slow_batch(12, 0.25, max_connections=2, request_timeout=1.0)
    assert all(type(r) is Accepted for r in results), [r for r in results if type(r) is not Accepted][:3]
    assert elapsed >= 1.45  # they really went two at a time
    assert provider.timeout >= 100 * 1.0  # 200 requests in flight, 2 at a time, each up to 1 s


def test_request_rate_paces_the_requests():
    async def main():
        async with TwilioServer(ACCOUNT, TOKEN) as server:
            provider = await started(server.url, request_rate=20)
            try:
                t0 = time.perf_counter()
                results = await provider.send(batch([sms(i, f"+336123456{i:02d}") for i in range(40)]))
                elapsed = time.perf_counter() - t0
            finally:
                await provider.close()
            return results, elapsed

    results, elapsed = asyncio.run(main())
    assert all(type(r) is Accepted for r in results)
    # 20 may leave at once (the bucket is full), the next 20 at 20 per second.
    assert elapsed >= 0.8


# --------------------------------------------------------------------------- transport faults


def test_connection_refused_is_a_temporary_failure_of_each_message():
    async def main():
        provider = await started(f"http://127.0.0.1:{free_port()}")
        try:
            return await provider.send(batch([sms(1, "+33612345671"), sms(2, "+33612345672")]))
        finally:
            await provider.close()

    results = asyncio.run(main())
    assert [type(r) for r in results] == [TemporaryFailure, TemporaryFailure]
    assert all(r.code == "connection" and "Connect" in r.message for r in results)


def test_a_server_slower_than_request_timeout_is_a_temporary_failure_and_a_slow_one_within_it_succeeds():
    async def main():
        async with TwilioServer(ACCOUNT, TOKEN) as server:
            t0 = time.perf_counter()
            # Margins of several tenths of a second either way, so a loaded machine does not blur them.
            results = await send_to(server, {"+33612345671": Slow(4.0), "+33612345672": Slow(0.2),
                                             "+33612345673": Answer(201, b'{"sid": "SMfast"}')},
                                    request_timeout=1.0)
            return results, time.perf_counter() - t0

    (slow, within, fast), elapsed = asyncio.run(main())
    assert type(slow) is TemporaryFailure and slow.code == "timeout" and "within 1s" in slow.message
    assert type(within) is Accepted
    assert fast == Accepted("SMfast")
    assert elapsed < 3.0  # the timeout cut the 4 s answer short


@pytest.mark.parametrize("http", [500, 502, 503])
def test_a_5xx_is_a_temporary_failure_of_that_message_only(http):
    async def main():
        async with TwilioServer(ACCOUNT, TOKEN) as server:
            return await send_to(server, {"+33612345671": Answer(http, b"<html>oops</html>"),
                                          "+33612345672": twilio_error(20500, http, "Internal Server Error"),
                                          "+33612345673": Answer(201, b'{"sid": "SMok"}')})

    plain, coded, ok = asyncio.run(main())
    assert plain == TemporaryFailure(f"http_{http}", f"HTTP {http}: <html>oops</html>", address_fault=False)
    assert coded == TemporaryFailure("20500", f"HTTP {http}: Internal Server Error", address_fault=False)
    assert ok == Accepted("SMok")


def test_a_201_with_malformed_json_is_a_temporary_failure():
    async def main():
        async with TwilioServer(ACCOUNT, TOKEN) as server:
            return await send_to(server, {"+33612345671": Malformed(),
                                          "+33612345672": Answer(201, b'{"status": "queued"}'),
                                          "+33612345673": Answer(201, b"[]")})

    results = asyncio.run(main())
    assert all(type(r) is TemporaryFailure and r.code == "malformed_response" for r in results), results
    assert "HTTP 201" in results[0].message


def test_a_connection_closed_mid_response_or_before_it_is_a_temporary_failure():
    async def main():
        async with TwilioServer(ACCOUNT, TOKEN) as server:
            results = await send_to(server, {"+33612345671": Drop(partial=True), "+33612345672": Drop(partial=False),
                                             "+33612345673": Answer(201, b'{"sid": "SMok"}')})
            return results, server.count

    (mid, before, ok), count = asyncio.run(main())
    assert type(mid) is TemporaryFailure and mid.code == "connection" and "Payload" in mid.message
    assert type(before) is TemporaryFailure and before.code == "connection" and "Disconnected" in before.message
    assert ok == Accepted("SMok")
    assert count == 3


# --------------------------------------------------------------------------- rate limits


def test_429_maps_to_rate_limited_with_retry_after_in_each_form():
    future = formatdate(time.time() + 30, usegmt=True)
    past = formatdate(time.time() - 30, usegmt=True)

    async def main():
        async with TwilioServer(ACCOUNT, TOKEN) as server:
            return await send_to(server, {
                "+33612345671": twilio_error(20429, 429, "Too Many Requests", {"Retry-After": "3"}),
                "+33612345672": twilio_error(20429, 429, "Too Many Requests"),  # no Retry-After
                "+33612345673": Answer(429, b"slow down", {"Retry-After": future}),
                "+33612345674": Answer(429, b"", {"Retry-After": past}),
                "+33612345675": Answer(429, b"", {"Retry-After": "86400000"}),
                "+33612345676": Answer(429, b"", {"Retry-After": "soon"}),
                # Code 20429 is a rate limit even on another status.
                "+33612345677": twilio_error(20429, 400, "Too Many Requests", {"Retry-After": "2"}),
            })

    results = asyncio.run(main())
    assert all(type(r) is RateLimited for r in results), results
    delta, missing, date, past_date, huge, garbage, coded = (r.retry_after for r in results)
    assert delta == 3.0
    assert missing == 1.0
    assert 27.0 < date <= 30.0
    assert past_date == MIN_RETRY_AFTER
    assert huge == MAX_RETRY_AFTER
    assert garbage == 1.0
    assert coded == 2.0


def test_retry_after_seconds_reads_both_forms_and_clamps():
    now = 1_800_000_000.0
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds(" 0.5 ", now) == 0.5
    assert retry_after_seconds(formatdate(now + 42, usegmt=True), now) == pytest.approx(42.0)
    assert retry_after_seconds(None, now) == 1.0
    assert retry_after_seconds("0", now) == MIN_RETRY_AFTER
    assert retry_after_seconds("-5", now) == MIN_RETRY_AFTER
    assert retry_after_seconds("inf", now) == 1.0
    assert retry_after_seconds("nan", now) == 1.0
    assert retry_after_seconds("1e9", now) == MAX_RETRY_AFTER


# --------------------------------------------------------------------------- Twilio error codes


def test_each_mapped_error_code_gives_its_result():
    async def main():
        async with TwilioServer(ACCOUNT, TOKEN) as server:
            return await send_to(server, {
                "+33612345671": twilio_error(21211, 400, "The 'To' number +33612345671 is not a valid phone number."),
                "+33612345672": twilio_error(21614, 400, "'To' number is not a valid mobile number"),
                "+33612345673": twilio_error(21610, 400, "Attempt to send to unsubscribed recipient"),
                "+33612345674": twilio_error(21408, 400, "Permission to send an SMS has not been enabled"),
                "+33612345675": twilio_error(21612, 400, "The 'To' phone number is not currently reachable"),
                "+33612345676": twilio_error(20429, 429, "Too Many Requests", {"Retry-After": "2"}),
                "+33612345677": twilio_error(21602, 400, "Message body is required."),
                "+33612345678": Answer(404, b"Not Found"),
            })

    invalid, landline, stop, region, unreachable, limited, other, plain = asyncio.run(main())
    assert invalid == PermanentFailure("21211", "The 'To' number +33612345671 is not a valid phone number.", "all")
    assert landline == PermanentFailure("21614", "'To' number is not a valid mobile number", "all")
    assert stop == PermanentFailure("21610", "Attempt to send to unsubscribed recipient", "marketing")
    assert region == PermanentFailure("21408", "Permission to send an SMS has not been enabled", None)
    assert unreachable == PermanentFailure("21612", "The 'To' phone number is not currently reachable", None)
    assert limited == RateLimited(2.0)
    assert other == PermanentFailure("21602", "HTTP 400: Message body is required.", None)
    assert plain == PermanentFailure("http_404", "HTTP 404: Not Found", None)


def test_stop_suppress_all_suppresses_every_message_after_21610():
    async def main():
        async with TwilioServer(ACCOUNT, TOKEN) as server:
            return await send_to(server, {"+33612345673": twilio_error(21610, 400, "unsubscribed")},
                                 stop_suppress="all")

    (stop,) = asyncio.run(main())
    assert stop == PermanentFailure("21610", "unsubscribed", "all")


def test_wrong_credentials_are_a_permanent_failure_naming_the_code():
    async def main():
        async with TwilioServer(ACCOUNT, "another-token") as server:
            return await send_to(server, {"+33612345671": Answer(201, b'{"sid": "SMnever"}')})

    (result,) = asyncio.run(main())
    assert result == PermanentFailure("20003", "HTTP 401: Authenticate", None)


# --------------------------------------------------------------------------- contract kit and engine


def test_the_provider_passes_the_contract_kit_with_nothing_skipped():
    async def main():
        async with TwilioServer(ACCOUNT, TOKEN) as server:
            server.always["+33612340000"] = twilio_error(21211, 400, "invalid number")
            server.always["+33612349999"] = twilio_error(20429, 429, "Too Many Requests", {"Retry-After": "1"})
            opts = options(server.url, request_timeout=2.0)
            return await check_provider(
                lambda: TwilioProvider.from_options(opts), options=opts,
                failing_sends=[sms("bad", "+33612340000")],
                rate_limit_sends=[sms(f"rl{i}", "+33612349999") for i in range(3)],
            )

    report = asyncio.run(main())
    assert report.skipped == {}
    assert report.passed == list(CHECKS)


def _engine_settings(url: str, **extra: Any) -> Settings:
    return Settings.from_dict({
        "journal": {"path": ""},
        "providers": {"twilio": {"options": options(url, **extra)}},
        "retry": {"base_delay": "10ms", "max_delay": "50ms", "max_attempts": 3, "jitter": 0},
    })


def test_a_mixed_batch_through_the_engine_ends_every_send_once_with_the_right_outcome(run):
    numbers = {
        "ok": "+33612345601", "ok2": "+33612345602", "invalid": "+33612345603", "once503": "+33612345604",
        "once500": "+33612345605", "once429": "+33612345606", "slow": "+33612345607", "drop": "+33612345608",
        "malformed": "+33612345609", "stop": "+33612345610", "region": "+33612345611", "always502": "+33612345612",
    }

    async def main():
        async with TwilioServer(ACCOUNT, TOKEN) as server:
            server.always[numbers["invalid"]] = twilio_error(21211, 400, "invalid number")
            server.always[numbers["stop"]] = twilio_error(21610, 400, "unsubscribed")
            server.always[numbers["region"]] = twilio_error(21408, 400, "region not enabled")
            server.always[numbers["always502"]] = Answer(502, b"bad gateway")
            server.script[numbers["once503"]] = [Answer(503, b"busy")]
            server.script[numbers["once500"]] = [twilio_error(20500, 500, "Internal Server Error")]
            server.script[numbers["once429"]] = [twilio_error(20429, 429, "Too Many Requests",
                                                              {"Retry-After": "0.2"})]
            server.script[numbers["slow"]] = [Slow(1.0)]
            server.script[numbers["drop"]] = [Drop()]
            server.script[numbers["malformed"]] = [Malformed()]
            async with Engine(_engine_settings(server.url), plugins=[sendcore_twilio],
                              load_entrypoints=False) as engine:
                stream = engine.outcomes()
                sends = [sms(name, to) for name, to in numbers.items()]
                report = await engine.submit(sends)
                assert report.accepted == len(sends)
                await asyncio.wait_for(engine.drain(), 15)
                # The address 21211 suppressed is skipped from now on, without a request.
                before = server.count
                await engine.submit([sms("later", numbers["invalid"])])
                await asyncio.wait_for(engine.drain(), 15)
                after = server.count
                finals = {s.id: engine.outcome(s.id) for s in sends + [sms("later", "")]}
                scopes = {k: engine.core.suppression.scope_of("sms", numbers[k]) for k in ("invalid", "stop", "region")}
            outcomes = [o async for o in stream]
            return finals, outcomes, scopes, server, before, after

    finals, outcomes, scopes, server, before, after = run(main())
    final_counts: dict[str, int] = {}
    for o in outcomes:
        if o.status.is_final:
            final_counts[o.send_id] = final_counts.get(o.send_id, 0) + 1
    assert final_counts == {sid: 1 for sid in finals}, final_counts
    for name in ("ok", "ok2", "once503", "once500", "once429", "slow", "drop", "malformed"):
        o = finals[f"m{name}"]
        assert o.status is Status.SENT and o.provider_id.startswith("SM"), (name, o)
    assert finals["minvalid"].status is Status.FAILED and finals["minvalid"].reason is Reason.PERMANENT_FAILURE
    assert finals["minvalid"].detail == "21211: invalid number"
    assert finals["mstop"].status is Status.FAILED and finals["mstop"].detail == "21610: unsubscribed"
    assert finals["mregion"].status is Status.FAILED
    assert scopes == {"invalid": "all", "stop": "marketing", "region": None}
    # A 502 every time: retried up to max_attempts, then failed.
    bad = finals["malways502"]
    assert bad.status is Status.FAILED and bad.reason is Reason.MAX_ATTEMPTS and bad.attempt == 3
    assert len(server.sent_to(numbers["always502"])) == 3
    later = finals["mlater"]
    assert later.status is Status.SKIPPED and later.reason is Reason.SUPPRESSED
    assert after == before
    # Retries carry the send id as idempotency token again: 503 once, then 201.
    retried = server.sent_to(numbers["once503"])
    assert [r.idempotency_token for r in retried] == ["monce503", "monce503"]
    # The 429 deferred the send (a rate_limit event), then it went out.
    assert any(o.send_id == "monce429" and o.status is Status.DEFERRED and o.reason is Reason.RATE_LIMIT
               for o in outcomes)


def test_connection_refused_through_the_engine_retries_then_fails_each_send_once(run):
    async def main():
        settings = _engine_settings(f"http://127.0.0.1:{free_port()}")
        async with Engine(settings, plugins=[sendcore_twilio], load_entrypoints=False) as engine:
            stream = engine.outcomes()
            sends = [sms(i, f"+3361234560{i}") for i in range(5)]
            await engine.submit(sends)
            await asyncio.wait_for(engine.drain(), 15)
            finals = {s.id: engine.outcome(s.id) for s in sends}
            # The engine keeps running: it still takes and finishes sends.
            await engine.submit([sms(9, "+33612345609")])
            await asyncio.wait_for(engine.drain(), 15)
            finals["m9"] = engine.outcome("m9")
        return finals, [o async for o in stream]

    finals, outcomes = run(main())
    assert all(o.status is Status.FAILED and o.reason is Reason.MAX_ATTEMPTS and o.attempt == 3
               for o in finals.values()), finals
    assert all("connection" in o.detail for o in finals.values())
    finals_seen = [o.send_id for o in outcomes if o.status.is_final]
    assert sorted(finals_seen) == sorted(finals)
    retries = [o for o in outcomes if o.status is Status.RETRYING]
    assert len(retries) == 2 * len(finals)


# --------------------------------------------------------------------------- delivery reports


def _hand_signature(token: str, url: str, fields: dict[str, str]) -> str:
    """Twilio's documented recipe, written out here apart from the plugin's code."""
    data = url
    for name in sorted(fields):
        data += name + fields[name]
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _callback(status: str, code: str = "", **extra: str) -> dict[str, str]:
    fields = {"MessageSid": "SM" + "a" * 32, "MessageStatus": status, "To": "+33612345671",
              "AccountSid": ACCOUNT, "From": "+15005550006", "ApiVersion": "2010-04-01", "SmsStatus": status}
    if code:
        fields["ErrorCode"] = code
    fields.update(extra)
    return fields


def _parse(fields: dict[str, str], **opts: Any) -> DeliveryReport | None:
    provider = TwilioProvider.from_options(options("http://127.0.0.1:9", status_callback=CALLBACK, **opts))
    headers = {"x-twilio-signature": _hand_signature(TOKEN, CALLBACK, fields)}
    return provider.parse_delivery_report(fields, url=CALLBACK, headers=headers)


def test_the_signature_matches_twilios_published_example():
    # From Twilio's webhook security docs and its SDK samples: token 12345, this URL and these fields.
    fields = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert compute_signature("12345", url, fields.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    provider = TwilioProvider.from_options({"account_sid": ACCOUNT, "from": "+1500", "verify_signature": True})
    provider._token = "12345"
    with pytest.raises(DeliveryReportError, match="MessageSid and MessageStatus"):
        # The signature checks (so no signature error); the fields are a voice call's, not a message's.
        provider.parse_delivery_report(fields, url=url, headers={"X-Twilio-Signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8="})


@pytest.mark.parametrize("status, code, expected", [
    ("delivered", "", DeliveryReport(delivered=True, provider_id="SM" + "a" * 32, code="delivered", detail="delivered")),
    ("undelivered", "30003", DeliveryReport(delivered=False, provider_id="SM" + "a" * 32, code="30003",
                                            detail="undelivered: 30003 Unreachable destination handset",
                                            temporary=True)),
    ("undelivered", "30005", DeliveryReport(delivered=False, provider_id="SM" + "a" * 32, code="30005",
                                            detail="undelivered: 30005 Unknown destination handset", suppress="all")),
    ("failed", "30006", DeliveryReport(delivered=False, provider_id="SM" + "a" * 32, code="30006",
                                       detail="failed: 30006 Landline or unreachable carrier", suppress="all")),
    ("undelivered", "30007", DeliveryReport(delivered=False, provider_id="SM" + "a" * 32, code="30007",
                                            detail="undelivered: 30007 Message filtered by the carrier")),
    ("undelivered", "30022", DeliveryReport(delivered=False, provider_id="SM" + "a" * 32, code="30022",
                                            detail="undelivered: 30022 US A2P 10DLC rate limits exceeded",
                                            retry_after=1.0)),
    ("undelivered", "30008", DeliveryReport(delivered=False, provider_id="SM" + "a" * 32, code="30008",
                                            detail="undelivered: Twilio error 30008")),
    ("failed", "", DeliveryReport(delivered=False, provider_id="SM" + "a" * 32, code="failed", detail="failed")),
])
def test_final_statuses_map_to_delivery_reports(status, code, expected):
    assert _parse(_callback(status, code)) == expected


@pytest.mark.parametrize("status", ["queued", "sending", "sent", "accepted", "scheduled", "read"])
def test_intermediate_statuses_report_nothing(status):
    assert _parse(_callback(status)) is None


def test_a_missing_or_wrong_signature_or_url_is_rejected():
    provider = TwilioProvider.from_options(options("http://127.0.0.1:9"))
    fields = _callback("delivered")
    good = _hand_signature(TOKEN, CALLBACK, fields)
    with pytest.raises(DeliveryReportError, match="no X-Twilio-Signature"):
        provider.parse_delivery_report(fields, url=CALLBACK, headers={})
    with pytest.raises(DeliveryReportError, match="does not match"):
        provider.parse_delivery_report(fields, url=CALLBACK, headers={"X-Twilio-Signature": good[:-2] + "A="})
    with pytest.raises(DeliveryReportError, match="does not match"):
        provider.parse_delivery_report({**fields, "MessageStatus": "undelivered"}, url=CALLBACK,
                                       headers={"X-Twilio-Signature": good})
    with pytest.raises(DeliveryReportError, match="does not match"):
        provider.parse_delivery_report(fields, url=CALLBACK + "&x=1", headers={"X-Twilio-Signature": good})
    with pytest.raises(DeliveryReportError, match="url is needed"):
        provider.parse_delivery_report(fields, headers={"X-Twilio-Signature": good})
    # Any case of the header name, and a multidict as aiohttp gives them.
    assert provider.parse_delivery_report(fields, url=CALLBACK, headers={"X-TWILIO-SIGNATURE": good}).delivered
    assert provider.parse_delivery_report(fields, url=CALLBACK,
                                          headers=CIMultiDict({"x-twilio-signature": good})).delivered
    # The URL as signed, with the default port added by a proxy, still checks.
    ported = CALLBACK.replace("hooks.example.com", "hooks.example.com:443")
    assert provider.parse_delivery_report(fields, url=ported, headers={"X-Twilio-Signature": good}).delivered


def test_malformed_reports_are_rejected_and_verification_can_be_off():
    provider = TwilioProvider.from_options(options("http://127.0.0.1:9", verify_signature=False))
    assert provider.parse_delivery_report(_callback("delivered")).delivered
    with pytest.raises(DeliveryReportError, match="MessageSid and MessageStatus"):
        provider.parse_delivery_report({"MessageStatus": "delivered"})
    with pytest.raises(DeliveryReportError, match="AccountSid"):
        provider.parse_delivery_report(_callback("delivered", AccountSid="AC" + "9" * 32))
    with pytest.raises(DeliveryReportError, match="not a number"):
        provider.parse_delivery_report(_callback("undelivered", "3000x"))
    with pytest.raises(DeliveryReportError, match="unknown MessageStatus"):
        provider.parse_delivery_report(_callback("teleported"))


def test_a_signed_status_callback_posted_to_a_real_server_parses():
    """The form fields, URL and headers as aiohttp hands them to a webhook handler."""
    provider = TwilioProvider.from_options(options("http://127.0.0.1:9"))
    got: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        try:
            got.append(provider.parse_delivery_report(await request.post(), url=str(request.url),
                                                      headers=request.headers))
        except DeliveryReportError as exc:
            got.append(exc)
        return web.Response(status=204)

    async def main():
        import aiohttp

        app = web.Application()
        app.router.add_post("/twilio/status", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/twilio/status?tenant=7"
        fields = _callback("undelivered", "30003", Body="a + b = c & d")
        try:
            async with aiohttp.ClientSession() as http:
                for signature in (_hand_signature(TOKEN, url, fields), "forged"):
                    async with http.post(url, data=fields, headers={"X-Twilio-Signature": signature}) as r:
                        assert r.status == 204
        finally:
            await runner.cleanup()

    asyncio.run(main())
    report, forged = got
    assert report == DeliveryReport(delivered=False, provider_id="SM" + "a" * 32, code="30003",
                                    detail="undelivered: 30003 Unreachable destination handset", temporary=True)
    assert isinstance(forged, DeliveryReportError)
