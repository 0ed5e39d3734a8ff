"""The bundled generic ``http`` provider against a real local JSON batch server (``tests/http_server.py``).

Every fault is produced by the server on 127.0.0.1: refused connections,
timeouts, slow answers, 5xx, 429 in each ``Retry-After`` form, malformed and
truncated bodies, too few or too many results, and each kind of per-item code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import time
from email.utils import formatdate
from typing import Any

import pytest
from aiohttp import web

import sendcore_http
from sendcore import Engine, Send, Settings, Status
from sendcore.errors import ConfigError, DeliveryReportError
from sendcore.provider import DeliveryReport
from sendcore.send import Accepted, Batch, PermanentFailure, RateLimited, Reason, TemporaryFailure
from sendcore.testing import check_provider
from sendcore.testing.contract import CHECKS
from sendcore_http import HttpProvider, idempotency_key, retry_after_seconds, status_kind
from sendcore_http.codes import MIN_RETRY_AFTER

from .http_server import Drop, Fewer, HttpServer, ItemError, Malformed, More, Reply, Reversed, Slow, free_port

TOKEN = "http-test-token"
SECRET = "report-signing-secret"
CODES = {"invalid_number": "suppress_all", "unsubscribed": "suppress_marketing", "handset_off": "temporary",
         "throttled": "rate_limited", "blocked": "permanent"}


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("HTTP_TEST_REPORT_SECRET", SECRET)


class _Context:
    """What the engine hands ``start``: a clock and the options table (empty: keep the constructor's)."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.clock = None
        self.settings = settings or {}

    def report_delivery(self, send_id: str, delivered: bool, detail: str = "") -> None:
        raise AssertionError("the http provider reports nothing by itself")

    def report_opt_out(self, channel: str, address: str) -> None:
        raise AssertionError("the http provider reports nothing by itself")


def options(url: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"url": url, "channels": ["sms"], "auth_env": "HTTP_TEST_TOKEN", "codes": CODES,
                            "request_timeout": 0.5, "result_retry_after_field": "retry_after"}
    base.update(extra)
    return base


def sms(i: Any, to: str, **kw: Any) -> Send:
    return Send(id=f"m{i}", recipient=f"r{i}", channel="sms", to=to, origin="transactional",
                body=kw.pop("body", "Your code is 1234"), **kw)


def batch(sends: list[Send], sender: str = "") -> Batch:
    return Batch(id=1, provider="http", channel=sends[0].channel, sender=sender, carrier="", sends=sends,
                 attempts=[1] * len(sends))


async def started(url: str, **extra: Any) -> HttpProvider:
    provider = HttpProvider.from_options(options(url, **extra))
    await provider.start(_Context())
    return provider


async def send_batch(url: str, sends: list[Send], **extra: Any) -> list[Any]:
    provider = await started(url, **extra)
    try:
        return await provider.send(batch(sends))
    finally:
        await provider.close()


def three() -> list[Send]:
    return [sms(i, f"+3361234560{i}") for i in range(3)]


# --------------------------------------------------------------------------- options and registration


@pytest.mark.parametrize("table, key, words", [
    ({"channels": ["sms"]}, "url", "required"),
    ({"url": "ftp://x/y", "channels": ["sms"]}, "url", "http(s) URL"),
    ({"url": "http://127.0.0.1:9/"}, "channels", "required"),
    ({"url": "http://127.0.0.1:9/", "channels": []}, "channels", "at least one"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "method": "GET"}, "method", "Invalid enum value"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "urll": "x"}, "urll", "unknown option"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "max_batch": 0}, "max_batch", "at least 1"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "request_rate": 0}, "request_rate", "positive"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "request_timeout": "soon"}, "request_timeout", "duration"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "headers": {"Bad Name": "x"}}, "headers.Bad Name",
     "header name"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "item": {"text": "{bdy}"}}, "item.text",
     "unknown template field {bdy}"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "item": {"m": {"s": "{metadata.}"}}}, "item.m.s",
     "empty key"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "item": {"t": "{to!r}"}}, "item.t", "no format spec"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "envelope": {"x": "{to}"}}, "envelope.x",
     "only {channel} and {sender}"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "body_path": "", "envelope": {"a": 1}}, "envelope",
     "bare JSON array"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "codes": {"E1": "maybe"}}, "codes.E1", "expected one of"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "statuses": {"409": "suppress_all"}}, "statuses.409",
     "expected one of"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "statuses": {"200": "temporary"}}, "statuses.200", "2xx"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "statuses": {"abc": "temporary"}}, "statuses.abc",
     "between 100 and 599"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "report_secret_env": "X"}, "report_signature_header",
     "go together"),
    ({"url": "http://127.0.0.1:9/", "channels": ["sms"], "result_match": "id", "result_id_field": ""},
     "result_id_field", "needs the field"),
])
def test_option_errors_name_the_key(table, key, words):
    with pytest.raises(ConfigError) as info:
        HttpProvider.from_options(table)
    message = str(info.value)
    assert message.startswith(f"providers.http.options.{key}: "), message
    assert words in message, message


