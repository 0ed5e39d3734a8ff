"""The ``[providers.http.options]`` table, typed and checked; every error names its key.

Secrets are never options: ``auth_env`` and ``report_secret_env`` name the
environment variables holding them, read when the provider starts.
"""

from __future__ import annotations

import math
import re
import typing
from typing import Any, Literal, Mapping, Union
from urllib.parse import urlsplit

import msgspec

from sendcore.errors import ConfigError
from sendcore.settings import parse_duration

from .shape import compile_shape

__all__ = ["CODE_KINDS", "STATUS_KINDS", "CodeKind", "HttpOptions", "StatusKind"]

Duration = Union[float, str]

#: What an item's (or a delivery report's) error code means; see ``codes.py``.
CodeKind = Literal["temporary", "permanent", "suppress_all", "suppress_marketing", "rate_limited"]
#: What a whole-response HTTP status means for every send of the batch.
StatusKind = Literal["temporary", "permanent", "rate_limited"]

#: The values the ``codes`` table and ``unknown_code`` accept (checked by hand, so errors name the code).
CODE_KINDS: tuple[str, ...] = typing.get_args(CodeKind)
#: The values the ``statuses`` table accepts.
STATUS_KINDS: tuple[str, ...] = typing.get_args(StatusKind)

_AT_KEY = re.compile(r"^(?P<msg>.*) - at `\$\.(?P<key>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")
_KEYED = re.compile(r"^(?P<key>[a-z_]+(?:[.\[][^:]*?)?): (?P<msg>.*)$", re.S)
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _default_item() -> dict[str, Any]:
    return {"id": "{id}", "to": "{to}", "body": "{body}"}


