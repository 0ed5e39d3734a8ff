"""Plugins: the hook surface, loading, allow/block lists, validation, and a plugin installed with pip.

The installed-plugin tests build a tiny distribution in a temporary directory
(its own pyproject.toml, a ``[project.entry-points.sendcore]`` table and an
in-tree PEP 517 backend, so the build needs nothing but pip), ``pip install``
it into the running interpreter and uninstall it afterwards.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterator, Union

import pluggy
import pytest

from sendcore import hookspecs
from sendcore.engine import Engine
from sendcore.hookspecs import hookimpl
from sendcore.plugins import PluginError, PluginHost
from sendcore.policies.base import Policy, Stage
from sendcore.provider import Provider
from sendcore.send import Accepted, Batch, Outcome, Send, Status
from sendcore.settings import Settings
from sendcore.testing import VirtualClock

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(n for n in vars(hookspecs) if n.startswith("sendcore_"))


class Echo(Provider):
    """A minimal valid provider."""

    def __init__(self, name: str = "echo", channels: tuple[str, ...] = ("sms",)) -> None:
        self.name = name
        self.channels = channels

    async def send(self, batch: Batch) -> list[Any]:
        return [Accepted() for _ in batch.sends]


def registering(*objs: Any) -> Any:
    """A plugin object whose sendcore_register_providers registers ``objs``."""

    class Plugin:
        @hookimpl
        def sendcore_register_providers(self, register: Callable[[Any], None]) -> None:
            for o in objs:
                register(o)

    return Plugin()


def host(*plugins: Any, **kw: Any) -> PluginHost:
    return PluginHost(plugins=plugins, load_entrypoints=False, **kw)


# ---------------------------------------------------------------------- the hook surface


def test_hook_specifications() -> None:
    """Five hooks, prefixed sendcore_, with the documented firstresult flags and a docstring each."""
    assert HOOKS == [
        "sendcore_lookup_carrier",
        "sendcore_outcome",
        "sendcore_register_policies",
        "sendcore_register_providers",
        "sendcore_resolve_timezone",
    ]
    first = {n for n in HOOKS if getattr(hookspecs, n).sendcore_spec.get("firstresult")}
    assert first == {"sendcore_lookup_carrier", "sendcore_resolve_timezone"}
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "Example::" in doc and "Called" in doc, name
    assert hookspecs.hookimpl.project_name == "sendcore"


def test_sendcore_register_providers_collects_and_validates() -> None:
    """Registered providers come back in order; each is attributed to its plugin."""
    a, b = Echo("a"), Echo("b", ("email",))
    h = host(registering(a), registering(b))
    assert {p.name for p in h.providers()} == {"a", "b"}
    assert h.providers() == h.providers()  # collected once
    assert h.provider_plugin("a") != h.provider_plugin("b")


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        (type("NoName", (), {"channels": ("sms",), "send": Echo.send})(), "without a `name`"),
        (type("NoChannels", (), {"name": "x", "send": Echo.send})(), "`channels` must be a non-empty sequence"),
        (type("StrChannels", (), {"name": "x", "channels": "sms", "send": Echo.send})(), "`channels` must be"),
        (type("NoSend", (), {"name": "x", "channels": ("sms",)})(), "missing `send`"),
        (type("SyncSend", (), {"name": "x", "channels": ("sms",), "send": lambda self, b: []})(), "coroutine function"),
        (type("Inherits", (Provider,), {"name": "x", "channels": ("sms",)})(), "does not implement `send`"),
        (type("BadBatch", (Echo,), {"max_batch": 0})(), "`max_batch` must be a positive integer"),
        (type("BadTimeout", (Echo,), {"timeout": -1})(), "`timeout` must be a positive, finite number"),
        (type("NanRate", (Echo,), {"rate": float("nan")})(), "`rate` must be unset (unlimited) or a finite number"),
        (type("BadBurst", (Echo,), {"burst": -2})(), "`burst` must be an integer >= 0"),
        (type("SyncClose", (Echo,), {"close": lambda self: None})(), "`close` must be a coroutine function"),
    ],
)
def test_a_provider_missing_something_is_refused_naming_plugin_and_attribute(provider: Any, message: str) -> None:
    plugin = registering(provider)
    h = PluginHost(plugins=[plugin], load_entrypoints=False)
    with pytest.raises(PluginError, match=re.escape(message)) as info:
        h.providers()
    assert "plugin " in str(info.value)


def test_duplicate_provider_names_are_an_error() -> None:
    h = host(registering(Echo("twin")), registering(Echo("twin")))
    with pytest.raises(PluginError, match="a provider named 'twin' is already registered by plugin"):
        h.providers()


def test_misspelled_hook_fails_loudly_with_a_suggestion() -> None:
    """check_pending: a sendcore_* function matching no hook is an error, decorated or not."""

    class Decorated:
        @hookimpl
        def sendcore_register_provider(self, register: Any) -> None:  # missing "s"
            pass

    class Undecorated:
        def sendcore_outcomes(self, outcome: Any) -> None:  # no decorator, misspelled
            pass

    for plugin, hint in ((Decorated(), "sendcore_register_providers"), (Undecorated(), "sendcore_outcome")):
        with pytest.raises(PluginError, match=f"is not a sendcore hook \\(did you mean '{hint}'\\?\\)"):
            host(plugin).load()


def test_hook_with_wrong_argument_names_shows_the_signature() -> None:
    class Wrong:
        @hookimpl
        def sendcore_outcome(self, result: Any) -> None:
            pass

    with pytest.raises(PluginError, match=r"the hook's signature is sendcore_outcome\(outcome"):
        host(Wrong()).load()


def test_loading_is_lazy_and_happens_once() -> None:
    """Nothing is registered until first use; a broken plugin fails then, not at construction."""
    calls = []

    class Counting:
        @hookimpl
        def sendcore_register_providers(self, register: Any) -> None:
            calls.append(1)
            register(Echo())

    h = host(Counting())
    assert calls == []
    h.providers()
    h.providers()
    h.load()
    assert calls == [1]
    broken = host(registering(object()))
    with pytest.raises(PluginError):
        broken.providers()


def test_sendcore_lookup_carrier_and_sendcore_resolve_timezone_are_firstresult() -> None:
    """The first non-None answer wins; with no implementation the host hands the core None."""

    class Nothing:
        @hookimpl
        def sendcore_lookup_carrier(self, send: Send) -> None:
            return None

        @hookimpl
        def sendcore_resolve_timezone(self, send: Send) -> None:
            return None

    class Knows:
        @hookimpl
        def sendcore_lookup_carrier(self, send: Send) -> str:
            return "Orange"

        @hookimpl
        def sendcore_resolve_timezone(self, send: Send) -> str:
            return "Europe/Paris"

    s = Send(id="1", recipient="r", channel="sms", to="+33612345678", origin="flow")
    h = host(Knows(), Nothing())
    assert h.lookup_carrier(s) == "Orange" and h.resolve_timezone(s) == "Europe/Paris"
    assert h.carrier_lookup() is not None and h.timezone_resolver() is not None
    empty = host(registering(Echo()))
    assert empty.carrier_lookup() is None and empty.timezone_resolver() is None
    assert empty.lookup_carrier(s) is None


def test_sendcore_register_policies_validates_and_keeps_order() -> None:
    class Named(Policy):
        stages = Stage.ADMIT

        def __init__(self, name: str) -> None:
            self.name = name

        def check(self, entries: list[Any], now: float, stage: Stage, verdicts: Any) -> list[Any]:
            return entries

    class Two:
        @hookimpl
        def sendcore_register_policies(self, register: Any) -> None:
            register(Named("first"))
            register(Named("second"))

    assert [p.name for p in host(Two()).policies()] == ["first", "second"]

    class Bad:
        @hookimpl
        def sendcore_register_policies(self, register: Any) -> None:
            register(object())

    with pytest.raises(PluginError, match="without a `name`"):
        host(Bad()).policies()


def test_sendcore_outcome_hook_is_called_and_skipped_when_absent() -> None:
    got: list[Outcome] = []

    class Watch:
        @hookimpl
        def sendcore_outcome(self, outcome: Outcome) -> None:
            got.append(outcome)

    o = Outcome(send_id="x", status=Status.SENT, reason="accepted", at=1.0)  # type: ignore[arg-type]
    h = host(Watch())
    assert h.wants_outcomes
    h.outcome(o)
    assert got == [o]
    assert not host().wants_outcomes


def test_per_send_and_outcome_hooks_called_directly_answer_as_pluggy_does() -> None:
    """The direct callables the core and engine use give pluggy's answers: call order, first result, every impl."""
    s = Send(id="1", recipient="r", channel="sms", to="+33612345678", origin="flow")
    calls: list[str] = []

    def plugin(name: str, carrier: Union[str, None], **marks: Any) -> Any:
        class P:
            @hookimpl(**marks)
            def sendcore_lookup_carrier(self, send: Send) -> Union[str, None]:
                calls.append(name)
                return carrier

            @hookimpl(**marks)
            def sendcore_outcome(self, outcome: Outcome) -> None:
                calls.append(name)
        return P()

    cases = [
        [plugin("a", "A"), plugin("b", None), plugin("c", "C")],
        [plugin("a", "A", tryfirst=True), plugin("b", "B"), plugin("c", None, trylast=True)],
        [plugin("a", None), plugin("b", None)],
        [plugin("only", "O")],
    ]
    o = Outcome(send_id="x", status=Status.SENT, reason="accepted", at=1.0)  # type: ignore[arg-type]
    for plugins in cases:
        h = host(*plugins)
        h.load()
        calls.clear()
        want = h._pm.hook.sendcore_lookup_carrier(send=s)
        want_calls = list(calls)
        calls.clear()
        assert h.carrier_lookup()(s) == want and calls == want_calls, (want, want_calls, calls)
        calls.clear()
        h._pm.hook.sendcore_outcome(outcome=o)
        want_calls = list(calls)
        calls.clear()
        h.outcome_caller()(o)
        assert calls == want_calls

    class Wrapper:
        @hookimpl(wrapper=True)
        def sendcore_lookup_carrier(self, send: Send) -> Any:
            got = yield
            return (got or "none") + "+wrapped"

    h = host(plugin("a", "A"), Wrapper())
    assert h.carrier_lookup()(s) == "A+wrapped"  # a wrapper among them: pluggy's own call
    assert host().outcome_caller() is None