def test_registers_only_when_configured_and_takes_channels_and_batch_size_from_options():
    got: list[Any] = []
    sendcore_http.sendcore_register_providers(got.append, Settings.from_dict({}))
    assert got == []
    settings = Settings.from_dict({"providers": {"http": {"options": options(
        "http://127.0.0.1:9/v1", channels=["email", "push"], max_batch=25)}}})
    sendcore_http.sendcore_register_providers(got.append, settings)
    (provider,) = got
    assert isinstance(provider, HttpProvider)
    assert provider.name == "http" and provider.channels == ("email", "push") and provider.max_batch == 25


def test_an_unset_auth_variable_is_a_config_error_naming_it(monkeypatch):
    monkeypatch.delenv("HTTP_TEST_TOKEN")
    provider = HttpProvider.from_options(options("http://127.0.0.1:9/v1"))
    assert "HTTP_TEST_TOKEN" in provider.problems()[0]
    with pytest.raises(ConfigError, match=r"providers\.http\.options\.auth_env: the environment variable "
                                          r"HTTP_TEST_TOKEN is not set"):
        asyncio.run(provider.start(_Context()))


def test_the_body_follows_the_item_shape_and_the_envelope():
    provider = HttpProvider.from_options(options(
        "http://127.0.0.1:9/v1", sender="ACME", body_path="data.messages",
        envelope={"account": "acme-7", "channel": "{channel}", "from": "{sender}"},
        item={"ref": "{id}", "dest": "{to}", "text": "{body}", "kind": "otp", "n": 3, "flag": True,
              "meta": {"subject": "{metadata.subject}", "seq": "{metadata.seq}", "deep": "{metadata.a.b}"},
              "note": "{{for}} {recipient} via {channel}/{origin}", "tags": "{tags}", "both": ["{to}", "{carrier}"]}))
    sends = [sms(1, "+33612345601", metadata={"subject": "Hi", "seq": 7, "a": {"b": [1, 2]}}, tags=("otp",)),
             sms(2, "+33612345602")]
    doc = json.loads(provider.body(batch(sends)))
    assert doc == {
        "account": "acme-7", "channel": "sms", "from": "ACME",
        "data": {"messages": [
            {"ref": "m1", "dest": "+33612345601", "text": "Your code is 1234", "kind": "otp", "n": 3, "flag": True,
             "meta": {"subject": "Hi", "seq": 7, "deep": [1, 2]}, "note": "{for} r1 via sms/transactional",
             "tags": ["otp"], "both": ["+33612345601", None]},
            # No metadata: those keys are left out, not sent as null.
            {"ref": "m2", "dest": "+33612345602", "text": "Your code is 1234", "kind": "otp", "n": 3, "flag": True,
             "meta": {}, "note": "{for} r2 via sms/transactional", "tags": [], "both": ["+33612345602", None]},
        ]},
    }
    # The batch's own sender wins over the option; a bare array has no envelope.
    bare = HttpProvider.from_options(options("http://127.0.0.1:9/v1", body_path="",
                                             item={"to": "{to}", "from": "{sender}"}))
    assert json.loads(bare.body(batch(sends[:1], sender="+15005550006"))) == [
        {"to": "+33612345601", "from": "+15005550006"}]
    assert json.loads(bare.body(batch(sends[:1]))) == [{"to": "+33612345601"}]


def test_headers_auth_idempotency_key_and_method_reach_the_server():
    async def main():
        async with HttpServer(TOKEN) as server:
            one = await send_batch(server.url, [sms(1, "+33612345601")], headers={"X-Account": "acme"},
                                   method="PUT")
            many = await send_batch(server.url, three())
            return server, one, many

    server, one, many = asyncio.run(main())
    assert one == [Accepted("msg-00000001")]
    # m1 was sent before: the server answers its item with the same message id (it deduplicates by item id).
    assert [r.provider_id for r in many] == ["msg-00000002", "msg-00000001", "msg-00000003"]
    first, second = server.requests
    assert first.method == "PUT" and second.method == "POST"
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.headers["X-Account"] == "acme"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Idempotency-Key"] == "m1"
    key = second.headers["Idempotency-Key"]
    assert key == idempotency_key(three()) and key.startswith("batch-") and key != idempotency_key(three()[::-1])
    assert second.body["messages"][0] == {"id": "m0", "to": "+33612345600", "body": "Your code is 1234"}


