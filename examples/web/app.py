"""A todo list in the browser: PouchDB in the page, synced live through a Flask app.

The page (``static/index.html`` and ``static/todos.js``) keeps its todos in PouchDB
(IndexedDB) and syncs them with this app's ``SyncServer`` through ``pouchsync.js``, which
the sync server itself serves at ``/sync/pouchsync.js``. The page works offline and
catches up when the server is back; a service worker (``static/sw.js``) keeps a copy of
its files, so it also opens while the server is down. The server keeps the shared list in
``<data-dir>/todos.sqlite``; a browser is granted that one database with the token.

Run it::

    python3 examples/web/app.py --port 5000 --token s3cret

then open ``http://127.0.0.1:5000/`` and enter the token (or open
``http://127.0.0.1:5000/#token=s3cret``). ``--data-dir`` defaults to ``./todos-data`` in
the folder you run it from. PouchDB's browser build is installed once with npm into a
cache folder (``--js-home``, default ``$POUCHSYNC_JS_HOME`` or the checkout's
``.jsdeps``, where the JavaScript client's tests install theirs).
"""

from __future__ import annotations

import argparse
import hmac
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from flask import Flask, send_file, send_from_directory

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script from a checkout: the package is next door
    sys.path.insert(0, str(HERE.parents[1]))
    sys.path.insert(0, str(HERE))

import pouchsync_sync as ps  # noqa: E402
from pouchdb_build import VendorError, default_home, pouchdb_browser_build  # noqa: E402

DATABASE = "todos"
STATIC = HERE / "static"


def create_app(*, token: str, data_dir: str | os.PathLike[str], pouchdb_js: Path) -> Flask:
    """The app: the page, PouchDB's browser build, and the sync endpoint at ``/sync``.
    Call ``shutdown(app)`` to close its sockets and database."""
    if not token:
        raise ValueError("a token is required")
    app = Flask(__name__, static_folder=None)
    databases = ps.DataDir(data_dir)
    expected = token.encode()

    def on_request(credentials: Any, db_name: str) -> ps.Database:
        """Grant the todo list to a client that sends the token; deny anything else."""
        given = credentials.get("token") if isinstance(credentials, dict) else None
        if not (isinstance(given, str) and hmac.compare_digest(given.encode(), expected)):
            raise ps.Denied("a valid token is required")
        if db_name != DATABASE:
            raise ps.Denied(f"this server only has the {DATABASE!r} list")
        return databases.database(DATABASE)

    sync_server = ps.create_server(on_request)
    sync_server.init_app(app, path="/sync")  # also serves /sync/pouchsync.js
    app.extensions["todos_databases"] = databases

    @app.get("/")
    def index() -> Any:
        return send_from_directory(STATIC, "index.html", max_age=0)

    @app.get("/todos.js")
    def page_script() -> Any:
        return send_from_directory(STATIC, "todos.js", max_age=0)

    @app.get("/sw.js")
    def service_worker() -> Any:  # at the root: its scope is the whole page
        return send_from_directory(STATIC, "sw.js", max_age=0)

    @app.get("/vendor/pouchdb.min.js")
    def pouchdb() -> Any:
        return send_file(pouchdb_js, mimetype="text/javascript", max_age=3600)

    @app.get("/health")
    def health() -> Any:
        return {"ok": True, **sync_server.stats()}

    return app


def shutdown(app: Flask) -> None:
    """Close the app's sockets (code 1001: pages reconnect when it is back) and database."""
    server = app.extensions.get("pouchsync_sync")
    if server is not None:
        server.stop()
    databases = app.extensions.get("todos_databases")
    if databases is not None:
        databases.close()


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0-65535")
    return port


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="a todo list in the browser, synced live")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=5000, help="0 picks a free port")
    parser.add_argument("--token", default=os.environ.get("TODOS_TOKEN"),
                        help="the token browsers must send (default: $TODOS_TOKEN)")
    parser.add_argument("--data-dir", default="todos-data",
                        help="where the server keeps the list (default: ./todos-data)")
    parser.add_argument("--js-home", type=Path, default=None,
                        help="cache folder for PouchDB's browser build "
                             "(default: $POUCHSYNC_JS_HOME or the checkout's .jsdeps)")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token is required (or set TODOS_TOKEN)")
    return args


def main(argv: list[str] | None = None) -> int:
    from werkzeug.serving import make_server

    args = parse_args(argv)
    try:
        pouchdb_js = pouchdb_browser_build(args.js_home or default_home())
    except VendorError as exc:
        print(f"todos: {exc}", file=sys.stderr)
        return 1
    try:
        app = create_app(token=args.token, data_dir=args.data_dir, pouchdb_js=pouchdb_js)
    except (OSError, ps.PouchSyncError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"todos: cannot use {args.data_dir!r} as the data folder: {reason}", file=sys.stderr)
        return 1
    try:
        http = make_server(args.host, args.port, app, threaded=True)
    except SystemExit:  # werkzeug has printed why (e.g. "Port 5000 is in use by …")
        shutdown(app)
        return 1
    except OSError as exc:
        shutdown(app)
        print(f"todos: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.2},
                              name="todos-http", daemon=True)
    thread.start()
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"listening on http://{host}:{http.server_port}/ (data: {Path(args.data_dir).resolve()})",
          flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        http.shutdown()
        shutdown(app)
        thread.join(10)
        http.server_close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
