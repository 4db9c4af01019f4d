"""gunicorn settings for the Flask example in production: ``gunicorn -c examples/gunicorn.conf.py``.

Each open WebSocket holds one thread for as long as the client stays connected, so the
worker must be gunicorn's threaded worker (``gthread``) with enough threads for the
clients one process should hold. Run several workers (or hosts) for more: with the
embedded store they share the SQLite files of ``POUCHSYNC_DATA`` (several processes may
open one file, and each worker follows the files for live changes); with ``COUCHDB_URL``
every worker, on any host behind the load balancer, follows the same CouchDB.

TLS: terminate it in front (nginx, haproxy, a cloud load balancer) and let clients use
``wss://``; the proxy must pass the ``Upgrade``/``Connection`` headers for ``/sync``.

Environment: ``BIND`` (default 127.0.0.1:8000), ``WEB_CONCURRENCY`` (workers, default 2),
``THREADS`` (per worker, default 100), plus the app's ``POUCHSYNC_TOKENS``,
``POUCHSYNC_DATA`` and ``COUCHDB_URL`` (see flask_app.py).
"""

import os
import signal
import threading

# flask_app.py is imported from beside this file, but the working directory stays where
# gunicorn was started: the data directory (POUCHSYNC_DATA, default ./data) is there.
pythonpath = os.path.dirname(os.path.abspath(__file__))
wsgi_app = "flask_app:create_app()"
bind = [os.environ.get("BIND", "127.0.0.1:8000")]
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("THREADS", "100"))
worker_connections = threads  # more would wait for a thread; leave them to another worker
# WebSockets live long: the gthread worker keeps telling the arbiter it is alive while
# its threads serve them, so `timeout` only catches a stuck worker, not a long sync.
timeout = 30
graceful_timeout = 10
keepalive = 0  # each connection may need a whole thread; the proxy in front keeps alive
control_socket_disable = True  # gunicorn >= 24: no control socket in ~/.gunicorn
accesslog = None
loglevel = os.environ.get("LOGLEVEL", "info")


def post_worker_init(worker):
    """On SIGTERM, close this worker's WebSockets (code 1001) at once so it exits
    quickly instead of waiting ``graceful_timeout`` for clients that never hang up."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        if callable(previous):
            previous(signum, frame)
        app = worker.wsgi
        threading.Thread(target=_shutdown, args=(app,), name="pouchsync-shutdown",
                         daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)


def _shutdown(app):
    from flask_app import shutdown

    shutdown(app)
