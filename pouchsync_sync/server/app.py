"""``SyncServer``: the WSGI app that serves protocol v1 over simple-websocket.

A ``SyncServer`` is a plain WSGI callable, so it runs under werkzeug's threaded server
(``start``/``serve_forever``), inside a Flask app (``init_app``) or under gunicorn's
gthread worker. Each WebSocket request becomes a ``Session`` served on the request's
own thread; the server owns the shared change followers and the list of sessions, so
``stop()`` can close every socket (1001) and join every thread it started.
"""

from __future__ import annotations

import itertools
import logging
import random
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any, Callable

from ..jsclient import JS_CLIENT_NAME, js_client_response
from .budget import ReplyBudget
from .ending import EndingLine
from .follower import FollowerRegistry
from .handler import OpenConnections, RateLimit, request_handler
from .listen import make_http_server
from .localquota import LocalQuota
from .options import ServerOptions
from .pool import WorkerPool
from .session import Session
from .timer import Timer, TimerEntry
from .transport import WebSocketServer, ping_interval_for, serialized_environ

__all__ = ["SyncServer", "create_server"]

log = logging.getLogger(__name__)

OnRequest = Callable[[Any, str], Any]
StartResponse = Callable[..., Any]

_JOIN_TIMEOUT = 15.0
_CLOSE_GRACE = 1.0  # for clients to answer our close frames


