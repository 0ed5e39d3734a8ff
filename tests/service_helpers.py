"""Helpers of the service tests: settings in a temp dir, tokens, an in-process server, a `sendcore serve` child."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Union

import sendcore_sandbox
from aiohttp.test_utils import TestClient, TestServer

from sendcore.service import Service, TokenStore, build_app
from sendcore.service.app import runner_kwargs
from sendcore.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

#: A sandbox that answers at once and always accepts: what a test on the real clock wants.
FAST_SANDBOX = """
[providers.sandbox]
rate = 0

[providers.sandbox.options]
latency_ms = { default = 0 }
delivery_reports = false
temporary_error_rate = 0
permanent_error_rate = 0
stop_rate = 0
"""


def config_text(tmp: Path, service: str = "", extra: str = "") -> str:
    """A settings file with its journal, state and tokens in ``tmp`` and the fast sandbox."""
    return f"""
{extra}
[journal]
path = "{tmp / 'journal'}"

[service]
state_dir = "{tmp / 'state'}"
tokens_file = "{tmp / 'tokens.json'}"
{service}
{FAST_SANDBOX}
"""


def settings(tmp: Path, service: str = "", extra: str = "") -> Settings:
    """``config_text`` loaded."""
    return Settings.from_toml_bytes(config_text(tmp, service, extra))


def make_tokens(s: Settings) -> dict[str, str]:
    """Tokens by scope set: "all", "read", "submit", "admin"."""
    store = TokenStore(s.service.tokens_file)
    return {name: store.create(scopes, name)[0] for name, scopes in
            (("all", ["submit", "read", "admin"]), ("read", ["read"]), ("submit", ["submit"]),
             ("admin", ["admin"]))}


def email(i: Union[int, str], *, prefix: str = "e", send_at: Union[float, None] = None, recipient: str = "",
          origin: str = "transactional", **kw: Any) -> dict[str, Any]:
    """One email send as the API takes it."""
    d = {"id": f"{prefix}{i}", "recipient": recipient or f"r-{prefix}{i}", "channel": "email",
         "to": f"{prefix}{i}@example.com", "origin": origin, "body": "hello"}
    if send_at is not None:
        d["send_at"] = send_at
    d.update(kw)
    return d


def auth(token: str) -> dict[str, str]:
    """The Authorization header of ``token``."""
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def served(s: Settings, plugins: Any = (sendcore_sandbox,)) -> AsyncIterator[tuple[Service, TestClient]]:
    """A started service and an aiohttp test client talking to it over 127.0.0.1."""
    service = Service(s, plugins=list(plugins), load_entrypoints=False)
    await service.start()
    server = TestServer(build_app(service), host="127.0.0.1")
    await server.start_server(**runner_kwargs(s))  # the runner as `sendcore serve` makes it
    client = TestClient(server)
    await client.start_server()
    try:
        yield service, client
    finally:
        await client.close()
        await service.close(grace=1.0)


def child_env() -> dict[str, str]:
    """The environment of a `sendcore serve` child: sendcore's own installed plugins load, the sandbox among them.

    Only the distribution ``sendcore`` is allowed, so a plugin another test installs meanwhile (test_plugins
    installs distributions that claim the name ``sandbox``) cannot change what the child loads.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("SENDCORE_LOAD_ENTRYPOINTS", "SENDCORE_PLUGINS",
                                                            "SENDCORE_BLOCK_PLUGINS")}
    env["SENDCORE_PLUGINS"] = "sendcore"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class ServeProcess:
    """A real `sendcore serve --port 0` child; ``url`` once it listens."""

    def __init__(self, config: Path, *args: str) -> None:
        self.ready = config.parent / f"ready-{time.monotonic_ns()}"
        self.log = open(config.parent / "serve.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sendcore.cli", "serve", "--config", str(config), "--port", "0",
             "--ready-file", str(self.ready), "--log-format", "json", *args],
            stdout=self.log, stderr=self.log, env=child_env())
        deadline = time.monotonic() + 30
        while not self.ready.exists() or not self.ready.read_text().endswith("\n"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"sendcore serve exited with {self.proc.returncode}: "
                                   f"{(config.parent / 'serve.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("sendcore serve did not start within 30 s")
            time.sleep(0.02)
        self.url = self.ready.read_text().strip()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child."""
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the child to end; its exit status."""
        try:
            return self.proc.wait(timeout)
        finally:
            self.log.close()

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.wait()
