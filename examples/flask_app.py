"""A Flask app with the sync endpoint mounted next to ordinary routes.

Clients sync with ``ws://HOST:PORT/sync`` and credentials ``{"token": T}``; the JSON
routes take the same token as ``Authorization: Bearer T``. Databases are SQLite files
in a data directory (one per database name), or live on CouchDB when ``COUCHDB_URL`` is
set. Configuration comes from the environment:

=====================  ==============================================================
``POUCHSYNC_TOKENS``   accepted tokens, comma-separated (default ``dev-token``)
``POUCHSYNC_DATA``     data directory for the embedded store (default ``./data``)
``COUCHDB_URL``        use this CouchDB instead (``http://user:pass@host:5984``)
=====================  ==============================================================

Run it::

    python examples/flask_app.py --port 5000             # werkzeug, threaded
    gunicorn -c examples/gunicorn.conf.py                 # production (gthread workers)

and sync from anywhere::

    pouchsync sync todos.sqlite ws://127.0.0.1:5000/sync --token dev-token

The data directory is relative to where you run it, never inside this checkout. A
failure (a taken port, a CouchDB that cannot be reached) is one line on stderr with the
exit status of ``pouchsync`` (``-v``: the traceback too).
"""

from __future__ import annotations

import argparse
import hmac
import os
import signal
import socket
import sys
import threading
import traceback
from typing import Any

from flask import Flask, abort, jsonify, request

import pouchsync_sync as ps
from pouchsync_sync.cli import describe


def create_app(*, data_dir: str | None = None, couchdb_url: str | None = None,
               tokens: list[str] | None = None) -> Flask:
    """The app. Its sync server and databases are in ``app.extensions``; call
    ``shutdown(app)`` to close them."""
    app = Flask(__name__)
    couchdb_url = couchdb_url or os.environ.get("COUCHDB_URL")
    if couchdb_url:
        databases: Any = ps.CouchDir(couchdb_url)
    else:
        databases = ps.DataDir(data_dir or os.environ.get("POUCHSYNC_DATA", "data"))
    accepted = tokens or [t for t in os.environ.get("POUCHSYNC_TOKENS", "dev-token").split(",") if t]

    def token_ok(token: Any) -> bool:
        return isinstance(token, str) and any(
            hmac.compare_digest(token.encode(), t.encode()) for t in accepted)

    def on_request(credentials: Any, db_name: str) -> ps.Database:
        """Called for every database a client asks to sync: grant it or deny."""
        token = credentials.get("token") if isinstance(credentials, dict) else None
        if not token_ok(token):
            raise ps.Denied("a valid token is required")
        try:
            return databases.database(db_name)  # only a-z0-9_$()+- names reach the disk
        except ps.BadRequest as exc:
            raise ps.Denied(exc.reason) from exc

    sync_server = ps.create_server(on_request)
    sync_server.init_app(app, path="/sync")  # app.extensions["pouchsync_sync"]
    app.extensions["pouchsync_databases"] = databases

    def database_for_request(name: str) -> ps.Database:
        auth = request.headers.get("Authorization", "")
        if not (auth.startswith("Bearer ") and token_ok(auth[len("Bearer "):])):
            abort(401)
        try:
            return databases.database(name)
        except ps.BadRequest:
            abort(404)

    @app.get("/")
    def index() -> Any:
        return jsonify(service="todos", sync="/sync", backend="couchdb" if couchdb_url else "sqlite")

    @app.get("/health")
    def health() -> Any:
        return jsonify(ok=True, **sync_server.stats())

    @app.get("/db/<name>")
    def list_docs(name: str) -> Any:
        db = database_for_request(name)
        rows = db.all_docs(include_docs=True)["rows"]
        return jsonify(docs=[row["doc"] for row in rows if not row["id"].startswith("_design/")])

    @app.post("/db/<name>")
    def add_doc(name: str) -> Any:
        db = database_for_request(name)
        doc = request.get_json(force=True, silent=True)
        if not isinstance(doc, dict):
            abort(400)
        try:
            return jsonify(db.put(doc) if "_id" in doc else db.post(doc)), 201
        except ps.CouchError as exc:
            return jsonify(error=exc.error, reason=exc.reason), exc.status

    return app


def shutdown(app: Flask) -> None:
    """Close the app's sockets (code 1001: clients reconnect elsewhere) and databases."""
    server = app.extensions.get("pouchsync_sync")
    if server is not None:
        server.stop()
    databases = app.extensions.get("pouchsync_databases")
    if databases is not None:
        databases.close()


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a taken port is one clear error (werkzeug's
    ``make_server`` prints several lines and exits by itself)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ps.ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="todos: a Flask app with a sync endpoint")
    parser.error = lambda message: parser.exit(2, f"flask_app.py: error: {message}\n")  # one line
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--data-dir", default=None,
                        help="where the SQLite files go (default $POUCHSYNC_DATA or ./data)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the traceback of a failure")
    args = parser.parse_args(argv)
    try:
        return serve(args)
    except Exception as exc:  # noqa: BLE001 - the script's top frame: one line, a status
        message, status = describe(exc)  # the same lines and statuses as `pouchsync`
        if args.verbose:
            traceback.print_exc()
        print(f"flask_app.py: {message}", file=sys.stderr)
        return status


def serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    sock = listen(args.host, args.port)
    try:
        app = create_app(data_dir=args.data_dir)
        http = make_server(args.host, args.port, app, threaded=True, fd=sock.fileno())
    finally:
        sock.close()  # werkzeug serves on its own copy of the descriptor
    port = http.socket.getsockname()[1]
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.2},
                              name="flask-example-http", daemon=True)
    thread.start()
    print(f"listening on http://{args.host}:{port}/ "
          f"(sync: ws://{args.host}:{port}/sync)", flush=True)
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
