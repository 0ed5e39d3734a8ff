"""sendcore's bundled sandbox provider: a deterministic simulated carrier network.

Registered through the ``sendcore`` entry point (``sandbox = "sendcore_sandbox"``)
exactly as a third-party provider plugin would be. Configure it with the
``[providers.sandbox.options]`` table (see ``SandboxOptions``).
"""

from __future__ import annotations

from typing import Any, Callable

from sendcore.hookspecs import hookimpl

from .options import SandboxOptions
from .provider import CarrierTraffic, SandboxProvider, SandboxTraffic, StreamTraffic

__all__ = [
    "CarrierTraffic",
    "SandboxOptions",
    "SandboxProvider",
    "SandboxTraffic",
    "StreamTraffic",
    "sendcore_register_providers",
]


@hookimpl
def sendcore_register_providers(register: Callable[[object], None], settings: Any) -> None:
    """Register one sandbox network, its options checked against ``[providers.sandbox.options]``.

    Checking them here (not only at ``start``) lets ``sendcore check-config``
    report a bad option before anything runs. The sandbox is a fallback
    provider: it serves a channel only when named or when nothing else does.
    """
    conf = settings.providers.get("sandbox")
    register(SandboxProvider.from_options(conf.options if conf is not None and conf.options else None))