class SyncServer:
    """The sync server: asks ``on_request(credentials, db_name)`` which database each
    client may sync, and serves the replication protocol on it over WebSockets. A WSGI
    app (``start``, ``serve_forever``, ``init_app``); thread-safe; ``stop()`` is idempotent.

    Example::

        import pouchsync_sync as ps

        data = ps.DataDir("server-data")
        def on_request(credentials, db_name):              # grant a Database, or deny
            if credentials == {"token": "s3cret"}:
                return data.database(db_name)
            raise ps.Denied("a valid token is required")
        server = ps.create_server(on_request)              # a SyncServer
        with server.start(host="127.0.0.1", port=0):        # or serve_forever, or init_app
            print(server.url.startswith("ws://127.0.0.1:"))   # True
        data.close()
    """

    def __init__(self, on_request: OnRequest, options: ServerOptions | None = None) -> None:
        if not callable(on_request):
            raise TypeError("on_request must be callable: on_request(credentials, db_name)")
        self.on_request = on_request
        self.options = options or ServerOptions()
        if self.options.agent is None:
            from .._version import __version__
            self.agent = f"pouchsync_sync/{__version__}"
        else:
            self.agent = self.options.agent
        self.url: str | None = None
        #: every socket's on_request, calls and live pushes run here (threads made lazily)
        self.pool = WorkerPool(self.options.pool_size, "pouchsync-server-worker")
        #: longpoll deadlines, the watchdog of stuck sends, embedded followers' looks
        self.timer = Timer()
        self.followers = FollowerRegistry(poll_timeout=self.options.follow_timeout,
                                          limit=self.options.live_batch, pool=self.pool,
                                          timer=self.timer)
        #: bytes of unsent replies over all sockets (``reply_memory``)
        self.budget = ReplyBudget(self.options.reply_memory)
        self.local_quota = LocalQuota(self.options.max_local_doc_size, self.options.max_local_docs)
        self.complaints = RateLimit()  # INFO lines about clients' mistakes, server-wide
        self.ending = EndingLine()  # sockets dropped together end a few at a time
        self._watchdog: TimerEntry | None = None
        #: connections of ``start``/``serve_forever``'s server, closed and joined at stop
        self._connections = OpenConnections()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._sessions: set[Session] = set()
        self._ids = itertools.count(1)
        self._connections_total = 0
        self._random = random.Random()  # each socket's ping interval (transport.py)
        self._http: Any = None
        self._thread: threading.Thread | None = None

    # -- WSGI ---------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
            if environ.get("PATH_INFO", "").endswith("/" + JS_CLIENT_NAME):
                return js_client_response(environ, start_response)
            body = b"pouchsync_sync: this endpoint speaks WebSocket (docs/protocol.md)\n"
            start_response("400 Bad Request", [("Content-Type", "text/plain"),
                                               ("Content-Length", str(len(body)))])
            return [body]
        if self._stopping.is_set():
            body = b"pouchsync_sync: the server is stopping\n"
            start_response("503 Service Unavailable", [("Content-Type", "text/plain"),
                                                       ("Content-Length", str(len(body)))])
            return [body]
        conn_id = next(self._ids)
        peer = f"{environ.get('REMOTE_ADDR', '?')}:{environ.get('REMOTE_PORT', '?')}"
        opts = self.options
        _no_delay(environ)
        try:
            sock = environ.get("werkzeug.socket")
            if sock is not None:  # upgraded: simple-websocket sends with send(), never time out
                sock.settimeout(None)
            ws = WebSocketServer(  # frames before the welcome: max_hello_size at most
                serialized_environ(environ),
                ping_interval=ping_interval_for(opts.ping_interval, self._random),
                max_message_size=opts.max_hello_size,
                receive_bytes=opts.receive_bytes, thread_class=_thread_class(conn_id))
        except Exception as exc:  # noqa: BLE001 - any broken handshake: answer 400, serve nothing
            log.info("connection from %s: WebSocket handshake failed: %s", peer, exc)
            return _plain(start_response, "400 Bad Request",
                          b"pouchsync_sync: bad WebSocket handshake\n")
        try:
            session = Session(ws, conn_id=conn_id, peer=peer, options=opts,
                              on_request=self.on_request, followers=self.followers,
                              server_stopping=self._stopping, agent=self.agent,
                              pool=self.pool, timer=self.timer, budget=self.budget,
                              local_quota=self.local_quota, complaints=self.complaints,
                              ending=self.ending)
        except BaseException:
            ws.may_end.set()  # no session will end the reader thread
            raise
        with self._lock:
            self._sessions.add(session)
            self._connections_total += 1
            late = self._stopping.is_set()
            if self._watchdog is None and not late:
                self._watchdog = self.timer.call_every(1.0, self._check_sends)
        log.info("connection %s: connected", session.name)
        thread = threading.current_thread()
        thread_name, thread.name = thread.name, f"pouchsync-server-conn[{conn_id}]"
        try:
            if late:
                session.send_close(1001, "server shutting down")
            session.run(after=lambda: self._forget(session))
        finally:
            if not session.done.is_set():  # run() did not tear down (send_close failed)
                ws.may_end.set()
                self._forget(session)
            thread.name = thread_name  # the WSGI server's thread, lent for the socket's life
        return _end_of_websocket(ws)

    def _forget(self, session: Session) -> None:
        """A session ended (on its handler thread, after its teardown)."""
        with self._lock:
            self._sessions.discard(session)
            if not self._sessions and self._watchdog is not None:
                self._watchdog.cancel()  # the timer's thread ends when idle
                self._watchdog = None

    # -- mounting and running -----------------------------------------------------------
    def init_app(self, app: Any, path: str = "/sync") -> SyncServer:
        """Serve this server at ``path`` of a Flask app (a WSGI middleware in front of
        ``app.wsgi_app``; every other path goes to Flask as before)."""
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        inner = app.wsgi_app
        paths = {path.rstrip("/") or "/", (path.rstrip("/") or "") + "/",
                 (path.rstrip("/") or "") + "/" + JS_CLIENT_NAME}

        def dispatch(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if environ.get("PATH_INFO", "") in paths:
                return self(environ, start_response)
            return inner(environ, start_response)

        app.wsgi_app = dispatch
        extensions = getattr(app, "extensions", None)
        if isinstance(extensions, dict):
            extensions["pouchsync_sync"] = self
        return self

    def start(self, host: str = "127.0.0.1", port: int = 0) -> SyncServer:
        """Serve in a background thread (``pouchsync-server``); returns at once with
        ``url`` set. Stop with ``stop()`` or by leaving a ``with`` block."""
        with self._lock:
            if self._http is not None:
                raise RuntimeError("this server is already running")
            if self._stopping.is_set():
                raise RuntimeError("a stopped server cannot be started again")
            self._http = make_http_server(host, port, self,
                                          request_handler=self._request_handler())
        self.url = f"ws://{_url_host(host)}:{self._http.server_port}/"
        self._thread = threading.Thread(target=self._http.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="pouchsync-server", daemon=True)
        self._thread.start()
        log.info("serving on %s", self.url)
        return self

    def serve_forever(self, host: str = "127.0.0.1", port: int = 3000) -> None:
        """Serve on werkzeug's threaded server until ``stop()`` (from another thread)
        or Ctrl-C."""
        with self._lock:
            if self._http is not None:
                raise RuntimeError("this server is already running")
            self._http = make_http_server(host, port, self,
                                          request_handler=self._request_handler())
        self.url = f"ws://{_url_host(host)}:{self._http.server_port}/"
        log.info("serving on %s", self.url)
        try:
            self._http.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def _check_sends(self) -> None:
        """The watchdog (every second, on the timer): close sockets whose send is stuck."""
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.check_send_stuck()

    def _request_handler(self) -> Any:
        return request_handler(self.options.hello_timeout, self.complaints, self._connections)

    def stop(self) -> None:
        """Close every socket (1001), stop the followers, join every thread. Idempotent."""
        with self._lock:
            first = not self._stopping.is_set()
            self._stopping.set()
            http, self._http = self._http, None
            sessions = list(self._sessions)
        if first and http is not None:
            log.info("stopping (%d connections)", len(sessions))
        if http is not None:
            http.shutdown()
        for session in sessions:  # close frames first, then one grace period for all
            session.send_close(1001, "server shutting down")
        deadline = time.monotonic() + _CLOSE_GRACE
        for session in sessions:
            session.wait_transport(deadline - time.monotonic())
        for session in sessions:
            session.force_close()
        for session in sessions:
            if not session.done.wait(_JOIN_TIMEOUT):
                log.error("connection %s did not finish", session.name)
        # connections still reading their HTTP request (and handler threads finishing)
        stuck = self._connections.close_all(_JOIN_TIMEOUT)
        if stuck:
            log.error("request handler threads did not stop: %s", stuck)
        stuck = self.followers.close(5.0) + self.pool.close(timeout=_JOIN_TIMEOUT)
        if not self.timer.close(_JOIN_TIMEOUT):
            stuck.append(self.timer.name)
        if stuck:
            log.error("threads did not stop: %s", stuck)
        if http is not None:
            http.server_close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)

    close = stop

    def __enter__(self) -> SyncServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- introspection ------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Counts for monitoring and tests."""
        with self._lock:
            sessions = list(self._sessions)
            total = self._connections_total
        per = [s.stats() for s in sessions]
        return {
            "connections": len(sessions),
            "connections_total": total,
            "channels": sum(p["channels"] for p in per),
            "subscriptions": sum(p["subscriptions"] for p in per),
            "calls_in_flight": sum(p["calls_in_flight"] for p in per),
            "workers": self.pool.threads,
            "tasks_running": sum(p["workers"] for p in per),
            "queued_bytes": sum(p["queued_bytes"] for p in per),
            "live_pushes_fanout": sum(p["live_pushes_fanout"] for p in per),
            "live_pushes_lane": sum(p["live_pushes_lane"] for p in per),
            "followers": self.followers.active(),
            "followers_started": self.followers.started_total,
            "reply_bytes_held": self.budget.total,
            "evictions": self.budget.evictions,
        }

    def __repr__(self) -> str:
        return f"<SyncServer {self.url or 'not listening'}>"


def create_server(on_request: OnRequest, **options: Any) -> SyncServer:
    """A ``SyncServer`` granting databases through ``on_request(credentials, db_name)``.

    ``on_request`` returns a ``Database`` or a ``Grant`` to grant; raising (``Denied``
    or anything) or returning ``None`` denies. Options: see ``ServerOptions``.
    """
    return SyncServer(on_request, ServerOptions.from_kwargs(options))


def _thread_class(conn_id: int) -> Callable[..., threading.Thread]:
    """simple-websocket's reader thread, named after the connection."""
    def make(target: Callable[[], None]) -> threading.Thread:
        return threading.Thread(target=target, name=f"pouchsync-server-ws[{conn_id}]", daemon=True)
    return make


def _no_delay(environ: dict[str, Any]) -> None:
    """TCP_NODELAY on the request's socket. Without it Nagle holds a small reply back
    until the peer's delayed ACK (~40 ms on Linux): live changes took 50 ms instead of 5."""
    sock = environ.get("werkzeug.socket") or environ.get("gunicorn.socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError) as exc:  # not TCP (a Unix socket) or already closed
        log.debug("TCP_NODELAY not set: %s", exc)


def _plain(start_response: StartResponse, status: str, body: bytes) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                            ("Connection", "close")])
    return [body]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _end_of_websocket(ws: Any) -> Iterable[bytes]:
    """End the WSGI request without an HTTP response (the socket was a WebSocket)."""
    if ws.mode == "werkzeug":
        raise ConnectionError("websocket closed")  # werkzeug: dropped connection, no log
    if ws.mode == "gunicorn":
        raise StopIteration()  # gunicorn: closes the connection quietly
    return []
