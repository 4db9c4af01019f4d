"""The browser benchmark's server process: a page origin and a sync server in one.

    python3 bench/browser_server.py --docs PATH --live PATH [--max-seconds 900]

Serves on 127.0.0.1 (port 0), as a Flask app the way ``examples/web`` does:

- ``/``: a blank page that loads PouchDB's browser build and ``pouchsync.js``;
- ``/pouchdb.min.js``: PouchDB 9's browser build (npm, from ``--js-home``);
- ``/sync``: the ``SyncServer`` (and ``/sync/pouchsync.js``), granting ``docs`` (the
  store at ``--docs``) and ``live`` (the store at ``--live``) to anyone, nothing else.

Prints one JSON line ``{"base", "pid"}``, then answers ``stats`` on stdin with one JSON
line (RSS, CPU seconds, the server's counters). EOF on stdin stops it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "examples" / "web"))

from common import own_usage  # noqa: E402

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>pouchsync bench</title></head>
<body><p>pouchsync browser bench</p>
<script src="/pouchdb.min.js"></script>
<script src="/sync/pouchsync.js"></script>
</body></html>
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", required=True)
    parser.add_argument("--live", required=True)
    parser.add_argument("--js-home", type=Path, default=None, help="npm cache folder holding pouchdb@9")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    from flask import Flask, send_file
    from werkzeug.serving import make_server

    import pouchsync_sync as ps
    from pouchdb_build import pouchdb_browser_build

    build = pouchdb_browser_build(args.js_home)
    stores = {"docs": ps.LocalDatabase(args.docs, name="docs"),
              "live": ps.LocalDatabase(args.live, name="live")}

    def on_request(credentials: Any, db_name: str) -> ps.Database:
        if db_name not in stores:
            raise ps.Denied(f"no database {db_name!r} here")
        return stores[db_name]

    app = Flask(__name__, static_folder=None)
    server = ps.create_server(on_request).init_app(app, path="/sync")

    @app.get("/")
    def page() -> Any:
        return PAGE, 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.get("/pouchdb.min.js")
    def pouchdb() -> Any:
        return send_file(build, mimetype="text/javascript")

    http = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.2},
                               name="bench-browser-http", daemon=True)
    serving.start()
    print(json.dumps({"base": f"http://127.0.0.1:{http.server_port}/", "pid": os.getpid()}), flush=True)

    done = threading.Event()

    def watchdog() -> None:
        if not done.wait(args.max_seconds):
            print("browser_server: --max-seconds reached, stopping", file=sys.stderr, flush=True)
            os.close(0)  # ends the command loop below

    threading.Thread(target=watchdog, name="bench-browser-watchdog", daemon=True).start()

    def stats() -> dict[str, Any]:
        out = own_usage()
        out["server"] = server.stats()
        return out

    try:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "stats":
                print(json.dumps(stats()), flush=True)
            elif cmd:
                print(json.dumps({"error": f"unknown command {cmd!r}"}), flush=True)
    except (ValueError, OSError):
        pass  # stdin closed by the watchdog
    final = stats()
    done.set()
    http.shutdown()
    server.stop()
    serving.join(10)
    http.server_close()
    for store in stores.values():
        store.close()
    print(json.dumps(dict(final, final=True)), flush=True)


if __name__ == "__main__":
    main()
