"""`sendcore journal check|stats|repair|compact` and the upgrade path, on real journals written by an engine (R22)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec.structs
from click.testing import CliRunner

from sendcore import hookimpl
from sendcore.cli import main
from sendcore.engine import Engine
from sendcore.journal import files
from sendcore.journal.files import SEGMENT_MAGIC, scan_segment, segment_files, write_prefix
from sendcore.policies.base import Stage
from sendcore.send import Reason
from sendcore.testing import ProvidersPlugin, VirtualClock

from .test_engine import START, Recorder, sms
from .test_engine import settings as engine_settings
from .test_journal_faults import build_journal, journal_engine, known, last_segment, later


def _journal(run: Any, tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "j"
    ids = run(build_journal(path, chunks=4, per_chunk=3))
    return path, ids


def _flip_middle(path: Path) -> int:
    seg = last_segment(path)
    offset = scan_segment(seg).frames[2][0]
    data = bytearray(seg.read_bytes())
    data[offset + 3] ^= 0x10
    seg.write_bytes(bytes(data))
    return offset


def test_check_a_good_journal_prints_the_replayed_state(run: Any, tmp_path: Path) -> None:
    """check: every frame verified, the state after replay printed (12 pending, as the engine had), exit 0."""
    path, ids = _journal(run, tmp_path)
    r = CliRunner().invoke(main, ["journal", "check", str(path)])
    assert r.exit_code == 0, r.output
    assert "submit 4" in r.output and "ok" in r.output.splitlines()[-1]
    state = json.loads(CliRunner().invoke(main, ["journal", "stats", str(path), "--json"]).output)["state"]
    assert state["pending"] == state["scheduled"] == len(ids) == 12


def test_check_names_file_and_offset_of_a_flipped_bit(run: Any, tmp_path: Path) -> None:
    """check on damage: exit 1, the message names the segment and the offset and says what to do."""
    path, _ = _journal(run, tmp_path)
    offset = _flip_middle(path)
    r = CliRunner().invoke(main, ["journal", "check", str(path)])
    assert r.exit_code == 1
    assert last_segment(path).name in r.output and f"offset {offset}" in r.output and "repair" in r.output


def test_check_warns_of_a_torn_tail_and_changes_nothing(run: Any, tmp_path: Path) -> None:
    """A frame cut short at the end: check passes with a warning and leaves the file as it is."""
    path, _ = _journal(run, tmp_path)
    seg = last_segment(path)
    size = seg.stat().st_size
    with open(seg, "r+b") as f:
        f.truncate(size - 3)
    r = CliRunner().invoke(main, ["journal", "check", str(path)])
    assert r.exit_code == 0, r.output
    assert "warning" in r.output and "truncates" in r.output
    assert seg.stat().st_size == size - 3


def test_stats_table_and_json_agree(run: Any, tmp_path: Path) -> None:
    """stats: segment sizes and frame counts as on disk, bytes per pending send, in a table and in JSON."""
    path, ids = _journal(run, tmp_path)
    report = json.loads(CliRunner().invoke(main, ["journal", "stats", str(path), "--json"]).output)
    segs = segment_files(path)
    assert [r["segment"] for r in report["segments"]] == [p.name for _, p in segs]
    assert report["bytes"] == sum(p.stat().st_size for _, p in segs)
    assert report["bytes_per_pending"] == report["bytes"] / len(ids)
    table = CliRunner().invoke(main, ["journal", "stats", str(path)]).output
    assert f"{report['bytes']:,}" in table and "bytes per pending send" in table
    quick = json.loads(CliRunner().invoke(main, ["journal", "stats", str(path), "--no-replay", "--json"]).output)
    assert "state" not in quick and quick["frames"] == report["frames"]


def test_repair_cuts_after_the_last_good_frame_and_the_engine_starts(run: Any, tmp_path: Path) -> None:
    """repair --yes: truncated at the damage; check passes; an engine starts and keeps what was before it."""
    path, ids = _journal(run, tmp_path)
    offset = _flip_middle(path)
    r = CliRunner().invoke(main, ["journal", "repair", str(path), "--yes"])
    assert r.exit_code == 0 and "repaired" in r.output, r.output
    assert last_segment(path).stat().st_size == offset
    assert CliRunner().invoke(main, ["journal", "check", str(path)]).exit_code == 0

    async def start() -> None:
        async with journal_engine(path) as engine:
            kept = [i for i in ids if known(engine, i)]
            assert kept and kept == ids[: len(kept)] and len(kept) < len(ids)

    run(start())
    assert CliRunner().invoke(main, ["journal", "repair", str(path)]).output.startswith("nothing to repair")


def test_repair_declined_or_locked_changes_nothing(run: Any, tmp_path: Path) -> None:
    """repair answered "n" exits 1 and changes nothing; while the lock is held it is refused."""
    import os

    path, _ = _journal(run, tmp_path)
    _flip_middle(path)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    r = CliRunner().invoke(main, ["journal", "repair", str(path)], input="n\n")
    assert r.exit_code == 1 and "nothing changed" in r.output
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    fd = files.lock(path)
    try:
        r = CliRunner().invoke(main, ["journal", "repair", str(path), "--yes"])
        assert r.exit_code == 1 and "in use by another engine" in r.output
    finally:
        os.close(fd)


def test_repair_refuses_when_the_start_of_the_journal_is_missing(run: Any, tmp_path: Path) -> None:
    """No snapshot and segment 1 gone: nothing to cut that would help; repair says so and exits 1."""
    path = tmp_path / "j"
    run(build_journal(path, chunks=30, per_chunk=5, segment_bytes=4096))
    segs = segment_files(path)
    assert len(segs) >= 3
    segs[0][1].unlink()
    r = CliRunner().invoke(main, ["journal", "repair", str(path), "--yes"])
    assert r.exit_code == 1 and "cannot repair" in r.output and "missing" in r.output
    assert CliRunner().invoke(main, ["journal", "check", str(path)]).exit_code == 1


# ---------------------------------------------------------------------- compact, and the upgrade path


def _replayed_on_start(run: Any, path: Path) -> tuple[int, Any, int]:
    async def start() -> tuple[int, Any, int]:
        async with journal_engine(path) as engine:
            return engine.journal.recovery["frames"], engine.journal.recovery["snapshot"], engine.pending
    return run(start())


def test_compact_writes_a_snapshot_so_the_next_start_replays_nothing(run: Any, tmp_path: Path) -> None:
    """compact: every send still there, the next start loads the snapshot and replays no frame; twice is a no-op."""
    path, ids = _journal(run, tmp_path)
    frames, snapshot, _ = _replayed_on_start(run, path)
    assert frames > 0 and snapshot is None  # a clean close leaves the tail to replay
    r = CliRunner().invoke(main, ["journal", "compact", str(path), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["written"] and report["pending"] == len(ids) and report["frames_replayed"] > 0
    frames, snapshot, pending = _replayed_on_start(run, path)
    assert (frames, snapshot, pending) == (0, report["snapshot"], len(ids))
    again = CliRunner().invoke(main, ["journal", "compact", str(path)])
    assert again.exit_code == 0 and "already compact" in again.output, again.output


def test_compact_is_refused_while_an_engine_holds_the_journal(run: Any, tmp_path: Path) -> None:
    """compact takes the lock: beside a running engine it fails naming the directory, and changes nothing."""
    path, _ = _journal(run, tmp_path)

    async def held() -> Any:
        async with journal_engine(path):
            return await asyncio.to_thread(CliRunner().invoke, main, ["journal", "compact", str(path)])

    r = run(held())
    assert r.exit_code == 1 and str(path) in r.output, r.output
    assert not files.snapshot_files(path), "no snapshot may be written beside the engine holding the lock"


def test_close_with_snapshot_leaves_nothing_to_replay(run: Any, tmp_path: Path) -> None:
    """Engine.close(snapshot=True): the next start loads that snapshot, replays 0 frames and has every send."""
    path = tmp_path / "j"

    async def first() -> int:
        engine = journal_engine(path)
        await engine.start()
        await engine.submit([later(i) for i in range(5)])
        await engine.close(snapshot=True)
        return engine.pending

    assert run(first()) == 5
    frames, snapshot, pending = _replayed_on_start(run, path)
    assert frames == 0 and snapshot is not None and pending == 5


class _SkipOdd:
    """A policy that skips the sends whose id ends in an odd digit (so a replay without it diverges)."""

    name = "skip_odd"
    stages = Stage.ADMIT

    def check(self, entries: list[Any], now: float, stage: Stage, verdicts: Any) -> list[Any]:
        keep = []
        for e in entries:
            if int(e.send.id[-1]) % 2:
                verdicts.skip(e, Reason.SUPPRESSED, "odd")
            else:
                keep.append(e)
        return keep


class _SkipOddPlugin:
    @hookimpl
    def sendcore_register_policies(self, register: Any) -> None:
        register(_SkipOdd())


def _diverging_journal(run: Any, path: Path) -> None:
    """A journal whose record frames only match a core that has the ``skip_odd`` policy."""
    async def main_() -> None:
        engine = Engine(engine_settings(journal={"path": str(path)}), clock=VirtualClock(START),
                        plugins=[ProvidersPlugin(Recorder()), _SkipOddPlugin()], load_entrypoints=False)
        async with engine:
            await engine.submit([sms(i) for i in range(6)])
            await engine.drain()
    run(main_())


def _rewrite_writer(segment: Path, version: str) -> None:
    """Rewrite the segment's header as if another sendcore version had written it (frames untouched)."""
    scan = scan_segment(segment)
    data = segment.read_bytes()
    old = write_prefix(SEGMENT_MAGIC, scan.header)
    assert data.startswith(old)
    new = write_prefix(SEGMENT_MAGIC, msgspec.structs.replace(scan.header, sendcore=version))
    segment.write_bytes(new + data[len(old):])


