"""The bundled ``smtp`` provider against a real local SMTP server (aiosmtpd on 127.0.0.1, port 0).

Faults are chosen per recipient on the server (``tests/smtp_server.py``):
replies at RCPT and at the end of DATA, a dropped connection mid-DATA, a slow
reply, a server that never greets, and a port where nothing listens.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import pytest

import sendcore_smtp
from sendcore import Engine, Send, Settings
from sendcore.clock import RealClock
from sendcore.errors import ConfigError
from sendcore.send import Accepted, Batch, PermanentFailure, RateLimited, Status, TemporaryFailure
from sendcore.testing import check_provider
from sendcore.testing.contract import CHECKS
from sendcore_smtp import SmtpProvider, classify

from .smtp_server import Drop, SilentServer, Slow, SmtpServer, refused_port, reply

FROM = "Acme Shop <news@acme.example>"


class Context:
    """The engine's ``ProviderContext`` as the provider sees it in ``start``."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.clock = RealClock()
        self.settings = settings or {}

    def report_delivery(self, send_id: str, delivered: bool, detail: str = "") -> None:
        raise AssertionError("the smtp provider has no delivery reports")

    def report_opt_out(self, channel: str, address: str) -> None:
        raise AssertionError("the smtp provider has no opt-outs")


def options(port: int, **more: Any) -> dict[str, Any]:
    return {"from": FROM, "host": "127.0.0.1", "port": port, "local_hostname": "client.test", **more}


def mail(i: Any, to: str, **kw: Any) -> Send:
    kw.setdefault("body", f"hello {i}")
    return Send(id=f"m-{i}", recipient=f"r-{i}", channel="email", to=to, origin="transactional", **kw)


def batch(sends: list[Send]) -> Batch:
    return Batch(id=1, provider="smtp", channel="email", sender="", carrier="", sends=sends, attempts=[1] * len(sends))


async def started(opts: dict[str, Any]) -> SmtpProvider:
    provider = SmtpProvider.from_options(opts)
    await provider.start(Context())
    return provider


async def send_all(opts: dict[str, Any], sends: list[Send]) -> tuple[list[Any], SmtpProvider]:
    """Start a provider, send one batch, close it; the results and the provider (its ``pool`` kept for checks)."""
    provider = await started(opts)
    pool = provider.pool
    try:
        return await provider.send(batch(sends)), provider
    finally:
        await provider.close()
        provider.closed_pool = pool  # type: ignore[attr-defined]


def expected_message_id(send_id: str, domain: str = "acme.example") -> str:
    return f"<{hashlib.sha256(send_id.encode()).hexdigest()[:32]}@{domain}>"


@pytest.fixture
def server():
    with SmtpServer() as s:
        yield s


# ---------------------------------------------------------------------------
# Options and registration
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("table, message", [
    ({}, "providers.smtp.options.from: required option is missing"),
    ({"from": "news@acme.example", "pool_size": 0}, "providers.smtp.options.pool_size: must be at least 1"),
    ({"from": "news@acme.example\r\nBcc: x@evil.example"}, "providers.smtp.options.from: contains a control character"),
    ({"from": "news@acme.example", "tls": True}, "providers.smtp.options.tls: unknown option"),
    ({"from": "news@acme.example", "starttls": True, "use_tls": True}, "providers.smtp.options.starttls: "),
    ({"from": "news@acme.example", "username": "u", "host": "smtp.acme.example"},
     "providers.smtp.options.username: the password would cross the network"),
    ({"from": "news@acme.example", "timeout": "0s"}, "providers.smtp.options.timeout: must be longer than 0s"),
])
def test_options_errors_name_the_key(table, message):
    with pytest.raises(ConfigError) as err:
        SmtpProvider.from_options(table)
    assert str(err.value).startswith(message), str(err.value)


