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
hold        uint8           the rule that deferred it there, if one did (for explain)
body        uint32          its body, interned: one copy per distinct body
locale      uint32          its ``Locale``, interned
at          uint32          where the id index holds it (so removal probes nothing)
rec, org    uint32          CRC-32 of recipient, origin_id (0: free / none)
rprev       int32           the previous row of its recipient chain (-1: none)
rnext       int32           the next row of its recipient chain (-1: none)
state       uint8           FREE, LIVE, or GONE (below)
==========  ==============  ================================================

The blob is a positional array ``[id, recipient, to, origin_id, send_at,
expires_at, template]``: the fields that differ from send to send, and the
number of a *template*, a ``Send`` holding the ones that take few distinct
values across millions of sends (channel, origin, priority, tags, timezone,
carrier, provider, sender, local send time, the two switches). A campaign
send naming its zone and local time so costs about 60 bytes, not the 170 of
its MessagePack map, and decodes as one C-level ``structs.replace`` of its
template. A send with metadata or datetimes, or once the table holds 65,536
templates one needing a new one, is held as the ``Send``'s own map. The first
byte tells them apart (a store written before templates may also hold
8-field arrays, still read); decoding any gives back a ``Send`` equal to the
one accepted.

Where a row waits
-----------------
Rows wait in far buckets of 4-byte row numbers, keyed like the wheel's far
level by ``floor(due / SPAN)`` (64 s). When the clock enters a slot, that
bucket's rows are sorted by due instant (in C: ``sort`` with the due column
as key) and appended to the *current* list, from which ``pop_due`` takes the
rows due by a binary search; ``pop_many`` decodes their sends and frees the
rows. A row leaves exactly at its due instant or later, never before.
Worked example, clock at t = 1000.0 (slot 15 covers [960, 1024)):

    add(due=1030.0)   -> row 0 in bucket 16
    add(due=5000.0)   -> row 1 in bucket 78
    add(due=1025.5)   -> row 2 in bucket 16
    next_due()        -> 1024.0 (bucket 16 opens)
    pop_due(1024.0)   -> [] ; bucket 16 becomes the current list [2, 0]
    next_due()        -> 1025.5
    pop_due(1030.0)   -> [2, 0] ; pop_many: their Sends, rows 0 and 2 free

