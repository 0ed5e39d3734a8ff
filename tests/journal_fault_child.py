"""Child processes for ``tests/test_journal_faults.py`` (R22 fault injection that needs its own process).

Usage: ``python journal_fault_child.py MODE JOURNAL_DIR [LOOP]`` with MODE one of

``lock``
    take ``flock`` on ``JOURNAL_DIR/LOCK`` as an engine does, write the pid,
    print ``READY <pid>`` and sleep until killed;
``engine``
    open an Engine on ``JOURNAL_DIR`` (wall clock), submit a few sends, print
    ``READY <pid>`` and sleep until killed (a live holder of the journal);
``snapshot``
    open an Engine on ``JOURNAL_DIR`` (wall clock), submit 20,000 sends, lay
    FIFOs where its snapshot writer will write, start a snapshot, print
    ``READY <pid> <writer pid> <fifo>`` and sleep until killed (the writer
    blocks on the FIFO until someone reads it, the test holding it open);
``open-as-nobody``
    drop to uid/gid 65534 and try to start an Engine on ``JOURNAL_DIR``;
    print one JSON line ``{"ok": bool, "error": str}`` (root bypasses file
    permissions, so a mode-0o500 directory only refuses an unprivileged user);
``diskfull``
    the disk-full scenario (see ``diskfull``): every event is one JSON line
    on stdout (a pipe: RLIMIT_FSIZE only limits regular files).

Everything is local files; no network. A child exits by itself after 60 s.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import resource
import signal
import sys
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sendcore.engine import Engine  # noqa: E402
from sendcore.errors import JournalError  # noqa: E402
from sendcore.journal.files import snapshot_name  # noqa: E402
from sendcore.provider import Provider  # noqa: E402
from sendcore.send import Accepted, Batch, Result, Send  # noqa: E402
from sendcore.settings import Settings  # noqa: E402
from sendcore.testing import ProvidersPlugin  # noqa: E402

MAX_LIFE = 60.0


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Log(Provider):
    """Serves ``sms``; remembers (wall time, ids) of every batch it is handed, and accepts it."""

    name = "faultlog"
    channels = ("sms",)
    max_batch = 20
    max_concurrency = 4

    def __init__(self) -> None:
        self.calls: list[tuple[float, list[str]]] = []

    async def send(self, batch: Batch) -> list[Result]:
        self.calls.append((time.time(), [s.id for s in batch.sends]))
        return [Accepted(provider_id=f"p-{s.id}") for s in batch.sends]


def settings(directory: str, **journal: Any) -> Settings:
    return Settings.from_dict({
        "journal": {"path": directory, **journal},
        "retry": {"base_delay": "1s", "max_delay": "5s", "jitter": 0},
        "channels": {"sms": {"quiet_hours": False}},
    })


def sms(sid: str, at: float, body: str = "") -> Send:
    n = zlib.crc32(sid.encode()) % 10_000
    return Send(id=sid, recipient=f"r-{sid}", channel="sms", to=f"+33612{n:04d}99", origin="transactional",
                send_at=at, body=body)


# ---------------------------------------------------------------------- lock holders


def hold_lock(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    print(f"READY {os.getpid()}", flush=True)
    time.sleep(MAX_LIFE)
    return 3


async def hold_engine(directory: Path) -> int:
    engine = Engine(settings(str(directory)), plugins=[ProvidersPlugin(Log())], load_entrypoints=False)
    async with engine:
        await engine.submit([sms(f"live{i}", time.time() + 3600) for i in range(5)])
        print(f"READY {os.getpid()}", flush=True)
        await asyncio.sleep(MAX_LIFE)
    return 3


async def snapshot_on_a_fifo(directory: Path) -> int:
    engine = Engine(settings(str(directory)), plugins=[ProvidersPlugin(Log())], load_entrypoints=False)
    async with engine:
        await engine.submit([sms(f"snap{i}", time.time() + 3600) for i in range(20_000)])
        # The writer's file is named after the next segment and this pid: lay a FIFO under every name it
        # can take, so it blocks there, far past the point where it arranged to die with this process.
        for n in range(1, 9):
            os.mkfifo(directory / f"{snapshot_name(n)}.tmp-{os.getpid()}")
        assert await engine.snapshot()
        snap = engine._journal._snap  # type: ignore[union-attr]
        print(f"READY {os.getpid()} {snap['pid']} {snap['tmp']}", flush=True)
        await asyncio.sleep(MAX_LIFE)
    return 3


async def open_as_nobody(directory: Path) -> int:
    # Everything the engine imports lazily, imported first: after setuid the interpreter's own library may be
    # out of reach (a Python installed under root's 0o700 home directory).
    import concurrent.futures.thread  # noqa: F401  (run_in_executor's default executor)
    import ctypes  # noqa: F401
    import pickle  # noqa: F401

    import sendcore.core  # noqa: F401
    import sendcore.journal.journal  # noqa: F401

    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    engine = Engine(settings(str(directory)), plugins=[ProvidersPlugin(Log())], load_entrypoints=False)
    try:
        await engine.start()
    except JournalError as exc:
        emit(ok=False, error=str(exc), type=type(exc).__name__)
        return 0
    except Exception as exc:  # anything but a JournalError is a failure the parent reports
        emit(ok=False, error=repr(exc), type=type(exc).__name__)
        return 0
    await engine.close()
    emit(ok=True, error="", type="")
    return 0


# ---------------------------------------------------------------------- disk full


async def diskfull(directory: Path) -> int:
    """Submit until the journal's segment cannot grow (RLIMIT_FSIZE: EFBIG), then watch the engine degrade and heal.

    1. soft limit ``LIMIT`` bytes per file: submit chunks of 20 sends (due
       0.3 s to 3 s ahead) until one raises ``JournalError`` (``failed``);
    2. the disk stays full: the soft limit drops to 0, so the snapshot the
       journal retries each second cannot be written either; for
       ``DEGRADED`` seconds submits are tried every 0.1 s (``refused``) while
       the provider keeps getting already-accepted sends;
    3. the soft limit goes back to the hard limit (``raised``); submits are
       tried every 0.1 s until one is accepted (``acked``, ``healed``) or
       ``HEAL`` seconds pass; then a few more submits, and a clean close.
    """
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, the process lives
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = int(os.environ.get("FAULT_LIMIT", "65536"))
    degraded_for = float(os.environ.get("FAULT_DEGRADED", "1.5"))
    heal_for = float(os.environ.get("FAULT_HEAL", "6"))
    provider = Log()
    # segment_bytes above the limit: the segment itself hits it (RLIMIT_FSIZE limits each file).
    extra = json.loads(os.environ.get("FAULT_JOURNAL", "{}"))  # more [journal] settings
    engine = Engine(settings(str(directory), segment_bytes=64 * 1024 * 1024, **extra),
                    plugins=[ProvidersPlugin(provider)], load_entrypoints=False)
    await engine.start()
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    t0 = time.time()
    body = "x" * 60
    chunk_no = 0

    def chunk() -> list[Send]:
        nonlocal chunk_no
        chunk_no += 1
        now = time.time()
        return [sms(f"c{chunk_no}-{j}", now + 0.3 + (chunk_no % 28) * 0.1, body) for j in range(20)]

    async def attempt(event_ok: str, event_bad: str) -> bool:
        sends = chunk()
        ids = [s.id for s in sends]
        try:
            report = await engine.submit(sends)
        except JournalError as exc:
            emit(event=event_bad, ids=ids, error=str(exc), t=time.time(), degraded=engine.journal.degraded)
            return False
        emit(event=event_ok, ids=list(report.accepted_ids), rejected=[list(r) for r in report.rejected],
             t=time.time())
        return True

    # 1. fill the file
    while True:
        if not await attempt("acked", "failed"):
            break
        if time.time() - t0 > 20:
            emit(event="error", error="no submit failed within 20 s")
            return 1
    failed_at = time.time()
    # 2. the disk stays full
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    emit(event="degraded", degraded=engine.journal.degraded, t=time.time())
    while time.time() - failed_at < degraded_for:
        await asyncio.sleep(0.1)
        if await attempt("acked_while_full", "refused"):
            break
    # 3. room again
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    raised_at = time.time()
    emit(event="raised", t=raised_at)
    healed = False
    while time.time() - raised_at < heal_for:
        await asyncio.sleep(0.1)
        if await attempt("acked", "refused_after_raise"):
            healed = True
            break
    emit(event="healed" if healed else "not_healed", t=time.time(), seconds=time.time() - raised_at,
         degraded=engine.journal.degraded)
    if healed:
        for _ in range(3):
            await attempt("acked", "failed_after_heal")
    stats = engine.journal
    emit(event="calls", calls=[[t, ids] for t, ids in provider.calls], failed_at=failed_at, raised_at=raised_at,
         snapshots=stats.snapshots, segments=stats.segments)
    await engine.close()
    emit(event="closed")
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG,
                        format="%(created).3f %(name)s %(levelname)s %(message)s")
    mode, directory = argv[1], Path(argv[2])
    loop = argv[3] if len(argv) > 3 else "asyncio"
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(int(MAX_LIFE) + 30)  # never an orphan forever
    if mode == "lock":
        return hold_lock(directory)
    coro = {"engine": hold_engine, "snapshot": snapshot_on_a_fifo, "open-as-nobody": open_as_nobody,
            "diskfull": diskfull}[mode](directory)
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
