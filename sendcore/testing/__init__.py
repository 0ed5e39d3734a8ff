"""What sendcore users test with: a virtual clock, the provider contract kit and a providers plugin."""

from __future__ import annotations

from .clock import VirtualClock
from .contract import ContractError, ProviderContract, check_provider
from .plugins import ProvidersPlugin

__all__ = ["ContractError", "ProviderContract", "ProvidersPlugin", "VirtualClock", "check_provider"]
