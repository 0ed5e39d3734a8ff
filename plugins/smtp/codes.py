"""What an SMTP reply means for one message: the table from reply codes and enhanced status codes to results.

Pure functions, no I/O: ``classify(code, text, stage, retry_after)`` turns one
refusal into a ``Result``. The enhanced status code (RFC 3463, ``class.subject.detail``
at the start of the reply text, e.g. ``5.1.1``) is read when the server gives
one; it says more than the three-digit code, so it decides first.

=========================================  ==========================================================
Reply                                      Result
=========================================  ==========================================================
``421`` (any stage, any enhanced code)     ``RateLimited(retry_after)``: the server is closing the
                                           connection ("service not available, try later"); the
                                           connection is dropped and replaced.
``4xx`` with ``4.7.x``                     ``RateLimited``: security/policy deferral, which relays use
                                           for throttling (``451 4.7.0 Try again later``, Gmail's
                                           ``4.7.28``, greylisting ``451 4.7.1``).
``4xx`` with ``4.3.2`` or ``4.4.5``        ``RateLimited``: "system not accepting network messages"
                                           and "system congestion" concern the whole server.
other ``4xx``                              ``TemporaryFailure``: ``450``, ``451 4.3.0`` (local error),
                                           ``452 4.2.2`` (mailbox full), ``4.2.x`` mailbox states. They
                                           are about one mailbox or one attempt, so the send is retried
                                           with backoff (R18) instead of slowing every send of the route.
anything at connect (greeting, EHLO,      ``TemporaryFailure`` unless it is a ``421``/``4.7.x`` above:
STARTTLS, AUTH)                            a relay that refuses us (``554`` greeting, ``535`` bad
                                           credentials) is a configuration or outage problem of every
                                           send, not of this message; retries (R18) deliver once fixed.
``5xx`` at MAIL FROM                       ``PermanentFailure``, no suppression: the *sender* was
                                           refused (``553 5.7.1``, ``530 5.7.0`` auth required); the
                                           recipient's address is not at fault.
``5xx`` with ``5.1.x`` (not 5.1.7/5.1.8)   ``PermanentFailure(suppress="all")``: the destination address
                                           is bad (``5.1.1`` unknown user, ``5.1.2`` bad domain,
                                           ``5.1.3`` bad syntax, ``5.1.6`` moved, ``5.1.10`` null MX).
                                           5.1.7/5.1.8 name the sender's address: no suppression.
``5xx`` with ``5.2.1``                     ``PermanentFailure(suppress="all")``: mailbox disabled.
``5xx`` with another enhanced code         ``PermanentFailure``, no suppression: ``5.7.x`` policy/spam,
                                           ``5.2.2`` mailbox full, ``5.3.4``/``5.2.3`` too big, ...
``550``/``551``/``553`` at RCPT, no        ``PermanentFailure(suppress="all")``: mailbox unavailable,
enhanced code                              user not local, mailbox name not allowed.
``552`` (any)                              ``PermanentFailure``, no suppression: storage / size.
other ``5xx``                              ``PermanentFailure``, no suppression (``554`` transaction
                                           failed, ``550`` after DATA without an enhanced code, which is
                                           how many servers reject content).
anything else (``-1``, ``1xx``, ``3xx``)   ``TemporaryFailure``: a reply that makes no sense here.
=========================================  ==========================================================

The result's ``code`` is the reply code followed by the enhanced code when
there is one (``"550 5.1.1"``); its ``message`` is the server's text without
the enhanced code, prefixed by the stage (``"RCPT: ..."``).
"""

from __future__ import annotations

import re
from typing import Literal, Union

from sendcore.send import PermanentFailure, RateLimited, Result, TemporaryFailure

__all__ = ["Stage", "classify", "enhanced_status"]

#: The command a reply answered: ``mail`` (MAIL FROM), ``rcpt`` (RCPT TO),
#: ``data`` (DATA or the end of the message), ``connect`` (greeting, EHLO,
#: STARTTLS, AUTH).
Stage = Literal["connect", "mail", "rcpt", "data"]

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")

#: Enhanced codes (class 4) that say the server as a whole wants less traffic.
_SERVER_BUSY = frozenset({(3, 2), (4, 5)})
#: Enhanced codes (class 5) that say the recipient address itself is bad.
#: 5.1.7 and 5.1.8 are the sender's address: never a reason to suppress the recipient.
_SENDER_SUBJECT_1 = frozenset({7, 8})
#: Reply codes without an enhanced code that say the mailbox does not exist (at RCPT only).
_BAD_MAILBOX = frozenset({550, 551, 553})
_STAGE_NAME = {"connect": "connect", "mail": "MAIL FROM", "rcpt": "RCPT TO", "data": "DATA"}


def enhanced_status(text: str) -> Union[tuple[int, int, int], None]:
    """The enhanced status code at the start of a reply's text (``"5.1.1 no such user"`` -> (5, 1, 1)), or None."""
    m = _ENHANCED.match(text)
    if m is None:
        return None
    return int(m[1]), int(m[2]), int(m[3])


def classify(code: int, text: str, stage: Stage, retry_after: float) -> Result:
    """Map one SMTP refusal to a ``Result`` following the table in the module docstring.

    ``retry_after`` is what a ``RateLimited`` answer carries (SMTP replies
    carry no machine-readable delay). Runtime complexity: O(len(text)).
    """
    text = text.strip()
    status = enhanced_status(text)
    if status is not None:
        label = f"{code} {status[0]}.{status[1]}.{status[2]}"
        text = text[_ENHANCED.match(text).end():].strip()  # type: ignore[union-attr]
    else:
        label = str(code)
    message = f"{_STAGE_NAME[stage]}: {text}" if text else f"{_STAGE_NAME[stage]}: SMTP {code}"
    klass = code // 100
    if code == 421:
        return RateLimited(retry_after)
    # Only an addressing or mailbox status (X.1.x, X.2.x) says something about the address;
    # other temporary replies are the server's trouble and stay out of the error segment (R13).
    about_address = status is not None and status[1] in (1, 2)
    if klass == 4:
        if status is not None and status[0] == 4 and (status[1] == 7 or (status[1], status[2]) in _SERVER_BUSY):
            return RateLimited(retry_after)
        return TemporaryFailure(label, message, address_fault=about_address)
    if stage == "connect":
        return TemporaryFailure(label, message, address_fault=False)
    if klass == 5:
        if stage == "mail":
            return PermanentFailure(label, message)
        if status is not None and status[0] == 5:
            subject, detail = status[1], status[2]
            if (subject == 1 and detail not in _SENDER_SUBJECT_1) or (subject, detail) == (2, 1):
                return PermanentFailure(label, message, "all")
            return PermanentFailure(label, message)
        if stage == "rcpt" and code in _BAD_MAILBOX:
            return PermanentFailure(label, message, "all")
        return PermanentFailure(label, message)
    return TemporaryFailure(label, f"{message} (unexpected reply)", address_fault=False)
