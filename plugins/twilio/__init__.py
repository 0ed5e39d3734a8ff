"""sendcore's bundled ``twilio`` provider: SMS through Twilio's Messages REST API.

Registered through the ``sendcore`` entry point (``twilio = "sendcore_twilio"``),
and only when ``[providers.twilio]`` is configured; its options are the
``[providers.twilio.options]`` table (see ``TwilioOptions``)::

    [providers.twilio.options]
    account_sid = "AC..."
    from = "+15005550006"            # or messaging_service_sid = "MG..."
    status_callback = "https://example.com/twilio/status"
    # the auth token is read from $TWILIO_AUTH_TOKEN (auth_token_env)
"""

from __future__ import annotations

from typing import Any, Callable

from sendcore.hookspecs import hookimpl

from .codes import API_CODES, DELIVERY_CODES, RATE_LIMIT_CODES
from .options import TwilioOptions
from .provider import TwilioProvider, retry_after_seconds
from .signature import SIGNATURE_HEADER, compute_signature

__all__ = [
    "API_CODES",
    "DELIVERY_CODES",
    "RATE_LIMIT_CODES",
    "SIGNATURE_HEADER",
    "TwilioOptions",
    "TwilioProvider",
    "compute_signature",
    "retry_after_seconds",
    "sendcore_register_providers",
]


@hookimpl
def sendcore_register_providers(register: Callable[[Any], None], settings: Any) -> None:
    """Register the provider when ``[providers.twilio]`` is configured; its options are checked here."""
    conf = settings.providers.get("twilio")
    if conf is not None:
        register(TwilioProvider.from_options(conf.options))
