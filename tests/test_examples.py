"""The README's examples run as written: the embedding example and the HTTP provider plugin."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import web

from sendcore import Engine, Send, Settings, Status
from sendcore.testing import check_provider
from sendcore.testing.contract import CHECKS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "acme_sms"))
import acme_sms  # noqa: E402
from acme_api import AcmeApi, serve  # noqa: E402


def test_embedding_example_prints_the_flow_stopped_by_the_conversion():
    env = {k: v for k, v in os.environ.items() if k != "SENDCORE_LOAD_ENTRYPOINTS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "embed.py")], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout.split("\n")
    assert out[:3] == ["cart-2 sent", "cart-24 sent", "cart-48 cancelled"]


def test_acme_provider_passes_the_contract_kit_against_a_real_http_server():
    async def main():
        api = AcmeApi()
        runner, url = await serve(api)
        try:
            report = await check_provider(
                acme_sms.AcmeSms, options={"url": url},
                make_send=lambda i, ch: Send(id=f"k{i}", recipient=f"r{i}", channel="sms",
                                             to=f"+33612{i:05d}1", origin="transactional", body="hi"),
                failing_sends=[Send(id="bad", recipient="x", channel="sms", to="+33612340000",
                                    origin="transactional")],
                rate_limit_sends=[Send(id="rl", recipient="y", channel="sms", to="+33612345679",
                                       origin="transactional")],
            )
        finally:
            await runner.cleanup()
        return report

    report = asyncio.run(main())
    # check_provider raises on any failed check; here every check must also have run, none skipped.
    assert not report.skipped, report.skipped
    assert set(report.passed) == set(CHECKS)


def test_acme_provider_through_the_engine_on_the_real_clock(run):
    """Retries (503), pushback (429 Retry-After) and suppression (404) against a real local server."""

    async def main():
        api = AcmeApi()
        runner, url = await serve(api)
        settings = Settings.from_toml_bytes(
            f'[providers.acme.options]\nurl = "{url}"\n[retry]\nbase_delay = "0.2s"\njitter = 0\n'
            '[channels.sms]\nquiet_hours = false'.encode())
        try:
            async with Engine(settings, plugins=[acme_sms]) as engine:
                now = engine.clock.now()
                sends = [Send(id=f"m{i}", recipient=f"r{i}", channel="sms", to=to, origin="transactional",
                              body="Your code is 1234", send_at=now) for i, to in
                         enumerate(["+33612345671", "+33612345678", "+33612345679", "+33612340000"])]
                assert (await engine.submit(sends)).accepted == 4
                await asyncio.wait_for(engine.drain(), 20)
                return {s.id: engine.outcome(s.id) for s in sends}, api, engine.core.suppression.scope_of(
                    "sms", "+33612340000")
        finally:
            await runner.cleanup()

    outcomes, api, scope = run(main())
    assert outcomes["m0"].status is Status.SENT and outcomes["m0"].provider_id.startswith("SM")
    assert outcomes["m1"].status is Status.SENT  # 503 once, then retried with the same key
    assert outcomes["m2"].status is Status.SENT  # 429 once, then after Retry-After
    assert outcomes["m3"].status is Status.FAILED and scope == "all"
    keys = [k for _, k, _ in api.requests]
    assert keys.count("m1") == 2 and keys.count("m2") == 2
    # The route is a long code: 1 msg/s; the 429 pushed the whole route back by 1 s.
    times = sorted(t for t, _, _ in api.requests)
    for a, b in zip(times, times[1:]):
        assert b - a >= 0.9
