"""Node dependencies of the JavaScript client's tests: install once, run node scripts.

``pouchsync.js`` is tested in Node against a real ``SyncServer`` with PouchDB 9 (memory
adapter) and ``ws``. This module installs those pinned packages with npm into a cache
folder (``$POUCHSYNC_JS_HOME`` or ``<repo>/.jsdeps``; a file lock makes parallel runs
install once) and runs node scripts with that folder on ``NODE_PATH``. Without node or
npm the fixtures skip with a one-line reason.

Reusable outside pytest (``bench/``, the browser tests)::

    from tests.jsdeps import ensure_installed, run_node
    home = ensure_installed()                      # ~20 s the first time
    proc = run_node(script_text, env={"URL": url}, timeout=60)

``python3 -m tests.jsdeps`` installs and prints the folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

import pytest

from pouchsync_sync.testing.couchserver import npm_install

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
#: the pinned packages (name -> exact version)
PACKAGES = {"pouchdb": "9.0.0", "pouchdb-adapter-memory": "9.0.0", "ws": "8.18.0"}
#: the client under test
CLIENT_JS = REPO / "pouchsync_sync" / "static" / "pouchsync.js"


def js_home() -> Path:
    """Where the packages are installed: ``$POUCHSYNC_JS_HOME`` or ``<repo>/.jsdeps``."""
    return Path(os.environ.get("POUCHSYNC_JS_HOME") or REPO / ".jsdeps")


def missing_tools() -> str | None:
    """A one-line reason when node or npm is missing, else ``None``."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (needed for the JavaScript client's tests)"
    return None


def _marker(home: Path) -> Path:
    tag = "-".join(f"{name}@{version}" for name, version in sorted(PACKAGES.items()))
    return home / f".installed-{tag}"


def ensure_installed(home: Path | None = None, *, retries: int = 3,
                     timeout: float = 600.0) -> Path:
    """Install the pinned packages into ``home`` unless a marker says they are there.

    Returns the ``node_modules`` folder. ``npm install --ignore-scripts`` (PouchDB's
    optional leveldown build is not needed with the memory adapter), retried.
    """
    home = Path(home or js_home())
    modules = home / "node_modules"
    reason = missing_tools()
    if reason and not _marker(home).exists():
        raise RuntimeError(reason)
    npm_install(home, PACKAGES, name="pouchsync-test-js",
                description="node packages for pouchsync.js's tests",
                installed=lambda: all((modules / n).is_dir() for n in PACKAGES),
                marker=_marker(home), retries=retries, timeout=timeout)
    return modules


class NodeRunner:
    """Runs node scripts with the installed packages and ``pouchsync.js`` requireable.

    Scripts ``require('pouchsync')`` (``CLIENT_JS``), ``require('pouchdb')`` etc. A
    script that does not exit within ``timeout`` seconds is killed and the test fails:
    a hung sync or a leftover timer is a bug.
    """

    def __init__(self, modules: Path, work_dir: Path) -> None:
        self.modules = modules
        self.work_dir = work_dir
        self._count = 0
        self._shim = work_dir / "node_shim"
        (self._shim / "pouchsync").mkdir(parents=True, exist_ok=True)
        (self._shim / "pouchsync" / "index.js").write_text(
            f"module.exports = require({json.dumps(str(CLIENT_JS))});\n")

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["NODE_PATH"] = os.pathsep.join([str(self._shim), str(self.modules)])
        env.update(extra or {})
        return env

    def run(self, script: str, *, env: Mapping[str, str] | None = None,
            timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``script`` (JavaScript source) in a fresh node process; returns it done.

        With ``check`` a non-zero exit raises ``AssertionError`` with the output.
        """
        self._count += 1
        path = self.work_dir / f"script{self._count}.js"
        path.write_text(script)
        return self.run_file(path, env=env, timeout=timeout, check=check)

    def run_file(self, path: Path, *, env: Mapping[str, str] | None = None,
                 timeout: float = 60.0, check: bool = True,
                 args: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        node = shutil.which("node")
        assert node is not None
        try:
            proc = subprocess.run([node, str(path), *(args or [])], cwd=self.work_dir,
                                  env=self.env(env), capture_output=True, text=True,
                                  timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"node {path.name} did not exit within {timeout} s (hung sync or a "
                f"leftover timer/socket)\nstdout:\n{_text(exc.stdout)}\n"
                f"stderr:\n{_text(exc.stderr)}") from None
        if check and proc.returncode != 0:
            raise AssertionError(f"node {path.name} exited {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
        return proc

    def popen(self, script: str, *, env: Mapping[str, str] | None = None
              ) -> subprocess.Popen[str]:
        """Start ``script`` in the background (stdout/stderr piped, text); the caller
        owns the process and must wait for or kill it."""
        self._count += 1
        path = self.work_dir / f"script{self._count}.js"
        path.write_text(script)
        node = shutil.which("node")
        assert node is not None
        return subprocess.Popen([node, str(path)], cwd=self.work_dir, env=self.env(env),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    @staticmethod
    def json_lines(stdout: str) -> list[dict]:
        """The lines of ``stdout`` that are JSON objects, parsed (scripts report that way)."""
        out = []
        for line in stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")[-4000:]
    return str(value or "")[-4000:]


def run_node(script: str, *, env: Mapping[str, str] | None = None,
             timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One-off: install if needed and run ``script`` in a temporary folder."""
    modules = ensure_installed()
    with tempfile.TemporaryDirectory(prefix="pouchsync-js-") as tmp:
        return NodeRunner(modules, Path(tmp)).run(script, env=env, timeout=timeout, check=check)


# -- pytest fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def js_modules() -> Path:
    """The installed ``node_modules`` folder; skips when node/npm are missing.

    ``$POUCHSYNC_JS_MODULES`` names another ``node_modules`` folder to use as is (no
    install), e.g. one holding ``pouchdb@8`` to run the same tests against PouchDB 8.
    """
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    other = os.environ.get("POUCHSYNC_JS_MODULES")
    if other:
        return Path(other)
    return ensure_installed()


@pytest.fixture
def node(js_modules: Path, tmp_path: Path) -> Iterator[NodeRunner]:
    """A ``NodeRunner`` working in the test's tmp folder."""
    yield NodeRunner(js_modules, tmp_path)


def main() -> None:
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    print(ensure_installed())


if __name__ == "__main__":
    main()