def test_raw_auth_scheme_and_custom_header_and_a_wrong_credential():
    async def main():
        async with HttpServer() as server:
            await send_batch(server.url, [sms(1, "+33612345601")], auth_scheme="", auth_header="X-Api-Key",
                             idempotency_header="")
        async with HttpServer("another-token") as server2:
            refused = await send_batch(server2.url, [sms(1, "+33612345601")])
        return server, refused

    server, refused = asyncio.run(main())
    (seen,) = server.requests
    assert seen.headers["X-Api-Key"] == TOKEN and "Authorization" not in seen.headers
    assert "Idempotency-Key" not in seen.headers
    # 401: another 4xx, so a permanent failure of the batch, naming the status and the body.
    (r,) = refused
    assert isinstance(r, PermanentFailure) and r.code == "http_401" and "bad credentials" in r.message


# --------------------------------------------------------------------------- transport and whole-response faults


def test_connection_refused_is_a_temporary_failure_of_every_send():
    results = asyncio.run(send_batch(f"http://127.0.0.1:{free_port()}/v1/messages", three()))
    assert len(results) == 3
    for r in results:
        assert isinstance(r, TemporaryFailure) and r.code == "connection" and r.address_fault is False


def test_a_timeout_is_a_temporary_failure_and_a_slow_answer_within_it_is_accepted():
    async def main():
        async with HttpServer(TOKEN) as server:
            # Margins of several tenths of a second either way, so a loaded machine does not blur them.
            server.script = [Slow(3.0), Slow(0.2)]
            t0 = time.monotonic()
            late = await send_batch(server.url, three(), request_timeout=0.3)
            took = time.monotonic() - t0
            slow = await send_batch(server.url, three(), request_timeout=1.0)
            return late, took, slow

    late, took, slow = asyncio.run(main())
    assert all(isinstance(r, TemporaryFailure) and r.code == "timeout" and not r.address_fault for r in late)
    assert took < 2.0  # cut off at request_timeout, not when the server finally answered
    assert all(isinstance(r, Accepted) for r in slow)


def test_the_wait_for_a_free_connection_does_not_count_against_request_timeout():
    async def main():
        async with HttpServer(TOKEN) as server:
            server.script = [Slow(0.25)] * 6
            # Six batches over one connection: turns of 0.25 s. The last ones
            # end 1.25 s and 1.5 s in, past the 1 s timeout, yet each is
            # answered within 0.25 s of leaving.
            provider = await started(server.url, max_connections=1, request_timeout=1.0)
            try:
                t0 = time.monotonic()
                results = await asyncio.gather(*[provider.send(batch([sms(f"{b}-{i}", f"+336123456{b}{i}")
                                                                      for i in range(3)]))
                                                 for b in range(6)])
                took = time.monotonic() - t0
            finally:
                await provider.close()
            return results, took, provider.timeout

    results, took, batch_timeout = asyncio.run(main())
    flat = [r for rs in results for r in rs]
    assert all(isinstance(r, Accepted) for r in flat), [r for r in flat if not isinstance(r, Accepted)][:3]
    assert took >= 1.45  # they really went one at a time
    assert batch_timeout == pytest.approx(8 * 1.0 + 1.0)  # 8 batches in flight, one at a time


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_5xx_and_408_are_temporary_failures_not_the_address(status):
    async def main():
        async with HttpServer(TOKEN) as server:
            server.script = [Reply(status, b"upstream trouble")]
            return await send_batch(server.url, three())

    for r in asyncio.run(main()):
        assert r == TemporaryFailure(f"http_{status}", f"HTTP {status}: upstream trouble", address_fault=False)


def test_other_4xx_fail_the_batch_permanently_and_statuses_can_remap():
    async def main():
        async with HttpServer(TOKEN) as server:
            server.script = [Reply(422, b'{"error": "bad"}'), Reply(409), Reply(418)]
            a = await send_batch(server.url, three())
            b = await send_batch(server.url, three(), statuses={"409": "temporary", "418": "rate_limited"})
            c = await send_batch(server.url, three(), statuses={"409": "temporary", "418": "rate_limited"})
            return a, b, c

    a, b, c = asyncio.run(main())
    assert all(r == PermanentFailure("http_422", 'HTTP 422: {"error": "bad"}') for r in a)
    assert all(isinstance(r, TemporaryFailure) and r.code == "http_409" for r in b)
    assert c == [RateLimited(1.0)] * 3


