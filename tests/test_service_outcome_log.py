"""The outcome log's file: seqs, the sparse index, torn lines, the lock (crash tests: test_service_process)."""

from __future__ import annotations

import asyncio
import json

import pytest

from sendcore.errors import JournalError
from sendcore.send import Outcome, Reason, Status
from sendcore.service.outcome_log import CursorExpired, OutcomeLog


def _outcomes(n: int, start: int = 0) -> list[Outcome]:
    return [Outcome(send_id=f"s{i}", status=Status.SENT if i % 3 else Status.RETRYING,
                    reason=Reason.ACCEPTED if i % 3 else Reason.TEMPORARY_FAILURE, at=1000.0 + i, channel="sms")
            for i in range(start, start + n)]


def _read_all(log: OutcomeLog, after: int) -> list[dict]:
    out, cursor = [], after
    while True:
        data, last = log.read(cursor, max_bytes=10_000)
        if not data:
            return out
        out.extend(json.loads(x) for x in data.splitlines())
        assert last == out[-1]["seq"]
        cursor = last


def test_every_cursor_reads_exactly_the_lines_after_it_across_index_marks_and_reopening(tmp_path):
    log = OutcomeLog(tmp_path)
    log.open()

    async def write():
        for k in range(0, 3000, 700):
            await log.append(_outcomes(min(700, 3000 - k), k))

    asyncio.run(write())
    log.close()
    again = OutcomeLog(tmp_path)
    again.open()
    assert again.last_seq == again.visible_seq == 3000
    for after in (0, 1, 1023, 1024, 1025, 2047, 2048, 2999, 3000, 4000):
        got = _read_all(again, after)
        assert [o["seq"] for o in got] == list(range(after + 1, 3001)), after
        assert all(o["send_id"] == f"s{o['seq'] - 1}" for o in got)
    assert again._last_final is not None and again._last_final.send_id == "s2999"
    again.close()


def test_a_torn_last_line_is_cut_and_its_seq_given_again(tmp_path):
    log = OutcomeLog(tmp_path)
    log.open()
    asyncio.run(log.append(_outcomes(5)))
    path = log.path
    log.close()
    with open(path, "ab") as f:
        f.write(b'{"seq":6,"send_id":"s5","sta')  # a write cut by a crash: never fsynced, never served
    again = OutcomeLog(tmp_path)
    again.open()
    assert again.last_seq == 5
    asyncio.run(again.append(_outcomes(1, 5)))
    lines = path.read_bytes().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, 2, 3, 4, 5, 6]
    again.close()


def test_two_services_cannot_share_one_outcome_log(tmp_path):
    first = OutcomeLog(tmp_path)
    first.open()
    with pytest.raises(JournalError, match=r"outcomes.lock: the outcome log is in use by another service"):
        OutcomeLog(tmp_path).open()
    first.close()
    again = OutcomeLog(tmp_path)
    again.open()  # the lock went with the first one's file descriptor
    again.close()


def test_segments_rotate_and_every_cursor_still_reads_across_them(tmp_path):
    log = OutcomeLog(tmp_path, segment_bytes=4096, retention=1e9)
    log.open()

    async def write():
        for k in range(0, 2000, 100):
            await log.append(_outcomes(100, k))

    asyncio.run(write())
    files = sorted(tmp_path.glob("outcomes-*.ndjson"))
    assert len(files) > 10 and files[0].name == "outcomes-00000000000000000001.ndjson"
    log.close()
    again = OutcomeLog(tmp_path, segment_bytes=4096, retention=1e9)
    again.open()  # indexes the active segment only
    assert again.last_seq == 2000 and sum(s.marks is not None for s in again._segments) <= 2
    for after in (0, 99, 100, 101, 1024, 1500, 1999, 2000):
        assert [o["seq"] for o in _read_all(again, after)] == list(range(after + 1, 2001)), after
    asyncio.run(again.append(_outcomes(3, 2000)))
    assert [o["seq"] for o in _read_all(again, 1998)] == [1999, 2000, 2001, 2002, 2003]
    again.close()


def test_segments_older_than_retention_are_deleted_and_an_older_cursor_is_refused(tmp_path):
    log = OutcomeLog(tmp_path, segment_bytes=4096, retention=500.0)
    log.open()

    async def write():
        for k in range(0, 2000, 100):  # outcome i is at 1000 + i: the last is at 2999
            await log.append(_outcomes(100, k))

    asyncio.run(write())
    oldest = log.oldest_seq
    assert oldest > 1
    first = json.loads(sorted(tmp_path.glob("outcomes-*.ndjson"))[0].read_bytes().split(b"\n", 1)[0])
    assert first["seq"] == oldest
    # Nothing within retention of the newest outcome (at 2999, seq 2000) was deleted: seq 1501 on are kept.
    assert oldest <= 1501
    with pytest.raises(CursorExpired):
        log.read(oldest - 2)
    assert [o["seq"] for o in _read_all(log, oldest - 1)] == list(range(oldest, 2001))
    log.close()
