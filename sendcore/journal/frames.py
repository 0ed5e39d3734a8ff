"""What the journal records: one frame per input the core receives, in the order it received them.

The core is deterministic in its inputs (times are passed in, jitter is
hashed), so replaying these frames into a core built with the same settings
rebuilds exactly the state the live one had: pending sends, history,
suppression, error segment, dedup ids, retry counts, route pushback.

Frames are msgspec structs encoded as MessagePack arrays (``array_like``),
tagged by a one-letter code so a frame costs a few bytes beyond its data.
"""

from __future__ import annotations

from typing import Optional, Union

import msgspec

from ..provider import ProviderSpec
from ..send import Accepted, InvalidResult, PermanentFailure, RateLimited, Send, TemporaryFailure

__all__ = [
    "Advance", "Cancel", "Delivery", "Frame", "Record", "RecordError", "Requeue", "SegmentHeader",
    "SnapshotHeader", "Submit", "Suppress", "Unsuppress", "decode_frame", "encode_frame",
]

AnyResult = Union[Accepted, TemporaryFailure, PermanentFailure, RateLimited, InvalidResult]


class Submit(msgspec.Struct, tag="s", array_like=True, gc=False):
    """``Core.accept``: the valid sends of one submit, normalised, with their due instants."""

    now: float
    sends: list[Send]
    dues: list[float]
    skip: list[int]
    rejected: int


class Cancel(msgspec.Struct, tag="c", array_like=True, gc=False):
    """``Core.cancel`` by ids, recipient and/or origin id."""

    now: float
    ids: Optional[list[str]]
    recipient: Optional[str]
    origin_id: Optional[str]


class Advance(msgspec.Struct, tag="a", array_like=True, gc=False):
    """``Core.advance``: time moved to ``now``."""

    now: float


class Record(msgspec.Struct, tag="r", array_like=True, gc=False):
    """``Core.record``: a provider's answer to batch ``batch``; ``check`` is a CRC of its send ids."""

    now: float
    batch: int
    check: int
    results: list[AnyResult]


class RecordError(msgspec.Struct, tag="e", array_like=True, gc=False):
    """``Core.record_error``: the provider call for batch ``batch`` failed as a whole."""

    now: float
    batch: int
    check: int
    error: str


class Suppress(msgspec.Struct, tag="p", array_like=True, gc=False):
    """``Core.suppress``."""

    now: float
    channel: str
    address: str
    scope: str


class Unsuppress(msgspec.Struct, tag="u", array_like=True, gc=False):
    """``Core.unsuppress``."""

    now: float
    channel: str
    address: str


class Delivery(msgspec.Struct, tag="d", array_like=True, gc=False):
    """``Core.delivery``: one delivery report, as the provider's parser read it."""

    now: float
    send_id: str
    delivered: bool
    detail: str
    provider: str = ""
    provider_id: str = ""
    code: str = ""
    temporary: bool = False
    suppress: Union[str, None] = None
    retry_after: Union[float, None] = None


class Requeue(msgspec.Struct, tag="q", array_like=True, gc=False):
    """``Core.requeue_in_flight``: recovery put unanswered batches back in their routes."""

    now: float


Frame = Union[Submit, Cancel, Advance, Record, RecordError, Suppress, Unsuppress, Delivery, Requeue]


class SegmentHeader(msgspec.Struct, kw_only=True):
    """The header of one segment file: where it sits in the journal and what wrote it.

    ``settings`` (the Settings as JSON) and ``providers`` are those of the
    engine that wrote the segment; replay builds its core with them, so a
    restart with changed settings still replays exactly.
    """

    number: int
    first_seq: int
    created: float
    settings: bytes
    providers: list[ProviderSpec]
    sendcore: str = ""


class SnapshotHeader(msgspec.Struct, kw_only=True):
    """The header of a snapshot: the state after every frame of the segments before ``next_segment``."""

    next_segment: int
    last_seq: int
    created: float
    settings: bytes
    providers: list[ProviderSpec]
    pending: int
    payload_bytes: int
    payload_crc: int
    sendcore: str = ""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Frame)


def encode_frame(frame: Frame) -> bytes:
    """MessagePack bytes of ``frame``."""
    return _encoder.encode(frame)


def decode_frame(data: bytes) -> Frame:
    """The frame in ``data``; raises ``msgspec.DecodeError``/``ValidationError`` if it is not one."""
    return _decoder.decode(data)