def test_429_honours_retry_after_in_both_forms_and_defaults_without_it():
    async def main():
        async with HttpServer(TOKEN) as server:
            server.script = [
                Reply(429),
                Reply(429, headers={"Retry-After": "7"}),
                Reply(429, headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)}),
                Reply(429, headers={"Retry-After": "99999"}),
                Reply(429, headers={"Retry-After": "0"}),
            ]
            return [await send_batch(server.url, three(), default_retry_after="2s", max_retry_after="60s")
                    for _ in range(5)]

    default, seconds, date, huge, zero = asyncio.run(main())
    assert default == [RateLimited(2.0)] * 3
    assert seconds == [RateLimited(7.0)] * 3
    assert all(isinstance(r, RateLimited) and 27 <= r.retry_after <= 30 for r in date)
    assert huge == [RateLimited(60.0)] * 3
    assert zero == [RateLimited(MIN_RETRY_AFTER)] * 3


def test_retry_after_values_are_clamped_positive_and_finite():
    assert retry_after_seconds(None, 1.5, 300) == 1.5
    assert retry_after_seconds("garbage", 1.5, 300) == 1.5
    assert retry_after_seconds("nan", 1.5, 300) == 1.5
    assert retry_after_seconds("inf", 1.5, 300) == 1.5
    assert retry_after_seconds("-5", 1.5, 300) == MIN_RETRY_AFTER
    assert retry_after_seconds(" 3 ", 1.5, 300) == 3.0
    assert retry_after_seconds(2.5, 1.5, 300) == 2.5
    assert retry_after_seconds(True, 1.5, 300) == 1.5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 1.5, 300) == MIN_RETRY_AFTER  # in the past
    now = 1_800_000_000.0
    assert retry_after_seconds(formatdate(now + 12, usegmt=True), 1.5, 300, now=now) == 12.0
    for value in (None, "x", "-1", "1e400", "0", "1e9"):
        got = retry_after_seconds(value, 1.0, 300)
        assert got > 0 and math.isfinite(got)


def test_status_kinds_default_as_documented():
    assert status_kind(429, {}) == "rate_limited"
    assert [status_kind(s, {}) for s in (408, 425, 500, 502, 503, 504, 599, 301)] == ["temporary"] * 8
    assert [status_kind(s, {}) for s in (400, 401, 403, 404, 409, 422)] == ["permanent"] * 6
    assert status_kind(503, {"503": "permanent"}) == "permanent"


# --------------------------------------------------------------------------- malformed answers


def test_malformed_json_missing_results_and_the_connection_closing_mid_answer_are_temporary():
    async def main():
        async with HttpServer(TOKEN) as server:
            server.script = [Malformed(), Malformed(b'{"data": []}'), Malformed(b'{"results": {"id": 1}}'),
                             Drop(partial=True), Drop(partial=False)]
            return [await send_batch(server.url, three()) for _ in range(5)]

    not_json, missing, not_a_list, cut, closed = asyncio.run(main())
    for results, words in ((not_json, "not JSON"), (missing, "no list of results at 'results'"),
                           (not_a_list, "no list of results")):
        assert len(results) == 3
        for r in results:
            assert isinstance(r, TemporaryFailure) and r.code == "malformed_response" and not r.address_fault
            assert words in r.message, r.message
    for results in (cut, closed):
        assert len(results) == 3
        assert all(isinstance(r, TemporaryFailure) and r.code == "connection" and not r.address_fault
                   for r in results), results


def test_fewer_or_more_results_than_sends():
    async def main():
        async with HttpServer(TOKEN) as server:
            server.script = [Fewer(1), More(2), Fewer(1), More(2), Reversed(), Reversed()]
            by_id_fewer = await send_batch(server.url, three())
            by_id_more = await send_batch(server.url, three())
            pos_fewer = await send_batch(server.url, three(), result_match="position")
            pos_more = await send_batch(server.url, three(), result_match="position")
            by_id_reversed = await send_batch(server.url, three())
            pos_reversed = await send_batch(server.url, three(), result_match="position")
            return by_id_fewer, by_id_more, pos_fewer, pos_more, by_id_reversed, pos_reversed

    by_id_fewer, by_id_more, pos_fewer, pos_more, by_id_reversed, pos_reversed = asyncio.run(main())
    # By id: the send left out is retried, the others are accepted; strangers are ignored.
    assert [type(r) for r in by_id_fewer] == [Accepted, Accepted, TemporaryFailure]
    assert "no result names send 'm2'" in by_id_fewer[2].message
    assert all(isinstance(r, Accepted) for r in by_id_more)
    # By position, a count that does not match says nothing trustworthy about any send.
    for results, count in ((pos_fewer, 2), (pos_more, 5)):
        assert len(results) == 3
        assert all(isinstance(r, TemporaryFailure) and r.code == "malformed_response" for r in results)
        assert f"{count} results for a batch of 3 sends" in results[0].message
    # Answers in another order: matching by id still gives each send its own message id.
    ids = [r.provider_id for r in by_id_reversed]
    assert len(set(ids)) == 3 and all(isinstance(r, Accepted) for r in by_id_reversed)
    assert [r.provider_id for r in pos_reversed] == ids[::-1]


