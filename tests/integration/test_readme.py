"""README.md runs as written.

- The first ```bash block is exactly the two fresh-machine commands, and ``.ci/run``
  finds the test command in it.
- Every ```python block runs in a fresh interpreter, in an empty temporary directory,
  with this work tree importable, **twice in a row in that directory** (a user runs
  what they copied again: files from the first run stay), and prints what its comments
  promise both times. Context the test provides: ``COUCHDB_URL`` (the
  CouchDB-protocol test server) for the blocks that read it. Nothing else: each block
  starts its own server when it needs one.
- The command-line block runs line by line through ``python -m pouchsync_sync`` (the
  same ``main`` as the ``pouchsync`` script); its ``pouchsync serve … &`` line is
  started in the background on a free port (``--port 0``), and the later lines'
  ``ws://127.0.0.1:3000/`` is rewritten to that port. The whole block runs twice, in
  the same directory against the same server.
- A block preceded by ``<!-- no-run -->`` is skipped; only commands that cannot end by
  themselves (gunicorn) may be marked so.
"""

from __future__ import annotations

import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
NO_RUN = "<!-- no-run -->"
TIMEOUT = 90


@dataclass
class Block:
    lang: str
    code: str
    line: int      # 1-based line of the opening fence
    no_run: bool

    @property
    def id(self) -> str:
        return f"{self.lang}@L{self.line}"


def blocks(text: str) -> list[Block]:
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        previous = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        found.append(Block(fence.group(1), "\n".join(body) + "\n", start + 1, previous == NO_RUN))
        i += 1
    return found


BLOCKS = blocks(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.lang == "python"]


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("COUCHDB_URL", None)
    e.update(extra)
    return e


def test_first_block_is_the_two_commands_and_ci_finds_the_test_command() -> None:
    first = next(b for b in BLOCKS if b.lang == "bash")
    assert first.code.splitlines() == [
        "python3 -m pip install -q -e '.[test]' && python3 -m pouchsync_sync demo",
        "python3 -m pip install -q -e '.[test]' && python3 -m pytest -q",
    ]
    assert first.line < 10
    awk = re.search(r"cmd=\$\(awk '([^']*)' README.md\)", (REPO / ".ci" / "run").read_text())
    assert awk, ".ci/run no longer extracts the command with awk"
    found = subprocess.run(["awk", awk.group(1), str(README)], capture_output=True, text=True,
                           timeout=10)
    assert found.stdout.strip() == "python3 -m pip install -q -e '.[test]' && python3 -m pytest -q"


def test_shape_of_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    quickstart = PYTHON[0]
    assert "create_server" in quickstart.code and "create_client" in quickstart.code
    assert len(quickstart.code.strip().splitlines()) <= 15
    for section in ("## Quickstart", "## Command line", "## The API", "### The server",
                    "### The client and syncs", "### Signals", "### Errors",
                    "## CouchDB and scale-out", "## Deployment", "## How it differs",
                    "## Benchmarks"):
        assert section in text, section
    assert "(bench/results.md)" in text.split("## Benchmarks", 1)[1]
    skipped = [b for b in BLOCKS if b.no_run]
    assert len(skipped) <= 2 and all(b.lang != "python" for b in skipped), \
        "keep the no-run blocks to commands that cannot end by themselves"


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if block.no_run:
        pytest.skip("marked <!-- no-run -->")
    extra = {}
    if "COUCHDB_URL" in block.code:
        extra["COUCHDB_URL"] = request.getfixturevalue("couch_url")
    script = tmp_path / "block.py"
    script.write_text(block.code, encoding="utf-8")
    outputs = []
    for run in ("first", "second"):
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env(**extra),
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 0, \
            f"README block at line {block.line} failed on its {run} run:\n{done.stderr[-3000:]}"
        for expected in EXPECTED:  # what the comments promise, every time
            if f"# {expected}" in block.code:
                shown = re.split(r" \(|, and", expected)[0]
                assert shown in done.stdout, (run, expected, done.stdout)
        outputs.append(done.stdout)
    def shape(text: str) -> list[str]:  # ports, revisions, counts, live states may differ
        return re.sub(r"[0-9a-f]{8,}|\d+|\b(paused|active)\b", "#", text).splitlines()

    assert shape(outputs[0]) == shape(outputs[1]), outputs
    assert re.findall(r"^1 ", outputs[0], re.M) == re.findall(r"^1 ", outputs[1], re.M)


EXPECTED = ["1 Buy milk", "pull ['milk'] 1", "Buy milk, and", "409 conflict", "milk",
            "{'sync': '/sync'}", "1 (blocks"]


def _cli_block() -> Block:
    return next(b for b in BLOCKS if b.lang == "bash" and "pouchsync serve" in b.code)


def test_command_line_block_runs(tmp_path: Path) -> None:
    block = _cli_block()
    assert not block.no_run
    python = [sys.executable, "-m", "pouchsync_sync"]
    server = None
    url = None
    lines = block.code.splitlines()
    try:
        again = [line for line in lines if shlex.split(line, comments=True)[-1:] != ["&"]]
        for line in lines + again:  # the second time against the server already running
            argv = shlex.split(line, comments=True)
            if not argv:
                continue
            assert argv[0] == "pouchsync", line
            if argv[-1] == "&":
                assert argv[1] == "serve" and server is None
                server = subprocess.Popen(python + argv[1:-1] + ["--port", "0"], cwd=tmp_path, env=env(),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                url = _served_url(server)
                continue
            args = [a.replace("ws://127.0.0.1:3000/", url) if url else a for a in argv[1:]]
            done = subprocess.run(python + args, cwd=tmp_path, env=env(), capture_output=True,
                                  text=True, timeout=TIMEOUT)
            assert done.returncode == 0, f"{line!r} failed:\n{done.stderr}"
            if argv[1] == "get":
                assert '"title": "Buy milk"' in done.stdout
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            _, err = server.communicate(timeout=30)
            assert server.returncode == 0, err
    assert (tmp_path / "data" / "todos.sqlite").exists()


def _served_url(proc: subprocess.Popen) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        assert sel.select(30), "pouchsync serve printed nothing within 30 s"
        line = proc.stdout.readline()
    finally:
        sel.close()
    found = re.search(r"(ws://\S+)", line)
    assert found, line
    return found.group(1)