def test_registers_only_when_configured_and_declares_email():
    got: list[Any] = []
    sendcore_smtp.sendcore_register_providers(got.append, Settings.from_dict({}))
    assert got == []
    settings = Settings.from_dict({"providers": {"smtp": {"options": {"from": FROM, "port": 2525}}}})
    sendcore_smtp.sendcore_register_providers(got.append, settings)
    (provider,) = got
    assert provider.name == "smtp" and tuple(provider.channels) == ("email",)
    assert provider.options.effective_port == 2525
    assert provider.timeout > float(provider.options.batch_timeout)
    assert SmtpProvider.from_options({"from": FROM, "use_tls": True}).options.effective_port == 465
    assert SmtpProvider.from_options({"from": FROM, "starttls": True}).options.effective_port == 587


def test_password_is_read_from_the_named_variable_in_start(monkeypatch):
    async def main():
        with SmtpServer(auth=("acme", "s3cret")) as srv:
            opts = options(srv.port, username="acme", password_env="ACME_SMTP_PASSWORD")
            monkeypatch.delenv("ACME_SMTP_PASSWORD", raising=False)
            with pytest.raises(ConfigError, match="password_env: the environment variable ACME_SMTP_PASSWORD is not set"):
                await started(opts)
            monkeypatch.setenv("ACME_SMTP_PASSWORD", "wrong")
            (bad,), _ = await send_all(opts, [mail(1, "a@example.com")])
            monkeypatch.setenv("ACME_SMTP_PASSWORD", "s3cret")
            (good,), _ = await send_all(opts, [mail(2, "a@example.com")])
            return bad, good, srv.to("a@example.com")

    bad, good, received = asyncio.run(main())
    # A refused login is the relay's configuration, not the message's: temporary, retried.
    assert type(bad) is TemporaryFailure and bad.code.startswith("535"), bad
    assert good == Accepted(expected_message_id("m-2"))
    assert len(received) == 1


# ---------------------------------------------------------------------------
# The reply table (pure)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("code, text, stage, kind, suppress", [
    (421, "4.7.0 Try again later, closing connection", "mail", RateLimited, None),
    (421, "Service not available", "data", RateLimited, None),
    (451, "4.7.1 Greylisted, try again later", "rcpt", RateLimited, None),
    (450, "4.7.28 Unusual rate of mail", "data", RateLimited, None),
    (451, "4.4.5 System congestion", "rcpt", RateLimited, None),
    (451, "4.3.0 Local error in processing", "data", TemporaryFailure, None),
    (450, "Mailbox busy", "rcpt", TemporaryFailure, None),
    (452, "4.2.2 Mailbox full", "rcpt", TemporaryFailure, None),
    (450, "4.2.1 Receiving mail too fast", "rcpt", TemporaryFailure, None),
    (550, "5.1.1 No such user", "rcpt", PermanentFailure, "all"),
    (550, "5.1.1 No such user", "data", PermanentFailure, "all"),
    (550, "Mailbox unavailable", "rcpt", PermanentFailure, "all"),
    (553, "mailbox name not allowed", "rcpt", PermanentFailure, "all"),
    (550, "Message looks like spam", "data", PermanentFailure, None),
    (550, "5.2.1 Mailbox disabled", "rcpt", PermanentFailure, "all"),
    (550, "5.1.10 Null MX", "rcpt", PermanentFailure, "all"),
    (553, "5.1.8 Bad sender's system address", "rcpt", PermanentFailure, None),
    (552, "5.3.4 Message too big", "data", PermanentFailure, None),
    (552, "Requested mail action aborted: exceeded storage allocation", "rcpt", PermanentFailure, None),
    (554, "5.7.1 Rejected by policy", "data", PermanentFailure, None),
    (550, "5.7.1 Relaying denied", "rcpt", PermanentFailure, None),
    (550, "5.1.1 Sender unknown", "mail", PermanentFailure, None),
    (535, "5.7.8 Bad credentials", "connect", TemporaryFailure, None),
    (354, "unexpected", "data", TemporaryFailure, None),
])
def test_reply_table(code, text, stage, kind, suppress):
    result = classify(code, text, stage, 42.0)
    assert type(result) is kind, result
    if kind is RateLimited:
        assert result.retry_after == 42.0
    else:
        assert result.code.startswith(str(code))
    if kind is PermanentFailure:
        assert result.suppress == suppress


