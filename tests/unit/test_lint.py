"""The architecture and the code style are checked, not hoped for (issue 15 item 6).

Each test runs one tool on the package as a subprocess with this interpreter and fails
with the tool's own output. The configuration is in pyproject.toml (``[tool.ruff]``,
``[tool.mypy]``, ``[tool.importlinter]``); the tools come with the ``test`` extra.
docs/architecture.md draws the layers the import contracts state.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "pouchsync_sync"


def _run(args: list[str], tmp_path: Path, timeout: float, *,
         module: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # the package is imported from this checkout, not from an installed copy
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["RUFF_CACHE_DIR"] = str(tmp_path / "ruff-cache")
    env.pop("MYPYPATH", None)
    command = [sys.executable, "-m", *args] if module else [sys.executable, *args]
    return subprocess.run(command, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _require(module: str, *, python: tuple[int, int] = (3, 9)) -> None:
    """The tools are in the ``test`` extra: a missing one is an install problem, said so,
    unless this Python is older than the tool's (``python``), where the extra leaves it out."""
    if importlib.util.find_spec(module) is None:
        if sys.version_info < python:
            pytest.skip(f"{module} needs Python {python[0]}.{python[1]}+")
        pytest.fail(f"{module} is not installed: python3 -m pip install -e '.[test]'",
                    pytrace=False)


def _check(result: subprocess.CompletedProcess[str], tool: str) -> None:
    if result.returncode != 0:
        pytest.fail(f"{tool} found problems (exit {result.returncode}):\n"
                    f"{result.stdout}{result.stderr}", pytrace=False)


def test_ruff(tmp_path: Path) -> None:
    _require("ruff")
    _check(_run(["ruff", "check", "--no-fix", "--output-format", "concise", PACKAGE],
                tmp_path, timeout=120), "ruff")


def test_mypy(tmp_path: Path) -> None:
    _require("mypy", python=(3, 10))
    # a cache of its own: quick enough cold (about 10 s), and never a stale shared one
    _check(_run(["mypy", "--cache-dir", str(tmp_path / "mypy-cache"), "-p", PACKAGE],
                tmp_path, timeout=600), "mypy")


def test_import_contracts(tmp_path: Path) -> None:
    _require("importlinter")
    # import-linter has no ``python -m`` entry point: run its command-line function
    code = ("import sys; from importlinter.cli import lint_imports_command; "
            "lint_imports_command(sys.argv[1:])")
    _check(_run(["-c", code, "--config", "pyproject.toml", "--no-cache"], tmp_path,
                timeout=120, module=False), "lint-imports")
