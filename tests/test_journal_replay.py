"""R22: replaying the journal rebuilds exactly the state the live engine had.

A property test drives an engine (virtual clock, journal on) through a random
sequence of submits (valid and invalid items, duplicates), cancels, time
steps, provider answers of every kind, suppressions, delivery reports and
snapshots, then rebuilds a core from the journal files alone and compares
everything the core holds: the pending set with each send's place, due time
and attempt, the outcomes within retention, the send history (smart sending,
caps, spacing), suppression, the error segment, route pacing and pushback,
and the counters.
"""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from sendcore.core import Core
from sendcore.engine import Engine
from sendcore.journal import recover
from sendcore.send import Accepted, PermanentFailure, RateLimited, Send, TemporaryFailure
from sendcore.settings import Settings
from sendcore.testing import ProvidersPlugin, VirtualClock

from .test_engine import START, Recorder

RECIPIENTS = [f"r{i}" for i in range(12)]


def _settings(path: Path, snapshot_bytes: int = 1 << 28) -> Settings:
    return Settings.from_dict({
        "journal": {"path": str(path), "snapshot_bytes": snapshot_bytes},
        "retry": {"base_delay": "20s", "max_delay": "5m", "max_attempts": 3},
        "channels": {"sms": {"smart_sending_window": "1h", "quiet_hours": {"start": "22:00", "end": "06:00"}}},
        "frequency_caps": [{"channel": "sms", "max": 2, "window": "day", "action": "defer"}],
        "spacing": [{"after": "email", "before": "sms", "gap": "10m"}],
        "routes": [{"provider": "rec", "rate": 2, "burst": 2}],
    })


async def _answer(rec: Recorder, batch: Any, call: int) -> list[Any]:
    """A deterministic mix of every result kind, chosen by send id and call number; every 7th call raises."""
    if call % 7 == 0:
        raise ConnectionError("connection reset by peer")
    out: list[Any] = []
    for s in batch.sends:
        k = zlib.crc32(f"{s.id}:{call}".encode()) % 10
        if k < 6:
            out.append(Accepted(provider_id=f"p-{s.id}"))
        elif k < 8:
            out.append(TemporaryFailure("busy", "try later"))
        elif k == 8:
            out.append(PermanentFailure("21211", "invalid", suppress="all" if call % 3 == 0 else None))
        else:
            out.append(RateLimited(retry_after=15.0))
    return out


def state_of(core: Core) -> dict[str, Any]:
    """Everything a core holds that decides what it does next, as plain comparable values."""
    pending = sorted((sid, e.where, e.due, e.attempt, e.hold, e.prio, e.reserved, e.route)
                     for sid, e in core._pending.items())
    finished = {sid: (o.status, o.reason, o.at, o.attempt, o.detail, o.provider_id)
                for sid, o in core._finished.items()}
    routes = {k: (r.size, r.gcra.tat, r.gcra.base, r.blocked_until, r.blocked_by, r.day_count, r.sent_units,
                  [[e.send.id for e in r.queues[p]] for p in r.prios])
              for k, r in core._routes.items()}
    h = core.history
    st_ = core.stats()
    return {
        "pending": pending, "finished": finished, "routes": routes,
        "history": (h.last_marketing, h.last_any, h.cap_logs),
        "suppression": core.suppression.entries, "errors": core.error_segment.errors,
        "reservations": core._reservations, "batch_seq": core._batch_seq, "now": core._now,
        "counts": (st_.submitted, st_.rejected, st_.final, st_.reasons, st_.events),
        "wheel_next": core._wheel.next_due(), "next_wakeup": core.next_wakeup(),
    }


op = st.one_of(
    st.tuples(st.just("submit"), st.lists(st.tuples(st.integers(0, 40), st.sampled_from(RECIPIENTS),
                                                    st.sampled_from(["transactional", "flow", "campaign"]),
                                                    st.sampled_from(["sms", "email"]),
                                                    st.integers(-60, 4 * 3600), st.booleans()),
                                          min_size=1, max_size=8)),
    st.tuples(st.just("run"), st.integers(1, 7200)),
    st.tuples(st.just("cancel_id"), st.integers(0, 40)),
    st.tuples(st.just("cancel_recipient"), st.sampled_from(RECIPIENTS)),
    st.tuples(st.just("suppress"), st.sampled_from(RECIPIENTS), st.sampled_from(["marketing", "all"])),
    st.tuples(st.just("unsuppress"), st.sampled_from(RECIPIENTS)),
    st.tuples(st.just("report"), st.integers(0, 40), st.booleans()),
    st.tuples(st.just("snapshot"),),
)


