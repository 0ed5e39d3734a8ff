"""One send as an email: header-safe checks of every address and the subject, then the MIME bytes to hand to DATA.

Pure functions, no I/O. The message is an ``email.message.EmailMessage``
built with the ``default`` policy family (``linesep="\\r\\n"`` for SMTP,
``cte_type="7bit"`` so non-ASCII text goes quoted-printable or base64 and no
relay needs 8BITMIME): ``body`` is the text/plain part, ``metadata["html"]``
an optional text/html alternative (multipart/alternative), ``metadata["subject"]``
the subject, ``metadata["from"]`` (or else the send's ``sender``) the From.

The ``Message-ID`` is ``<sha256(send id)[:32 hex]@domain of From>``: a send
sent again after a crash or a lost answer carries the same Message-ID, so a
receiver that deduplicates on it shows the message once.

No header injection: a value with CR, LF or any other control character
never reaches a header or an SMTP command line; the send fails permanently
with a message naming the field.
"""

from __future__ import annotations

import email.policy
import functools
import hashlib
import re
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, NamedTuple, Union

from sendcore.send import PermanentFailure, Send

__all__ = ["POLICY", "POLICY_UTF8", "Prepared", "address_problem", "message_id", "prepare"]



class _HeaderClasses(HeaderRegistry):
    """``HeaderRegistry`` that builds each header class once.

    The stock registry creates a new class with ``type()`` on every lookup,
    twice per header set; that was a quarter of the time spent building a
    message. Same classes, same parsing, same folding.
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


_registry = _HeaderClasses()
#: The ``default`` policy as SMTP wants it: CRLF line ends, 7-bit transfer encodings.
POLICY = email.policy.default.clone(linesep="\r\n", cte_type="7bit", header_factory=_registry)
#: For messages with a non-ASCII address (RFC 6531/6532: raw UTF-8 headers, SMTPUTF8).
POLICY_UTF8 = POLICY.clone(utf8=True)

# C0 controls, DEL, and the characters Python's str.splitlines treats as line breaks.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
# An addr-spec as relays take it: no spaces, brackets, quotes or separators;
# non-ASCII (internationalised addresses) allowed.
_ATOM = r"[^\s<>()\[\],;:\\\"@\x00-\x1f\x7f]+"
_ADDR_SPEC = re.compile(rf"^{_ATOM}@{_ATOM}$")


class Prepared(NamedTuple):
    """A send ready for one SMTP transaction: envelope, message bytes and its Message-ID."""

    envelope_from: str
    to: str
    data: bytes
    message_id: str
    utf8: bool


def _control_at(value: str) -> Union[int, None]:
    m = _CONTROL.search(value)
    return None if m is None else m.start()


def address_problem(value: Any, *, display_name: bool) -> Union[str, None]:
    """What is wrong with ``value`` as an address (with an optional display name), or None when it is fine."""
    if not isinstance(value, str):
        return f"expected an email address string, got {type(value).__name__}"
    at = _control_at(value)
    if at is not None:
        return f"contains a control character ({value[at]!r} at position {at}); refused to prevent header injection"
    if display_name:
        parsed = _parsed_mailbox(value)
        if isinstance(parsed, str):
            return parsed
        return None
    if not _ADDR_SPEC.match(value):
        return f"expected an address like name@example.com, got {value!r}"
    return None


@functools.lru_cache(maxsize=256)
def _parsed_mailbox(value: str) -> Union[tuple[Any, str], str]:
    """``(From header object, addr-spec)`` for a mailbox such as ``"Acme <a@b.example>"``, or a problem.

    Cached: the From values of a deployment are few, and the parsed header
    object can be stored in every message as is.
    """
    try:
        header = _registry("From", value)
        addresses = header.addresses
    except Exception as exc:  # noqa: BLE001 - untrusted input; the stdlib parser may raise on odd values
        return f"unreadable address {value!r} ({type(exc).__name__})"
    if len(addresses) != 1 or header.defects:
        return f"expected one address like 'Name <name@example.com>' or name@example.com, got {value!r}"
    addr = addresses[0].addr_spec
    if not _ADDR_SPEC.match(addr):
        return f"expected an address like name@example.com, got {value!r}"
    return header, addr


def message_id(send_id: str, from_addr: str) -> str:
    """The Message-ID of a send: a hash of its id at the From address's domain (ASCII, IDNA-encoded)."""
    domain = from_addr.rpartition("@")[2].lower()
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            domain = "sendcore.invalid"
    return f"<{hashlib.sha256(send_id.encode()).hexdigest()[:32]}@{domain}>"


_FIELD_CODE = {"to": "invalid_to", "from": "invalid_from", 'metadata["from"]': "invalid_from",
               "sender": "invalid_from", 'metadata["subject"]': "invalid_subject", 'metadata["html"]': "invalid_html"}


def _refuse(field: str, problem: str) -> PermanentFailure:
    """The permanent failure of a send whose ``field`` cannot be put in a message; the message names the field."""
    return PermanentFailure(_FIELD_CODE[field], f"{field}: {problem}")


def prepare(send: Send, default_from: str, envelope_from: Union[str, None], now: float) -> Union[Prepared, PermanentFailure]:
    """Build the message of ``send``, or the ``PermanentFailure`` naming the field that cannot go in a header.

    ``default_from`` is the ``from`` option (already checked); ``envelope_from``
    the ``envelope_from`` option or None; ``now`` (epoch seconds) goes in
    the Date header. Runtime complexity: O(size of the message).
    """
    meta = send.metadata or {}
    from_field = "from"
    from_value: Any = default_from
    if "from" in meta:
        from_field, from_value = 'metadata["from"]', meta["from"]
    elif send.sender:
        from_field, from_value = "sender", send.sender
    if from_value is not default_from:
        problem = address_problem(from_value, display_name=True)
        if problem:
            return _refuse(from_field, problem)
    from_header, from_addr = _parsed_mailbox(from_value)  # type: ignore[misc]
    to = send.to
    problem = address_problem(to, display_name=False)
    if problem:
        return _refuse("to", problem)
    subject = meta.get("subject")
    if subject is not None:
        if not isinstance(subject, str):
            return _refuse('metadata["subject"]', f"expected a string, got {type(subject).__name__}")
        at = _control_at(subject)
        if at is not None:
            return _refuse('metadata["subject"]', f"contains a control character ({subject[at]!r} at position "
                                                  f"{at}); refused to prevent header injection")
    html = meta.get("html")
    if html is not None and not isinstance(html, str):
        return _refuse('metadata["html"]', f"expected a string, got {type(html).__name__}")
    env_from = envelope_from or from_addr
    utf8 = not (to.isascii() and env_from.isascii() and from_addr.isascii())
    policy = POLICY_UTF8 if utf8 else POLICY
    mid = message_id(send.id, from_addr)
    msg = EmailMessage(policy=policy)
    msg["From"] = from_header
    msg["To"] = to
    if subject is not None:
        msg["Subject"] = subject
    msg["Date"] = formatdate(now, usegmt=True)
    msg["Message-ID"] = mid
    msg.set_content(send.body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return Prepared(env_from, to, msg.as_bytes(policy=policy), mid, utf8)
