""".ci/install-browser: idempotent and quiet when the browser is there; exit 0 with one
line when it cannot install (here: no apt-get on PATH)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.browser.page import find_chromium
from tests.webapp import REPO

SCRIPT = REPO / ".ci" / "install-browser"
BASH = shutil.which("bash") or "/bin/bash"


def test_quiet_when_chromium_and_its_driver_are_there() -> None:
    missing = find_chromium()
    if isinstance(missing, str):
        pytest.skip(missing)  # the script would run apt-get: not what this test checks
    done = subprocess.run([BASH, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_without_apt_get_it_says_so_and_exits_0(tmp_path) -> None:
    done = subprocess.run([BASH, str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={"PATH": str(tmp_path)})
    assert done.returncode == 0
    assert done.stdout.count("\n") == 1 and "no apt-get here" in done.stdout, done.stdout
