"""Exceptions raised by sendcore. Every input error names the field at fault."""

from __future__ import annotations

__all__ = ["ConfigError", "DeliveryReportError", "InputError", "JournalError", "PendingLimitError", "SendcoreError"]


class SendcoreError(Exception):
    """Base class of every error sendcore raises on purpose."""


class InputError(SendcoreError, ValueError):
    """A value given to sendcore is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ConfigError(SendcoreError, ValueError):
    """A settings file or value is invalid; the message names the key."""


class PendingLimitError(SendcoreError):
    """Back-pressure (R24): accepting the batch would exceed ``max_pending``."""

    def __init__(self, pending: int, requested: int, limit: int) -> None:
        super().__init__(
            f"max_pending: {pending} sends pending, {requested} more would exceed the limit of {limit}; "
            "wait for sends to leave or raise max_pending"
        )
        self.pending = pending
        self.requested = requested
        self.limit = limit


class JournalError(SendcoreError):
    """The journal cannot be opened, read or written; the message names the file and what to do."""


class DeliveryReportError(SendcoreError):
    """A delivery report payload is malformed or its signature does not check; the message says which."""