def test_environment_switches_entry_points_off() -> None:
    """SENDCORE_LOAD_ENTRYPOINTS=0 (set by the test suite's conftest) loads no installed plugin."""
    assert os.environ["SENDCORE_LOAD_ENTRYPOINTS"] == "0"
    h = PluginHost(plugins=[registering(Echo())])
    assert [p.source for p in h.plugins()] == ["object"]


def test_unknown_name_in_an_allow_list_is_an_error() -> None:
    h = PluginHost(load_entrypoints=True, environ={"SENDCORE_PLUGINS": "no-such-plugin-anywhere"})
    with pytest.raises(PluginError, match="SENDCORE_PLUGINS: no installed sendcore plugin is named no-such-plugin-anywhere"):
        h.load()


# ---------------------------------------------------------------------- a plugin installed with pip

BACKEND = '''
"""A minimal in-tree PEP 517 backend: builds a pure-Python wheel with zipfile."""
import base64, hashlib, os, zipfile

NAME, VERSION, MODULE, EP = {name!r}, "1.0", {module!r}, {ep!r}
DIST = NAME.replace("-", "_")


def _files():
    info = f"{{DIST}}-{{VERSION}}.dist-info"
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, MODULE + ".py"), "rb") as f:
        source = f.read()
    return info, {{
        MODULE + ".py": source,
        f"{{info}}/METADATA": f"Metadata-Version: 2.1\\nName: {{NAME}}\\nVersion: {{VERSION}}\\n".encode(),
        f"{{info}}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: sendcore-tests\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
        f"{{info}}/entry_points.txt": f"[sendcore]\\n{{EP}} = {{MODULE}}\\n".encode(),
    }}


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info, files = _files()
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{{path}},sha256={{digest}},{{len(data)}}")
    record.append(f"{{info}}/RECORD,,")
    files[f"{{info}}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    name = f"{{DIST}}-{{VERSION}}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return name
'''