# ---------------------------------------------------------------------------
# Messages as received
# ---------------------------------------------------------------------------


def test_messages_are_proper_mime_with_a_deterministic_message_id(server):
    sends = [
        mail(1, "plain@example.com", body="Your order shipped.", metadata={"subject": "Order 1 shipped"}),
        mail(2, "html@example.com", body="Soldes d'été", metadata={"subject": "Été: -30 %", "html": "<p>Soldes d'<b>été</b></p>"}),
        mail(3, "override@example.com", metadata={"from": "Support <help@support.example>", "subject": "Hi"}),
        mail(4, "sender@example.com", sender="billing@acme.example"),
    ]
    results, _ = asyncio.run(send_all(options(server.port), sends))
    assert results == [Accepted(expected_message_id("m-1")), Accepted(expected_message_id("m-2")),
                       Accepted(expected_message_id("m-3", "support.example")), Accepted(expected_message_id("m-4"))]

    (plain,) = server.to("plain@example.com")
    assert plain.mail_from == "news@acme.example"
    msg = plain.message
    assert msg["From"] == FROM and msg["To"] == "plain@example.com" and msg["Subject"] == "Order 1 shipped"
    assert msg["Message-ID"] == expected_message_id("m-1") and msg["Date"] and msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "text/plain" and msg.get_content().strip() == "Your order shipped."

    (alt,) = server.to("html@example.com")
    msg = alt.message
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Subject"] == "Été: -30 %"
    assert msg.get_body(("plain",)).get_content().strip() == "Soldes d'été"
    assert msg.get_body(("html",)).get_content().strip() == "<p>Soldes d'<b>été</b></p>"
    assert alt.raw.isascii(), "non-ASCII text must travel quoted-printable/base64 (no 8BITMIME needed)"

    (over,) = server.to("override@example.com")
    assert over.message["From"] == "Support <help@support.example>" and over.mail_from == "help@support.example"
    (snd,) = server.to("sender@example.com")
    assert snd.message["From"] == "billing@acme.example" and snd.mail_from == "billing@acme.example"
    assert all(any(o.upper().startswith("SIZE=") for o in r.mail_options) for r in server.received)


def test_an_internationalised_address_goes_with_smtputf8(server):
    results, _ = asyncio.run(send_all(options(server.port), [mail(1, "josé@example.com", metadata={"subject": "¡Hola!"})]))
    assert results == [Accepted(expected_message_id("m-1"))]
    (got,) = server.received
    assert got.rcpt_to == "josé@example.com" and "SMTPUTF8" in [o.upper() for o in got.mail_options]
    assert got.message["To"] == "josé@example.com" and got.message["Subject"] == "¡Hola!"


def test_a_resend_carries_the_same_message_id(server):
    async def main():
        provider = await started(options(server.port))
        try:
            first = await provider.send(batch([mail(7, "twice@example.com")]))
            again = await provider.send(batch([mail(7, "twice@example.com")]))
        finally:
            await provider.close()
        return first, again

    first, again = asyncio.run(main())
    assert first == again == [Accepted(expected_message_id("m-7"))]
    ids = [r.message["Message-ID"] for r in server.to("twice@example.com")]
    assert ids == [expected_message_id("m-7")] * 2