def _to(rec: str) -> str:
    return f"+3361234{int(rec[1:]):04d}"


async def _drive(path: Path, ops: list[Any]) -> dict[str, Any]:
    settings = _settings(path)
    clock = VirtualClock(START)
    rec = Recorder(channels=("sms", "email"), latency=0.5, max_batch=3, answer=_answer)
    engine = Engine(settings, clock=clock, plugins=[ProvidersPlugin(rec)], load_entrypoints=False)
    async with engine:
        for o in ops:
            kind = o[0]
            if kind == "submit":
                items: list[Any] = []
                for n, rcpt, origin, channel, at, valid in o[1]:
                    to = _to(rcpt) if channel == "sms" else f"{rcpt}@example.com"
                    items.append(Send(id=f"s{n}", recipient=rcpt, channel=channel, to=to if valid else "+33",
                                      origin=origin, send_at=clock.now() + at, body="hello"))
                await engine.submit(items)
            elif kind == "run":
                await engine.run_until(clock.now() + o[1])
            elif kind == "cancel_id":
                await engine.cancel(ids=[f"s{o[1]}"])
            elif kind == "cancel_recipient":
                await engine.cancel(recipient=o[1])
            elif kind == "suppress":
                engine.suppress("sms", _to(o[1]), o[2])
            elif kind == "unsuppress":
                engine.unsuppress("sms", _to(o[1]))
            elif kind == "report":
                engine.delivery_report(f"s{o[1]}", o[2])
            elif kind == "snapshot":
                await engine.snapshot()
        await engine.run_until(clock.now() + 60)
    return state_of(engine.core)


def _replayed(path: Path) -> dict[str, Any]:
    """The state of a core rebuilt from the journal files alone, with the settings recorded in them."""
    core, _ = recover(path, lambda s, specs: Core(s, providers=specs), None, [], readonly=True)
    return state_of(core)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=25))
def test_replaying_the_journal_rebuilds_the_live_state(tmp_path_factory: Any, ops: list[Any]) -> None:
    """R22: for any sequence of inputs, a core rebuilt from the journal equals the live engine's core."""
    path = tmp_path_factory.mktemp("journal")
    live = asyncio.run(_drive(path, ops))
    again = _replayed(path)
    assert again == live


def test_replay_covers_retries_pushback_and_suppression(tmp_path: Path) -> None:
    """The fixed run behind the property: it does retry, push back, suppress and snapshot, so the comparison means something."""
    ops = [("submit", [(i, RECIPIENTS[i % 12], ["transactional", "flow", "campaign"][i % 3], "sms", 30 * i, True)
                       for i in range(30)]),
           ("run", 600), ("snapshot",), ("submit", [(35, "r1", "flow", "email", 0, True), (36, "r1", "flow", "sms", 60, True)]),
           ("suppress", "r2", "marketing"), ("run", 3600), ("cancel_recipient", "r3"), ("report", 0, True), ("run", 7200),
           ("submit", [(37, "r99", "campaign", "sms", 8 * 3600, True)]), ("run", 12 * 3600)]
    live = asyncio.run(_drive(tmp_path / "j", ops))
    again = _replayed(tmp_path / "j")
    assert again == live
    reasons = live["counts"][3]
    events = live["counts"][4]
    assert events.get("retrying") and events.get("deferred"), events
    assert reasons.get("permanent_failure") or reasons.get("max_attempts"), reasons
    assert live["suppression"], "a permanent failure or the API suppressed an address"
    assert list((tmp_path / "j").glob("snapshot-*.snap")), "the run took a snapshot, so replay went through one"


def test_concurrent_submits_of_one_id_accept_it_once(tmp_path: Path) -> None:
    """R1 with the journal: two submits of the same id waiting on one fsync; the second is a duplicate, also on replay."""

    async def main() -> tuple[list[Any], dict[str, Any]]:
        clock = VirtualClock(START)
        engine = Engine(_settings(tmp_path / "j"), clock=clock, plugins=[ProvidersPlugin(Recorder())],
                        load_entrypoints=False)
        async with engine:
            mk = lambda: [Send(id="dup", recipient="r1", channel="sms", to=_to("r1"), origin="transactional",  # noqa: E731
                               send_at=clock.now() + 3600)]
            reports = await asyncio.gather(engine.submit(mk()), engine.submit(mk()))
        return reports, state_of(engine.core)

    reports, live = asyncio.run(main())
    assert sorted(r.accepted for r in reports) == [0, 1]
    assert [r.reason for r in reports[0].rejected + reports[1].rejected] == ["id: duplicate of a pending send"]
    assert _replayed(tmp_path / "j") == live
