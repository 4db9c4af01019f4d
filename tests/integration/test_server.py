"""The sync server over real sockets, driven by the raw test peer (``tests.rawpeer``).

Every test runs a real ``SyncServer`` on 127.0.0.1:0 (``start()``) with real
``LocalDatabase`` stores, and talks protocol v1 frame by frame. This module holds the
fixtures the other ``test_server_*`` modules import, and the connection, channel and
bad-input tests; the calls are in ``test_server_calls.py``, the lifecycle in
``test_server_lifecycle.py``.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Iterator

import pytest

import pouchsync_sync as ps
from pouchsync_sync.protocol import messages as m
from tests.rawpeer import TEXT, RawPeer

TOKEN = {"token": "s3cret-token-value"}
WAIT = 10.0


class Databases:
    """A few in-memory stores and an on_request that grants them by name."""

    def __init__(self) -> None:
        self.dbs: dict[str, ps.Database] = {}
        self.requests: list[tuple[Any, str]] = []
        self.read_only: set[str] = set()
        self.design: set[str] = set()
        self.slow = threading.Event()
        self.slow_started = threading.Event()

    def db(self, name: str) -> ps.Database:
        if name not in self.dbs:
            self.dbs[name] = ps.LocalDatabase(":memory:", name=name)
        return self.dbs[name]

    def on_request(self, credentials: Any, db_name: str) -> Any:
        self.requests.append((credentials, db_name))
        if db_name == "slow":
            self.slow_started.set()
            self.slow.wait(WAIT)
        if db_name == "none":
            return None
        if db_name == "boom":
            raise RuntimeError("database boom is on fire")
        if credentials is None:
            raise ps.Denied("credentials required")
        if credentials.get("token") != TOKEN["token"]:  # AttributeError on malformed ones
            raise ps.Denied("wrong token")
        if db_name in self.read_only or db_name in self.design:
            return ps.Grant(self.db(db_name), read_only=db_name in self.read_only,
                            allow_design=db_name in self.design)
        return self.db(db_name)

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


@pytest.fixture
def dbs() -> Iterator[Databases]:
    found = Databases()
    yield found
    found.slow.set()
    found.close()


@pytest.fixture
def make_server(dbs: Databases) -> Iterator[Callable[..., ps.SyncServer]]:
    servers: list[ps.SyncServer] = []

    def make(**options: Any) -> ps.SyncServer:
        server = ps.create_server(dbs.on_request, **options).start()
        servers.append(server)
        return server

    yield make
    dbs.slow.set()
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ps.SyncServer]) -> ps.SyncServer:
    return make_server()


@pytest.fixture
def clients(server: ps.SyncServer) -> Iterator[Callable[..., RawPeer]]:
    made: list[RawPeer] = []

    def connect(**kw: Any) -> RawPeer:
        client = RawPeer(server.url, credentials=TOKEN, **kw)
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()


# -- connection -----------------------------------------------------------------------------

def test_hello_welcome_announces_version_and_limits(make_server) -> None:
    server = make_server(max_channels=7, max_message_size=123456, ping_interval=5)
    assert server.url.startswith("ws://127.0.0.1:") and server.url.endswith("/")
    client = RawPeer(server.url, credentials=TOKEN)
    try:
        assert client.welcome["version"] == 1
        assert client.welcome["agent"] == f"pouchsync_sync/{ps.__version__}"
        limits = client.welcome["limits"]
        assert limits["max_channels"] == 7 and limits["max_message_size"] == 123456
        assert limits["ping_interval"] == 5.0 and limits["max_calls"] == 64
    finally:
        client.close()


def test_unsupported_version_is_refused_with_reason_and_close_1002(clients) -> None:
    client = clients(hello=False)
    client.send({"type": "hello", "versions": [2, 3]})
    err = client.expect(type="error")
    assert err["error"] == "unsupported_version" and err["fatal"] is True
    assert "[1]" in err["reason"] and "[2, 3]" in err["reason"]
    assert client.expect_close() == [] and client.close_code == 1002


def test_anything_before_hello_is_an_error_and_a_close(clients) -> None:
    client = clients(hello=False)
    client.send(m.open_channel(1, "todos", TOKEN))
    err = client.expect(type="error")
    assert "expected a hello first" in err["reason"] and err["fatal"] is True
    assert client.expect_close() == [] and client.close_code == 1002


def test_hello_timeout_closes_the_socket(make_server) -> None:
    server = make_server(hello_timeout=0.3)
    client = RawPeer(server.url, hello=False, credentials=TOKEN)
    try:
        err = client.expect(type="error", timeout=5)
        assert err["error"] == "hello_timeout" and err["status"] == 408
        assert client.expect_close(timeout=5) == [] and client.close_code == 1008
        # the server holds nothing for it any more
        assert server.stats()["connections"] == 0 or _eventually(lambda: server.stats()["connections"] == 0)
    finally:
        client.close()


def _eventually(check: Callable[[], bool], timeout: float = WAIT) -> bool:
    done = threading.Event()
    deadline = timeout
    while deadline > 0:
        if check():
            return True
        done.wait(0.02)
        deadline -= 0.02
    return check()


def test_plain_http_request_gets_400(server) -> None:
    import requests

    response = requests.get(server.url.replace("ws://", "http://"), timeout=WAIT)
    assert response.status_code == 400 and "WebSocket" in response.text


# -- channels ---------------------------------------------------------------------------------

def test_grant_gives_stable_uuid_and_read_only_flag(clients, dbs) -> None:
    client = clients()
    granted = client.open(1, "todos")
    assert granted == {"type": "granted", "ch": 1, "db": "todos", "uuid": granted["uuid"],
                       "read_only": False}
    assert len(granted["uuid"]) == 32 and "memory" not in granted["uuid"]
    again = client.open(2, "todos")
    assert again["uuid"] == granted["uuid"]
    other = client.open(3, "other")
    assert other["uuid"] != granted["uuid"]
    assert dbs.requests[0] == (TOKEN, "todos")


@pytest.mark.parametrize("credentials, reason", [
    ({"token": "wrong"}, "wrong token"),
    (None, "credentials required"),
    ("just-a-string", "'str' object has no attribute 'get'"),
    ([1, 2], "'list' object has no attribute 'get'"),
])
def test_denied_with_wrong_missing_malformed_credentials(clients, dbs, credentials, reason) -> None:
    client = clients()
    denied = client.open(1, "todos", credentials)
    assert denied == {"type": "denied", "ch": 1, "status": 403, "error": "denied", "reason": reason}
    assert dbs.requests == [(credentials, "todos")]
    # the number is free again, and the socket still works
    assert client.open(1, "todos")["type"] == "granted"


def test_on_request_exception_message_is_relayed_without_traceback(clients) -> None:
    client = clients()
    denied = client.open(1, "boom")
    assert denied["reason"] == "database boom is on fire"
    assert "Traceback" not in json.dumps(denied)
    assert client.open(2, "none")["reason"] == "not allowed"


def test_close_channel_and_close_unknown_channel(clients) -> None:
    client = clients()
    client.open(1, "todos")
    client.send(m.close(1))
    assert client.expect(type="closed", ch=1)
    client.send(m.close(99))
    assert client.expect(type="closed", ch=99)
    call_id = client.start_call(1, "info")
    err = client.expect(type="error", id=call_id)  # not a reply: the channel is gone
    assert err["ch"] == 1 and "not open" in err["reason"]


def test_call_on_closed_channel_is_an_error_naming_channel_and_id(clients) -> None:
    client = clients()
    client.send(m.call(5, 1, "info"))
    err = client.expect(type="error")
    assert (err["ch"], err["id"], err["status"]) == (5, 1, 400) and "not open" in err["reason"]


def test_max_channels_per_socket(make_server) -> None:
    server = make_server(max_channels=2)
    client = RawPeer(server.url, credentials=TOKEN)
    try:
        assert client.open(1, "a")["type"] == "granted"
        assert client.open(2, "b")["type"] == "granted"
        denied = client.open(3, "c")
        assert (denied["status"], denied["error"]) == (429, "too_many_channels")
        client.send(m.close(1))
        client.expect(type="closed", ch=1)
        assert client.open(3, "c")["type"] == "granted"
    finally:
        client.close()


def test_slow_on_request_does_not_stall_other_channels(clients, dbs) -> None:
    client = clients()
    client.send(m.open_channel(1, "slow", TOKEN))
    assert dbs.slow_started.wait(WAIT)
    assert client.open(2, "todos")["type"] == "granted"
    assert client.ok(2, "info")["db_name"] == "todos"
    dbs.slow.set()
    assert client.expect(type="granted", ch=1)


def test_close_while_opening_answers_closed_and_never_granted(clients, dbs) -> None:
    client = clients()
    client.send(m.open_channel(1, "slow", TOKEN))
    assert dbs.slow_started.wait(WAIT)
    client.send(m.close(1))
    client.expect(type="closed", ch=1)
    dbs.slow.set()
    # reuse the number: the late grant of the first open must not leak into it
    assert client.open(1, "todos")["db"] == "todos"
    assert client.ok(1, "info")["db_name"] == "todos"
    assert not [p for p in client.pending if p["type"] == "granted"]


# -- bad input ----------------------------------------------------------------------------------

def test_bad_input_gets_errors_and_the_server_keeps_serving(server, clients) -> None:
    client = clients()
    client.open(1, "todos")
    for frame, reason in [
        ("{not json", "malformed JSON"),
        ("[]", "must be a JSON object"),
        ('{"type": "frobnicate"}', "unknown message type 'frobnicate'"),
        ('{"type": "call", "ch": "1", "id": 1}', "'ch' must be an integer"),
        ('{"type": "hello", "versions": [1]}', "cannot receive 'hello'"),
        ('{"type": "granted", "ch": 1, "db": "x", "uuid": "u"}', "does not send 'granted'"),
        ('{"type": "open", "ch": 1, "db": "todos"}', "already in use"),
        ('{"type": "subscribe", "ch": 1, "sub": 1, "bogus": 1}', "unknown field 'bogus'"),
    ]:
        client.send(frame)
        err = client.expect(type="error")
        assert err["status"] == 400 and reason in err["reason"], (frame, err)
    client.send(b"\x00\x01binary")
    assert "binary frames" in client.expect(type="error")["reason"]
    client.send("\udcff".encode("utf-8", "surrogatepass"), opcode=TEXT)
    client.expect_close()  # invalid UTF-8 in a text frame: the transport closes this socket
    other = RawPeer(server.url, credentials=TOKEN)
    try:
        other.open(1, "todos")
        assert other.ok(1, "info")["db_name"] == "todos"
    finally:
        other.close()


def test_oversize_message_closes_with_1009_and_others_keep_working(make_server, caplog) -> None:
    server = make_server(max_message_size=10_000)
    big, small = RawPeer(server.url, credentials=TOKEN), RawPeer(server.url, credentials=TOKEN)
    try:
        with caplog.at_level("INFO"):
            big.open(1, "todos")
            big.send(m.call(1, 1, "put", {"doc": {"_id": "x", "pad": "x" * 20_000}}))
            assert big.expect_close() == [] and big.close_code == 1009
            small.open(1, "todos")
            assert small.ok(1, "put", {"doc": {"_id": "ok", "pad": "x" * 5_000}})["ok"]
            assert _eventually(lambda: server.stats()["connections"] == 1)
        # the closed socket's leftover bytes (the client's close frame) were not read
        # by the WSGI server as a next HTTP request
        assert not [r for r in caplog.records if "Bad request" in r.getMessage()]
    finally:
        big.close()
        small.close()


def test_too_many_errors_close_the_socket(make_server) -> None:
    server = make_server(max_errors=3)
    client = RawPeer(server.url, credentials=TOKEN)
    try:
        for _ in range(3):
            client.send("nope")
        errors = client.expect_close()
        assert len(errors) == 3 and errors[-1]["fatal"] is True
        assert "too many errors" in errors[-1]["reason"] and client.close_code == 1008
    finally:
        client.close()


def test_credentials_are_never_logged(clients, caplog) -> None:
    with caplog.at_level("DEBUG", logger="pouchsync_sync"):
        client = clients()
        client.open(1, "todos")
        client.open(2, "todos", {"token": "another-secret"})
        client.ok(1, "info")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "channel 1 granted 'todos'" in text and "denied" in text
    assert TOKEN["token"] not in text and "another-secret" not in text
