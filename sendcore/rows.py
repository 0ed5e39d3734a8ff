"""The compact pending store: sends that wait beyond the current 64 s slot, held as rows of columns.

Most pending sends wait hours or days, untouched until their time comes. Held
as a ``Send`` plus an ``Entry`` (and their strings and dict slots) each costs
about 600 bytes; here each is one row, about 150:

==========  ==============  ================================================
column      type            holds
==========  ==============  ================================================
blob        list of bytes   the send, MessagePack, without its body (~95 B)
due         float64         the instant it is held until
prio        int8            its priority
body        uint32          its body, interned: one copy per distinct body
locale      uint32          its ``Locale``, interned
idh         uint32          CRC-32 of its id (the id index's key)
rec, org    uint32          CRC-32 of recipient, origin_id (0: free / none)
state       uint8           FREE, FAR, NEAR, GONE_FAR, GONE_NEAR (below)
==========  ==============  ================================================

The blob is a positional array ``[id, recipient, channel, to, origin,
origin_id, send_at, expires_at]`` when the send sets no rarer field (the common
case), or the ``Send``'s own MessagePack map otherwise; its first byte tells
them apart. Decoding either gives back a ``Send`` equal to the one accepted.

Where a row waits
-----------------
Rows wait in far buckets of their own, one 4-byte row number each, keyed like
the wheel's far level by ``floor(due / SPAN)``. When the clock enters a slot,
``cascade`` hands that bucket's rows to the timing wheel as bare row numbers
(only the sends of the current 64 s are ever there as ints); when the wheel
pops a row number, ``pop`` decodes the send and frees the row. Worked example,
clock at t = 1000.0 (slot 15 covers [960, 1024)):

    add(due=1030.0)   -> row 0 in bucket 16 (FAR)
    add(due=5000.0)   -> row 1 in bucket 78 (FAR)
    cascade(1024.0)   -> row 0 to the wheel as the int 0 (NEAR); bucket 78 waits
    wheel pops 0 at 1030.0 -> pop(0): the Send, its due and locale; row 0 FREE

A cancel takes a row out early (``take``): the send is decoded, the row's
blob and index entry dropped, and the row is GONE until whoever holds its
number lets go (a far bucket at cascade or compaction, the wheel when it
pops it), so a number still held never names another send.

Indexes
-------
By id: open addressing with linear probing over two uint32 arrays (the id's
CRC-32 and the row), kept at most 60% full; every hit is checked against the
decoded id, so hash collisions cost a decode, never a wrong answer. By
recipient and origin id: their CRC-32 columns, scanned at C speed with
``bytes.find`` (about 10 ms per 10M rows), each hit checked the same way.

Complexity: add, pop, take and ``find`` O(1) amortised (growing the id index
rebuilds it, O(n) once per doubling); ``cascade`` O(k) for the k rows moved;
``of_recipient``/``of_origin`` O(n) at C speed plus O(k) decodes.
"""

from __future__ import annotations

import heapq
import zlib
from array import array
from typing import Any, Iterator, Optional

import msgspec

from .locale_types import Locale
from .send import Origin, Send
from .wheel import SPAN

__all__ = ["PendingRows"]

# Row states.
FREE = 0  # unused, on the free list
FAR = 1  # waiting in a far bucket of this store
NEAR = 2  # handed to the wheel as its row number
GONE_FAR = 3  # taken out early; a far bucket still holds the number
GONE_NEAR = 4  # taken out early; the wheel still holds the number

_EMPTY, _DELETED = 0, 1  # id index keys that are no hash (a hash of 0 or 1 is stored as 2 or 3)
_ARRAY8 = 0x98  # MessagePack fixarray of 8: the positional blob

_ENC = msgspec.msgpack.Encoder()
_DEC_ANY = msgspec.msgpack.Decoder()
_DEC_SEND = msgspec.msgpack.Decoder(Send)
_ORIGINS = tuple(Origin)
_ORIGIN_INDEX = {o: i for i, o in enumerate(_ORIGINS)}
_force = msgspec.structs.force_setattr
_replace = msgspec.structs.replace


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def _crc_of_query(text: str) -> int:
    """``_crc`` of text a caller looks for, which may hold a lone surrogate no held send can carry (-1 then)."""
    try:
        return zlib.crc32(text.encode())
    except UnicodeEncodeError:
        return -1


def _key(h: int) -> int:
    return h if h > 1 else h + 2


