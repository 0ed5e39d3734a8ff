"""Bearer tokens: created once, stored only as salted hashes, checked in constant time.

A token reads ``sc_<id>_<secret>``: ``id`` (8 hex digits) names its record in
the tokens file, ``secret`` is 32 random bytes (base64url). The file keeps,
per token, its name, scopes, a 16-byte random salt and
``pbkdf2_hmac("sha256", secret, salt, 20_000)``; the secret itself is printed
once by ``sendcore token create`` and never stored. A random 256-bit secret
cannot be guessed, so the stretching only slows down an offline attack on a
stolen file; 20,000 rounds (a few ms) keep a wrong token cheap enough to
refuse under load. A token once verified is remembered by an HMAC of it under
a per-process key, so the service pays the hash once per token, not per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Union

import msgspec

__all__ = ["SCOPES", "TokenRecord", "TokenStore", "TokenFile"]

#: The scopes a token may hold. ``admin`` includes the other two.
SCOPES = ("submit", "read", "admin")

_ROUNDS = 20_000
_PREFIX = "sc_"


class TokenRecord(msgspec.Struct, kw_only=True, frozen=True):
    """One token as stored: never the secret, only its salted hash."""

    id: str
    name: str
    scopes: list[str]
    salt: str
    hash: str
    rounds: int = _ROUNDS
    created: float = 0.0
    revoked: Union[float, None] = None


class TokenFile(msgspec.Struct, kw_only=True):
    """The tokens file: a JSON object with the list of records."""

    tokens: list[TokenRecord] = []


_decode_file = msgspec.json.Decoder(TokenFile).decode
_encode = msgspec.json.Encoder().encode


def _digest(secret: str, salt: bytes, rounds: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, rounds)


def check_scopes(scopes: list[str]) -> list[str]:
    """``scopes`` de-duplicated in canonical order; ValueError naming an unknown one."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"scope: expected some of {', '.join(SCOPES)}, got {', '.join(scopes) or 'none'}")
    return [s for s in SCOPES if s in scopes]


class TokenStore:
    """The tokens of one tokens file: create, list, revoke, and verify a presented token.

    ``verify`` re-reads the file when its modification time changed (checked
    at most once a second), so ``sendcore token revoke`` takes effect on a
    running service within a second, without a restart.
    """

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self._records: dict[str, TokenRecord] = {}
        self._mtime: Union[float, None] = None
        self._checked = 0.0
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, str] = {}
        self._load()

    # ---------------------------------------------------------------- the file

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._records, self._mtime = {}, None
            self._verified.clear()
            return
        data = self.path.read_bytes()
        try:
            parsed = _decode_file(data) if data.strip() else TokenFile()
        except msgspec.MsgspecError as exc:
            raise ValueError(f"{self.path}: not a sendcore tokens file: {exc}") from None
        self._records = {r.id: r for r in parsed.tokens}
        self._mtime = st.st_mtime_ns
        self._verified.clear()  # a revoked token must not stay remembered

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, _encode(TokenFile(tokens=list(self._records.values()))) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._load()

    def refresh(self) -> None:
        """Re-read the file if it changed on disk (at most one ``stat`` a second)."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            self._load()

    # ---------------------------------------------------------------- management

    def create(self, scopes: list[str], name: str = "") -> tuple[str, TokenRecord]:
        """A new token with ``scopes``: (the token, printed once; its stored record)."""
        scopes = check_scopes(scopes)
        self._load()
        tid = secrets.token_hex(4)
        while tid in self._records:
            tid = secrets.token_hex(4)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        salt = secrets.token_bytes(16)
        record = TokenRecord(id=tid, name=name or tid, scopes=scopes, salt=salt.hex(),
                             hash=_digest(secret, salt, _ROUNDS).hex(), created=time.time())
        self._records[tid] = record
        self._save()
        return f"{_PREFIX}{tid}_{secret}", record

    def list(self) -> list[TokenRecord]:
        """Every record, revoked ones included, oldest first."""
        self._load()
        return sorted(self._records.values(), key=lambda r: r.created)

    def revoke(self, name_or_id: str) -> list[TokenRecord]:
        """Revoke the tokens whose id or name is ``name_or_id``; the records revoked (empty if none)."""
        self._load()
        hits = [r for r in self._records.values() if r.revoked is None and name_or_id in (r.id, r.name)]
        for r in hits:
            self._records[r.id] = msgspec.structs.replace(r, revoked=time.time())
        if hits:
            self._save()
        return hits

    # ---------------------------------------------------------------- checking

    def verify(self, token: str) -> Union[TokenRecord, None]:
        """The live record ``token`` belongs to, or None (unknown, wrong secret, revoked, malformed)."""
        self.refresh()
        mark = hmac.new(self._key, token.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
        tid = self._verified.get(mark)
        if tid is not None:
            record = self._records.get(tid)
            if record is not None and record.revoked is None:
                return record
        if not token.startswith(_PREFIX):
            return None
        tid, sep, secret = token[len(_PREFIX):].partition("_")
        record = self._records.get(tid)
        if not sep or record is None or record.revoked is not None:
            return None
        given = _digest(secret, bytes.fromhex(record.salt), record.rounds)
        if not hmac.compare_digest(given, bytes.fromhex(record.hash)):
            return None
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[mark] = tid
        return record
