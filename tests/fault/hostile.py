"""A hostile sync server of the tests' own: protocol v1 over werkzeug + simple-websocket.

It says welcome, grants every ``open`` and serves calls from a real ``LocalDatabase``,
except the ops named in ``bad``: those are answered with the given ``ok`` value (the
wrong shape a buggy or hostile server might send), or with ``bad[op](args)`` when it is
callable (an error reply when that raises a ``CouchError``). A subscription gets one ``changes`` message of the database's changes (or
``bad["subscribe"]``'s results) when there are any, and is then left waiting.

Everything it starts is named ``pouchsync-test-hostile...`` (the thread-leak check sees
a stuck one) and ``close()`` stops and joins it.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from typing import Any, Callable

import simple_websocket
from werkzeug.serving import WSGIRequestHandler, make_server

from pouchsync_sync.errors import CouchError
from pouchsync_sync.protocol import ops
from pouchsync_sync.store.base import Database

WELCOME = {"type": "welcome", "version": 1, "agent": "hostile/1",
           "limits": {"max_message_size": 1 << 20}}


def _close(ws: Any) -> None:
    with contextlib.suppress(simple_websocket.ConnectionClosed, OSError):
        ws.close()


class _Handler(WSGIRequestHandler):
    def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
        self.close_connection = True  # a websocket ended: no second request on the socket

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class HostileAnswers:
    """What the hostile server answers: ``db`` to any ``open``; ``bad`` maps an op (or
    ``"subscribe"``) to the ``ok`` to answer instead. ``calls`` lists the ops called, in
    order. Thread-safe. ``HostileServer`` serves it over TCP, ``MemoryHostileServer``
    through the client's in-memory transport."""

    def __init__(self, db: Database, bad: Mapping[str, Any]) -> None:
        self.db = db
        self.bad = dict(bad)
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def called(self, op: str) -> bool:
        with self._lock:
            return op in self.calls

    def respond(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to one message after the hello (``None``: none)."""
        kind = msg.get("type")
        if kind == "open":
            return {"type": "granted", "ch": msg["ch"], "db": msg["db"],
                    "uuid": "hostile-uuid", "read_only": False}
        if kind == "close":
            return {"type": "closed", "ch": msg["ch"]}
        if kind == "call":
            return {"type": "reply", "ch": msg["ch"], "id": msg["id"],
                    **self._answer(msg["op"], msg.get("args") or {})}
        if kind == "subscribe":
            return self._subscription(msg)
        return None

    def _answer(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append(op)
        try:
            if op in self.bad:
                bad = self.bad[op]
                return {"ok": bad(args) if callable(bad) else bad}  # a CouchError: its error
            kwargs = ops.validate_call(op, args)
            result = getattr(self.db, op)(**kwargs)
            if op == "write_missing":
                return {"ok": ops.write_missing_answer(kwargs["docs"], *result)}
            if op == "write_missing_texts":
                written, failures = result
                return {"ok": {"written": written, "failures": failures}}
            return {"ok": ops.encode_result(op, result)}
        except CouchError as exc:
            return {"error": exc.to_json()}

    def _subscription(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            self.calls.append("subscribe")
        base = {"type": "changes", "ch": msg["ch"], "sub": msg["sub"]}
        if "subscribe" in self.bad:
            return {**base, "results": self.bad["subscribe"], "last_seq": 1, "pending": 0}
        answer = self.db.changes(since=msg.get("since", 0), style=msg.get("style") or "main_only",
                                 include_docs=bool(msg.get("include_docs")))
        if not answer["results"]:
            return None  # left waiting, as a quiet database would
        return {**base, "results": answer["results"], "last_seq": answer["last_seq"], "pending": 0}


class HostileServer(HostileAnswers):
    """``HostileAnswers`` over TCP: werkzeug + simple-websocket on 127.0.0.1."""

    def __init__(self, db: Database, bad: Mapping[str, Any]) -> None:
        super().__init__(db, bad)
        self._sockets: set[Any] = set()
        self._threads: list[threading.Thread] = []
        self._http = make_server("127.0.0.1", 0, self._app, threaded=True,
                                 request_handler=_Handler)
        self.url = f"ws://127.0.0.1:{self._http.server_port}/"
        self._thread = threading.Thread(target=self._http.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="pouchsync-test-hostile", daemon=True)
        self._thread.start()

    # -- one socket ---------------------------------------------------------------------
    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        thread = threading.current_thread()
        name, thread.name = thread.name, "pouchsync-test-hostile-conn"
        with self._lock:
            self._threads.append(thread)

        def reader_thread(target: Callable[[], None]) -> threading.Thread:
            made = threading.Thread(target=target, name="pouchsync-test-hostile-ws", daemon=True)
            with self._lock:
                self._threads.append(made)
            return made

        ws = simple_websocket.Server(environ, thread_class=reader_thread)
        with self._lock:
            self._sockets.add(ws)
        try:
            self._serve(ws)
        except simple_websocket.ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._sockets.discard(ws)
            _close(ws)
            thread.name = name
        raise ConnectionError("websocket closed")  # werkzeug: dropped quietly, no response

    def _serve(self, ws: Any) -> None:
        hello = json.loads(ws.receive(timeout=10))
        assert hello["type"] == "hello" and 1 in hello["versions"], hello
        ws.send(json.dumps(WELCOME))
        while True:
            answer = self.respond(json.loads(ws.receive()))
            if answer is not None:
                ws.send(json.dumps(answer))

    # -- stopping -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop accepting, close every socket, join every thread. Idempotent."""
        self._http.shutdown()
        with self._lock:
            sockets = list(self._sockets)
        for ws in sockets:
            _close(ws)
        self._http.server_close()
        self._thread.join(5)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(5)


class MemoryHostileServer(HostileAnswers):
    """``HostileAnswers`` through the client's in-memory transport (tests/memtransport.py):
    served at ``url`` on ``network``, answering each frame on the thread that sent it (no
    socket, no thread of its own)."""

    def __init__(self, db: Database, bad: Mapping[str, Any], network: Any, url: str) -> None:
        super().__init__(db, bad)
        self.url = url
        network.serve(url, self._accept)

    def _accept(self, end: Any, headers: list[str]) -> None:
        welcomed = threading.Event()

        def on_frame(data: bytes) -> None:
            msg = json.loads(data)
            if not welcomed.is_set():
                assert msg["type"] == "hello" and 1 in msg["versions"], msg
                welcomed.set()
                end.send(WELCOME)
                return
            answer = self.respond(msg)
            if answer is not None:
                end.send(answer)

        end.on_frame = on_frame