class PendingRows:
    """Sends waiting beyond the current 64 s slot, as columns. See the module docstring for the layout.

    The core adds a send here when its due instant lies past the slot the
    clock is in (``holds``), calls ``cascade`` before popping the wheel, and
    ``pop`` for every row number the wheel gives back. ``live`` counts the
    sends held (FAR or NEAR).
    """

    def __init__(self) -> None:
        self.blob: list[Optional[bytes]] = []
        self.due = array("d")
        self.prio = array("b")
        self.body = array("I")
        self.locale = array("I")
        self.idh = array("I")
        self.rec = array("I")
        self.org = array("I")
        self.state = array("B")
        self.free: list[int] = []
        self.live = 0
        self.gone_far = 0
        #: Row numbers the wheel holds (NEAR and GONE_NEAR): the core looks for ints in what it pops only then.
        self.near = 0
        # Far buckets: slot -> row numbers, and a heap of their slots.
        self.far: dict[int, array] = {}
        self.far_keys: list[int] = []
        #: The slot the clock is in as of the last cascade; rows are never added at or before it.
        self.slot = -(2**62)
        # Interned bodies (0 is the empty body) with their reference counts; interned locales (0 is None).
        self.bodies: dict[str, int] = {}
        self.body_text: list[str] = [""]
        self.body_refs = array("q", [0])
        self.body_free: list[int] = []
        self.locales: dict[Locale, int] = {}
        self.locale_list: list[Optional[Locale]] = [None]
        # The id index.
        self.keys = array("I", bytes(4 * 1024))
        self.vals = array("i", bytes(4 * 1024))
        self.mask = 1023
        self.used = 0  # slots holding a key or a deleted marker

    def __len__(self) -> int:
        """Sends held (waiting in a far bucket or handed to the wheel)."""
        return self.live

    def holds(self, due: float, now: float) -> bool:
        """True if a send due at ``due`` belongs here: past the 64 s slot the clock (``now``) is in."""
        slot = int(due // SPAN)
        return slot > self.slot and slot > now // SPAN

    # ------------------------------------------------------------------ rows

    def add(self, s: Send, due: float, prio: int, locale: Optional[Locale]) -> int:
        """Hold ``s`` until ``due``; return its row, or -1 if it cannot be held as a row (it stays an object).

        ``due`` must satisfy ``holds``. Runtime complexity: O(1) amortised.
        """
        sa, ex = s.send_at, s.expires_at
        if (s.priority is None and s.timezone is None and s.carrier is None and s.provider is None
                and s.sender is None and s.local_send_at is None and s.metadata is None and not s.tags
                and s.smart_sending is True and s.quiet_hours is True
                and (sa is None or type(sa) is float) and (ex is None or type(ex) is float)):
            blob = _ENC.encode((s.id, s.recipient, s.channel, s.to, _ORIGIN_INDEX[s.origin], s.origin_id, sa, ex))
        else:
            try:
                blob = _ENC.encode(_replace(s, body="") if s.body else s)
                if s.metadata is not None:
                    back = _DEC_SEND.decode(blob)
                    if back.metadata != s.metadata:  # a tuple would come back a list: keep the object
                        return -1
            except (TypeError, ValueError, OverflowError, msgspec.MsgspecError):
                return -1
        text = s.body
        if text:
            bid = self.bodies.get(text)
            if bid is None:
                if self.body_free:
                    bid = self.body_free.pop()
                    self.body_text[bid] = text
                else:
                    bid = len(self.body_text)
                    self.body_text.append(text)
                    self.body_refs.append(0)
                self.bodies[text] = bid
            self.body_refs[bid] += 1
        else:
            bid = 0
        if locale is None:
            lid = 0
        else:
            lid = self.locales.get(locale, -1)
            if lid < 0:
                lid = self.locales[locale] = len(self.locale_list)
                self.locale_list.append(locale)
        if (self.used + 1) * 5 > (self.mask + 1) * 3:
            self._rebuild()
        h = _crc(s.id)
        rh = _crc(s.recipient) or 1
        oh = (_crc(s.origin_id) or 1) if s.origin_id else 0
        free = self.free
        if free:
            row = free.pop()
            self.blob[row] = blob
            self.due[row] = due
            self.prio[row] = prio
            self.body[row] = bid
            self.locale[row] = lid
            self.idh[row] = h
            self.rec[row] = rh
            self.org[row] = oh
            self.state[row] = FAR
        else:
            row = len(self.blob)
            self.blob.append(blob)
            self.due.append(due)
            self.prio.append(prio)
            self.body.append(bid)
            self.locale.append(lid)
            self.idh.append(h)
            self.rec.append(rh)
            self.org.append(oh)
            self.state.append(FAR)
        self._index(h, row)
        self.live += 1
        slot = int(due // SPAN)
        bucket = self.far.get(slot)
        if bucket is None:
            self.far[slot] = array("i", (row,))
            heapq.heappush(self.far_keys, slot)
        else:
            bucket.append(row)
        return row

    def send_of(self, row: int) -> Send:
        """The send held in ``row`` (decoded afresh; the row is unchanged)."""
        blob = self.blob[row]
        assert blob is not None, f"row {row} holds no send"
        text = self.body_text[self.body[row]]
        if blob[0] == _ARRAY8:
            sid, rec, ch, to, o, oid, sa, ex = _DEC_ANY.decode(blob)
            return Send(id=sid, recipient=rec, channel=ch, to=to, origin=_ORIGINS[o], origin_id=oid,
                        send_at=sa, expires_at=ex, body=text)
        s = _DEC_SEND.decode(blob)
        if text:
            _force(s, "body", text)
        return s

    def id_of(self, row: int) -> str:
        """The id of the send in ``row``."""
        blob = self.blob[row]
        assert blob is not None, f"row {row} holds no send"
        return _DEC_ANY.decode(blob)[0] if blob[0] == _ARRAY8 else _DEC_SEND.decode(blob).id

    def locale_of(self, row: int) -> Optional[Locale]:
        """The locale the send in ``row`` was accepted with."""
        return self.locale_list[self.locale[row]]

    def take(self, row: int) -> tuple[Send, float, int, Optional[Locale]]:
        """Take the send out of ``row``: (send, due, prio, locale). The row is GONE until its holder lets go."""
        s = self.send_of(row)
        st = self.state[row]
        self._empty(row)
        if st == FAR:
            self.state[row] = GONE_FAR
            self.gone_far += 1
        else:
            self.state[row] = GONE_NEAR
        return s, self.due[row], self.prio[row], self.locale_list[self.locale[row]]

    def pop(self, row: int) -> Optional[tuple[Send, float, int, Optional[Locale]]]:
        """The wheel let go of ``row``: its (send, due, prio, locale), or None if it was taken out before. Frees the row."""
        self.near -= 1
        if self.state[row] == GONE_NEAR:
            self._release(row)
            return None
        s = self.send_of(row)
        self._empty(row)
        self._release(row)
        return s, self.due[row], self.prio[row], self.locale_list[self.locale[row]]

    def _empty(self, row: int) -> None:
        """Forget the send in ``row`` (blob, body reference, index entry); the caller sets its state."""
        self.blob[row] = None
        bid = self.body[row]
        if bid:
            refs = self.body_refs[bid] - 1
            self.body_refs[bid] = refs
            if refs == 0:
                del self.bodies[self.body_text[bid]]
                self.body_text[bid] = ""
                self.body_free.append(bid)
        self._unindex(self.idh[row], row)
        self.rec[row] = 0
        self.org[row] = 0
        self.live -= 1

    def _release(self, row: int) -> None:
        self.state[row] = FREE
        self.free.append(row)

    # ------------------------------------------------------------------ time

    def next_due(self) -> Optional[float]:
        """The start of the earliest slot with rows, or None. O(1)."""
        return self.far_keys[0] * SPAN if self.far_keys else None

    def cascade(self, now: float, wheel: Any) -> int:
        """Hand every row of the slots up to the one ``now`` is in to ``wheel`` (``insert_near``); return how many.

        Rows taken out while they waited are freed instead.
        """
        slot = int(now // SPAN)
        if slot <= self.slot and not (self.far_keys and self.far_keys[0] <= slot):
            return 0
        if slot > self.slot:
            self.slot = slot
        moved = 0
        far, keys, state, due, prio = self.far, self.far_keys, self.state, self.due, self.prio
        insert = wheel.insert_near
        while keys and keys[0] <= slot:
            for row in far.pop(heapq.heappop(keys)):
                st = state[row]
                if st == FAR:
                    state[row] = NEAR
                    insert(prio[row], due[row], row)
                    moved += 1
                    self.near += 1
                elif st == GONE_FAR:
                    self.gone_far -= 1
                    self._release(row)
        return moved

    def compact(self) -> int:
        """Drop the rows taken out from the far buckets once they outnumber the live ones (and 10,000); return how many."""
        if self.gone_far <= 10_000 or self.gone_far * 2 <= self.live:
            return 0
        dropped = 0
        state = self.state
        for slot in list(self.far):
            bucket = self.far[slot]
            kept = array("i", (r for r in bucket if state[r] != GONE_FAR))
            for r in bucket:
                if state[r] == GONE_FAR:
                    self._release(r)
                    dropped += 1
            if kept:
                self.far[slot] = kept
            else:
                del self.far[slot]
        self.far_keys = list(self.far)
        heapq.heapify(self.far_keys)
        self.gone_far = 0
        return dropped

    # ------------------------------------------------------------------ lookups

    def find(self, send_id: str) -> int:
        """The row holding the send ``send_id``, or -1. O(1) expected (plus a decode per hash match)."""
        h = _crc_of_query(send_id)
        if h < 0:
            return -1
        k = _key(h)
        keys, vals, mask = self.keys, self.vals, self.mask
        i = k & mask
        while True:
            got = keys[i]
            if got == _EMPTY:
                return -1
            if got == k:
                row = vals[i]
                if self.id_of(row) == send_id:
                    return row
            i = (i + 1) & mask

    def __contains__(self, send_id: object) -> bool:
        """True if a send with this id is held."""
        return type(send_id) is str and self.live > 0 and self.find(send_id) >= 0

    def of_recipient(self, recipient: str) -> list[int]:
        """The rows holding sends to ``recipient``, in row order."""
        h = _crc_of_query(recipient)
        if h < 0:
            return []
        rows = self._scan(self.rec, h or 1)
        return [r for r in rows if self.send_of(r).recipient == recipient]

    def of_origin(self, origin_id: str) -> list[int]:
        """The rows holding sends of ``origin_id``, in row order."""
        h = _crc_of_query(origin_id) if origin_id else -1
        if h < 0:
            return []
        rows = self._scan(self.org, h or 1)
        return [r for r in rows if self.send_of(r).origin_id == origin_id]

    @staticmethod
    def _scan(column: array, h: int) -> list[int]:
        if not column:
            return []
        buf = column.tobytes()
        pat = array("I", (h,)).tobytes()
        out = []
        i = buf.find(pat)
        while i >= 0:
            if i % 4 == 0:
                out.append(i // 4)
                i = buf.find(pat, i + 4)
            else:
                i = buf.find(pat, i + 1)
        return out

    def rows(self) -> Iterator[int]:
        """Every row holding a send, in row order (for explain's compatibility views and tests)."""
        state = self.state
        for row in range(len(state)):
            if state[row] in (FAR, NEAR):
                yield row

    # ------------------------------------------------------------------ the id index

    def _index(self, h: int, row: int) -> None:
        k = _key(h)
        keys, mask = self.keys, self.mask
        i = k & mask
        while keys[i] > _DELETED:
            i = (i + 1) & mask
        if keys[i] == _EMPTY:
            self.used += 1
        keys[i] = k
        self.vals[i] = row

    def _unindex(self, h: int, row: int) -> None:
        k = _key(h)
        keys, vals, mask = self.keys, self.vals, self.mask
        i = k & mask
        while True:
            got = keys[i]
            if got == _EMPTY:
                raise AssertionError(f"row {row} is not in the id index")
            if got == k and vals[i] == row:
                keys[i] = _DELETED
                return
            i = (i + 1) & mask

    def _rebuild(self) -> None:
        """Grow (or clean) the id index: twice the slots when it is over 30% live, else the same number."""
        size = self.mask + 1
        if (self.live + 1) * 10 > size * 3:
            size *= 2
        keys = array("I", bytes(4 * size))
        vals = array("i", bytes(4 * size))
        mask = size - 1
        state, idh = self.state, self.idh
        for row in range(len(state)):
            st = state[row]
            if st == FAR or st == NEAR:
                k = _key(idh[row])
                i = k & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i] = k
                vals[i] = row
        self.keys, self.vals, self.mask = keys, vals, mask
        self.used = self.live

    def bytes_held(self) -> int:
        """Bytes of the columns, the id index and the blobs (for reports; not counting list slots' over-allocation)."""
        cols = sum(a.itemsize * len(a) for a in (self.due, self.prio, self.body, self.locale, self.idh,
                                                  self.rec, self.org, self.state, self.keys, self.vals))
        return cols + 8 * len(self.blob) + sum(33 + len(b) for b in self.blob if b is not None)
