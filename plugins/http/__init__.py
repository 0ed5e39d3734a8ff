"""sendcore's bundled `http` provider (being built: it registers nothing yet)."""

from __future__ import annotations

from typing import Any, Callable

from sendcore.hookspecs import hookimpl


@hookimpl
def sendcore_register_providers(register: Callable[[Any], None], settings: Any) -> None:
    """Register the provider when `[providers.http]` is configured."""
