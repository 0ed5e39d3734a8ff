"""`sendcore journal check|stats|repair` on real journals written by an engine (R22)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from sendcore.cli import main
from sendcore.journal import files
from sendcore.journal.files import scan_segment, segment_files

from .test_journal_faults import build_journal, journal_engine, known, last_segment


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
