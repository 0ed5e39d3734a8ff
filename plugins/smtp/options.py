"""The ``[providers.smtp.options]`` table, typed and checked; every error names its key.

Secrets are never options: ``password_env`` names the environment variable
that holds the password, read when the provider starts (and only when
``username`` is set).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Mapping, Union

import msgspec

from sendcore.errors import ConfigError
from sendcore.settings import parse_duration

from .message import address_problem

__all__ = ["SmtpOptions"]

Duration = Union[float, str]

_AT_KEY = re.compile(r"^(?P<msg>.*) - at `\$\.(?P<key>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")
_KEYED = re.compile(r"^(?P<key>[a-z_]+): (?P<msg>.*)$", re.S)
_HOSTNAME = re.compile(r"^[A-Za-z0-9.\-\[\]:]+$")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _positive_duration(value: Duration, key: str) -> float:
    seconds = parse_duration(value, key)
    if not seconds > 0:
        raise ValueError(f"{key}: must be longer than 0s, got {value!r}")
    return seconds


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SmtpOptions(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True,
                  rename={"from_": "from"}):
    """How the provider talks to its SMTP relay.

    - ``from`` (required): the ``From`` header of every message, an address
      with an optional display name (``"Acme <news@acme.example>"``); a
      send's ``metadata["from"]`` overrides it, and so does its ``sender``.
    - ``envelope_from``: the envelope sender (``MAIL FROM``, where bounces
      go); by default the address of the message's ``From``.
    - ``host``/``port``: the relay; the port defaults to 465 with
      ``use_tls``, 587 with ``starttls``, 25 otherwise.
    - ``starttls``: upgrade with STARTTLS after connecting, and fail the
      connection if the server does not offer it. ``false`` never upgrades
      (no silent opportunistic TLS that a man in the middle can strip).
    - ``use_tls``: implicit TLS from the first byte (SMTPS, port 465).
      Exclusive with ``starttls``. ``validate_certs`` and ``cert_bundle``
      (a CA file) control certificate checks.
    - ``username``/``password_env``: AUTH after connecting; the password is
      read from the environment variable ``password_env`` names. A password
      only crosses the network over TLS: with ``username`` set, either TLS
      option is required unless ``host`` is a loopback address.
    - ``pool_size``: SMTP connections kept open and reused across batches;
      the messages of a batch go out over them concurrently.
    - ``connect_timeout``: the longest connecting may take (TCP, greeting,
      EHLO, STARTTLS, AUTH). ``timeout``: the longest wait for one reply.
      ``batch_timeout``: the longest one batch may take, waits for a free
      connection included; messages not done by then are temporary failures.
    - ``rate_limit_retry_after``: how long a throttling reply (421, 4.7.x,
      see ``codes.py``) holds the route; SMTP replies carry no delay.
    - ``local_hostname``: the name given in EHLO (default: this host's FQDN).
    """

    from_: str
    envelope_from: Union[str, None] = None
    host: str = "localhost"
    port: Union[int, None] = None
    starttls: bool = False
    use_tls: bool = False
    validate_certs: bool = True
    cert_bundle: Union[str, None] = None
    username: Union[str, None] = None
    password_env: str = "SMTP_PASSWORD"
    pool_size: int = 4
    connect_timeout: Duration = 10.0
    timeout: Duration = 30.0
    batch_timeout: Duration = 60.0
    rate_limit_retry_after: Duration = 60.0
    local_hostname: Union[str, None] = None

    def __post_init__(self) -> None:
        problem = address_problem(self.from_, display_name=True)
        if problem:
            raise ValueError(f"from: {problem}")
        if self.envelope_from is not None:
            problem = address_problem(self.envelope_from, display_name=False)
            if problem:
                raise ValueError(f"envelope_from: {problem}")
        if not self.host or not _HOSTNAME.match(self.host):
            raise ValueError(f"host: expected a host name or IP address, got {self.host!r}")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"port: expected 1 to 65535, got {self.port!r}")
        if self.starttls and self.use_tls:
            raise ValueError("starttls: `starttls` and `use_tls` exclude each other (use_tls is TLS from the first byte)")
        if self.username is not None:
            if not self.username:
                raise ValueError("username: must not be empty (leave it out for no AUTH)")
            if not self.password_env:
                raise ValueError("password_env: must name an environment variable")
            if not (self.starttls or self.use_tls) and not _is_loopback(self.host):
                raise ValueError(
                    f"username: the password would cross the network to {self.host} in clear; "
                    "set starttls = true or use_tls = true"
                )
        if self.pool_size < 1:
            raise ValueError(f"pool_size: must be at least 1, got {self.pool_size!r}")
        if self.local_hostname is not None and not _HOSTNAME.match(self.local_hostname):
            raise ValueError(f"local_hostname: expected a host name, got {self.local_hostname!r}")
        # Frozen struct: store durations as seconds, so the provider only sees floats.
        for key in ("connect_timeout", "timeout", "batch_timeout", "rate_limit_retry_after"):
            msgspec.structs.force_setattr(self, key, _positive_duration(getattr(self, key), key))

    @property
    def effective_port(self) -> int:
        """The port to connect to: ``port``, or the default of the TLS mode."""
        if self.port is not None:
            return self.port
        return 465 if self.use_tls else 587 if self.starttls else 25

    @classmethod
    def from_mapping(cls, data: Union[Mapping[str, Any], None], source: str = "providers.smtp.options") -> SmtpOptions:
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
        known = ", ".join(sorted(f.encode_name for f in msgspec.structs.fields(SmtpOptions)))
        return f"{source}.{m['key']}: unknown option (known: {known})"
    m = _KEYED.match(message)
    if m:
        return f"{source}.{m['key']}: {m['msg']}"
    return f"{source}: {message}"