def test_a_result_named_twice_or_not_an_object_is_temporary_for_that_send_only():
    async def app_handler(request: web.Request) -> web.Response:
        return web.json_response({"results": [{"id": "m0", "status": "queued", "message_id": "a"},
                                              {"id": "m1", "status": "queued", "message_id": "b"},
                                              {"id": "m1", "status": "failed", "error": {"code": "blocked"}},
                                              "m2"]})

    async def main():
        app = web.Application()
        app.router.add_post("/v1/messages", app_handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            by_id = await send_batch(f"http://127.0.0.1:{port}/v1/messages", three())
            by_pos = await send_batch(f"http://127.0.0.1:{port}/v1/messages", three()[:2] + [sms(3, "+3361")] +
                                      [sms(4, "+3362")], result_match="position")
        finally:
            await runner.cleanup()
        return by_id, by_pos

    by_id, by_pos = asyncio.run(main())
    assert by_id[0] == Accepted("a")
    assert isinstance(by_id[1], TemporaryFailure) and "appears more than once" in by_id[1].message
    assert isinstance(by_id[2], TemporaryFailure) and "no result names send 'm2'" in by_id[2].message
    assert by_pos[:3] == [Accepted("a"), Accepted("b"), PermanentFailure("blocked", "")]
    assert isinstance(by_pos[3], TemporaryFailure) and "not an object" in by_pos[3].message


# --------------------------------------------------------------------------- per-item codes


def test_per_item_codes_map_to_their_results():
    numbers = ["+33612345610", "+33612345611", "+33612345612", "+33612345613", "+33612345614", "+33612345615",
               "+33612345616", "+33612345617", "+33612345618"]

    async def main():
        async with HttpServer(TOKEN) as server:
            server.item_always.update({
                numbers[1]: ItemError("invalid_number", "no such number"),
                numbers[2]: ItemError("unsubscribed", "replied STOP"),
                numbers[3]: ItemError("handset_off", "switched off"),
                numbers[4]: ItemError("throttled", "slow down", retry_after=4),
                numbers[5]: ItemError("throttled"),
                numbers[6]: ItemError("blocked", "content filtered"),
                numbers[7]: ItemError("E999", "who knows"),
                numbers[8]: ItemError("", status="retry_later"),
            })
            sends = [sms(i, to) for i, to in enumerate(numbers)]
            provider = await started(server.url, default_retry_after=1.5,
                                     codes={**CODES, "retry_later": "temporary"})
            try:
                return await provider.send(batch(sends))
            finally:
                await provider.close()

    results = asyncio.run(main())
    assert isinstance(results[0], Accepted) and results[0].provider_id.startswith("msg-")
    assert results[1:] == [
        PermanentFailure("invalid_number", "no such number", "all"),
        PermanentFailure("unsubscribed", "replied STOP", "marketing"),
        TemporaryFailure("handset_off", "switched off", address_fault=True),
        RateLimited(4.0),
        RateLimited(1.5),
        PermanentFailure("blocked", "content filtered"),
        PermanentFailure("E999", "who knows"),  # unknown_code: permanent, without suppression
        TemporaryFailure("retry_later", "", address_fault=True),  # no code: the status value is looked up
    ]


def test_without_a_status_field_an_item_is_accepted_when_it_has_no_code():
    async def main():
        async with HttpServer(TOKEN) as server:
            server.item_always["+33612345601"] = ItemError("blocked", status="whatever")
            return await send_batch(server.url, three(), result_status_field="", unknown_code="temporary")

    results = asyncio.run(main())
    assert isinstance(results[0], Accepted) and isinstance(results[2], Accepted)
    assert results[1] == PermanentFailure("blocked", "")


def test_result_match_none_accepts_every_send_on_a_2xx():
    async def main():
        async with HttpServer(TOKEN) as server:
            server.script = [Reply(202)]
            return await send_batch(server.url, three(), result_match="none")

    assert asyncio.run(main()) == [Accepted("")] * 3


# --------------------------------------------------------------------------- request rate limit


def test_request_rate_spaces_requests_at_the_server():
    rate = 20.0

    async def main():
        async with HttpServer(TOKEN) as server:
            provider = await started(server.url, request_rate=rate)
            try:
                # Ten batches at once, as the engine would start them: the limiter spaces them out.
                await asyncio.gather(*[provider.send(batch([sms(i, f"+3361234560{i}")])) for i in range(10)])
            finally:
                await provider.close()
            limited = [r.at for r in server.requests]
            server.requests.clear()
            provider = await started(server.url)
            try:
                await asyncio.gather(*[provider.send(batch([sms(i, f"+3361234560{i}")])) for i in range(10)])
            finally:
                await provider.close()
            free = [r.at for r in server.requests]
            return limited, free

    limited, free = asyncio.run(main())
    assert len(limited) == 10
    span = max(limited) - min(limited)
    assert span >= 0.9 * 9 / rate, span  # burst 1: one request every 1/rate s
    gaps = sorted(b - a for a, b in zip(sorted(limited), sorted(limited)[1:]))
    assert gaps[0] >= 0.6 / rate, gaps
    assert max(free) - min(free) < span / 2  # without the option, nothing waits


# --------------------------------------------------------------------------- contract kit


def test_the_contract_kit_passes_every_check_with_nothing_skipped():
    async def main():
        async with HttpServer(TOKEN) as server:
            server.item_always["+33612340000"] = ItemError("invalid_number", "no such number")
            server.item_always["+33612349999"] = ItemError("throttled", "slow down", retry_after=1)
            opts = options(server.url, request_timeout=2.0)
            return await check_provider(
                lambda: HttpProvider.from_options(opts), options=opts,
                failing_sends=[sms("bad", "+33612340000")],
                rate_limit_sends=[sms(f"rl{i}", "+33612349999") for i in range(3)],
            )

    report = asyncio.run(main())
    assert report.skipped == {}
    assert report.passed == list(CHECKS)


# --------------------------------------------------------------------------- through the engine


def _engine_settings(url: str, **extra: Any) -> Settings:
    return Settings.from_dict({
        "journal": {"path": ""},
        "providers": {"http": {"options": options(url, **extra)}},
        "retry": {"base_delay": "10ms", "max_delay": "50ms", "max_attempts": 3, "jitter": 0},
    })


def test_a_mixed_batch_through_the_engine_ends_every_send_once_with_the_right_outcome(run):
    numbers = {
        "ok": "+33612345601", "ok2": "+33612345602", "invalid": "+33612345603", "stop": "+33612345604",
        "handset": "+33612345605", "throttled": "+33612345606", "blocked": "+33612345607",
        "always_off": "+33612345608",
    }

    async def main():
        async with HttpServer(TOKEN) as server:
            # The first request meets a 503; then each item answers as scripted.
            server.script = [Reply(503, b"busy")]
            server.item_always[numbers["invalid"]] = ItemError("invalid_number", "no such number")
            server.item_always[numbers["stop"]] = ItemError("unsubscribed", "replied STOP")
            server.item_always[numbers["blocked"]] = ItemError("blocked", "content filtered")
            server.item_always[numbers["always_off"]] = ItemError("handset_off", "switched off")
            server.item_script[numbers["handset"]] = [ItemError("handset_off", "switched off")]
            server.item_script[numbers["throttled"]] = [ItemError("throttled", "slow down", retry_after=0.2)]
            async with Engine(_engine_settings(server.url), plugins=[sendcore_http],
                              load_entrypoints=False) as engine:
                stream = engine.outcomes()
                sends = [sms(name, to) for name, to in numbers.items()]
                report = await engine.submit(sends)
                assert report.accepted == len(sends)
                await asyncio.wait_for(engine.drain(), 15)
                # The suppressed address is skipped from now on, without a request.
                before = server.count
                await engine.submit([sms("later", numbers["invalid"])])
                await asyncio.wait_for(engine.drain(), 15)
                after = server.count
                finals = {s.id: engine.outcome(s.id) for s in sends + [sms("later", "")]}
                scopes = {k: engine.core.suppression.scope_of("sms", numbers[k]) for k in ("invalid", "stop",
                                                                                          "blocked")}
            outcomes = [o async for o in stream]
            return finals, outcomes, scopes, server, before, after

    finals, outcomes, scopes, server, before, after = run(main())
    final_counts: dict[str, int] = {}
    for o in outcomes:
        if o.status.is_final:
            final_counts[o.send_id] = final_counts.get(o.send_id, 0) + 1
    assert final_counts == {sid: 1 for sid in finals}, final_counts
    for name in ("ok", "ok2", "handset", "throttled"):
        o = finals[f"m{name}"]
        assert o.status is Status.SENT and o.provider_id.startswith("msg-"), (name, o)
    assert finals["minvalid"].status is Status.FAILED and finals["minvalid"].reason is Reason.PERMANENT_FAILURE
    assert finals["minvalid"].detail == "invalid_number: no such number"
    assert finals["mstop"].status is Status.FAILED and finals["mblocked"].status is Status.FAILED
    assert scopes == {"invalid": "all", "stop": "marketing", "blocked": None}
    off = finals["malways_off"]
    assert off.status is Status.FAILED and off.reason is Reason.MAX_ATTEMPTS and off.attempt == 3
    later = finals["mlater"]
    assert later.status is Status.SKIPPED and later.reason is Reason.SUPPRESSED
    assert after == before
    # The temporary item was retried and then sent: two requests carried it.
    assert len(server.sent_to(numbers["handset"])) == 3  # the 503, the handset_off, the success
    assert any(o.send_id == "mthrottled" and o.status is Status.DEFERRED and o.reason is Reason.RATE_LIMIT
               for o in outcomes)
    assert any(o.send_id == "mhandset" and o.status is Status.RETRYING for o in outcomes)


def test_the_batch_timeout_is_derived_again_for_the_concurrency_the_engine_applies(run):
    async def main():
        got = []
        for limits in ({}, {"max_concurrency": 16}):
            settings = Settings.from_dict({"journal": {"path": ""}, "providers": {"http": {
                **limits, "options": options("http://127.0.0.1:9/", max_connections=4, request_timeout=2)}}})
            async with Engine(settings, plugins=[sendcore_http], load_entrypoints=False) as engine:
                got.append(engine.limits["http"].timeout)
        return got

    own, more = run(main())
    assert own == pytest.approx(2 * 2.0 + 1.0)  # 8 requests in flight over 4 connections: two turns
    assert more == pytest.approx(4 * 2.0 + 1.0)  # 16 requests: four turns


def test_connection_refused_through_the_engine_retries_then_fails_each_send_once(run):
    async def main():
        settings = _engine_settings(f"http://127.0.0.1:{free_port()}/v1/messages")
        async with Engine(settings, plugins=[sendcore_http], load_entrypoints=False) as engine:
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
    assert sorted(o.send_id for o in outcomes if o.status.is_final) == sorted(finals)


# --------------------------------------------------------------------------- delivery reports


def _reporter(**extra: Any) -> HttpProvider:
    return HttpProvider.from_options(options("http://127.0.0.1:9/v1", **extra))


@pytest.mark.parametrize("payload, expected", [
    ({"id": "msg-1", "status": "delivered"},
     DeliveryReport(delivered=True, provider_id="msg-1", code="delivered", detail="delivered")),
    ({"id": "msg-1", "status": "failed", "error": {"code": "invalid_number", "message": "no such number"}},
     DeliveryReport(delivered=False, provider_id="msg-1", code="invalid_number",
                    detail="failed: invalid_number no such number", suppress="all")),
    ({"id": "msg-1", "status": "undelivered", "error": {"code": "unsubscribed"}},
     DeliveryReport(delivered=False, provider_id="msg-1", code="unsubscribed", detail="undelivered: unsubscribed",
                    suppress="marketing")),
    ({"id": "msg-1", "status": "undelivered", "error": {"code": "handset_off"}},
     DeliveryReport(delivered=False, provider_id="msg-1", code="handset_off", detail="undelivered: handset_off",
                    temporary=True)),
    ({"id": "msg-1", "status": "rejected", "error": {"code": "throttled"}},
     DeliveryReport(delivered=False, provider_id="msg-1", code="throttled", detail="rejected: throttled",
                    retry_after=1.0)),
    ({"id": 42, "status": "expired"},
     DeliveryReport(delivered=False, provider_id="42", code="expired", detail="expired")),
])
def test_delivery_reports_map_statuses_and_codes(payload, expected):
    assert _reporter().parse_delivery_report(payload) == expected
    # The raw body reads the same, as bytes or as text.
    raw = json.dumps(payload)
    assert _reporter().parse_delivery_report(raw.encode()) == expected
    assert _reporter().parse_delivery_report(raw) == expected


def test_delivery_reports_by_send_id_and_nested_fields_and_intermediate_statuses():
    provider = _reporter(report_id_field="data.ref", report_id_is="send_id", report_status_field="data.state",
                         delivered_values=["DELIVRD"], undelivered_values=["UNDELIV"],
                         report_code_field="data.err", report_message_field="")
    assert provider.parse_delivery_report({"data": {"ref": "m7", "state": "DELIVRD"}}) == DeliveryReport(
        delivered=True, send_id="m7", code="DELIVRD", detail="DELIVRD")
    assert provider.parse_delivery_report({"data": {"ref": "m7", "state": "UNDELIV", "err": 17}}) == DeliveryReport(
        delivered=False, send_id="m7", code="17", detail="UNDELIV: 17")
    assert provider.parse_delivery_report({"data": {"ref": "m7", "state": "ENROUTE"}}) is None


def test_malformed_delivery_reports_are_rejected():
    provider = _reporter()
    for payload, words in ((b"{not json", "not JSON"), (b"[1, 2]", "expected a JSON object"),
                           ({"status": "delivered"}, "no id"), ({"id": "x"}, "no status"), (7, "expected")):
        with pytest.raises(DeliveryReportError, match=words):
            provider.parse_delivery_report(payload)


def test_signed_delivery_reports():
    provider = _reporter(report_signature_header="X-Signature", report_secret_env="HTTP_TEST_REPORT_SECRET")
    body = b'{"id": "msg-1", "status": "delivered"}'
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256)
    for good in (digest.hexdigest(), "sha256=" + digest.hexdigest(), digest.hexdigest().upper(),
                 base64.b64encode(digest.digest()).decode()):
        assert provider.parse_delivery_report(body, headers={"x-signature": good}).delivered
    assert sendcore_http.sign(SECRET, body) == digest.hexdigest()
    with pytest.raises(DeliveryReportError, match="does not match"):
        provider.parse_delivery_report(body.replace(b"msg-1", b"msg-2"), headers={"X-Signature": digest.hexdigest()})
    with pytest.raises(DeliveryReportError, match="no X-Signature header"):
        provider.parse_delivery_report(body, headers={})
    with pytest.raises(DeliveryReportError, match="needs the raw request body"):
        provider.parse_delivery_report(json.loads(body), headers={"X-Signature": digest.hexdigest()})