def test_a_replay_that_diverges_on_a_tail_of_another_version_says_how_to_upgrade(run: Any, tmp_path: Path) -> None:
    """A tail whose replay diverges names the version that wrote it and the way out (compact with that version)."""
    path = tmp_path / "j"
    _diverging_journal(run, path)
    r = CliRunner().invoke(main, ["journal", "compact", str(path)])
    assert r.exit_code == 1 and "replay diverged" in r.output, r.output
    assert "written by sendcore" not in r.output  # same version: a plain divergence, no upgrade advice
    _rewrite_writer(last_segment(path), "0.0.1")
    r = CliRunner().invoke(main, ["journal", "compact", str(path)])
    assert r.exit_code == 1 and "replay diverged" in r.output, r.output
    assert "written by sendcore 0.0.1" in r.output and "sendcore journal compact" in r.output
    assert "close(snapshot=True)" in r.output


def test_a_changed_service_section_is_not_a_change_of_the_engine_rules(run: Any, tmp_path: Path) -> None:
    """[service] (like [journal]) does not make another core: a restart with a new port replays as it is."""
    path = tmp_path / "j"

    def eng(port: int) -> Engine:
        s = engine_settings(journal={"path": str(path)}, service={"port": port})
        return Engine(s, clock=VirtualClock(START), plugins=[ProvidersPlugin(Recorder())], load_entrypoints=False)

    async def first() -> None:
        async with eng(8787) as engine:
            await engine.submit([later(i) for i in range(3)])

    async def second() -> tuple[Any, int]:
        async with eng(9000) as engine:
            return engine.journal.recovery["settings_changed"], engine.pending

    run(first())
    assert run(second()) == (False, 3)
