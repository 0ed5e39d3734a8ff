"""sendcore: a headless scheduling and send-rate engine with provider plugins.

The public surface is what ``__all__`` lists; everything else may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DeliveryReportError, InputError, PendingLimitError, SendcoreError
from .provider import DeliveryReport, Provider, ProviderContext, ProviderSpec
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
from .hookspecs import hookimpl
from .settings import Settings

__all__ = [
    "Accepted",
    "Batch",
    "CancelReport",
    "ConfigError",
    "DeliveryReport",
    "DeliveryReportError",
    "Engine",
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
    "hookimpl",
]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .engine import Engine


def __getattr__(name: str) -> Any:
    # The asyncio shell loads on first use, so ``import sendcore.core`` stays
    # free of the event loop (the sans-I/O core is usable on its own).
    if name == "Engine":
        from .engine import Engine

        return Engine
    raise AttributeError(f"module 'sendcore' has no attribute {name!r}")
