"""The built-in policies, as a plugin: registered through ``sendcore_register_policies`` like a third party's.

The engine registers this module before any other plugin, as pytest does its
default plugins, under the name ``sendcore-builtin-policies``; its hook runs
first (``tryfirst``), so the built-ins lead the chain in this order:

=================  =======================================================
expiry             R15: a send that cannot leave before its ``expires_at`` is skipped
suppression        R14: suppressed addresses (marketing or all)
error_segment      R13: addresses with a recent temporary delivery error skip campaigns
quiet_hours        R8, R9, R11, R12: quiet hours in the recipient's zone, jurisdiction windows
smart_sending      R4: skip a message if the recipient got one on the channel recently
frequency_caps     R5: at most N sends per window per recipient
spacing            R6: no send of one kind within a gap after another
=================  =======================================================

Each is registered as a factory, built once per core from that core's
settings: at start, and again from the journal's recorded settings when it
recovers. Blocking the plugin (``[plugins] block = ["sendcore-builtin-policies"]``
or ``SENDCORE_BLOCK_PLUGINS``) removes them all; a plugin of your own can then
register the ones it keeps from ``FACTORIES``, in its own order, next to its
replacements.
"""

from __future__ import annotations

from typing import Callable

from ..hookspecs import hookimpl
from .base import Policy, PolicyContext, PolicyFactory
from .expiry import Expiry
from .frequency_caps import FrequencyCaps
from .quiet_hours import QuietHours
from .smart_sending import SmartSending
from .spacing import Spacing

__all__ = ["FACTORIES", "NAME", "sendcore_register_policies"]

#: The name the plugin is registered (and blocked) under.
NAME = "sendcore-builtin-policies"


def expiry(context: PolicyContext) -> Policy:
    """R15: skip a send that cannot leave before its ``expires_at``."""
    return Expiry()


def suppression(context: PolicyContext) -> Policy:
    """R14: the core's suppression list, which ``Core.suppress`` and provider answers fill."""
    return context.suppression


def error_segment(context: PolicyContext) -> Policy:
    """R13: the core's error segment, which provider answers fill."""
    return context.error_segment


def quiet_hours(context: PolicyContext) -> Policy:
    """R8, R9, R11, R12: quiet hours in the recipient's zone and the jurisdiction packs' windows."""
    return QuietHours(context.settings, context.packs)


def smart_sending(context: PolicyContext) -> Policy:
    """R4: skip a message if the recipient got one on the channel within the window."""
    return SmartSending(context.settings, context.history)


def frequency_caps(context: PolicyContext) -> Policy:
    """R5: the configured frequency caps (and the jurisdiction packs' caps)."""
    return FrequencyCaps(context.history)


def spacing(context: PolicyContext) -> Policy:
    """R6: the configured cross-channel spacing rules."""
    return Spacing(list(context.settings.spacing), context.history)


#: The built-in factories, in the order they run.
FACTORIES: tuple[PolicyFactory, ...] = (expiry, suppression, error_segment, quiet_hours, smart_sending,
                                        frequency_caps, spacing)


@hookimpl(tryfirst=True)
def sendcore_register_policies(register: Callable[[object], None]) -> None:
    """Register the built-in policies, first in the chain."""
    for factory in FACTORIES:
        register(factory)
