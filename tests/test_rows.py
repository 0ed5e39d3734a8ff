"""The compact pending store (sendcore/rows.py): sends due past the current 64 s slot held as rows of columns."""

from __future__ import annotations

import pickle
import zlib
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st

from sendcore.ledger import Entry
from sendcore.rows import FREE, GONE, LIVE, PendingRows
from sendcore.send import Accepted, Origin, Send, Status
from sendcore.testing.simulate import InstantProvider, drive
from sendcore.wheel import SPAN

from .helpers import PARIS, at, core, finals, send

T0 = at(PARIS, 2027, 1, 13, 12, 0)
HOUR = 3600.0


def _collision() -> tuple[str, str]:
    """Two ids with the same CRC-32 (the id index's key), found by the birthday bound in ~100k tries."""
    seen: dict[int, str] = {}
    i = 0
    while True:
        sid = f"c-{i}"
        h = zlib.crc32(sid.encode())
        if h in seen:
            return seen[h], sid
        seen[h] = sid
        i += 1


def _in_rows(c: Any, sid: str) -> bool:
    return sid not in c.ledger.pending and c._rows.find(sid) >= 0


# ---------------------------------------------------------------------------- the store itself


def test_a_send_comes_back_equal_from_every_encoding() -> None:
    """The positional blob (common fields only), the coded one (zones, local times, carriers ...) and the full
    map (metadata) all decode to an equal Send, through send_of and through pop_many."""
    rows = PendingRows()
    plain = send("a", send_at=T0 + HOUR, body="Your code", expires_at=T0 + 2 * HOUR, origin_id="cart")
    rare = send("b", send_at=T0 + HOUR, body="Sale ☕", tags=("vip", "fr"), priority=4, sender="ACME",
                timezone="Europe/Paris", metadata={"k": [1, 2.5, "x", None, True], "n": {"a": 1}},
                smart_sending=False, quiet_hours=False, carrier="orange", provider="sandbox")
    coded = send("d", send_at=None, body="Sale", tags=("vip",), priority=-3, sender="ACME", timezone="Asia/Tokyo",
                 local_send_at="2027-01-14T10:00", smart_sending=False, carrier="orange", provider="sandbox",
                 origin=Origin.CAMPAIGN, origin_id="bf")
    zone_only = send("e", send_at=T0 + HOUR, timezone="Europe/Paris", quiet_hours=False, origin=Origin.FLOW)
    empty_body = send("c", send_at=T0 + HOUR, body="")
    for s in (plain, rare, empty_body, coded, zone_only):
        row = rows.add(s, T0 + HOUR, 1, None)
        assert row >= 0
        assert rows.send_of(row) == s
        assert rows.id_of(row) == s.id
    assert [b[0] for b in rows.blob] == [0x97, 0xDE, 0x97, 0x97, 0x97]  # templated but for the metadata's map
    assert len(rows.blob[3]) < 40  # the zone, local time, carrier, sender and provider are in its template
    assert len(rows.templates) == 3  # plain and empty_body share one; the map needs none
    assert len(rows) == 5
    assert sorted((e.send for e in _popped(rows, T0 + 2 * HOUR)), key=lambda x: x.id) == \
        sorted((plain, rare, empty_body, coded, zone_only), key=lambda x: x.id)


def test_past_the_template_limit_a_send_needing_a_new_one_is_held_as_a_map(monkeypatch: Any) -> None:
    """The table of templates is bounded: once full, a send needing a template not in it is held as its map
    (and comes back equal); sends matching a template already made stay templated."""
    import sendcore.rows as rows_module

    monkeypatch.setattr(rows_module, "_MAX_TEMPLATES", 1)
    rows = PendingRows()
    sends = [send(f"k{i}", send_at=T0 + HOUR, timezone="Europe/Paris", sender=f"S{i % 2}") for i in range(4)]
    held = [rows.add(s, T0 + HOUR, 1, None) for s in sends]
    assert [rows.blob[r][0] == 0x97 for r in held] == [True, False, True, False]  # "S1" found the table full
    assert len(rows.templates) == 1
    assert [rows.send_of(r) for r in held] == sends


