"""PouchDB's browser build for the todo page, from npm (there is no CDN to rely on).

``pouchdb_browser_build(home)`` returns the path of ``pouchdb@9``'s
``dist/pouchdb.min.js`` inside the cache folder ``home``, installing it there with npm
on first use. The folder is the one the test suite's JavaScript dependencies go to
(``tests/jsdeps.py``: ``$POUCHSYNC_JS_HOME`` or ``<checkout>/.jsdeps``), so each machine
installs PouchDB once: npm adds to the folder's ``package.json`` and keeps whatever
else is there. A file lock serialises concurrent
installs (two apps started at once, or an app and a test run).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

PACKAGE = "pouchdb"
VERSION = "9"  # any 9.x
BUILD = Path("node_modules") / PACKAGE / "dist" / "pouchdb.min.js"
ENV = "POUCHSYNC_JS_HOME"


class VendorError(Exception):
    """PouchDB's browser build could not be found or installed (message: one line)."""


def default_home() -> Path:
    """``$POUCHSYNC_JS_HOME``, else the checkout's ``.jsdeps`` folder: the one
    ``tests/jsdeps.py`` installs the JavaScript client's test packages into (gitignored),
    so a machine that ran the tests already has PouchDB."""
    env = os.environ.get(ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".jsdeps"


def installed_version(home: Path) -> str | None:
    """The version of PouchDB installed in ``home``, or None."""
    try:
        meta = json.loads((home / "node_modules" / PACKAGE / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = meta.get("version") if isinstance(meta, dict) else None
    return version if isinstance(version, str) else None


def _usable(home: Path) -> bool:
    version = installed_version(home)
    return bool(version and version.split(".")[0] == VERSION and (home / BUILD).is_file())


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    with open(path, "a+") as fh:
        deadline = time.monotonic() + timeout
        pause = threading.Event()  # never set: a bounded pause between tries
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise VendorError(f"{path} stayed locked for {timeout:.0f} s "
                                      "(another npm install running?)") from None
                pause.wait(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def pouchdb_browser_build(home: Path | None = None, *, timeout: float = 600.0) -> Path:
    """The path of ``dist/pouchdb.min.js`` of PouchDB 9, installed into ``home`` by npm
    when it is not there yet. Raises ``VendorError`` with a one-line reason."""
    home = Path(home) if home is not None else default_home()
    if _usable(home):
        return home / BUILD
    npm = shutil.which("npm")
    if npm is None:
        raise VendorError(f"npm is not on PATH: it is needed once to install {PACKAGE}@{VERSION} "
                          f"(PouchDB's browser build) into {home}")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VendorError(f"cannot create the cache folder {home}: {exc.strerror}") from exc
    with _file_lock(home / ".install.lock", timeout):
        if _usable(home):
            return home / BUILD
        if not (home / "package.json").exists():
            (home / "package.json").write_text(json.dumps({
                "name": "pouchsync-js-cache", "private": True,
                "description": "JavaScript packages for pouchsync_sync's tests and examples (generated)",
            }, indent=2) + "\n")
        cmd = [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error",
               f"{PACKAGE}@{VERSION}"]
        try:
            done = subprocess.run(cmd, cwd=home, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise VendorError(f"npm install {PACKAGE}@{VERSION} took longer than {timeout:.0f} s") from exc
        if done.returncode != 0 or not _usable(home):
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            why = lines[-1].strip() if lines else f"exit status {done.returncode}"
            raise VendorError(f"npm install {PACKAGE}@{VERSION} into {home} failed: {why}")
    return home / BUILD
