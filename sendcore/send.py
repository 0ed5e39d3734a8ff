"""The values that cross sendcore's boundaries: sends, provider results, outcomes, batches.

Everything here is a msgspec ``Struct`` so that it encodes to JSON or MessagePack
for the journal and the wire without a translation layer.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal, NamedTuple, Union

import msgspec

__all__ = [
    "Accepted",
    "Batch",
    "CancelReport",
    "Explanation",
    "Origin",
    "Outcome",
    "PermanentFailure",
    "RateLimited",
    "Reason",
    "Rejection",
    "Result",
    "Send",
    "Stats",
    "Status",
    "SubmitReport",
    "TemporaryFailure",
]


class Origin(str, enum.Enum):
    """Why a send exists; decides which policies apply to it (R2)."""

    TRANSACTIONAL = "transactional"
    FLOW = "flow"
    CAMPAIGN = "campaign"


#: Default priority of each origin: lower leaves first (R3).
ORIGIN_PRIORITY: dict[str, int] = {
    Origin.TRANSACTIONAL: 0,
    Origin.FLOW: 1,
    Origin.CAMPAIGN: 2,
}


class Status(str, enum.Enum):
    """What happened to a send. The first four are final (R21)."""

    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEFERRED = "deferred"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"

    @property
    def is_final(self) -> bool:
        """True for the four statuses that end a send's life."""
        return self in _FINAL


_FINAL = frozenset({Status.SENT, Status.SKIPPED, Status.FAILED, Status.CANCELLED})


class Reason(str, enum.Enum):
    """The rule or event behind an outcome."""

    ACCEPTED = "accepted"
    SMART_SENDING = "smart_sending"
    FREQUENCY_CAP = "frequency_cap"
    QUIET_HOURS = "quiet_hours"
    SPACING = "spacing"
    ERROR_SEGMENT = "error_segment"
    SUPPRESSED = "suppressed"
    EXPIRED = "expired"
    LATE_LOCAL = "late_local"
    RATE_LIMIT = "rate_limit"
    TEMPORARY_FAILURE = "temporary_failure"
    PERMANENT_FAILURE = "permanent_failure"
    MAX_ATTEMPTS = "max_attempts"
    CANCELLED = "cancelled"
    POLICY = "policy"
    DELIVERY_REPORT = "delivery_report"
    #: A policy, a plugin hook or the handling of a provider answer raised; ``detail`` has the exception.
    ERROR = "error"


class Send(msgspec.Struct, kw_only=True, frozen=True, gc=False, omit_defaults=True, forbid_unknown_fields=True):
    """One message to one address, as the platform submits it.

    Times are epoch seconds (UTC) or timezone-aware datetimes; naive datetimes
    are rejected at submit. ``send_at=None`` means "as soon as allowed".
    ``local_send_at`` ("2027-01-12T10:00") schedules at a wall-clock time in the
    recipient's zone instead (R8b). ``smart_sending`` and ``quiet_hours`` set to
    False switch those rules off for this send only.
    """

    id: str
    recipient: str
    channel: str
    to: str
    origin: Origin
    origin_id: str = ""
    send_at: Union[float, datetime, None] = None
    body: str = ""
    priority: Union[int, None] = None
    tags: tuple[str, ...] = ()
    timezone: Union[str, None] = None
    carrier: Union[str, None] = None
    provider: Union[str, None] = None
    sender: Union[str, None] = None
    expires_at: Union[float, datetime, None] = None
    local_send_at: Union[str, None] = None
    smart_sending: bool = True
    quiet_hours: bool = True
    metadata: Union[dict[str, Any], None] = None


# Provider results: one per send of a batch, in order (R18).


class Accepted(msgspec.Struct, frozen=True, gc=False, tag="accepted"):
    """The provider took the send; ``provider_id`` is its message id."""

    provider_id: str = ""


