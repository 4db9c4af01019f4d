"""``help()`` is documentation a user reads (issue 17 §7): the package docstring is an
introduction with the five calls, and each public class's help starts with its purpose
and a short example. Every example runs, twice in the same folder, and prints what its
comments say, so they cannot rot.
"""

from __future__ import annotations

import inspect
import os
import pydoc
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pouchsync_sync as ps

REPO = Path(__file__).resolve().parents[2]

CLASSES = sorted(name for name in ps.__all__
                 if inspect.isclass(getattr(ps, name))
                 and not issubclass(getattr(ps, name), BaseException))


def example(doc: str) -> str:
    """The code of the ``Example::`` block in ``doc`` (dedented)."""
    lines = doc.splitlines()
    start = lines.index("Example::") + 1
    body = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        body.append(line)
    return textwrap.dedent("\n".join(body)).strip() + "\n"


def promised(code: str) -> list[str]:
    """What the ``print(...)  # shown`` lines say they print (remarks in parentheses off)."""
    found = []
    for line in code.splitlines():
        if line.lstrip().startswith("print(") and "#" in line:
            found.append(re.split(r" \(", line.split("#", 1)[1].strip())[0])
    return found


def run_twice(code: str, cwd: Path, **extra: str) -> list[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("COUCHDB_URL", None)
    env.update(extra)
    script = cwd / "example.py"
    script.write_text(code, encoding="utf-8")
    outputs = []
    for run in ("first", "second"):
        done = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, f"{run} run failed:\n{code}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    return outputs


def test_the_package_docstring_is_an_introduction() -> None:
    text = pydoc.render_doc(ps, renderer=pydoc.plaintext)
    top = "\n".join(text.splitlines()[:60])
    assert "Sync CouchDB-style document databases through WebSockets" in top
    for call in ("ps.LocalDatabase(", "ps.create_server(", "ps.create_client()",
                 "client.connect(", "client.sync(db)", "on_request(credentials, db_name)",
                 "README.md", "help(ps.Client)", "open_database"):
        assert call in top, call


def test_the_five_calls_run_twice(tmp_path: Path) -> None:
    run_twice(example((ps.__doc__ or "").replace("The five calls a user needs::",
                                                  "Example::")), tmp_path)


@pytest.mark.parametrize("name", CLASSES)
def test_help_of_each_public_class_starts_with_purpose_and_example(
        name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    doc = inspect.getdoc(getattr(ps, name)) or ""
    lines = doc.splitlines()
    assert len(lines[0]) > 20, f"{name}: the first line says what it is for"
    assert "Example::" in lines[:8], f"{name}: an example right after its purpose"
    code = example(doc)
    assert "import pouchsync_sync as ps" in code
    extra = {}
    if "COUCHDB_URL" in code:
        extra["COUCHDB_URL"] = request.getfixturevalue("couch_url")
    for out in run_twice(code, tmp_path, **extra):
        for expected in promised(code):
            assert expected in out, (name, expected, out)


def test_open_database_is_documented() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "ps.open_database(" in readme
    assert (ps.open_database.__doc__ or "").startswith("Open the database ``spec`` names.")


def test_every_public_error_says_what_it_means() -> None:
    errors = [getattr(ps, name) for name in ps.__all__ if inspect.isclass(getattr(ps, name))
              and issubclass(getattr(ps, name), BaseException)]
    assert len(errors) >= 20
    for cls in errors:
        own = cls.__dict__.get("__doc__") or ""
        assert len(own.strip()) > 20, f"{cls.__name__} has no docstring of its own"
