"""Auth: nothing but the hello and channel opens is answered before a grant; a denied
channel can do nothing; a channel touches only its own database; credentials and URL
passwords never reach a log line; a read-only grant turns every pushed write into a
denied document, not a crash."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Iterator

import pytest

from pouchsync_sync import CouchDB, Denied, Grant, LocalDatabase, signals
from pouchsync_sync.client import SyncState
from tests.rawpeer import RawPeer

SECRET = "s3cr3t-T0KEN-4f9a"
PASSWORD = "pa55-W0RD-77c1"
CREDS = {"token": SECRET}


class AllLogs(logging.Handler):
    """Every record of every logger, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:  # called under the handler's lock
        self.lines.append(self.format(record))


@pytest.fixture
def all_logs() -> Iterator[AllLogs]:
    handler = AllLogs()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # library loggers may have their own level set by someone: open them all up
    touched = []
    for name in ("pouchsync_sync", "websocket", "werkzeug", "urllib3", "requests", "simple_websocket"):
        logger = logging.getLogger(name)
        touched.append((logger, logger.level, logger.disabled))
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)
    for logger, level, disabled in touched:
        logger.setLevel(level)
        logger.disabled = disabled


def _grant_secret(dbs: dict[str, LocalDatabase]):
    def on_request(credentials: Any, name: str) -> Any:
        if credentials != CREDS:
            raise Denied("bad token")
        return dbs[name]
    return on_request


def test_only_hello_and_opens_are_answered_before_a_grant(servers, local) -> None:
    db = local("a")
    db.put({"_id": "doc"})
    release = threading.Event()
    entered = threading.Event()

    def slow_on_request(credentials: Any, name: str) -> Any:
        entered.set()
        if not release.wait(10):
            raise Denied("timeout")
        return db

    server = servers(slow_on_request)
    peer = RawPeer(server.url)
    try:
        before = db.info()["update_seq"]
        # channels never opened: every kind of message gets an error, nothing runs
        for msg in ({"type": "call", "ch": 1, "id": 1, "op": "info"},
                    {"type": "call", "ch": 1, "id": 2, "op": "put", "args": {"doc": {"_id": "x"}}},
                    {"type": "subscribe", "ch": 1, "sub": 1},
                    {"type": "unsubscribe", "ch": 1, "sub": 1}):
            peer.send(msg)
            answer, _ = peer.until(lambda m: True)
            assert answer["type"] == "error" and answer["status"] == 400, answer
        # a channel still opening (on_request has not answered): the same
        peer.send({"type": "open", "ch": 1, "db": "a", "credentials": CREDS})
        assert entered.wait(5)
        peer.send({"type": "call", "ch": 1, "id": 3, "op": "put", "args": {"doc": {"_id": "early"}}})
        answer, _ = peer.until(lambda m: True)
        assert answer["type"] == "error" and answer["status"] == 400 and answer.get("id") == 3, answer
        release.set()
        granted, _ = peer.until(lambda m: m.get("type") == "granted")
        assert granted["ch"] == 1
        assert db.info()["update_seq"] == before  # nothing ran before the grant
        with pytest.raises(Exception):
            db.get("early")
    finally:
        release.set()
        peer.close()


def test_denied_channel_can_do_nothing(servers, local) -> None:
    db = local("a")
    server = servers(_grant_secret({"a": db}))
    peer = RawPeer(server.url)
    try:
        peer.send({"type": "open", "ch": 1, "db": "a", "credentials": {"token": "wrong"}})
        denied, _ = peer.until(lambda m: m.get("ch") == 1)
        assert denied["type"] == "denied" and denied["status"] == 403
        for i, (op, args) in enumerate((("put", {"doc": {"_id": "x"}}), ("info", {}),
                                        ("changes", {}), ("get", {"doc_id": "x"})), start=1):
            peer.send({"type": "call", "ch": 1, "id": i, "op": op, "args": args})
            answer, _ = peer.until(lambda m: True)
            assert answer["type"] == "error" and answer["status"] == 400, answer
        peer.send({"type": "subscribe", "ch": 1, "sub": 1})
        answer, _ = peer.until(lambda m: True)
        assert answer["type"] == "error"
        assert db.info()["update_seq"] == 0
    finally:
        peer.close()


