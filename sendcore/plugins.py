"""Plugin loading: a small typed facade over pluggy, so nothing else calls ``pm.hook.x`` untyped.

``PluginHost`` owns the pluggy ``PluginManager``. It loads the ``sendcore``
entry-point group once, lazily (on first use), filtered by an allow/block
list, registers the plugin objects the caller passes, and refuses any
``sendcore_*`` function that matches no hook specification. The providers and
policies plugins register are validated here, with errors that name the plugin.

Which installed plugins load (names are entry-point names or distribution names):

- ``SENDCORE_PLUGINS``: comma-separated allow-list; unset or "" = every installed plugin.
- ``SENDCORE_BLOCK_PLUGINS``: comma-separated block list.
- ``Settings.plugins.allow`` / ``Settings.plugins.block``: the same, from settings.
  A plugin must pass both allow-lists that are set, and be in neither block list.
- ``SENDCORE_LOAD_ENTRYPOINTS=0`` (or ``load_entrypoints=False``) loads no installed
  plugin at all; the test suite sets it so stray installed plugins never leak in.

Plugin objects given explicitly (``PluginHost(plugins=[...])``,
``Engine(settings, plugins=[...])``) are always registered: the caller chose them.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
from importlib import metadata
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, NamedTuple, Union

import pluggy

from . import hookspecs
from .errors import ConfigError, SendcoreError
from .policies.base import check_policy, is_factory

if TYPE_CHECKING:
    from .send import Outcome, Send
    from .settings import Settings

__all__ = ["PluginError", "PluginHost", "PluginInfo"]

ENV_ALLOW = "SENDCORE_PLUGINS"
ENV_BLOCK = "SENDCORE_BLOCK_PLUGINS"
ENV_LOAD = "SENDCORE_LOAD_ENTRYPOINTS"

_HOOK_PREFIX = "sendcore_"
_HOOK_NAMES = tuple(sorted(n for n in vars(hookspecs) if n.startswith(_HOOK_PREFIX)))

# What pluggy's HookImpl expects for an undecorated ``sendcore_*`` function.
_PLAIN_IMPL: dict[str, Any] = {
    "wrapper": False,
    "hookwrapper": False,
    "optionalhook": False,
    "tryfirst": False,
    "trylast": False,
    "specname": None,
}


class PluginError(SendcoreError):
    """A plugin is broken or misconfigured; the message names the plugin and what is wrong."""


class PluginInfo(NamedTuple):
    """A loaded plugin: its registered name, where it came from, and the version."""

    #: The name it is registered under (its entry-point name for installed plugins).
    name: str
    #: The distribution that installed it, or "object" for one passed in code.
    source: str
    #: The distribution's version, "" for objects passed in code.
    version: str


class _Manager(pluggy.PluginManager):
    """A PluginManager that also treats undecorated ``sendcore_*`` functions as hook implementations.

    pluggy ignores an unmarked function, so ``def sendcore_outcom(outcome)``
    (no decorator, misspelled) would silently do nothing; like pytest with its
    ``pytest_`` prefix, we register it so ``check_pending`` can refuse it.
    """

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith(_HOOK_PREFIX):
            if inspect.isroutine(getattr(plugin, name, None)):
                return dict(_PLAIN_IMPL)
        return opts


def _names(value: Union[str, None]) -> list[str]:
    """Split a comma-separated environment value into normalized names."""
    if not value:
        return []
    return [_norm(part) for part in value.split(",") if part.strip()]


def _norm(name: str) -> str:
    # Distribution names compare case- and separator-insensitively (PEP 503).
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _env_flag(value: Union[str, None], default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


class PluginHost:
    """The plugins of one engine: loads them once, lazily, and calls their hooks with types.

    ``settings`` supplies ``plugins.allow``/``plugins.block``; ``plugins`` are
    extra plugin objects (modules, classes or instances with ``sendcore_*``
    hook functions) registered besides the installed ones.
    ``load_entrypoints=None`` reads ``SENDCORE_LOAD_ENTRYPOINTS`` (default on).
    ``environ`` replaces ``os.environ`` (for tests).

    Nothing is imported or registered until the first call that needs the
    plugins (``load()``, ``providers()``, a hook call ...).
    """

    def __init__(
        self,
        settings: Union[Settings, None] = None,
        *,
        plugins: Iterable[Any] = (),
        load_entrypoints: Union[bool, None] = None,
        environ: Union[Mapping[str, str], None] = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._load_entrypoints = (
            _env_flag(env.get(ENV_LOAD), True) if load_entrypoints is None else bool(load_entrypoints)
        )
        self._env_allow = _names(env.get(ENV_ALLOW))
        self._env_block = _names(env.get(ENV_BLOCK))
        if settings is None:
            from .settings import Settings

            settings = Settings()
        self._settings = settings
        conf = getattr(settings, "plugins", None)
        self._conf_allow = [_norm(n) for n in getattr(conf, "allow", ())]
        self._conf_block = [_norm(n) for n in getattr(conf, "block", ())]
        self._extra: list[Any] = list(plugins)
        self._pm = _Manager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._loaded = False
        self._info: dict[str, PluginInfo] = {}
        self._blocked: list[str] = []
        self._providers: Union[list[Any], None] = None
        self._provider_plugin: dict[str, str] = {}
        self._policies: Union[list[tuple[Any, str]], None] = None

    # Loading

    @property
    def pm(self) -> pluggy.PluginManager:
        """The underlying pluggy manager (loaded). Prefer the typed methods."""
        self.load()
        return self._pm

    def load(self) -> None:
        """Load installed plugins (once) and the extra objects, then check every hook name.

        Raises ``PluginError`` for a plugin that fails to import, implements a
        hook with arguments the hook does not provide, or defines a
        ``sendcore_*`` function that is not a hook. Idempotent.
        """
        if self._loaded:
            return
        # Mark first: a failure leaves the host unusable rather than half-loaded twice.
        self._loaded = True
        # The built-in policies are a plugin like any other (pytest's default plugins), blockable by name.
        from .policies import builtin

        if self._allowed_builtin(builtin.NAME):
            self._pm.register(builtin, name=builtin.NAME)  # not listed in plugins(): it is part of sendcore
        else:
            self._blocked.append(builtin.NAME)
        if self._load_entrypoints:
            self._load_installed()
        for obj in self._extra:
            self._register(obj, None, PluginInfo(self._object_name(obj), "object", ""))
        self._check_pending()

    def register(self, plugin: Any, name: Union[str, None] = None) -> str:
        """Register one more plugin object; returns the name it is registered under.

        Before the providers or policies were collected, it joins them; after,
        only its ``sendcore_outcome``/lookup hooks take effect.
        """
        self.load()
        info = PluginInfo(name or self._object_name(plugin), "object", "")
        registered = self._register(plugin, name, info)
        self._check_pending()
        return registered

    def _load_installed(self) -> None:
        eps = metadata.entry_points(group=hookspecs.PROJECT)
        known: set[str] = set()
        for ep in eps:
            known.add(_norm(ep.name))
            if ep.dist is not None:
                known.add(_norm(ep.dist.name))
        for where, allow in ((ENV_ALLOW, self._env_allow), ("plugins.allow", self._conf_allow)):
            missing = [n for n in allow if n not in known]
            if missing:
                raise PluginError(
                    f"{where}: no installed sendcore plugin is named {', '.join(missing)} "
                    f"(installed: {', '.join(sorted(ep.name for ep in eps)) or 'none'})"
                )
        by_name: dict[str, list[Any]] = {}
        for ep in eps:
            keys = {_norm(ep.name)} | ({_norm(ep.dist.name)} if ep.dist is not None else set())
            if self._allowed(keys):
                by_name.setdefault(ep.name, []).append(ep)
        for name, found in by_name.items():
            dists = sorted({_norm(e.dist.name) if e.dist is not None else "?" for e in found})
            if len(dists) > 1:
                # Two distributions claim one plugin name: loading either silently would be a guess.
                raise PluginError(
                    f"plugin name {name!r} is registered by several installed distributions: "
                    f"{', '.join(f'{d} ({e.value})' for d, e in zip(dists, found))}; uninstall one, or block "
                    "one with SENDCORE_BLOCK_PLUGINS / [plugins] block (by distribution name)"
                )
        seen: set[str] = set()
        for ep in sorted(eps, key=lambda e: e.name):
            dist = ep.dist
            keys = {_norm(ep.name)} | ({_norm(dist.name)} if dist is not None else set())
            if not self._allowed(keys):
                self._blocked.append(ep.name)
                if ep.name not in by_name:  # the name is not also taken by an allowed distribution
                    self._pm.set_blocked(ep.name)
                continue
            if ep.name in seen:
                # The same distribution seen twice on sys.path (e.g. editable + site): load once.
                continue
            seen.add(ep.name)
            source = dist.name if dist is not None else "?"
            version = dist.version if dist is not None else ""
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} (distribution {source} {version}): cannot load entry point "
                    f"{ep.value!r}: {type(exc).__name__}: {exc}"
                ) from exc
            self._register(plugin, ep.name, PluginInfo(ep.name, source, version))

    def _allowed(self, keys: set[str]) -> bool:
        if self._env_allow and not keys & set(self._env_allow):
            return False
        if self._conf_allow and not keys & set(self._conf_allow):
            return False
        return not (keys & set(self._env_block) or keys & set(self._conf_block))

    def _allowed_builtin(self, name: str) -> bool:
        # Only a block list names it: allow lists choose among installed plugins.
        return name not in self._env_block and name not in self._conf_block

    @staticmethod
    def _object_name(obj: Any) -> str:
        name = getattr(obj, "__name__", None)
        if isinstance(name, str):
            return name
        return f"{type(obj).__module__}.{type(obj).__qualname__}@{id(obj):x}"

    def _register(self, plugin: Any, name: Union[str, None], info: PluginInfo) -> str:
        try:
            registered = self._pm.register(plugin, name=name or info.name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {info.name!r}: {self._explain_validation(exc)}") from exc
        except ValueError as exc:  # already registered under that name
            raise PluginError(f"plugin {info.name!r}: {exc}") from exc
        if registered is None:  # blocked by name
            return info.name
        self._info[registered] = PluginInfo(registered, info.source, info.version)
        return registered

    @staticmethod
    def _explain_validation(exc: pluggy.PluginValidationError) -> str:
        text = str(exc)
        m = re.search(r"hookimpl definition: (\w+)\(", text)
        if m and m.group(1) in _HOOK_NAMES:
            spec = inspect.signature(getattr(hookspecs, m.group(1)))
            return f"{text}; the hook's signature is {m.group(1)}{spec}"
        return text

    def _check_pending(self) -> None:
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            problems = []
            for hook_name in sorted(vars(self._pm.hook)):
                caller = getattr(self._pm.hook, hook_name)
                if hook_name.startswith("_") or not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
                    continue
                for impl in caller.get_hookimpls():
                    if impl.optionalhook:
                        continue
                    close = difflib.get_close_matches(hook_name, _HOOK_NAMES, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    problems.append(f"plugin {impl.plugin_name!r} implements {hook_name!r}, which is not a sendcore hook{hint}")
            detail = "; ".join(problems) or str(exc)
            raise PluginError(f"{detail}. Known hooks: {', '.join(_HOOK_NAMES)}") from exc

    # What was loaded

    def plugins(self) -> list[PluginInfo]:
        """Every registered plugin: name, source distribution ("object" for code) and version."""
        self.load()
        return [self._info[n] for n in sorted(self._info) if self._pm.has_plugin(n)]

    @property
    def blocked(self) -> list[str]:
        """Entry-point names of installed plugins the allow/block lists kept out (and the built-in policies'
        plugin, ``sendcore-builtin-policies``, when a block list names it)."""
        self.load()
        return list(self._blocked)

    # Registration hooks

    def _collect(self, hook_name: str, validate: Callable[[Any, str], None]) -> list[tuple[Any, str]]:
        """Call a ``register`` hook plugin by plugin, so each object is attributed to its plugin.

        The order is pluggy's call order (last registered first, tryfirst/trylast honoured).
        """
        caller = getattr(self._pm.hook, hook_name)
        found: list[tuple[Any, str]] = []
        for impl in reversed(caller.get_hookimpls()):
            plugin = impl.plugin_name
            if impl.hookwrapper or impl.wrapper:
                raise PluginError(f"plugin {plugin!r}: {hook_name} cannot be a hook wrapper")

            def register(obj: Any, _plugin: str = plugin) -> None:
                validate(obj, _plugin)
                found.append((obj, _plugin))

            given = {"register": register, "settings": self._settings}
            try:
                impl.function(*[given[a] for a in impl.argnames])
            except (PluginError, ConfigError):
                raise  # a provider's own options error already names its key
            except Exception as exc:
                raise PluginError(f"plugin {plugin!r}: {hook_name} raised {type(exc).__name__}: {exc}") from exc
        return found

    def providers(self) -> list[Any]:
        """The provider objects all plugins registered, validated; collected once.

        Raises ``PluginError`` naming the plugin when a provider lacks ``name``,
        ``channels`` or an async ``send``, or reuses another provider's name.
        """
        self.load()
        if self._providers is None:
            found = self._collect("sendcore_register_providers", _validate_provider)
            by_name: dict[str, str] = {}
            for provider, plugin in found:
                if provider.name in by_name:
                    raise PluginError(
                        f"plugin {plugin!r}: a provider named {provider.name!r} is already registered "
                        f"by plugin {by_name[provider.name]!r}; provider names must be unique"
                    )
                by_name[provider.name] = plugin
            self._provider_plugin = by_name
            self._providers = [p for p, _ in found]
        return list(self._providers)

    def provider_plugin(self, provider_name: str) -> str:
        """The name of the plugin that registered provider ``provider_name``."""
        self.providers()
        return self._provider_plugin[provider_name]

    def policies(self) -> list[Any]:
        """The extra policies (and policy factories) plugins registered besides the built-in ones, validated,
        in call order; collected once."""
        from .policies import builtin

        return [p for p, plugin in self._policy_items() if plugin != builtin.NAME]

    def policy_chain(self) -> list[Any]:
        """Every policy and policy factory registered, in call order: the built-in plugin's first (unless it
        is blocked), then the others'. This is the chain the engine's core runs."""
        return [p for p, _ in self._policy_items()]

    def _policy_items(self) -> list[tuple[Any, str]]:
        self.load()
        if self._policies is None:
            self._policies = self._collect("sendcore_register_policies", _validate_policy)
        return list(self._policies)

    # Per-send hooks

    def _direct(self, name: str, arg: str, first: bool) -> Union[Callable[[Any], Any], None]:
        """Hook ``name`` as a plain function of its one argument, called as pluggy would, without its dispatch.

        Per-send and per-outcome hooks run hundreds of thousands of times;
        pluggy's generic call costs a few microseconds each. Implementations
        are taken once, in pluggy's call order; with a wrapper among them, or
        one taking other arguments, pluggy's own call is used. None when no
        plugin implements the hook.
        """
        caller = getattr(self._pm.hook, name)
        impls = caller.get_hookimpls()
        if not impls:
            return None
        if any(i.hookwrapper or i.wrapper or tuple(i.argnames) != (arg,) for i in impls):
            return lambda value: caller(**{arg: value})
        fns = [i.function for i in reversed(impls)]  # pluggy calls the last registered first
        if len(fns) == 1:
            return fns[0]
        if first:
            def first_result(value: Any) -> Any:
                for fn in fns:
                    got = fn(value)
                    if got is not None:
                        return got
                return None
            return first_result

        def each(value: Any) -> None:
            for fn in fns:
                fn(value)
        return each

    def outcome_caller(self) -> Union[Callable[[Outcome], Any], None]:
        """``sendcore_outcome`` as a plain callable of one outcome, or None if no plugin implements it."""
        self.load()
        return self._direct("sendcore_outcome", "outcome", False)

    def lookup_carrier(self, send: Send) -> Union[str, None]:
        """The carrier a plugin names for ``send`` (firstresult), or None."""
        self.load()
        return self._pm.hook.sendcore_lookup_carrier(send=send)

    def resolve_timezone(self, send: Send) -> Union[str, None]:
        """The timezone a plugin names for ``send``'s recipient (firstresult), or None."""
        self.load()
        return self._pm.hook.sendcore_resolve_timezone(send=send)

    def carrier_lookup(self) -> Union[Callable[[Send], Union[str, None]], None]:
        """``lookup_carrier`` as a plain callable for the core, or None if no plugin implements it.

        Returning None lets the core skip the hook call per send entirely.
        """
        self.load()
        return self._direct("sendcore_lookup_carrier", "send", True)

    def timezone_resolver(self) -> Union[Callable[[Send], Union[str, None]], None]:
        """``resolve_timezone`` as a plain callable for the core, or None if no plugin implements it."""
        self.load()
        return self._direct("sendcore_resolve_timezone", "send", True)

    # Outcomes

    @property
    def wants_outcomes(self) -> bool:
        """True when some plugin implements ``sendcore_outcome`` (else the engine skips the call)."""
        self.load()
        return bool(self._pm.hook.sendcore_outcome.get_hookimpls())

    def outcome(self, outcome: Outcome) -> None:
        """Hand one outcome to every ``sendcore_outcome`` implementation."""
        self._pm.hook.sendcore_outcome(outcome=outcome)