def test_no_header_injection(server):
    sends = [
        mail(1, "victim@example.com\r\nBcc: spy@evil.example"),
        mail(2, "ok@example.com", metadata={"subject": "Hi\r\nBcc: spy@evil.example"}),
        mail(3, "ok@example.com", metadata={"from": "x@acme.example\nBcc: spy@evil.example"}),
        mail(4, "ok@example.com", metadata={"subject": "nul\x00byte"}),
        mail(5, "ok@example.com", sender="Billing\r\n <b@acme.example>"),
        mail(6, "ok@example.com", metadata={"subject": 12}),
        mail(7, "Name <ok@example.com>"),
        mail(8, "ok@example.com", metadata={"subject": "fine"}),
    ]
    results, _ = asyncio.run(send_all(options(server.port), sends))
    fields = ["to:", 'metadata["subject"]:', 'metadata["from"]:', 'metadata["subject"]:', "sender:",
              'metadata["subject"]:', "to:"]
    for r, field in zip(results[:7], fields):
        assert type(r) is PermanentFailure and r.message.startswith(field) and r.suppress is None, r
    assert "header injection" in results[0].message and "header injection" in results[1].message
    assert results[7] == Accepted(expected_message_id("m-8"))
    # Only the clean send reached the server, and nothing anywhere names the spy.
    assert [r.rcpt_to for r in server.received] == ["ok@example.com"]
    assert b"spy@evil.example" not in server.received[0].raw and "Bcc" not in server.received[0].message


# ---------------------------------------------------------------------------
# Replies from a real server, at RCPT and at DATA
# ---------------------------------------------------------------------------


def test_refusals_at_rcpt_and_data_are_mapped_per_message(server):
    answers = {
        "rcpt421@example.com": reply(421, "4.3.2 Shutting down"),
        "data421@example.com": reply(421, "4.7.0 Too many messages, closing", at="data"),
        "open421@example.com": reply(421, "4.7.0 Closing (but the server keeps it open)", at="data", hang_up=False),
        "rcpt451@example.com": reply(451, "4.3.0 Local error"),
        "data451@example.com": reply(451, "4.7.1 Try again later", at="data"),
        "rcpt450@example.com": reply(450, "Mailbox busy"),
        "rcpt550@example.com": reply(550, "5.1.1 No such user"),
        "data550@example.com": reply(550, "5.1.1 No such user", at="data"),
        "plain550@example.com": reply(550, "Mailbox unavailable"),
        "data552@example.com": reply(552, "5.3.4 Message too big", at="data"),
        "rcpt552@example.com": reply(552, "Exceeded storage allocation"),
        "data554@example.com": reply(554, "5.7.1 Rejected by policy", at="data"),
    }
    server.always.update(answers)
    expect = {
        "rcpt421": (RateLimited, None), "data421": (RateLimited, None), "open421": (RateLimited, None),
        "rcpt451": (TemporaryFailure, None), "data451": (RateLimited, None),
        "rcpt450": (TemporaryFailure, None),
        "rcpt550": (PermanentFailure, "all"), "data550": (PermanentFailure, "all"),
        "plain550": (PermanentFailure, "all"),
        "data552": (PermanentFailure, None), "rcpt552": (PermanentFailure, None),
        "data554": (PermanentFailure, None),
    }

    async def main():
        # One message per batch, so a RateLimited that stops a worker decides nothing else.
        provider = await started(options(server.port, pool_size=1, rate_limit_retry_after="7s"))
        got = {}
        try:
            for i, to in enumerate(answers):
                (got[to.split("@")[0]],) = await provider.send(batch([mail(i, to)]))
            # After all that, the same session (or its replacement) still delivers.
            after = await provider.send(batch([mail(99, "fine@example.com")]))
            connects = provider.pool.connects
        finally:
            await provider.close()
        return got, after, connects

    got, after, connects = asyncio.run(main())
    for name, (kind, suppress) in expect.items():
        r = got[name]
        assert type(r) is kind, (name, r)
        if kind is RateLimited:
            assert r.retry_after == 7.0
        if kind is PermanentFailure:
            assert r.suppress == suppress, (name, r)
    assert got["rcpt550"].code == "550 5.1.1" and got["rcpt550"].message == "RCPT TO: No such user"
    assert got["data554"].code == "554 5.7.1" and got["data554"].message.startswith("DATA:")
    assert after == [Accepted(expected_message_id("m-99"))]
    # One session reused throughout, replaced only after each 421 (even the one the server left open).
    assert connects == 4
    assert server.received[-1].rcpt_to == "fine@example.com" and len(server.received) == 1


