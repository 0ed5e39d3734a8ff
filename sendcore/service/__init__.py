"""Service mode: ``sendcore serve``, one engine behind an HTTP API (see docs/service.md).

``Service`` runs the engine with its journal and the durable outcome log;
``build_app`` is the aiohttp application around it; ``serve`` runs both until
SIGTERM or SIGINT. ``TokenStore`` manages the bearer tokens.
"""

from __future__ import annotations

from .app import Service, build_app, serve
from .tokens import SCOPES, TokenStore

__all__ = ["SCOPES", "Service", "TokenStore", "build_app", "serve"]
