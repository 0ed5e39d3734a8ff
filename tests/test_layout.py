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


def _documents() -> list:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def test_the_readme_and_docs_point_only_at_files_in_the_repository():
    """Every relative link and every repository path quoted in the README and docs/ exists; nothing points outside."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    missing, checked = [], 0
    for doc in _documents():
        text = doc.read_text()
        assert "../shared" not in text, f"{doc.name} points at ../shared, which is not in the repository"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            checked += 1
            if not (doc.parent / target).exists():
                missing.append(f"{doc.name}: link {target}")
        for path in re.findall(r"`((?:examples|docs|bench|sendcore|plugins|tests)/[\w./-]*\w)`", text):
            checked += 1
            if not (root / path).exists():
                missing.append(f"{doc.name}: path {path}")
    assert not missing, missing
    assert checked >= 10, f"only {checked} links and paths found: the patterns no longer match the documents"