def test_an_unset_report_secret_is_a_config_error_naming_it(monkeypatch):
    monkeypatch.delenv("HTTP_TEST_REPORT_SECRET")
    provider = _reporter(report_signature_header="X-Signature", report_secret_env="HTTP_TEST_REPORT_SECRET")
    with pytest.raises(ConfigError, match="report_secret_env: the environment variable HTTP_TEST_REPORT_SECRET"):
        provider.parse_delivery_report(b"{}", headers={"X-Signature": "00"})
    with pytest.raises(ConfigError, match="HTTP_TEST_REPORT_SECRET"):
        asyncio.run(provider.start(_Context()))


def test_a_signed_report_posted_to_a_real_webhook_reaches_the_engine(run):
    """A report naming the provider's message id suppresses the address through Engine.report_delivery (R14, R21)."""
    to = "+33612345699"

    async def main():
        import aiohttp

        async with HttpServer(TOKEN) as api:
            settings = _engine_settings(api.url, report_signature_header="X-Signature",
                                        report_secret_env="HTTP_TEST_REPORT_SECRET")
            async with Engine(settings, plugins=[sendcore_http], load_entrypoints=False) as engine:
                await engine.submit([sms(1, to)])
                await asyncio.wait_for(engine.drain(), 10)
                sent = engine.outcome("m1")
                got: list[Any] = []

                async def hook(request: web.Request) -> web.Response:
                    try:
                        got.append(await engine.report_delivery("http", await request.read(),
                                                                url=str(request.url), headers=request.headers))
                    except DeliveryReportError as exc:
                        got.append(exc)
                        return web.Response(status=400)
                    return web.Response(status=204)

                app = web.Application()
                app.router.add_post("/reports", hook)
                runner = web.AppRunner(app)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/reports"
                body = json.dumps({"id": sent.provider_id, "status": "failed",
                                   "error": {"code": "invalid_number"}}).encode()
                try:
                    async with aiohttp.ClientSession() as http:
                        async with http.post(url, data=body, headers={"X-Signature": "forged"}) as r:
                            forged_status = r.status
                        async with http.post(url, data=body,
                                             headers={"X-Signature": sendcore_http.sign(SECRET, body)}) as r:
                            good_status = r.status
                finally:
                    await runner.cleanup()
                scope = engine.core.suppression.scope_of("sms", to)
        return sent, got, forged_status, good_status, scope

    sent, got, forged_status, good_status, scope = run(main())
    assert sent.status is Status.SENT
    forged, event = got
    assert isinstance(forged, DeliveryReportError) and forged_status == 400
    assert good_status == 204
    assert event.send_id == "m1" and event.status is Status.UNDELIVERED
    assert scope == "all"
