"""Shared fixtures: run runtime tests under both event loops, and keep installed plugins out.

``run`` is parametrised over asyncio's loop and uvloop (when installed), as
uvloop's own test mixin does: a runtime test takes ``run`` and calls
``run(main())``, so it runs once per loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
    uvloop = None  # type: ignore[assignment]

LOOPS = ["asyncio"] + (["uvloop"] if uvloop is not None else [])

Runner = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Runner:
    """Run a coroutine to completion on a fresh loop: asyncio's, then uvloop's."""

    def runner(main: Coroutine[Any, Any, Any]) -> Any:
        if request.param == "uvloop":
            return uvloop.run(main)
        return asyncio.run(main)

    runner.loop_name = request.param  # type: ignore[attr-defined]
    return runner


@pytest.fixture(autouse=True)
def _no_installed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the plugins they pass in: no installed entry points, no allow/block lists from the shell.

    A test that wants installed plugins passes ``load_entrypoints=True``.
    """
    monkeypatch.setenv("SENDCORE_LOAD_ENTRYPOINTS", "0")
    monkeypatch.delenv("SENDCORE_PLUGINS", raising=False)
    monkeypatch.delenv("SENDCORE_BLOCK_PLUGINS", raising=False)


@pytest.fixture(autouse=True)
def _journal_in_tmp(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own directory, so an engine with the default journal path writes there."""
    monkeypatch.chdir(tmp_path)