def test_pool_reuses_sessions_across_batches(server):
    async def main():
        provider = await started(options(server.port, pool_size=3))
        try:
            for b in range(4):
                results = await provider.send(batch([mail(f"{b}-{i}", f"u{b}-{i}@example.com") for i in range(30)]))
                assert all(type(r) is Accepted for r in results)
        finally:
            await provider.close()
        return provider

    asyncio.run(main())
    assert len(server.received) == 120
    assert server.sessions == 3


# ---------------------------------------------------------------------------
# Transport faults
# ---------------------------------------------------------------------------


def test_sessions_the_server_closed_while_idle_are_reopened():
    with SmtpServer(idle_timeout=0.2) as srv:
        async def main():
            provider = await started(options(srv.port, pool_size=2))
            try:
                first = await provider.send(batch([mail(f"a{i}", f"a{i}@example.com") for i in range(6)]))
                await asyncio.sleep(0.6)  # the server says 421 and hangs up on both sessions
                second = await provider.send(batch([mail(f"b{i}", f"b{i}@example.com") for i in range(6)]))
                return first, second, provider.pool.connects
            finally:
                await provider.close()

        first, second, connects = asyncio.run(main())
        assert all(type(r) is Accepted for r in first + second), first + second
        assert connects == 4 and len(srv.received) == 12


def test_connection_refused_is_a_temporary_failure_of_each_message():
    sends = [mail(i, f"u{i}@example.com") for i in range(20)]
    t0 = time.monotonic()
    results, _ = asyncio.run(send_all(options(refused_port()), sends))
    assert time.monotonic() - t0 < 2.0
    assert len(results) == 20
    assert all(type(r) is TemporaryFailure and r.code == "connect" for r in results), results[:3]
    assert "127.0.0.1" in results[0].message


def test_a_server_that_never_greets_times_out_within_connect_timeout():
    with SilentServer() as silent:
        sends = [mail(i, f"u{i}@example.com") for i in range(20)]
        t0 = time.monotonic()
        results, _ = asyncio.run(send_all(options(silent.port, connect_timeout="300ms"), sends))
        took = time.monotonic() - t0
    # Each of the 4 sessions waits once; the other messages are not attempted, not waited for one by one.
    assert took < 1.5, took
    assert all(type(r) is TemporaryFailure and r.code == "connect_timeout" for r in results), results[:3]


def test_a_slow_reply_times_out_that_message_only(server):
    server.always["slow@example.com"] = Slow(3.0, at="data")
    sends = [mail(i, f"u{i}@example.com") for i in range(12)]
    sends.insert(3, mail("slow", "slow@example.com"))
    t0 = time.monotonic()
    results, _ = asyncio.run(send_all(options(server.port, timeout="300ms", pool_size=2), sends))
    assert time.monotonic() - t0 < 2.5
    slow = results.pop(3)
    assert type(slow) is TemporaryFailure and slow.code == "timeout" and slow.message.startswith("DATA:"), slow
    # The other session carried on with the rest of the batch.
    assert all(type(r) is Accepted for r in results), results
    assert len(server.received) == 12


