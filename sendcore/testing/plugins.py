"""A plugin object that registers given provider objects: the usual way to hand providers to an Engine in tests."""

from __future__ import annotations

from typing import Any, Callable

from ..hookspecs import hookimpl

__all__ = ["ProvidersPlugin"]


class ProvidersPlugin:
    """Registers the given providers through ``sendcore_register_providers``.

    ``Engine(settings, plugins=[ProvidersPlugin(MyProvider())])``.
    """

    def __init__(self, *providers: Any) -> None:
        self.providers = providers

    @hookimpl
    def sendcore_register_providers(self, register: Callable[[Any], None]) -> None:
        """Register each provider given at construction."""
        for p in self.providers:
            register(p)