def test_a_store_written_before_templates_still_reads_its_positional_rows() -> None:
    """Snapshots of an earlier version hold 8-field positional blobs; they still decode, and leave, equal."""
    import msgspec

    rows = PendingRows()
    s = send("old", send_at=T0 + HOUR, body="hi", origin_id="cart", expires_at=T0 + 2 * HOUR)
    row = rows.add(s, T0 + HOUR, 1, None)
    rows.blob[row] = msgspec.msgpack.encode(
        (s.id, s.recipient, s.channel, s.to, list(Origin).index(s.origin), s.origin_id, s.send_at, s.expires_at))
    assert rows.blob[row][0] == 0x98
    assert rows.send_of(row) == s and rows.id_of(row) == "old" and rows.find("old") == row
    assert _popped(rows, T0 + HOUR)[0].send == s


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(tags=st.lists(_text, max_size=3).map(tuple), priority=st.none() | st.integers(-9, 9),
       timezone=st.none() | st.sampled_from(["Europe/Paris", "America/New_York"]), carrier=st.none() | _text,
       sender=st.none() | _text, local=st.none() | st.just("2027-01-14T10:00"), flags=st.tuples(st.booleans(), st.booleans()),
       origin=st.sampled_from(list(Origin)), body=_text, expires=st.none() | st.floats(1e9, 2e9))
def test_any_send_held_as_a_row_comes_back_equal(tags: Any, priority: Any, timezone: Any, carrier: Any, sender: Any,
                                                 local: Any, flags: Any, origin: Any, body: str, expires: Any) -> None:
    rows = PendingRows()
    s = send("x", send_at=None if local else T0 + HOUR, body=body, tags=tags, priority=priority, timezone=timezone,
             carrier=carrier, sender=sender, local_send_at=local, smart_sending=flags[0], quiet_hours=flags[1],
             origin=origin, expires_at=expires)
    row = rows.add(s, T0 + HOUR, 1, None)
    assert rows.send_of(row) == s
    assert _popped(rows, T0 + HOUR)[0].send == s


def test_metadata_that_would_not_come_back_the_same_stays_an_object() -> None:
    """A tuple in metadata decodes as a list: such a send is refused as a row (the core keeps the object)."""
    rows = PendingRows()
    s = send("t", send_at=T0 + HOUR, metadata={"pair": (1, 2)})
    assert rows.add(s, T0 + HOUR, 1, None) == -1
    assert len(rows) == 0


def test_bodies_are_held_once_and_freed_with_their_last_row() -> None:
    rows = PendingRows()
    body = "Black Friday: 30% off everything " * 3
    got = [rows.add(send(f"s{i}", send_at=T0 + HOUR, body=body), T0 + HOUR, 2, None) for i in range(50)]
    assert rows.body_text.count(body) == 1 and rows.bodies[body] == 1 and rows.body_refs[1] == 50
    for r in got[:-1]:
        rows.take(r)
    assert body in rows.bodies
    rows.take(got[-1])
    assert body not in rows.bodies and rows.body_refs[1] == 0
    assert rows.add(send("x", send_at=T0 + HOUR, body="other"), T0 + HOUR, 2, None) >= 0
    assert rows.bodies["other"] == 1  # the freed body slot is reused


def test_two_ids_with_the_same_hash_are_told_apart() -> None:
    a, b = _collision()
    rows = PendingRows()
    ra = rows.add(send(a, send_at=T0 + HOUR), T0 + HOUR, 1, None)
    rb = rows.add(send(b, send_at=T0 + HOUR), T0 + HOUR, 1, None)
    assert rows.find(a) == ra and rows.find(b) == rb
    assert rows.find("c-nobody") == -1
    rows.take(ra)
    assert rows.find(a) == -1 and rows.find(b) == rb