def test_batch_timeout_bounds_a_batch_of_slow_replies(server):
    for i in range(6):
        server.always[f"u{i}@example.com"] = Slow(0.4, at="data")
    t0 = time.monotonic()
    results, provider = asyncio.run(send_all(options(server.port, pool_size=1, batch_timeout="1s"),
                                             [mail(i, f"u{i}@example.com") for i in range(6)]))
    took = time.monotonic() - t0
    assert took < provider.timeout and took < 1.6, took
    accepted = [r for r in results if type(r) is Accepted]
    late = [r for r in results if type(r) is TemporaryFailure]
    assert 1 <= len(accepted) <= 3 and len(accepted) + len(late) == 6
    assert all(r.code == "timeout" and "batch_timeout" in r.message for r in late), late


def test_a_connection_dropped_mid_data_fails_that_message_and_the_session_is_replaced(server):
    server.always["cut@example.com"] = Drop()
    sends = [mail(0, "a@example.com"), mail(1, "cut@example.com"), mail(2, "b@example.com"), mail(3, "c@example.com")]
    results, provider = asyncio.run(send_all(options(server.port, pool_size=1), sends))
    cut = results[1]
    assert type(cut) is TemporaryFailure and cut.code == "connection_lost" and "same Message-ID" in cut.message
    assert [type(r) for r in results] == [Accepted, TemporaryFailure, Accepted, Accepted]
    assert provider.closed_pool.connects == 2
    assert [r.rcpt_to for r in server.received] == ["a@example.com", "b@example.com", "c@example.com"]


def test_parse_delivery_report_is_none():
    provider = SmtpProvider.from_options({"from": FROM})
    assert provider.parse_delivery_report({"anything": "at all"}) is None


# ---------------------------------------------------------------------------
# Through the real engine
# ---------------------------------------------------------------------------


def test_engine_mixed_batch_every_send_one_right_final_outcome(server, run):
    server.always["gone@example.com"] = reply(550, "5.1.1 No such user")
    server.script["later@example.com"] = [reply(451, "4.3.0 Local error, try again")]
    server.script["throttled@example.com"] = [reply(451, "4.7.0 Try again later", at="data")]
    server.script["bye@example.com"] = [reply(421, "4.3.2 Closing")]
    server.script["cut@example.com"] = [Drop()]
    server.script["big@example.com"] = [reply(552, "5.3.4 Message too big", at="data")]
    server.script["policy@example.com"] = [reply(554, "5.7.1 Rejected by policy", at="data")]
    tos = ["ok1@example.com", "gone@example.com", "later@example.com", "throttled@example.com",
           "bye@example.com", "cut@example.com", "big@example.com", "policy@example.com", "ok2@example.com"]

    async def main():
        settings = Settings.from_dict({
            "journal": {"path": ""},
            "providers": {"smtp": {"options": options(server.port, rate_limit_retry_after="100ms")}},
            "retry": {"base_delay": "10ms", "max_delay": "50ms", "max_attempts": 3},
        })
        async with Engine(settings, plugins=[sendcore_smtp], load_entrypoints=False) as engine:
            stream = engine.outcomes()
            report = await engine.submit([mail(to.split("@")[0], to) for to in tos])
            assert not report.rejected
            await asyncio.wait_for(engine.drain(), 20)
            # Later sends to the same addresses: the suppressed one is skipped, the others go.
            again = [mail(f"again-{to.split('@')[0]}", to) for to in ("gone@example.com", "big@example.com",
                                                                        "policy@example.com")]
            await engine.submit(again)
            await asyncio.wait_for(engine.drain(), 20)
            final = {sid: engine.outcome(sid) for sid in [s.id for s in again] + [f"m-{t.split('@')[0]}" for t in tos]}
        seen = [o async for o in stream]
        return final, seen

    final, seen = run(main())
    finals: dict[str, int] = {}
    for o in seen:
        if o.status.is_final:
            finals[o.send_id] = finals.get(o.send_id, 0) + 1
    assert finals == {sid: 1 for sid in final}, finals

    def status(name: str) -> tuple[str, str]:
        o = final[f"m-{name}"]
        return o.status.value, o.reason.value

    for ok in ("ok1", "ok2", "later", "throttled", "bye", "cut"):
        assert status(ok) == ("sent", "accepted"), (ok, final[f"m-{ok}"])
        assert final[f"m-{ok}"].provider_id == expected_message_id(f"m-{ok}")
    assert status("gone") == ("failed", "permanent_failure") and "5.1.1" in final["m-gone"].detail
    assert status("big") == ("failed", "permanent_failure")
    assert status("policy") == ("failed", "permanent_failure")
    assert (final["m-again-gone"].status, final["m-again-gone"].reason.value) == (Status.SKIPPED, "suppressed")
    # 552 and 5.7.x are permanent for the message, not for the address.
    assert final["m-again-big"].status is Status.SENT and final["m-again-policy"].status is Status.SENT

    retried = {o.send_id for o in seen if o.status is Status.RETRYING}
    deferred = {o.send_id for o in seen if o.status is Status.DEFERRED and o.reason.value == "rate_limit"}
    assert {"m-later", "m-cut"} <= retried
    assert {"m-throttled", "m-bye"} <= deferred
    # The dropped message was delivered exactly once, after the server behaved.
    assert len(server.to("cut@example.com")) == 1
    assert server.attempts["cut@example.com"] == 2
    assert server.to("gone@example.com") == []


