"""A CouchDB-protocol server for tests: pouchdb-server from npm, installed, started, stopped.

pouchdb-server 4.2.0, in memory, bound to 127.0.0.1 on a free port, preloaded with
``couch-guard.js`` (shipped beside this module; it keeps the server alive on the few
requests that crash it and writes the port it listens on). It needs Node and npm; it is
installed once into ``$COUCH_HOME`` (default ``~/.cache/pouchsync_sync/couch``)::

    from pouchsync_sync.testing.couchserver import start
    url, stop = start()          # installs on first use (~30 s)
    try: ...
    finally: stop()

``python3 -m pouchsync_sync.testing.couchserver`` starts one, prints its URL and serves
until Ctrl-C or SIGTERM (``--install`` only installs). Errors are ``CouchServerError``;
``NodeMissing`` (a subclass) when node or npm is not on PATH.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Callable

import requests

from ..errors import PouchSyncError

log = logging.getLogger(__name__)

__all__ = ["CouchServer", "CouchServerError", "NodeMissing", "couch_home", "ensure_installed",
           "file_lock", "launch", "npm_install", "start"]

PACKAGE = "pouchdb-server"
VERSION = "4.2.0"
GUARD = Path(__file__).resolve().parent / "couch-guard.js"


class CouchServerError(PouchSyncError):
    """The test CouchDB server could not be installed or started."""


class NodeMissing(CouchServerError):
    """``node`` or ``npm`` is not on PATH."""


def couch_home() -> Path:
    """Where the server is installed: ``$COUCH_HOME``, else a per-user cache folder."""
    home = os.environ.get("COUCH_HOME")
    if home:
        return Path(home)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "pouchsync_sync" / "couch"


def _server_script(home: Path) -> Path:
    return home / "node_modules" / PACKAGE / "bin" / PACKAGE


@contextlib.contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, so concurrent test runs install once (npm
    installs of the test server here, of the JavaScript client's packages in tests/)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CouchServerError(
                        f"could not lock {path} within {timeout:.0f} s") from None
                pause.wait(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def npm_install(home: Path, packages: Mapping[str, str], *, name: str, description: str,
                installed: Callable[[], bool], marker: Path, retries: int = 3,
                timeout: float = 600.0) -> None:
    """``npm install --ignore-scripts`` the pinned ``packages`` (name -> version) into
    ``home``, unless ``marker`` exists and ``installed()`` says they are there.

    A ``package.json`` named ``name`` is written first; the install is retried
    ``retries`` times and a file lock serialises concurrent runs. ``NodeMissing``
    without npm, ``CouchServerError`` when every try failed (npm's errors are logged).
    """
    if marker.exists() and installed():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise NodeMissing(f"npm is not on PATH; it is needed to install {description}")
    with file_lock(home / ".install.lock", timeout):
        if marker.exists() and installed():
            return
        (home / "package.json").write_text(json.dumps({
            "name": name, "private": True, "description": f"{description} (generated)",
            "dependencies": dict(packages),
        }, indent=2) + "\n")
        cmd = [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund",
               "--loglevel=error"] + [f"{n}@{v}" for n, v in sorted(packages.items())]
        pause = threading.Event()
        for attempt in range(1, retries + 1):
            log.info("installing %s into %s (attempt %d)", dict(packages), home, attempt)
            proc = subprocess.run(cmd, cwd=home, capture_output=True, text=True,
                                  timeout=timeout, check=False)
            if proc.returncode == 0 and installed():
                marker.write_text(json.dumps(dict(packages)) + "\n")
                return
            log.warning("npm install failed (exit %s): %s", proc.returncode,
                        proc.stderr.strip()[-2000:])
            if attempt < retries:
                pause.wait(2.0 * attempt)
    raise CouchServerError(f"npm install {dict(packages)} failed {retries} times; "
                           f"see the warnings logged by {__name__}")


def ensure_installed(home: Path | None = None, *, retries: int = 3,
                     timeout: float = 600.0) -> Path:
    """Install pouchdb-server into ``home`` unless a marker says it is there.

    Returns the server's start script. ``npm install --ignore-scripts`` (no sqlite3
    build), retried ``retries`` times; a file lock serialises concurrent runs.
    """
    home = Path(home or couch_home())
    script = _server_script(home)
    npm_install(home, {PACKAGE: VERSION}, name="pouchsync-test-couch",
                description="the CouchDB-protocol server for pouchsync_sync's tests",
                installed=script.exists, marker=home / f".installed-{PACKAGE}-{VERSION}",
                retries=retries, timeout=timeout)
    return script


class CouchServer:
    """One running pouchdb-server process (its own process group). ``stop()`` is idempotent."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes], run_dir: Path) -> None:
        self.url = url
        self.proc = proc
        self.run_dir = run_dir
        self._lock = threading.Lock()
        self._stopped = False

    def guard_messages(self) -> list[str]:
        """The ``[couch-guard]`` lines the server wrote (requests that hit a server bug)."""
        try:
            text = (self.run_dir / "server.out").read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines()
                if line.startswith("[couch-guard]") and "loaded (pid" not in line]

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        _kill_group(self.proc, timeout)
        if not os.environ.get("COUCH_KEEP_RUN_DIR"):
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<CouchServer {self.url} pid={self.proc.pid}>"


