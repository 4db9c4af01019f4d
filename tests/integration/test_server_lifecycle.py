"""The server's lifecycle over real sockets: ``stop()`` closes every socket with 1001
and joins its threads, the context manager, ``serve_forever``, a Flask mount, options,
and peers that stop reading or never speak. Fixtures: ``test_server.py``."""

from __future__ import annotations

import threading

import pytest

import pouchsync_sync as ps
from pouchsync_sync.protocol import messages as m
from tests.integration.test_server import (  # noqa: F401  (fixtures)
    TOKEN,
    WAIT,
    _eventually,
    clients,
    dbs,
    make_server,
    server,
)
from tests.rawpeer import RawPeer

# -- lifecycle ----------------------------------------------------------------------------------

def test_stop_closes_every_socket_with_1001_and_joins_threads(dbs) -> None:
    server = ps.create_server(dbs.on_request).start()
    clients = [RawPeer(server.url, credentials=TOKEN) for _ in range(3)]
    try:
        for client in clients:
            client.open(1, "todos")
            client.send(m.subscribe(1, 1, since="now"))
            client.send(m.call(1, 9, "changes", {"feed": "longpoll", "since": "now", "timeout": 30}))
        assert _eventually(lambda: server.stats()["subscriptions"] == 3)
        server.stop()
        for client in clients:
            client.expect_close()
            assert client.close_code == 1001
        assert server.stats()["connections"] == 0 and server.stats()["followers"] == 0
        server.stop()  # idempotent
    finally:
        for client in clients:
            client.close()
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("pouchsync")]
    assert leftover == []


def test_context_manager_and_serve_forever(dbs) -> None:
    with ps.create_server(dbs.on_request).start() as server:
        client = RawPeer(server.url, credentials=TOKEN)
        client.open(1, "todos")
        client.close()
    server = ps.create_server(dbs.on_request)
    runner = threading.Thread(target=server.serve_forever, args=("127.0.0.1", 0),
                              name="pouchsync-test-serve-forever")
    runner.start()
    try:
        assert _eventually(lambda: server.url is not None)
        client = RawPeer(server.url, credentials=TOKEN)
        assert client.open(1, "todos")["type"] == "granted"
        client.close()
    finally:
        server.stop()
        runner.join(WAIT)
    assert not runner.is_alive()


def test_flask_mount_next_to_an_ordinary_route(dbs) -> None:
    flask = pytest.importorskip("flask")
    import requests
    from werkzeug.serving import make_server

    app = flask.Flask("pouchsync-test")

    @app.route("/hello")
    def hello() -> str:
        return "hello from flask"

    server = ps.create_server(dbs.on_request).init_app(app, path="/sync")
    http = make_server("127.0.0.1", 0, app, threaded=True)
    runner = threading.Thread(target=http.serve_forever, name="pouchsync-test-flask")
    runner.start()
    try:
        base = f"127.0.0.1:{http.server_port}"
        assert requests.get(f"http://{base}/hello", timeout=WAIT).text == "hello from flask"
        assert requests.get(f"http://{base}/nothing", timeout=WAIT).status_code == 404
        client = RawPeer(f"ws://{base}/sync", credentials=TOKEN)
        assert client.open(1, "todos")["type"] == "granted"
        assert client.ok(1, "put", {"doc": {"_id": "via-flask"}})["ok"]
        server.stop()
        client.expect_close()
        assert client.close_code == 1001
        client.close()
    finally:
        server.stop()
        http.shutdown()
        http.server_close()
        runner.join(WAIT)
    assert dbs.dbs["todos"].get("via-flask")["_id"] == "via-flask"


def test_unknown_server_option_is_a_type_error(dbs) -> None:
    with pytest.raises(TypeError, match="unknown server option 'max_chanels'"):
        ps.create_server(dbs.on_request, max_chanels=3)
    with pytest.raises(ValueError, match="max_channels"):
        ps.create_server(dbs.on_request, max_channels=0)


def test_peer_that_stops_reading_is_closed_after_send_timeout(make_server, dbs) -> None:
    server = make_server(send_timeout=0.5, max_calls=500)
    dbs.db("big").put({"_id": "big", "pad": "x" * 1_000_000})
    stuck = RawPeer(server.url, credentials=TOKEN)
    try:
        stuck.open(1, "big")
        for call_id in range(1, 201):  # ~200 MB of replies, far beyond the socket buffers
            stuck.send(m.call(1, call_id, "get", {"doc_id": "big"}))
        assert _eventually(lambda: server.stats()["connections"] == 0, timeout=20)
        other = RawPeer(server.url, credentials=TOKEN)
        try:
            other.open(1, "big")
            assert other.ok(1, "info")["doc_count"] == 1
        finally:
            other.close()
    finally:
        stuck.close()


def test_silent_tcp_peer_is_dropped_after_hello_timeout(make_server) -> None:
    import socket as socket_module

    server = make_server(hello_timeout=0.3)
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    with socket_module.create_connection(("127.0.0.1", port), timeout=WAIT) as silent:
        assert silent.recv(100) == b""  # closed by the server, no HTTP request ever sent
    with socket_module.create_connection(("127.0.0.1", port), timeout=WAIT) as half:
        half.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
        data = half.recv(1000)
        assert data == b"" or b"408" in data or b"400" in data
    client = RawPeer(server.url, credentials=TOKEN)  # the WebSocket itself has no timeout
    try:
        client.open(1, "todos")
        threading.Event().wait(0.6)
        assert client.ok(1, "info")["db_name"] == "todos"
    finally:
        client.close()
