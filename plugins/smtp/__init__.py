"""sendcore's bundled ``smtp`` provider: email through an SMTP relay, over a small pool of reused sessions.

Registered through the ``sendcore`` entry point (``smtp = "sendcore_smtp"``),
and only when ``[providers.smtp]`` is configured; its options are the
``[providers.smtp.options]`` table (see ``SmtpOptions``)::

    [providers.smtp.options]
    host = "smtp.example.com"
    starttls = true
    from = "Acme <news@acme.example>"
    username = "acme"                 # the password is read from $SMTP_PASSWORD (password_env)
    pool_size = 4

A send's ``body`` is the text part, ``metadata["subject"]`` the subject,
``metadata["html"]`` an optional HTML alternative and ``metadata["from"]``
overrides ``from``. Replies are mapped as ``codes.py`` tabulates.
"""

from __future__ import annotations

from typing import Any, Callable

from sendcore.hookspecs import hookimpl

from .codes import classify, enhanced_status
from .message import Prepared, message_id, prepare
from .options import SmtpOptions
from .pool import ConnectionPool
from .provider import SmtpProvider

__all__ = [
    "ConnectionPool",
    "Prepared",
    "SmtpOptions",
    "SmtpProvider",
    "classify",
    "enhanced_status",
    "message_id",
    "prepare",
    "sendcore_register_providers",
]


@hookimpl
def sendcore_register_providers(register: Callable[[Any], None], settings: Any) -> None:
    """Register the provider when ``[providers.smtp]`` is configured; its options are checked here."""
    conf = settings.providers.get("smtp")
    if conf is not None:
        register(SmtpProvider.from_options(conf.options))
