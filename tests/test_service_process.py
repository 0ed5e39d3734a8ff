"""A real `sendcore serve` process on 127.0.0.1: SIGKILL and SIGTERM while clients submit, and the outcome cursor.

Nothing the API acknowledged may be lost, and a consumer resuming from its
cursor must see every outcome once: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from sendcore.client import ApiError, Client
from sendcore.journal import files
from sendcore.journal.files import scan_segment
from sendcore.service import TokenStore
from tests.service_helpers import ROOT, ServeProcess, child_env, config_text, email

FINAL = {"sent", "skipped", "failed", "cancelled"}


def _setup(tmp_path: Path, service: str = "token_rate = 0") -> tuple[Path, str]:
    config = tmp_path / "sendcore.toml"
    config.write_text(config_text(tmp_path, service))
    store = TokenStore(tmp_path / "tokens.json")
    return config, store.create(["submit", "read", "admin"], "test")[0]


async def _read_all(client: Client, after: int = 0) -> list[dict]:
    return [o async for o in client.outcomes(after=after)]


def _check_contiguous(outcomes: list[dict], first: int = 1) -> None:
    seqs = [o["seq"] for o in outcomes]
    assert seqs == list(range(first, first + len(seqs))), "gap or duplicate in the outcome cursor"


def _check_one_final_each(outcomes: list[dict]) -> dict[str, dict]:
    finals: dict[str, dict] = {}
    for o in outcomes:
        if o["status"] in FINAL:
            assert o["send_id"] not in finals, f"two final outcomes for {o['send_id']}"
            finals[o["send_id"]] = o
    return finals


async def _wait_for(client: Client, ids: set[str], timeout: float = 15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        got = await _read_all(client)
        if ids <= {o["send_id"] for o in got if o["status"] in FINAL}:
            return got
        assert time.monotonic() < deadline, f"{len(ids - {o['send_id'] for o in got})} outcomes never came"
        await asyncio.sleep(0.05)


async def _load(url: str, token: str, acked: dict[str, str], stop: asyncio.Event, worker: int) -> None:
    """Submit batches until ``stop``: half due now, half next hour; record every id acknowledged."""
    later = time.time() + 3600
    async with Client(url, token, retries=0, timeout=10) as client:
        n = 0
        while not stop.is_set():
            batch = [email(f"{worker}-{n}-{i}", prefix="now" if i % 2 else "later",
                           send_at=None if i % 2 else later) for i in range(200)]
            n += 1
            try:
                answer = await client.submit(batch)
            except (ApiError, OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.01)
                continue
            except Exception:  # a connection reset mid-answer (aiohttp's own error types)
                await asyncio.sleep(0.01)
                continue
            for item in answer["items"]:
                assert item["status"] == "accepted", item
                acked[item["id"]] = "later" if item["id"].startswith("later") else "now"


async def _verify_after_restart(url: str, token: str, acked: dict[str, str], seen: list[dict]) -> None:
    """Every acknowledged send is known (pending or final); the cursor resumes exactly from ``seen``."""
    async with Client(url, token) as client:
        ids = list(acked)
        for k in range(0, len(ids), 1000):  # resubmitting a known id answers "duplicate": the engine holds it
            answer = await client.submit([email("", prefix=i) for i in ids[k:k + 1000]])
            assert answer["duplicates"] == len(ids[k:k + 1000]), [x for x in answer["items"]
                                                                  if x["status"] != "duplicate"][:3]
        now_ids = {i for i, kind in acked.items() if kind == "now"}
        full = await _wait_for(client, now_ids)
        _check_contiguous(full)
        finals = _check_one_final_each(full)
        assert all(finals[i]["status"] == "sent" for i in now_ids)
        assert not any(i in finals for i, kind in acked.items() if kind == "later")
        # The consumer that read `seen` before the crash resumes at its cursor: exactly the rest.
        cursor = seen[-1]["seq"] if seen else 0
        rest = await _read_all(client, after=cursor)
        assert seen + rest == full[:len(seen) + len(rest)]
        _check_contiguous(seen + rest)
        st = await client.status()
        assert st["pending"]["total"] >= sum(1 for kind in acked.values() if kind == "later")


def test_sigkill_while_clients_submit_loses_nothing_acknowledged_and_the_cursor_resumes_exactly(tmp_path):
    config, token = _setup(tmp_path)
    server = ServeProcess(config)
    acked: dict[str, str] = {}
    seen: list[dict] = []

    async def before_kill() -> None:
        stop = asyncio.Event()

        async def consume() -> None:
            async with Client(server.url, token, retries=0) as client:
                try:
                    async for o in client.outcomes(after=0, follow=True):
                        seen.append(o)
                except Exception:
                    pass  # the server died under the stream

        consumer = asyncio.ensure_future(consume())
        workers = [asyncio.ensure_future(_load(server.url, token, acked, stop, w)) for w in range(4)]
        await asyncio.sleep(1.2)
        server.signal(signal.SIGKILL)  # mid-load: requests in flight, outcomes on their way to the log
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*workers)
        await asyncio.wait_for(consumer, 10)

    asyncio.run(before_kill())
    assert server.wait() == -signal.SIGKILL
    assert len(acked) >= 1000, f"only {len(acked)} sends acknowledged before the kill"
    assert seen, "the consumer saw no outcome before the kill"
    _check_contiguous(seen)
    again = ServeProcess(config)
    try:
        asyncio.run(_verify_after_restart(again.url, token, acked, seen))
    finally:
        again.signal(signal.SIGTERM)
        assert again.wait() == 0


def test_outcomes_journaled_but_not_yet_logged_at_a_sigkill_are_appended_once_at_start(tmp_path):
    """The window of rule 3 of the outcome log, made certain: a child runs the engine without the log, then dies."""
    config, token = _setup(tmp_path)
    first = ServeProcess(config)

    async def phase1() -> list[dict]:
        async with Client(first.url, token) as client:
            await client.submit([email(i, prefix="a") for i in range(20)])
            return await _wait_for(client, {f"a{i}" for i in range(20)})

    seen = asyncio.run(phase1())
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    child = subprocess.run([sys.executable, str(ROOT / "tests" / "service_crash_child.py"), str(config), "b", "15"],
                           env=child_env(), capture_output=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    log_lines = b"".join(f.read_bytes() for f in (tmp_path / "state").glob("outcomes-*.ndjson")).splitlines()
    assert len(log_lines) == len(seen), "the child must not have written the log"
    second = ServeProcess(config)
    try:
        async def phase2() -> None:
            async with Client(second.url, token) as client:
                rest = await _read_all(client, after=seen[-1]["seq"])
                assert sorted(o["send_id"] for o in rest) == sorted(f"b{i}" for i in range(15))
                assert all(o["status"] == "sent" for o in rest)
                full = await _read_all(client)
                _check_contiguous(full)
                _check_one_final_each(full)
                assert full[:len(seen)] == seen

        asyncio.run(phase2())
    finally:
        second.signal(signal.SIGTERM)
        assert second.wait() == 0
    # A third start appends nothing more: the log already has them.
    third = ServeProcess(config)
    third.signal(signal.SIGTERM)
    assert third.wait() == 0
    lines = b"".join(f.read_bytes() for f in (tmp_path / "state").glob("outcomes-*.ndjson")).splitlines()
    assert len(lines) == len(seen) + 15


def test_sigterm_under_load_exits_0_and_loses_nothing_acknowledged(tmp_path):
    config, token = _setup(tmp_path)
    server = ServeProcess(config)
    acked: dict[str, str] = {}

    followed: list[dict] = []
    stopped: list[float] = []

    async def load() -> None:
        stop = asyncio.Event()

        async def follow() -> None:  # a consumer following the stream must not hold the shutdown up
            async with Client(server.url, token, retries=0) as client:
                try:
                    async for o in client.outcomes(after=0, follow=True):
                        followed.append(o)
                except Exception:
                    pass  # the stream ended at SIGTERM, the reconnect is refused

        consumer = asyncio.ensure_future(follow())
        workers = [asyncio.ensure_future(_load(server.url, token, acked, stop, w)) for w in range(4)]
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        server.signal(signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, 30)
        stopped.append(time.monotonic() - t0)
        stop.set()
        await asyncio.gather(*workers)
        await asyncio.wait_for(consumer, 10)

    asyncio.run(load())
    assert server.wait(timeout=30) == 0
    assert stopped[0] < 5.0, f"shutdown took {stopped[0]:.1f}s (shutdown_grace is 10 s: something held it up)"
    assert followed and all(o["status"] == "sent" for o in followed if o["send_id"].startswith("now"))
    assert len(acked) >= 1000
    logged = [json.loads(x) for x in (tmp_path / "serve.log").read_text().splitlines() if x.startswith("{")]
    assert any(x["message"].startswith("stopping on SIGTERM") for x in logged)
    assert any(x["message"].startswith("stopped:") for x in logged)
    # snapshot_on_stop: the stop left a snapshot covering every frame, so the restart replays none.
    journal = tmp_path / "journal"
    (snap_next, _), = files.snapshot_files(journal)
    assert all(not scan_segment(p).frames for n, p in files.segment_files(journal) if n >= snap_next)
    again = ServeProcess(config)
    try:
        asyncio.run(_verify_after_restart(again.url, token, acked, []))
    finally:
        again.signal(signal.SIGTERM)
        assert again.wait() == 0


def test_serve_check_validates_the_configuration_without_starting(tmp_path):
    config, _ = _setup(tmp_path)
    ok = subprocess.run([sys.executable, "-m", "sendcore.cli", "serve", "--config", str(config), "--check"],
                        env=child_env(), capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: would listen on http://127.0.0.1:8787"), ok.stderr
    assert not (tmp_path / "journal").exists()  # nothing started
    bad = tmp_path / "bad.toml"
    bad.write_text(config_text(tmp_path, "prot = 1"))
    out = subprocess.run([sys.executable, "-m", "sendcore.cli", "serve", "--config", str(bad), "--check"],
                         env=child_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "service.prot: unknown key (did you mean 'port'?)" in out.stderr


def test_sigint_stops_the_service_cleanly_too(tmp_path):
    config, token = _setup(tmp_path)
    server = ServeProcess(config)

    async def submit() -> dict:
        async with Client(server.url, token) as client:
            return await client.submit([email(i, send_at=time.time() + 600) for i in range(10)])

    assert asyncio.run(submit())["accepted"] == 10
    server.signal(signal.SIGINT)
    assert server.wait(timeout=30) == 0
    again = ServeProcess(config)
    try:
        async def check() -> None:
            async with Client(again.url, token) as client:
                assert (await client.status())["pending"]["scheduled"] == 10
        asyncio.run(check())
    finally:
        again.signal(signal.SIGTERM)
        assert again.wait() == 0