def test_engine_timeout_cancels_the_batch_and_the_retry_delivers(server):
    """R18: a batch cut off by the engine's ``[providers.smtp] timeout`` is retried; its sessions are not reused."""
    server.script["slow@example.com"] = [Slow(1.0, at="data")]
    tos = ["slow@example.com", "x@example.com", "y@example.com"]

    async def main():
        settings = Settings.from_dict({
            "journal": {"path": ""},
            "providers": {"smtp": {"timeout": "300ms", "options": options(server.port, pool_size=1)}},
            "retry": {"base_delay": "10ms", "max_delay": "50ms", "max_attempts": 3},
        })
        async with Engine(settings, plugins=[sendcore_smtp], load_entrypoints=False) as engine:
            stream = engine.outcomes()
            await engine.submit([mail(to.split("@")[0], to) for to in tos])
            await asyncio.wait_for(engine.drain(), 20)
            final = {f"m-{to.split('@')[0]}": engine.outcome(f"m-{to.split('@')[0]}") for to in tos}
        return final, [o async for o in stream]

    final, seen = asyncio.run(main())
    assert all(o.status is Status.SENT for o in final.values()), final
    assert any(o.status is Status.RETRYING and o.detail.startswith("timeout:") for o in seen)
    assert sum(1 for o in seen if o.status.is_final) == 3
    time.sleep(1.0)  # past the slow reply nobody waits for any more
    # The abandoned session was closed (not handed back to the pool), so the server dropped that
    # transaction: two attempts, one message, with the Message-ID of the send.
    assert server.attempts["slow@example.com"] == 2
    copies = server.to("slow@example.com")
    assert [r.message["Message-ID"] for r in copies] == [expected_message_id("m-slow")]


# ---------------------------------------------------------------------------
# The provider contract kit
# ---------------------------------------------------------------------------


def test_contract_kit_passes_every_check(server):
    server.always["unknown@example.com"] = reply(550, "5.1.1 No such user")
    server.always["throttle@example.com"] = reply(451, "4.7.0 Try again later")

    async def main():
        return await check_provider(
            lambda: SmtpProvider.from_options(options(server.port)),
            options=options(server.port),
            failing_sends=[Send(id="bad", recipient="x", channel="email", to="unknown@example.com",
                                origin="transactional", body="x")],
            rate_limit_sends=[Send(id="rl", recipient="y", channel="email", to="throttle@example.com",
                                   origin="transactional", body="y")],
        )

    report = asyncio.run(main())
    assert report.skipped == {}
    assert report.passed == list(CHECKS)
    assert any(r.rcpt_to.startswith("contract") for r in server.received)

