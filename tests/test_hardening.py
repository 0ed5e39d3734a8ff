"""Issue 8's table, row by row: one bad send, setting or provider answer never stops the engine or strands a send.

Each test is named after its row and goes through the public API (``Engine``,
``Settings``, ``sendcore check-config``). ``S(...)`` is a transactional SMS
to +33612345678 on a ``VirtualClock``; the provider ``p`` answers as the row
describes.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone
from typing import Any, Callable, Union

import pytest

from sendcore import Accepted, ConfigError, Engine, Outcome, PermanentFailure, Provider, RateLimited, Send, Settings, Status
from sendcore.send import Batch
from sendcore.testing import VirtualClock

START = 1_800_000_000.0
BASE = {"journal": {"path": ""}, "retry": {"base_delay": "1s", "max_delay": "10s", "jitter": 0}}


def S(i: Any = 0, **kw: Any) -> Send:
    fields: dict[str, Any] = dict(id=f"s{i}", recipient=f"r{i}", channel="sms", to="+33612345678",
                                  origin="transactional", body="Your code is 1234")
    fields.update(kw)
    return Send(**fields)


class P(Provider):
    """Answers each call with ``answer(batch, call)`` (default: accept everything)."""

    name = "p"
    channels = ("sms", "email", "push")
    max_batch = 10
    timeout = 5.0

    def __init__(self, answer: Union[Callable[[Batch, int], Any], None] = None, **attrs: Any) -> None:
        self.answer = answer
        self.calls: list[tuple[float, list[str]]] = []
        self.clock: Any = None
        for k, v in attrs.items():
            setattr(self, k, v)

    async def start(self, context: Any) -> None:
        self.clock = context.clock

    async def send(self, batch: Batch) -> list[Any]:
        self.calls.append((self.clock.now(), [s.id for s in batch.sends]))
        if self.answer is None:
            return [Accepted() for _ in batch.sends]
        got = self.answer(batch, len(self.calls))
        if asyncio.iscoroutine(got):
            got = await got
        return got


class Reg:
    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def sendcore_register_providers(self, register: Any) -> None:
        register(self.provider)


def engine(provider: Any = None, clock: Any = None, **settings: Any) -> Engine:
    conf = {**BASE, **settings}
    return Engine(Settings.from_dict(conf), clock=clock or VirtualClock(START),
                  plugins=[Reg(provider if provider is not None else P())], load_entrypoints=False)


async def collect(stream: Any) -> list[Outcome]:
    return [o async for o in stream]


def finals(outcomes: list[Outcome]) -> dict[str, list[Outcome]]:
    out: dict[str, list[Outcome]] = {}
    for o in outcomes:
        if o.status.is_final:
            out.setdefault(o.send_id, []).append(o)
    return out


def submit_one(run: Any, send: Any, **settings: Any) -> Any:
    """Submit [good, send, good] and return the report: the bad item rejected, the good ones kept."""

    async def main() -> Any:
        async with engine(**settings) as e:
            report = await e.submit([S("a"), send, S("b")])
            await e.drain()
            return report, e.outcome("sa"), e.outcome("sb")

    report, a, b = run(main())
    assert report.accepted_ids == ["sa", "sb"], report
    assert a.status is Status.SENT and b.status is Status.SENT
    [rejection] = report.rejected
    assert rejection.index == 1
    return rejection


# --------------------------------------------------------------------------- row 1


@pytest.mark.parametrize("field", ["id", "recipient", "origin_id", "sender", "body", "tags", "carrier"])
def test_row01_a_lone_surrogate_in_any_text_field_is_rejected_naming_it(run: Any, field: str) -> None:
    value: Any = ("x\ud800",) if field == "tags" else "x\ud800"
    rejection = submit_one(run, S(1, **{field: value}))
    assert rejection.reason.startswith(f"{field}: contains a lone surrogate"), rejection


def test_row01_a_lone_surrogate_in_metadata_is_rejected_naming_it(run: Any) -> None:
    rejection = submit_one(run, S(1, metadata={"subject": "x\ud800"}))
    assert rejection.reason.startswith("metadata: must be JSON-like values"), rejection


@pytest.mark.parametrize("journaled", [False, True])
def test_row01_cancel_by_text_no_send_can_carry_names_no_send_and_keeps_the_good_ids(
        run: Any, tmp_path: Any, journaled: bool) -> None:
    """A lone surrogate as a cancel's id, recipient or origin id names no send (submit refuses such text).

    It is reported unknown and kept out of the journal (which stores UTF-8), the
    good id beside it is cancelled, and the journal still replays; an id that is
    not a string is a ValueError naming it, cancelling nothing.
    """
    settings = {"journal": {"path": str(tmp_path / "j")}} if journaled else {}
    later = START + 3600

    async def main() -> Any:
        async with engine(**settings) as e:
            await e.submit([S(1, send_at=later), S(2, send_at=later, origin_id="promo")])
            by_id = await e.cancel(ids=["s1", "x\ud800"])
            by_recipient = await e.cancel(recipient="r\ud800")
            by_origin = await e.cancel(origin_id="p\ud800", recipient="r2")
            with pytest.raises(ValueError, match=r"ids\[1\]: expected a string, got int"):
                await e.cancel(ids=["s2", 5])
            with pytest.raises(ValueError, match="recipient: expected a string, got list"):
                await e.cancel(recipient=["r2"])
            return by_id, by_recipient, by_origin, e.pending

    by_id, by_recipient, by_origin, pending = run(main())
    assert by_id.cancelled == ["s1"] and by_id.unknown == ["x\ud800"]
    assert by_recipient.cancelled == [] and by_origin.cancelled == []
    assert pending == 1  # s2 was never cancelled: neither bad call touched it
    if journaled:
        async def again() -> Any:
            async with engine(**settings) as e:
                return e.pending, e.outcome("s1").status
        assert run(again()) == (1, Status.CANCELLED)


# --------------------------------------------------------------------------- rows 12-17


@pytest.mark.parametrize("priority", [-5, 99, 10**100, True])
def test_row12_a_priority_outside_0_to_9_is_rejected_naming_priority(run: Any, priority: Any) -> None:
    rejection = submit_one(run, S(1, priority=priority))
    assert rejection.reason.startswith("priority: "), rejection


def test_row12_the_priority_range_is_a_setting(run: Any) -> None:
    async def main() -> Any:
        async with engine(limits={"priority_max": 20}) as e:
            return await e.submit([S(1, priority=20), S(2, priority=21)])

    report = run(main())
    assert report.accepted_ids == ["s1"] and "limits.priority_max" in report.rejected[0].reason


@pytest.mark.parametrize("send_at", [datetime(9999, 12, 31, tzinfo=timezone.utc), 1e15, START + 401 * 86400])
def test_row13_send_at_beyond_the_horizon_is_rejected_naming_send_at(run: Any, send_at: Any) -> None:
    rejection = submit_one(run, S(1, send_at=send_at))
    assert rejection.reason.startswith("send_at: ") and "limits.schedule_horizon" in rejection.reason, rejection


def test_row13_send_at_within_the_horizon_is_kept(run: Any) -> None:
    async def main() -> Any:
        async with engine() as e:
            return await e.submit([S(1, send_at=START + 399 * 86400)])

    assert run(main()).accepted == 1


def test_row14_a_dict_send_with_a_mistyped_key_is_rejected_naming_the_key(run: Any) -> None:
    good = {"id": "d1", "recipient": "r", "channel": "sms", "to": "+33612345678", "origin": "transactional"}
    rejection = submit_one(run, dict(good, sendAt=START + 60))
    assert rejection.reason.startswith("sendAt: unknown key (did you mean 'send_at'?)"), rejection


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_row15_expires_at_not_finite_is_rejected_naming_expires_at(run: Any, value: float) -> None:
    rejection = submit_one(run, S(1, expires_at=value))
    assert rejection.reason.startswith("expires_at: "), rejection


@pytest.mark.parametrize(
    ("channel", "to"),
    [("email", "not an email"), ("email", " "), ("email", "a@b.c\r\nBcc: x@y.z"), ("push", "\x00"),
     ("push", "tok en"), ("sms", "+33612345678\r\n")],
)
def test_row16_bad_addresses_and_control_characters_are_rejected_naming_to(run: Any, channel: str, to: str) -> None:
    rejection = submit_one(run, S(1, channel=channel, to=to))
    assert rejection.reason.startswith("to: "), rejection


def test_row17_a_10_mb_sms_body_is_rejected_and_otps_behind_it_leave_at_once(run: Any) -> None:
    async def main() -> Any:
        async with engine(routes=[{"provider": "p", "rate": 10, "burst": 10}]) as e:
            report = await e.submit([S(0, body="x" * 10_000_000)] + [S(i) for i in range(1, 11)])
            await e.drain()
            return report, [e.outcome(f"s{i}") for i in range(1, 11)]

    report, otps = run(main())
    assert report.rejected[0].index == 0 and report.rejected[0].reason.startswith("body: ")
    assert "channels.sms.max_body_bytes" in report.rejected[0].reason
    assert all(o.status is Status.SENT and o.at < START + 2 for o in otps)


def test_row17_sms_segments_and_email_bytes_are_bounded_by_channel_settings(run: Any) -> None:
    async def main() -> Any:
        async with engine(channels={"sms": {"max_segments": 2}, "email": {"max_body_bytes": 100}}) as e:
            return await e.submit([S(1, body="x" * 306), S(2, body="x" * 307),
                                   S(3, channel="email", to="a@example.com", body="é" * 50),
                                   S(4, channel="email", to="a@example.com", body="é" * 51)])

    report = run(main())
    assert report.accepted_ids == ["s1", "s3"]
    reasons = {r.index: r.reason for r in report.rejected}
    assert reasons[1] == "body: 3 SMS segments, more than channels.sms.max_segments = 2"
    assert reasons[3] == "body: 102 bytes, more than channels.email.max_body_bytes = 100"


# --------------------------------------------------------------------------- row 20


def test_row20_finished_outcomes_are_bounded_by_count_as_well_as_by_time(run: Any) -> None:
    async def main() -> Any:
        async with engine(max_pending=1000, limits={"retention_max": 500}) as e:
            for k in range(4):
                await e.submit([S(f"{k}-{i}") for i in range(400)])
                await e.drain()
            stats = e.stats()
            kept = sum(1 for k in range(4) for i in range(400) if e.outcome(f"s{k}-{i}") is not None)
            return stats, kept, e.outcome("s3-399"), e.outcome("s0-0")

    stats, kept, newest, oldest = run(main())
    assert stats.final["sent"] == 1600
    assert kept <= 500 + 400  # bounded: at most the limit, plus what finished since the last pass
    assert newest is not None and oldest is None


# --------------------------------------------------------------------------- rows 2-4: provider answers


def run_with(run: Any, answer: Callable[[Batch, int], Any], sends: list[Send], until: Union[float, None] = None,
             **settings: Any) -> tuple[dict[str, list[Outcome]], list[Outcome], P, Any]:
    p = P(answer)

    async def main() -> Any:
        async with engine(p, **settings) as e:
            stream = e.outcomes()
            await e.submit(sends)
            if until is None:
                await e.drain()
            else:
                await e.run_until(until)
            stats = e.stats()
            await e.close()
            return [o async for o in stream], stats

    outcomes, stats = run(main())
    return finals(outcomes), outcomes, p, stats


@pytest.mark.parametrize("retry_after", [0, -5, math.nan])
def test_row02_rate_limited_zero_negative_or_nan_is_clamped_counted_and_ends(run: Any, retry_after: float) -> None:
    by_id, outcomes, p, _ = run_with(run, lambda b, c: [RateLimited(retry_after) for _ in b.sends], [S(1)],
                                     retry={"max_rate_limited": 20, "min_retry_after": "100ms"})
    [final] = by_id["s1"]
    assert final.status is Status.FAILED and final.reason.value == "max_attempts"
    assert "rate limited 20 times" in final.detail
    assert len(p.calls) == 21  # the first call and 20 pushbacks, not hundreds of thousands
    times = [t for t, _ in p.calls]
    assert all(b - a >= 0.1 - 1e-6 for a, b in zip(times, times[1:]))  # each pushback waited the minimum


@pytest.mark.parametrize("retry_after", [1e9, math.inf])
def test_row03_a_huge_rate_limited_wait_is_clamped_and_expires_at_still_applies(run: Any, retry_after: float) -> None:
    sends = [S(1), S(2, expires_at=START + 600)]
    by_id, outcomes, p, _ = run_with(
        run, lambda b, c: [RateLimited(retry_after) for _ in b.sends] if c == 1 else [Accepted() for _ in b.sends],
        sends, retry={"max_retry_after": "30m"})
    assert by_id["s2"][0].status is Status.SKIPPED and by_id["s2"][0].reason.value == "expired"
    assert by_id["s1"][0].status is Status.SENT
    assert by_id["s1"][0].at == pytest.approx(START + 1800)  # held 30 minutes (the maximum), not 31 years


@pytest.mark.parametrize("bad", [RateLimited("soon"), PermanentFailure(suppress="everything"),  # type: ignore[arg-type]
                                 object(), None])
@pytest.mark.parametrize("journal", [False, True])
def test_row04_an_invalid_answer_is_a_temporary_failure_of_that_send_the_rest_recorded(
        run: Any, tmp_path: Any, bad: Any, journal: bool) -> None:
    def answer(b: Batch, call: int) -> list[Any]:
        return [bad if s.id == "s1" and call == 1 else Accepted() for s in b.sends]

    extra = {"journal": {"path": str(tmp_path / "j")}} if journal else {}
    by_id, outcomes, p, stats = run_with(run, answer, [S(0), S(1), S(2)], **extra)
    assert {sid: [o.status for o in v] for sid, v in by_id.items()} == {
        "s0": [Status.SENT], "s1": [Status.SENT], "s2": [Status.SENT]}
    [retrying] = [o for o in outcomes if o.status is Status.RETRYING]
    assert retrying.send_id == "s1" and "invalid" in retrying.detail


# --------------------------------------------------------------------------- rows 5, 6, 19: cancellation


def test_row05_a_provider_raising_cancelled_error_fails_the_batch_which_is_retried(run: Any) -> None:
    def answer(b: Batch, call: int) -> list[Any]:
        if call == 1:
            raise asyncio.CancelledError("the SDK gave up")
        return [Accepted() for _ in b.sends]

    p = P(answer)

    async def main() -> Any:
        async with Engine(Settings.from_dict(BASE), plugins=[Reg(p)], load_entrypoints=False) as e:  # real clock
            stream = e.outcomes()
            await e.submit([S(1, send_at=None)])
            await asyncio.wait_for(e.drain(), 10)
            await e.close()
            return [o async for o in stream]

    outcomes = run(main())
    assert [o.status for o in outcomes] == [Status.RETRYING, Status.SENT]
    assert "raised CancelledError" in outcomes[0].detail


class Stubborn(P):
    """Hangs and swallows every cancellation: the worst provider a close can meet."""

    timeout = 0.2
    released = False  # set by the test once close returned, so the loop's own teardown can end the task

    async def send(self, batch: Batch) -> list[Any]:
        self.calls.append((0.0, [s.id for s in batch.sends]))
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if self.released:
                    raise


@pytest.mark.parametrize("clock", ["real", "virtual"])
def test_row06_close_finishes_with_a_provider_that_swallows_cancellation(run: Any, clock: str) -> None:
    p = Stubborn()

    async def main() -> Any:
        e = Engine(Settings.from_dict(BASE), clock=VirtualClock(START) if clock == "virtual" else None,
                   plugins=[Reg(p)], load_entrypoints=False)
        await e.start()
        stream = e.outcomes()
        await e.submit([S(1, send_at=None)])
        while not p.calls:
            await asyncio.sleep(0.01)
        t0 = asyncio.get_running_loop().time()
        await asyncio.wait_for(e.close(grace=0.3), 10)
        took = asyncio.get_running_loop().time() - t0
        p.released = True
        return took, [o async for o in stream], e

    took, outcomes, e = run(main())
    assert took < 2.0
    assert e.closed and e.pending == 1  # left to be retried (the next start sends it again)
    assert any(o.status is Status.RETRYING and "did not end the call at close" in o.detail for o in outcomes), outcomes


def test_row19_a_provider_whose_close_raises_cancelled_error_does_not_stop_close(run: Any) -> None:
    class BadClose(P):
        async def close(self) -> None:
            raise asyncio.CancelledError("closing went wrong")

    p = BadClose()
    errors: list[str] = []

    async def main() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx["message"]))
        e = engine(p)
        await e.start()
        stream = e.outcomes()
        await e.submit([S(1)])
        await e.drain()
        await asyncio.wait_for(e.close(), 10)
        return e.closed, [o async for o in stream]

    closed, outcomes = run(main())
    assert closed and [o.status for o in outcomes] == [Status.SENT]  # the stream ended
    assert any("provider 'p' failed to close: CancelledError" in m for m in errors), errors


# --------------------------------------------------------------------------- rows 7-11: settings and check-config


def load_and_check(text: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """The ConfigError of Settings.from_toml_bytes, and what check-config prints, for one file."""
    from click.testing import CliRunner

    from sendcore.cli import main

    with pytest.raises(ConfigError) as info:
        Settings.from_toml_bytes(text.encode(), source="sendcore.toml")
    path = tmp_path / "sendcore.toml"
    path.write_text(text)
    monkeypatch.setenv("SENDCORE_LOAD_ENTRYPOINTS", "1")
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 2, result.output
    return str(info.value), result.output


@pytest.mark.parametrize("value", [0, -1])
def test_row07_provider_max_batch_below_one_is_a_config_error_naming_the_key(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, value: int) -> None:
    error, output = load_and_check(f"[providers.sandbox]\nmax_batch = {value}\n", tmp_path, monkeypatch)
    assert "providers.sandbox.max_batch: must be a positive integer" in error
    assert "providers.sandbox.max_batch: must be a positive integer" in output


@pytest.mark.parametrize(("toml", "named"), [
    ("[providers.sandbox]\nmax_batch = 1" + "0" * 30 + "\n", "providers.sandbox.max_batch: must be a positive integer up to"),
    ("[providers.sandbox]\nburst = 2000000000\n", "providers.sandbox.burst: must be an integer >= 0 and at most"),
    ("max_pending = 1" + "0" * 25 + "\n", "max_pending: too large (integers must fit in 64 bits)"),
    ('[[frequency_caps]]\nchannel = "sms"\nmax = 1' + "0" * 25 + '\nwindow = "1d"\n',
     "frequency_caps[0].max: too large"),
])
def test_row07_integers_beyond_their_range_are_config_errors_naming_the_key(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, toml: str, named: str) -> None:
    """A count too large to hold (found by the fuzz test: the journal could not record the settings) is refused."""
    error, output = load_and_check(toml, tmp_path, monkeypatch)
    assert named in error and named in output, (error, output)


@pytest.mark.parametrize(("key", "value"), [("max_concurrency", "0"), ("max_concurrency", "-1"),
                                            ("timeout", '"0s"')])
def test_row08_max_concurrency_and_timeout_that_would_send_nothing_are_config_errors(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    error, output = load_and_check(f"[providers.sandbox]\n{key} = {value}\n", tmp_path, monkeypatch)
    assert f"providers.sandbox.{key}: must be a positive" in error and f"providers.sandbox.{key}" in output


@pytest.mark.parametrize(("text", "key"), [
    ("[[routes]]\nrate = nan\n", "routes[0].rate"),
    ("[providers.sandbox]\ntotal_rate = nan\n", "providers.sandbox.total_rate"),
    ("[providers.sandbox]\nrate = -5\n", "providers.sandbox.rate"),
    ("[providers.sandbox]\nrate = nan\n", "providers.sandbox.rate"),
    ("[providers.sandbox]\nrate = inf\n", "providers.sandbox.rate"),
])
def test_row09_rates_that_are_nan_negative_or_infinite_are_config_errors_naming_the_key(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, text: str, key: str) -> None:
    error, output = load_and_check(text, tmp_path, monkeypatch)
    assert error.startswith(f"sendcore.toml: {key}: must be") and key in output


def test_row10_quiet_hours_with_start_equal_to_end_are_refused_as_ambiguous(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    error, output = load_and_check('[channels.sms]\nquiet_hours = {start = "20:00", end = "20:00"}\n',
                                   tmp_path, monkeypatch)
    assert "channels.sms.quiet_hours.end: equals start ('20:00')" in error and "quiet_hours = false" in output


@pytest.mark.parametrize(("text", "expected"), [
    ('jurisdictions = ["XX"]\n', "jurisdictions: unknown rule pack 'XX'"),
    ('[channels.sms]\nprovider = "nosuch"\n', "[channels.sms] provider 'nosuch' is not registered"),
])
def test_row11_check_config_builds_what_the_engine_builds(
        run: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, text: str, expected: str) -> None:
    from click.testing import CliRunner

    from sendcore.cli import main

    path = tmp_path / "sendcore.toml"
    path.write_text(text)
    monkeypatch.setenv("SENDCORE_LOAD_ENTRYPOINTS", "1")
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 2 and expected in result.output, result.output

    async def start() -> Any:
        # What check-config reported is what the engine does with the same file.
        settings = Settings.from_toml(path)
        settings.journal.path = ""
        try:
            async with Engine(settings, clock=VirtualClock(START)) as e:
                return (await e.submit([S(1)])).rejected[0].reason
        except ConfigError as exc:
            return str(exc)

    assert expected in run(start())


# --------------------------------------------------------------------------- error isolation


def test_a_plugin_hook_that_raises_or_answers_nonsense_falls_back_and_is_counted(run: Any) -> None:
    """A timezone or carrier hook that raises (or returns junk) is "no answer": the next source decides."""

    class Hooks:
        def sendcore_resolve_timezone(self, send: Send) -> Any:
            if send.id == "s1":
                raise RuntimeError("profile database down")
            return 42 if send.id == "s2" else None

        def sendcore_lookup_carrier(self, send: Send) -> Any:
            if send.id == "s3":
                raise RuntimeError("HLR lookup down")
            return None

    async def main() -> Any:
        e = Engine(Settings.from_dict(BASE), clock=VirtualClock(START), plugins=[Reg(P()), Hooks()],
                   load_entrypoints=False)
        async with e:
            report = await e.submit([S(i) for i in range(4)])
            await e.drain()
            return report, [e.outcome(f"s{i}") for i in range(4)], e.stats()

    report, outcomes, stats = run(main())
    assert report.accepted == 4 and all(o.status is Status.SENT for o in outcomes)
    assert stats.errors == 3


def test_a_policy_that_raises_fails_only_the_sends_it_raised_on(run: Any) -> None:
    from sendcore.policies.base import Stage

    class Fragile:
        name = "fragile"
        stages = Stage.ADMIT

        def check(self, entries: list[Any], now: float, stage: Any, verdicts: Any) -> list[Any]:
            if any(e.send.id == "s1" for e in entries):
                raise ZeroDivisionError("division by zero")
            return entries

    class Policies:
        def sendcore_register_policies(self, register: Any) -> None:
            register(Fragile())

    async def main() -> Any:
        e = Engine(Settings.from_dict(BASE), clock=VirtualClock(START), plugins=[Reg(P()), Policies()],
                   load_entrypoints=False)
        async with e:
            await e.submit([S(i) for i in range(3)])
            await e.drain()
            return [e.outcome(f"s{i}") for i in range(3)], e.stats()

    outcomes, stats = run(main())
    assert [o.status for o in outcomes] == [Status.SENT, Status.FAILED, Status.SENT]
    assert outcomes[1].reason.value == "error"
    assert outcomes[1].detail == "policy 'fragile' raised ZeroDivisionError: division by zero"
    assert stats.errors == 1


@pytest.mark.parametrize("journal", [False, True])
def test_a_provider_exception_whose_text_cannot_be_read_or_stored_is_a_plain_batch_failure(
        run: Any, tmp_path: Any, journal: bool) -> None:
    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("__str__ raised")

    def answer(b: Batch, call: int) -> list[Any]:
        if call == 1:
            raise Nasty()
        if call == 2:
            raise ValueError("carrier said \ud800")
        return [Accepted() for _ in b.sends]

    extra = {"journal": {"path": str(tmp_path / "j")}} if journal else {}
    by_id, outcomes, p, stats = run_with(run, answer, [S(1)], **extra)
    retrying = [o for o in outcomes if o.status is Status.RETRYING]
    assert "<Nasty whose str() raised>" in retrying[0].detail
    assert "carrier said \\ud800" in retrying[1].detail
    assert [o.status for o in by_id["s1"]] == [Status.SENT]
