"""Every pluggy hook a sendcore plugin can implement, with its reference documentation.

A plugin is a module or an object with functions named after these hooks and
marked with ``@sendcore.hookimpl``; it is found through the ``sendcore``
entry-point group of an installed distribution, or passed to
``Engine(settings, plugins=[obj])``. A function whose name starts with
``sendcore_`` but matches no hook here is an error when the plugins load, so a
misspelled hook fails loudly instead of silently doing nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Union

import pluggy

if TYPE_CHECKING:
    from .send import Outcome, Send
    from .settings import Settings

__all__ = [
    "PROJECT",
    "hookimpl",
    "hookspec",
    "sendcore_lookup_carrier",
    "sendcore_outcome",
    "sendcore_register_policies",
    "sendcore_register_providers",
    "sendcore_resolve_timezone",
]

#: The pluggy project name, which is also the entry-point group plugins are installed under.
PROJECT = "sendcore"

#: Marks a hook specification (used only in this module).
hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a plugin's hook implementation: ``@sendcore.hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def sendcore_register_providers(register: Callable[[Any], None], settings: Settings) -> None:
    """Register the provider objects this plugin offers.

    Called once, when the engine starts, for every plugin, with the engine's
    ``settings`` (take the argument only if you need it: a provider that
    should exist only when configured checks ``settings.providers``). Call
    ``register(provider)`` once per provider; a provider is any object with
    ``name`` (unique across all plugins), ``channels``, ``async send(batch)``
    and optionally ``max_batch``, ``rate``, ``burst``, ``daily_cap``,
    ``max_concurrency``, ``timeout``, ``async start(context)``, ``async close()``
    (see ``sendcore.provider.Provider``). A provider missing one of the
    required attributes, or whose name another plugin already registered, is
    an error naming the plugin. All implementations are called (not
    firstresult); the return value is ignored.

    Example::

        @sendcore.hookimpl
        def sendcore_register_providers(register, settings):
            if "acme" in settings.providers:
                register(AcmeProvider.from_options(settings.providers["acme"].options))
    """


@hookspec(firstresult=True)
def sendcore_lookup_carrier(send: Send) -> Union[str, None]:
    """Return the carrier name of ``send.to``, or None to let the next source decide (R17).

    Called by the core for a phone-number send that gives no ``carrier`` of
    its own, before ``phonenumbers``' carrier data is consulted. firstresult:
    the first implementation returning a value other than None wins. Keep it
    fast and synchronous (it runs inside the core, once per send as it comes
    due): use a local table or a cache, never a network call.

    Example::

        @sendcore.hookimpl
        def sendcore_lookup_carrier(send):
            return PORTED_NUMBERS.get(send.to)
    """


@hookspec(firstresult=True)
def sendcore_resolve_timezone(send: Send) -> Union[str, None]:
    """Return the IANA timezone of ``send``'s recipient, or None to let the next source decide (R10).

    Called by the core for a send that gives no ``timezone`` of its own,
    before the phone number's zones and the configured default. firstresult:
    the first implementation returning a value other than None wins. Like
    ``sendcore_lookup_carrier`` it runs inside the core: synchronous, no I/O.

    Example::

        @sendcore.hookimpl
        def sendcore_resolve_timezone(send):
            return PROFILE_ZONES.get(send.recipient)    # e.g. "Europe/Paris"
    """


@hookspec
def sendcore_register_policies(register: Callable[[Any], None], settings: Settings) -> None:
    """Register extra policies, appended after the built-in ones.

    Called once, when the engine starts, for every plugin, with the engine's
    ``settings`` (take the argument only if you need it). Call
    ``register(policy)`` with a ``sendcore.policies.base.Policy`` (an object
    with ``name``, ``stages`` and ``check(entries, now, stage, verdicts)``),
    or with a factory ``f(context) -> Policy`` taking a
    ``sendcore.policies.base.PolicyContext``: it is called once per core with
    that core's settings and state, so a core rebuilt from the journal gets
    a policy built from the recorded settings. The built-in policies are
    registered the same way, first, by the ``sendcore-builtin-policies``
    plugin (``sendcore.policies.builtin``), which a block list can remove.
    The resulting order is visible in ``engine.policies``. All
    implementations are called (not firstresult); the return value is ignored.

    Example::

        @sendcore.hookimpl
        def sendcore_register_policies(register):
            register(NoSendsOnElectionDay())
    """


@hookspec
def sendcore_outcome(outcome: Outcome) -> None:
    """Observe one outcome the engine emits (R21): final outcomes and events alike.

    Called for every outcome, in the order the engine emits them, just
    before it reaches the ``engine.outcomes()`` streams. It runs on the
    engine's event loop between scheduling passes, so keep it cheap and
    synchronous: append to a buffer or bump a counter, and do slow work
    (HTTP webhooks, database writes) in a task of your own. An exception
    raised here is handed to the event loop's exception handler and does not
    stop sending. All implementations are called; the return value is
    ignored.

    Example::

        @sendcore.hookimpl
        def sendcore_outcome(outcome):
            METRICS[outcome.status.value] += 1
    """