def test_the_id_index_grows_and_every_id_stays_found() -> None:
    rows = PendingRows()
    n = 5000  # several rebuilds of the 1,024-slot index
    held = {f"id-{i}": rows.add(send(f"id-{i}", send_at=T0 + HOUR), T0 + HOUR, 1, None) for i in range(n)}
    assert rows.mask + 1 >= n * 5 // 3
    assert all(rows.find(sid) == row for sid, row in held.items())
    for i in range(0, n, 2):
        rows.take(held[f"id-{i}"])
    assert all(rows.find(f"id-{i}") == (-1 if i % 2 == 0 else held[f"id-{i}"]) for i in range(n))
    assert len(rows) == n // 2


def test_cancel_by_recipient_and_origin_finds_exactly_the_matching_rows() -> None:
    rows = PendingRows()
    for i in range(300):
        rows.add(send(f"s{i}", recipient=f"r{i % 7}", origin_id=f"camp-{i % 3}", send_at=T0 + HOUR), T0 + HOUR, 1, None)
    want = [r for r in range(300) if r % 7 == 3]
    assert rows.of_recipient("r3") == want
    assert rows.of_origin("camp-1") == [r for r in range(300) if r % 3 == 1]
    assert rows.of_recipient("r\ud800") == [] and rows.of_origin("") == [] and rows.find("s\ud800") == -1
    for r in want:
        rows.take(r)
    assert rows.of_recipient("r3") == []


def test_recipients_with_the_same_hash_share_a_chain_and_are_told_apart() -> None:
    """Two recipients whose CRC-32 collide are linked in one chain; each lookup returns only its own rows,
    and either can leave (by pop or take, at the chain's head, middle or tail) without losing the other."""
    a, b = _collision()
    rows = PendingRows()
    due = T0 + HOUR
    for i in range(6):
        rows.add(send(f"s{i}", recipient=(a, b)[i % 2], send_at=due + i), due + i, 1, None)
    assert rows.of_recipient(a) == [0, 2, 4] and rows.of_recipient(b) == [1, 3, 5]
    rows.take(5)  # the chain's head (the last added)
    rows.take(2)  # its middle
    assert rows.of_recipient(a) == [0, 4] and rows.of_recipient(b) == [1, 3]
    left = _popped(rows, due + 3.5)
    assert sorted(e.send.id for e in left) == ["s0", "s1", "s3"]
    assert rows.of_recipient(a) == [4] and rows.of_recipient(b) == []
    _popped(rows, due + 10)
    assert rows.of_recipient(a) == [] and list(rows.rheads) == [-1] * len(rows.rheads)


def test_the_recipient_index_grows_with_the_rows_and_keeps_every_row_linked_once() -> None:
    rows = PendingRows()
    due = T0 + HOUR
    n = 5000
    for i in range(n):
        rows.add(send(f"s{i}", recipient=f"+3361{i:07d}", send_at=due), due, 1, None)
    assert n // 2 <= rows.rmask + 1 <= n
    assert all(rows.of_recipient(f"+3361{i:07d}") == [i] for i in range(0, n, 97))
    size = rows.rmask + 1
    for round_ in range(4):  # churn: every chain empties and a new one takes its place
        _popped(rows, due)
        due += HOUR
        for i in range(n):
            rows.add(send(f"t{round_}-{i}", recipient=f"+3362{round_}{i:06d}", send_at=due), due, 1, None)
    assert rows.rmask + 1 == size  # as many rows held as before: no growth
    chains = [0] * len(rows.rheads)
    for head in range(len(rows.rheads)):
        row = rows.rheads[head]
        while row >= 0:
            chains[head] += 1
            row = rows.rnext[row]
    assert sum(chains) == n and max(chains) < 16  # every held row is linked once; buckets stay short
    assert rows.of_recipient(f"+33623{4999:06d}") != [] and rows.of_recipient("+33610000000") == []