def _kill_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(1.0)


def launch(home: Path | None = None, *, timeout: float = 60.0, guard: bool | None = None,
           config: dict | None = None) -> CouchServer:
    """Start a fresh in-memory server on 127.0.0.1 and a free port; wait until ``GET /``
    answers (``timeout`` seconds). ``config`` is merged into its fresh config.json."""
    home = Path(home or couch_home())
    node = shutil.which("node")
    if node is None:
        raise NodeMissing("node is not on PATH; it runs the test CouchDB server")
    script = ensure_installed(home)
    if guard is None:
        guard = not os.environ.get("COUCH_NO_GUARD")
    _remove_stale_run_dirs(home)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=home))
    port_file = run_dir / "port"
    port = 0 if guard else _free_port()
    cfg: dict = {"httpd": {"port": port, "bind_address": "127.0.0.1"},
                 "log": {"file": str(run_dir / "log.txt"), "level": "info"}}
    for section, values in (config or {}).items():
        cfg.setdefault(section, {}).update(values)
    (run_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    cmd = [node]
    if guard:
        cmd += ["--require", str(GUARD)]
    cmd += [str(script), "--in-memory", "--no-stdout-logs",
            "--config", str(run_dir / "config.json")]
    env = dict(os.environ, COUCH_GUARD_PORT_FILE=str(port_file),
               COUCH_GUARD_PARENT_PID=str(os.getpid()))
    out = open(run_dir / "server.out", "wb")
    try:
        proc = subprocess.Popen(cmd, cwd=run_dir, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    finally:
        out.close()
    (run_dir / "pid").write_text(str(proc.pid))
    server = CouchServer("", proc, run_dir)
    try:
        server.url = _wait_ready(proc, port_file, port, run_dir, timeout)
    except BaseException:  # noqa: BLE001 - whatever stopped the start, the child is stopped
        tail = _tail(run_dir / "server.out")
        server.stop()
        raise CouchServerError(f"pouchdb-server did not start; last output:\n{tail}") from None
    log.info("test CouchDB server at %s (pid %d)", server.url, proc.pid)
    return server


def _remove_stale_run_dirs(home: Path, min_age: float = 60.0) -> None:
    """Remove the run folders of servers that are gone (a test run killed with -9)."""
    for run_dir in home.glob("run-*"):
        try:
            if time.time() - run_dir.stat().st_mtime < min_age:
                continue
            pid = int((run_dir / "pid").read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(run_dir, ignore_errors=True)
        except (OSError, ValueError):
            continue


def start(home: Path | None = None, *, timeout: float = 60.0) -> tuple[str, Callable[[], None]]:
    """``(url, stop)`` for a fresh server; ``stop()`` kills its process group."""
    server = launch(home, timeout=timeout)
    return server.url, server.stop


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(proc: subprocess.Popen[bytes], port_file: Path, port: int, run_dir: Path,
                timeout: float) -> str:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    with requests.Session() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise CouchServerError(f"pouchdb-server exited with {proc.returncode}")
            if not port and port_file.exists():
                text = port_file.read_text().strip()
                port = int(text) if text.isdigit() else 0
            if port:
                url = f"http://127.0.0.1:{port}"
                try:
                    resp = http.get(url + "/", headers={"Accept": "application/json"},
                                    timeout=2.0)
                    if resp.status_code == 200 and "version" in resp.json():
                        return url
                except (requests.RequestException, ValueError):
                    pass
            pause.wait(0.05)
    raise CouchServerError(f"pouchdb-server not ready after {timeout:.0f} s")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def main() -> None:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python3 -m pouchsync_sync.testing.couchserver",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="only install, then exit")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.install:
        print(ensure_installed())
        return
    server = launch()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(server.url, flush=True)
    try:
        while not done.wait(1.0) and server.proc.poll() is None:
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