class TemporaryFailure(msgspec.Struct, frozen=True, gc=False, tag="temporary_failure"):
    """A failure worth retrying (timeout, 5xx, carrier busy).

    ``address_fault`` says the failure is the address's (a handset off, a
    full mailbox): the address then joins the error segment (R13). Set it to
    False for failures of the provider or the network (a 503, a timeout, a
    refused connection), which say nothing about the address.
    """

    code: str = ""
    message: str = ""
    address_fault: bool = True


class PermanentFailure(msgspec.Struct, frozen=True, gc=False, tag="permanent_failure"):
    """A failure that retrying cannot fix; ``suppress`` adds a suppression entry (R14)."""

    code: str = ""
    message: str = ""
    suppress: Union[Literal["marketing", "all"], None] = None


class RateLimited(msgspec.Struct, frozen=True, gc=False, tag="rate_limited"):
    """The provider pushed back; the whole route slows for ``retry_after`` seconds."""

    retry_after: float = 1.0


Result = Union[Accepted, TemporaryFailure, PermanentFailure, RateLimited]


class InvalidResult(msgspec.Struct, frozen=True, gc=False, tag="invalid"):
    """Stands for an answer that is not a valid ``Result`` (a provider bug); retried as a temporary failure.

    The engine puts it in place of the bad item so the rest of the batch is
    recorded and the journal can hold what the core saw.
    """

    detail: str = ""


class Outcome(msgspec.Struct, kw_only=True, frozen=True, gc=False, omit_defaults=True):
    """A decision or event about one send, as reported to the platform (R21)."""

    send_id: str
    status: Status
    reason: Reason
    at: float
    attempt: int = 0
    provider: str = ""
    provider_id: str = ""
    detail: str = ""
    channel: str = ""
    recipient: str = ""
    until: Union[float, None] = None


class Batch(msgspec.Struct, kw_only=True, frozen=True):
    """Sends handed to one provider call. Never mixes providers, senders or channels (R19)."""

    id: int
    provider: str
    channel: str
    sender: str
    carrier: str
    sends: list[Send]
    attempts: list[int]


class Rejection(NamedTuple):
    """A submitted item that was not accepted, with the field at fault in ``reason``."""

    index: int
    id: Union[str, None]
    reason: str


class SubmitReport(msgspec.Struct, kw_only=True, frozen=True):
    """What ``submit`` did: how many items were accepted and why the others were not (R23)."""

    accepted: int
    rejected: list[Rejection]
    accepted_ids: list[str] = []


class CancelReport(msgspec.Struct, kw_only=True, frozen=True):
    """What ``cancel`` did (R20): ``too_late`` were already handed to a provider."""

    cancelled: list[str]
    too_late: list[str]
    unknown: list[str]


class Explanation(msgspec.Struct, kw_only=True, frozen=True):
    """Why a send is where it is (R20b).

    ``state`` is ``scheduled`` (in the timing wheel), ``queued`` (in a route
    queue), ``in_flight`` (handed to a provider) or ``final``. ``rule`` names
    what holds or decided it; ``earliest`` is the first instant it may leave.
    """

    send_id: str
    state: str
    rule: Union[str, None] = None
    earliest: Union[float, None] = None
    route: Union[str, None] = None
    attempt: int = 0
    outcome: Union[Outcome, None] = None
    detail: str = ""


class Stats(msgspec.Struct, kw_only=True, frozen=True):
    """A frozen snapshot of counts: pending by state, outcomes by status and reason."""

    pending: int
    scheduled: int
    queued: int
    in_flight: int
    submitted: int
    rejected: int
    final: dict[str, int]
    reasons: dict[str, int]
    events: dict[str, int]
    #: Delivery reports that named no sent message within retention (counted, not errors).
    unknown_reports: int = 0
    #: Exceptions isolated to one send or batch (a policy or hook that raised, a provider answer
    #: that could not be applied): each became that send's outcome or retry instead of stopping the engine.
    errors: int = 0