PLUGIN = '''
"""A third-party sendcore plugin, installed by the test suite."""
from sendcore import Accepted
from sendcore.hookspecs import hookimpl

SENT = []


class InstalledProvider:
    name = {provider!r}
    channels = ("push",)
    max_batch = 50

    async def send(self, batch):
        SENT.extend(s.id for s in batch.sends)
        return [Accepted(provider_id="installed-" + s.id) for s in batch.sends]


@hookimpl
def sendcore_register_providers(register):
    register(InstalledProvider())
'''


class Installed:
    """Names of the distribution the fixture installed."""

    def __init__(self, tag: str) -> None:
        self.dist = f"sendcore-testplugin-{tag}"
        self.module = f"sendcore_testplugin_{tag}"
        self.entry_point = f"testplugin{tag}"
        self.provider = f"installed{tag}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    # Unique per process: engineers running the suite at the same time never share a name.
    yield from _install(Installed(str(os.getpid())), tmp_path_factory)


@pytest.fixture
def impostor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """Another distribution that registers an entry point named ``sandbox``, like sendcore's own."""
    names = Installed(f"impostor{os.getpid()}")
    names.entry_point = "sandbox"
    yield from _install(names, tmp_path_factory)


def _install(names: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    src = tmp_path_factory.mktemp("plugin-src")
    (src / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = []
            build-backend = "backend"
            backend-path = ["."]

            [project]
            name = "{names.dist}"
            version = "1.0"

            [project.entry-points.sendcore]
            {names.entry_point} = "{names.module}"
            """
        )
    )
    (src / "backend.py").write_text(BACKEND.format(name=names.dist, module=names.module, ep=names.entry_point))
    (src / f"{names.module}.py").write_text(PLUGIN.format(provider=names.provider))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(src)], check=True)
    importlib.invalidate_caches()
    try:
        yield names
    finally:
        subprocess.run([*pip, "uninstall", "--yes", names.dist], check=True)
        sys.modules.pop(names.module, None)
        importlib.invalidate_caches()


def test_installed_plugin_is_discovered_and_used(installed: Installed, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point of a pip-installed distribution is loaded (allow-listed by name) and its provider sends."""
    env = {"SENDCORE_PLUGINS": installed.entry_point}
    h = PluginHost(load_entrypoints=True, environ=env)
    [info] = h.plugins()
    assert (info.name, info.source, info.version) == (installed.entry_point, installed.dist, "1.0")

    monkeypatch.setenv("SENDCORE_PLUGINS", installed.entry_point)  # the engine reads the real environment

    async def main() -> Union[Outcome, None]:
        async with Engine(Settings(), clock=VirtualClock(0), load_entrypoints=True) as engine:
            assert list(engine.providers) == [installed.provider]
            await engine.submit([Send(id="p1", recipient="r", channel="push", to="device-1", origin="flow")])
            await engine.drain()
            return engine.outcome("p1")

    outcome = run(main())
    assert outcome is not None and outcome.status is Status.SENT
    assert outcome.provider_id == "installed-p1"
    assert "p1" in importlib.import_module(installed.module).SENT


@pytest.mark.parametrize("allow", ["", "sandbox"])
def test_row18_two_distributions_claiming_one_plugin_name_is_a_clear_error(impostor: Installed, allow: str) -> None:
    """Issue 8, row 18: another distribution's entry point named ``sandbox`` is never loaded silently."""
    h = PluginHost(load_entrypoints=True, environ={"SENDCORE_PLUGINS": allow} if allow else {})
    with pytest.raises(PluginError) as info:
        h.load()
    message = str(info.value)
    assert "plugin name 'sandbox' is registered by several installed distributions" in message
    assert "sendcore" in message and impostor.dist in message
    # Blocking the impostor by its distribution name settles it: the bundled sandbox loads.
    h = PluginHost(load_entrypoints=True, environ={"SENDCORE_BLOCK_PLUGINS": impostor.dist})
    assert [p for p in h.plugins() if p.name == "sandbox"][0].source == "sendcore"


def test_installed_plugin_is_found_without_an_allow_list(installed: Installed) -> None:
    names = [p.name for p in PluginHost(load_entrypoints=True, environ={}).plugins()]
    assert installed.entry_point in names


@pytest.mark.parametrize("how", ["env-entry-point", "env-distribution", "settings", "allow-other"])
def test_block_list_disables_the_installed_plugin(installed: Installed, how: str) -> None:
    """SENDCORE_BLOCK_PLUGINS or Settings.plugins.block (by entry-point or distribution name) keeps it out;
    so does an allow-list that names something else."""
    env: dict[str, str] = {}
    settings = Settings()
    if how == "env-entry-point":
        env["SENDCORE_BLOCK_PLUGINS"] = f"unrelated, {installed.entry_point}"
    elif how == "env-distribution":
        env["SENDCORE_BLOCK_PLUGINS"] = installed.dist.upper().replace("-", "_")
    elif how == "settings":
        settings = Settings.from_dict({"plugins": {"block": [installed.entry_point]}})
    else:
        other = next((ep.name for ep in importlib.metadata.entry_points(group="sendcore")
                      if ep.name != installed.entry_point), None)
        if other is None:  # pragma: no cover - sendcore itself installs the sandbox entry point
            pytest.skip("no other installed sendcore plugin to allow")
        env["SENDCORE_PLUGINS"] = other
    h = PluginHost(settings, load_entrypoints=True, environ=env)
    assert installed.entry_point not in [p.name for p in h.plugins()]
    assert installed.entry_point in h.blocked
    assert installed.provider not in [p.name for p in h.providers()]


# ---------------------------------------------------------------------- meta-tests


def test_every_hook_has_a_test() -> None:
    """Each hook name appears in a test function name in this directory (datasette's discipline)."""
    tests = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    test_names = set(re.findall(r"def (test_\w+)", tests))
    missing = [h for h in HOOKS if not any(h in t for t in test_names)]
    assert not missing, f"hooks without a test named after them: {missing}"


def hook_signature(name: str) -> str:
    """The form README.md must show: the hook name and its parameter names, e.g. ``sendcore_outcome(outcome)``."""
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(params)})"


def test_every_hook_is_documented_in_the_readme_with_its_signature() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.exists() else ""
    missing = [hook_signature(h) for h in HOOKS if hook_signature(h) not in text]
    assert not missing, f"README.md does not document these hooks with their exact signature: {missing}"


def test_pluggy_project_name_matches_the_entry_point_group() -> None:
    assert isinstance(PluginHost(load_entrypoints=False).pm, pluggy.PluginManager)
    assert PluginHost(load_entrypoints=False).pm.project_name == "sendcore" == hookspecs.PROJECT


def test_batch_timeout_counts_every_turn_of_connections_and_the_rate_wait() -> None:
    from sendcore.provider import batch_timeout

    assert batch_timeout(200, 100, 10.0) == 2 * 10.0 + 1.0  # two turns, no rate limit
    assert batch_timeout(201, 100, 10.0) == 3 * 10.0 + 1.0  # a last turn of one request still counts
    assert batch_timeout(8, 4, 2.0, request_rate=4.0) == 2 * 2.0 + 8 / 4.0 + 1.0
    assert batch_timeout(1, 100, 0.5) == 0.5 + 1.0
