"""``examples/test_flask_app.py`` (an app's own tests, written with the pytest plugin)
passes when run as its README line says, on SQLite and on the session's CouchDB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_flask_example_tests_pass_with_the_plugin(couchdb_url: str) -> None:
    env = dict(os.environ, COUCHDB_URL=couchdb_url,  # the session's server: no second start
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "-p", "pouchsync_sync.testing.plugin", "examples/test_flask_app.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "8 passed" in done.stdout, done.stdout[-2000:]