def _validate_provider(obj: Any, plugin: str) -> None:
    """Refuse a provider the engine could not drive, naming the plugin and the attribute."""
    name = getattr(obj, "name", None)
    label = f"plugin {plugin!r} registered a provider {type(obj).__name__}"
    if not isinstance(name, str) or not name:
        raise PluginError(f"{label} without a `name` (a non-empty str, unique across plugins); got {name!r}")
    label = f"plugin {plugin!r}, provider {name!r}"
    channels = getattr(obj, "channels", None)
    if (
        isinstance(channels, (str, bytes))
        or not isinstance(channels, Iterable)
        or not channels
        or not all(isinstance(c, str) and c for c in channels)
    ):
        raise PluginError(f"{label}: `channels` must be a non-empty sequence of channel names like ('sms',); got {channels!r}")
    send = getattr(obj, "send", None)
    if send is None:
        raise PluginError(f"{label}: missing `send`; implement `async def send(self, batch) -> list[Result]`")
    if not inspect.iscoroutinefunction(send):
        raise PluginError(f"{label}: `send` must be a coroutine function (`async def send(self, batch)`)")
    from .provider import Provider  # local: provider imports send, keep plugin import light

    if getattr(type(obj), "send", None) is Provider.send:
        raise PluginError(f"{label}: does not implement `send` (it inherits Provider.send, which raises)")
    for optional in ("start", "close"):
        method = getattr(obj, optional, None)
        if method is not None and not inspect.iscoroutinefunction(method):
            raise PluginError(f"{label}: `{optional}` must be a coroutine function (`async def {optional}(...)`)")
    from .provider import _DECLARED
    from .settings import PROVIDER_LIMITS, limit_problem

    for attr in (*PROVIDER_LIMITS, "daily_cap"):
        problem = limit_problem(attr, getattr(obj, attr, _DECLARED[attr]))
        if problem is not None:
            raise PluginError(f"{label}: `{attr}` {problem}")


def _validate_policy(obj: Any, plugin: str) -> None:
    """Refuse a policy object the core could not call, naming the plugin (a factory is checked when called)."""
    if is_factory(obj):
        return
    problem = check_policy(obj)
    if problem:
        raise PluginError(f"plugin {plugin!r} registered a policy {type(obj).__name__} {problem}")