def test_a_channel_touches_only_its_own_database(servers, local) -> None:
    dbs = {"a": local("a"), "b": local("b")}
    dbs["b"].put({"_id": "b-secret", "v": 1})
    server = servers(_grant_secret(dbs))
    peer = RawPeer(server.url)
    try:
        for ch, name in ((1, "a"), (2, "b")):
            peer.send({"type": "open", "ch": ch, "db": name, "credentials": CREDS})
            assert peer.until(lambda m, ch=ch: m.get("ch") == ch)[0]["type"] == "granted"
        b_before = dbs["b"].info()["update_seq"]
        calls = [("put", {"doc": {"_id": "b-secret", "db": "b"}}),
                 ("bulk_docs", {"docs": [{"_id": "b-secret"}, {"_id": "x", "_db": "b"}]}),
                 ("get", {"doc_id": "b-secret"}),
                 ("all_docs", {"keys": ["b-secret"], "include_docs": True}),
                 ("bulk_get", {"docs": [{"id": "b-secret"}]}),
                 ("changes", {"doc_ids": ["b-secret"], "include_docs": True})]
        for i, (op, args) in enumerate(calls, start=1):
            peer.send({"type": "call", "ch": 1, "id": i, "op": op, "args": args})
            reply, _ = peer.until(lambda m, i=i: m.get("type") in ("reply", "error") and m.get("id") == i)
            assert '"v"' not in json.dumps(reply), reply  # b's document never shows
        assert dbs["b"].info()["update_seq"] == b_before
        assert dbs["b"].get("b-secret")["v"] == 1
        with pytest.raises(Exception):
            dbs["b"].get("x")
        # what ch 1 wrote is in a, and only there
        assert dbs["a"].get("b-secret")["db"] == "b"
    finally:
        peer.close()


def test_credentials_and_url_passwords_never_logged(servers, clients, local, couch_url, all_logs,
                                                    recorders) -> None:
    server_db = local("logs")
    server = servers(_grant_secret({"logs": server_db, "gone": server_db}))
    a = local("logs")
    a.put({"_id": "one"})
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    # a client URL carrying a user and password, a granted sync and a denied one
    client = clients()
    client.connect(f"ws://user:{PASSWORD}@127.0.0.1:{port}/")
    assert client.sync(a, credentials=CREDS).wait(20).ok
    with pytest.raises(Denied):
        client.sync(a, remote_name="logs", credentials={"token": "x" + SECRET}).wait(20)
    # a client that cannot connect (retries logged at WARNING)
    unreachable = clients(max_attempts=2)
    failed = recorders(signals.client_reconnect, unreachable)
    unreachable.connect(f"ws://user:{PASSWORD}@127.0.0.1:1/")
    assert failed.wait_for(lambda ev: len(ev) >= 1)
    with pytest.raises(Exception):
        unreachable.wait_connected(10)
    # a CouchDB handle whose URL carries a password, wrong for this server
    couch = CouchDB(couch_url.replace("http://", f"http://admin:{PASSWORD}@"))
    try:
        with pytest.raises(Exception):
            couch.database("logs-test", create=True).info()
    finally:
        couch.close()
    text = "\n".join(all_logs.lines)
    assert all_logs.lines, "nothing was logged: the capture is broken"
    assert any("granted" in line for line in all_logs.lines)  # DEBUG/INFO really captured
    for secret in (SECRET, PASSWORD):
        leaks = [line for line in all_logs.lines if secret in line]
        assert not leaks, f"{secret!r} logged: {leaks[:3]}"
    print(f"\nlogs: {len(all_logs.lines)} lines at DEBUG searched, 0 secrets")
    assert SECRET not in text and PASSWORD not in text


def test_read_only_grant_reports_denied_documents_not_a_crash(servers, clients, local) -> None:
    server_db = local("ro")
    server_db.put({"_id": "from-server"})
    server = servers(lambda credentials, name: Grant(server_db, read_only=True))
    a = local("ro")
    for i in range(30):
        a.put({"_id": f"local-{i:02d}"})
    sync = clients().connect(server.url).sync(a)
    result = sync.wait(30)
    assert result.state is SyncState.COMPLETE
    assert result.doc_write_failures == 30
    assert result.docs_pulled == 1 and a.get("from-server")
    assert server_db.info()["doc_count"] == 1
    assert result.push is not None
    assert all(e.get("error") == "forbidden" for e in result.push.errors), result.push.errors[:3]
    # live: the same, and the sync stays up
    b = local("ro")
    b.put({"_id": "live-1"})
    live = clients().connect(server.url).sync(b, live=True)
    live.wait_in_sync(timeout=20)
    b.put({"_id": "live-2"})
    live.wait_in_sync(timeout=20)
    assert live.status.doc_write_failures == 2
    assert live.state in (SyncState.ACTIVE, SyncState.PAUSED)
    assert server_db.info()["doc_count"] == 1
