"""The shape of the package: a sans-I/O core and a small public surface."""

from __future__ import annotations

import subprocess
import sys

import sendcore


def test_the_core_imports_without_the_event_loop_or_the_network():
    code = ("import sys, sendcore.core; "
            "bad = [m for m in ('asyncio', 'aiohttp', 'uvloop', 'sendcore.engine') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, f"sendcore.core pulled in {out.stdout.strip()} {out.stderr[-500:]}"


def test_public_names_are_exported_and_documented():
    for name in sendcore.__all__:
        obj = getattr(sendcore, name)
        if name == "Result":  # a Union alias of the four result types, each documented
            assert all(t.__doc__ for t in obj.__args__)
            continue
        assert getattr(obj, "__doc__", None), f"sendcore.{name} has no docstring"
    assert sendcore.Engine.__name__ == "Engine"
