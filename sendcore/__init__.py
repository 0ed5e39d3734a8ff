"""sendcore: a headless scheduling and send-rate engine with provider plugins.

The public surface is what ``__all__`` lists; everything else may change.
"""

from __future__ import annotations

from .errors import ConfigError, InputError, PendingLimitError, SendcoreError
from .provider import Provider, ProviderContext, ProviderSpec
from .send import (
    Accepted,
    Batch,
    CancelReport,
    Explanation,
    Origin,
    Outcome,
    PermanentFailure,
    RateLimited,
    Reason,
    Rejection,
    Result,
    Send,
    Stats,
    Status,
    SubmitReport,
    TemporaryFailure,
)
from .settings import Settings

__all__ = [
    "Accepted",
    "Batch",
    "CancelReport",
    "ConfigError",
    "Explanation",
    "InputError",
    "Origin",
    "Outcome",
    "PendingLimitError",
    "PermanentFailure",
    "Provider",
    "ProviderContext",
    "ProviderSpec",
    "RateLimited",
    "Reason",
    "Rejection",
    "Result",
    "Send",
    "SendcoreError",
    "Settings",
    "Stats",
    "Status",
    "SubmitReport",
    "TemporaryFailure",
]

__version__ = "0.1.0"
