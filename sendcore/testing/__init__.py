"""What sendcore users test with: a virtual clock and the provider contract kit."""

from __future__ import annotations

from .clock import VirtualClock
from .contract import ContractError, ProviderContract, check_provider

__all__ = ["ContractError", "ProviderContract", "VirtualClock", "check_provider"]