class HttpOptions(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """How the provider talks to one JSON batch API (see the package doc for a full example).

    Request:

    - ``url`` (required), ``method`` (POST, PUT or PATCH; default POST).
    - ``channels`` (required): the channels this API serves, e.g. ``["sms"]``.
      Required because the class is generic: no channel is a safe guess.
    - ``headers``: static, non-secret headers sent with every request.
    - ``auth_env``: the environment variable holding the credential (None: no
      auth header); sent as ``auth_header`` (default ``Authorization``) with
      the value ``"{auth_scheme} {secret}"``, or the bare secret when
      ``auth_scheme = ""`` (default scheme ``Bearer``).
    - ``idempotency_header`` (default ``Idempotency-Key``; "" sends none): the
      send id for a batch of one; for a larger batch ``batch-`` and a stable
      hash of its send ids (every item also carries its own id, which is what
      lets the API deduplicate a retry that regroups sends differently).
    - ``sender``: the value of ``{sender}`` when the batch has no sender.
    - ``max_batch`` (default 100): sends per request.
    - ``max_connections`` (default 100): the shared session's connection limit.
    - ``request_rate`` (requests per second, None = no limit) and
      ``request_burst`` (default 1): this API's own request limit, distinct
      from the route's messages per second; requests wait for it.
    - ``request_timeout`` (default 10s): the longest one request may take
      once it has a connection; the waits for a free connection and for
      ``request_rate`` do not count against it.
    - ``body_path`` (default ``messages``): where the list of items goes in
      the body; dotted for nesting (``data.messages``); ``""`` sends a bare
      JSON array. ``envelope``: fixed fields around the list (templates may
      use the batch-level ``{channel}`` and ``{sender}``).
    - ``item``: the JSON shape of one send (see ``shape.py``). Default
      ``{id = "{id}", to = "{to}", body = "{body}"}``.

    Response (2xx):

    - ``result_match``: ``"id"`` (default: items name their send by
      ``result_id_field``), ``"position"`` (the i-th item answers the i-th
      send) or ``"none"`` (a 2xx accepts every send; no per-item results).
    - ``results_path`` (default ``results``): dotted path to the item list
      (``""``: the body is the list).
    - ``result_status_field`` (default ``status``) and ``accepted_values``
      (default accepted, queued, sent); with ``result_status_field = ""`` an
      item is accepted when it carries no error code.
    - ``result_provider_id_field`` (``message_id``), ``result_code_field``
      (``error.code``), ``result_message_field`` (``error.message``),
      ``result_retry_after_field`` (``""``: none; else seconds on the item).
    - ``codes``: error code (or, without a code, the item's status value) →
      ``temporary`` | ``permanent`` | ``suppress_all`` |
      ``suppress_marketing`` | ``rate_limited``; ``unknown_code`` (default
      ``permanent``) for codes not in the table.
    - ``statuses``: HTTP status → ``temporary`` | ``permanent`` |
      ``rate_limited``, over the defaults (429 rate limited; 408, 425, 5xx
      temporary; other non-2xx permanent for the batch).
    - ``default_retry_after`` (1s) when a rate limit names no delay;
      ``max_retry_after`` (300s) caps ``Retry-After``.

    Delivery reports (one JSON object per callback):

    - ``report_id_field`` (default ``id``) and ``report_id_is``
      (``provider_id``, default, or ``send_id``).
    - ``report_status_field`` (``status``), ``delivered_values``
      (``delivered``), ``undelivered_values`` (undelivered, failed, rejected,
      expired); other statuses are intermediate and report nothing.
    - ``report_code_field`` (``error.code``), ``report_message_field``
      (``error.message``): the code is read through ``codes``.
    - ``report_signature_header`` and ``report_secret_env``, together: an
      HMAC-SHA256 of the raw body, hex (``sha256=`` prefix allowed) or base64.
    """

    url: str
    channels: list[str]
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, str] = {}
    auth_env: Union[str, None] = None
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    idempotency_header: str = "Idempotency-Key"
    sender: Union[str, None] = None
    max_batch: int = 100
    max_connections: int = 100
    request_rate: Union[float, None] = None
    request_burst: int = 1
    request_timeout: Duration = 10.0
    body_path: str = "messages"
    envelope: dict[str, Any] = {}
    item: dict[str, Any] = msgspec.field(default_factory=_default_item)
    result_match: Literal["id", "position", "none"] = "id"
    results_path: str = "results"
    result_id_field: str = "id"
    result_status_field: str = "status"
    accepted_values: list[str] = msgspec.field(default_factory=lambda: ["accepted", "queued", "sent"])
    result_provider_id_field: str = "message_id"
    result_code_field: str = "error.code"
    result_message_field: str = "error.message"
    result_retry_after_field: str = ""
    codes: dict[str, str] = {}
    unknown_code: CodeKind = "permanent"
    statuses: dict[str, str] = {}
    default_retry_after: Duration = 1.0
    max_retry_after: Duration = 300.0
    report_id_field: str = "id"
    report_id_is: Literal["provider_id", "send_id"] = "provider_id"
    report_status_field: str = "status"
    delivered_values: list[str] = msgspec.field(default_factory=lambda: ["delivered"])
    undelivered_values: list[str] = msgspec.field(
        default_factory=lambda: ["undelivered", "failed", "rejected", "expired"])
    report_code_field: str = "error.code"
    report_message_field: str = "error.message"
    report_signature_header: str = ""
    report_secret_env: str = ""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url: expected an http(s) URL, got {self.url!r}")
        if not self.channels or any(not c for c in self.channels):
            raise ValueError("channels: name at least one channel, e.g. [\"sms\"]")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels: a channel is listed twice in {self.channels!r}")
        for name in self.headers:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"headers.{name}: not a valid HTTP header name")
        for key in ("auth_header", "idempotency_header", "report_signature_header"):
            value = getattr(self, key)
            if value and not _HEADER_NAME.match(value):
                raise ValueError(f"{key}: not a valid HTTP header name: {value!r}")
        if self.auth_env is not None and not self.auth_env:
            raise ValueError("auth_env: must name an environment variable (leave it out for no auth header)")
        if not self.auth_header:
            raise ValueError("auth_header: must name a header")
        if self.max_batch < 1:
            raise ValueError(f"max_batch: must be at least 1, got {self.max_batch!r}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections: must be at least 1, got {self.max_connections!r}")
        rate = self.request_rate
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"request_rate: must be a positive number of requests per second, got {rate!r}")
        if self.request_burst < 1:
            raise ValueError(f"request_burst: must be at least 1, got {self.request_burst!r}")
        for key in ("request_timeout", "default_retry_after", "max_retry_after"):
            seconds = parse_duration(getattr(self, key), key)
            if seconds <= 0:
                raise ValueError(f"{key}: must be longer than 0s, got {getattr(self, key)!r}")
            # Frozen struct: store durations as seconds, so the provider only sees floats.
            msgspec.structs.force_setattr(self, key, seconds)
        if self.default_retry_after > self.max_retry_after:  # type: ignore[operator]
            raise ValueError("default_retry_after: must not exceed max_retry_after")
        if self.result_match == "id" and not self.result_id_field:
            raise ValueError("result_id_field: result_match = \"id\" needs the field naming each item's send")
        for code, kind in self.codes.items():
            if kind not in CODE_KINDS:
                raise ValueError(f"codes.{code}: expected one of {', '.join(CODE_KINDS)}, got {kind!r}")
        for code, kind in self.statuses.items():
            if kind not in STATUS_KINDS:
                raise ValueError(f"statuses.{code}: expected one of {', '.join(STATUS_KINDS)}, got {kind!r}")
            if not (code.isdigit() and 100 <= int(code) <= 599):
                raise ValueError(f"statuses.{code}: expected an HTTP status code between 100 and 599")
            if 200 <= int(code) < 300:
                raise ValueError(f"statuses.{code}: a 2xx answer carries per-item results; it cannot be mapped")
        compile_shape(self.item, "item")
        compile_shape(self.envelope, "envelope", batch=True)
        if self.envelope:
            if not self.body_path:
                raise ValueError("envelope: a bare JSON array (body_path = \"\") has no envelope")
            if self.body_path.split(".")[0] in self.envelope:
                raise ValueError(f"envelope.{self.body_path.split('.')[0]}: is where body_path puts the items")
        if any(not k for k in self.body_path.split(".")) and self.body_path:
            raise ValueError(f"body_path: {self.body_path!r} has an empty key")
        if not self.report_id_field:
            raise ValueError("report_id_field: must name the field that identifies the message")
        if not self.report_status_field:
            raise ValueError("report_status_field: must name the delivery report's status field")
        both = set(self.delivered_values) & set(self.undelivered_values)
        if both:
            raise ValueError(f"undelivered_values: {sorted(both)} also in delivered_values")
        if bool(self.report_signature_header) != bool(self.report_secret_env):
            missing = "report_secret_env" if self.report_signature_header else "report_signature_header"
            raise ValueError(f"{missing}: report_signature_header and report_secret_env go together")

    @classmethod
    def from_mapping(cls, data: Union[Mapping[str, Any], None],
                     source: str = "providers.http.options") -> HttpOptions:
        """Build options from a plain table; raise ``ConfigError`` naming ``source`` and the key at fault."""
        try:
            return msgspec.convert(dict(data or {}), type=cls)
        except msgspec.ValidationError as exc:
            raise ConfigError(keyed(str(exc), source)) from None


def keyed(message: str, source: str) -> str:
    """msgspec's or ``__post_init__``'s message, rewritten to start with the full key."""
    m = _AT_KEY.match(message)
    if m:
        return f"{source}.{m['key']}: {m['msg']}"
    m = _MISSING.match(message)
    if m:
        return f"{source}.{m['key']}: required option is missing"
    m = _UNKNOWN.match(message)
    if m:
        known = ", ".join(sorted(f.encode_name for f in msgspec.structs.fields(HttpOptions)))
        return f"{source}.{m['key']}: unknown option (known: {known})"
    m = _KEYED.match(message)
    if m:
        return f"{source}.{m['key']}: {m['msg']}"
    return f"{source}: {message}"
