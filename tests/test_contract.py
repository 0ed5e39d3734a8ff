"""The provider contract kit (sendcore.testing.contract) against small providers written here.

A well-behaved provider passes every check, on the virtual and on the real
clock; each broken provider fails exactly the check that names its fault.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sendcore.provider import Provider, ProviderContext
from sendcore.send import Accepted, Batch, PermanentFailure, RateLimited, Result, Send
from sendcore.testing import ContractError, ProviderContract, check_provider
from sendcore.testing.contract import CHECKS

BAD = Send(id="bad", recipient="rb", channel="sms", to="+33612999913", origin="flow")


class Carrier(Provider):
    """A well-behaved simulated carrier: latency on the clock, per-send errors as results,
    pushback over ``capacity`` sends per call, idempotent on send.id."""

    name = "carrier"
    channels = ("sms", "email")
    max_batch = 20
    timeout = 5.0

    def __init__(self) -> None:
        self.accepted: dict[str, str] = {}
        self.capacity = 0

    async def start(self, context: ProviderContext) -> None:
        self.clock = context.clock
        self.capacity = int(context.settings.get("capacity", 0))

    async def send(self, batch: Batch) -> list[Result]:
        await self.clock.sleep(0.05)
        out: list[Result] = []
        for i, s in enumerate(batch.sends):
            if s.to.endswith("13"):
                out.append(PermanentFailure("21211", "invalid number", suppress="all"))
            elif self.capacity and i >= self.capacity:
                out.append(RateLimited(retry_after=1.0))
            else:
                out.append(Accepted(self.accepted.setdefault(s.id, f"m{len(self.accepted)}")))
        return out


def run_kit(factory: Any, clock: str = "virtual", **kw: Any) -> Any:
    kw.setdefault("failing_sends", [BAD])
    kw.setdefault("rate_limit_options", {"capacity": 3})
    return asyncio.run(check_provider(factory, clock=clock, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("clock", ["virtual", "real"])
def test_a_good_provider_passes_every_check(clock: str) -> None:
    report = run_kit(Carrier, clock)
    assert report.ok and report.passed == list(CHECKS) and report.skipped == {}


def test_checks_needing_input_are_skipped_saying_what_to_give() -> None:
    report = run_kit(Carrier, failing_sends=[], rate_limit_options=None, strict=False)
    assert set(report.skipped) == {"error_mapping", "rate_limit"}
    assert "failing_sends" in report.skipped["error_mapping"]
    assert not report.ok  # a run with skips is not a pass
    assert "skipped error_mapping: no failing_sends given" in report.summary()


def test_strict_by_default_a_skipped_check_fails_the_run() -> None:
    failed = failing(Carrier, failing_sends=[], rate_limit_options=None)
    assert set(failed) == {"error_mapping", "rate_limit"}
    assert failed["error_mapping"].startswith("skipped (no failing_sends given")
    assert "strict=False" in failed["rate_limit"]
    assert run_kit(Carrier).ok  # with everything given, nothing is skipped


def test_check_provider_documents_every_keyword_argument() -> None:
    import inspect

    doc = check_provider.__doc__ or ""
    params = [p for p in inspect.signature(check_provider).parameters]
    missing = [p for p in params if f"``{p}" not in doc]
    assert not missing, f"check_provider's docstring does not document {missing}"


def failing(factory: Any, **kw: Any) -> dict[str, str]:
    with pytest.raises(ContractError) as info:
        run_kit(factory, **kw)
    assert "breaks the sendcore provider contract" in str(info.value)
    report = {}
    for line in str(info.value).splitlines()[1:]:
        name, _, msg = line.removeprefix("- ").partition(": ")
        report[name] = msg
    return report


def test_one_result_short() -> None:
    class Short(Carrier):
        async def send(self, batch: Batch) -> list[Result]:
            return (await super().send(batch))[:-1]

    failed = failing(Short)
    assert "results" in failed and "returned 0 results for a batch of 1" in failed["results"]
    assert "engine_batches" in failed  # the engine saw it too


def test_wrong_result_types() -> None:
    class Dicts(Carrier):
        async def send(self, batch: Batch) -> list[Any]:
            return [{"status": "ok"} for _ in batch.sends]

    assert "every result must be Accepted" in failing(Dicts)["results"]


def test_exception_for_a_per_send_error() -> None:
    class Raises(Carrier):
        async def send(self, batch: Batch) -> list[Result]:
            if any(s.to.endswith("13") for s in batch.sends):
                raise ValueError("invalid number +33612999913")
            return await super().send(batch)

    failed = failing(Raises)
    assert set(failed) == {"error_mapping"}
    assert "send() raised ValueError" in failed["error_mapping"]


def test_failure_at_the_wrong_position() -> None:
    class Shifted(Carrier):
        async def send(self, batch: Batch) -> list[Result]:
            results = await super().send(batch)
            return results[1:] + results[:1]  # one result per send, but not in order

    assert "expected TemporaryFailure or PermanentFailure at its own position" in failing(Shifted)["error_mapping"]


def test_slower_than_its_declared_timeout() -> None:
    class Slow(Carrier):
        async def send(self, batch: Batch) -> list[Result]:
            if len(batch.sends) == self.max_batch:
                await self.clock.sleep(2 * self.timeout)
            return await super().send(batch)

    failed = failing(Slow, checks=("timeout",))
    assert "did not answer within its declared timeout of 5s" in failed["timeout"]


def test_rate_limited_without_a_positive_retry_after() -> None:
    class Zero(Carrier):
        async def send(self, batch: Batch) -> list[Result]:
            return [RateLimited(0.0) if isinstance(r, RateLimited) else r for r in await super().send(batch)]

    assert "retry_after must be a positive" in failing(Zero)["rate_limit"]


def test_never_pushes_back() -> None:
    assert "got no RateLimited" in failing(Carrier, rate_limit_options={})["rate_limit"]


def test_not_idempotent() -> None:
    class Fresh(Carrier):
        calls = 0

        async def send(self, batch: Batch) -> list[Result]:
            self.calls += 1
            return [Accepted(f"call{self.calls}-{s.id}") for s in batch.sends]

    failed = failing(Fresh, failing_sends=[], rate_limit_options=None)
    assert "a replay must return the same Accepted" in failed["idempotency"]
    report = run_kit(Fresh, idempotent=False, failing_sends=[], rate_limit_options=None, strict=False)
    assert report.skipped["idempotency"].startswith("idempotent=False")


def test_bad_declaration() -> None:
    class StrChannels(Carrier):
        channels = "sms"  # type: ignore[assignment]

    assert "`channels` must be a non-empty sequence" in failing(StrChannels, checks=("declaration",))["declaration"]


class TestCarrierContract(ProviderContract):
    """The pytest base class, pointed at the good provider: each check is one test here."""

    clock = "virtual"
    failing_sends = [BAD]
    rate_limit_options = {"capacity": 3}

    @pytest.fixture
    def provider_factory(self) -> Any:
        return Carrier


class TestCarrierContractWithAPlainMethod(ProviderContract):
    """``provider_factory`` written as a plain method works exactly as the fixture form."""

    clock = "virtual"
    failing_sends = [BAD]
    rate_limit_options = {"capacity": 3}

    def provider_factory(self) -> Any:
        return Carrier


class TestStrictContractFailsOnMissingInput(ProviderContract):
    """With nothing to overload the provider, the rate_limit check fails under the default strict mode."""

    clock = "virtual"
    failing_sends = [BAD]

    def provider_factory(self) -> Any:
        return Carrier

    def test_rate_limit(self, request: Any) -> None:
        with pytest.raises(pytest.fail.Exception, match="rate_limit: skipped .*strict=False"):
            super().test_rate_limit(request)


def test_the_readme_contract_example_runs_as_written(tmp_path: Any) -> None:
    """The README's ProviderContract example, copied out verbatim, passes under pytest."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    m = re.search(r"```python\n(# test_acme_contract\.py.*?)```", readme, re.S)
    assert m, "README.md has no ```python block starting with '# test_acme_contract.py'"
    (tmp_path / "test_acme_contract.py").write_text(m.group(1))
    examples = Path(__file__).parent.parent / "examples" / "acme_sms"
    env = dict(__import__("os").environ, PYTHONPATH=str(examples))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "7 passed" in r.stdout
