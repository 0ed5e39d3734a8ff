"""The ``[providers.twilio.options]`` table, typed and checked; every error names its key.

Secrets are never options: ``auth_token_env`` names the environment variable
that holds the auth token, read when the provider starts.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, Mapping, Union
from urllib.parse import urlsplit

import msgspec

from sendcore.errors import ConfigError
from sendcore.settings import parse_duration

__all__ = ["TwilioOptions"]

Duration = Union[float, str]

_AT_KEY = re.compile(r"^(?P<msg>.*) - at `\$\.(?P<key>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")
_KEYED = re.compile(r"^(?P<key>[a-z_]+): (?P<msg>.*)$", re.S)


def _check_url(value: str, key: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{key}: expected an http(s) URL, got {value!r}")


class TwilioOptions(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True,
                    rename={"from_": "from"}):
    """How the provider talks to Twilio's Messages API.

    - ``account_sid`` (required): the account whose ``Messages.json`` is posted to;
      also the user name of HTTP basic auth.
    - ``auth_token_env``: the environment variable holding the auth token
      (basic auth password, and the key of callback signatures).
    - ``from`` or ``messaging_service_sid``: exactly one; the sender of
      every message unless a send names its own ``sender`` (sent as ``From``).
    - ``status_callback``: URL Twilio posts delivery reports to (``StatusCallback``).
    - ``base_url``: where the API lives; tests point it at a local server.
    - ``max_connections``: the shared HTTP session's connection limit.
    - ``request_rate``: requests per second the account allows (None = no
      client-side limit); requests wait for it before they leave.
    - ``request_timeout``: the longest one request may take once it has a
      connection ("10s" or seconds); past it the message is a temporary
      failure. The wait for a free connection or for ``request_rate`` does
      not count against it.
    - ``stop_suppress``: what a 21610 (recipient replied STOP) suppresses:
      ``"marketing"`` (sendcore's opt-out scope) or ``"all"`` (Twilio blocks
      every message from that sender, transactional ones included).
    - ``verify_signature``: check ``X-Twilio-Signature`` on delivery reports.
      On by default, whether or not ``status_callback`` is set: a report
      endpoint that trusts unsigned posts lets anyone suppress addresses.
    """

    account_sid: str
    auth_token_env: str = "TWILIO_AUTH_TOKEN"
    from_: Union[str, None] = None
    messaging_service_sid: Union[str, None] = None
    status_callback: Union[str, None] = None
    base_url: str = "https://api.twilio.com"
    max_connections: int = 100
    request_rate: Union[float, None] = None
    request_timeout: Duration = 10.0
    stop_suppress: Literal["marketing", "all"] = "marketing"
    verify_signature: bool = True

    def __post_init__(self) -> None:
        if not self.account_sid:
            raise ValueError("account_sid: must not be empty")
        if not self.auth_token_env:
            raise ValueError("auth_token_env: must name an environment variable")
        if (self.from_ is None) == (self.messaging_service_sid is None):
            both = "both are" if self.from_ is not None else "neither is"
            raise ValueError(f"from: give exactly one of `from` and `messaging_service_sid` ({both} set)")
        if self.from_ == "" or self.messaging_service_sid == "":
            raise ValueError("from: the sender must not be empty")
        _check_url(self.base_url, "base_url")
        if self.status_callback is not None:
            _check_url(self.status_callback, "status_callback")
        if self.max_connections < 1:
            raise ValueError(f"max_connections: must be at least 1, got {self.max_connections!r}")
        rate = self.request_rate
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"request_rate: must be a positive number of requests per second, got {rate!r}")
        timeout = parse_duration(self.request_timeout, "request_timeout")
        if timeout <= 0:
            raise ValueError(f"request_timeout: must be longer than 0s, got {self.request_timeout!r}")
        # Frozen struct: store the duration as seconds, so the provider only sees floats.
        msgspec.structs.force_setattr(self, "request_timeout", timeout)

    @classmethod
    def from_mapping(cls, data: Union[Mapping[str, Any], None],
                     source: str = "providers.twilio.options") -> TwilioOptions:
        """Build options from a plain table; raise ``ConfigError`` naming ``source`` and the key at fault."""
        try:
            return msgspec.convert(dict(data or {}), type=cls)
        except msgspec.ValidationError as exc:
            raise ConfigError(_keyed(str(exc), source)) from None


def _keyed(message: str, source: str) -> str:
    """msgspec's or ``__post_init__``'s message, rewritten to start with the full key."""
    m = _AT_KEY.match(message)
    if m:
        return f"{source}.{m['key']}: {m['msg']}"
    m = _MISSING.match(message)
    if m:
        return f"{source}.{m['key']}: required option is missing"
    m = _UNKNOWN.match(message)
    if m:
        known = ", ".join(sorted(f.encode_name for f in msgspec.structs.fields(TwilioOptions)))
        return f"{source}.{m['key']}: unknown option (known: {known})"
    m = _KEYED.match(message)
    if m:
        return f"{source}.{m['key']}: {m['msg']}"
    return f"{source}: {message}"
