"""The browser example (``examples/web/app.py``) as a process, the way a user runs it.

``WebApp(folder, token)`` starts ``python3 examples/web/app.py`` with ``folder`` as its
working directory (its data goes to ``folder/todos-data``), on a free port the first
time and on the same port after ``restart()``; ``stop()`` sends SIGTERM and checks the
app stopped cleanly. PouchDB's browser build comes from the npm cache folder of the
JavaScript client's tests (``tests/jsdeps.py``), so the machine installs PouchDB once.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "examples" / "web" / "app.py"
START_TIMEOUT = 300.0  # the first start may npm-install PouchDB
STOP_TIMEOUT = 60.0


def js_home() -> Path:
    """The npm cache folder shared with the JavaScript client's tests (``tests/jsdeps.py``):
    PouchDB 9 is installed there once, pinned, and the app finds it there."""
    from tests.jsdeps import ensure_installed, js_home as shared_home

    ensure_installed()
    return shared_home()


def app_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TODOS_TOKEN", None)
    env.update(extra)
    return env


def read_until(proc: subprocess.Popen, pattern: str, timeout: float) -> tuple[re.Match | None, str]:
    """Read ``proc.stdout`` until a line matches ``pattern`` (None when the process ends
    or ``timeout`` passes first); returns the match and everything read."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            if not sel.select(min(deadline - time.monotonic(), 1.0)):
                if proc.poll() is not None:
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found, "".join(seen)
    finally:
        sel.close()
    return None, "".join(seen)


class WebApp:
    """One run of the example app at a time; ``stop()`` is idempotent."""

    def __init__(self, folder: Path, token: str, *, extra_args: tuple[str, ...] = ()) -> None:
        self.folder = folder
        self.token = token
        self.extra_args = extra_args
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.base = ""
        self.runs = 0
        self.err_path = folder / "app-run0.stderr"

    @property
    def data_file(self) -> Path:
        return self.folder / "todos-data" / "todos.sqlite"

    def page_url(self, token: str | None = None) -> str:
        return f"{self.base}#token={token if token is not None else self.token}"

    def start(self) -> "WebApp":
        assert self.proc is None, "already running"
        cmd = [sys.executable, str(APP), "--port", str(self.port), "--token", self.token,
               "--js-home", str(js_home()), *self.extra_args]
        # stderr (werkzeug's request log) goes to a file: a pipe nobody reads would fill
        self.err_path = self.folder / f"app-run{self.runs + 1}.stderr"
        with open(self.err_path, "w") as err_file:
            self.proc = subprocess.Popen(cmd, cwd=self.folder, env=app_env(), stdout=subprocess.PIPE,
                                         stderr=err_file, text=True)
        found, out = read_until(self.proc, r"listening on (http://127\.0\.0\.1:(\d+)/)", START_TIMEOUT)
        if found is None:
            code, _, err = self._end()
            raise AssertionError(f"the web example did not start (exit {code}):\n{out}\n{err[-3000:]}")
        self.base, self.port = found.group(1), int(found.group(2))
        self.runs += 1
        return self

    def stop(self) -> tuple[int | None, str, str]:
        """SIGTERM, then wait; returns (exit status, rest of stdout, stderr)."""
        if self.proc is None:
            return None, "", ""
        return self._end()

    def _end(self) -> tuple[int | None, str, str]:
        proc, self.proc = self.proc, None
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)
            raise AssertionError(f"the web example ignored SIGTERM for {STOP_TIMEOUT:.0f} s:\n"
                                 f"{self.err_path.read_text()[-3000:]}") from None
        return proc.returncode, out, self.err_path.read_text()

    def restart(self) -> "WebApp":
        """Stop (cleanly) and start again on the same port with the same data."""
        code, _, err = self.stop()
        assert code == 0, err[-3000:]
        return self.start()

    def __enter__(self) -> "WebApp":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
