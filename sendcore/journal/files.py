"""The journal's files: segments of checksummed frames, snapshots, and the lock.

Segment ``NNNNNNNN.seg``::

    "SENDCORE JOURNAL" | u32 format | u32 header length | header (MessagePack) | u32 CRC32 of header
    frame* :  u32 length | u64 seq | u32 CRC32 of payload | u32 CRC32 of the 16 bytes before | payload

A frame's own header has a checksum, so a damaged length is told apart from a
frame cut short by a crash. Reading a segment classifies where it stops:

- at the end of the file: clean;
- a frame cut short, or the last frame of the file with a bad payload, or a
  zero-filled tail (also after a frame written only in part, when the file
  was extended but not all its pages reached the disk): *torn*, the crash
  came mid-write; recovery truncates it;
- anything else (a bad checksum with data after it, a sequence gap):
  *corrupt*, and start-up stops with a ``JournalError`` naming file and offset.

Snapshot ``snapshot-NNNNNNNN.snap`` holds the state after every frame of the
segments numbered below NNNNNNNN: the same prefix with magic
"SENDCORE SNAPSHT", then the payload (its length and CRC32 are in the header).
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import msgspec

from ..errors import JournalError
from .frames import SegmentHeader, SnapshotHeader

__all__ = [
    "FORMAT", "FRAME_HEAD", "Scan", "TornHeader", "fsync_dir", "lock", "pack_frame", "read_segment_header",
    "read_snapshot", "scan_segment",
    "segment_files", "segment_name", "snapshot_files", "snapshot_name", "write_prefix",
]

#: The newest file format this code reads and the one it writes.
FORMAT = 1
SEGMENT_MAGIC = b"SENDCORE JOURNAL"
SNAPSHOT_MAGIC = b"SENDCORE SNAPSHT"
_PREFIX = struct.Struct("<II")
_CRC = struct.Struct("<I")
_HEAD = struct.Struct("<QI")  # seq, payload crc (the length comes first, packed apart)
FRAME_HEAD = 20
_SEGMENT = re.compile(r"^(\d{8})\.seg$")
_SNAPSHOT = re.compile(r"^snapshot-(\d{8})\.snap$")

_header_encoder = msgspec.msgpack.Encoder()
_segment_header = msgspec.msgpack.Decoder(SegmentHeader)
_snapshot_header = msgspec.msgpack.Decoder(SnapshotHeader)


def segment_name(number: int) -> str:
    """The file name of segment ``number``."""
    return f"{number:08d}.seg"


def snapshot_name(next_segment: int) -> str:
    """The file name of the snapshot that covers every segment before ``next_segment``."""
    return f"snapshot-{next_segment:08d}.snap"


def _numbered(directory: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    out = []
    for p in directory.iterdir():
        m = pattern.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def segment_files(directory: Path) -> list[tuple[int, Path]]:
    """The segments in ``directory`` by number."""
    return _numbered(directory, _SEGMENT)


def snapshot_files(directory: Path) -> list[tuple[int, Path]]:
    """The snapshots in ``directory`` by the segment number they lead to."""
    return _numbered(directory, _SNAPSHOT)


def pack_frame(seq: int, payload: bytes) -> bytes:
    """One frame: its checksummed header, then the payload."""
    head = struct.pack("<IQI", len(payload), seq, zlib.crc32(payload))
    return head + _CRC.pack(zlib.crc32(head)) + payload


def write_prefix(magic: bytes, header: Union[SegmentHeader, SnapshotHeader]) -> bytes:
    """The magic, format, header and header CRC that open a segment or a snapshot."""
    body = _header_encoder.encode(header)
    return magic + _PREFIX.pack(FORMAT, len(body)) + body + _CRC.pack(zlib.crc32(body))


def _read_prefix(path: Path, data: Union[bytes, memoryview], magic: bytes, what: str) -> tuple[bytes, int]:
    """The header bytes and the offset after the prefix; raise JournalError if it is not a valid one."""
    if len(data) < len(magic) + 8 and bytes(data[: len(magic)]) == magic[: len(data)]:
        raise TornHeader(f"{path}: the {what} header is cut short at offset {len(data)}")
    if len(data) < len(magic) + 8 or bytes(data[: len(magic)]) != magic:
        raise JournalError(f"{path}: not a sendcore {what} (bad magic at offset 0); move it out of the journal directory")
    version, size = _PREFIX.unpack_from(data, len(magic))
    if version > FORMAT:
        raise JournalError(
            f"{path}: written by a newer sendcore (format {version}; this version reads up to {FORMAT}); "
            "upgrade sendcore to open this journal"
        )
    start = len(magic) + 8
    end = start + size
    if len(data) < end + 4:
        raise TornHeader(f"{path}: the {what} header is cut short at offset {len(data)}; "
                           f"the file was never completely written: remove it if it is the newest {what}")
    body = bytes(data[start:end])
    if _CRC.unpack_from(data, end)[0] != zlib.crc32(body):
        raise JournalError(f"{path}: the {what} header is damaged (checksum mismatch at offset {start})")
    return body, end + 4


def _header(path: Path, data: Union[bytes, memoryview], magic: bytes, what: str, decoder: Any) -> tuple[Any, int]:
    """The decoded header of a segment or snapshot and the offset after it; JournalError if damaged."""
    body, pos = _read_prefix(path, data, magic, what)
    try:
        return decoder.decode(body), pos
    except msgspec.MsgspecError as exc:
        raise JournalError(f"{path}: the {what} header does not decode ({exc})") from None


class TornHeader(JournalError):
    """A file whose header was cut short: a crash while it was being created."""


@dataclass
class Scan:
    """What reading one segment found.

    ``frames`` are (offset, seq, payload); ``end`` is the offset after the
    last good frame; ``torn`` says why the file goes on past ``end`` with a
    frame cut short by a crash (None when the file ends cleanly).
    """

    path: Path
    header: SegmentHeader
    frames: list[tuple[int, int, memoryview]] = field(default_factory=list)
    end: int = 0
    size: int = 0
    torn: Optional[str] = None
    #: With ``strict=False``: the damage found at ``end`` (the message ``strict`` would raise).
    damage: Optional[str] = None


def read_segment_header(path: Path) -> SegmentHeader:
    """The header of segment ``path`` alone (its settings, providers and writer), without reading its frames."""
    try:
        with open(path, "rb") as f:
            data = f.read(len(SEGMENT_MAGIC) + 8)
            if len(data) == len(SEGMENT_MAGIC) + 8 and data.startswith(SEGMENT_MAGIC):
                data += f.read(_PREFIX.unpack_from(data, len(SEGMENT_MAGIC))[1] + 4)
    except OSError as exc:
        raise JournalError(f"{path}: cannot read the journal segment: {exc.strerror}") from None
    return _header(path, data, SEGMENT_MAGIC, "journal segment", _segment_header)[0]


def scan_segment(path: Path, expect_seq: Optional[int] = None, *, strict: bool = True) -> Scan:
    """Read every frame of segment ``path``, checking checksums and the sequence.

    Raises ``JournalError`` for damage that a crash cannot explain (see the
    module docstring); with ``strict=False`` stops there instead and reports
    it in ``Scan.damage`` (for ``sendcore journal repair``). Runtime
    complexity: O(file size).
    """
    try:
        data = memoryview(path.read_bytes())
    except OSError as exc:
        raise JournalError(f"{path}: cannot read the journal segment: {exc.strerror}") from None
    header, pos = _header(path, data, SEGMENT_MAGIC, "journal segment", _segment_header)
    scan = Scan(path, header, size=len(data))
    seq = header.first_seq if expect_seq is None else expect_seq
    if header.first_seq != seq:
        raise JournalError(
            f"{path}: starts at frame {header.first_seq} but the journal before it ends at frame {seq - 1}: "
            "frames are missing (a segment was deleted or replaced); restore the missing segment"
        )
    size = len(data)
    frames = scan.frames
    crc32 = zlib.crc32
    damage: Optional[str] = None
    while pos < size:
        left = size - pos
        if left < FRAME_HEAD:
            scan.torn = f"a frame header cut short ({left} of {FRAME_HEAD} bytes)"
            break
        length, got_seq, pcrc = struct.unpack_from("<IQI", data, pos)
        hcrc = _CRC.unpack_from(data, pos + 16)[0]
        if hcrc != crc32(data[pos: pos + 16]):
            if not any(data[pos + FRAME_HEAD:]):
                # A frame header written in part (or not at all) and zeros after it: a write cut by the crash.
                scan.torn = "a zero-filled tail" if not any(data[pos:]) else "a frame header cut short by zeros"
                break
            damage = (
                f"{path}: corrupt frame header at offset {pos} (checksum mismatch) with data after it; "
                f"the journal is damaged: run `sendcore journal check {path.parent}` and restore from a backup, or "
                f"`sendcore journal repair {path.parent}` to keep only the frames before offset {pos}"
            )
            break
        end = pos + FRAME_HEAD + length
        if end > size:
            scan.torn = f"frame {got_seq} cut short ({size - pos - FRAME_HEAD} of {length} payload bytes)"
            break
        payload = data[pos + FRAME_HEAD: end]
        if crc32(payload) != pcrc:
            if end == size or not any(data[end:]):
                scan.torn = f"frame {got_seq} with a damaged payload at the end of the file"
                break
            damage = (
                f"{path}: corrupt frame {got_seq} at offset {pos} (payload checksum mismatch) with data after it; "
                f"the journal is damaged: run `sendcore journal check {path.parent}` and restore from a backup, or "
                f"`sendcore journal repair {path.parent}` to keep only the frames before offset {pos}"
            )
            break
        if got_seq != seq:
            damage = (
                f"{path}: frame at offset {pos} has sequence number {got_seq}, expected {seq}: frames are missing "
                f"or out of order; run `sendcore journal repair {path.parent}` to keep only the frames before it"
            )
            break
        frames.append((pos, seq, payload))
        seq += 1
        pos = end
    scan.end = pos
    if damage is not None:
        if strict:
            raise JournalError(damage)
        scan.damage = damage
    return scan


def read_snapshot(path: Path, *, payload: bool = True) -> tuple[SnapshotHeader, Optional[bytes]]:
    """The header and payload of snapshot ``path``; raise ``JournalError`` if it is damaged."""
    try:
        data = path.read_bytes() if payload else path.open("rb").read(1 << 20)
    except OSError as exc:
        raise JournalError(f"{path}: cannot read the snapshot: {exc.strerror}") from None
    header, pos = _header(path, data, SNAPSHOT_MAGIC, "snapshot", _snapshot_header)
    if not payload:
        return header, None
    blob = data[pos:]
    if len(blob) != header.payload_bytes or zlib.crc32(blob) != header.payload_crc:
        raise JournalError(
            f"{path}: the snapshot is damaged (payload of {len(blob)} bytes, expected {header.payload_bytes} "
            "with a matching checksum); restore it from a backup: the segments it covers were deleted"
        )
    return header, blob


def fsync_dir(directory: Path) -> None:
    """Make renames and deletions in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock(directory: Path) -> int:
    """Take the journal's exclusive lock (``LOCK``); return its descriptor. Raise JournalError if held.

    ``flock`` is released by the operating system when the holder dies, so a
    lock file left by a killed engine never blocks a restart.
    """
    path = directory / "LOCK"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise JournalError(f"{directory}: cannot open the journal's lock file: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise JournalError(
            f"{directory}: the journal is in use by another engine (pid {holder}); stop it first, "
            "or give this engine its own [journal] path"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