A cancel takes a row out early (``take``): the send is decoded and the row's
blob and index entry dropped; the row is GONE until the list holding its
number lets go of it (at the slot's opening, at its pop, or at compaction),
so a number still held never names another send.

Indexes
-------
By id: open addressing with linear probing over two uint32 arrays (the id's
CRC-32 and the row), kept at most 60% full; every hit is checked against the
decoded id, so hash collisions cost a decode, never a wrong answer. By
recipient: buckets keyed by the recipient's CRC-32 (one bucket per two held
rows at most, 4 bytes each), each the head of a doubly linked chain of its
rows (``rprev``/``rnext``), so a cancel by recipient (every unsubscribe) walks
that recipient's rows and the few others sharing its bucket, and a row leaves
its chain in O(1). By origin id (a campaign's cancel, rare and bulk):
the CRC-32 column, scanned at C speed with ``bytes.find``. Every hit of either
is checked against the decoded send.

Complexity: add, take and ``find`` O(1) amortised (growing the id index
rebuilds it, O(n) once per doubling); opening a slot O(k log k) in C for its
k rows; ``pop_due`` O(log k) plus O(1) per row; ``of_recipient`` O(rows of
its bucket) plus a decode per CRC-32 match; ``of_origin`` O(n) at C speed plus a decode
per hit.
"""

from __future__ import annotations

import bisect
import heapq
import operator
import zlib
from array import array
from typing import Any, Iterator, Optional

import msgspec

from .locale_types import Locale
from .send import Origin, Reason, Send
from .wheel import SPAN

__all__ = ["PendingRows"]

# Row states.
FREE = 0  # unused, on the free list
LIVE = 1  # holds a pending send, in a far bucket or the current list
GONE = 2  # taken out early; a far bucket or the current list still holds its number

_EMPTY, _DELETED = 0, 1  # id index keys that are no hash (a hash of 0 or 1 is stored as 2 or 3)
_ARRAY8 = 0x98  # MessagePack fixarray of 8: the positional blob of stores written before templates (read only)
_ARRAY7 = 0x97  # MessagePack fixarray of 7: the templated blob
_MAX_TEMPLATES = 65_536  # distinct templates; past it, a send needing a new one is held as its MessagePack map

_ENC = msgspec.msgpack.Encoder()
_DEC_ANY = msgspec.msgpack.Decoder()
_DEC_SEND = msgspec.msgpack.Decoder(Send)
_ORIGINS = tuple(Origin)
_force = msgspec.structs.force_setattr
# What a template holds: the fields that take few distinct values across millions of sends.
_shape = operator.attrgetter("channel", "origin", "priority", "tags", "timezone", "carrier", "provider", "sender",
                             "local_send_at", "smart_sending", "quiet_hours")
# What may hold a row back (explain's rule): none, or the reason a policy deferred it for.
_HOLDS: tuple[Optional[str], ...] = (None, *(r.value for r in Reason))
_HOLD_CODE = {h: i for i, h in enumerate(_HOLDS)}
_replace = msgspec.structs.replace


def _crc_of_query(text: str) -> int:
    """The CRC-32 of text a caller looks for, which may hold a lone surrogate no held send can carry (-1 then)."""
    try:
        return zlib.crc32(text.encode())
    except UnicodeEncodeError:
        return -1


def _key(h: int) -> int:
    return h if h > 1 else h + 2


class PendingRows:
    """Sends waiting beyond the current 64 s slot, as columns. See the module docstring for the layout.

    The core adds a send here when its due instant lies past the slot the
    clock is in (``holds``); ``pop_due`` and ``pop_many`` give them back when
    due. ``live`` counts the sends held.
    """

    def __init__(self) -> None:
        self.blob: list[Optional[bytes]] = []
        self.due = array("d")
        self.prio = array("b")
        self.hold = array("B")
        self.body = array("I")
        self.locale = array("I")
        self.at = array("I")
        self.rec = array("I")
        self.org = array("I")
        self.state = array("B")
        self.rprev = array("i")
        self.rnext = array("i")
        self.free: list[int] = []
        self.live = 0
        self.gone = 0
        # Far buckets: slot -> row numbers, and a heap of their slots.
        self.far: dict[int, array] = {}
        self.far_keys: list[int] = []
        # The rows of the slots opened so far, by due instant; those before ``pos`` have left.
        self.current = array("i")
        self.pos = 0
        #: The last slot opened; rows are never added at or before it.
        self.slot = -(2**62)
        # Interned bodies (0 is the empty body) with their reference counts; interned locales (0 is None).
        self.bodies: dict[str, int] = {}
        self.body_text: list[str] = [""]
        self.body_refs = array("q", [0])
        self.body_free: list[int] = []
        self.locales: dict[Locale, int] = {}
        self.locale_list: list[Optional[Locale]] = [None]
        # Templates: a Send with only its low-cardinality fields set, by those fields (see the module docstring).
        self.template_of: dict[tuple[Any, ...], int] = {}
        self.templates: list[Send] = []
        # The id index.
        self.keys = array("I", bytes(4 * 1024))
        self.vals = array("i", bytes(4 * 1024))
        self.mask = 1023
        self.used = 0  # slots holding a key or a deleted marker
        # The recipient index: bucket (recipient key & rmask) -> the head row of its chain (-1: none).
        self.rheads = array("i", [-1]) * 1024
        self.rmask = 1023

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A store pickled by an earlier version: no templates yet, and no recipient index (built from the rows).
        self.__dict__.update(state)
        if "templates" not in state:
            self.template_of, self.templates = {}, []
        if "rheads" not in state:
            for old in ("rkeys", "rvals", "rused", "rchains"):
                self.__dict__.pop(old, None)
            n = len(self.state)
            self.rprev = array("i", [-1]) * n
            self.rnext = array("i", [-1]) * n
            self.rheads = array("i", [-1]) * 1024
            self.rmask = 1023
            for row in range(n):
                if self.state[row] == LIVE:
                    self.rec[row] = _key(zlib.crc32(self.send_of(row).recipient.encode()))
                    self._link(row, self.rec[row])

    def __len__(self) -> int:
        """Sends held."""
        return self.live

    def holds(self, due: float, now: float) -> bool:
        """True if a send due at ``due`` belongs here: past the 64 s slot the clock (``now``) is in."""
        slot = int(due // SPAN)
        return slot > self.slot and slot > now // SPAN

    # ------------------------------------------------------------------ rows

    def add(self, s: Send, due: float, prio: int, locale: Optional[Locale], hold: Optional[str] = None) -> int:
        """Hold ``s`` until ``due``; return its row, or -1 if it cannot be held as a row (it stays an object).

        ``due`` must satisfy ``holds``. Runtime complexity: O(1) amortised.
        """
        sa, ex = s.send_at, s.expires_at
        if (s.metadata is None and (sa is None or type(sa) is float) and (ex is None or type(ex) is float)
                and (t := self._template(s)) >= 0):
            blob = _ENC.encode((s.id, s.recipient, s.to, s.origin_id, sa, ex, t))
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
        h = zlib.crc32(s.id.encode())
        rh = _key(zlib.crc32(s.recipient.encode()))
        oh = (zlib.crc32(s.origin_id.encode()) or 1) if s.origin_id else 0
        # The id index (see _index, inlined: this is the path every held send takes).
        k = h if h > 1 else h + 2
        keys, mask = self.keys, self.mask
        i = k & mask
        while keys[i] > _DELETED:
            i = (i + 1) & mask
        if keys[i] == _EMPTY:
            self.used += 1
        keys[i] = k
        free = self.free
        if free:
            row = free.pop()
            self.blob[row] = blob
            self.due[row] = due
            self.prio[row] = prio
            self.hold[row] = _HOLD_CODE[hold]
            self.body[row] = bid
            self.locale[row] = lid
            self.at[row] = i
            self.rec[row] = rh
            self.org[row] = oh
            self.state[row] = LIVE
        else:
            self.rprev.append(-1)
            self.rnext.append(-1)
            row = len(self.blob)
            self.blob.append(blob)
            self.due.append(due)
            self.prio.append(prio)
            self.hold.append(_HOLD_CODE[hold])
            self.body.append(bid)
            self.locale.append(lid)
            self.at.append(i)
            self.rec.append(rh)
            self.org.append(oh)
            self.state.append(LIVE)
        self.vals[i] = row
        self._link(row, rh)
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
        if blob[0] == _ARRAY7:
            sid, rec, to, oid, sa, ex, t = _DEC_ANY.decode(blob)
            return _replace(self.templates[t], id=sid, recipient=rec, to=to, origin_id=oid, send_at=sa,
                            expires_at=ex, body=text)
        s = _DEC_SEND.decode(blob)
        if text:
            _force(s, "body", text)
        return s

    def _template(self, s: Send) -> int:
        """The template of ``s``'s low-cardinality fields, made on first use; -1 if it cannot have one (its
        fields are not what a Send's types say, or the table is full and it needs a new one)."""
        key = _shape(s)
        try:
            t = self.template_of.get(key)
        except TypeError:  # an unhashable value where a str belongs
            return -1
        if t is not None:
            return t
        ch, _, pr, tags, *strs, smart, quiet = key
        if (type(ch) is not str or not (pr is None or type(pr) is int) or type(tags) is not tuple
                or any(type(x) is not str for x in tags) or any(not (x is None or type(x) is str) for x in strs)
                or type(smart) is not bool or type(quiet) is not bool or len(self.templates) >= _MAX_TEMPLATES):
            return -1
        t = self.template_of[key] = len(self.templates)
        self.templates.append(_replace(s, id="", recipient="", to="", origin_id="", send_at=None, expires_at=None,
                                       body=""))
        return t

    def id_of(self, row: int) -> str:
        """The id of the send in ``row``."""
        blob = self.blob[row]
        assert blob is not None, f"row {row} holds no send"
        return _DEC_ANY.decode(blob)[0] if blob[0] in (_ARRAY7, _ARRAY8) else _DEC_SEND.decode(blob).id

    def hold_of(self, row: int) -> Optional[str]:
        """The rule that deferred the send in ``row`` here, or None (it was submitted due then)."""
        return _HOLDS[self.hold[row]]

    def locale_of(self, row: int) -> Optional[Locale]:
        """The locale the send in ``row`` was accepted with."""
        return self.locale_list[self.locale[row]]

    def take(self, row: int) -> tuple[Send, float, int, Optional[Locale]]:
        """Take the send out of ``row``: (send, due, prio, locale). The row is GONE until its list lets go."""
        s = self.send_of(row)
        self._empty(row)
        self.state[row] = GONE
        self.gone += 1
        return s, self.due[row], self.prio[row], self.locale_list[self.locale[row]]

    def pop_many(self, popped: Any, entry: Any, add: Any) -> list[Any]:
        """The rows ``popped`` (from ``pop_due``) as ``entry(send=, due=, prio=, locale=)`` of their sends, each
        passed to ``add``; rows taken out before are skipped. Frees every row. O(len(popped)).
        """
        out: list[Any] = []
        blobs, body, bodies, text_of, refs, body_free = (self.blob, self.body, self.bodies, self.body_text,
                                                          self.body_refs, self.body_free)
        state, keys, at, rec, org, due, prio = self.state, self.keys, self.at, self.rec, self.org, self.due, self.prio
        hold, holds, rprev, rnext, rheads, rmask = self.hold, _HOLDS, self.rprev, self.rnext, self.rheads, self.rmask
        locale, locales, free = self.locale, self.locale_list, self.free
        dec, dec_send, origins, replace, templates = _DEC_ANY.decode, _DEC_SEND.decode, _ORIGINS, _replace, self.templates
        made = 0
        for row in popped:
            if state[row] == GONE:
                state[row] = FREE
                free.append(row)
                self.gone -= 1
                continue
            blob = blobs[row]
            bid = body[row]
            text = text_of[bid]
            first = blob[0]  # type: ignore[index]
            if first == _ARRAY7:
                sid, r, to, oid, sa, ex, t = dec(blob)
                s = replace(templates[t], id=sid, recipient=r, to=to, origin_id=oid, send_at=sa, expires_at=ex,
                            body=text)
            elif first == _ARRAY8:
                sid, r, ch, to, o, oid, sa, ex = dec(blob)
                s = Send(id=sid, recipient=r, channel=ch, to=to, origin=origins[o], origin_id=oid,
                         send_at=sa, expires_at=ex, body=text)
            else:
                s = dec_send(blob)
                if text:
                    _force(s, "body", text)
            if bid:
                n = refs[bid] - 1
                refs[bid] = n
                if n == 0:
                    del bodies[text]
                    text_of[bid] = ""
                    body_free.append(bid)
            blobs[row] = None
            keys[at[row]] = _DELETED
            # Out of its recipient chain (_unlink, inlined).
            p, n = rprev[row], rnext[row]
            if n >= 0:
                rprev[n] = p
            if p >= 0:
                rnext[p] = n
            else:
                rheads[rec[row] & rmask] = n
            rec[row] = 0
            org[row] = 0
            state[row] = FREE
            free.append(row)
            e = entry(send=s, due=due[row], prio=prio[row], locale=locales[locale[row]], hold=holds[hold[row]])
            add(e)
            out.append(e)
            made += 1
        self.live -= made
        return out

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
        self.keys[self.at[row]] = _DELETED
        self._unlink(row)
        self.rec[row] = 0
        self.org[row] = 0
        self.live -= 1

    def _release(self, row: int) -> None:
        self.state[row] = FREE
        self.free.append(row)

    # ------------------------------------------------------------------ time

    def next_due(self) -> Optional[float]:
        """The due instant of the next row of the current list, else the start of the next slot with rows, else None. O(1)."""
        if self.pos < len(self.current):
            return self.due[self.current[self.pos]]
        return self.far_keys[0] * SPAN if self.far_keys else None

    def pop_due(self, now: float, limit: int) -> array:
        """The rows due at or before ``now``, at most ``limit``, by due instant (GONE ones included, for
        ``pop_many`` to free). Opens the slots the clock has entered first."""
        keys = self.far_keys
        if keys and keys[0] <= now // SPAN:
            self._open(now)
        cur, pos = self.current, self.pos
        end = bisect.bisect_right(cur, now, pos, min(len(cur), pos + limit), key=self.due.__getitem__)
        if end == pos:
            return array("i")
        out = cur[pos:end]
        if end == len(cur):
            self.current, self.pos = array("i"), 0
        else:
            self.pos = end
            if end > 65536 and end * 2 > len(cur):  # drop the rows that left from the list's head
                self.current, self.pos = cur[end:], 0
        return out

    def _open(self, now: float) -> None:
        """Move the far buckets of every slot up to the one ``now`` is in to the current list, sorted by due."""
        slot = int(now // SPAN)
        if slot > self.slot:
            self.slot = slot
        far, keys, state = self.far, self.far_keys, self.state
        cur = self.current[self.pos:]
        while keys and keys[0] <= slot:
            bucket = far.pop(heapq.heappop(keys))
            rows = [r for r in bucket if state[r] == LIVE]
            if len(rows) != len(bucket):
                for r in bucket:
                    if state[r] == GONE:
                        self._release(r)
                        self.gone -= 1
            rows.sort(key=self.due.__getitem__)
            if cur and rows and self.due[rows[0]] < self.due[cur[-1]]:
                # A slot opened late (the clock jumped): merge, keeping the list in due order.
                merged = list(cur) + rows
                merged.sort(key=self.due.__getitem__)
                cur = array("i", merged)
            else:
                cur.extend(rows)
        self.current, self.pos = cur, 0

    def compact(self) -> int:
        """Free the rows taken out early once they outnumber the live ones (and 10,000); return how many."""
        if self.gone <= 10_000 or self.gone * 2 <= self.live:
            return 0
        dropped = 0
        state = self.state
        for slot in list(self.far):
            bucket = self.far[slot]
            kept = array("i", (r for r in bucket if state[r] == LIVE))
            if kept:
                self.far[slot] = kept
            else:
                del self.far[slot]
        self.far_keys = list(self.far)
        heapq.heapify(self.far_keys)
        self.current = array("i", (r for r in self.current[self.pos:] if state[r] == LIVE))
        self.pos = 0
        for r in range(len(state)):
            if state[r] == GONE:
                self._release(r)
                dropped += 1
        self.gone = 0
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
        """True if a send with this id is held (``find``, inlined: every submitted id is looked up)."""
        if not self.live or type(send_id) is not str:
            return False
        try:
            h = zlib.crc32(send_id.encode())
        except UnicodeEncodeError:
            return False
        k = h if h > 1 else h + 2
        keys, mask = self.keys, self.mask
        i = k & mask
        while True:
            got = keys[i]
            if got == _EMPTY:
                return False
            if got == k and self.id_of(self.vals[i]) == send_id:
                return True
            i = (i + 1) & mask

    def of_recipient(self, recipient: str) -> list[int]:
        """The rows holding sends to ``recipient``, in row order."""
        h = _crc_of_query(recipient)
        if h < 0:
            return []
        k = _key(h)
        rows = []
        rec, rnext = self.rec, self.rnext
        row = self.rheads[k & self.rmask]
        while row >= 0:
            if rec[row] == k:
                rows.append(row)
            row = rnext[row]
        rows.sort()
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
            if state[row] == LIVE:
                yield row

    # ------------------------------------------------------------------ the id index

    def _rebuild(self) -> None:
        """Grow (or clean) the id index: twice the slots when it is over 30% live, else the same number.

        Walks the old index, not the rows: O(its slots), which the adds since the last rebuild paid for.
        """
        size = self.mask + 1
        if (self.live + 1) * 10 > size * 3:
            size *= 2
        keys = array("I", bytes(4 * size))
        vals = array("i", bytes(4 * size))
        mask = size - 1
        at = self.at
        for k, row in zip(self.keys, self.vals):
            if k > _DELETED:
                i = k & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i] = k
                vals[i] = row
                at[row] = i
        self.keys, self.vals, self.mask = keys, vals, mask
        self.used = self.live

    # ------------------------------------------------------------------ the recipient index

    def _link(self, row: int, k: int) -> None:
        """Make ``row`` (recipient key ``k``) the head of its bucket's chain. O(1) amortised."""
        if self.live >= 2 * (self.rmask + 1):
            self._regrow()
        b = k & self.rmask
        head = self.rheads[b]
        self.rnext[row] = head
        self.rprev[row] = -1
        if head >= 0:
            self.rprev[head] = row
        self.rheads[b] = row

    def _unlink(self, row: int) -> None:
        """Take ``row`` out of its bucket's chain. O(1)."""
        p, n = self.rprev[row], self.rnext[row]
        if n >= 0:
            self.rprev[n] = p
        if p >= 0:
            self.rnext[p] = n
        else:
            self.rheads[self.rec[row] & self.rmask] = n

    def _regrow(self) -> None:
        """Twice the buckets (about two rows a bucket at most), relinking every held row. O(live), once a doubling."""
        old = self.rheads
        self.rmask = mask = 2 * len(old) - 1
        self.rheads = heads = array("i", [-1]) * (mask + 1)
        rec, rprev, rnext = self.rec, self.rprev, self.rnext
        for row in old:
            while row >= 0:
                after = rnext[row]
                b = rec[row] & mask
                head = heads[b]
                rnext[row] = head
                rprev[row] = -1
                if head >= 0:
                    rprev[head] = row
                heads[b] = row
                row = after

    def bytes_held(self) -> int:
        """Bytes of the columns, the id index and the blobs (for reports; not counting list slots' over-allocation)."""
        cols = sum(a.itemsize * len(a) for a in (self.due, self.prio, self.hold, self.body, self.locale, self.at,
                                                  self.rec, self.org, self.state, self.keys, self.vals,
                                                  self.rprev, self.rnext, self.rheads))
        return cols + 8 * len(self.blob) + sum(33 + len(b) for b in self.blob if b is not None)
