"""The client's modules talk through interfaces, not private parts
(issue 15 item 3): no module of it reads another object's ``_private`` attribute."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "pouchsync_sync" / "client"
#: every module of the client: the Client/Sync side and the link's
MODULES = sorted(path.name for path in CLIENT.glob("*.py"))


def _private_reads(source: str) -> list[str]:
    """``x._name`` where ``x`` is not ``self`` or ``cls`` (dunders allowed)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("module", MODULES)
def test_no_private_cross_calls(module: str) -> None:
    assert _private_reads((CLIENT / module).read_text(encoding="utf-8")) == []


def test_the_check_finds_a_private_cross_call() -> None:
    assert _private_reads("def f(self):\n    self.client._wake()\n") == [
        "line 2: self.client._wake"]
    assert _private_reads("def f(self):\n    self._wake()\n    type(self).__name__\n") == []
