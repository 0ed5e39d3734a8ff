"""Delivery-report callbacks: check the HMAC-SHA256 signature of the raw body, then read the report's fields.

The signature is ``HMAC-SHA256(key = the secret in $report_secret_env,
message = the raw request body)``, sent in ``report_signature_header`` as
lowercase hex (optionally prefixed ``sha256=``, GitHub's style) or base64.
Worked example: secret ``s3cret`` and body ``{"id":"m1","status":"delivered"}``
sign to hex ``28e67b66c9febdcd3d29a8c6d4654b0bf0f9d3f88aa97fb75ad7e00827e44ffa``
(``sign``). The check needs the body as it arrived: once parsed and
re-encoded, key order or spacing may differ.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Mapping, Union

import msgspec

from sendcore.errors import DeliveryReportError
from sendcore.provider import DeliveryReport

from .codes import norm, retry_after_seconds
from .options import HttpOptions
from .shape import getter

__all__ = ["ReportReader", "find_header", "sign"]

_decode = msgspec.json.Decoder()


def sign(secret: str, body: bytes) -> str:
    """The hex signature a sender computes for ``body`` (what ``report_signature_header`` carries)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def find_header(headers: Union[Mapping[str, str], None], name: str) -> Union[str, None]:
    """``headers[name]`` without regard to case, or None; works for dicts and multidicts."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def signature_matches(secret: str, body: bytes, given: str) -> bool:
    """Whether ``given`` is the body's signature in hex (``sha256=`` allowed) or base64; constant time."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    given = given.strip()
    if given[:7].lower() == "sha256=":
        given = given[7:]
    as_hex = hmac.compare_digest(given.lower().encode(), digest.hex().encode())
    as_b64 = hmac.compare_digest(given.encode(), base64.b64encode(digest))
    return as_hex | as_b64


class ReportReader:
    """Reads one delivery-report callback into a ``DeliveryReport`` as the options describe."""

    def __init__(self, options: HttpOptions) -> None:
        """Compile the options' report fields into getters."""
        self.options = options
        self._id = getter(options.report_id_field)
        self._status = getter(options.report_status_field)
        self._code = getter(options.report_code_field) if options.report_code_field else (lambda d: None)
        self._message = getter(options.report_message_field) if options.report_message_field else (lambda d: None)
        self._delivered = frozenset(options.delivered_values)
        self._undelivered = frozenset(options.undelivered_values)
        self._by_send_id = options.report_id_is == "send_id"

    def read(self, payload: Any, headers: Union[Mapping[str, str], None], secret: Union[str, None]) -> Union[
            DeliveryReport, None]:
        """The report in ``payload`` (a JSON object, or the raw body as bytes/str); None for an intermediate status.

        With ``secret`` (a signature is required) the payload must be raw and
        its signature must match, else ``DeliveryReportError``.
        """
        opts = self.options
        raw: Union[bytes, None] = None
        if isinstance(payload, (bytes, bytearray, memoryview)):
            raw = bytes(payload)
        elif isinstance(payload, str):
            raw = payload.encode()
        if secret is not None:
            header = opts.report_signature_header
            if raw is None:
                raise DeliveryReportError(
                    f"http delivery report: checking {header} needs the raw request body (bytes or str), "
                    "not decoded fields")
            given = find_header(headers, header)
            if not given:
                raise DeliveryReportError(f"http delivery report: no {header} header")
            if not signature_matches(secret, raw, given):
                raise DeliveryReportError(f"http delivery report: {header} does not match the body")
        if raw is not None:
            try:
                payload = _decode.decode(raw)
            except msgspec.DecodeError as exc:
                raise DeliveryReportError(f"http delivery report: the body is not JSON: {exc}") from None
        if isinstance(payload, Mapping) and type(payload) is not dict:
            payload = dict(payload)
        if type(payload) is not dict:
            raise DeliveryReportError(
                f"http delivery report: expected a JSON object, got {type(payload).__name__}")
        ident = norm(self._id(payload))
        status = norm(self._status(payload))
        if not ident:
            raise DeliveryReportError(f"http delivery report: no {opts.report_id_field} (report_id_field)")
        if not status:
            raise DeliveryReportError(f"http delivery report: no {opts.report_status_field} (report_status_field)")
        names = {"send_id": ident} if self._by_send_id else {"provider_id": ident}
        if status in self._delivered:
            return DeliveryReport(delivered=True, code=status, detail=status, **names)
        if status not in self._undelivered:
            return None  # queued, sent, accepted...: nothing final yet
        code = norm(self._code(payload))
        message = norm(self._message(payload))
        detail = f"{status}: {code} {message}".rstrip() if code else (f"{status}: {message}" if message else status)
        if not code:
            return DeliveryReport(delivered=False, code=status, detail=detail, **names)
        kind = opts.codes.get(code, opts.unknown_code)
        temporary = kind == "temporary"
        suppress = {"suppress_all": "all", "suppress_marketing": "marketing"}.get(kind)
        retry_after = None
        if kind == "rate_limited":
            retry_after = retry_after_seconds(None, float(opts.default_retry_after),  # type: ignore[arg-type]
                                              float(opts.max_retry_after))  # type: ignore[arg-type]
        return DeliveryReport(delivered=False, code=code, detail=detail, temporary=temporary,
                              suppress=suppress, retry_after=retry_after, **names)  # type: ignore[arg-type]
