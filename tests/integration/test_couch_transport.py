"""The CouchDB backend's transport: deadlines, transient errors, status mapping, threads.

Misbehaving servers are real sockets on 127.0.0.1 driven by a script of their own
(stall, trickle heartbeats, cut the body, answer a status); the healthy ones are the
real CouchDB-protocol server.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Callable

import pytest

import pouchsync_sync as ps
from pouchsync_sync import (BadRequest, CouchDB, PayloadTooLarge, ServerError, Timeout,
                            TransportError)


class ScriptedServer:
    """Accepts connections on 127.0.0.1 and runs ``script(conn, stop)`` for each."""

    def __init__(self, script: Callable[[socket.socket, threading.Event], None]) -> None:
        self.script = script
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.threads: list[threading.Thread] = []
        self.accepted = 0
        self.acceptor = threading.Thread(target=self._accept, name="test-scripted-accept")
        self.acceptor.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.accepted += 1
            thread = threading.Thread(target=self._run, args=(conn,), name="test-scripted-conn")
            self.threads.append(thread)
            thread.start()

    def _run(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                _read_request(conn)
                self.script(conn, self.stop)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.acceptor.join(5)
        self.sock.close()
        for thread in self.threads:
            thread.join(5)

    def __enter__(self) -> "ScriptedServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            want = int(line.split(b":", 1)[1])
            while len(body) < want:
                body += conn.recv(65536)
    return data


def _answer(status: str, body: bytes, ctype: str = "application/json") -> Callable:
    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: "
                     f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    return script


def _stall(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(30)


# -- deadlines --------------------------------------------------------------------------------

def test_idle_longpoll_returns_at_its_timeout(backend_couch):
    db = backend_couch("longpoll")
    db.put({"_id": "a"})
    last = db.changes()["last_seq"]
    started = time.monotonic()
    result = db.changes(since=last, feed="longpoll", timeout=1.0)
    elapsed = time.monotonic() - started
    assert result == {"results": [], "last_seq": last}
    assert 0.9 <= elapsed < 5.0  # pouchdb-server alone would never answer
    assert db.info()["doc_count"] == 1  # the pool still works after the aborted request


def test_longpoll_heartbeats_do_not_extend_the_deadline():
    def heartbeats(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        conn.sendall(b"c\r\n{\"results\":[\r\n")
        while not stop.wait(0.1):
            conn.sendall(b"1\r\n\n\r\n")

    with ScriptedServer(heartbeats) as server, CouchDB(server.url, timeout=10) as couch:
        started = time.monotonic()
        result = couch.database("lp").changes(since=7, feed="longpoll", timeout=0.8)
        elapsed = time.monotonic() - started
    assert result == {"results": [], "last_seq": 7}
    assert 0.7 <= elapsed < 3.0


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_a_flowing_longpoll_answer_is_not_cut_by_its_timeout():
    rows = [b'{"seq":%d,"id":"d%d","changes":[{"rev":"1-a"}]}' % (i, i) for i in range(1, 6)]

    def slow_rows(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + _chunk(b'{"results":['))
        for n, row in enumerate(rows):  # the answer flows for longer than the longpoll timeout
            if stop.wait(0.25):
                return
            conn.sendall(_chunk((b"," if n else b"") + row + b"\n"))
        conn.sendall(_chunk(b'],"last_seq":5}') + b"0\r\n\r\n")

    with ScriptedServer(slow_rows) as server, CouchDB(server.url, timeout=5) as couch:
        result = couch.database("flow").changes(since=0, feed="longpoll", timeout=0.3)
    assert [r["id"] for r in result["results"]] == [f"d{i}" for i in range(1, 6)]
    assert result["last_seq"] == 5


def test_a_longpoll_answer_that_stops_midway_is_a_timeout():
    def stops(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n"
                     + _chunk(b'{"results":[{"seq":1,"id":"a","changes":[{"rev":"1-a"}]}'))
        stop.wait(30)

    with ScriptedServer(stops) as server, CouchDB(server.url, timeout=1.0) as couch:
        started = time.monotonic()
        with pytest.raises(Timeout):
            couch.database("stops").changes(since=0, feed="longpoll", timeout=0.3)
        assert time.monotonic() - started < 4.0


def test_stalled_server_is_a_timeout():
    with ScriptedServer(_stall) as server, CouchDB(server.url, timeout=0.5) as couch:
        db = couch.database("stalled")
        for call in (db.info, lambda: db.get("x"),
                     lambda: db.changes(feed="longpoll", timeout=0.5),
                     lambda: db.bulk_docs([{"_id": "a"}])):
            started = time.monotonic()
            with pytest.raises(Timeout) as info:
                call()
            assert info.value.retryable is True
            assert time.monotonic() - started < 3.0


def test_body_that_stops_midway_is_a_timeout():
    def half(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"db_name\":")
        stop.wait(30)

    with ScriptedServer(half) as server, CouchDB(server.url, timeout=0.5) as couch:
        started = time.monotonic()
        with pytest.raises(Timeout):
            couch.database("half").info()
        assert time.monotonic() - started < 3.0


def test_body_cut_by_the_server_is_a_transport_error():
    def cut(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"db_name\":")

    with ScriptedServer(cut) as server, CouchDB(server.url, timeout=5) as couch:
        with pytest.raises(TransportError) as info:
            couch.database("cut").info()
        assert not isinstance(info.value, Timeout) and info.value.retryable


# -- transient and mapped errors ---------------------------------------------------------------

def test_connection_refused_is_retryable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # nothing listens on that port any more
    with CouchDB(f"http://127.0.0.1:{port}", timeout=2) as couch:
        with pytest.raises(TransportError) as info:
            couch.database("nobody").info()
    assert info.value.retryable is True and not isinstance(info.value, Timeout)
    assert "refused" in str(info.value).lower()


def test_connection_closed_or_reset_without_answer_is_retryable():
    def reset(conn: socket.socket, stop: threading.Event) -> None:
        # linger 0: close() sends a TCP reset
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    for script in (lambda conn, stop: None, reset):
        with ScriptedServer(script) as server, CouchDB(server.url, timeout=5) as couch:
            with pytest.raises(TransportError) as info:
                couch.database("gone").get("x")
        assert info.value.retryable is True and not isinstance(info.value, Timeout)


@pytest.mark.parametrize("status, body, cls, retryable", [
    ("503 Service Unavailable", b'{"error":"service_unavailable","reason":"busy"}',
     ServerError, True),
    ("500 Internal Server Error", b'{"error":"unknown_error","reason":"boom"}', ServerError, True),
    ("502 Bad Gateway", b"<html>bad gateway</html>", ServerError, True),
    ("429 Too Many Requests", b'{"error":"too_many_requests","reason":"slow down"}',
     ServerError, True),
    ("400 Bad Request", b'{"error":"bad_request","reason":"nope"}', BadRequest, False),
    ("413 Request Entity Too Large", b'{"error":"too_large","reason":"big"}',
     PayloadTooLarge, False),
    ("401 Unauthorized", b'{"error":"unauthorized","reason":"who"}', ps.Unauthorized, False),
    ("403 Forbidden", b'{"error":"forbidden","reason":"no"}', ps.Forbidden, False),
    ("409 Conflict", b'{"error":"conflict","reason":"Document update conflict"}', ps.Conflict,
     False),
])
def test_status_codes_map_to_error_classes(status, body, cls, retryable):
    with ScriptedServer(_answer(status, body)) as server, CouchDB(server.url) as couch:
        with pytest.raises(cls) as info:
            couch.database("mapped").put({"_id": "a"})
    assert info.value.retryable is retryable
    assert info.value.status == int(status.split()[0])


def test_doc_not_found_and_conflict_from_the_real_server(backend_couch):
    db = backend_couch("errors")
    rev = db.put({"_id": "a"})["rev"]
    with pytest.raises(ps.Conflict) as info:
        db.put({"_id": "a"})
    assert info.value.status == 409 and not info.value.retryable
    with pytest.raises(ps.NotFound) as info:
        db.get("a", rev="1-0000")
    assert info.value.status == 404
    db.delete("a", rev)


# -- threads ---------------------------------------------------------------------------------

def test_threads_share_one_database_and_pool(backend_couch):
    db = backend_couch("threads")
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            start.wait(10)
            for batch in range(5):
                docs = [{"_id": f"w{n}-{batch}-{i}", "n": i} for i in range(40)]
                results = db.bulk_docs(docs)
                assert all(r.get("ok") for r in results)
                assert db.get(f"w{n}-{batch}-0")["n"] == 0
                db.changes(limit=5)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,), name=f"test-couch-worker-{n}")
               for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]
    assert db.info()["doc_count"] == 8 * 5 * 40
    assert len(db.changes()["results"]) == 8 * 5 * 40


# -- compression -----------------------------------------------------------------------------

class RecordingServer(ScriptedServer):
    """A ScriptedServer that keeps each request's head (lower-cased)."""

    def __init__(self, script: Callable[[socket.socket, threading.Event], None]) -> None:
        self.heads: list[bytes] = []
        super().__init__(script)

    def _run(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                self.heads.append(_read_request(conn).partition(b"\r\n\r\n")[0].lower())
                self.script(conn, self.stop)
            except OSError:
                pass


@pytest.mark.parametrize("compression, asked", [(None, b"identity"), (False, b"identity"),
                                                (True, b"gzip")])
def test_compressed_answers_are_asked_for_only_off_this_machine(compression, asked):
    with RecordingServer(_answer("200 OK", b'{"couchdb":"Welcome"}')) as server, \
            CouchDB(server.url, compression=compression) as couch:
        assert couch.info() == {"couchdb": "Welcome"}
    [head] = server.heads
    encoding = [line for line in head.split(b"\r\n") if line.startswith(b"accept-encoding:")]
    assert len(encoding) == 1 and asked in encoding[0]


def test_a_remote_server_is_asked_for_compressed_answers():
    with CouchDB("http://couch.example.com:5984") as couch:   # no request is made
        assert couch.http.compression is True
    with CouchDB("http://localhost:5984") as couch:
        assert couch.http.compression is False