def test_a_store_pickled_without_the_recipient_index_builds_it_when_loaded() -> None:
    rows = PendingRows()
    for i in range(50):
        rows.add(send(f"s{i}", recipient=f"r{i % 5}", send_at=T0 + HOUR), T0 + HOUR, 1, None)
    rows.take(7)
    state = dict(rows.__dict__)
    for k in ("rheads", "rmask", "rprev", "rnext"):
        del state[k]
    state["rec"] = type(rows.rec)("I", (0 if rows.state[r] != LIVE else 1 for r in range(50)))  # old hashes
    old = PendingRows.__new__(PendingRows)
    old.__setstate__(state)
    assert old.of_recipient("r2") == [r for r in range(50) if r % 5 == 2 and r != 7]
    assert old.of_recipient("r3") == [r for r in range(50) if r % 5 == 3]


def _popped(rows: PendingRows, now: float) -> list[Any]:
    return rows.pop_many(rows.pop_due(now, 10**9), Entry, lambda e: None)


def test_a_row_is_not_reused_while_a_list_still_holds_its_number() -> None:
    """Taken out after its slot opened, a row stays GONE until the current list lets go; only then is it free."""
    rows = PendingRows()
    due = (int(T0 // SPAN) + 1) * SPAN + 5.0
    r = rows.add(send("a", send_at=due), due, 1, None)
    assert _popped(rows, due - 4.0) == [] and list(rows.current) == [r]
    rows.take(r)
    assert rows.state[r] == GONE and r not in rows.free
    r2 = rows.add(send("b", send_at=due + SPAN), due + SPAN, 1, None)
    assert r2 != r
    assert _popped(rows, due) == []
    assert rows.state[r] == FREE and r in rows.free and rows.gone == 0


def test_rows_leave_by_due_instant_never_before_and_slots_open_when_the_clock_enters_them() -> None:
    rows = PendingRows()
    base = (int(T0 // SPAN) + 1) * SPAN
    a = rows.add(send("a", send_at=base + 9), base + 9, 0, None)
    b = rows.add(send("b", send_at=base + 2), base + 2, 2, None)
    c = rows.add(send("c", send_at=base + 1.5), base + 1.5, 2, None)
    d = rows.add(send("d", send_at=base + SPAN + 1), base + SPAN + 1, 1, None)
    rows.take(b)
    assert rows.next_due() == base
    assert _popped(rows, base) == []
    assert list(rows.current) == [c, a] and rows.state[b] == FREE and rows.state[d] == LIVE
    assert rows.next_due() == base + 1.5
    assert _popped(rows, base + 1.4999) == []
    got = _popped(rows, base + 1.5)
    assert [e.send.id for e in got] == ["c"] and got[0].due == base + 1.5 and got[0].prio == 2
    assert rows.next_due() == base + 9
    assert [e.send.id for e in _popped(rows, base + 100)] == ["a", "d"]
    assert rows.next_due() is None and len(rows) == 0


def test_pop_due_takes_at_most_the_limit_in_due_order() -> None:
    rows = PendingRows()
    base = (int(T0 // SPAN) + 1) * SPAN
    for i in range(10):
        rows.add(send(f"s{i}", send_at=base + 10 - i), base + 10 - i, 1, None)
    first = rows.pop_many(rows.pop_due(base + 60, 4), Entry, lambda e: None)
    assert [e.send.id for e in first] == ["s9", "s8", "s7", "s6"]
    assert [e.send.id for e in _popped(rows, base + 60)] == [f"s{i}" for i in range(5, -1, -1)]


def test_compaction_drops_rows_taken_out_of_far_buckets() -> None:
    rows = PendingRows()
    n = 25_000
    for i in range(n):
        rows.add(send(f"s{i}", send_at=T0 + HOUR), T0 + HOUR, 1, None)
    for r in range(n - 100):
        rows.take(r)
    assert rows.compact() == n - 100
    assert len(rows.free) == n - 100 and sum(len(b) for b in rows.far.values()) == 100
    assert [rows.id_of(r) for r in rows.rows()] == [f"s{i}" for i in range(n - 100, n)]


def test_the_store_pickles_whole() -> None:
    rows = PendingRows()
    for i in range(100):
        rows.add(send(f"s{i}", send_at=T0 + HOUR, body=f"b{i % 3}"), T0 + HOUR + i, i % 3, None)
    back = pickle.loads(pickle.dumps(rows, protocol=5))
    assert [back.send_of(r) for r in back.rows()] == [rows.send_of(r) for r in rows.rows()]
    assert back.find("s42") == 42 and len(back) == 100


ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 60), st.integers(0, 6), st.integers(0, 3)),
    st.tuples(st.just("take"), st.integers(0, 60)),
    st.tuples(st.just("time"), st.integers(1, 400)),
), max_size=120)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops)
def test_the_store_matches_a_plain_model(ops: list[tuple[Any, ...]]) -> None:
    """Under any mix of adds, cancels and time: find, recipients and live counts match a dict model, and
    every send added comes back exactly once (popped or taken), never before its due instant; no row is
    both held and free."""
    rows = PendingRows()
    now = T0
    model: dict[str, tuple[Send, float]] = {}
    out: set[str] = set()
    for op in ops:
        if op[0] == "add":
            sid = f"s{op[1]}"
            due = now + SPAN + op[2] * 37.0
            if sid in model or sid in out or not rows.holds(due, now):
                continue
            s = send(sid, recipient=f"r{op[3]}", send_at=due, body=f"b{op[3] % 2}")
            assert rows.add(s, due, op[3] % 3, None) >= 0
            model[sid] = (s, due)
        elif op[0] == "take":
            sid = f"s{op[1]}"
            row = rows.find(sid)
            assert (row >= 0) == (sid in model)
            if row >= 0:
                s, due, _, _ = rows.take(row)
                assert s == model.pop(sid)[0]
                out.add(sid)
        else:
            now += op[1]
            for e in _popped(rows, now):
                assert e.due <= now and e.send == model.pop(e.send.id)[0]
                out.add(e.send.id)
        assert len(rows) == len(model)
        for r in range(4):
            assert sorted(rows.id_of(x) for x in rows.of_recipient(f"r{r}")) == \
                sorted(k for k, (s, _) in model.items() if s.recipient == f"r{r}")
        held = set(rows.rows())
        assert not held & set(rows.free)
    for e in _popped(rows, now + 10 * 86400):
        model.pop(e.send.id)
    assert model == {} and len(rows) == 0 and rows.gone == 0


# ---------------------------------------------------------------------------- through the core


def test_sends_due_past_the_current_slot_wait_as_rows_and_leave_as_submitted() -> None:
    c = core()
    now = T0
    later = [send(f"l{i}", send_at=now + HOUR + i, body="Your parcel is on its way", origin="transactional",
                  expires_at=now + 5 * HOUR) for i in range(20)]
    soon = send("soon", send_at=now + 1, origin="transactional")
    rich = send("rich", send_at=now + HOUR, origin="transactional", tags=("a",), metadata={"order": 7}, sender="ACME")
    assert c.submit([*later, soon, rich], now).accepted == 22
    assert c._rows.live == 21 and "soon" in c.ledger.pending
    assert c.pending == 22 and c.stats().scheduled == 22
    assert set(c._pending) == {s.id for s in [*later, soon, rich]}
    seen: list[Any] = []
    drive(c, now + 2 * HOUR, InstantProvider(lambda s, b: Accepted(f"p-{s.id}")), start=now, outcomes=seen)
    fin = finals(seen)
    assert len(fin) == 22 and all(o.status is Status.SENT for o in fin.values())
    assert all(o.at >= s.send_at for s in [*later, soon, rich] for o in [fin[s.id]])
    assert c.pending == 0 and c._rows.live == 0


def test_the_batch_hands_the_provider_the_send_as_it_was_submitted() -> None:
    c = core()
    s = send("x", send_at=T0 + HOUR, origin="transactional", tags=("t",), metadata={"a": [1, "b"]}, body="héllo")
    c.submit([s], T0)
    assert _in_rows(c, "x")
    got: list[Send] = []

    def answer(sd: Send, b: Any) -> Accepted:
        got.append(sd)
        return Accepted("p")

    drive(c, T0 + 2 * HOUR, InstantProvider(answer), start=T0)
    assert got == [s]


def test_a_duplicate_of_a_send_held_as_a_row_is_rejected() -> None:
    c = core()
    c.submit([send("a", send_at=T0 + HOUR)], T0)
    assert _in_rows(c, "a")
    rep = c.submit([send("a", send_at=T0 + 2 * HOUR), send("b", send_at=T0 + HOUR)], T0)
    assert rep.accepted == 1 and rep.rejected[0].reason == "id: duplicate of a pending send"


def test_max_pending_counts_the_rows() -> None:
    import pytest

    from sendcore.errors import PendingLimitError

    c = core("max_pending = 3")
    c.submit([send(f"a{i}", send_at=T0 + HOUR) for i in range(3)], T0)
    with pytest.raises(PendingLimitError):
        c.submit([send("b", send_at=T0 + 1)], T0)


def test_cancel_finds_sends_held_as_rows_by_id_recipient_and_origin() -> None:
    c = core()
    sends = [send(f"s{i}", recipient=f"r{i % 3}", origin="campaign", origin_id=f"camp-{i % 2}", send_at=T0 + HOUR)
             for i in range(12)]
    c.submit(sends, T0)
    assert c._rows.live == 12
    assert c.cancel(T0, ids=["s0", "nope"]).cancelled == ["s0"]
    rep = c.cancel(T0, recipient="r1", origin_id="camp-0")
    assert sorted(rep.cancelled) == sorted(s.id for s in sends if s.recipient == "r1" and s.origin_id == "camp-0")
    rep2 = c.cancel(T0, origin_id="camp-1")
    assert sorted(rep2.cancelled) == sorted(s.id for s in sends if s.origin_id == "camp-1"
                                            and s.id not in rep.cancelled)
    left = {s.id for s in sends} - {"s0"} - set(rep.cancelled) - set(rep2.cancelled)
    assert c.pending == len(left)
    out = c.drain_outcomes()
    assert {o.send_id for o in out if o.status is Status.CANCELLED} == {s.id for s in sends} - left
    assert c.cancel(T0, ids=["s0"]).too_late == ["s0"]  # finished: not pending any more
    seen: list[Any] = []
    drive(c, T0 + 2 * HOUR, InstantProvider(), start=T0, outcomes=seen)
    fin = finals(seen)
    assert set(fin) == left and Status.CANCELLED not in {o.status for o in fin.values()}
    assert Status.SENT in {o.status for o in fin.values()}


def test_a_send_cancelled_after_its_slot_opened_never_leaves_and_its_row_is_not_reused_early() -> None:
    c = core()
    slot_start = (int(T0 // SPAN) + 1) * SPAN
    c.submit([send("a", send_at=slot_start + 30, origin="transactional")], T0)
    assert _in_rows(c, "a")
    c.advance(slot_start)  # the slot opens: "a" moves to the current list
    assert list(c._rows.current) == [0]
    assert c.cancel(slot_start, ids=["a"]).cancelled == ["a"]
    # New sends far ahead take other rows while the current list still holds row 0.
    c.submit([send(f"b{i}", send_at=slot_start + 3 * HOUR, origin="transactional") for i in range(5)], slot_start)
    assert 0 not in [c._rows.find(f"b{i}") for i in range(5)]
    seen: list[Any] = []
    drive(c, slot_start + HOUR, InstantProvider(), start=slot_start, outcomes=seen)
    assert not [o for o in seen if o.status is Status.SENT]
    assert c.pending == 5


def test_explain_of_a_send_held_as_a_row() -> None:
    c = core()
    c.submit([send("a", send_at=T0 + HOUR)], T0)
    ex = c.explain("a")
    assert ex is not None and (ex.state, ex.rule, ex.earliest) == ("scheduled", "send_at", T0 + HOUR)


def test_a_snapshot_of_the_core_carries_the_rows() -> None:
    c = core()
    c.submit([send(f"s{i}", send_at=T0 + HOUR + i * 60, origin="transactional") for i in range(30)], T0)
    c.cancel(T0, ids=["s3"])
    state = pickle.loads(pickle.dumps(c.export_state(), protocol=5))
    d = core()
    d.import_state(state)
    assert d.pending == 29 and d.stats().scheduled == 29
    seen: list[Any] = []
    drive(d, T0 + 2 * HOUR, InstantProvider(), start=T0, outcomes=seen)
    sent = {o.send_id: o.at for o in seen if o.status is Status.SENT}
    assert set(sent) == {f"s{i}" for i in range(30)} - {"s3"}
    assert all(sent[f"s{i}"] >= T0 + HOUR + i * 60 for i in range(30) if i != 3)


def test_a_send_with_a_local_time_or_past_due_is_not_held_as_a_row() -> None:
    c = core()
    c.submit([send("now", origin="transactional"), send("loc", local_send_at="2027-01-14T10:00")], T0)
    assert c._rows.find("now") == -1 and "now" in c.ledger.pending  # due now: an object in the wheel
    assert c._rows.find("loc") >= 0 and "loc" not in c.ledger.pending  # a future local time: a row (map blob)
    assert c._rows.send_of(c._rows.find("loc")).local_send_at == "2027-01-14T10:00"


def test_origins_are_held_by_index() -> None:
    rows = PendingRows()
    for i, o in enumerate(Origin):
        s = Send(id=f"o{i}", recipient="r", channel="sms", to="+33612345678", origin=o, send_at=T0 + HOUR)
        assert rows.send_of(rows.add(s, T0 + HOUR, 0, None)).origin is o
    assert rows.state[0] == LIVE


def test_a_campaign_held_overnight_by_quiet_hours_waits_as_rows_and_leaves_in_the_morning() -> None:
    """Deferred past the current slot, a send that never left goes back to the store (with its rule for explain)."""
    c = core()
    night = at(PARIS, 2027, 1, 13, 23, 0)
    sends = [send(f"n{i}", origin="campaign", body="Sale: 30% off tonight only") for i in range(200)]
    c.submit(sends, night)
    c.advance(night)
    deferred = [o for o in c.drain_outcomes() if o.status is Status.DEFERRED]
    assert len(deferred) == 200 and c._rows.live == 200 and not c.ledger.pending
    assert c.stats().scheduled == 200 and c.pending == 200
    ex = c.explain("n7")
    assert ex is not None and ex.state == "scheduled" and ex.rule == "quiet_hours"
    assert ex.earliest == next(o.until for o in deferred if o.send_id == "n7")
    assert c._pending["n7"].hold == "quiet_hours"
    seen: list[Any] = []
    drive(c, night + 18 * HOUR, InstantProvider(), start=night, outcomes=seen)
    sent = {o.send_id: o.at for o in seen if o.status is Status.SENT}
    assert set(sent) == {s.id for s in sends}
    until = {o.send_id: o.until for o in deferred}
    assert all(sent[k] >= until[k] for k in sent)
    assert all(at(PARIS, 2027, 1, 14, 8, 0) <= t for t in sent.values())
