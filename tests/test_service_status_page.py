"""The status page rendered by headless Chromium shows the engine's counts.

Chromium (Debian's ``chromium`` package; .ci/run installs it) loads ``GET /``
from the service on 127.0.0.1, runs its script, which reads ``/v1/status``
with the token from the URL fragment, and dumps the DOM; the counts in it
must be the engine's.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time

from tests.service_helpers import auth, email, make_tokens, served, settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


async def _dump_dom(url: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


def _count(dom: str, element_id: str) -> int:
    m = re.search(r'id="%s"[^>]*data-count="(\d+)"|data-count="(\d+)"[^>]*id="%s"' % (element_id, element_id), dom)
    assert m, f"no count for #{element_id} in the page"
    return int(m.group(1) or m.group(2))


def test_the_status_page_in_headless_chromium_shows_the_engine_counts(tmp_path):
    # A route held to one push a hundred seconds: its backlog stays put while the page renders.
    s = settings(tmp_path, extra='[[routes]]\nprovider = "sandbox"\nsender = "slow"\nrate = 0.01\nburst = 1\n')
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            later = time.time() + 3600
            sends = [email(i, send_at=later) for i in range(37)] + [email(i, prefix="now") for i in range(12)]
            sends += [{"id": f"p{i}", "recipient": f"rp{i}", "channel": "push", "to": f"device-{i}",
                       "origin": "transactional", "sender": "slow", "body": "ping"} for i in range(6)]
            resp = await client.post("/v1/sends", json=sends, headers=auth(tokens["all"]))
            assert (await resp.json())["accepted"] == 55
            deadline = time.monotonic() + 5
            while service.outcome_log.visible_seq < 13:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            url = f"http://127.0.0.1:{client.port}/#token={tokens['read']}"
            dom = await _dump_dom(url)
            stats = service.engine.stats()
            assert 'data-loaded="1"' in dom, dom[-3000:]
            slow = next(r for r in service.engine.core.dispatch.routes.values() if r.key[2] == "slow")
            assert slow.size == 5  # one left, five wait
            assert _count(dom, "pending-total") == stats.pending == 37 + 5
            assert _count(dom, "pending-scheduled") == stats.scheduled == 37
            assert _count(dom, "pending-queued") == stats.queued == 5
            assert _count(dom, "pending-in_flight") == stats.in_flight
            assert _count(dom, "final-sent") == stats.final["sent"] == 12 + 1
            assert _count(dom, "per-minute-email") == 12
            for name, size in (("sandbox/email/-/-", 0), ("sandbox/push/slow/-", 5)):
                route = re.search(r'<td[^>]*data-route="%s"[^>]*>' % re.escape(name), dom)
                assert route and f'data-count="{size}"' in route.group(0), name
            assert dom.count("<tr>") >= 12 + 1  # latest outcomes and the route rows
            # Without a token the page says why it has no data.
            dom = await _dump_dom(f"http://127.0.0.1:{client.port}/")
            assert "cannot read /v1/status" in dom and 'data-loaded="0"' in dom

    asyncio.run(main())
