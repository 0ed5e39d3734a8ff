"""sendcore's bundled sandbox provider: a deterministic simulated carrier network.

Registered through the ``sendcore`` entry point (``sandbox = "sendcore_sandbox"``)
exactly as a third-party provider plugin would be. Configure it with the
``[providers.sandbox.options]`` table (see ``SandboxOptions``).
"""

from __future__ import annotations

from typing import Callable

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
def sendcore_register_providers(register: Callable[[object], None]) -> None:
    """Register one sandbox network with default options.

    The engine hands the ``[providers.sandbox.options]`` table to the provider
    at ``start``, so settings reach it without this hook seeing them.
    """
    register(SandboxProvider.from_options(None))
