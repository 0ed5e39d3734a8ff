"""Twilio's error codes and what each means for the send, the address and the route: the one table to edit.

Two families arrive at different times. The REST API answers a create-message
request at once with a JSON error (``code``, ``message``, ``more_info``,
``status``) when Twilio itself refuses the message (2xxxx codes); carriers'
verdicts come later, in status callbacks, as ``ErrorCode`` on an
``undelivered`` or ``failed`` report (3xxxx codes). Meanings are Twilio's, from
its error pages ``https://www.twilio.com/docs/api/errors/<code>``.
"""

from __future__ import annotations

from typing import Literal, Union

import msgspec

__all__ = [
    "API_CODES",
    "DELIVERY_CODES",
    "RATE_LIMIT_CODES",
    "STOP",
    "ApiCode",
    "DeliveryCode",
]

#: Stands for "the ``stop_suppress`` option decides" in ``ApiCode.suppress``.
STOP = "stop"

Suppress = Union[Literal["marketing", "all", "stop"], None]


class ApiCode(msgspec.Struct, frozen=True):
    """A REST API refusal that retrying cannot fix: a ``PermanentFailure`` with this suppression."""

    meaning: str
    suppress: Suppress = None


class DeliveryCode(msgspec.Struct, frozen=True):
    """What a carrier error in a status callback means for the address (R13, R14) and the route."""

    meaning: str
    temporary: bool = False
    suppress: Union[Literal["marketing", "all"], None] = None
    retry_after: Union[float, None] = None


#: REST API error codes with a meaning of their own. Any other 4xx is a
#: ``PermanentFailure`` without suppression that names Twilio's code and message.
API_CODES: dict[int, ApiCode] = {
    # 21211 "Invalid 'To' Phone Number": the number cannot exist, so no send to it can ever succeed.
    21211: ApiCode("Invalid 'To' phone number", "all"),
    # 21614 "'To' number is not a valid mobile number": a landline or other line that cannot take SMS.
    21614: ApiCode("'To' number is not a valid mobile number", "all"),
    # 21610 "Attempt to send to unsubscribed recipient": the recipient replied STOP to this sender, and
    # Twilio now blocks every message from it, transactional ones too; hence the ``stop_suppress`` option.
    21610: ApiCode("Attempt to send to unsubscribed recipient (replied STOP)", STOP),
    # 21408 "Permission to send an SMS has not been enabled for the region indicated by the 'To' number":
    # an account setting (geo permissions), not a fault of the address.
    21408: ApiCode("Permission to send an SMS has not been enabled for the region of the 'To' number"),
    # 21612 "The 'To' phone number is not currently reachable via SMS" (this To/From combination cannot
    # be routed): the sender's fault as much as the number's, so the address is not suppressed.
    21612: ApiCode("The 'To' number cannot be reached from this sender"),
}

#: REST API codes that mean "too many requests": the route slows down for ``Retry-After``.
#: 20429 "Too Many Requests" comes with HTTP 429, which is treated the same with any code.
RATE_LIMIT_CODES = frozenset({20429})

#: Carrier error codes of status callbacks with a meaning of their own. Any
#: other code is a plain undelivered report naming it.
DELIVERY_CODES: dict[int, DeliveryCode] = {
    # 30003 "Unreachable destination handset": switched off or out of coverage, a temporary state,
    # so the address joins the error segment (R13) rather than the suppression list.
    30003: DeliveryCode("Unreachable destination handset", temporary=True),
    # 30005 "Unknown destination handset": the number is not in service.
    30005: DeliveryCode("Unknown destination handset", suppress="all"),
    # 30006 "Landline or unreachable carrier": the number cannot take SMS.
    30006: DeliveryCode("Landline or unreachable carrier", suppress="all"),
    # 30007 "Message filtered" (carrier violation): the content or sender was filtered, not the address.
    30007: DeliveryCode("Message filtered by the carrier"),
    # 30022 "US A2P 10DLC - Rate Limits Exceeded": the carrier rejected the message for exceeding the
    # campaign's throughput, so the route slows down as it would for a RateLimited answer.
    30022: DeliveryCode("US A2P 10DLC rate limits exceeded", retry_after=1.0),
}
