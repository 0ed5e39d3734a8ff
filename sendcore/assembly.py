"""Building an engine's parts from settings and plugins: one path for ``Engine.start`` and ``check-config``.

``assemble`` loads the plugins, collects and validates their providers
(whose options are checked as they register), applies the ``[providers.X]``
overrides and builds the core, raising the same ``PluginError`` or
``ConfigError`` the engine would. ``check`` runs it and also reports what
would only show once sends arrive: channels served by several providers with
no choice made, a ``[channels.X] provider`` that is not registered, and what
a provider says would stop it starting here (an unset environment variable).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, NamedTuple, Union

import msgspec

from .core import Core
from .errors import ConfigError
from .plugins import PluginError, PluginHost
from .provider import ProviderSpec, spec_of
from .settings import Settings

__all__ = ["Assembly", "ConfigReport", "assemble", "check"]


class Assembly(NamedTuple):
    """An engine's parts: providers by name, their specs (overrides applied), and how to build its core."""

    providers: dict[str, Any]
    specs: dict[str, ProviderSpec]
    build: Callable[[Settings, list[ProviderSpec]], Core]


def assemble(settings: Settings, host: PluginHost) -> Assembly:
    """Collect and check the providers, apply ``[providers.X]``, and check the core builds.

    Raises ``PluginError`` for a broken plugin or provider declaration and
    ``ConfigError`` naming the key for a bad setting, a provider option a
    provider refused, or a ``[providers.X]`` naming no registered provider.
    """
    providers = host.providers()
    names = [p.name for p in providers]
    for name in settings.providers:
        if name not in names:
            import difflib

            # Plugins that register a provider only when configured count too ("twillio" -> "twilio").
            known = sorted(set(names) | {info.name for info in host.plugins()})
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"providers.{name}: no registered provider is named {name!r}{hint} "
                f"(registered: {', '.join(sorted(names)) or 'none'})"
            )
    specs = {p.name: spec_of(p, settings.providers.get(p.name)) for p in providers}
    resolve_timezone, lookup_carrier, policies = host.timezone_resolver(), host.carrier_lookup(), host.policy_chain()

    def build(s: Settings, provider_specs: list[ProviderSpec]) -> Core:
        return Core(s, providers=provider_specs, resolve_timezone=resolve_timezone,
                    lookup_carrier=lookup_carrier, chain=policies)

    return Assembly({p.name: p for p in providers}, specs, build)


class ConfigReport(msgspec.Struct, kw_only=True):
    """What ``check`` found: errors (the engine would refuse to start), warnings, and what would run."""

    errors: list[str] = []
    warnings: list[str] = []
    #: Provider name -> (the plugin that registered it, its channels).
    providers: dict[str, tuple[str, tuple[str, ...]]] = {}
    #: Channel -> the provider its sends go to when they name none ("" when none can be chosen).
    channels: dict[str, str] = {}

    @property
    def ok(self) -> bool:
        """True when the engine would start with these settings and plugins."""
        return not self.errors


def check(
    settings: Settings,
    *,
    plugins: Iterable[Any] = (),
    load_entrypoints: Union[bool, None] = None,
    environ: Union[Mapping[str, str], None] = None,
) -> ConfigReport:
    """Build what ``Engine(settings, plugins=...).start()`` builds, without starting anything; report findings.

    Installed plugins load as they would in the engine (``load_entrypoints``
    as in ``Engine``). A provider may implement ``problems()`` returning what
    would stop it from starting here (an environment variable that is not
    set); those are reported as warnings, since a configuration is often
    checked on a machine without the secrets.
    """
    report = ConfigReport()
    host = PluginHost(settings, plugins=plugins, load_entrypoints=load_entrypoints, environ=environ)
    try:
        parts = assemble(settings, host)
        core = parts.build(settings, list(parts.specs.values()))
    except (PluginError, ConfigError, ValueError) as exc:
        report.errors.append(str(exc))
        return report
    for name, p in sorted(parts.providers.items()):
        report.providers[name] = (host.provider_plugin(name), tuple(p.channels))
        problems = getattr(p, "problems", None)
        if callable(problems):
            for problem in problems():
                report.warnings.append(f"provider {name!r}: {problem}")
    for channel in sorted(core.channels):
        got = core.channel_provider(channel)
        report.channels[channel] = got if isinstance(got, str) else ""
        if isinstance(got, str) and parts.specs[got].fallback and settings.channel(channel).provider is None:
            report.warnings.append(f"channel {channel!r}: only the development provider {got!r} serves it "
                                   "(nothing really leaves); configure a provider for it if sends must go out")
    report.errors.extend(core.channel_problems())
    return report
